"""Adversarial audit of the symbolic walker against CPython's and joblib's unpicklers.

Every test builds a minimal stream byte by byte, runs it through the real
reader in a subprocess (C `pickle.Unpickler` and pure-Python
`pickle._Unpickler` via `tests/oracle_unpickler.py`; joblib's
`NumpyUnpickler` via a small script written to `tmp_path`) with a
`find_class` that only records the `(module, name)` it is asked for, then
checks what safeload reports for the same bytes.  No named callable ever
runs: the joblib reader returns the real object only for a handful of inert
names (the wrapper class, `numpy.dtype`, `numpy.ndarray`, `builtins.object`,
copyreg reconstructors, `pandas.Float64Dtype`) and a recording stub for
everything else.

Every divergence the audit found is fixed; each test pins the fixed behaviour.
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
    additems,
    append,
    appends,
    binget,
    binint1,
    binpersid,
    binput,
    build,
    empty_dict,
    empty_list,
    empty_tuple,
    ext1,
    ext4,
    frame,
    framed,
    get,
    glob,
    inst,
    int_,
    mark,
    memoize,
    newfalse,
    newobj_ex,
    newtrue,
    none,
    obj,
    pop,
    pop_mark,
    proto,
    put,
    readonly_buffer,
    reduce,
    sbu,
    setitem,
    short_binbytes,
    short_binstring,
    stack_global,
    stop,
    string,
    tuple1,
    tuple2,
    tuple3,
    unicode_,
)

import safeload
from safeload import Verdict
from safeload._machine.walker import analyze
from safeload._names import map_name
from safeload.policy import Policy

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
    ("pandas", "Float64Dtype"): __import__("pandas").Float64Dtype,
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
print(json.dumps({"names": names, "error": error, "end": fh.tell()}))
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
    # The walk follows joblib to the STOP; numpy never writes such a dtype (a 'V4'
    # with a 100-byte item), which its named checks say, alone.
    report = safeload.scan_bytes(data)
    assert {f.rule for f in report.findings} == {"SL406"}


def test_wrapper_dtype_flags_forged_hasobject(tmp_path: Path) -> None:
    # numpy takes the flags from the state: dtype('u1') with flags 1 has
    # hasobject=True, so joblib reads a nested pickle where the array would be.
    nested = sg("os", "system") + sbu("touch canary") + tuple1() + reduce() + stop()
    data = _WRAPPER + _state(_dtype("u1", -1, 1)) + b"b" + nested + stop()
    seen = joblib_reader(tmp_path, data)
    assert ["os", "system"] in seen["names"], seen
    report = safeload.scan_bytes(data)
    assert report.verdict is Verdict.DANGEROUS
    assert "os.system" in names_of(data)


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


_BAD_UTF8 = b"\x8c\x01\xff"  # SHORT_BINUNICODE with an invalid UTF-8 body


@pytest.mark.parametrize("where", ["key", "typestr", "shape", "alignment"])
def test_wrapper_undecodable_string_does_not_crash(where: str) -> None:
    # joblib itself fails with UnicodeDecodeError on these; the scanner must
    # return a not-safe report, not raise.
    dtype = _dtype("u1", -1, 0)
    extra = b""
    if where == "key":
        extra = _BAD_UTF8 + none()
    elif where == "typestr":
        dtype = dtype.replace(b"\x8c\x02u1", b"\x8c\x02\xff1")
    elif where == "alignment":
        extra = sbu("numpy_array_alignment_bytes") + _BAD_UTF8
    state = _state(dtype, extra)
    if where == "shape":
        state = state.replace(binint1(5) + tuple1(), _BAD_UTF8 + tuple1())
    data = _WRAPPER + state + b"b" + b"\x00" * 5 + stop()
    report = safeload.scan_bytes(data)
    assert report.verdict is not Verdict.SAFE


@pytest.mark.parametrize("order", ["bad-module", "bad-name"])
def test_stack_global_undecodable_operand_does_not_crash(order: str) -> None:
    # os.system runs first in both unpicklers; then STACK_GLOBAL with one
    # undecodable str operand and one non-str operand.  The scanner must still
    # report os.system (the scan must not raise: a crash loses every finding and
    # aborts a whole directory scan).
    pair = _BAD_UTF8 + none() if order == "bad-module" else none() + _BAD_UTF8
    data = proto(4) + _SP + b"0" + pair + stack_global() + stop()
    seen = cpython(data)
    assert ["os", "system"] in seen["names"], seen
    report = safeload.scan_bytes(data)
    assert report.verdict is Verdict.DANGEROUS
    assert any(f.global_name == "os.system" for f in report.findings)


def _padding_trap() -> bytes:
    """Array bytes read with a 20-byte padding by joblib, without padding by the walker.

    joblib: padding length 20, 20 bytes, 5 array bytes, then the payload runs.
    walker: 5 array bytes, then a BINUNICODE that swallows the payload.
    """
    tail = b"\x00" * 16 + _PAYLOAD
    return bytes([20]) + b"\x00" * 4 + binunicode_header(len(tail)) + tail


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


# -- text arguments -------------------------------------------------------------------

_CALL = glob("os", "system") + string("touch canary") + tuple1() + reduce()


@pytest.mark.parametrize(
    "line",
    [
        b"I0x" + b"f" * 5000 + b"\n",  # hex digits are exempt from int_max_str_digits
        b"I" + b" " * 5000 + b"1\n",  # leading whitespace is not a digit
        b"I1" + b"_0" * 3000 + b"\n",  # 3001 digits, 6001 bytes
        b"L0b" + b"1" * 5000 + b"L\n",
        b"N" + b"p" + b" " * 5000 + b"1\n",  # PUT index with whitespace padding
    ],
    ids=["int-hex", "int-space", "int-underscore", "long-bin", "put-space"],
)
def test_long_text_argument_accepted_by_cpython(line: bytes) -> None:
    # Both unpicklers accept the line and go on to import and call os.system;
    # the walker stops at the line (invalid) and never names os.system.
    data = line + b"0" + _CALL + stop()
    seen = cpython(data)
    assert ["os", "system"] in seen["names"], seen
    assert seen["error"] is None, seen
    assert "os.system" in names_of(data)


def test_global_line_without_newline_at_eof() -> None:
    # joblib and pandas' fallback use pickle._Unpickler: a final GLOBAL line
    # with no newline still imports (module import side effects happen) before
    # the EOFError.  The C unpickler raises first.  The verdict is already not
    # safe (truncated); the name should still be reported.
    data = b"cbuiltins\nevalX"
    seen = cpython(data)
    assert [n[:2] for n in seen["py_names"]] == [["builtins", "eval"]], seen
    assert safeload.scan_bytes(data).verdict is not Verdict.SAFE
    assert "builtins.eval" in names_of(data)


# -- agreement table: probes that showed no divergence --------------------------------

POLICY = Policy.default()
_SP = sg("os", "system") + sbu("touch canary") + tuple1() + reduce()

AGREE: dict[str, bytes] = {
    # memo
    "memoize-after-gapped-put": proto(4)
    + none()
    + put(5)
    + sg("os", "system")
    + memoize()  # len(memo) == 1, so key 1
    + pop()
    + get(1)
    + string("x")
    + tuple1()
    + reduce()
    + stop(),
    "put-plus-get-space": none() + put("+1") + glob("os", "system") + put(" 1") + get("1") + stop(),
    "get-underscore-index": glob("os", "system") + put("1_0") + pop() + get("10") + stop(),
    "get-negative": glob("os", "system") + put("0") + pop() + get("-1") + stop(),
    "put-minus-zero": glob("os", "system") + put("-0") + pop() + get("0") + stop(),
    "binput-overwrite": glob("builtins", "len")
    + binput(0)
    + pop()
    + glob("os", "system")
    + binput(0)
    + pop()
    + binget(0)
    + string("x")
    + tuple1()
    + reduce()
    + stop(),
    "stack-global-from-memo": proto(4)
    + sbu("os")
    + binput(0)
    + sbu("system")
    + binput(1)
    + pop()
    + pop()
    + binget(0)
    + binget(1)
    + stack_global()
    + stop(),
    # MEMOIZE uses len(memo): after PUT 1 alone that is 1, so it overwrites key 1
    "memoize-overwrites-sparse-key": proto(4)
    + sbu("os")
    + put(1)
    + pop()
    + sbu("builtins")
    + memoize()
    + pop()
    + get(1)
    + sbu("len")
    + stack_global()
    + stop(),
    "sparse-key-joins-dense": proto(4)
    + sbu("os")
    + put(1)
    + pop()
    + sbu("builtins")
    + put(0)
    + pop()
    + sbu("posix")
    + memoize()  # len(memo) == 2
    + pop()
    + get(2)
    + sbu("system")
    + stack_global()
    + stop(),
    # MARK / POP / STOP
    "pop-eats-mark": mark() + pop() + _CALL + stop(),
    "pop-mark-without-mark": _CALL + pop_mark() + stop(),
    "stop-with-open-mark": _CALL + mark() + none() + stop(),
    "stop-on-empty-mark": _CALL + mark() + stop(),
    # PROTO and _compat_pickle
    "proto0-after-proto4": proto(4) + proto(0) + glob("__builtin__", "eval") + stop(),
    "proto6": proto(6) + _CALL + stop(),
    "proto2-stack-global-mapped": proto(2) + sg("__builtin__", "eval") + stop(),
    "proto3-not-mapped": proto(3) + glob("__builtin__", "eval") + stop(),
    "proto2-inst-mapped": proto(2) + mark() + inst("__builtin__", "eval") + stop(),
    "no-proto-stack-global-mapped": sg("__builtin__", "eval") + stop(),
    "name-mapping-copy-reg": glob("copy_reg", "_reconstructor") + stop(),
    "import-mapping-commands": glob("commands", "getoutput") + stop(),
    "proto-inside-frame": proto(4) + framed(proto(2) + glob("__builtin__", "eval") + stop()),
    "getattr-via-builtin-alias": proto(2)
    + sg("__builtin__", "getattr")
    + sg("posixpath", "os")
    + sbu("system")
    + tuple2()
    + reduce()
    + stop(),
    # EXT / PERSID / buffers
    "ext1-zero": proto(2) + ext1(0) + stop(),
    "ext4-negative": proto(2) + ext4(-1) + stop(),
    "persid-not-ascii": b"P\xff\n" + stop(),
    "binpersid": proto(2) + none() + binpersid() + stop(),
    "readonly-buffer-of-none": proto(5) + none() + readonly_buffer() + stop(),
    # STACK_GLOBAL operand types
    "stack-global-binstring": proto(4)
    + short_binstring(b"os")
    + short_binstring(b"system")
    + stack_global()
    + stop(),
    "stack-global-string": proto(4) + string("os") + string("system") + stack_global() + stop(),
    "stack-global-unicode": proto(4)
    + unicode_("os")
    + unicode_("system")
    + stack_global()
    + stop(),
    "stack-global-bytes": proto(4)
    + short_binbytes(b"os")
    + short_binbytes(b"system")
    + stack_global()
    + stop(),
    # text INT / LONG / FLOAT
    "int-hex": int_("0x10") + pop() + _CALL + stop(),
    "int-c-octal": int_("010") + pop() + _CALL + stop(),
    "int-09": b"I09\n0" + _CALL + stop(),
    "int-x1": b"Ix1\n0" + _CALL + stop(),
    "long-hex": b"L0x1fL\n0" + _CALL + stop(),
    "float-underscore": b"F1_0\n0" + _CALL + stop(),
    "float-overflow": b"F1e999\n0" + _CALL + stop(),
    "float-hex": b"F0x1p3\n0" + _CALL + stop(),
    # frames and several pickles
    "frame-zero-size": proto(4) + frame(0) + _SP + stop(),
    "frame-stop-then-pickle-in-frame": proto(4) + framed(none() + stop() + _SP + stop()),
    "two-pickles": none() + stop() + _CALL + stop(),
    "pickle-junk-pickle": none() + stop() + b"\xff" + _CALL + stop(),
    # getattr folding
    "getattr-3-args": proto(4)
    + sg("builtins", "getattr")
    + sg("builtins", "object")
    + sbu("__subclasses__")
    + none()
    + tuple3()
    + reduce()
    + stop(),
    "getattr-on-folded": proto(4)
    + sg("builtins", "getattr")
    + binput(0)
    + sg("builtins", "getattr")
    + sg("zoneinfo", "ZoneInfo")
    + sbu("_unpickle")
    + tuple2()
    + reduce()
    + sbu("__globals__")
    + tuple2()
    + reduce()
    + stop(),
    "getattr-args-list": proto(4)
    + sg("builtins", "getattr")
    + empty_list()
    + mark()
    + sg("zoneinfo", "ZoneInfo")
    + sbu("_unpickle")
    + appends()
    + reduce()
    + stop(),
    # BUILD / APPEND / SETITEM targets
    "build-on-memo-global": glob("os", "system")
    + binput(0)
    + pop()
    + binget(0)
    + empty_dict()
    + build()
    + stop(),
    "append-on-global": glob("builtins", "list") + none() + append() + stop(),
    "setitem-on-memo-global": glob("builtins", "dict")
    + binput(0)
    + pop()
    + binget(0)
    + none()
    + none()
    + setitem()
    + stop(),
    "additems-on-global": proto(4) + sg("builtins", "set") + mark() + none() + additems() + stop(),
    # calls through other opcodes
    "inst": mark() + inst("os", "system") + stop(),
    "obj": mark() + glob("os", "system") + string("x") + obj() + stop(),
    "newobj-ex": proto(4)
    + sg("os", "system")
    + empty_tuple()
    + empty_dict()
    + newobj_ex()
    + stop(),
    "dotted-global-proto4": proto(4) + glob("pathlib", "os.system") + stop(),
}


@pytest.fixture(scope="module")
def agree_results() -> dict[str, dict[str, Any]]:
    line = json.dumps([base64.b64encode(d).decode("ascii") for d in AGREE.values()]) + "\n"
    proc = subprocess.run(
        [sys.executable, "-I", str(ORACLE), "1024"],
        input=line.encode(),
        capture_output=True,
        timeout=120,
        cwd=ORACLE.parent,
        check=True,
    )
    return dict(zip(AGREE, json.loads(proc.stdout), strict=True))


@pytest.mark.parametrize("name", list(AGREE))
def test_agrees_with_cpython(name: str, agree_results: dict[str, dict[str, Any]]) -> None:
    # Every (module, name) either unpickler asks find_class for is reported
    # (as written, before _compat_pickle), and a stream is only `safe` when
    # every name, mapped with the protocol current at that opcode, is allowed.
    data = AGREE[name]
    seen = agree_results[name]
    walked = {g.raw or (g.module, g.name) for g in analyze(data).globals}
    asked = {tuple(n) for n in seen["names"]} | {tuple(n[:2]) for n in seen["py_names"]}
    assert asked <= walked, (asked, walked)
    if safeload.scan_bytes(data).verdict is Verdict.SAFE:
        assert not seen["persids"]
        for module, qualname, protocol in seen["py_names"]:
            assert POLICY.decide(*map_name(module, qualname, protocol)).allowed
        assert len(seen["names"]) == len(seen["py_names"])


# -- getattr folding ---------------------------------------------------------------


@pytest.mark.parametrize("escape", ["returned", "in-defaultdict", "in-list"])
def test_folded_getattr_that_escapes_is_not_safe(escape: str) -> None:
    # The first use of getattr is a legitimate fold (zoneinfo:ZoneInfo._unpickle,
    # allowlisted); BINGET 0 then hands the getattr builtin itself to the caller.
    # CPython imported builtins.getattr (an SL104 name) and the loaded object
    # graph contains it, so the stream is not "every global allowlisted".
    fold = (
        sg("builtins", "getattr")
        + binput(0)
        + sg("zoneinfo", "ZoneInfo")
        + sbu("_unpickle")
        + tuple2()
        + reduce()
        + pop()
    )
    tail = {
        "returned": binget(0),
        "in-defaultdict": sg("collections", "defaultdict") + binget(0) + tuple1() + reduce(),
        "in-list": empty_list() + binget(0) + append(),
    }[escape]
    data = proto(4) + fold + tail + stop()
    seen = cpython(data)
    assert ["builtins", "getattr"] in seen["names"], seen
    assert seen["error"] is None, seen
    assert safeload.scan_bytes(data).verdict is not Verdict.SAFE


# -- frames ---------------------------------------------------------------------------


def test_overlong_frame_is_walked(tmp_path: Path) -> None:
    # _Unframer.load_frame does BytesIO(file_read(size)) without checking the
    # length, so every opcode inside the short frame runs; only the C unpickler
    # refuses.  The walker should name os.system (the verdict is already not safe).
    data = proto(4) + frame(1000) + _SP + stop()
    seen = cpython(data)
    assert seen["error"] is not None, seen  # C: truncated
    assert [n[:2] for n in seen["py_names"]] == [["os", "system"]], seen
    assert seen["py_error"] is None, seen
    assert ["os", "system"] in joblib_reader(tmp_path, data)["names"]
    assert safeload.scan_bytes(data).verdict is not Verdict.SAFE
    assert "os.system" in names_of(data)


_ALIGN = sbu("numpy_array_alignment_bytes")


@pytest.mark.parametrize(
    ("extra", "array"),
    [
        (b"", b"\x01" * 5),  # joblib <= 1.1: no attribute, no padding byte
        (_ALIGN + binint1(16), b"\x00" + b"\x01" * 5),  # padding length 0
        (_ALIGN + none(), b"\x01" * 5),  # None: no padding byte
        (_ALIGN + newfalse(), b"\x00" + b"\x01" * 5),  # False is not None: padding byte
        (_ALIGN + sbu("x"), b"\x03\xff\xff\xff" + b"\x01" * 5),  # any non-None value
        (_ALIGN + empty_list(), b"\x02\xff\xff" + b"\x01" * 5),
    ],
    ids=["absent", "pad-0", "none", "false", "str", "list"],
)
def test_wrapper_alignment_forms_agree(tmp_path: Path, extra: bytes, array: bytes) -> None:
    # joblib reads a padding byte iff getattr(wrapper, 'numpy_array_alignment_bytes',
    # None) is not None, whatever its type.  Both readers must stop exactly at
    # the final STOP (the array bytes 0x01 are no opcode, so a wrong skip fails).
    data = _WRAPPER + _state(_dtype("u1", -1, 0), extra) + b"b" + array + stop()
    seen = joblib_reader(tmp_path, data)
    assert seen["error"] is None and seen["end"] == len(data), seen
    assert safeload.scan_bytes(data).verdict is Verdict.SAFE


def test_wrapper_made_by_class_assignment(tmp_path: Path) -> None:
    # pickle._Unpickler.load_build: state (dict, slotstate) updates __dict__ and
    # then setattr()s each slot item, so '__class__' is reassigned (pandas'
    # Float64Dtype and ~90 other allowlisted classes accept NumpyArrayWrapper).
    # joblib's isinstance check after that BUILD then reads an array.
    dict_state = _state(_dtype("u1", -1, 0))
    slot_state = (
        empty_dict() + sbu("__class__") + sg("joblib.numpy_pickle", "NumpyArrayWrapper") + setitem()
    )
    data = (
        proto(4)
        + sg("copyreg", "_reconstructor")
        + sg("pandas", "Float64Dtype")
        + sg("builtins", "object")
        + none()
        + tuple3()
        + reduce()
        + dict_state
        + slot_state
        + tuple2()
        + b"b"
        + binunicode_header(len(_PAYLOAD))
        + _PAYLOAD
        + stop()
    )
    pytest.importorskip("pandas")
    seen = joblib_reader(tmp_path, data)
    assert ["os", "system"] in seen["names"], seen
    assert safeload.scan_bytes(data).verdict is not Verdict.SAFE
