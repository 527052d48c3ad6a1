"""Fuzz target: `safeload.scan_bytes` gives every input a verdict.

A defect is any exception, and an `internal-error` finding (SL312): the
scanner's last-resort net caught an exception that a reader should have
turned into a finding of its own.

Allowlisted globals used outside their entry's scope (SL405) are refused
before the named checks and the load-cost estimate look at them; an input
with such findings is scanned again with those names allowed outright (as
`--allow NAME` does), so the checks and the estimate read what it builds.
"""

from __future__ import annotations

from safeload import Policy, Verdict
from safeload.scan import scan_bytes

POLICY = Policy.default()
_LIFTED: dict[frozenset[str], Policy] = {}


def _lifted(names: frozenset[str]) -> Policy:
    policy = _LIFTED.get(names)
    if policy is None:
        if len(_LIFTED) > 256:
            _LIFTED.clear()
        policy = _LIFTED[names] = Policy.build(allow=sorted(names))
    return policy


def _check(data: bytes, policy: Policy) -> list[str]:
    report = scan_bytes(data, policy, location="fuzz")
    for finding in report.findings:
        if finding.rule_name == "internal-error":
            raise AssertionError(f"internal error: {finding.message}")
    if not data and report.verdict is Verdict.SAFE:
        raise AssertionError("empty input judged safe")
    return [
        f.global_name
        for f in report.findings
        if f.rule_name == "out-of-scope-use" and f.global_name is not None
    ]


def one(data: bytes) -> None:
    out_of_scope = _check(data, POLICY)
    if out_of_scope:
        _check(data, _lifted(frozenset(out_of_scope)))
