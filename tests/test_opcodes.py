"""The opcode table agrees with pickletools, and the walker handles every opcode."""

from __future__ import annotations

import pickle
import pickletools

import pytest

from safeload._machine import opcodes as O
from safeload._machine.walker import analyze

ARG_NAMES = {
    O.Arg.NONE: None,
    O.Arg.U1: {"uint1"},
    O.Arg.U2: {"uint2"},
    O.Arg.I4: {"int4"},
    O.Arg.U4: {"uint4"},
    O.Arg.U8: {"uint8", "float8"},
    O.Arg.LINE: {
        "decimalnl_short",
        "decimalnl_long",
        "stringnl",
        "stringnl_noescape",
        "unicodestringnl",
        "floatnl",
    },
    O.Arg.LINE2: {"stringnl_noescape_pair"},
    O.Arg.LEN1: {"string1", "bytes1", "unicodestring1", "long1"},
    O.Arg.LEN4: {"bytes4", "unicodestring4"},
    O.Arg.SLEN4: {"string4", "long4"},
    O.Arg.LEN8: {"bytes8", "bytearray8", "unicodestring8"},
}


def test_table_matches_pickletools_exactly() -> None:
    ours = {op.name: op for op in O.OPCODES}
    theirs = {op.name: op for op in pickletools.opcodes}
    assert set(ours) == set(theirs)
    for name, info in theirs.items():
        mine = ours[name]
        assert mine.code == ord(info.code), name
        assert mine.proto == info.proto, name
        expected = ARG_NAMES[mine.arg]
        if expected is None:
            assert info.arg is None, name
        else:
            assert info.arg is not None and info.arg.name in expected, name


def test_table_matches_pickle_module_constants() -> None:
    for op in O.OPCODES:
        assert getattr(pickle, op.name) == bytes([op.code]), op.name


def test_codes_are_unique() -> None:
    assert len(O.BY_CODE) == len(O.OPCODES) == 68


# One minimal, valid stream per opcode (protocol 5 unless the opcode is older).
SAMPLES: dict[str, bytes] = {
    "INT": b"I12\n.",
    "BININT": b"J\x01\x00\x00\x00.",
    "BININT1": b"K\x01.",
    "BININT2": b"M\x01\x00.",
    "LONG": b"L12L\n.",
    "LONG1": b"\x80\x02\x8a\x01\x01.",
    "LONG4": b"\x80\x02\x8b\x01\x00\x00\x00\x01.",
    "STRING": b"S'ab'\n.",
    "BINSTRING": b"T\x02\x00\x00\x00ab.",
    "SHORT_BINSTRING": b"U\x02ab.",
    "BINBYTES": b"\x80\x03B\x02\x00\x00\x00ab.",
    "SHORT_BINBYTES": b"\x80\x03C\x02ab.",
    "BINBYTES8": b"\x80\x04\x8e\x02\x00\x00\x00\x00\x00\x00\x00ab.",
    "BYTEARRAY8": b"\x80\x05\x96\x02\x00\x00\x00\x00\x00\x00\x00ab.",
    "READONLY_BUFFER": b"\x80\x05C\x02ab\x98.",
    "NONE": b"N.",
    "NEWTRUE": b"\x80\x02\x88.",
    "NEWFALSE": b"\x80\x02\x89.",
    "UNICODE": b"Vab\n.",
    "SHORT_BINUNICODE": b"\x80\x04\x8c\x02ab.",
    "BINUNICODE": b"X\x02\x00\x00\x00ab.",
    "BINUNICODE8": b"\x80\x04\x8d\x02\x00\x00\x00\x00\x00\x00\x00ab.",
    "FLOAT": b"F1.5\n.",
    "BINFLOAT": b"G?\xf8\x00\x00\x00\x00\x00\x00.",
    "EMPTY_LIST": b"].",
    "APPEND": b"]K\x01a.",
    "APPENDS": b"](K\x01K\x02e.",
    "LIST": b"(K\x01l.",
    "EMPTY_TUPLE": b").",
    "TUPLE": b"(K\x01t.",
    "TUPLE1": b"\x80\x02K\x01\x85.",
    "TUPLE2": b"\x80\x02K\x01K\x02\x86.",
    "TUPLE3": b"\x80\x02K\x01K\x02K\x03\x87.",
    "EMPTY_DICT": b"}.",
    "DICT": b"(K\x01K\x02d.",
    "SETITEM": b"}K\x01K\x02s.",
    "SETITEMS": b"}(K\x01K\x02u.",
    "EMPTY_SET": b"\x80\x04\x8f.",
    "ADDITEMS": b"\x80\x04\x8f(K\x01\x90.",
    "FROZENSET": b"\x80\x04(K\x01\x91.",
    "POP": b"K\x01K\x020.",
    "DUP": b"(K\x012t.",
    "MARK": b"(t.",
    "POP_MARK": b"K\x01(K\x021.",
    "GET": b"K\x01p0\n0g0\n.",
    "BINGET": b"K\x01q\x000h\x00.",
    "LONG_BINGET": b"K\x01r\x00\x00\x00\x000j\x00\x00\x00\x00.",
    "PUT": b"K\x01p0\n.",
    "BINPUT": b"K\x01q\x00.",
    "LONG_BINPUT": b"K\x01r\x00\x00\x00\x00.",
    "MEMOIZE": b"\x80\x04K\x01\x94.",
    "GLOBAL": b"ccollections\nOrderedDict\n.",
    "STACK_GLOBAL": b"\x80\x04\x8c\x0bcollections\x8c\x0bOrderedDict\x93.",
    "REDUCE": b"ccollections\nOrderedDict\n)R.",
    "BUILD": b"ccollections\nOrderedDict\n)R}b.",
    "INST": b"(icollections\nOrderedDict\n.",
    "OBJ": b"(ccollections\nOrderedDict\no.",
    "NEWOBJ": b"\x80\x02ccollections\nOrderedDict\n)\x81.",
    "NEWOBJ_EX": b"\x80\x04ccollections\nOrderedDict\n)}\x92.",
    "PROTO": b"\x80\x05N.",
    "STOP": b"N.",
    "FRAME": b"\x80\x04\x95\x02\x00\x00\x00\x00\x00\x00\x00N.",
    # The opcodes below make a stream that is not safe on purpose.
    "EXT1": b"\x80\x02\x82\x01.",
    "EXT2": b"\x80\x02\x83\x01\x00.",
    "EXT4": b"\x80\x02\x84\x01\x00\x00\x00.",
    "PERSID": b"P1\n.",
    "BINPERSID": b"K\x01Q.",
    "NEXT_BUFFER": b"\x80\x05\x97.",
}

EXPECTED_EVENTS = {
    "EXT1": {"extension-code"},
    "EXT2": {"extension-code"},
    "EXT4": {"extension-code"},
    "NEXT_BUFFER": {"out-of-band-buffer"},
}


def test_every_opcode_has_a_sample() -> None:
    assert set(SAMPLES) == set(O.BY_NAME)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_walker_handles_every_opcode(name: str) -> None:
    data = SAMPLES[name]
    used = {op.name for op, _, _ in pickletools.genops(data)}
    assert name in used, f"sample for {name} does not use it"
    result = analyze(data)
    assert len(result.pickles) == 1
    walk = result.pickles[0]
    assert walk.complete, [e.message for e in walk.events]
    assert walk.end == len(data)
    assert {e.rule for e in result.all_events} == EXPECTED_EVENTS.get(name, set())


@pytest.mark.parametrize("name", sorted(n for n in SAMPLES if n not in EXPECTED_EVENTS))
def test_samples_really_load(name: str) -> None:
    """Each sample is a real pickle: CPython loads it (persistent ids aside)."""
    data = SAMPLES[name]
    if name in ("PERSID", "BINPERSID"):

        class P(pickle.Unpickler):
            def persistent_load(self, pid: object) -> object:
                return pid

        import io

        P(io.BytesIO(data)).load()
    else:
        pickle.loads(data)


def test_unknown_opcode_fails_closed() -> None:
    for code in range(256):
        if code in O.BY_CODE:
            continue
        result = analyze(bytes([code]) + b".")
        assert [e.rule for e in result.all_events] == ["malformed-pickle"], hex(code)
