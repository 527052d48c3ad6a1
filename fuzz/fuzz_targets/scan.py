"""Fuzz target: `safeload.scan_bytes` gives every input a verdict.

A defect is any exception, and an `internal-error` finding (SL312): the
scanner's last-resort net caught an exception that a reader should have
turned into a finding of its own.
"""

from __future__ import annotations

from safeload import Policy, Verdict
from safeload.scan import scan_bytes

POLICY = Policy.default()


def one(data: bytes) -> None:
    report = scan_bytes(data, POLICY, location="fuzz")
    for finding in report.findings:
        if finding.rule_name == "internal-error":
            raise AssertionError(f"internal error: {finding.message}")
    if not data and report.verdict is Verdict.SAFE:
        raise AssertionError("empty input judged safe")
