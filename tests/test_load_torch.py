"""The guarded loader on PyTorch files returns what `torch.load` returns.

Every benign checkpoint (zip and legacy formats) is loaded both ways and
compared tensor by tensor: type, dtype, shape, stride, storage offset,
`requires_grad`, values, and which tensors share a storage. The reference is
`torch.load(weights_only=True)`, or `weights_only=False` where that cannot
load the file. Hostile legacy files are loaded only in a forked child whose
working directory is a fresh `tmp_path`, with a payload that only creates a
`canary` file there: the plain `torch.load` proves the payload real, the
guarded load must refuse it and leave no canary.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import pickle
import struct
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import safeload
from safeload import UnsafeFileError, UnsupportedFormatError, Verdict
from safeload._formats import locate
from safeload._formats.torch import MAGIC_NUMBER
from safeload.load._allowed import effective_policy
from safeload.load._torch import load_torch_tar, load_torch_zip
from tests.loadrun import run_on_cases
from tests.picklebuild import glob, proto, reduce, sbu, stop, tuple2

pytestmark = [
    pytest.mark.filterwarnings("ignore::safeload.UnsignedLoadWarning"),
    pytest.mark.filterwarnings("ignore:TypedStorage is deprecated:UserWarning"),
]

ROOT = Path(__file__).resolve().parent.parent
CANARY = "canary"
FORMATS = ["zip", "legacy"]


def guarded(path: Path, **kwargs: Any) -> Any:
    return safeload.load(path, require_signature=False, **kwargs)


def save(obj: object, path: Path, fmt: str) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=fmt == "zip")
    return path


# -- comparing with torch.load ------------------------------------------------------------


def assert_same(ours: object, theirs: object) -> None:
    """Equal objects, equal tensors, and the same storages shared between the same tensors."""
    ours_tensors: list[torch.Tensor] = []
    theirs_tensors: list[torch.Tensor] = []
    _compare(ours, theirs, "obj", ours_tensors, theirs_tensors)
    assert _sharing(ours_tensors) == _sharing(theirs_tensors)


def _sharing(tensors: list[torch.Tensor]) -> list[int]:
    """For each tensor, the index of the first tensor with the same storage memory."""
    first: dict[object, int] = {}
    groups = []
    for i, t in enumerate(tensors):
        storage = t.untyped_storage()
        # Empty storages have no memory to share (their data pointer is 0).
        ptr = storage.data_ptr() if storage.nbytes() else ("empty", i)
        groups.append(first.setdefault(ptr, i))
    return groups


def _compare(a: Any, b: Any, where: str, ours: list[Any], theirs: list[Any]) -> None:
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert (a.dtype, a.shape, a.stride(), a.storage_offset()) == (
            b.dtype,
            b.shape,
            b.stride(),
            b.storage_offset(),
        ), where
        assert (a.requires_grad, a.device, a.is_leaf) == (b.requires_grad, b.device, b.is_leaf)
        assert torch.equal(a.detach(), b.detach()), where
        assert a.untyped_storage().nbytes() == b.untyped_storage().nbytes(), where
        ours.append(a)
        theirs.append(b)
    elif isinstance(a, torch.storage.TypedStorage):
        assert (a.dtype, a._size()) == (b.dtype, b._size()), where
        assert bytes(a._untyped_storage) == bytes(b._untyped_storage), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            _compare(a[key], b[key], f"{where}[{key!r}]", ours, theirs)
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _compare(x, y, f"{where}[{i}]", ours, theirs)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert np.array_equal(a, b), where
    elif isinstance(a, nn.Module | argparse.Namespace):
        _compare(vars(a), vars(b), f"{where}.__dict__", ours, theirs)
    else:
        assert a == b, where


def _tensors() -> dict[str, torch.Tensor]:
    """Every dtype family, views sharing one storage, empty and 0-d tensors, parameters."""
    torch.manual_seed(0)
    base = torch.arange(24, dtype=torch.float32)
    return {
        "float32": torch.randn(3, 4),
        "float64": torch.randn(2, dtype=torch.float64),
        "float16": torch.randn(4).half(),
        "bfloat16": torch.randn(5).to(torch.bfloat16),
        "bool": torch.tensor([True, False, True]),
        "complex64": torch.randn(3, dtype=torch.complex64),
        "complex128": torch.randn(2, dtype=torch.complex128),
        "int8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "uint8": torch.tensor([0, 255], dtype=torch.uint8),
        "int16": torch.tensor([-3, 3], dtype=torch.int16),
        "int32": torch.tensor([1 << 30], dtype=torch.int32),
        "int64": torch.arange(5),
        "base": base,
        "rows": base[4:16].view(3, 4),
        "transposed": base.view(4, 6).t(),
        "strided": base[1::3],
        "empty": torch.empty(0),
        "empty_2d": torch.zeros(0, 3),
        "scalar": torch.tensor(2.5),
        "param": nn.Parameter(torch.ones(2, 2)),
        "frozen": nn.Parameter(torch.ones(1), requires_grad=False),
        "leaf_with_grad": torch.ones(3).requires_grad_(),
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_state_dict_equals_torch_load(tmp_path: Path, fmt: str) -> None:
    path = save(_tensors(), tmp_path / "sd.pt", fmt)
    assert safeload.scan_file(path).format == f"pytorch-{fmt}"
    ours = guarded(path)
    assert_same(ours, torch.load(path, weights_only=True))
    storage = ours["base"].untyped_storage()
    for view in ("rows", "transposed", "strided"):
        assert ours[view].untyped_storage().data_ptr() == storage.data_ptr()
    ours["rows"][0, 0] = -1.0
    assert ours["base"][4] == -1.0


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_optimizer_checkpoint_equals_torch_load(tmp_path: Path, fmt: str, optimizer: str) -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    opt: torch.optim.Optimizer
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(5, 3)).sum().backward()
        opt.step()
    checkpoint = {
        "epoch": 7,
        "step": 1400,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "best_loss": 0.25,
    }
    path = save(checkpoint, tmp_path / "ckpt.pt", fmt)
    assert_same(guarded(path), torch.load(path, weights_only=True))


@pytest.mark.parametrize("fmt", FORMATS)
def test_numpy_and_namespace_load_and_an_unknown_class_once_allowed(
    tmp_path: Path, fmt: str
) -> None:
    # argparse.Namespace (a run's options) is on the stdlib pack (issue 12);
    # collections.UserDict is on none, so the user allows it by name.
    checkpoint = {
        "args": argparse.Namespace(lr=0.1, name="run-3", layers=[4, 4]),
        "mean": np.arange(6.0).reshape(2, 3),
        "labels": np.array(["cat", "dog"]),
        "count": np.int64(12),
        "weight": torch.ones(2, 2),
        "extra": collections.UserDict({"seed": 3}),
    }
    path = save(checkpoint, tmp_path / "ckpt.pt", fmt)
    with pytest.raises(UnsafeFileError) as refused:
        guarded(path)
    unknown = {f.global_name for f in refused.value.findings if f.verdict is Verdict.UNKNOWN}
    assert unknown == {"collections.UserDict"}
    assert "allow=['collections.UserDict']" in str(refused.value)
    ours = guarded(path, allow=["collections.UserDict"])
    assert_same(ours, torch.load(path, weights_only=False))
    del checkpoint["extra"]
    path = save(checkpoint, tmp_path / "ckpt2.pt", fmt)
    assert_same(guarded(path), torch.load(path, weights_only=False))


def test_full_module_equals_torch_load(tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    path = save(model, tmp_path / "model.pt", "zip")
    ours = guarded(path)
    theirs = torch.load(path, weights_only=False)
    assert_same(ours, theirs)
    x = torch.randn(2, 3)
    assert torch.equal(ours(x), theirs(x))


class TinyNet(nn.Module):
    """A module class of this test file: on no allow pack."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 3)
        self.scale = 2.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * self.scale


def test_custom_module_class_is_unknown_until_allowed(tmp_path: Path) -> None:
    path = save(TinyNet(), tmp_path / "tiny.pt", "zip")
    name = f"{TinyNet.__module__}.{TinyNet.__qualname__}"
    with pytest.raises(UnsafeFileError) as refused:
        guarded(path)
    assert {f.global_name for f in refused.value.findings if f.verdict is not None} == {name}
    ours = guarded(path, allow=[name])
    assert_same(ours, torch.load(path, weights_only=False))


def test_legacy_full_module_is_judged_by_its_classes(tmp_path: Path) -> None:
    """torch's legacy saver writes each module class as a ('module', class, source file,
    source) persistent id, which torch's legacy loader resolves to the class: the class is
    judged as the global it is (allow-listed torch.nn classes load; a project's own class
    is unknown until allowed), as in the zip format."""
    path = save(nn.Sequential(nn.Linear(2, 2)), tmp_path / "model.pt", "legacy")
    assert_same(guarded(path), torch.load(path, weights_only=False))
    custom = save(TinyNet(), tmp_path / "tiny.pt", "legacy")
    name = f"{TinyNet.__module__}.{TinyNet.__qualname__}"
    with pytest.raises(UnsafeFileError) as refused:
        guarded(custom)
    assert {f.global_name for f in refused.value.findings if f.verdict is not None} == {name}
    assert_same(guarded(custom, allow=[name]), torch.load(custom, weights_only=False))


def _recorder(calls: list[tuple[str, int]], result: str) -> Callable[[Any, str], Any]:
    def restore(storage: Any, location: str) -> Any:
        calls.append((location, storage.nbytes()))
        if result == "none":
            return None  # torch then restores to the saved location
        return storage.clone() if result == "clone" else storage

    return restore


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("where", ["cpu", "device", "dict", "same", "none", "clone"])
def test_map_location_equals_torch_load(tmp_path: Path, fmt: str, where: str) -> None:
    path = save(_tensors(), tmp_path / "sd.pt", fmt)
    if where in ("cpu", "device", "dict"):
        location: Any = {"cpu": "cpu", "device": torch.device("cpu"), "dict": {"cpu": "cpu"}}
        ours = guarded(path, map_location=location[where])
        theirs = torch.load(path, weights_only=True, map_location=location[where])
    else:
        ours_calls: list[tuple[str, int]] = []
        theirs_calls: list[tuple[str, int]] = []
        ours = guarded(path, map_location=_recorder(ours_calls, where))
        theirs = torch.load(path, weights_only=True, map_location=_recorder(theirs_calls, where))
        assert ours_calls == theirs_calls
        assert len(ours_calls) == 19  # one per storage: the three views share one
    assert_same(ours, theirs)


def _swapped(body: bytes, dtype: torch.dtype) -> bytes:
    """A storage's bytes in big-endian order."""
    size = torch.empty(0, dtype=dtype).element_size()
    if dtype.is_complex:
        size //= 2  # real and imaginary parts are swapped separately
    return np.frombuffer(body, dtype=f"<u{size}").byteswap().tobytes() if size > 1 else body


def test_zip_big_endian_byteorder_record(tmp_path: Path) -> None:
    """A checkpoint written on a big-endian machine: torch swaps each storage on load."""
    tensors = {k: v for k, v in _tensors().items() if not k.startswith(("rows", "trans", "str"))}
    path = save(tensors, tmp_path / "little.pt", "zip")
    by_bytes = {bytes(t.untyped_storage()): t.dtype for t in tensors.values()}
    big = tmp_path / "big.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(big, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            rest = info.filename.split("/", 1)[1]
            if rest == "byteorder":
                assert body == b"little"
                body = b"big"
            elif rest.startswith("data/") and body:
                body = _swapped(body, by_bytes[body])
            dst.writestr(info.filename, body)
    theirs = torch.load(big, weights_only=True)
    assert_same(theirs, torch.load(path, weights_only=True))
    assert_same(guarded(big), theirs)


# -- sparse tensors ------------------------------------------------------------------------

_SPARSE_CHILD = r"""
import io, json, sys, warnings
sys.path.insert(0, sys.argv[1])
warnings.simplefilter("ignore")
import torch
import safeload
from safeload.errors import SafeloadError
out = {}
for name, hexed in json.load(open(sys.argv[2])).items():
    data = bytes.fromhex(hexed)
    theirs = torch.load(io.BytesIO(data), weights_only=False)  # never used: only checked
    try:
        with torch.sparse.check_sparse_tensor_invariants(enable=True):
            for t in theirs.values():
                torch._utils._sparse_tensors_to_validate.append(t)
            torch._utils._validate_loaded_sparse_tensors()
        valid = True
    except RuntimeError:
        valid = False
    try:
        safeload.loads(data, require_signature=False, location=name)
        ours = "loaded"
    except SafeloadError as exc:
        ours = type(exc).__name__ + ": " + str(exc)[-120:]
    out[name] = [valid, ours]
json.dump(out, open(sys.argv[3], "w"))
"""


def _sparse_checkpoint() -> bytes:
    dense = torch.arange(6.0).reshape(2, 3)
    buf = io.BytesIO()
    torch.save({"coo": dense.to_sparse(), "csr": dense.to_sparse_csr()}, buf)
    return buf.getvalue()


def _with_record(data: bytes, rest: str, body: bytes) -> bytes:
    """The archive with the stored record `rest` overwritten in place (same length)."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo(f"archive/{rest}")
    assert info.compress_type == zipfile.ZIP_STORED and len(body) == info.file_size
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_len + extra_len
    return data[:start] + body + data[start + len(body) :]


def test_sparse_tensors_torch_would_hand_out_unchecked_are_refused(tmp_path: Path) -> None:
    """torch.load checks a sparse tensor's indices only while
    torch.sparse.check_sparse_tensor_invariants is enabled (off by default), and
    returns the others: a CSR tensor with 1 column index for 5 values, or a COO tensor
    with an index past its shape, whose to_dense() writes out of bounds (the loader
    fuzzer's process died of heap corruption comparing one). safeload.loads returned
    them too; it now runs torch's check itself. torch's own check, run here on
    torch.load's tensors, says they are invalid; genuine sparse tensors load."""
    data = _sparse_checkpoint()
    pkl_at = data.index(b"\x80\x02")
    # The CSR column indices: storage offset 5, size (5,) -> (1,).
    cols = data.index(b"QK\x05K\x05\x85", pkl_at)
    short_cols = data[: cols + 4] + b"\x01" + data[cols + 5 :]
    # The COO indices (2 x 5 longs): the first row index set to 1000.
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        indices = bytearray(zf.read("archive/data/0"))
    indices[:8] = struct.pack("<q", 1000)
    cases = {
        "genuine": data,
        "csr: 1 column index for 5 values": short_cols,
        "coo: index past the shape": _with_record(data, "data/0", bytes(indices)),
    }
    result = run_on_cases(tmp_path, _SPARSE_CHILD, cases)
    assert result["genuine"] == [True, "loaded"]
    for name in ("csr: 1 column index for 5 values", "coo: index past the shape"):
        valid, ours = result[name]
        assert not valid, name  # torch.load returned a tensor its own check rejects
        assert ours.startswith("UnsupportedFormatError"), (name, ours)


def test_genuine_sparse_layouts_equal_torch_load(tmp_path: Path) -> None:
    dense = torch.tensor([[0.0, 1.0, 0.0, 2.0], [3.0, 0.0, 0.0, 4.0]])
    obj = {
        "coo": dense.to_sparse(),
        "coo uncoalesced": torch.sparse_coo_tensor([[0, 0], [1, 1]], [1.0, 2.0], (2, 4)),
        "csr": dense.to_sparse_csr(),
        "csc": dense.to_sparse_csc(),
        "bsr": dense.to_sparse_bsr((1, 2)),
        "bsc": dense.to_sparse_bsc((1, 2)),
    }
    path = save(obj, tmp_path / "sparse.pt", "zip")
    ours = guarded(path)
    theirs = torch.load(path, weights_only=False)
    assert list(ours) == list(theirs)
    for key in obj:
        assert ours[key].layout == theirs[key].layout
        assert torch.equal(ours[key].to_dense(), theirs[key].to_dense()), key


# -- zip text records against torch.load ---------------------------------------------------

_TEXT_RECORDS = ("version", ".format_version", "byteorder", ".storage_alignment",
                 ".data/serialization_id")  # fmt: skip


def _zip_records(tmp_path: Path) -> tuple[bytes, dict[str, zipfile.ZipInfo]]:
    raw = save({"w": torch.arange(4.0), "i": torch.arange(3)}, tmp_path / "sd.pt", "zip")
    data = raw.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = {i.filename.split("/", 1)[1]: i for i in zf.infolist()}
    assert set(_TEXT_RECORDS) <= set(infos), infos
    return data, infos


def _rebuilt(data: bytes, records: dict[str, bytes | None]) -> bytes:
    """The archive with some records replaced (None: left out), rewritten by zipfile."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        prefix = src.namelist()[0].split("/", 1)[0]
        for info in src.infolist():
            rest = info.filename.split("/", 1)[1]
            body = records.get(rest, src.read(info))
            if body is not None:
                dst.writestr(info.filename, body)
        for rest, body in records.items():
            if body is not None and f"{prefix}/{rest}" not in src.namelist():
                dst.writestr(f"{prefix}/{rest}", body)
    return out.getvalue()


def test_zip_text_records_mutated_byte_by_byte_load_only_as_torch_loads_them(
    tmp_path: Path,
) -> None:
    """Each byte of each text record torch reads (the format version, .format_version,
    byteorder, .storage_alignment, the serialization id) set to other values in a real
    checkpoint, CRC-32 left stale: torch's reader checks no CRC, parses the version with
    strtoull, int()s the alignment, decodes the serialization id as UTF-8 (0x8c there:
    UnicodeDecodeError, which safeload.loads once ignored and returned the state dict)."""
    data, infos = _zip_records(tmp_path)
    cases = {"as saved": data}
    for rest in _TEXT_RECORDS:
        info = infos[rest]
        assert info.compress_type == zipfile.ZIP_STORED
        name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
        start = info.header_offset + 30 + name_len + extra_len
        for i in range(start, start + info.file_size):
            for value in {0x8C, 0x00, 0xFF, 0x20, 0x2D, 0x30, 0x39, data[i] ^ 1} - {data[i]}:
                cases[f"{rest} byte {i - start} = {value:#x}"] = (
                    data[:i] + bytes([value]) + data[i + 1 :]
                )
    result = _against_torch(tmp_path, cases)
    assert result["defects"] == []
    # Not vacuous: stale CRCs and harmless bytes load, the rest is refused.
    assert result["both"] > 100 and result["neither"] > 100, result


def test_zip_text_record_contents_load_only_as_torch_loads_them(tmp_path: Path) -> None:
    """Text records of other lengths, and left out: torch reads `.data/version` before
    `version` (one must be there, a number from 1 to 10 as strtoull reads it), the
    others only when present."""
    data, _infos = _zip_records(tmp_path)
    versions = [b"3", b" \t3", b"+3", b"-3", b"0", b"1", b"10", b"11", b"3abc", b"abc", b"",
                b"0x3", b"3\x00junk", b"\x003", b"18446744073709551615",
                b"18446744073709551616", b"-18446744073709551615", b"0" * 30 + b"3",
                b"9" * 5000]  # fmt: skip
    cases: dict[str, bytes] = {}
    for v in versions:
        cases[f"version {v[:30]!r}"] = _rebuilt(data, {"version": v})
        cases[f".data/version {v[:30]!r}"] = _rebuilt(data, {".data/version": v})
    cases[".data/version 3, version abc"] = _rebuilt(
        data, {".data/version": b"3", "version": b"abc"}
    )
    for a in [b" 64\n", b"6_4", b"-1", b"x", b"", b"\xd9\xa1", b"1" * 5000]:
        cases[f"alignment {a[:30]!r}"] = _rebuilt(data, {".storage_alignment": a})
    for o in [b"big", b"LITTLE", b"little\n", b""]:
        cases[f"byteorder {o!r}"] = _rebuilt(data, {"byteorder": o})
    for sid in [b"", b"\x00abc", b"\xed\xa0\x80", b"\xc3\xa9", b"\x8c"]:
        cases[f"serialization id {sid!r}"] = _rebuilt(data, {".data/serialization_id": sid})
    for rest in _TEXT_RECORDS:
        cases[f"no {rest}"] = _rebuilt(data, {rest: None})
    result = _against_torch(tmp_path, cases)
    assert result["defects"] == []
    assert result["both"] > 15 and result["neither"] > 15, result


def test_mutated_zip_loads_only_as_torch_loads_it(tmp_path: Path) -> None:
    """A real zip checkpoint (a tensor and an empty one) with each byte set to 0xff,
    flipped in its low and its high bit, deleted, and cut at every length: safeload.loads
    returns an object only where torch.load returns an equal one. Before: a storage
    offset or size past the storage loaded (safeload's storages could grow, torch's
    cannot: "Trying to resize storage that is not resizable"), a local header whose
    name or extra length points past the file loaded (read from zipfile's view of the
    archive, not torch's), and a record flagged encrypted in the central directory."""
    raw = save({"w": torch.arange(3.0), "e": torch.empty(0)}, tmp_path / "sd.pt", "zip")
    data = raw.read_bytes()
    cases = {"as saved": data, "junk after": data + b"junk"}
    for i, byte in enumerate(data):
        for value in {0xFF, byte ^ 1, byte ^ 0x80} - {byte}:
            cases[f"byte {i} = {value:#x}"] = data[:i] + bytes([value]) + data[i + 1 :]
        cases[f"byte {i} deleted"] = data[:i] + data[i + 1 :]
        cases[f"cut at {i}"] = data[:i]
    result = _against_torch(tmp_path, cases)
    assert result["defects"] == []
    # Not vacuous: tensor bytes, names' case, CRCs load; most of the rest is refused.
    assert result["both"] > 500 and result["neither"] > 3000, result


def test_torchscript_is_an_exact_constants_pkl_record(tmp_path: Path) -> None:
    """torch dispatches to torch.jit.load when `"constants.pkl" in get_all_records()`:
    an exact, case-sensitive test (records are found case-insensitively, this list is
    not). A state dict with a CONSTANTS.PKL member is loaded by torch.load, and so by
    safeload.loads; with constants.pkl it is TorchScript, refused by both here."""
    data, _infos = _zip_records(tmp_path)
    cases = {
        name: _rebuilt(data, {name: pickle.dumps((), protocol=2)})
        for name in ("CONSTANTS.PKL", "Constants.pkl", "constants.pkl")
    }
    result = _against_torch(tmp_path, cases)
    assert result["defects"] == []
    assert (result["both"], result["neither"], result["torch only"]) == (2, 1, 0), result


def test_records_are_judged_only_in_an_archive_torch_opens(tmp_path: Path) -> None:
    """torch's record checks apply to torch's reading of the archive: when torch's
    reader cannot open it (a contradictory size, a file that does not start with a
    local header) that is the finding, not a spurious "no version record"."""
    data, _infos = _zip_records(tmp_path)
    sizes = bytearray(data)
    struct.pack_into("<I", sizes, sizes.find(b"PK\x01\x02") + 20, 5)
    not_local = b"PL" + data[2:]
    for case in (bytes(sizes), not_local):
        with locate(case, "case") as located:
            messages = [n.message for n in located.notes]
        assert messages, messages
        assert not any("version record" in m for m in messages), messages


def test_zip_serialization_id_not_utf8_is_a_finding(tmp_path: Path) -> None:
    """The scan says why: torch.load fails reading the serialization id as text."""
    data, _infos = _zip_records(tmp_path)
    path = tmp_path / "bad-id.pt"
    path.write_bytes(_rebuilt(data, {".data/serialization_id": b"\x8c" * 40}))
    with pytest.raises(UnsafeFileError) as refused:
        guarded(path)
    (finding,) = refused.value.findings
    assert finding.rule_name == "corrupt-container"
    assert "serialization_id" in finding.message and "UTF-8" in finding.message


def test_legacy_sys_info_byte_order_is_ignored_as_torch_ignores_it(tmp_path: Path) -> None:
    """Legacy raw storages are always little-endian (torch converted them when saving)."""
    path = save(_tensors(), tmp_path / "sd.pt", "legacy")
    raw = path.read_bytes()
    (a, b) = _stacked_pickles(raw)[2]
    info = pickle.loads(raw[a:b])
    assert info["little_endian"] is True
    path.write_bytes(raw[:a] + pickle.dumps({**info, "little_endian": False}, protocol=2) + raw[b:])
    theirs = torch.load(path, weights_only=True)
    assert_same(theirs, _tensors())
    assert_same(guarded(path), theirs)


# -- legacy stacked files built by hand --------------------------------------------------


class _Storage:
    """Pickled as the persistent id it holds (a legacy storage id)."""

    def __init__(self, pid: tuple[object, ...]) -> None:
        self.pid = pid


class _Tensor:
    """Pickled as torch pickles a tensor: `_rebuild_tensor_v2` on a storage id."""

    def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...]) -> None:
        self.args = (storage, offset, size, (1,) * len(size), False, collections.OrderedDict())

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return torch._utils._rebuild_tensor_v2, self.args


class _Ids(pickle.Pickler):
    def persistent_id(self, obj: object) -> object:
        return obj.pid if isinstance(obj, _Storage) else None


def _legacy_bytes(obj: object, raw: list[tuple[str, int, bytes]]) -> bytes:
    """Five pickles (`obj` with its storage ids), then each (key, count, elements)."""
    sys_info = {"protocol_version": 1001, "little_endian": True}
    out = b"".join(pickle.dumps(x, protocol=2) for x in (MAGIC_NUMBER, 1001, sys_info))
    buf = io.BytesIO()
    _Ids(buf, protocol=2).dump(obj)
    out += buf.getvalue() + pickle.dumps([key for key, _n, _b in raw], protocol=2)
    for _key, count, body in raw:
        out += struct.pack("<q", count) + body
    return out


def _floats(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def _sid(key: str, numel: int, view: tuple[str, int, int] | None = None) -> _Storage:
    return _Storage(("storage", torch.FloatStorage, key, "cpu", numel, view))


def test_legacy_storage_views_equal_torch_load(tmp_path: Path) -> None:
    """Old torch wrote storage views as (view key, offset, size) in the storage id."""
    obj = {
        "whole": _Tensor(_sid("root", 6), 0, (6,)),
        "view": _Tensor(_sid("root", 6, ("v", 2, 3)), 1, (2,)),
        "again": _Tensor(_sid("root", 6, ("v", 2, 3)), 0, (3,)),
    }
    path = tmp_path / "views.pt"
    path.write_bytes(_legacy_bytes(obj, [("root", 6, _floats(0, 1, 2, 3, 4, 5))]))
    theirs = torch.load(path, weights_only=True)
    ours = guarded(path)
    assert_same(ours, theirs)
    assert ours["view"].tolist() == [3.0, 4.0]
    for result in (ours, theirs):
        root = result["whole"].untyped_storage().data_ptr()
        assert result["view"].untyped_storage().data_ptr() == root + 8
    ours["view"][0] = -1.0
    assert ours["whole"][3] == -1.0


_SIX = [("root", 6, _floats(*range(6)))]


@pytest.mark.parametrize(
    ("sids", "raw", "rule"),
    [
        # A storage id claiming far more than the file holds: the scan's load-cost
        # bound already refuses it, before anything is allocated.
        ([_sid("root", 1 << 40)], _SIX, "load-cost-limit"),
        # The file's count disagrees with the storage id (torch: "wrong byte size").
        ([_sid("root", 6)], [("root", 5, _floats(*range(6)))], "corrupt-container"),
        # A storage the file never fills: torch would return uninitialized memory.
        (
            [_sid("root", 6), _sid("other", 1)],
            [("root", 6, _floats(*range(9)))],
            "corrupt-container",
        ),
        # A view that leaves its storage (torch would clip it silently).
        ([_sid("root", 6, ("v", 4, 3))], _SIX, "corrupt-container"),
    ],
    ids=["numel-beyond-file", "count-disagrees", "storage-not-in-file", "view-outside"],
)
def test_legacy_storage_structure_is_checked(
    tmp_path: Path, sids: list[_Storage], raw: list[tuple[str, int, bytes]], rule: str
) -> None:
    path = tmp_path / "bad.pt"
    obj = {f"t{i}": _Tensor(sid, 0, (1,)) for i, sid in enumerate(sids)}
    path.write_bytes(_legacy_bytes(obj, raw))
    scanned = safeload.scan_file(path)
    with pytest.raises(UnsafeFileError) as refused:
        guarded(path)
    if rule == "load-cost-limit":
        assert scanned.verdict is not Verdict.SAFE
        assert rule in {f.rule_name for f in refused.value.findings}, refused.value
        return
    assert scanned.verdict is Verdict.SAFE  # only the load can tell
    assert [f.rule_name for f in refused.value.findings] == [rule], refused.value


def test_legacy_zip_format_storage_id_is_refused(tmp_path: Path) -> None:
    sid = _Storage(("storage", torch.FloatStorage, "root", "cpu", 2))
    path = tmp_path / "bad.pt"
    path.write_bytes(_legacy_bytes({"t": _Tensor(sid, 0, (2,))}, [("root", 2, _floats(1, 2))]))
    with pytest.raises(UnsafeFileError, match="storage id of 5 items") as refused:
        guarded(path)
    assert [f.rule_name for f in refused.value.findings] == ["persistent-id"]


# -- legacy stacked files against torch.load, byte by byte ---------------------------------

_AGAINST_TORCH = r"""
import io, json, resource, sys, warnings
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[1] + "/fuzz")
import torch  # before the memory limit
import safeload
from safeload.errors import SafeloadError
from fuzz_targets.load import difference
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
warnings.simplefilter("ignore")
cases = json.load(open(sys.argv[2]))
out = {"both": 0, "torch only": 0, "neither": 0, "defects": []}
for name, hexed in cases.items():
    data = bytes.fromhex(hexed)
    try:
        theirs, failed = torch.load(io.BytesIO(data), weights_only=False), None
    except BaseException as exc:
        theirs, failed = None, f"{type(exc).__name__}: {str(exc)[:100]}"
    try:
        ours = safeload.loads(data, require_signature=False, location=name)
    except SafeloadError:
        out["neither" if failed else "torch only"] += 1
        continue
    except BaseException as exc:
        out["defects"].append([name, f"safeload raised {type(exc).__name__}: {str(exc)[:100]}"])
        continue
    if failed:
        out["defects"].append([name, f"safeload loaded what torch.load refuses ({failed})"])
    elif (problem := difference(ours, theirs)) is not None:
        out["defects"].append([name, f"safeload and torch.load disagree: {problem}"])
    else:
        out["both"] += 1
json.dump(out, open(sys.argv[3], "w"))
"""


def _against_torch(tmp_path: Path, cases: dict[str, bytes]) -> dict[str, Any]:
    """safeload.loads and torch.load on each case, in a child under a memory limit."""
    result: dict[str, Any] = run_on_cases(tmp_path, _AGAINST_TORCH, cases, timeout=600)
    return result


def test_mutated_legacy_file_loads_only_as_torch_loads_it(tmp_path: Path) -> None:
    """A real legacy checkpoint with each byte set to 0, 0xff and flipped, each byte
    deleted, cut at every length, and with bytes appended: `safeload.loads` returns an
    object only where `torch.load` returns an equal one (the magic number, the protocol
    version, sys_info, the object, the storage keys and the raw storages are read as
    torch reads them), and raises nothing but a SafeloadError."""
    state = collections.OrderedDict(
        w=torch.arange(6.0).reshape(2, 3), b=torch.ones(3), i=torch.arange(4)
    )
    raw = save(state, tmp_path / "sd.pt", "legacy").read_bytes()
    assert pickle.loads(raw) == MAGIC_NUMBER  # the first of its stacked pickles
    cases = {"as saved": raw, "junk after": raw + b"junk", "a pickle after": raw + pickle.dumps(1)}
    for i, byte in enumerate(raw):
        for value in {0, 0xFF, byte ^ 1} - {byte}:
            cases[f"byte {i} = {value:#x}"] = raw[:i] + bytes([value]) + raw[i + 1 :]
        cases[f"byte {i} deleted"] = raw[:i] + raw[i + 1 :]
        cases[f"cut at {i}"] = raw[:i]
    result = _against_torch(tmp_path, cases)
    assert result["defects"] == []
    # Not a vacuous pass: many mutations load (storage bytes, sys_info), most are refused.
    assert result["both"] > 300 and result["neither"] > 2000, result


def _stack(head: tuple[object, ...], obj: object, keys: bytes, raw: list[bytes]) -> bytes:
    """Three head pickles, `obj` with its storage ids, a storage-keys pickle, raw storages."""
    out = b"".join(pickle.dumps(x, protocol=2) for x in head)
    buf = io.BytesIO()
    _Ids(buf, protocol=2).dump(obj)
    return out + buf.getvalue() + keys + b"".join(raw)


_HEAD = (MAGIC_NUMBER, 1001, {"protocol_version": 1001, "little_endian": True})
_ONE = {"t": _Tensor(_sid("root", 3), 0, (3,))}
_ROOT = [struct.pack("<q", 3) + _floats(1, 2, 3)]
_KEYS = pickle.dumps(["root"], protocol=2)


def _magic_as(text: bytes) -> bytes:
    """A legacy file whose magic-number pickle is `text` (not what pickle.dumps writes)."""
    return text + _stack(_HEAD, _ONE, _KEYS, _ROOT)[len(pickle.dumps(MAGIC_NUMBER, protocol=2)) :]


def test_legacy_checks_are_torch_checks(tmp_path: Path) -> None:
    """Each check torch's `_legacy_load` makes, and the ones it does not, on byte-built
    files: safeload.loads returns what torch.load returns or refuses the file."""
    storage = ("storage", torch.FloatStorage, "root", "cpu", 3, None)
    cases = {
        "plain": _stack(_HEAD, _ONE, _KEYS, _ROOT),
        "sys_info not a dict": _stack((*_HEAD[:2], None), _ONE, _KEYS, _ROOT),
        "version 1002": _stack((MAGIC_NUMBER, 1002, {}), _ONE, _KEYS, _ROOT),
        "version 1001.0": _stack((MAGIC_NUMBER, 1001.0, {}), _ONE, _KEYS, _ROOT),
        "magic + 1": _stack((MAGIC_NUMBER + 1, 1001, {}), _ONE, _KEYS, _ROOT),
        "magic as INT": _magic_as(b"I%d\n." % MAGIC_NUMBER),
        "magic as LONG4": _magic_as(
            b"\x80\x02\x8b\x0a\x00\x00\x00" + MAGIC_NUMBER.to_bytes(10, "little") + b"."
        ),
        "magic memoized": _magic_as(pickle.dumps(MAGIC_NUMBER, protocol=2)[:-1] + b"q\x00."),
        "magic protocol 4": _magic_as(pickle.dumps(MAGIC_NUMBER, protocol=4)),
        "keys a tuple": _stack(_HEAD, _ONE, pickle.dumps(("root",), protocol=2), _ROOT),
        "keys twice": _stack(_HEAD, _ONE, pickle.dumps(["root"] * 2, protocol=2), _ROOT * 2),
        "keys twice, one storage": _stack(
            _HEAD, _ONE, pickle.dumps(["root"] * 2, protocol=2), _ROOT
        ),
        "keys empty": _stack(_HEAD, _ONE, pickle.dumps([], protocol=2), []),
        "keys an unknown key": _stack(
            _HEAD, _ONE, pickle.dumps(["root", "x"], protocol=2), _ROOT * 2
        ),
        "keys None": _stack(_HEAD, {"a": 1}, pickle.dumps(None, protocol=2), []),
        "keys py2 strings": _stack(_HEAD, _ONE, b"\x80\x02]q\x00U\x04rootq\x01a.", _ROOT),
        "count 4 for 3": _stack(_HEAD, _ONE, _KEYS, [struct.pack("<q", 4) + _floats(1, 2, 3, 4)]),
        "count 2 for 3": _stack(_HEAD, _ONE, _KEYS, [struct.pack("<q", 2) + _floats(1, 2, 3)]),
        "storages cut": _stack(_HEAD, _ONE, _KEYS, [_ROOT[0][:-1]]),
        "view listed": _stack(
            _HEAD,
            {"t": _Tensor(_sid("root", 3, ("v", 1, 2)), 0, (2,))},
            pickle.dumps(["root", "v"], protocol=2),
            [*_ROOT, struct.pack("<q", 2) + _floats(5, 6)],
        ),
        "int key": _stack(
            _HEAD,
            {"t": _Tensor(_Storage((*storage[:2], 7, *storage[3:])), 0, (3,))},
            pickle.dumps([7], protocol=2),
            _ROOT,
        ),
        "bytes tag": _stack(
            _HEAD, {"t": _Tensor(_Storage((b"storage", *storage[1:])), 0, (3,))}, _KEYS, _ROOT
        ),
        "four pickles": _stack(_HEAD, {"a": 1}, b"", []),
        "empty storage shared": _stack(
            _HEAD,
            {"a": _Tensor(_sid("e", 0), 0, (0,)), "b": _Tensor(_sid("e", 0), 0, (0,))},
            pickle.dumps(["e"], protocol=2),
            [struct.pack("<q", 0)],
        ),
    }
    result = _against_torch(tmp_path, cases)
    assert result["defects"] == []
    assert result["both"] >= 6, result  # plain, sys_info, keys twice, py2 keys, empty, protocol 4


# -- legacy tar (torch < 0.4) ------------------------------------------------------------


def _tar_member(tf: tarfile.TarFile, name: str, data: bytes, link: str | None = None) -> None:
    info = tarfile.TarInfo(name)
    if link is not None:
        info.type, info.linkname = tarfile.LNKTYPE, link
        tf.addfile(info)
        return
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def _p(obj: object) -> bytes:
    return pickle.dumps(obj, protocol=2)


def _tensor_record(
    key: int, storage: int, shape: tuple[int, ...], stride: tuple[int, ...], offset: int
) -> bytes:
    """A tensor record: (key, storage key, tensor type), then ndim (8 bytes), shape,
    stride and storage offset."""
    n = len(shape)
    return _p((key, storage, torch.FloatTensor)) + struct.pack(
        f"<i4x{n}q{n}qq", n, *shape, *stride, offset
    )


class _Keys(pickle.Pickler):
    """The tar format's top pickle: "@<key>" strings become persistent ids."""

    def persistent_id(self, obj: object) -> str | None:
        return obj[1:] if isinstance(obj, str) and obj.startswith("@") else None


def _top(obj: object) -> bytes:
    buf = io.BytesIO()
    _Keys(buf, protocol=2).dump(obj)
    return buf.getvalue()


def _legacy_tar(
    path: Path,
    *,
    storages: bytes | None = None,
    tensors: bytes | None = None,
    top: bytes | None = None,
    extra: Callable[[tarfile.TarFile], None] | None = None,
) -> Path:
    """torch < 0.4's layout. By default: a float storage of 6 elements, a long storage
    of 3, a view of the first; tensors on each; a top object naming them."""
    if storages is None:
        storages = (
            _p(2)
            + _p((10, "cpu", torch.FloatStorage))
            + struct.pack("<q", 6)
            + _floats(*range(6))
            + _p((11, "cpu", torch.LongStorage))
            + struct.pack("<q3q", 3, 7, 8, 9)
            + _p([(12, 10, 2, 3)])
        )
    if tensors is None:
        tensors = (
            _p(3)
            + _tensor_record(1, 10, (2, 3), (3, 1), 0)
            + _tensor_record(2, 12, (3,), (1,), 0)
            + _tensor_record(3, 11, (2,), (1,), 1)
        )
    if top is None:
        top = _top({"matrix": "@1", "view": "@2", "longs": "@3", "storage": "@10", "epoch": 4})
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        _tar_member(tf, "sys_info", _p({"protocol_version": 1001, "little_endian": True}))
        _tar_member(tf, "storages", storages)
        _tar_member(tf, "tensors", tensors)
        _tar_member(tf, "pickle", top)
        if extra is not None:
            extra(tf)
    return path


def _bare_tar(path: Path, **kwargs: Any) -> Path:
    """A tar file with no storages or tensors: nothing in it but what `kwargs` adds."""
    defaults: dict[str, Any] = {"storages": _p(0) + _p([]), "tensors": _p(0), "top": _p({})}
    return _legacy_tar(path, **{**defaults, **kwargs})


_TENSOR_TYPES = ["torch.FloatTensor", "torch.LongTensor"]
"""The tensor records name their tensor type (which torch ignores): on no allow pack."""


def _load_tar(path: Path, map_location: Any = None) -> Any:
    """The tar deserializer alone: the scan does not accept the format's persistent ids
    (see test_legacy_tar_with_tensors_is_refused_by_the_scan)."""
    data = path.read_bytes()
    with locate(data, path.name) as located:
        assert str(located.shape) == "pytorch-tar"
        return load_torch_tar(located, data, effective_policy(None, _TENSOR_TYPES), map_location)


def test_legacy_tar_equals_torch_load(tmp_path: Path) -> None:
    path = _legacy_tar(tmp_path / "old.pt")
    theirs = torch.load(path, weights_only=False)
    ours = _load_tar(path)
    assert_same(ours, theirs)
    assert ours["view"].tolist() == [2.0, 3.0, 4.0]
    assert ours["longs"].tolist() == [8, 9]
    for result in (ours, theirs):
        root = result["matrix"].untyped_storage().data_ptr()
        assert result["view"].untyped_storage().data_ptr() == root + 8
        assert result["storage"]._data_ptr() == root


def test_legacy_tar_map_location_equals_torch_load(tmp_path: Path) -> None:
    path = _legacy_tar(tmp_path / "old.pt")
    ours_calls: list[tuple[str, int]] = []
    theirs_calls: list[tuple[str, int]] = []
    theirs = torch.load(path, weights_only=False, map_location=_recorder(theirs_calls, "clone"))
    ours = _load_tar(path, _recorder(ours_calls, "clone"))
    assert ours_calls == theirs_calls == [("cpu", 24), ("cpu", 24)]
    assert_same(ours, theirs)


def test_legacy_tar_with_tensors_is_refused_by_the_scan(tmp_path: Path) -> None:
    """The tar format's persistent ids are plain keys, which the scan does not accept
    (it accepts only storage ids): such files are refused before anything is read."""
    path = _legacy_tar(tmp_path / "old.pt")
    with pytest.raises(UnsafeFileError) as refused:
        guarded(path, allow=_TENSOR_TYPES)
    assert {f.rule_name for f in refused.value.findings if f.verdict} == {"persistent-id"}


def test_legacy_tar_without_tensors_loads(tmp_path: Path) -> None:
    top = _p({"epoch": 3, "history": [0.5, 0.25], "name": "old-run"})
    path = _bare_tar(tmp_path / "old.pt", top=top)
    ours = guarded(path)
    assert ours == torch.load(path, weights_only=False) == pickle.loads(top)


class _Rebuild:
    """`torch._utils._rebuild_tensor_v2(*args)` in a pickle."""

    def __init__(self, *args: object) -> None:
        self.args = args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (torch._utils._rebuild_tensor_v2, self.args)


def test_no_tensor_grows_a_legacy_storage_with_uninitialized_memory(tmp_path: Path) -> None:
    """torch's legacy loaders hand out tensors on storages they grow: an empty storage
    referenced a second time is a new, resizable one, and a tar storage is resizable;
    a tensor claiming 1024 elements of either grows it with uninitialized memory
    (torch.load returns it; safeload.loads did too for the stacked format, the tar
    reader would have). Every storage is fixed-size here: both are refused."""
    stacked = _stack(
        _HEAD,
        {"a": _Tensor(_sid("e", 0), 0, (0,)), "b": _Tensor(_sid("e", 0), 0, (1024,))},
        pickle.dumps(["e"], protocol=2),
        [struct.pack("<q", 0)],
    )
    theirs = torch.load(io.BytesIO(stacked), weights_only=False)
    assert theirs["b"].untyped_storage().nbytes() == 4096  # grown: the file has 0 bytes
    with pytest.raises(UnsupportedFormatError, match="not resizable"):
        safeload.loads(stacked, require_signature=False)

    args = ("@10", 0, (1024,), (1,), False, collections.OrderedDict())
    path = _legacy_tar(tmp_path / "grow.pt", top=_top({"t": _Rebuild(*args)}))
    assert torch.load(path, weights_only=False)["t"].untyped_storage().nbytes() == 4096
    with pytest.raises(RuntimeError, match="not resizable"):
        _load_tar(path)


_FLOAT_RECORD = _p(1) + _p((10, "cpu", torch.FloatStorage))
_TAR_DAMAGE: dict[str, tuple[dict[str, bytes], str]] = {
    "shape-beyond": (
        {"tensors": _p(1) + _tensor_record(1, 10, (3, 3), (3, 1), 0)},
        "leaves its storage",
    ),
    "negative-stride": (
        {"tensors": _p(1) + _tensor_record(1, 10, (2,), (-1,), 5)},
        "leaves its storage",
    ),
    "no-storage": ({"tensors": _p(1) + _tensor_record(1, 99, (2,), (1,), 0)}, "names no storage"),
    "ndim-beyond": (
        {"tensors": _p(1) + _p((1, 10, torch.FloatTensor)) + struct.pack("<iiq", 1000, 0, 1)},
        "cut short",
    ),
    "numel-beyond": ({"storages": _FLOAT_RECORD + struct.pack("<q", 1 << 40)}, "cut short"),
    "view-beyond": (
        {"storages": _FLOAT_RECORD + struct.pack("<q", 0) + _p([(12, 10, 0, 1)])},
        "leaves its storage",
    ),
    "unknown-key": ({"top": _top({"t": "@7"})}, "no storage or tensor key"),
}


@pytest.mark.parametrize("damage", sorted(_TAR_DAMAGE))
def test_legacy_tar_structure_is_checked(tmp_path: Path, damage: str) -> None:
    kwargs, message = _TAR_DAMAGE[damage]
    defaults: dict[str, Any] = {"top": _top({})}
    path = _legacy_tar(tmp_path / "old.pt", **{**defaults, **kwargs})
    with pytest.raises(UnsafeFileError, match=message):
        _load_tar(path)


# -- TorchScript ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_archive_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(path))
    with pytest.raises(UnsafeFileError, match="torchscript-archive"):
        guarded(path)
    # Were the scan ever to pass one, the loader refuses it too.
    data = path.read_bytes()
    with locate(data, path.name) as located:
        with pytest.raises(UnsupportedFormatError, match="TorchScript"):
            load_torch_zip(located, data, effective_policy(None, ()))


# -- hostile legacy files, loaded in a child -------------------------------------------------

_SERVER = r"""
import json, os, sys, warnings
sys.path.insert(0, sys.argv[1])
import torch  # imported once: every job runs in a fork
import safeload
warnings.simplefilter("ignore")
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        result = {"outcome": "loaded"}
        try:
            os.chdir(job["cwd"])
            if job["plain"]:
                torch.load(job["path"], weights_only=False)
            else:
                safeload.load(job["path"], require_signature=False)
        except safeload.UnsafeFileError as exc:
            result = {"outcome": "refused", "rules": sorted({f.rule_name for f in exc.findings})}
        except BaseException as exc:
            result = {"outcome": type(exc).__name__}
        print(json.dumps(result), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    print("done", flush=True)
"""
_server: list[subprocess.Popen[str]] = []


def _load_in_child(path: Path, *, plain: bool) -> tuple[dict[str, Any], bool]:
    """Load `path` in a forked child with cwd = its folder: (result, canary created)."""
    canary = path.parent / CANARY
    canary.unlink(missing_ok=True)
    if not _server or _server[0].poll() is not None:
        _server[:] = [
            subprocess.Popen(
                [sys.executable, "-c", _SERVER, str(ROOT)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        ]
    proc = _server[0]
    assert proc.stdin is not None and proc.stdout is not None
    job = {"cwd": str(path.parent), "path": path.name, "plain": plain}
    proc.stdin.write(json.dumps(job) + "\n")
    proc.stdin.flush()
    lines = []
    while (line := proc.stdout.readline().strip()) != "done":
        assert line, "the loader process died"
        lines.append(line)
    result: dict[str, Any] = json.loads(lines[-1]) if lines else {"outcome": "crashed"}
    return result, canary.exists()


def _payload() -> bytes:
    """builtins.open('canary', 'w'): creates the canary file when unpickled."""
    return (
        proto(2) + glob("builtins", "open") + sbu(CANARY) + sbu("w") + tuple2() + reduce() + stop()
    )


def _stacked_pickles(raw: bytes) -> list[tuple[int, int]]:
    """Start and end of the five pickles of a legacy file."""
    import pickletools

    spans = []
    pos = 0
    for _ in range(5):
        end = next(
            pos + at + 1 for op, _arg, at in pickletools.genops(raw[pos:]) if op.name == "STOP"
        )
        spans.append((pos, end))
        pos = end
    return spans


def _assert_refused_and_never_runs(path: Path) -> dict[str, Any]:
    _result, ran = _load_in_child(path, plain=True)
    assert ran, "the payload is not real: torch.load does not run it"
    result, ran = _load_in_child(path, plain=False)
    assert not ran, "the guarded load ran the payload"
    assert result["outcome"] == "refused", result
    return result


@pytest.mark.parametrize("index", range(5))
def test_hostile_legacy_pickle_never_runs(tmp_path: Path, index: int) -> None:
    """The payload in any of the five pickles: magic number, protocol, sys_info,
    the object, the storage keys."""
    path = save({"w": torch.ones(3), "i": torch.arange(2)}, tmp_path / "evil.pt", "legacy")
    raw = path.read_bytes()
    a, b = _stacked_pickles(raw)[index]
    path.write_bytes(raw[:a] + _payload() + raw[b:])
    result = _assert_refused_and_never_runs(path)
    assert "file-system-access" in result["rules"]


def test_hostile_legacy_object_written_by_torch_never_runs(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str, str]]:
            return open, (CANARY, "w")

    path = save({"w": torch.ones(2), "x": Evil()}, tmp_path / "evil.pt", "legacy")
    result = _assert_refused_and_never_runs(path)
    assert "file-system-access" in result["rules"]


@pytest.mark.parametrize("where", ["pickle", "storage-record", "storage-views", "tensor-record"])
def test_hostile_legacy_tar_never_runs(tmp_path: Path, where: str) -> None:
    path = tmp_path / "evil.pt"
    one_storage = _p(1) + _p((10, "cpu", torch.FloatStorage)) + struct.pack("<q", 2) + _floats(1, 2)
    if where == "pickle":
        _bare_tar(path, top=_payload())
    elif where == "storage-record":
        _bare_tar(path, storages=_p(1) + _payload())
    elif where == "storage-views":
        _bare_tar(path, storages=one_storage + _payload())
    else:
        _bare_tar(path, storages=one_storage + _p([]), tensors=_p(1) + _payload())
    result = _assert_refused_and_never_runs(path)
    assert "file-system-access" in result["rules"]


def test_hostile_legacy_tar_second_member_of_a_name_never_runs(tmp_path: Path) -> None:
    """tarfile.getmember (what torch extracts) takes the last member of a name."""
    path = _bare_tar(tmp_path / "evil.pt", extra=lambda tf: _tar_member(tf, "pickle", _payload()))
    report = safeload.scan_file(path, location="evil.pt")
    assert {(f.rule_name, f.location) for f in report.findings if f.verdict} >= {
        ("file-system-access", "evil.pt:pickle")
    }
    _assert_refused_and_never_runs(path)


def test_hostile_legacy_tar_link_member_never_runs(tmp_path: Path) -> None:
    """A last `pickle` member that is a hard link to another member's bytes."""

    def link(tf: tarfile.TarFile) -> None:
        _tar_member(tf, "notes", _payload())
        _tar_member(tf, "pickle", b"", link="notes")

    path = _bare_tar(tmp_path / "evil.pt", extra=link)
    report = safeload.scan_file(path, location="evil.pt")
    assert not report.safe
    assert ("unsupported-container", "evil.pt") in {
        (f.rule_name, f.location) for f in report.findings
    }
    result = _assert_refused_and_never_runs(path)
    assert "unsupported-container" in result["rules"]
