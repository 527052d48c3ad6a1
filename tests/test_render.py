"""Renderers: text (torch-style messages), the JSON contract, SARIF 2.1.0 structure."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
from pathlib import Path
from typing import Any

import pytest

import safeload
from safeload import FileReport, Finding, Policy, ScanReport, Severity, Verdict
from safeload._cli.render import json as json_render
from safeload._cli.render import rule_help, sarif, text
from safeload.scan import scan_bytes

# builtins.eval('1+1') at protocol 0, opcode by opcode.
EVAL = b"cbuiltins\neval\n(V1+1\ntR."
EVAL_OFFSET = 0
# os.system twice and an unknown global, protocol 2 (GLOBAL, GLOBAL, GLOBAL).
TWICE = (
    b"\x80\x02"
    b"cos\nsystem\nX\x01\x00\x00\x00a\x85R0"  # os.system('a'), POP
    b"cos\nsystem\nX\x01\x00\x00\x00b\x85R0"  # os.system('b'), POP
    b"cmylib\nThing\n)R."  # mylib.Thing()
)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.default()


def scanned(data: bytes, path: str, policy: Policy) -> FileReport:
    return scan_bytes(data, policy, location=path)


def benign(path: str, policy: Policy) -> FileReport:
    return scanned(pickle.dumps({"a": [1, 2.5, "x"]}), path, policy)


# -- text ---------------------------------------------------------------------


def test_text_dangerous_finding_layout(policy: Policy) -> None:
    report = ScanReport(files=(scanned(EVAL, "models/evil.pkl", policy),))
    lines = text.render(report).splitlines()
    assert lines[0] == "models/evil.pkl: DANGEROUS (pickle, 1 pickle, 6 opcodes)"
    assert lines[1] == f"  models/evil.pkl @ offset {EVAL_OFFSET}: SL102 code-evaluation [critical]"
    assert lines[2].startswith("    builtins.eval called with ('1+1',): ")
    assert lines[3] == "    fix: Do not load this file."
    assert lines[4] == f"    docs: {rule_help('SL102')}"
    assert lines[5] == "summary: 1 file: 1 dangerous (0 skipped, 0 errors)"
    assert len(lines) == 6


def test_text_counts_references_and_gives_allow_fix(policy: Policy) -> None:
    file = scanned(TWICE, "a.pkl", policy)
    out = text.render(ScanReport(files=(file,)), docs=False)
    assert "SL101 command-execution [critical] (2 references)" in out
    assert "fix: if you trust the code that defines it: --allow 'mylib.Thing'" in out
    assert "docs:" not in out


def test_text_summary_and_quiet(policy: Policy) -> None:
    report = ScanReport(
        files=(benign("ok.pkl", policy), scanned(EVAL, "bad.pkl", policy)),
        skipped=("README.md",),
        errors={"gone.pkl": "no such file or directory"},
    )
    out = text.render(report)
    assert "ok.pkl: SAFE" in out
    assert "gone.pkl: ERROR: no such file or directory" in out
    assert out.endswith("summary: 2 files: 1 safe, 1 dangerous (1 skipped, 1 error)\n")
    quiet = text.render(report, quiet=True)
    assert "ok.pkl" not in quiet
    assert "bad.pkl: DANGEROUS" in quiet
    assert text.summary_line(ScanReport(files=())) == "summary: 0 files (0 skipped, 0 errors)"


def test_text_colour_only_on_request(policy: Policy) -> None:
    report = ScanReport(files=(scanned(EVAL, "bad.pkl", policy), benign("ok.pkl", policy)))
    plain = text.render(report)
    coloured = text.render(report, color=True)
    assert "\x1b[" not in plain
    assert "\x1b[1;31mDANGEROUS\x1b[0m" in coloured
    assert "\x1b[32mSAFE\x1b[0m" in coloured
    # Colour changes nothing but the escapes.
    import re

    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain


def test_text_shows_explanation_block(policy: Policy) -> None:
    file = dataclasses.replace(
        scanned(EVAL, "bad.pkl", policy),
        explanation="from builtins import eval\n_var0 = eval('1+1')",
    )
    out = text.render(ScanReport(files=(file,)))
    assert "    | from builtins import eval\n    | _var0 = eval('1+1')\n" in out


def test_text_member_location_and_no_offset() -> None:
    finding = Finding(
        rule="SL305",
        rule_name="not-a-pickle",
        severity=Severity.MEDIUM,
        verdict=Verdict.INVALID,
        message="the file is empty",
        location="bundle.zip:archive/data.pkl",
        offset=None,
        fix="Check that the file is the model you expect.",
    )
    file = FileReport("bundle.zip", Verdict.INVALID, "pickle+zip", (finding,))
    lines = text.render(ScanReport(files=(file,))).splitlines()
    assert lines[0] == "bundle.zip: INVALID (pickle+zip)"
    assert lines[1] == "  bundle.zip:archive/data.pkl: SL305 not-a-pickle [medium]"


# -- JSON ---------------------------------------------------------------------


def test_json_matches_the_contract(policy: Policy) -> None:
    report = ScanReport(
        files=(benign("ok.pkl", policy), scanned(TWICE, "bad.pkl", policy)),
        skipped=("notes.txt",),
    )
    data = json.loads(json_render.render(report))
    assert data["version"] == 2
    assert set(data) >= {"version", "files", "summary"}
    assert data["skipped"] == ["notes.txt"]
    assert data["summary"] == {
        "safe": 1,
        "not-a-pickle": 0,
        "unknown": 0,
        "invalid": 0,
        "dangerous": 1,
        "files": 2,
        "skipped": 1,
        "errors": 0,
    }
    bad = data["files"][1]
    assert (bad["path"], bad["verdict"], bad["format"]) == ("bad.pkl", "dangerous", "pickle")
    rules = [(f["rule"], f["global"], f["severity"]) for f in bad["findings"]]
    assert rules == [("SL101", "os.system", "critical"), ("SL401", "mylib.Thing", "medium")]
    system = bad["findings"][0]
    assert system["offset"] == TWICE.index(b"cos")
    assert system["location"] == "bad.pkl"
    assert isinstance(system["message"], str)
    assert system["count"] == 2


def test_json_ends_with_newline_and_keeps_unicode(policy: Policy) -> None:
    out = json_render.render(ScanReport(files=(benign("modèle.pkl", policy),)))
    assert out.endswith("}\n")
    assert "modèle.pkl" in out


# -- SARIF --------------------------------------------------------------------


def sarif_log(report: ScanReport, policy: Policy, root: Path) -> dict[str, Any]:
    log: dict[str, Any] = json.loads(sarif.render(report, policy, root=root))
    return log


def test_sarif_structure(policy: Policy, tmp_path: Path) -> None:
    path = str(tmp_path / "sub dir" / "bad.pkl")
    report = ScanReport(
        files=(scanned(TWICE, path, policy), benign(str(tmp_path / "ok.pkl"), policy))
    )
    log = sarif_log(report, policy, tmp_path)
    assert log["$schema"] == sarif.SCHEMA_URI
    assert log["version"] == "2.1.0"
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "safeload"
    assert driver["version"] == safeload.__version__
    ids = [r["id"] for r in driver["rules"]]
    assert ids == sorted(policy.rules)
    for rule in driver["rules"]:
        builtin = policy.rules[rule["id"]]
        assert rule["name"] == builtin.name
        assert rule["shortDescription"]["text"] == builtin.summary
        assert rule["fullDescription"]["text"] == builtin.why
        assert builtin.fix in rule["help"]["text"]
        assert "helpUri" not in rule  # no published docs URL: the help text is inline
        assert rule["properties"]["security-severity"] == sarif.SECURITY_SEVERITY[builtin.severity]
        assert "security" in rule["properties"]["tags"]
    assert sarif.SECURITY_SEVERITY == {
        Severity.CRITICAL: "9.5",
        Severity.HIGH: "8.0",
        Severity.MEDIUM: "5.5",
        Severity.LOW: "3.0",
        Severity.NOTE: "0.0",
    }
    results = run["results"]
    assert [r["ruleId"] for r in results] == ["SL101", "SL401"]
    for result in results:
        assert driver["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
        (location,) = result["locations"]
        artifact = location["physicalLocation"]["artifactLocation"]
        assert artifact == {"uri": "sub%20dir/bad.pkl", "uriBaseId": "%SRCROOT%"}
        assert result["message"]["text"]
    assert [r["level"] for r in results] == ["error", "warning"]
    assert results[0]["locations"][0]["physicalLocation"]["region"] == {
        "startLine": 1,
        "byteOffset": TWICE.index(b"cos"),
    }
    assert "(2 references)" in results[0]["message"]["text"]
    assert run["invocations"] == [{"executionSuccessful": True, "toolExecutionNotifications": []}]


def test_sarif_fingerprints_are_stable_and_distinct(policy: Policy, tmp_path: Path) -> None:
    def fingerprints(path: str, data: bytes) -> list[str]:
        log = sarif_log(ScanReport(files=(scanned(data, path, policy),)), policy, tmp_path)
        return [r["partialFingerprints"]["safeloadFinding/v1"] for r in log["runs"][0]["results"]]

    here = str(tmp_path / "bad.pkl")
    first = fingerprints(here, TWICE)
    assert first == fingerprints(here, TWICE)
    assert len(set(first)) == 2
    assert all(len(f) == 32 for f in first)
    assert set(first).isdisjoint(fingerprints(str(tmp_path / "other.pkl"), TWICE))
    # The same path given relative to the root hashes the same.
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert fingerprints("bad.pkl", TWICE) == first
    finally:
        os.chdir(cwd)


def test_sarif_paths_outside_root_and_errors(policy: Policy, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    outside = tmp_path / "elsewhere.pkl"
    report = ScanReport(
        files=(scanned(EVAL, str(outside), policy),),
        errors={str(root / "gone.pkl"): "no such file or directory"},
    )
    run = sarif_log(report, policy, root)["runs"][0]
    artifact = run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert artifact == {"uri": outside.as_uri()}
    (invocation,) = run["invocations"]
    assert invocation["executionSuccessful"] is False
    (note,) = invocation["toolExecutionNotifications"]
    assert note["level"] == "error"
    assert "no such file or directory" in note["message"]["text"]
    assert note["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "gone.pkl"


def test_sarif_member_findings_use_logical_locations(policy: Policy, tmp_path: Path) -> None:
    finding = Finding(
        rule="SL101",
        rule_name="command-execution",
        severity=Severity.CRITICAL,
        verdict=Verdict.DANGEROUS,
        message="os.system called",
        location="model.pt:archive/data.pkl",
        offset=12,
        global_name="os.system",
        fix="Do not load this file.",
    )
    note = dataclasses.replace(finding, rule="SL901", rule_name="zero-padding", verdict=None,
                               severity=Severity.NOTE, location="model.pt", offset=40)  # fmt: skip
    file = FileReport("model.pt", Verdict.DANGEROUS, "pickle+zip", (finding, note))
    results = sarif_log(ScanReport(files=(file,)), policy, Path.cwd())["runs"][0]["results"]
    location = results[0]["locations"][0]
    # The offset is inside the member, not the file: only the line GitHub needs.
    assert location["physicalLocation"]["region"] == {"startLine": 1}
    assert location["logicalLocations"] == [
        {"fullyQualifiedName": "archive/data.pkl", "kind": "member"}
    ]
    assert results[0]["message"]["text"].startswith("in archive/data.pkl at offset 12: ")
    assert results[1]["level"] == "note"
    assert results[1]["locations"][0]["physicalLocation"]["region"] == {
        "startLine": 1,
        "byteOffset": 40,
    }


def test_sarif_user_rules_are_listed(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nid = "ACME001"\nname = "thing"\nseverity = "low"\nwhy = "Thing is odd."\n'
        'globals = ["mylib.Thing"]\n'
    )
    policy = Policy.build(rule_files=[rules])
    log = sarif_log(ScanReport(files=(scanned(TWICE, "x.pkl", policy),)), policy, tmp_path)
    run = log["runs"][0]
    acme = next(r for r in run["tool"]["driver"]["rules"] if r["id"] == "ACME001")
    assert acme["properties"]["security-severity"] == "3.0"
    assert "helpUri" not in acme
    assert [r["ruleId"] for r in run["results"]] == ["SL101", "ACME001"]
    assert run["results"][1]["level"] == "note"


def test_text_links_each_rule_once_per_file(policy: Policy) -> None:
    # Three different unknown globals, one dangerous one: SL401 is linked once.
    data = (
        b"\x80\x02"
        b"cmylib\nA\n)R0cmylib\nB\n)R0cmylib\nC\n)R0"  # mylib.A(), mylib.B(), mylib.C()
        b"cos\nsystem\nX\x01\x00\x00\x00a\x85R."  # os.system('a')
    )
    out = text.render(ScanReport(files=(scanned(data, "m.pkl", policy),)))
    assert out.count("SL401 unknown-global") == 3
    assert out.count(f"docs: {rule_help('SL401')}") == 1
    assert out.count(f"docs: {rule_help('SL101')}") == 1
    assert out.count("--allow 'mylib.") == 3
