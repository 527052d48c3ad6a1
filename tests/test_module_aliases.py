"""Module aliases a library registers at import (safeload._names.MODULE_ALIASES).

scikit-learn 1.5-1.8 pickle their Cython losses as `_loss.<name>`: the name
resolves to sklearn._loss._loss only once scikit-learn registered it in
sys.modules, otherwise `import _loss` takes whatever top-level `_loss` is on
sys.path. The walk reads the alias as the module it stands for, so the scan
judges, and the guarded loader imports, sklearn._loss._loss and never a
top-level `_loss`.
"""

from __future__ import annotations

from pathlib import Path

import picklebuild as pb
import pytest
from loadrun import canary_in, run_jobs

import safeload
from safeload import Verdict

_CALL = pb.proto(2) + pb.glob("_loss", "CyHalfSquaredError") + pb.empty_tuple() + pb.reduce()
ALIASED = _CALL + pb.stop()

_HIJACK = "open('canary', 'w').close()\nclass CyHalfSquaredError:\n    pass\n"
_ON_PATH = "import sys\nsys.path.insert(0, '.')\n"
_PLAIN = _ON_PATH + "import pickle\npickle.load(open(path, 'rb'))\n"
_GUARDED = (
    _ON_PATH
    + "import safeload, sklearn._loss._loss as real\n"
    + "obj = safeload.load(path, require_signature=False)\n"
    + "assert type(obj) is real.CyHalfSquaredError, type(obj)\n"
)


def test_the_alias_is_judged_as_the_module_it_stands_for() -> None:
    report = safeload.scan_bytes(ALIASED)
    assert report.verdict is Verdict.SAFE, [(f.rule, f.message) for f in report.findings]
    # outside the real name's scope it is refused as the real name is
    wrong = pb.proto(2) + pb.glob("_loss", "CyHalfSquaredError") + pb.sbu("x") + pb.tuple1()
    report = safeload.scan_bytes(wrong + pb.reduce() + pb.stop())
    assert "SL405" in {f.rule for f in report.findings}
    assert any("sklearn._loss._loss.CyHalfSquaredError" in f.message for f in report.findings)


@pytest.mark.filterwarnings("ignore::safeload.UnsignedLoadWarning")
def test_a_top_level_loss_module_on_the_path_is_never_imported(tmp_path: Path) -> None:
    path = tmp_path / "aliased.pkl"
    path.write_bytes(ALIASED)
    jobs = []
    for name, code in (("plain", _PLAIN), ("guarded", _GUARDED)):
        cwd = tmp_path / name
        cwd.mkdir()
        (cwd / "_loss.py").write_text(_HIJACK, encoding="utf-8")
        jobs.append({"kind": "plain", "path": path, "cwd": cwd, "code": code})
    plain, guarded = run_jobs(jobs, preload=("numpy",))
    # the plain loader imports the top-level `_loss` it finds (today's scikit-learn
    # registers none): the canary proves the hijack is real
    assert plain["outcome"] == "loaded" and canary_in(tmp_path / "plain"), plain
    assert guarded["outcome"] == "loaded", guarded
    assert not canary_in(tmp_path / "guarded")
