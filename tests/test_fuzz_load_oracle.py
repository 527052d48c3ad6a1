"""The loader fuzz target's comparison (`fuzz_targets.load.difference`) on what real
plain loaders return: it reports a real difference, and not what the loader leaves
unspecified.
"""

from __future__ import annotations

import io
import pickle
import sys
import zipfile
from pathlib import Path

import joblib
import numpy as np
import torch
from joblib.numpy_pickle import NumpyArrayWrapper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fuzz"))

from fuzz_targets.load import difference  # noqa: E402


def test_structured_arrays_compare_field_by_field() -> None:
    """joblib fills an np.empty array by assignment, which copies the fields only: the
    bytes no field covers are whatever the memory held (the first 4 bytes of each
    12-byte item here). Compared field by field, a changed field still counts."""
    gaps = np.dtype(
        {"names": ["a", "b"], "formats": ["<i4", "<i4"], "offsets": [4, 8], "itemsize": 12}
    )
    raw = np.zeros(64, dtype=gaps)
    left = np.frombuffer(bytes(range(12)) * 64, dtype=gaps).copy()
    left["a"], left["b"] = raw["a"], raw["b"]
    assert left.tobytes() != raw.tobytes()  # only the uncovered bytes differ
    assert difference(left, raw) is None
    left["b"][3] = 1
    assert difference(left, raw) == "object['b']: array bytes differ"


def test_a_real_joblib_array_with_uncovered_bytes() -> None:
    """The loader fuzz input kept for it: joblib.load's array and one read from the
    file's own bytes differ only where no field is."""
    data = (ROOT / "tests/fuzz_regressions/load/joblib-structured-fields-leave-gaps").read_bytes()
    theirs = joblib.load(io.BytesIO(data[1:]))["st"]
    ours = np.zeros_like(theirs)
    for name in theirs.dtype.names:
        ours[name] = theirs[name]
    assert difference(ours, theirs) is None


def test_objects_without_value_equality_compare_by_state() -> None:
    """A NumpyArrayWrapper (joblib.load returns one from an object array's nested
    stream) has no __eq__: two loads compare by their __dict__, and a different
    state is a difference."""

    def wrapper(shape: tuple[int, ...]) -> NumpyArrayWrapper:
        return NumpyArrayWrapper(np.ndarray, shape, "C", np.dtype("<f8"), allow_mmap=False)

    assert difference(wrapper((0,)), wrapper((0,))) is None
    assert difference(wrapper((0,)), wrapper((1,))) == "object.__dict__['shape'][0]: 0 vs 1"


def test_empty_tensor_whose_strides_allow_no_byte_view() -> None:
    """torch.load of a checkpoint whose empty tensor has stride 0 (a mutated data.pkl):
    the comparison raised instead of comparing."""
    odd = torch.empty(0).as_strided((0,), (0,))
    assert difference(odd, torch.empty(0).as_strided((0,), (0,))) is None
    assert difference(odd, torch.empty(0, dtype=torch.float64)) is not None
    assert difference(odd, torch.empty(0)) == "object: strides (0,) at 0 vs (1,) at 0"


def test_a_pickle_in_a_zip_or_tar_of_one_file_is_read_as_pandas_reads_it(tmp_path: Path) -> None:
    """safeload.loads reads a zip or tar of exactly one pickle as
    pandas.read_pickle(compression="zip" / "tar") does; no first byte of the target
    picks pandas, so the target asks it as another plain loader (it called the
    pandas reading a defect: the fuzzer's tar whose second header is broken, so
    that tarfile lists only sys_info)."""
    import tarfile

    from fuzz_targets.load import KINDS, one

    body = pickle.dumps({"a": [1, 2.5]}, protocol=4)
    tar, zipped = io.BytesIO(), io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as tf:
        info = tarfile.TarInfo("frame.pkl")
        info.size = len(body)
        tf.addfile(info, io.BytesIO(body))
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("frame.pkl", body)
    for data in (tar.getvalue(), zipped.getvalue()):
        one(bytes([KINDS.index("pickle")]) + data)  # raised AssertionError before


def test_torch_is_asked_with_the_map_location_safeload_loads_uses() -> None:
    """A real checkpoint whose storage is tagged "meta": torch.load and safeload.loads
    (no map_location) both return a meta tensor; the target asked torch.load with
    map_location="cpu" and called the difference a loader defect."""
    from fuzz_targets.load import KINDS, one

    data = (ROOT / "tests/fuzz_regressions/load/torch-zip-storage-on-meta").read_bytes()
    assert data[0] == KINDS.index("torch")
    with zipfile.ZipFile(io.BytesIO(data[1:])) as zf:
        assert b"meta" in zf.read("archive/data.pkl")
    one(data)  # raised AssertionError before


def test_tensors_of_every_kind_compare_without_raising() -> None:
    """What torch.load returns for mutated checkpoints: a size-1 dimension with any
    stride (no byte view of it exists: the comparison raised), sparse COO and CSR
    tensors (no contiguous()), quantized tensors (compared by scheme, parameters and
    integer values)."""
    odd = torch.tensor([1 + 2j]).as_strided((1,), (255,))
    assert difference(odd, torch.tensor([1 + 2j]).as_strided((1,), (255,))) is None
    assert difference(odd, torch.tensor([1 + 3j]).as_strided((1,), (255,))) == (
        "object: tensor bytes differ"
    )
    dense = torch.arange(6.0).reshape(2, 3)
    for sparse in (dense.to_sparse(), dense.to_sparse_csr()):
        assert difference(sparse, sparse.clone()) is None
        assert difference(sparse, (dense + 1).to_sparse(layout=sparse.layout)) is not None
        assert difference(sparse, dense) is not None
    q = torch.quantize_per_tensor(torch.arange(4.0), 0.5, 2, torch.qint8)
    assert difference(q, q.clone()) is None
    assert difference(q, torch.quantize_per_tensor(torch.arange(4.0), 0.25, 2, torch.qint8))


def test_modules_namespaces_and_objects_as_keys_compare_by_state() -> None:
    """What torch.load returns for a whole-module checkpoint and its mutations: an
    nn.Module has no __eq__ (every genuine one was a 'difference'), a module can be a
    dict key or hold itself, an argparse.Namespace's __eq__ compares its tensors and
    raises."""
    import argparse

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    twin = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    twin.load_state_dict(model.state_dict())
    assert difference(model, twin) is None
    with torch.no_grad():
        twin[0].bias[0] += 1
    assert "bias" in str(difference(model, twin))
    twin.load_state_dict(model.state_dict())
    assert difference({model: 1}, {twin: 1}) is None
    model.add_module("me", model)
    twin.add_module("me", twin)
    assert difference(model, twin) is None
    left = argparse.Namespace(w=torch.ones(3), lr=0.1)
    assert difference(left, argparse.Namespace(w=torch.ones(3), lr=0.1)) is None
    assert difference(left, argparse.Namespace(w=torch.zeros(3), lr=0.1)) is not None


def test_the_loader_fuzz_inputs_of_oracle_mistakes_pass() -> None:
    """The kept inputs from the generation fixtures: the whole module itself, one with
    a module as a dict key, one whose argparse.Namespace holds a tensor."""
    from fuzz_targets.load import one

    for name in ("torch-zip-whole-module", "torch-zip-module-as-dict-key",
                 "torch-zip-namespace-holding-a-tensor"):  # fmt: skip
        one((ROOT / "tests/fuzz_regressions/load" / name).read_bytes())
