"""The versioned JSON report: `{"version": 2, "files": [...], "summary": {...}}`
(`report.CONTRACT_VERSION`)."""

from __future__ import annotations

import json

from ...report import ScanReport

__all__ = ["render"]


def render(report: ScanReport) -> str:
    """`report` as indented JSON, ending in a newline; skipped paths are listed too."""
    data = report.to_json()
    data.setdefault("skipped", list(report.skipped))
    if report.skip_reasons:
        data["skipped_reasons"] = dict(report.skip_reasons)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
