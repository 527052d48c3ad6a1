"""Adversarial audit of the symbolic walker against CPython's and joblib's unpicklers.

Every test builds a minimal stream byte by byte, runs it through the real
reader in a subprocess (C `pickle.Unpickler` and pure-Python
`pickle._Unpickler` via `tests/oracle_unpickler.py`; joblib's
`NumpyUnpickler` via a small script written to `tmp_path`) with a
`find_class` that only records the `(module, name)` it is asked for, then
checks what safeload reports for the same bytes.  No named callable ever
runs: the joblib reader returns the real object only for a handful of inert
names (the wrapper class, `numpy.dtype`, `numpy.ndarray`, `builtins.object`,
copyreg reconstructors) and a recording stub for everything else.

Tests marked `xfail(strict=True)` pin walker bugs found by the audit: they
turn red once the walker is fixed.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from picklebuild import (
    binint1,
    empty_dict,
    mark,
    newfalse,
    newtrue,
    none,
    proto,
    reduce,
    sbu,
    stack_global,
    stop,
    tuple1,
    tuple3,
)

import safeload
from safeload import Verdict
from safeload._walker import analyze

ORACLE = Path(__file__).with_name("oracle_unpickler.py")


def cpython(data: bytes) -> dict[str, Any]:
    """What the C and pure-Python unpicklers ask `find_class` for (stubs returned)."""
    line = json.dumps([base64.b64encode(data).decode("ascii")]) + "\n"
    proc = subprocess.run(
        [sys.executable, "-I", str(ORACLE), "1024"],
        input=line.encode(),
        capture_output=True,
        timeout=60,
        cwd=ORACLE.parent,
        check=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout)[0]
    return result


_JOBLIB_ORACLE = r"""
import base64, copyreg, io, json, sys
import numpy as np
import joblib.numpy_pickle as jnp

REAL = {
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    ("copyreg", "__newobj__"): copyreg.__newobj__,
    ("joblib.numpy_pickle", "NumpyArrayWrapper"): jnp.NumpyArrayWrapper,
    ("builtins", "object"): object,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
names = []


class Stub:
    def __init__(self, *a, **k):
        pass

    def __call__(self, *a, **k):
        return Stub()


class Recording(jnp.NumpyUnpickler):
    def find_class(self, module, name):
        names.append([module, name])
        return REAL.get((module, name)) or Stub()


data = base64.b64decode(sys.stdin.read())
fh = io.BytesIO(data)
error = None
try:
    Recording("x", fh, True).load()
except Exception as exc:
    error = type(exc).__name__
print(json.dumps({"names": names, "error": error}))
"""


def joblib_reader(tmp_path: Path, data: bytes) -> dict[str, Any]:
    """What `joblib.load`'s unpickler asks `find_class` for (inert objects returned)."""
    pytest.importorskip("joblib")
    script = tmp_path / "joblib_oracle.py"
    script.write_text(_JOBLIB_ORACLE)
    proc = subprocess.run(
        [sys.executable, str(script)],
        input=base64.b64encode(data),
        capture_output=True,
        timeout=120,
        cwd=tmp_path,
        check=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def sg(module: str, name: str) -> bytes:
    """SHORT_BINUNICODE module, SHORT_BINUNICODE name, STACK_GLOBAL."""
    return sbu(module) + sbu(name) + stack_global()


def binunicode_header(n: int) -> bytes:
    """A BINUNICODE opcode whose body is the next `n` bytes."""
    return b"X" + n.to_bytes(4, "little")


def names_of(data: bytes) -> set[str]:
    return {g.canonical for g in analyze(data).globals}


# A joblib wrapper state for a 5-element uint8 array: `entries` are extra
# SETITEMS pairs (bytes of key + value) appended after the standard ones.
_U1_DTYPE = (
    sg("numpy", "dtype")
    + sbu("u1")
    + newfalse()
    + newtrue()
    + tuple3()
    + reduce()
    + mark()
    + binint1(3)
    + sbu("|")
    + none() * 3
    + b"J\xff\xff\xff\xffJ\xff\xff\xff\xff"
    + binint1(0)
    + b"t"
    + b"b"
)


def _wrapper_state(shape: bytes = binint1(5) + tuple1(), extra: bytes = b"") -> bytes:
    return (
        empty_dict()
        + mark()
        + sbu("subclass")
        + sg("numpy", "ndarray")
        + sbu("shape")
        + shape
        + sbu("order")
        + sbu("C")
        + sbu("dtype")
        + _U1_DTYPE
        + sbu("allow_mmap")
        + newfalse()
        + extra
        + b"u"
    )


_PAYLOAD = sg("os", "system") + sbu("touch canary") + tuple1() + reduce() + b"0"


# -- joblib wrapper path ------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="a NumpyArrayWrapper made by copyreg._reconstructor is not recognised as a wrapper: "
    "joblib skips its array bytes, the walker parses them, a hidden os.system scans safe",
)
def test_wrapper_made_by_copyreg_reconstructor(tmp_path: Path) -> None:
    # joblib's load_build checks isinstance(stack[-1], NumpyArrayWrapper), whatever
    # callable made the instance; copyreg._reconstructor(cls, object, None) makes one.
    # The 5 array bytes are a BINUNICODE header that, read as opcodes, swallows the
    # payload joblib runs after skipping them.
    data = (
        proto(4)
        + sg("copyreg", "_reconstructor")
        + sg("joblib.numpy_pickle", "NumpyArrayWrapper")
        + sg("builtins", "object")
        + none()
        + tuple3()
        + reduce()
        + _wrapper_state()
        + b"b"
        + binunicode_header(len(_PAYLOAD))
        + _PAYLOAD
        + stop()
    )
    seen = joblib_reader(tmp_path, data)
    assert ["os", "system"] in seen["names"], seen
    report = safeload.scan_bytes(data)
    assert report.verdict is not Verdict.SAFE
    assert "os.system" in names_of(data)


def _dtype(typestr: str, elsize: int, flags: int) -> bytes:
    """`numpy.dtype(typestr, False, True)` + BUILD of a version-3 state."""
    return (
        sg("numpy", "dtype")
        + sbu(typestr)
        + newfalse()
        + newtrue()
        + tuple3()
        + reduce()
        + mark()
        + binint1(3)
        + sbu("|")
        + none() * 3
        + b"J"
        + elsize.to_bytes(4, "little", signed=True)
        + b"J\xff\xff\xff\xff"
        + b"J"
        + flags.to_bytes(4, "little", signed=True)
        + b"t"
        + b"b"
    )


_WRAPPER = proto(4) + sg("joblib.numpy_pickle", "NumpyArrayWrapper") + b")\x81"


def _state(dtype: bytes, extra: bytes = b"") -> bytes:
    return (
        empty_dict()
        + mark()
        + sbu("shape")
        + binint1(5)
        + tuple1()
        + sbu("order")
        + sbu("C")
        + sbu("dtype")
        + dtype
        + sbu("allow_mmap")
        + newfalse()
        + extra
        + b"u"
    )


@pytest.mark.xfail(
    strict=True,
    reason="_dtype_layout trusts the state's elsize for every dtype; numpy ignores it for "
    "fixed-size types, so joblib reads 5 bytes where the walker skips 500 (payload hidden)",
)
def test_wrapper_dtype_elsize_forged(tmp_path: Path) -> None:
    # numpy's dtype.__setstate__ only takes elsize from the state for flexible
    # types (S, U, V): dtype('u1') with elsize 100 still has itemsize 1.  joblib
    # skips shape*itemsize = 5 bytes and then runs the payload.
    body = b"\x00" * 5 + _PAYLOAD + stop()
    data = _WRAPPER + _state(_dtype("u1", 100, 0)) + b"b" + body + b"\x00" * (500 - len(body))
    data += stop()
    seen = joblib_reader(tmp_path, data)
    assert ["os", "system"] in seen["names"], seen
    assert safeload.scan_bytes(data).verdict is not Verdict.SAFE


def test_wrapper_dtype_elsize_of_flexible_type_is_used(tmp_path: Path) -> None:
    # For a flexible type numpy does take elsize from the state: 'V4' with elsize
    # 100 has itemsize 100, so joblib skips 500 bytes and resumes at the STOP;
    # the walker must agree (any other skip lands in zeros: not a pickle).
    data = _WRAPPER + _state(_dtype("V4", 100, 0)) + b"b" + b"\x01" * 500 + stop()
    seen = joblib_reader(tmp_path, data)
    assert seen["error"] is None, seen
    assert safeload.scan_bytes(data).verdict is Verdict.SAFE


def test_wrapper_dtype_flags_forged_hasobject(tmp_path: Path) -> None:
    # numpy takes the flags from the state: dtype('u1') with flags 1 has
    # hasobject=True, so joblib reads a nested pickle where the array would be.
    nested = _PAYLOAD.replace(b"0", b"") + stop()
    data = _WRAPPER + _state(_dtype("u1", -1, 1)) + b"b" + nested + stop()
    seen = joblib_reader(tmp_path, data)
    assert ["os", "system"] in seen["names"], seen
    report = safeload.scan_bytes(data)
    assert report.verdict is Verdict.DANGEROUS
    assert "os.system" in names_of(data)


@pytest.mark.xfail(
    strict=True,
    reason="SETITEMS with more than 64 items is not recorded for joblib states, so a later "
    "'shape' override is missed: joblib skips 200 bytes, the walker 5 (payload hidden)",
)
def test_wrapper_state_shape_overridden_by_big_setitems(tmp_path: Path) -> None:
    # dict keys set later win (BUILD updates __dict__ from the final dict): the
    # second SETITEMS (66 stack items) sets shape=(200,).
    override = (
        mark()
        + b"".join(sbu(f"k{i}") + none() for i in range(32))
        + sbu("shape")
        + binint1(200)
        + tuple1()
        + b"u"
    )
    tail = b"\x00" * 190 + _PAYLOAD
    body = b"\x00" * 5 + binunicode_header(len(tail)) + tail
    data = _WRAPPER + _state(_dtype("u1", -1, 0)) + override + b"b" + body + stop()
    seen = joblib_reader(tmp_path, data)
    assert ["os", "system"] in seen["names"], seen
    assert safeload.scan_bytes(data).verdict is not Verdict.SAFE


@pytest.mark.xfail(
    strict=True,
    reason="_const_dict/_dtype_layout decode keys/typestr with const_value and let "
    "UnicodeDecodeError escape: scan_bytes raises (the CLI dies with a traceback)",
)
@pytest.mark.parametrize("where", ["key", "typestr"])
def test_wrapper_undecodable_string_does_not_crash(where: str) -> None:
    # joblib itself fails with UnicodeDecodeError on these; the scanner must
    # return a not-safe report, not raise.
    if where == "key":
        data = _WRAPPER + _state(_dtype("u1", -1, 0), b"\x8c\x01\xff" + none())
    else:
        data = _WRAPPER + _state(_dtype("u1", -1, 0).replace(b"\x8c\x02u1", b"\x8c\x02\xff1"))
    data += b"b" + b"\x00" * 5 + stop()
    report = safeload.scan_bytes(data)
    assert report.verdict is not Verdict.SAFE


def _padding_trap() -> bytes:
    """Array bytes read with a 20-byte padding by joblib, without padding by the walker.

    joblib: padding length 20, 20 bytes, 5 array bytes, then the payload runs.
    walker: 5 array bytes, then a BINUNICODE that swallows the payload.
    """
    tail = b"\x00" * 16 + _PAYLOAD
    return bytes([20]) + b"\x00" * 4 + binunicode_header(len(tail)) + tail


@pytest.mark.xfail(
    strict=True,
    reason="a wrapper made by REDUCE runs __init__, whose numpy_array_alignment_bytes defaults "
    "to 16; the walker only reads BUILD's dict, so it misses joblib's padding byte",
)
def test_wrapper_alignment_from_init_args(tmp_path: Path) -> None:
    # NumpyArrayWrapper(subclass, shape, order, dtype) sets
    # numpy_array_alignment_bytes=16; BUILD's dict (no such key) only updates
    # __dict__, so joblib still reads a padding byte before the array.
    data = (
        proto(4)
        + sg("joblib.numpy_pickle", "NumpyArrayWrapper")
        + mark()
        + sg("numpy", "ndarray")
        + binint1(5)
        + tuple1()
        + sbu("C")
        + _dtype("u1", -1, 0)
        + b"t"
        + reduce()
        + _state(_dtype("u1", -1, 0))
        + b"b"
        + _padding_trap()
        + stop()
    )
    seen = joblib_reader(tmp_path, data)
    assert ["os", "system"] in seen["names"], seen
    assert safeload.scan_bytes(data).verdict is not Verdict.SAFE


@pytest.mark.xfail(
    strict=True,
    reason="BUILD updates the wrapper's __dict__, so numpy_array_alignment_bytes from a first "
    "BUILD persists into a second one (via memo); the walker reads each dict alone",
)
def test_wrapper_built_twice_keeps_alignment(tmp_path: Path) -> None:
    # joblib's load_build reads an array after *every* BUILD on a wrapper
    # instance; the second BUILD's dict has no alignment key but the instance
    # still has numpy_array_alignment_bytes=16 from the first.
    first = _state(_dtype("u1", -1, 0), sbu("numpy_array_alignment_bytes") + binint1(16))
    data = (
        _WRAPPER
        + b"q\x00"  # BINPUT 0: the wrapper instance
        + first
        + b"b"
        + b"\x00"  # padding length 0
        + b"\x01" * 5
        + b"0"  # POP the first array
        + b"h\x00"  # BINGET 0
        + _state(_dtype("u1", -1, 0))
        + b"b"
        + _padding_trap()
        + stop()
    )
    seen = joblib_reader(tmp_path, data)
    assert ["os", "system"] in seen["names"], seen
    assert safeload.scan_bytes(data).verdict is not Verdict.SAFE
