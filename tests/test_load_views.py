"""The guarded loader holds a file once: arrays and tensors view its private copy.

`safeload.load` reads the file into private, writable memory (`HeldBuffer`),
verifies and scans that, and then, instead of copying every numeric array or
storage out of it a second time, makes them views of it, as
`torch.load(mmap=True)` views the file. These tests pin what that must keep:
the objects equal the plain loader's, they are writable, they do not change
when the file is rewritten after the load, and the cases that must copy
(byte-swapped storages, a buffer the caller passed in) still copy.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import torch

import safeload
from safeload import TrustStore
from safeload.errors import DigestMismatchError, LoadInputError
from safeload.load import _open
from safeload.load._open import HeldBuffer
from safeload.sign import authenticate, generate_key, load_signer, read_signature, sign


def unsigned_load(path: Path, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", safeload.UnsignedLoadWarning)
        return safeload.load(path, require_signature=False, **kwargs)


def base_of(array: np.ndarray) -> object:
    base: object = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return base.obj if isinstance(base, memoryview) else base


def test_joblib_arrays_are_views_of_the_held_copy(tmp_path: Path) -> None:
    path = tmp_path / "arrays.joblib"
    rng = np.random.default_rng(0)
    obj = {
        "c": rng.random((64, 32)),
        "f": np.asfortranarray(rng.random((16, 8))),
        "i": np.arange(1000, dtype=">i4"),  # big-endian: converted, so a copy
        "o": np.array([{"k": 1}, "text"], dtype=object),  # a nested pickle
        "empty": np.zeros((0, 3)),
    }
    joblib.dump(obj, path)
    plain = joblib.load(path)
    ours = unsigned_load(path)
    assert ours.keys() == plain.keys()
    for key in obj:
        assert ours[key].dtype == plain[key].dtype, key
        assert ours[key].shape == plain[key].shape, key
        assert ours[key].flags.f_contiguous == plain[key].flags.f_contiguous, key
        assert list(ours[key].ravel()) == list(plain[key].ravel()), key
    assert isinstance(base_of(ours["c"]), HeldBuffer)
    assert isinstance(base_of(ours["f"]), HeldBuffer)
    assert base_of(ours["c"]) is base_of(ours["f"])  # one copy of the file
    assert ours["c"].flags.writeable
    ours["c"][0, 0] = -1.0  # writable, as joblib's arrays are
    # The held copy is private: rewriting the file changes nothing loaded.
    before = ours["f"].copy()
    path.write_bytes(b"\0" * path.stat().st_size)
    assert (ours["f"] == before).all()


def test_joblib_array_cut_short_is_refused_not_viewed_past_the_end(tmp_path: Path) -> None:
    # The walk checks every array's extent first; the view makes the same
    # check itself, so a file cut after the scan cannot be viewed past its end.
    path = tmp_path / "cut.joblib"
    joblib.dump(np.arange(1000.0), path)
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(safeload.SafeloadError):
        unsigned_load(path)


def test_torch_storages_are_views_of_the_held_copy(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    torch.manual_seed(0)
    state = {
        "w": torch.randn(256, 128),
        "b": torch.randn(128, dtype=torch.float64),
        "view": torch.arange(100, dtype=torch.int16)[10:50],
        "empty": torch.empty(0),
    }
    state["shared"] = state["w"][3]  # shares w's storage
    torch.save(state, path)
    plain = torch.load(path, weights_only=True)
    ours = unsigned_load(path)
    for key in state:
        assert torch.equal(ours[key], plain[key]), key
        assert ours[key].stride() == plain[key].stride(), key
        assert ours[key].storage_offset() == plain[key].storage_offset(), key
    assert ours["shared"].untyped_storage().data_ptr() == ours["w"].untyped_storage().data_ptr()
    ours["w"][0, 0] = 5.0  # writable, and shared as torch.load shares it
    assert ours["shared"].untyped_storage().data_ptr() == ours["w"].untyped_storage().data_ptr()
    before = ours["b"].clone()
    path.write_bytes(b"\0" * path.stat().st_size)
    assert torch.equal(ours["b"], before)


def test_torch_storages_viewed_in_place_lie_inside_one_buffer(tmp_path: Path) -> None:
    path = tmp_path / "two.pt"
    torch.save({"a": torch.ones(4096), "b": torch.zeros(4096)}, path)
    ours = unsigned_load(path)
    a = ours["a"].untyped_storage().data_ptr()
    b = ours["b"].untyped_storage().data_ptr()
    size = path.stat().st_size
    # Both storages live within one file-sized region: views, not two allocations.
    assert abs(a - b) < size
    assert a % 64 == 0 and b % 64 == 0


def test_bytes_passed_by_the_caller_are_copied_not_viewed(tmp_path: Path) -> None:
    path = tmp_path / "caller.pt"
    torch.save({"w": torch.ones(1024)}, path)
    data = bytearray(path.read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", safeload.UnsignedLoadWarning)
        ours = safeload.loads(data, require_signature=False)
    data[:] = b"\0" * len(data)
    assert torch.equal(ours["w"], torch.ones(1024))


def test_a_file_that_changes_size_while_read_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "growing.pkl"
    path.write_bytes(b"\x80\x04K\x01." + b"\0" * 100)
    real = os.fstat

    class Stale:
        def __init__(self, info: os.stat_result) -> None:
            self.st_mode = info.st_mode
            self.st_size = info.st_size - 50  # the file grew after fstat

    monkeypatch.setattr(_open.os, "fstat", lambda fd: Stale(real(fd)))
    with pytest.raises(LoadInputError, match="changed size while it was being read"):
        unsigned_load(path)


# -- hashing while the file is read ------------------------------------------------------


class Gate:
    """A `Filled` that lets the check hash only up to a position the test opens."""

    def __init__(self) -> None:
        self.open_to = 0
        self.asked: list[int] = []
        self._cond = threading.Condition()

    def let(self, pos: int) -> None:
        with self._cond:
            self.open_to = pos
            self._cond.notify_all()

    def wait(self, pos: int) -> None:
        with self._cond:
            self.asked.append(pos)
            while self.open_to < pos:
                self._cond.wait()


def signed_bytes(tmp_path: Path, size: int) -> tuple[bytes, Any]:
    key = tmp_path / "k"
    info = generate_key("ed25519", key)
    path = tmp_path / "blob.bin"
    data = os.urandom(size)
    path.write_bytes(data)
    sign(path, load_signer(info.private))
    sig = tmp_path / "blob.bin.sig"
    auth = authenticate(read_signature(sig), TrustStore.load(keys=[info.public]), where=sig)
    return data, auth


def test_the_check_hashes_what_is_filled_in_as_it_arrives(tmp_path: Path) -> None:
    data, auth = signed_bytes(tmp_path, 40 << 20)
    buffer = bytearray(len(data))  # still empty when the check starts
    gate = Gate()
    pending = auth.start_check(buffer, "blob.bin", gate)
    half = len(data) // 2
    buffer[:half] = data[:half]
    gate.let(half)
    time.sleep(0.2)
    assert not pending.done()  # it waits for the rest instead of hashing zeros
    buffer[half:] = data[half:]
    gate.let(len(data))
    pending.result(timeout=30)
    assert max(gate.asked) == len(data) and len(gate.asked) > 1


def test_bytes_filled_in_wrong_are_a_mismatch(tmp_path: Path) -> None:
    data, auth = signed_bytes(tmp_path, 8 << 20)
    buffer = bytearray(data)
    buffer[-1] ^= 1  # the last chunk to arrive differs from the signed bytes
    gate = Gate()
    pending = auth.start_check(buffer, "blob.bin", gate)
    gate.let(len(data))
    with pytest.raises(DigestMismatchError):
        pending.result(timeout=30)


def test_a_signed_load_whose_read_fails_ends_without_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "k"
    info = generate_key("ed25519", key)
    path = tmp_path / "model.pkl"
    joblib.dump(np.arange(100_000.0), path)
    sign(path, load_signer(info.private))
    trust = TrustStore.load(keys=[info.public])
    real = os.fstat

    class Stale:
        def __init__(self, st: os.stat_result) -> None:
            self.st_mode = st.st_mode
            self.st_size = st.st_size - 50

    monkeypatch.setattr(_open.os, "fstat", lambda fd: Stale(real(fd)))
    started = time.monotonic()
    with pytest.raises(safeload.SafeloadError):
        safeload.load(path, trust=trust)
    assert time.monotonic() - started < 20


def test_a_signed_load_reads_and_hashes_the_same_bytes(tmp_path: Path) -> None:
    key = tmp_path / "k"
    info = generate_key("ed25519", key)
    path = tmp_path / "state.pt"
    torch.save({"w": torch.randn(3000, 1000)}, path)  # about 12 MiB: several fill chunks
    sign(path, load_signer(info.private))
    trust = TrustStore.load(keys=[info.public])
    assert torch.equal(safeload.load(path, trust=trust)["w"], torch.load(path)["w"])
    raw = bytearray(path.read_bytes())
    raw[-200] ^= 1  # inside the archive's directory: still a loadable file, not the signed one
    path.write_bytes(bytes(raw))
    with pytest.raises(safeload.errors.SignatureError):
        safeload.load(path, trust=trust)
