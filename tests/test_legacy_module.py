"""Legacy PyTorch files of whole `nn.Module`s (`torch.save(model, f, _use_new_zipfile_serialization=False)`).

The legacy pickler writes each module class as a persistent id
`('module', cls, source_file, source)`, and torch's legacy `persistent_load`
returns `cls` (it only compares the saved source with the installed one). So
the class is judged by the policy as the global it is, not as a computed
callable: real saved models scan as their classes decide (safe for the
allow-listed `torch.nn` classes, unknown for a project's own class), and a
module id whose class is a dangerous callable is dangerous and refused.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import safeload
from safeload.report import Verdict
from tests.hostile_containers import stacked_pickles
from tests.loadrun import canary_in, run_jobs
from tests.picklebuild import (
    binpersid,
    glob,
    mark,
    none,
    proto,
    reduce,
    sbu,
    stop,
    tuple1,
    tuple_,
)


def _legacy(model: object, path: Path) -> Path:
    torch.save(model, path, _use_new_zipfile_serialization=False)
    return path


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))


def _rules(report: safeload.FileReport) -> set[str]:
    return {f.rule for f in report.findings}


def test_real_full_module_is_judged_by_its_classes(tmp_path: Path) -> None:
    path = _legacy(_model(), tmp_path / "model.pt")
    raw = path.read_bytes()
    assert b"module" in raw and b"class Sequential" in raw  # the module ids are there
    report = safeload.scan_file(path)
    # torch.nn's classes are allow-listed as rebuilt without __init__ with state,
    # which is how the stream uses the classes its module ids return.
    assert report.verdict is Verdict.SAFE, report.findings
    assert "SL205" not in _rules(report) and "SL402" not in _rules(report)


def test_real_full_module_loads_as_torch_loads_it(tmp_path: Path) -> None:
    model = _model()
    path = _legacy(model, tmp_path / "model.pt")
    loaded = safeload.load(path, require_signature=False)
    assert type(loaded) is torch.nn.Sequential
    assert [type(m) for m in loaded] == [type(m) for m in model]
    for (name, a), (other, b) in zip(
        loaded.state_dict().items(), model.state_dict().items(), strict=True
    ):
        assert name == other and torch.equal(a, b)


def test_a_projects_own_module_class_is_unknown_not_dangerous(tmp_path: Path) -> None:
    """A class no allow pack names: unknown (with its name), never dangerous for the id's shape."""
    (tmp_path / "mynets.py").write_text(
        textwrap.dedent(
            """
            import torch

            class Net(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc = torch.nn.Linear(2, 2)

                def forward(self, x):
                    return self.fc(x)
            """
        )
    )
    code = (
        "import torch, mynets; "
        "torch.save(mynets.Net(), 'net.pt', _use_new_zipfile_serialization=False)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, capture_output=True)
    path = tmp_path / "net.pt"
    assert b"class Net(torch.nn.Module)" in path.read_bytes()
    report = safeload.scan_file(path)
    file = report
    assert file.verdict is Verdict.UNKNOWN, file.findings
    assert any(f.global_name == "mynets.Net" for f in file.findings), file.findings
    assert "SL205" not in _rules(report)


def _hostile(tmp_path: Path, source_file: bytes, source: bytes) -> Path:
    """A legacy file whose object pickle is `('module', os.system, ...)('touch canary')`."""
    real = _legacy(torch.nn.Linear(2, 2), tmp_path / "real.pt").read_bytes()
    spans = stacked_pickles(real)
    obj = (
        proto(2)
        + mark()
        + sbu("module")
        + glob("os", "system")
        + source_file
        + source
        + tuple_()
        + binpersid()
        + sbu("touch canary")
        + tuple1()
        + reduce()
        + stop()
    )
    keys = proto(2) + b"]" + stop()  # EMPTY_LIST: no storages
    path = tmp_path / "hostile.pt"
    path.write_bytes(real[: spans[3][0]] + obj + keys)
    return path


HOSTILE = {
    "no-source": (none(), none()),
    "with-source": (sbu("os.py"), sbu("def system(): ...")),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_module_id_naming_a_dangerous_callable_is_refused(tmp_path: Path, name: str) -> None:
    path = _hostile(tmp_path, *HOSTILE[name])
    report = safeload.scan_file(path)
    file = report
    assert file.verdict is Verdict.DANGEROUS
    assert any(f.global_name in ("os.system", "posix.system") for f in file.findings), file.findings
    plain, guarded, forced = (tmp_path / d for d in ("plain", "guarded", "forced"))
    results = run_jobs(
        [
            {
                "kind": "plain",
                "path": path,
                "cwd": plain,
                "code": "import torch; torch.load(path, weights_only=False)",
            },
            {"kind": "safeload", "path": path, "cwd": guarded},
            # A scanner that misses everything: the restricted unpickler still refuses.
            {"kind": "safeload", "path": path, "cwd": forced, "force_safe": True},
        ]
    )
    assert canary_in(plain), results[0]  # the payload is real
    for result, cwd in zip(results[1:], (guarded, forced), strict=True):
        assert result["outcome"] == "raised" and result["unsafe"], result
        assert "system" in result["message"]
        assert not canary_in(cwd)


def test_module_ids_only_in_the_legacy_object_pickle(tmp_path: Path) -> None:
    """A plain pickle has no torch persistent_load: the same id stays a computed callable."""
    body = (
        proto(2)
        + mark()
        + sbu("module")
        + glob("torch.nn.modules.linear", "Linear")
        + none()
        + none()
        + tuple_()
        + binpersid()
        + stop()
    )
    report = safeload.scan_bytes(body)
    assert "SL402" in _rules(report)


def test_module_id_with_non_text_source_is_not_a_module_id(tmp_path: Path) -> None:
    """torch writes str or None; anything else keeps the id unresolved (SL402, SL205)."""
    real = _legacy(torch.nn.Linear(2, 2), tmp_path / "real.pt").read_bytes()
    spans = stacked_pickles(real)
    obj = (
        proto(2)
        + mark()
        + sbu("module")
        + glob("torch.nn.modules.linear", "Linear")
        + b"K\x01"  # BININT1 1: not a source text
        + none()
        + tuple_()
        + binpersid()
        + b")"  # EMPTY_TUPLE
        + b"\x81"  # NEWOBJ
        + stop()
    )
    path = tmp_path / "odd.pt"
    path.write_bytes(real[: spans[3][0]] + obj + proto(2) + b"]" + stop())
    report = safeload.scan_file(path)
    assert {"SL402", "SL205"} <= _rules(report)
    assert report.verdict is Verdict.DANGEROUS
    with pytest.raises(safeload.UnsafeFileError):
        safeload.load(path, require_signature=False)


def test_loader_refuses_a_module_id_whose_class_it_did_not_import(tmp_path: Path) -> None:
    """The loader's own check, with the scan forced to say safe: the class of a module id
    must be a global this pickle's guard handed out, not an object built while loading."""
    real = _legacy(torch.nn.Linear(2, 2), tmp_path / "real.pt").read_bytes()
    spans = stacked_pickles(real)
    obj = (
        proto(2)
        + mark()
        + sbu("module")
        + glob("collections", "OrderedDict")
        + b")"  # EMPTY_TUPLE
        + reduce()  # an OrderedDict instance, not the class
        + none()
        + none()
        + tuple_()
        + binpersid()
        + stop()
    )
    path = tmp_path / "odd.pt"
    path.write_bytes(real[: spans[3][0]] + obj + proto(2) + b"]" + stop())
    assert "SL402" in _rules(safeload.scan_file(path))
    (result,) = run_jobs(
        [{"kind": "safeload", "path": path, "cwd": tmp_path / "forced", "force_safe": True}]
    )
    assert result["outcome"] == "raised" and result["unsafe"], result
    assert "is not a global this pickle imported" in result["message"]
