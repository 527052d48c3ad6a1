"""A tiny byte-level pickle assembler for hostile test samples.

Every function returns the raw bytes of one opcode (with its argument), so a
sample reads like the opcode listing it stands for:

    proto(2) + glob("os", "system") + sbu("touch canary") + tuple1() + reduce() + stop()

Nothing here calls `pickle.dumps`: hostile samples must be exactly the bytes
a test names, including ones no pickler would ever write (wrong lengths,
frames that lie, names that only resolve through `_compat_pickle`).
"""

from __future__ import annotations

import struct

# -- protocol, framing, end -------------------------------------------------


def proto(n: int) -> bytes:
    """PROTO n."""
    return b"\x80" + bytes([n])


def frame(n: int) -> bytes:
    """FRAME with an 8-byte little-endian length."""
    return b"\x95" + struct.pack("<Q", n)


def framed(body: bytes) -> bytes:
    """FRAME whose declared length is exactly `body`, followed by `body`."""
    return frame(len(body)) + body


def stop() -> bytes:
    """STOP."""
    return b"."


# -- stack and memo -------------------------------------------------------------


def mark() -> bytes:
    """MARK."""
    return b"("


def pop() -> bytes:
    """POP."""
    return b"0"


def pop_mark() -> bytes:
    """POP_MARK."""
    return b"1"


def dup() -> bytes:
    """DUP."""
    return b"2"


def put(i: int | str) -> bytes:
    """PUT (text index; a str is written verbatim, e.g. a 5000-digit number)."""
    return b"p" + str(i).encode("ascii") + b"\n"


def get(i: int | str) -> bytes:
    """GET (text index)."""
    return b"g" + str(i).encode("ascii") + b"\n"


def binput(i: int) -> bytes:
    """BINPUT (1-byte index)."""
    return b"q" + bytes([i])


def binget(i: int) -> bytes:
    """BINGET (1-byte index)."""
    return b"h" + bytes([i])


def long_binput(i: int) -> bytes:
    """LONG_BINPUT (4-byte index)."""
    return b"r" + struct.pack("<I", i)


def long_binget(i: int) -> bytes:
    """LONG_BINGET (4-byte index)."""
    return b"j" + struct.pack("<I", i)


def memoize() -> bytes:
    """MEMOIZE."""
    return b"\x94"


# -- constants --------------------------------------------------------------------


def none() -> bytes:
    """NONE."""
    return b"N"


def newtrue() -> bytes:
    """NEWTRUE."""
    return b"\x88"


def newfalse() -> bytes:
    """NEWFALSE."""
    return b"\x89"


def int_(text: int | str) -> bytes:
    """INT (text line; a str is written verbatim, e.g. '0x10')."""
    return b"I" + str(text).encode("ascii") + b"\n"


def long_(text: int | str) -> bytes:
    """LONG (text line; the trailing L is added for ints)."""
    body = f"{text}L" if isinstance(text, int) else text
    return b"L" + body.encode("ascii") + b"\n"


def binint(i: int) -> bytes:
    """BININT (signed 4 bytes)."""
    return b"J" + struct.pack("<i", i)


def binint1(i: int) -> bytes:
    """BININT1."""
    return b"K" + bytes([i])


def binint2(i: int) -> bytes:
    """BININT2."""
    return b"M" + struct.pack("<H", i)


def long1(b: bytes) -> bytes:
    """LONG1 with raw two's-complement little-endian bytes."""
    return b"\x8a" + bytes([len(b)]) + b


def long4(b: bytes, declared: int | None = None) -> bytes:
    """LONG4 (declared length defaults to the body's)."""
    return b"\x8b" + struct.pack("<i", len(b) if declared is None else declared) + b


def binfloat(x: float) -> bytes:
    """BINFLOAT."""
    return b"G" + struct.pack(">d", x)


def string(s: str) -> bytes:
    """STRING (protocol 0: quoted, escape-decoded)."""
    return b"S" + repr(s).encode("ascii") + b"\n"


def binstring(b: bytes, declared: int | None = None) -> bytes:
    """BINSTRING (signed 4-byte length)."""
    return b"T" + struct.pack("<i", len(b) if declared is None else declared) + b


def short_binstring(b: bytes) -> bytes:
    """SHORT_BINSTRING."""
    return b"U" + bytes([len(b)]) + b


def unicode_(s: str) -> bytes:
    """UNICODE (protocol 0, raw-unicode-escape line)."""
    return b"V" + s.encode("raw-unicode-escape") + b"\n"


def sbu(s: str) -> bytes:
    """SHORT_BINUNICODE."""
    raw = s.encode("utf-8", "surrogatepass")
    return b"\x8c" + bytes([len(raw)]) + raw


def binunicode(s: str, declared: int | None = None) -> bytes:
    """BINUNICODE (4-byte length)."""
    raw = s.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(raw) if declared is None else declared) + raw


def binunicode8(s: str, declared: int | None = None) -> bytes:
    """BINUNICODE8 (8-byte length)."""
    raw = s.encode("utf-8", "surrogatepass")
    return b"\x8d" + struct.pack("<Q", len(raw) if declared is None else declared) + raw


def short_binbytes(b: bytes) -> bytes:
    """SHORT_BINBYTES."""
    return b"C" + bytes([len(b)]) + b


def binbytes(b: bytes, declared: int | None = None) -> bytes:
    """BINBYTES (4-byte length)."""
    return b"B" + struct.pack("<I", len(b) if declared is None else declared) + b


def binbytes8(b: bytes, declared: int | None = None) -> bytes:
    """BINBYTES8 (8-byte length)."""
    return b"\x8e" + struct.pack("<Q", len(b) if declared is None else declared) + b


def bytearray8(b: bytes, declared: int | None = None) -> bytes:
    """BYTEARRAY8 (8-byte length)."""
    return b"\x96" + struct.pack("<Q", len(b) if declared is None else declared) + b


# -- containers -------------------------------------------------------------------


def empty_tuple() -> bytes:
    """EMPTY_TUPLE."""
    return b")"


def empty_list() -> bytes:
    """EMPTY_LIST."""
    return b"]"


def empty_dict() -> bytes:
    """EMPTY_DICT."""
    return b"}"


def empty_set() -> bytes:
    """EMPTY_SET."""
    return b"\x8f"


def tuple_() -> bytes:
    """TUPLE (items since the last MARK)."""
    return b"t"


def tuple1() -> bytes:
    """TUPLE1."""
    return b"\x85"


def tuple2() -> bytes:
    """TUPLE2."""
    return b"\x86"


def tuple3() -> bytes:
    """TUPLE3."""
    return b"\x87"


def list_() -> bytes:
    """LIST (items since the last MARK)."""
    return b"l"


def dict_() -> bytes:
    """DICT (items since the last MARK)."""
    return b"d"


def frozenset_() -> bytes:
    """FROZENSET (items since the last MARK)."""
    return b"\x91"


def append() -> bytes:
    """APPEND."""
    return b"a"


def appends() -> bytes:
    """APPENDS."""
    return b"e"


def setitem() -> bytes:
    """SETITEM."""
    return b"s"


def setitems() -> bytes:
    """SETITEMS."""
    return b"u"


def additems() -> bytes:
    """ADDITEMS."""
    return b"\x90"


# -- globals, calls, state ------------------------------------------------------


def glob(module: str, name: str) -> bytes:
    """GLOBAL (two text lines)."""
    return b"c" + module.encode("utf-8") + b"\n" + name.encode("utf-8") + b"\n"


def inst(module: str, name: str) -> bytes:
    """INST (two text lines; pops to MARK and calls)."""
    return b"i" + module.encode("utf-8") + b"\n" + name.encode("utf-8") + b"\n"


def stack_global() -> bytes:
    """STACK_GLOBAL."""
    return b"\x93"


def sglobal(module: str, name: str) -> bytes:
    """The module and name as SHORT_BINUNICODE, then STACK_GLOBAL."""
    return sbu(module) + sbu(name) + stack_global()


def reduce() -> bytes:
    """REDUCE."""
    return b"R"


def build() -> bytes:
    """BUILD."""
    return b"b"


def obj() -> bytes:
    """OBJ (pops to MARK; calls the first item with the rest)."""
    return b"o"


def newobj() -> bytes:
    """NEWOBJ."""
    return b"\x81"


def newobj_ex() -> bytes:
    """NEWOBJ_EX."""
    return b"\x92"


def ext1(code: int) -> bytes:
    """EXT1."""
    return b"\x82" + bytes([code])


def ext2(code: int) -> bytes:
    """EXT2."""
    return b"\x83" + struct.pack("<H", code)


def ext4(code: int) -> bytes:
    """EXT4."""
    return b"\x84" + struct.pack("<i", code)


def persid(pid: str) -> bytes:
    """PERSID (ASCII line)."""
    return b"P" + pid.encode("ascii") + b"\n"


def binpersid() -> bytes:
    """BINPERSID (pops the id)."""
    return b"Q"


def next_buffer() -> bytes:
    """NEXT_BUFFER."""
    return b"\x97"


def readonly_buffer() -> bytes:
    """READONLY_BUFFER."""
    return b"\x98"


# -- composites -------------------------------------------------------------------


def call1(fn: bytes, arg: bytes) -> bytes:
    """`fn(arg)`: callable, one argument, TUPLE1, REDUCE."""
    return fn + arg + tuple1() + reduce()


def calln(fn: bytes, *args: bytes) -> bytes:
    """`fn(*args)` with a MARK ... TUPLE argument tuple."""
    return fn + mark() + b"".join(args) + tuple_() + reduce()
