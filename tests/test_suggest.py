"""`safeload rules suggest`: allow what trusted files use, never anything dangerous."""

from __future__ import annotations

import pickle
import tomllib
from pathlib import Path

import pytest

from safeload._cli import main


def unknown_pickle() -> bytes:
    """acme.models.Net() with state, then acme.layers:Block.make(), protocol 0 and 4."""
    old = b"(iacme.models\nNet\n(dp0\nVw\np1\nI1\nsb."
    new = b"\x80\x04\x8c\x0bacme.layers\x94\x8c\nBlock.make\x94\x93\x94)R\x94."
    return old + new


SYSTEM = b"cos\nsystem\n(S'echo hi'\ntR."


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_suggests_the_unknown_globals_with_where_they_were_seen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model.pkl"
    model.write_bytes(unknown_pickle())
    code, out, _err = run(capsys, "rules", "suggest", str(model))
    assert code == 0
    data = tomllib.loads(out)
    assert data["allow"] == ["acme.models.Net", "acme.layers:Block.make"]
    assert f"{model}@1 (called, state)" in out
    assert f"{model}@64 (called)" in out
    rules = tmp_path / "suggested.toml"
    rules.write_text(out)
    assert run(capsys, "scan", str(model))[0] == 1
    assert run(capsys, "scan", "--rules", str(rules), str(model))[0] == 0


def test_never_suggests_a_dangerous_global(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model.pkl"
    model.write_bytes(unknown_pickle())
    hostile = tmp_path / "hostile.pkl"
    hostile.write_bytes(SYSTEM)
    code, out, _err = run(capsys, "rules", "suggest", str(model), str(hostile))
    assert code == 1  # something the user called trusted is not
    data = tomllib.loads(out)
    assert "os.system" not in data["allow"]
    assert data["allow"] == ["acme.models.Net", "acme.layers:Block.make"]
    assert f"#   os.system: {hostile}@0 (SL101)" in out


def test_benign_files_need_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    code, out, _err = run(capsys, "rules", "suggest", str(plain))
    assert code == 0
    assert tomllib.loads(out)["allow"] == []


def test_needs_files(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "rules", "suggest")
    assert code == 2
    assert "needs the files you trust" in err
