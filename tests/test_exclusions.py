"""`scan --exclude`, `--ignore RULE`, baselines, and quiet output that lists only failing files."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from safeload._cli import main

# posix.system('echo hi') at protocol 2 (GLOBAL, BINUNICODE, TUPLE1, REDUCE).
HOSTILE = b"\x80\x02cposix\nsystem\nX\x07\x00\x00\x00echo hi\x85R."
# mylib.models.TinyNet() at protocol 2: unknown.
UNKNOWN = b"\x80\x02cmylib.models\nTinyNet\n)\x81."
OTHER_UNKNOWN = b"\x80\x02cmylib.models\nBigNet\n)\x81."


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "ok.pkl").write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    (tmp_path / "models" / "custom.pkl").write_bytes(UNKNOWN)
    (tmp_path / "tests" / "fixtures").mkdir(parents=True)
    (tmp_path / "tests" / "fixtures" / "evil.pkl").write_bytes(HOSTILE)
    return tmp_path


def scan_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    code = main(["scan", "--format", "json", *argv])
    return code, json.loads(capsys.readouterr().out)


def names(report: dict) -> dict[str, str]:  # type: ignore[type-arg]
    return {Path(f["path"]).name: f["verdict"] for f in report["files"]}


def test_exclude_flag_leaves_out_matching_paths(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = scan_json(capsys, ".")
    assert code == 1 and names(report)["evil.pkl"] == "dangerous"
    code, report = scan_json(
        capsys, "--exclude", "tests/fixtures/*", "--exclude", "custom.pkl", "."
    )
    assert code == 0
    assert names(report) == {"ok.pkl": "safe"}
    assert sorted(Path(p).name for p in report["skipped"]) >= ["custom.pkl", "evil.pkl"]


def test_exclude_in_config_and_flag_add_up(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "pyproject.toml").write_text('[tool.safeload]\nexclude = ["tests/*"]\n')
    code, report = scan_json(capsys, ".")
    assert "evil.pkl" not in names(report) and names(report)["custom.pkl"] == "unknown"
    code, report = scan_json(capsys, "--exclude", "models/custom.pkl", ".")
    assert code == 0 and names(report) == {"ok.pkl": "safe"}


@pytest.mark.parametrize("rule", ["SL401", "sl401", "unknown-global", "Unknown-Global"])
def test_ignore_unknown_rule_any_case(
    rule: str, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = scan_json(capsys, "--ignore", rule, "models")
    assert code == 0
    assert names(report) == {"ok.pkl": "safe", "custom.pkl": "safe"}


@pytest.mark.parametrize("rule", ["SL101", "command-execution", "sl120", "SL301"])
def test_ignoring_a_rule_that_decides_dangerous_or_invalid_is_refused(
    rule: str, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", "--ignore", rule, "tests"]) == 2
    err = capsys.readouterr().err
    assert "cannot be ignored" in err and f"--ignore {rule}" in err


def test_ignore_unknown_name_is_a_usage_error(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", "--ignore", "SL999", "models"]) == 2
    assert "no rule 'SL999'" in capsys.readouterr().err


def test_baseline_fails_only_on_new_findings(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = repo / "safeload-baseline.json"
    assert main(["scan", "--write-baseline", str(baseline), "models"]) == 0
    err = capsys.readouterr().err
    assert "wrote baseline" in err
    data = json.loads(baseline.read_text())
    assert data["version"] == 1
    assert data["findings"] == [
        {"path": "models/custom.pkl", "rule": "SL401", "global": "mylib.models.TinyNet"}
    ]
    # The reviewed file passes; re-saving it with the same global still matches.
    assert main(["scan", "--baseline", str(baseline), "models"]) == 0
    out = capsys.readouterr().out
    assert "1 finding ignored or in the baseline" in out
    (repo / "models" / "custom.pkl").write_bytes(b"\x80\x04" + UNKNOWN[2:])
    assert main(["scan", "--baseline", str(baseline), "models"]) == 0
    capsys.readouterr()
    # A new global in the same file, or a new file, fails.
    (repo / "models" / "custom.pkl").write_bytes(OTHER_UNKNOWN)
    code, report = scan_json(capsys, "--baseline", str(baseline), "models")
    assert code == 1 and names(report)["custom.pkl"] == "unknown"
    (repo / "models" / "custom.pkl").write_bytes(UNKNOWN)
    (repo / "models" / "new.pkl").write_bytes(UNKNOWN)
    code, report = scan_json(capsys, "--baseline", str(baseline), "models")
    assert code == 1 and names(report) == {
        "ok.pkl": "safe",
        "custom.pkl": "safe",
        "new.pkl": "unknown",
    }


def test_baseline_never_records_dangerous_findings(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = repo / "b.json"
    assert main(["scan", "--write-baseline", str(baseline), "."]) == 1
    assert "1 dangerous or invalid finding not recorded" in capsys.readouterr().err
    assert all(f["rule"] != "SL101" for f in json.loads(baseline.read_text())["findings"])
    assert main(["scan", "--baseline", str(baseline), "."]) == 1
    assert "evil.pkl: DANGEROUS" in capsys.readouterr().out


def test_bad_baseline_is_a_usage_error(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "b.json").write_text("[1, 2]")
    assert main(["scan", "--baseline", "b.json", "models"]) == 2
    assert "not a safeload baseline" in capsys.readouterr().err
    assert main(["scan", "--baseline", "missing.json", "models"]) == 2
    assert "cannot read baseline missing.json" in capsys.readouterr().err


def test_quiet_lists_only_failing_files_and_one_summary(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", "--quiet", "--fail-on", "dangerous", "."]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("evil.pkl: DANGEROUS (pickle, 1 pickle, 6 opcodes)")
    assert not any("custom.pkl" in line or "ok.pkl" in line for line in out)
    assert [line for line in out if line.startswith("summary:")] == [out[-1]]
    assert out[-1] == "summary: 3 files: 1 safe, 1 unknown, 1 dangerous (1 skipped, 0 errors)"


# -- symlinks ----------------------------------------------------------------------


@pytest.fixture
def linked(repo: Path) -> Path:
    (repo / "elsewhere").mkdir()
    (repo / "elsewhere" / "evil.pkl").write_bytes(HOSTILE)
    (repo / "models" / "linked").symlink_to(repo / "elsewhere", target_is_directory=True)
    (repo / "models" / "up").symlink_to(repo / "models", target_is_directory=True)
    return repo


def test_symlinked_directory_is_listed_as_skipped_with_the_reason(
    linked: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", "models"]) == 1  # custom.pkl is unknown
    out = capsys.readouterr().out
    assert "models/linked: SKIPPED: symlinked directory, not followed (--follow-symlinks" in out
    assert "evil.pkl" not in out
    _code, report = scan_json(capsys, "models")
    assert report["skipped_reasons"]["models/linked"].startswith("symlinked directory")


def test_follow_symlinks_follows_and_detects_loops(
    linked: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = scan_json(capsys, "--follow-symlinks", "models")
    assert code == 1
    assert names(report)["evil.pkl"] == "dangerous"  # reached through models/linked
    assert report["skipped_reasons"]["models/up"].startswith("symlink loop")
    assert [f["path"] for f in report["files"]].count("models/ok.pkl") == 1


def test_symlink_loop_on_the_command_line_says_so(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "a.pkl").symlink_to(repo / "b.pkl")
    (repo / "b.pkl").symlink_to(repo / "a.pkl")
    (repo / "dangling.pkl").symlink_to(repo / "gone.pkl")
    assert main(["scan", "a.pkl", "dangling.pkl"]) == 2
    out = capsys.readouterr().out
    assert "a.pkl: ERROR: symlink loop" in out
    assert "dangling.pkl: ERROR: dangling symlink to" in out
    assert "no such file" not in out
