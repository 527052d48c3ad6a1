"""What a team has already reviewed: `--ignore RULE` and baseline files.

Both only ever take away findings that do not make a file dangerous: a rule
whose verdict is `dangerous` cannot be ignored, and a baseline never records
(nor forgives) a dangerous or invalid finding. A file's verdict is then
recomputed from the findings left, so a file whose every finding is forgiven
is reported `safe`, and the file's other findings still count.

A baseline file (`safeload scan --write-baseline FILE`, then `--baseline
FILE`) lists each forgiven finding by path (relative to the baseline file's
folder), rule, global and member, never by byte offset, so re-saving a model
with the same reviewed globals still matches; a new global is a new finding.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import PolicyError
from ..policy import Policy, Rule
from ..report import FileReport, Finding, ScanReport, Verdict

__all__ = ["BASELINE_VERSION", "Baseline", "ignorable", "without"]

BASELINE_VERSION = 1
_FORGIVABLE = frozenset({Verdict.UNKNOWN, Verdict.NOT_A_PICKLE, None})
"""Verdicts a baseline or --ignore may take away: unknown and not-a-pickle findings
(which fail only under --strict), and notes."""


def ignorable(policy: Policy, names: Iterable[str]) -> frozenset[str]:
    """The rule IDs of `names` (IDs or slugs, any case); PolicyError for an
    unknown rule or one that decides a dangerous or invalid verdict."""
    ids: set[str] = set()
    for name in names:
        rule = lookup(policy, name)
        if rule.verdict is not None and rule.verdict not in _FORGIVABLE:
            raise PolicyError(
                f"--ignore {name}: {rule.id} {rule.name} makes a file {rule.verdict.value}, "
                "and such findings cannot be ignored; allow a reviewed global with --allow, "
                "or remove the file"
            )
        ids.add(rule.id)
    return frozenset(ids)


def lookup(policy: Policy, name: str) -> Rule:
    """A rule by ID or slug, in any case (`sl401`, `Unknown-Global`)."""
    for candidate in (name, name.upper(), name.lower()):
        try:
            return policy.rule(candidate)
        except KeyError:
            continue
    raise PolicyError(f"no rule {name!r} (see `safeload rules`)")


def _key(file: FileReport, finding: Finding, base: Path) -> tuple[str, str, str, str]:
    path = Path(os.path.relpath(os.path.abspath(file.path), base)).as_posix()
    member = (
        finding.location[len(file.path) + 1 :]
        if finding.location.startswith(file.path + ":")
        else ""
    )
    return (path, finding.rule, finding.global_name or "", member)


@dataclasses.dataclass(frozen=True)
class Baseline:
    """Reviewed findings: (path, rule, global, member) keys, paths relative to `base`."""

    base: Path
    keys: frozenset[tuple[str, str, str, str]]

    @classmethod
    def read(cls, path: Path) -> Baseline:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise PolicyError(f"cannot read baseline {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise PolicyError(f"baseline {path} is not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("version") != BASELINE_VERSION:
            raise PolicyError(f"baseline {path}: not a safeload baseline of version 1")
        keys = set()
        for entry in data.get("findings", []):
            try:
                keys.add(
                    (
                        str(entry["path"]),
                        str(entry["rule"]),
                        str(entry.get("global") or ""),
                        str(entry.get("member") or ""),
                    )
                )
            except (KeyError, TypeError):
                raise PolicyError(f"baseline {path}: malformed entry {entry!r}") from None
        return cls(Path(os.path.abspath(path)).parent, frozenset(keys))

    @staticmethod
    def render(report: ScanReport, path: Path) -> tuple[str, int]:
        """The baseline of `report`'s forgivable findings, written for `path`; and how
        many findings were left out because they are dangerous or invalid."""
        base = Path(os.path.abspath(path)).parent
        entries = []
        refused = 0
        for file in report.files:
            for finding in file.findings:
                if finding.verdict not in _FORGIVABLE:
                    refused += 1
                    continue
                p, rule, name, member = _key(file, finding, base)
                entry = {"path": p, "rule": rule, "global": name or None}
                if member:
                    entry["member"] = member
                entries.append(entry)
        unique = {json.dumps(e, sort_keys=True): e for e in entries}
        data = {
            "version": BASELINE_VERSION,
            "tool": "safeload",
            "comment": "Findings reviewed and accepted; `safeload scan --baseline` reports "
            "only new ones. Dangerous and invalid findings are never recorded.",
            "findings": [unique[k] for k in sorted(unique)],
        }
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n", refused

    def forgives(self, file: FileReport, finding: Finding) -> bool:
        return finding.verdict in _FORGIVABLE and _key(file, finding, self.base) in self.keys


def without(
    report: ScanReport, ignored: frozenset[str] = frozenset(), baseline: Baseline | None = None
) -> tuple[ScanReport, int]:
    """`report` without ignored and baselined findings, verdicts recomputed; and how
    many findings were taken away."""
    if not ignored and baseline is None:
        return report, 0
    removed = 0
    files = []
    for file in report.files:
        kept = tuple(
            f
            for f in file.findings
            if f.verdict not in _FORGIVABLE
            or not (f.rule in ignored or (baseline is not None and baseline.forgives(file, f)))
        )
        if len(kept) == len(file.findings):
            files.append(file)
            continue
        removed += len(file.findings) - len(kept)
        verdict = Verdict.worst([f.verdict for f in kept if f.verdict is not None])
        files.append(dataclasses.replace(file, findings=kept, verdict=verdict))
    return dataclasses.replace(report, files=tuple(files)), removed
