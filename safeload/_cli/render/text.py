"""Human-readable report, modelled on torch's `weights_only` error message.

Each finding names where it is (`file[:member] @ offset N`), the rule ID and
name, what the global is and how the pickle uses it, and the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from ...report import FileReport, Finding, ScanReport, Verdict
from . import rule_help

__all__ = ["plural", "render", "summary_line"]

_RESET = "\x1b[0m"
_VERDICT_STYLE = {
    Verdict.SAFE: "\x1b[32m",
    Verdict.NOT_A_PICKLE: "\x1b[36m",
    Verdict.UNKNOWN: "\x1b[33m",
    Verdict.INVALID: "\x1b[35m",
    Verdict.DANGEROUS: "\x1b[1;31m",
}
_BOLD = "\x1b[1m"

Paint = Callable[[str, str], str]
_NOT_SAFE = frozenset({Verdict.UNKNOWN, Verdict.INVALID, Verdict.DANGEROUS})
"""What fails a scan by default (`--fail-on unknown`): not-a-pickle files do not."""
_DIM = "\x1b[2m"


def render(
    report: ScanReport,
    *,
    color: bool = False,
    quiet: bool = False,
    docs: bool = True,
    failing: Collection[Verdict] = _NOT_SAFE,
    forgiven: int = 0,
) -> str:
    """The whole report; `quiet` lists only the files whose verdict is in `failing`
    (what makes the command fail: hooks print only those), `docs` adds rule links."""
    paint = _painter(color)
    lines: list[str] = []
    for file in report.files:
        if quiet and file.verdict not in failing:
            continue
        # A file that is no pickle and does not fail the scan needs no fix: its
        # finding says what it is, in one line (a model repository has many).
        brief = file.verdict is Verdict.NOT_A_PICKLE and file.verdict not in failing
        lines.extend(_file_lines(file, paint, docs, brief=brief))
    for path, reason in report.skip_reasons.items():
        lines.append(f"{path}: SKIPPED: {reason}")
    for path, reason in report.errors.items():
        lines.append(f"{path}: {paint('ERROR', _VERDICT_STYLE[Verdict.DANGEROUS])}: {reason}")
    lines.append(summary_line(report, forgiven))
    return "\n".join(lines) + "\n"


def plural(count: int, noun: str) -> str:
    """`1 file`, `2 files`, `0 errors`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def summary_line(report: ScanReport, forgiven: int = 0) -> str:
    """`summary: 2 files: 1 safe, 1 dangerous (0 skipped, 1 error)`."""
    counts = report.summary()
    parts = [f"{counts[v.value]} {v.value}" for v in Verdict if counts[v.value]]
    head = f"summary: {plural(counts['files'], 'file')}"
    if parts:
        head += ": " + ", ".join(parts)
    tail = f"{counts['skipped']} skipped, {plural(counts['errors'], 'error')}"
    if forgiven:
        tail += f", {plural(forgiven, 'finding')} ignored or in the baseline"
    remote = [f for f in report.files if f.fetched is not None]
    if remote:
        fetched, size = sum(f.fetched or 0 for f in remote), sum(f.size for f in remote)
        tail += f", fetched {fetched:,} of {size:,} bytes of {plural(len(remote), 'remote file')}"
    return f"{head} ({tail})"


def _painter(color: bool) -> Paint:
    def paint(text: str, style: str) -> str:
        return f"{style}{text}{_RESET}" if color else text

    return paint


def _file_lines(file: FileReport, paint: Paint, docs: bool, *, brief: bool = False) -> list[str]:
    verdict = paint(file.verdict.value.upper(), _VERDICT_STYLE[file.verdict])
    details = [file.format]
    if file.pickles:
        details.append(f"{file.pickles} pickle{'s' if file.pickles != 1 else ''}")
        details.append(f"{file.opcodes} opcode{'s' if file.opcodes != 1 else ''}")
    if file.fetched is not None:
        details.append(f"fetched {file.fetched:,} of {file.size:,} bytes")
    lines = [f"{file.path}: {verdict} ({', '.join(details)})"]
    documented: set[str] = set()
    for finding in file.findings:
        # One docs link per rule and file: the same link after every unknown
        # global of a big model is noise.
        lines.extend(
            _finding_lines(finding, paint, docs and finding.rule not in documented, brief=brief)
        )
        documented.add(finding.rule)
    if file.explanation is not None:
        lines.append("  what loading it would run (decompiled by fickling; read it, never run it):")
        lines.extend(f"    | {line}" for line in file.explanation.splitlines())
    return lines


def _finding_lines(f: Finding, paint: Paint, docs: bool, *, brief: bool = False) -> list[str]:
    where = f.location if f.offset is None else f"{f.location} @ offset {f.offset}"
    head = f"  {where}: {paint(f.rule, _BOLD)} {f.rule_name} [{f.severity.value}]"
    if f.count > 1:
        head += f" ({f.count} references)"
    lines = [head, f"    {f.message}"]
    if brief:
        return lines
    if f.fix:
        lines.append(f"    fix: {f.fix}")
    if docs and f.rule.startswith("SL"):
        lines.append(paint(f"    docs: {rule_help(f.rule)}", _DIM))
    return lines
