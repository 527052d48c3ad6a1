"""Reading the walker's symbolic values as the Python values a loader would build.

The walker keeps constants as the offsets of their opcodes and everything else
as nodes (`Tup`, `Res`, `GRef`, `Opaque`). A check asks for a value of a kind
(an int, a str, raw bytes, a tuple's items, a dict's items); anything that is
not such a constant, or not one the walk kept, reads as `None`: not known,
which a check that needs the value treats as a problem.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from .._machine import opcodes as O
from .._machine.walker import GRef, Opaque, PickleWalk, Res, Tup, const_value

__all__ = ["NOT_KNOWN", "Values", "canonical_of"]

NOT_KNOWN: Any = object()
"""What `Values.const` returns for anything that is no decodable constant."""

#: Ints longer than this many bytes are not decoded (a LONG4 may hold megabytes);
#: `Values.int_size` still tells their size.
_MAX_INT_BYTES = 4096
_RAW_BYTES_OPS = frozenset({O.SHORT_BINBYTES, O.BINBYTES, O.BINBYTES8, O.BYTEARRAY8})
_TEXT_BYTES_OPS = frozenset({O.STRING, O.BINSTRING, O.SHORT_BINSTRING})
_INT_OPS = frozenset({O.INT, O.BININT, O.BININT1, O.BININT2, O.LONG, O.LONG1, O.LONG4})
_CODECS_ENCODE = ("_codecs", "encode")
_LATIN1 = frozenset({"latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1"})
_u4 = struct.Struct("<I").unpack_from
_i4 = struct.Struct("<i").unpack_from
_u8 = struct.Struct("<Q").unpack_from


def canonical_of(item: object) -> tuple[str, str] | None:
    """(module, qualname) of a resolved global node, else None."""
    if type(item) is GRef and item.resolved:
        return (item.module, item.name)
    return None


@dataclass(frozen=True)
class Values:
    """Decoding of one walked pickle's values (`data` is the buffer it was walked in)."""

    data: Any
    walk: PickleWalk

    # -- constants ---------------------------------------------------------------

    def const(self, item: object) -> Any:
        """The constant's value; `NOT_KNOWN` for nodes, big ints and undecodable bytes.

        Raw bytes are decoded whole only by `raw_bytes`; here a bytes constant
        longer than 4096 bytes is `NOT_KNOWN` too.
        """
        if type(item) is not int:
            return NOT_KNOWN
        op = self.data[item]
        if op in (O.LONG1, O.LONG4):
            return self.int_value(item)
        if op in (O.BINBYTES, O.BINBYTES8, O.BYTEARRAY8):
            raw = self.raw_bytes(item)
            return NOT_KNOWN if raw is None or len(raw) > 4096 else bytes(raw)
        try:
            value = const_value(self.data, item)
        except (ValueError, IndexError, UnicodeDecodeError, struct.error, OverflowError):
            return NOT_KNOWN
        if op in (O.INT, O.LONG) and type(value) is str:
            return NOT_KNOWN  # a line neither int() reading accepts
        return value

    def is_int(self, item: object) -> bool:
        """A constant that unpickles as an int (never a bool)."""
        if type(item) is not int or self.data[item] not in _INT_OPS:
            return False
        return type(self.const(item)) is int

    def int_value(self, item: object) -> int | None:
        """An int constant (LONG1/LONG4 up to 4096 bytes), else None."""
        if type(item) is not int:
            return None
        op = self.data[item]
        if op == O.LONG1 or op == O.LONG4:
            size = self.int_size(item)
            if size is None or size > _MAX_INT_BYTES:
                return None
            head = 2 if op == O.LONG1 else 5
            body = bytes(self.data[item + head : item + head + size])
            return int.from_bytes(body, "little", signed=True)
        if op not in _INT_OPS:
            return None
        value = self.const(item)
        return value if type(value) is int else None

    def int_size(self, item: object) -> int | None:
        """How many bytes an int constant's two's complement takes (LONG opcodes
        are not decoded for this), else None."""
        if type(item) is not int:
            return None
        op = self.data[item]
        if op == O.LONG1:
            return int(self.data[item + 1])
        if op == O.LONG4:
            return int(_i4(self.data, item + 1)[0])
        value = self.int_value(item)
        return None if value is None else (value.bit_length() + 8) // 8

    def text(self, item: object) -> str | None:
        """A str constant, else None."""
        if type(item) is not int or self.data[item] not in O.STR_OPCODES:
            return None
        value = self.const(item)
        return value if type(value) is str else None

    def text_length(self, item: object) -> int | None:
        """The encoded length of a str constant without decoding it, else None."""
        if type(item) is not int:
            return None
        op = self.data[item]
        if op == O.SHORT_BINUNICODE or op == O.SHORT_BINSTRING:
            return int(self.data[item + 1])
        if op == O.BINUNICODE:
            return int(_u4(self.data, item + 1)[0])
        if op == O.BINSTRING:
            return int(_i4(self.data, item + 1)[0])
        if op == O.BINUNICODE8:
            return int(_u8(self.data, item + 1)[0])
        if op == O.UNICODE or op == O.STRING:
            return int(self.data.find(b"\n", item + 1)) - item - 1
        return None

    def is_none(self, item: object) -> bool:
        return type(item) is int and self.data[item] == O.NONE

    def is_bool(self, item: object) -> bool:
        return type(self.const(item)) is bool

    # -- raw bytes -----------------------------------------------------------------

    def raw_bytes(self, item: object) -> memoryview | bytes | None:
        """Bytes a loader hands to a consumer as a raw buffer: a bytes or bytearray
        constant, a STRING-family constant (str under ASCII/latin-1, whose latin-1
        encoding numpy reads), or `_codecs.encode(text, 'latin1')` (how protocols
        0-2 write bytes). None for anything else."""
        if type(item) is int:
            op = self.data[item]
            if op in _RAW_BYTES_OPS:
                if op == O.SHORT_BINBYTES:
                    start, size = item + 2, int(self.data[item + 1])
                elif op == O.BINBYTES:
                    start, size = item + 5, int(_u4(self.data, item + 1)[0])
                else:
                    start, size = item + 9, int(_u8(self.data, item + 1)[0])
                return memoryview(self.data)[start : start + size]
            if op in _TEXT_BYTES_OPS:
                text = self.const(item)
                return text.encode("latin-1") if type(text) is str else None
            return None
        if type(item) is Res and canonical_of(item.fn) == _CODECS_ENCODE:
            args = self.items(item.args)
            if args is None or len(args) != 2:
                return None
            text, encoding = self.text(args[0]), self.text(args[1])
            if text is None or encoding is None or encoding.lower() not in _LATIN1:
                return None
            try:
                return text.encode("latin-1")
            except UnicodeEncodeError:
                return None
        return None

    def is_raw_bytes(self, item: object) -> bool:
        """`raw_bytes` would find bytes (without copying them)."""
        if type(item) is int:
            return self.data[item] in _RAW_BYTES_OPS or self.data[item] in _TEXT_BYTES_OPS
        return self.raw_bytes(item) is not None

    def raw_length(self, item: object) -> int | None:
        """The length of raw bytes, else None."""
        raw = self.raw_bytes(item)
        return None if raw is None else len(raw)

    # -- containers ------------------------------------------------------------------

    def items(self, item: object) -> tuple[Any, ...] | None:
        """A tuple's items (the empty tuple constant too), else None (not a tuple,
        or too long for the walk to have kept its items)."""
        if type(item) is Tup:
            return None if item.items is None else tuple(item.items)
        if type(item) is int and self.data[item] == O.EMPTY_TUPLE:
            return ()
        return None

    def int_tuple(self, item: object) -> tuple[int, ...] | None:
        """A tuple of int constants, else None."""
        found = self.items(item)
        if found is None:
            return None
        out = []
        for x in found:
            value = self.int_value(x) if self.is_int(x) else None
            if value is None:
                return None
            out.append(value)
        return tuple(out)

    def dict_entries(self, item: object) -> list[tuple[Any, Any]] | None:
        """A dict's (key, value) items in insertion order, else None."""
        found = self.walk.dict_items(item)
        if found is None or len(found) % 2:
            return None
        return [(found[i], found[i + 1]) for i in range(0, len(found), 2)]

    def str_dict(self, item: object) -> dict[str, Any] | None:
        """A dict whose keys are str constants, as {key: value item} (the last
        value of a key wins, as in the real dict), else None."""
        entries = self.dict_entries(item)
        if entries is None:
            return None
        out: dict[str, Any] = {}
        for key, value in entries:
            text = self.text(key)
            if text is None:
                return None
            out[text] = value
        return out

    def is_dict(self, item: object) -> bool:
        """A dict (constant EMPTY_DICT or a DICT node), known or not."""
        if type(item) is int:
            return bool(self.data[item] == O.EMPTY_DICT)
        return type(item) is Opaque and item.what == "dict"

    def is_list(self, item: object) -> bool:
        if type(item) is int:
            return bool(self.data[item] == O.EMPTY_LIST)
        return type(item) is Opaque and item.what == "list"


def call_args(values: Values, res: Res) -> tuple[Any, ...] | None:
    """A call's positional arguments, or None when they are not known one by one."""
    return values.items(res.args)
