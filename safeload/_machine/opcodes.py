"""Every pickle opcode of protocols 0-5, as one declarative table.

Each record holds only fixed facts about the CPython unpickler
(`Lib/pickle.py`, `Modules/_pickle.c`): the opcode byte, how its in-stream
argument is laid out, which protocol introduced it, and what class of effect
it has on the symbolic machine.  `tests/test_opcodes.py` checks the table
against `pickletools.opcodes`, as `pickletools` checks itself against
`pickle.py`, so the two cannot drift apart.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Arg(enum.Enum):
    """How an opcode's argument is laid out in the stream."""

    NONE = "none"
    U1 = "uint1"  # 1 unsigned byte
    U2 = "uint2"  # 2 bytes little-endian unsigned
    I4 = "int4"  # 4 bytes little-endian signed
    U4 = "uint4"  # 4 bytes little-endian unsigned
    U8 = "uint8"  # 8 bytes little-endian unsigned
    LINE = "line"  # bytes up to and including b"\n"
    LINE2 = "line2"  # two such lines (module, name)
    LEN1 = "len1"  # uint1 length, then that many bytes
    LEN4 = "len4"  # uint4 length, then that many bytes
    SLEN4 = "slen4"  # int4 length (negative is an error), then bytes
    LEN8 = "len8"  # uint8 length, then that many bytes


class Effect(enum.Enum):
    """What an opcode does to the symbolic machine."""

    PUSH_CONST = "push-const"  # pushes a value decoded from its own argument
    PUSH_EMPTY = "push-empty"  # pushes a fresh empty container
    BUILD_FROM_MARK = "build-from-mark"  # pops to MARK, pushes a container
    BUILD_FROM_TOP = "build-from-top"  # pops 1-3 items, pushes a tuple
    MUTATE = "mutate"  # appends or sets items into the object below
    STACK = "stack"  # MARK, POP, POP_MARK, DUP
    MEMO_PUT = "memo-put"
    MEMO_GET = "memo-get"
    IMPORT = "import"  # resolves a global through find_class
    CALL = "call"  # calls or instantiates an object from the stack
    IMPORT_CALL = "import-call"  # INST: import, then call with MARK items
    SET_STATE = "set-state"  # BUILD
    EXTENSION = "extension"  # EXT1/2/4: copyreg extension registry
    PERSID = "persid"  # hands a value to the loader's persistent_load
    BUFFER = "buffer"  # out-of-band buffers (protocol 5)
    FRAMING = "framing"  # PROTO, FRAME
    STOP = "stop"


@dataclass(frozen=True, slots=True)
class OpInfo:
    """Fixed facts about one opcode."""

    name: str
    code: int
    arg: Arg
    proto: int
    effect: Effect


def _t(name: str, code: str, arg: Arg, proto: int, effect: Effect) -> OpInfo:
    return OpInfo(name, ord(code), arg, proto, effect)


E = Effect
OPCODES: tuple[OpInfo, ...] = (
    # integers, strings, bytes, floats and singletons
    _t("INT", "I", Arg.LINE, 0, E.PUSH_CONST),
    _t("BININT", "J", Arg.I4, 1, E.PUSH_CONST),
    _t("BININT1", "K", Arg.U1, 1, E.PUSH_CONST),
    _t("BININT2", "M", Arg.U2, 1, E.PUSH_CONST),
    _t("LONG", "L", Arg.LINE, 0, E.PUSH_CONST),
    _t("LONG1", "\x8a", Arg.LEN1, 2, E.PUSH_CONST),
    _t("LONG4", "\x8b", Arg.SLEN4, 2, E.PUSH_CONST),
    _t("STRING", "S", Arg.LINE, 0, E.PUSH_CONST),
    _t("BINSTRING", "T", Arg.SLEN4, 1, E.PUSH_CONST),
    _t("SHORT_BINSTRING", "U", Arg.LEN1, 1, E.PUSH_CONST),
    _t("BINBYTES", "B", Arg.LEN4, 3, E.PUSH_CONST),
    _t("SHORT_BINBYTES", "C", Arg.LEN1, 3, E.PUSH_CONST),
    _t("BINBYTES8", "\x8e", Arg.LEN8, 4, E.PUSH_CONST),
    _t("BYTEARRAY8", "\x96", Arg.LEN8, 5, E.PUSH_CONST),
    _t("NEXT_BUFFER", "\x97", Arg.NONE, 5, E.BUFFER),
    _t("READONLY_BUFFER", "\x98", Arg.NONE, 5, E.BUFFER),
    _t("NONE", "N", Arg.NONE, 0, E.PUSH_CONST),
    _t("NEWTRUE", "\x88", Arg.NONE, 2, E.PUSH_CONST),
    _t("NEWFALSE", "\x89", Arg.NONE, 2, E.PUSH_CONST),
    _t("UNICODE", "V", Arg.LINE, 0, E.PUSH_CONST),
    _t("SHORT_BINUNICODE", "\x8c", Arg.LEN1, 4, E.PUSH_CONST),
    _t("BINUNICODE", "X", Arg.LEN4, 1, E.PUSH_CONST),
    _t("BINUNICODE8", "\x8d", Arg.LEN8, 4, E.PUSH_CONST),
    _t("FLOAT", "F", Arg.LINE, 0, E.PUSH_CONST),
    _t("BINFLOAT", "G", Arg.U8, 1, E.PUSH_CONST),
    # containers
    _t("EMPTY_LIST", "]", Arg.NONE, 1, E.PUSH_EMPTY),
    _t("APPEND", "a", Arg.NONE, 0, E.MUTATE),
    _t("APPENDS", "e", Arg.NONE, 1, E.MUTATE),
    _t("LIST", "l", Arg.NONE, 0, E.BUILD_FROM_MARK),
    _t("EMPTY_TUPLE", ")", Arg.NONE, 1, E.PUSH_EMPTY),
    _t("TUPLE", "t", Arg.NONE, 0, E.BUILD_FROM_MARK),
    _t("TUPLE1", "\x85", Arg.NONE, 2, E.BUILD_FROM_TOP),
    _t("TUPLE2", "\x86", Arg.NONE, 2, E.BUILD_FROM_TOP),
    _t("TUPLE3", "\x87", Arg.NONE, 2, E.BUILD_FROM_TOP),
    _t("EMPTY_DICT", "}", Arg.NONE, 1, E.PUSH_EMPTY),
    _t("DICT", "d", Arg.NONE, 0, E.BUILD_FROM_MARK),
    _t("SETITEM", "s", Arg.NONE, 0, E.MUTATE),
    _t("SETITEMS", "u", Arg.NONE, 1, E.MUTATE),
    _t("EMPTY_SET", "\x8f", Arg.NONE, 4, E.PUSH_EMPTY),
    _t("ADDITEMS", "\x90", Arg.NONE, 4, E.MUTATE),
    _t("FROZENSET", "\x91", Arg.NONE, 4, E.BUILD_FROM_MARK),
    # stack manipulation
    _t("POP", "0", Arg.NONE, 0, E.STACK),
    _t("DUP", "2", Arg.NONE, 0, E.STACK),
    _t("MARK", "(", Arg.NONE, 0, E.STACK),
    _t("POP_MARK", "1", Arg.NONE, 1, E.STACK),
    # memo
    _t("GET", "g", Arg.LINE, 0, E.MEMO_GET),
    _t("BINGET", "h", Arg.U1, 1, E.MEMO_GET),
    _t("LONG_BINGET", "j", Arg.U4, 1, E.MEMO_GET),
    _t("PUT", "p", Arg.LINE, 0, E.MEMO_PUT),
    _t("BINPUT", "q", Arg.U1, 1, E.MEMO_PUT),
    _t("LONG_BINPUT", "r", Arg.U4, 1, E.MEMO_PUT),
    _t("MEMOIZE", "\x94", Arg.NONE, 4, E.MEMO_PUT),
    # globals, calls and object building
    _t("EXT1", "\x82", Arg.U1, 2, E.EXTENSION),
    _t("EXT2", "\x83", Arg.U2, 2, E.EXTENSION),
    _t("EXT4", "\x84", Arg.I4, 2, E.EXTENSION),
    _t("GLOBAL", "c", Arg.LINE2, 0, E.IMPORT),
    _t("STACK_GLOBAL", "\x93", Arg.NONE, 4, E.IMPORT),
    _t("REDUCE", "R", Arg.NONE, 0, E.CALL),
    _t("BUILD", "b", Arg.NONE, 0, E.SET_STATE),
    _t("INST", "i", Arg.LINE2, 0, E.IMPORT_CALL),
    _t("OBJ", "o", Arg.NONE, 1, E.CALL),
    _t("NEWOBJ", "\x81", Arg.NONE, 2, E.CALL),
    _t("NEWOBJ_EX", "\x92", Arg.NONE, 4, E.CALL),
    # framing and control
    _t("PROTO", "\x80", Arg.U1, 2, E.FRAMING),
    _t("STOP", ".", Arg.NONE, 0, E.STOP),
    _t("FRAME", "\x95", Arg.U8, 4, E.FRAMING),
    _t("PERSID", "P", Arg.LINE, 0, E.PERSID),
    _t("BINPERSID", "Q", Arg.NONE, 1, E.PERSID),
)
del E

BY_NAME: dict[str, OpInfo] = {op.name: op for op in OPCODES}
BY_CODE: dict[int, OpInfo] = {op.code: op for op in OPCODES}

#: Size of fixed-width arguments, indexed by `Arg`.
FIXED_SIZE: dict[Arg, int] = {Arg.NONE: 0, Arg.U1: 1, Arg.U2: 2, Arg.I4: 4, Arg.U4: 4, Arg.U8: 8}

#: Size of the length prefix of counted arguments.
LENGTH_PREFIX: dict[Arg, int] = {Arg.LEN1: 1, Arg.LEN4: 4, Arg.SLEN4: 4, Arg.LEN8: 8}

HIGHEST_PROTOCOL = 5

OPCODE_BYTES: frozenset[int] = frozenset(BY_CODE)
"""Bytes that are opcodes: a stream without PROTO may start with any of them."""


def starts_with_proto(data: Any, start: int = 0, end: int | None = None) -> bool:
    """`data[start:end]` opens with a PROTO opcode of a protocol CPython reads.

    The one check of "this looks like a binary pickle" used to sniff files
    and archive members.
    """
    end = len(data) if end is None else end
    return end - start >= 2 and data[start] == PROTO and data[start + 1] <= HIGHEST_PROTOCOL


def _code(name: str) -> int:
    return BY_NAME[name].code


# Byte values used by the walker's hot loop, named once here.
INT = _code("INT")
BININT = _code("BININT")
BININT1 = _code("BININT1")
BININT2 = _code("BININT2")
LONG = _code("LONG")
LONG1 = _code("LONG1")
LONG4 = _code("LONG4")
STRING = _code("STRING")
BINSTRING = _code("BINSTRING")
SHORT_BINSTRING = _code("SHORT_BINSTRING")
BINBYTES = _code("BINBYTES")
SHORT_BINBYTES = _code("SHORT_BINBYTES")
BINBYTES8 = _code("BINBYTES8")
BYTEARRAY8 = _code("BYTEARRAY8")
NEXT_BUFFER = _code("NEXT_BUFFER")
READONLY_BUFFER = _code("READONLY_BUFFER")
NONE = _code("NONE")
NEWTRUE = _code("NEWTRUE")
NEWFALSE = _code("NEWFALSE")
UNICODE = _code("UNICODE")
SHORT_BINUNICODE = _code("SHORT_BINUNICODE")
BINUNICODE = _code("BINUNICODE")
BINUNICODE8 = _code("BINUNICODE8")
FLOAT = _code("FLOAT")
BINFLOAT = _code("BINFLOAT")
EMPTY_LIST = _code("EMPTY_LIST")
APPEND = _code("APPEND")
APPENDS = _code("APPENDS")
LIST = _code("LIST")
EMPTY_TUPLE = _code("EMPTY_TUPLE")
TUPLE = _code("TUPLE")
TUPLE1 = _code("TUPLE1")
TUPLE2 = _code("TUPLE2")
TUPLE3 = _code("TUPLE3")
EMPTY_DICT = _code("EMPTY_DICT")
DICT = _code("DICT")
SETITEM = _code("SETITEM")
SETITEMS = _code("SETITEMS")
EMPTY_SET = _code("EMPTY_SET")
ADDITEMS = _code("ADDITEMS")
FROZENSET = _code("FROZENSET")
POP = _code("POP")
DUP = _code("DUP")
MARK = _code("MARK")
POP_MARK = _code("POP_MARK")
GET = _code("GET")
BINGET = _code("BINGET")
LONG_BINGET = _code("LONG_BINGET")
PUT = _code("PUT")
BINPUT = _code("BINPUT")
LONG_BINPUT = _code("LONG_BINPUT")
MEMOIZE = _code("MEMOIZE")
EXT1 = _code("EXT1")
EXT2 = _code("EXT2")
EXT4 = _code("EXT4")
GLOBAL = _code("GLOBAL")
STACK_GLOBAL = _code("STACK_GLOBAL")
REDUCE = _code("REDUCE")
BUILD = _code("BUILD")
INST = _code("INST")
OBJ = _code("OBJ")
NEWOBJ = _code("NEWOBJ")
NEWOBJ_EX = _code("NEWOBJ_EX")
PROTO = _code("PROTO")
STOP = _code("STOP")
FRAME = _code("FRAME")
PERSID = _code("PERSID")
BINPERSID = _code("BINPERSID")

#: Opcodes whose value is a `str` under the default loaders (STRING-family
#: bytes are decoded with the unpickler's `encoding`, ASCII by default).
STR_OPCODES = frozenset(
    {UNICODE, SHORT_BINUNICODE, BINUNICODE, BINUNICODE8, STRING, BINSTRING, SHORT_BINSTRING}
)
