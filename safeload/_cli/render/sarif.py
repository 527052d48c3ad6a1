"""SARIF 2.1.0 for GitHub code scanning.

One run; every rule of the policy in `tool.driver.rules` with a stable ID,
`security-severity` and a help link; one result per finding, located by a
URI relative to the source root (`%SRCROOT%`) and carrying its own
`partialFingerprints` so alerts survive unrelated edits.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ... import __version__
from ...policy import Policy, Rule
from ...report import FileReport, Finding, ScanReport, Severity, Verdict

__all__ = ["SCHEMA_URI", "SECURITY_SEVERITY", "render"]

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"

SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.NOTE: "0.0",
}
_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.NOTE: "note",
}
_FINGERPRINT_KEY = "safeloadFinding/v1"


def render(report: ScanReport, policy: Policy, *, root: Path | None = None) -> str:
    """`report` as a SARIF log; paths are made relative to `root` (default: cwd)."""
    base = Path(os.path.abspath(root or Path.cwd()))
    rules = sorted(policy.rules.values(), key=lambda r: r.id)
    index = {rule.id: i for i, rule in enumerate(rules)}
    results = [
        _result(file, finding, index, base) for file in report.files for finding in file.findings
    ]
    notifications = [
        {
            "level": "error",
            "message": {"text": f"{path}: {reason}"},
            "locations": [{"physicalLocation": {"artifactLocation": _artifact(path, base)}}],
        }
        for path, reason in report.errors.items()
    ]
    log = {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "safeload",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "rules": [_rule(rule) for rule in rules],
                    }
                },
                "invocations": [
                    {
                        "executionSuccessful": not report.errors,
                        "toolExecutionNotifications": notifications,
                    }
                ],
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2, ensure_ascii=False) + "\n"


def _rule(rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": rule.id,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.why},
        "help": {
            "text": f"{rule.why}\n\nFix: {rule.fix}" if rule.fix else rule.why,
            "markdown": f"{rule.why}\n\n**Fix:** {rule.fix}" if rule.fix else rule.why,
        },
        "defaultConfiguration": {"level": _LEVEL[rule.severity]},
        "properties": {
            "security-severity": SECURITY_SEVERITY[rule.severity],
            "tags": ["security", "external/cwe/cwe-502", rule.name],
            "precision": "high",
        },
    }
    return out


def _artifact(path: str, base: Path) -> dict[str, str]:
    scheme, sep, _rest = path.partition("://")
    if sep and scheme.isascii() and scheme[:1].isalpha() and "/" not in scheme:
        return {"uri": path}  # a remote file (`safeload scan URL`): its URL as it is
    absolute = Path(os.path.abspath(path))
    try:
        relative = absolute.relative_to(base)
    except ValueError:
        return {"uri": absolute.as_uri()}
    return {"uri": quote(relative.as_posix()), "uriBaseId": "%SRCROOT%"}


def _result(file: FileReport, f: Finding, index: dict[str, int], base: Path) -> dict[str, Any]:
    artifact = _artifact(file.path, base)
    member = f.location[len(file.path) + 1 :] if f.location.startswith(file.path + ":") else ""
    # GitHub needs `startLine` to place an alert; a model file has no lines,
    # so every result sits on line 1 and the byte offset says where exactly.
    region: dict[str, int] = {"startLine": 1}
    if f.offset is not None and not member:
        region["byteOffset"] = f.offset
    physical: dict[str, Any] = {"artifactLocation": artifact, "region": region}
    text = f.message
    if member:
        text = (
            f"in {member}"
            + (f" at offset {f.offset}" if f.offset is not None else "")
            + f": {text}"
        )
    if f.count > 1:
        text += f" ({f.count} references)"
    if f.fix:
        text += f". Fix: {f.fix}"
    location: dict[str, Any] = {"physicalLocation": physical}
    if member:
        location["logicalLocations"] = [{"fullyQualifiedName": member, "kind": "member"}]
    result: dict[str, Any] = {
        "ruleId": f.rule,
        "level": _result_level(f),
        "message": {"text": text},
        "locations": [location],
        "partialFingerprints": {_FINGERPRINT_KEY: _fingerprint(f, artifact["uri"], member)},
    }
    if f.rule in index:
        result["ruleIndex"] = index[f.rule]
    return result


def _result_level(f: Finding) -> str:
    """Notes and not-a-pickle findings are `note`: neither fails a scan by default
    (with --strict the exit code fails it, not the SARIF level)."""
    if f.verdict is None or f.verdict is Verdict.NOT_A_PICKLE:
        return "note"
    return _LEVEL[f.severity]


def _fingerprint(f: Finding, uri: str, member: str) -> str:
    key = "\0".join([f.rule, uri, member, f.global_name or "", str(f.offset)])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
