"""Human-readable report, modelled on torch's `weights_only` error message.

Each finding names where it is (`file[:member] @ offset N`), the rule ID and
name, what the global is and how the pickle uses it, and the fix.
"""

from __future__ import annotations

from collections.abc import Callable

from ...report import FileReport, Finding, ScanReport, Verdict
from . import rule_help

__all__ = ["render", "summary_line"]

_RESET = "\x1b[0m"
_VERDICT_STYLE = {
    Verdict.SAFE: "\x1b[32m",
    Verdict.UNKNOWN: "\x1b[33m",
    Verdict.INVALID: "\x1b[35m",
    Verdict.DANGEROUS: "\x1b[1;31m",
}
_BOLD = "\x1b[1m"

Paint = Callable[[str, str], str]
_DIM = "\x1b[2m"


def render(
    report: ScanReport, *, color: bool = False, quiet: bool = False, docs: bool = True
) -> str:
    """The whole report; `quiet` leaves out safe files, `docs` adds rule links."""
    paint = _painter(color)
    lines: list[str] = []
    for file in report.files:
        if quiet and file.verdict is Verdict.SAFE:
            continue
        lines.extend(_file_lines(file, paint, docs))
    for path, reason in report.errors.items():
        lines.append(f"{path}: {paint('ERROR', _VERDICT_STYLE[Verdict.DANGEROUS])}: {reason}")
    lines.append(summary_line(report))
    return "\n".join(lines) + "\n"


def summary_line(report: ScanReport) -> str:
    """`summary: 2 files: 1 safe, 1 dangerous (0 skipped, 0 errors)`."""
    counts = report.summary()
    total = counts["files"]
    parts = [f"{counts[v.value]} {v.value}" for v in Verdict if counts[v.value]]
    head = f"summary: {total} file{'s' if total != 1 else ''}"
    if parts:
        head += ": " + ", ".join(parts)
    return f"{head} ({counts['skipped']} skipped, {counts['errors']} errors)"


def _painter(color: bool) -> Paint:
    def paint(text: str, style: str) -> str:
        return f"{style}{text}{_RESET}" if color else text

    return paint


def _file_lines(file: FileReport, paint: Paint, docs: bool) -> list[str]:
    verdict = paint(file.verdict.value.upper(), _VERDICT_STYLE[file.verdict])
    details = [file.format]
    if file.pickles:
        details.append(f"{file.pickles} pickle{'s' if file.pickles != 1 else ''}")
        details.append(f"{file.opcodes} opcode{'s' if file.opcodes != 1 else ''}")
    lines = [f"{file.path}: {verdict} ({', '.join(details)})"]
    documented: set[str] = set()
    for finding in file.findings:
        # One docs link per rule and file: the same link after every unknown
        # global of a big model is noise.
        lines.extend(_finding_lines(finding, paint, docs and finding.rule not in documented))
        documented.add(finding.rule)
    if file.explanation is not None:
        lines.append("  what loading it would run (decompiled by fickling; read it, never run it):")
        lines.extend(f"    | {line}" for line in file.explanation.splitlines())
    return lines


def _finding_lines(f: Finding, paint: Paint, docs: bool) -> list[str]:
    where = f.location if f.offset is None else f"{f.location} @ offset {f.offset}"
    head = f"  {where}: {paint(f.rule, _BOLD)} {f.rule_name} [{f.severity.value}]"
    if f.count > 1:
        head += f" ({f.count} references)"
    lines = [head, f"    {f.message}"]
    if f.fix:
        lines.append(f"    fix: {f.fix}")
    if docs and f.rule.startswith("SL"):
        lines.append(paint(f"    docs: {rule_help(f.rule)}", _DIM))
    return lines
