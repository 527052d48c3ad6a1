"""`safeload rules suggest`: allow entries for the unknown globals of files a user trusts.

Only globals that no deny rule names and no allow pack lists are suggested
(`unknown-global` findings). A dangerous global is never suggested, whatever
the user trusts: it is listed as refused instead, with its rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..report import ScanReport, Verdict

__all__ = ["Suggestion", "suggest"]

UNKNOWN_GLOBAL = "unknown-global"


@dataclass
class Suggestion:
    """What to allow, and what must not be."""

    allow: dict[str, list[str]] = field(default_factory=dict)
    """`{global: ["file@offset (how it is used)", ...]}`, in the order first seen."""
    refused: dict[str, list[str]] = field(default_factory=dict)
    """Globals named by deny rules: `{global: ["file@offset (RULE-ID)", ...]}`."""
    unreadable: list[str] = field(default_factory=list)
    """Files whose verdict is `invalid`: nothing in them can be vouched for."""


def _where(location: str, offset: int | None) -> str:
    return f"{location}@{offset}" if offset is not None else location


def suggest(report: ScanReport) -> Suggestion:
    """Suggestions from a scan of trusted files."""
    out = Suggestion()
    for file in report.files:
        if file.verdict is Verdict.INVALID:
            out.unreadable.append(file.path)
        for finding in file.findings:
            if finding.global_name is None:
                continue
            seen = _where(finding.location, finding.offset)
            if finding.rule_name == UNKNOWN_GLOBAL:
                uses = f" ({', '.join(finding.usage)})" if finding.usage else ""
                out.allow.setdefault(finding.global_name, []).append(seen + uses)
            elif finding.verdict is Verdict.DANGEROUS or finding.verdict is Verdict.INVALID:
                out.refused.setdefault(finding.global_name, []).append(f"{seen} ({finding.rule})")
    for name in out.refused:
        out.allow.pop(name, None)
    return out
