"""`safeload demo`: scan, sign and verify, guarded load, on a real scikit-learn model.

The demo exits 0 only when every step behaved as shown; the hostile files it
writes are real (the plain loader creates the canary), and a demo whose
guarded loader let a payload run, or whose model failed to load, exits 1.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from safeload._cli import demo as demo_module
from safeload._cli import main


def test_demo_shows_all_three_parts_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "demo"
    assert main(["demo", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "holds a scikit-learn LogisticRegression fitted on iris" in out
    assert f"{folder / 'model.joblib'}: SAFE (joblib, 1 pickle, " in out
    assert f"{folder / 'model-hostile.pkl'}: DANGEROUS" in out
    assert "SL102 code-evaluation [critical]" in out
    assert f"{folder / 'weights-hostile.pkl'}: DANGEROUS" in out
    assert "SL120 file-write [high]" in out
    assert "[ok ] verify model.joblib: signature valid" in out
    assert (
        "[ok ] verify tampered/model.joblib (one bit changed): refused: DigestMismatchError" in out
    )
    assert "[ok ] safeload.load(model.joblib): loaded LogisticRegression; predict(" in out
    assert "[ok ] safeload.load(tampered copy): refused" in out
    assert "refused: builtins.exec" in out
    assert "refused: numpy.lib.format.open_memmap" in out
    assert "never created: no payload ran" in out
    assert "UNEXPECTED" not in out
    assert out.count("[ok ]") == 8
    assert not (folder / demo_module.CANARY_NAME).exists()
    assert (folder / "model.joblib.sig").exists()


@pytest.mark.parametrize("name", ["model-hostile.pkl", "weights-hostile.pkl"])
def test_demo_hostile_files_are_real(name: str, tmp_path: Path) -> None:
    """Under plain pickle.load (in a child process) each payload creates the canary."""
    folder = tmp_path / "demo"
    demo_module.run(folder)
    canary = folder / demo_module.CANARY_NAME
    assert not canary.exists()
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import pickle,sys; pickle.load(open(sys.argv[1], 'rb'))",
            str(folder / name),
        ],
        check=True,
        cwd=tmp_path,
        capture_output=True,
    )
    assert canary.exists()


def test_demo_in_a_temporary_directory(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "\nmodel.joblib: SAFE" in out
    assert "\nmodel-hostile.pkl: DANGEROUS" in out
    assert "temporary directory" in out


def test_demo_exits_1_when_a_step_misbehaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """If `load` were the plain joblib.load, the hostile files' payloads would run: the
    demo must say which steps did not behave, and fail."""
    import joblib  # type: ignore[import-untyped, unused-ignore]

    def plain_load(path: Path, **_: object) -> object:
        return joblib.load(path)

    monkeypatch.setattr(sys.modules["safeload.load"], "load", plain_load)
    assert main(["demo", str(tmp_path / "demo")]) == 1
    out = capsys.readouterr().out
    assert "[UNEXPECTED] canary CANARY-payload-ran.txt: CREATED: a payload ran" in out
    assert "[UNEXPECTED] safeload.load(model-hostile.pkl, require_signature=False): loaded" in out
    assert "demo: UNEXPECTED:" in out


def test_demo_without_scikit_learn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import now raises ImportError
    assert main(["demo", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "model.joblib holds a plain Python dict (scikit-learn is not installed)" in out
    assert f"{tmp_path / 'model.joblib'}: SAFE" in out
    assert "[ok ] safeload.load(model.joblib): loaded dict" in out
