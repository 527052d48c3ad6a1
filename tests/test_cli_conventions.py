"""CLI conventions (issue 10): help, rule IDs in any case, errors on stderr, plurals, extras."""

from __future__ import annotations

import json
import pickle
import tomllib
from pathlib import Path

import pytest

from safeload._cli import _parser, main

ROOT = Path(__file__).resolve().parent.parent


def test_top_level_help_describes_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    action = _parser()._subparsers._group_actions[0]  # type: ignore[union-attr]
    commands = list(action.choices or ())
    assert set(commands) == {
        "scan",
        "rules",
        "demo",
        "keygen",
        "sign",
        "verify",
        "check-signatures",
    }
    description = " ".join(out.split())
    for name in commands:
        assert f"`{name}`" in description, name  # named in the description, not only listed
    assert "Exit codes" in description and "[tool.safeload]" in description


@pytest.mark.parametrize(
    "name", ["SL101", "sl101", "Sl101", "command-execution", "COMMAND-EXECUTION"]
)
def test_rule_ids_are_case_insensitive(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "--no-config", name]) == 0
    assert capsys.readouterr().out.startswith("SL101 command-execution")


def test_unknown_rule_is_an_error_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "--no-config", "SL999"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "no rule 'SL999'" in captured.err


@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
def test_errors_go_to_stderr_in_every_output_mode(
    fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps([1]))
    assert main(["scan", "--no-config", "--format", fmt, "ok.pkl", "missing.pkl"]) == 2
    err = capsys.readouterr().err
    assert "safeload: error: missing.pkl: no such file or directory" in err


def test_counts_are_pluralized(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps([1]))
    main(["scan", "--no-config", "ok.pkl", "missing.pkl"])
    assert capsys.readouterr().out.splitlines()[-1] == (
        "summary: 1 file: 1 safe (0 skipped, 1 error)"
    )
    main(["scan", "--no-config", "ok.pkl", "missing.pkl", "gone.pkl"])
    assert capsys.readouterr().out.splitlines()[-1].endswith("(0 skipped, 2 errors)")


def test_compress_extra_and_joblib_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    compress = {r.split(">")[0].split("=")[0] for r in project["optional-dependencies"]["compress"]}
    assert compress == {"lz4", "zstandard"}
    # safeload.load reads joblib files with joblib's unpickler; dump writes them
    assert any(r.startswith("joblib") for r in project["dependencies"])


def test_json_output_is_not_mixed_with_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["scan", "--no-config", "--format", "json", "missing.pkl"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["errors"] == {"missing.pkl": "no such file or directory"}
