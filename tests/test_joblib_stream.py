"""joblib's interleaved stream: raw array bytes after each NumpyArrayWrapper are skipped
exactly, object arrays are walked as nested pickles, everything after is still seen."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

import safeload
from safeload._machine.walker import analyze

PROTOCOLS = [2, 3, 4, 5]


def dump(obj: object, protocol: int) -> bytes:
    buf = io.BytesIO()
    joblib.dump(obj, buf, protocol=protocol)
    return buf.getvalue()


BENIGN = {
    "float-array": lambda: np.arange(1000.0),
    "fortran-2d": lambda: np.asfortranarray(np.arange(12).reshape(3, 4)),
    "scalar-0d": lambda: np.array(3.5),
    "empty": lambda: np.zeros((0, 5)),
    "unicode": lambda: np.array(["abc", "de"]),
    "bytes": lambda: np.array([b"abc", b"d"]),
    "datetime": lambda: np.array(["2024-01-01", "2025-06-30"], dtype="datetime64[D]"),
    "complex": lambda: np.arange(4) * (1 + 2j),
    "bool": lambda: np.array([True, False, True]),
    "structured": lambda: np.zeros(3, dtype=[("x", "<i4"), ("y", ">f8")]),
    "object-array": lambda: np.array([1, "two", 3.0, None], dtype=object),
    "structured-object": lambda: np.zeros(2, dtype=[("x", "<i4"), ("o", "O")]),
    "arrays-around-objects": lambda: {
        "a": np.arange(5),
        "o": np.array(["x", 1], dtype=object),
        "b": np.ones((2, 2), dtype=np.float32),
    },
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("name", sorted(BENIGN))
def test_benign_joblib_streams_are_safe(name: str, protocol: int) -> None:
    data = dump(BENIGN[name](), protocol)
    report = safeload.scan_bytes(data)
    assert report.verdict is safeload.Verdict.SAFE, [f.message for f in report.findings]
    walk = analyze(data)
    assert len(walk.pickles) == 1 and walk.pickles[0].end == len(data)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_random_forest_joblib_is_safe(protocol: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4))
    y = (x[:, 0] > 0).astype(int)
    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y)
    report = safeload.scan_bytes(dump(model, protocol))
    assert report.verdict is safeload.Verdict.SAFE, [f.message for f in report.findings]


class Canary:
    """Pickles as `os.system('touch canary')`: the payload only creates a file."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("touch canary",))


def _runs_under_joblib(data: bytes, tmp_path: Path) -> bool:
    path = tmp_path / "model.joblib"
    path.write_bytes(data)
    subprocess.run(
        [sys.executable, "-c", "import joblib, sys; joblib.load(sys.argv[1])", str(path)],
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
    )
    return (tmp_path / "canary").exists()


def test_payload_after_the_first_array(tmp_path: Path) -> None:
    data = dump([np.arange(100.0), Canary()], 4)
    assert _runs_under_joblib(data, tmp_path)
    report = safeload.scan_bytes(data)
    assert report.verdict is safeload.Verdict.DANGEROUS
    (f,) = [f for f in report.findings if f.rule == "SL101"]
    assert f.arguments == ("('touch canary',)",)
    assert f.offset is not None and f.offset > data.index(b"NumpyArrayWrapper")


def test_payload_inside_an_object_array(tmp_path: Path) -> None:
    arr = np.empty(2, dtype=object)
    arr[0] = "benign"
    arr[1] = Canary()
    data = dump({"weights": np.arange(10), "objects": arr}, 5)
    assert _runs_under_joblib(data, tmp_path)
    report = safeload.scan_bytes(data)
    assert [f.rule for f in report.findings] == ["SL101"]


def test_array_size_must_fit_the_file() -> None:
    data = dump(np.arange(1000.0), 4)
    cut = data[: len(data) - 100]  # array bytes cut short
    assert [f.rule for f in safeload.scan_bytes(cut).findings] == ["SL302"]


def test_forged_shape_cannot_hide_bytes() -> None:
    # Declare a huge shape: the array would run past EOF, so the scan fails closed
    # instead of skipping over whatever follows.
    data = dump(np.arange(10.0), 4)
    forged = data.replace(b"K\n\x85", b"J\x00\x00\x00\x10\x85", 1)
    assert forged != data
    report = safeload.scan_bytes(forged)
    assert report.verdict is not safeload.Verdict.SAFE


def test_plain_pickle_of_a_wrapper_is_not_misread() -> None:
    # A wrapper pickled by plain pickle has no raw bytes after it: joblib.load
    # fails on it, and the scanner must not call it safe either.
    import pickle

    from joblib.numpy_pickle import NumpyArrayWrapper

    w = NumpyArrayWrapper(np.ndarray, (2,), "C", np.dtype("f8"))
    data = pickle.dumps([w, 1, 2, 3], protocol=4)
    report = safeload.scan_bytes(data)
    assert report.verdict is not safeload.Verdict.SAFE


def test_unpadded_array_bytes_are_also_read_as_opcodes(tmp_path: Path) -> None:
    """Files from joblib < 1.2 (or written to a handle without tell()) have no padding
    byte before their arrays: joblib.load reads the array bytes as data, while a plain
    pickle.load (or pandas.read_pickle) runs them as opcodes."""
    import struct

    payload = b"cos\nsystem\n(S'touch canary'\ntR."
    arr = np.frombuffer(payload, dtype=np.uint8).copy()
    data = dump(arr, 4)
    i = data.index(b"K\x10ub")  # numpy_array_alignment_bytes=16, BUILD, then padding
    assert data[i + 4 : i + 8] == b"\x03\xff\xff\xff"
    unpadded = data[:i] + b"Nub" + data[i + 8 :]  # alignment None: no padding byte
    frame = struct.unpack("<Q", unpadded[3:11])[0] - 1
    unpadded = unpadded[:3] + struct.pack("<Q", frame) + unpadded[11:]
    path = tmp_path / "old.joblib"
    path.write_bytes(unpadded)
    code = (
        "import joblib, pickle, sys; a = joblib.load(sys.argv[1]); "
        f"assert a.tobytes() == {payload!r}; pickle.load(open(sys.argv[1], 'rb'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], cwd=tmp_path, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "canary").exists()
    report = safeload.scan_bytes(unpadded)
    rules = [f.rule for f in report.findings]
    assert "SL101" in rules and "SL207" in rules, rules
    # With its padding byte (never an opcode) pickle.load stops before the array,
    # so the same array bytes in a padded file are just data.
    assert safeload.scan_bytes(data).verdict is safeload.Verdict.SAFE


def test_unpadded_arrays_inside_a_stream_only_joblib_decompresses(tmp_path: Path) -> None:
    """Inside zlib or lz4 (joblib's own compressors; pandas.read_pickle undoes gzip, bz2,
    xz, zstd, zip and tar, never these) the array bytes are only ever read by joblib, so
    they are data; inside gzip pandas.read_pickle runs them as opcodes."""
    import gzip
    import struct
    import zlib

    import pandas as pd

    payload = b"cos\nsystem\n(S'touch canary'\ntR."
    arr = np.frombuffer(payload, dtype=np.uint8).copy()
    data = dump(arr, 4)
    i = data.index(b"K\x10ub")
    unpadded = data[:i] + b"Nub" + data[i + 8 :]
    frame = struct.unpack("<Q", unpadded[3:11])[0] - 1
    unpadded = unpadded[:3] + struct.pack("<Q", frame) + unpadded[11:]
    zl = tmp_path / "old.joblib"
    zl.write_bytes(zlib.compress(unpadded))
    gz = tmp_path / "old.pkl.gz"
    gz.write_bytes(gzip.compress(unpadded))
    assert joblib.load(zl).tobytes() == payload
    with pytest.raises(Exception):  # noqa: B017 - pandas cannot even open it
        pd.read_pickle(zl)
    report = safeload.scan_file(zl)
    assert report.verdict is safeload.Verdict.SAFE, report.findings
    report = safeload.scan_file(gz)
    rules = [f.rule for f in report.findings]
    assert "SL101" in rules and "SL207" in rules, rules
