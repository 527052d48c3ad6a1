"""Old files as they really are: judged by what their loaders do with them.

Each file is made the way the old library version wrote it (byte by byte
where today's library cannot write it any more) and read back by today's
library first, to prove it is a real, loadable file.
"""

from __future__ import annotations

import io
import pickle
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import joblib
import numpy as np

import safeload
from safeload import Verdict


def bad(report: safeload.FileReport) -> set[str]:
    return {f.rule_name for f in report.findings if f.verdict is not None}


# -- .npy headers written by Python 2 ----------------------------------------------------


def py2_npy(values: np.ndarray) -> bytes:
    """A version 1.0 .npy file whose header spells the shape as Python 2 longs."""
    shape = "".join(f"{n}L," for n in values.shape)
    header = f"{{'descr': '{values.dtype.str}', 'fortran_order': False, 'shape': ({shape}), }}"
    header += " " * (-(10 + len(header) + 1) % 64) + "\n"
    return (
        b"\x93NUMPY\x01\x00"
        + struct.pack("<H", len(header))
        + header.encode("latin1")
        + values.tobytes()
    )


def test_python2_npy_header_is_read_as_numpy_reads_it() -> None:
    values = np.arange(6, dtype="<f8").reshape(2, 3)
    data = py2_npy(values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # numpy: "created on Python 2"
        assert (np.load(io.BytesIO(data)) == values).all()
    report = safeload.scan_bytes(data)
    assert (report.verdict, report.format) == (Verdict.SAFE, "npy"), report.findings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert (safeload.loads(data, require_signature=False) == values).all()


def test_python2_suffix_is_only_dropped_after_a_number() -> None:
    data = py2_npy(np.zeros(2)).replace(b"'<f8'", b"'<f8'L")
    assert "header is not a Python literal" in str(safeload.scan_bytes(data).findings)


# -- joblib's legacy "ZF" layouts ---------------------------------------------------------


def zfile(payload: bytes, *, joblib_08: bool = False) -> bytes:
    """joblib's write_zfile: "ZF", the hex length padded to 19 characters, zlib.

    joblib 0.8.x padded to 20 (Python 2's hex() of a long ends in "L"), which
    read_zfile still accepts by skipping one space.
    """
    width = 20 if joblib_08 else 19
    return b"ZF" + f"{len(payload):#x}".ljust(width).encode() + zlib.compress(payload)


def test_zf_main_file_with_inline_arrays_is_a_plain_pickle(tmp_path: Path) -> None:
    obj = {"weights": np.arange(4.0), "name": "model"}
    for joblib_08 in (False, True):
        path = tmp_path / f"old{int(joblib_08)}.pkl"
        path.write_bytes(zfile(pickle.dumps(obj, protocol=2), joblib_08=joblib_08))
        loaded = joblib.load(path)
        assert (loaded["weights"] == obj["weights"]).all()
        report = safeload.scan_file(path)
        assert (report.verdict, report.format) == (Verdict.SAFE, "joblib-zf"), report.findings


def test_zf_companion_raw_buffer_is_not_a_pickle(tmp_path: Path) -> None:
    path = tmp_path / "old.pkl_01.npy.z"
    path.write_bytes(zfile(np.arange(100, dtype="<f8").tobytes()))
    report = safeload.scan_file(path)
    assert report.verdict is not Verdict.DANGEROUS
    assert bad(report) == {"not-a-pickle"}


_WRAPPER_LOADER = """
import sys, warnings
warnings.simplefilter("ignore")
import joblib
joblib.load(sys.argv[1])
"""


def _object_npy(body: bytes) -> bytes:
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += " " * (-(10 + len(header) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + body


def test_ndarray_wrapper_pickle_opens_a_companion_file_and_is_dangerous(tmp_path: Path) -> None:
    # joblib 0.9 wrote the main pickle with NDArrayWrapper('<companion>', ndarray)
    # under the module path of the time, joblib.numpy_pickle.
    from joblib.numpy_pickle_compat import NDArrayWrapper

    main = pickle.dumps(NDArrayWrapper("evil.npy.pkl", np.ndarray), protocol=2)
    main = main.replace(b"cjoblib.numpy_pickle_compat\n", b"cjoblib.numpy_pickle\n")
    payload = b"\x80\x02cbuiltins\nopen\nX\x06\x00\x00\x00canaryX\x01\x00\x00\x00w\x86R."
    (tmp_path / "evil.npy.pkl").write_bytes(_object_npy(payload))
    path = tmp_path / "model.pkl"
    path.write_bytes(main)
    subprocess.run([sys.executable, "-c", _WRAPPER_LOADER, str(path)], cwd=tmp_path, check=False)
    assert (tmp_path / "canary").exists(), "joblib.load opened the companion file"
    report = safeload.scan_file(path)
    assert report.verdict is Verdict.DANGEROUS
    hits = [f for f in report.findings if f.rule == "SL208"]
    assert [f.global_name for f in hits] == ["joblib.numpy_pickle.NDArrayWrapper"]


# -- torch.jit._pickle helpers --------------------------------------------------------------


def test_torch_jit_list_builders_are_not_code_evaluation() -> None:
    data = b"\x80\x02ctorch.jit._pickle\nbuild_intlist\n]K\x01a\x85R."
    report = safeload.scan_bytes(data)
    assert report.verdict is Verdict.UNKNOWN
    assert [f.rule for f in report.findings] == ["SL401"]
    # The rest of torch.jit still is.
    assert (
        safeload.scan_bytes(b"\x80\x02ctorch.jit._script\nCompilationUnit\n)R.").verdict
        is Verdict.DANGEROUS
    )


# -- harmless bytes after the last pickle -------------------------------------------------


def _tailed(tail: bytes) -> bytes:
    return pickle.dumps({"weights": [1.0, 2.0]}, protocol=0) + tail


def test_a_trailing_newline_is_noted_not_refused() -> None:
    for tail in (b"\n", b"\r\n", b"  \n", b"\n\x00\x00", b" " * 4096):
        data = _tailed(tail)
        first = io.BytesIO(data)
        assert pickle.load(first) == {"weights": [1.0, 2.0]}
        try:
            pickle.load(first)  # a reader looping over pickles stops at once
        except pickle.UnpicklingError as exc:
            assert "invalid load key" in str(exc)
        report = safeload.scan_bytes(data)
        assert report.verdict is Verdict.SAFE, (tail, report.findings)
        assert [f.rule_name for f in report.findings] == ["inert-tail"], tail
        assert report.findings[0].offset == len(data) - len(tail)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", safeload.UnsignedLoadWarning)
            assert safeload.loads(data, require_signature=False) == {"weights": [1.0, 2.0]}


def test_npy_object_array_ending_in_a_newline() -> None:
    buf = io.BytesIO()
    values = np.array([{"a": 1}, "text", 3], dtype=object)
    np.save(buf, values, allow_pickle=True)
    data = buf.getvalue() + b"\n"
    loaded = np.load(io.BytesIO(data), allow_pickle=True)
    assert list(loaded) == list(values)
    report = safeload.scan_bytes(data)
    assert report.verdict is Verdict.SAFE, report.findings
    assert "inert-tail" in {f.rule_name for f in report.findings}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert list(safeload.loads(data, require_signature=False)) == list(values)


def test_a_tail_some_reader_could_interpret_stays_not_safe() -> None:
    # Each tail is whitespace plus something a reader acts on, or too long
    # to be a writer's newline.
    tails = {
        b"\nc": "trailing-data",  # an opcode after the newline
        b"\n" + pickle.dumps(1): "trailing-data",  # a further pickle after junk
        b" " * 4097: "trailing-data",
        b"\nPK\x05\x06" + b"\x00" * 18: "trailing-data",
    }
    for tail, rule in tails.items():
        report = safeload.scan_bytes(_tailed(tail))
        assert report.verdict is not Verdict.SAFE, tail
        assert rule in bad(report), (tail, report.findings)
    # A second pickle right after the first is read by a loop over
    # pickle.load, so it is walked, not waved through as a tail.
    report = safeload.scan_bytes(_tailed(b"\n") + pickle.dumps(eval, protocol=0))
    assert report.verdict is not Verdict.SAFE
