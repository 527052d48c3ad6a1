"""The guarded loader reads a joblib object array as `joblib.load` reads it.

joblib's `NumpyArrayWrapper.read_array` reads an object array's nested
pickle stream with a fresh, plain `pickle._Unpickler` (a wrapper in that
stream is not replaced by an array: no raw bytes are read for it), then
makes whatever it returned native byte order (an object without a dtype
fails there). Each case is a real `joblib.dump` whose nested stream is
replaced by another pickle, loaded by `joblib.load` and `safeload.loads` in
a child process: safeload returns an equal object or refuses.
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from joblib.numpy_pickle import NumpyArrayWrapper

from tests.loadrun import run_on_cases

_AGAINST_JOBLIB = r"""
import io, json, resource, sys, warnings
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[1] + "/fuzz")
import joblib, numpy  # before the memory limit
import safeload
from safeload.errors import SafeloadError
from fuzz_targets.load import difference
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
warnings.simplefilter("ignore")
out = {}
for name, hexed in json.load(open(sys.argv[2])).items():
    data = bytes.fromhex(hexed)
    try:
        ours = safeload.loads(data, require_signature=False, location=name)
    except SafeloadError:
        ours = refused = "refused"
    else:
        refused = None
    try:
        theirs, failed = joblib.load(io.BytesIO(data)), None
    except Exception as exc:
        theirs, failed = None, f"{type(exc).__name__}: {str(exc)[:100]}"
    if refused:
        out[name] = "neither" if failed else "joblib only"
    elif failed:
        out[name] = f"defect: safeload loaded what joblib.load refuses ({failed})"
    elif (problem := difference(ours, theirs)) is not None:
        out[name] = f"defect: {problem}"
    else:
        out[name] = "both: " + type(ours["o"]).__name__
json.dump(out, open(sys.argv[3], "w"))
"""


def _against_joblib(tmp_path: Path, cases: dict[str, bytes]) -> dict[str, str]:
    result: dict[str, str] = run_on_cases(tmp_path, _AGAINST_JOBLIB, cases)
    return result


def _with_nested(obj: object) -> bytes:
    """A real joblib dump of {'o': <object array>} whose nested stream pickles `obj`."""
    buf = io.BytesIO()
    joblib.dump({"o": np.array([{"k": 1}, 2], dtype=object)}, buf)
    raw = buf.getvalue()
    # The wrapper's BUILD ends the outer stream's part; the nested stream follows
    # up to its STOP, then the outer stream's SETITEM and STOP.
    start = raw.index(b"ub\x80") + 2
    assert raw.endswith(b".s.")
    assert pickle.loads(raw[start:-2]).tolist() == [{"k": 1}, 2]
    return raw[:start] + pickle.dumps(obj, protocol=4) + raw[-2:]


def test_object_array_stream_of_no_array_fails_as_in_joblib(tmp_path: Path) -> None:
    """joblib makes the nested stream's object native byte order: an int, a dict, a
    list or a str has no dtype and joblib.load fails (safeload.loads returned
    {'o': 5}); arrays and numpy scalars load, big-endian ones swapped to native."""
    cases = {
        "int": _with_nested(5),
        "dict": _with_nested({"a": 1}),
        "list": _with_nested([1, 2]),
        "str": _with_nested("x"),
        "object array": _with_nested(np.array([{"k": 1}, 2], dtype=object)),
        "float64 scalar": _with_nested(np.float64(2.0)),
        "big-endian floats": _with_nested(np.arange(3.0).astype(">f8")),
        "big-endian structured": _with_nested(
            np.array([(1, 2)], dtype=[("a", ">i4"), ("b", ">i4")])
        ),
    }
    result = _against_joblib(tmp_path, cases)
    assert [v for v in result.values() if v.startswith("defect")] == []
    assert {k for k, v in result.items() if v == "neither"} == {"int", "dict", "list", "str"}
    assert result["big-endian structured"] == "both: ndarray"


def test_wrapper_inside_an_object_array_stream_stays_a_wrapper(tmp_path: Path) -> None:
    """joblib reads the nested stream with a plain unpickler: a NumpyArrayWrapper in
    it is returned as the wrapper it is and no array bytes are read for it.
    safeload.loads read it as an outer stream and returned an empty array."""
    cases = {
        f"alignment {align}": _with_nested(
            NumpyArrayWrapper(
                np.ndarray,
                (0,),
                "C",
                np.dtype("<f8"),
                allow_mmap=False,
                numpy_array_alignment_bytes=align,
            )
        )
        for align in (None, 16)
    }
    result = _against_joblib(tmp_path, cases)
    assert result == dict.fromkeys(cases, "both: NumpyArrayWrapper")


def test_the_cases_are_real_joblib_files() -> None:
    """The nested stream replaced is the one joblib reads (not vacuous)."""
    loaded: Any = joblib.load(io.BytesIO(_with_nested(np.arange(3.0))))
    assert loaded["o"].tolist() == [0.0, 1.0, 2.0]


def test_lzma_header_is_read_as_joblib_reads_it(tmp_path: Path) -> None:
    """joblib opens its .lzma files with lzma.LZMAFile (FORMAT_AUTO), whose .lzma
    decoder refuses a dictionary size other than 2**n or 2**n + 2**(n-1); safeload
    decompressed them with FORMAT_ALONE, which takes any, and returned the object
    joblib.load fails on ("Input format not supported by decoder")."""
    buf = io.BytesIO()
    joblib.dump({"o": np.arange(3.0)}, buf, compress=("lzma", 3))
    raw = buf.getvalue()
    assert raw[:3] == b"]\x00\x00"
    (dict_size,) = struct.unpack_from("<I", raw, 1)
    cases = {"as saved": raw}
    for size in (1 << 20, 3 << 19, (1 << 20) + 1, 5 << 20, 0xFFFFFFFF, 4096, 4097):
        cases[f"dictionary {size:#x}"] = raw[:1] + struct.pack("<I", size) + raw[5:]
    result = _against_joblib(tmp_path, cases)
    assert dict_size == 1 << 22  # preset 3
    assert [v for v in result.values() if v.startswith("defect")] == []
    assert result["dictionary 0x100001"] == "neither" == result["dictionary 0x500000"]
    assert result["as saved"] == "both: ndarray" == result["dictionary 0x180000"]
