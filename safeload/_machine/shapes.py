"""How a walked stream uses each global: its uses and the shapes of its calls' arguments.

Both are facts about the stream, not judgments: the allow-pack generator
records them from real pickles, and the policy compares a scanned file's
with what its allow entries cover. A *shape* is the tuple of the argument
kinds of one call, e.g. `("str", "bool", "bool")` for `numpy.dtype('f8',
False, True)`; kinds name what the unpickler would pass, never its value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._names import Use
from . import opcodes as O
from .walker import GRef, Opaque, PersRes, Res, Tup

__all__ = ["RECONSTRUCTORS", "Shape", "arg_kind", "call_shape", "effective_uses", "shape_text"]

Shape = tuple[str, ...]

#: Functions that create an instance of their first argument without running
#: its `__init__`, as NEWOBJ does: the class is rebuilt, not called.
RECONSTRUCTORS = frozenset(
    {("copyreg", "_reconstructor"), ("copyreg", "__newobj__"), ("copyreg", "__newobj_ex__")}
)

_KIND_OF_OPCODE: dict[int, str] = {
    **dict.fromkeys(O.STR_OPCODES, "str"),
    O.INT: "int",
    O.BININT: "int",
    O.BININT1: "int",
    O.BININT2: "int",
    O.LONG: "int",
    O.LONG1: "int",
    O.LONG4: "int",
    O.FLOAT: "float",
    O.BINFLOAT: "float",
    O.SHORT_BINBYTES: "bytes",
    O.BINBYTES: "bytes",
    O.BINBYTES8: "bytes",
    O.BYTEARRAY8: "bytearray",
    O.NONE: "none",
    O.NEWTRUE: "bool",
    O.NEWFALSE: "bool",
    O.EMPTY_TUPLE: "tuple",
    O.EMPTY_LIST: "list",
    O.EMPTY_DICT: "dict",
    O.EMPTY_SET: "set",
}


def arg_kind(data: Any, item: object) -> str:
    """The kind of one stack item: a constant's type, or what built it."""
    t = type(item)
    if t is int:
        assert isinstance(item, int)
        op = data[item]
        if op == O.INT:
            # INT "00"/"01" is how protocol 0 writes False/True.
            line = bytes(data[item + 1 : item + 4])
            if line in (b"00\n", b"01\n"):
                return "bool"
        return _KIND_OF_OPCODE.get(op, "constant")
    if t is Tup:
        return "tuple"
    if t is GRef:
        return "global"
    if t is Res:
        return "object"
    if t is PersRes:
        return "persistent"
    if t is Opaque:
        assert isinstance(item, Opaque)
        return item.what
    return "object"


def call_shape(data: Any, res: Res) -> Shape | None:
    """The argument kinds of a call, or None when they are not known one by one
    (a long tuple kept only by its length, or arguments that are no tuple)."""
    args = res.args
    # keywords (only a call through functools.partial has them) as `name=kind`
    named = tuple(f"{name}={arg_kind(data, value)}" for name, value in res.kwargs)
    if type(args) is int:
        return named if data[args] == O.EMPTY_TUPLE else None
    if type(args) is Tup:
        assert isinstance(args, Tup)
        if args.items is None:
            return None
        return (*(arg_kind(data, a) for a in args.items), *named)
    return None


def shape_text(shape: Shape | None) -> str:
    """`str,bool,bool`; `()` for no arguments; `?` when unknown."""
    if shape is None:
        return "?"
    return ",".join(shape) if shape else "()"


def effective_uses(globals_: Iterable[GRef]) -> dict[int, set[str]]:
    """`{id(gref): uses}` where the class argument of a reconstructor call counts as
    instantiated (it is built without `__init__`, like NEWOBJ), not merely stored."""
    grefs = list(globals_)
    uses = {id(g): set(g.uses) for g in grefs}
    for g in grefs:
        if (g.module, g.name) not in RECONSTRUCTORS:
            continue
        for call in g.calls:
            args = call.args
            if type(args) is Tup and args.items:
                first = args.items[0]
                if type(first) is GRef and id(first) in uses:
                    entry = uses[id(first)]
                    entry.discard(Use.STORED)
                    entry.add(Use.INSTANTIATED)
                    if call.builds:
                        entry.add(Use.STATE)
    return uses
