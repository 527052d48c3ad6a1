"""The symbolic pickle machine: every global a stream would import, without running it.

The walker mirrors CPython's unpickler (`Lib/pickle.py`, `Modules/_pickle.c`)
opcode by opcode: a stack with MARK fences, a memo keyed like the real one,
the current protocol (which decides `_compat_pickle` name mapping), FRAMEs,
and one fresh machine per pickle in a multi-pickle stream.  Nothing is ever
imported or called, and no value is materialised:

* a constant on the stack is the `int` offset of the opcode that pushed it,
  decoded only when a consumer needs it (STACK_GLOBAL, call arguments);
* everything else is a small node (`GRef`, `Res`, `Tup`, ...) that shares
  structure exactly as the real objects would, so memo DAGs stay DAGs.

Memory and time are linear in the input.  Every length, memo index and frame
size is checked against the bytes that remain before anything depends on it.
"""

from __future__ import annotations

import codecs
import os
import re
import struct
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import repeat
from operator import length_hint
from typing import Any

from .._names import Use, canonical, map_name
from . import opcodes as O

# The optional C loop over runs of plain data opcodes (`_fastwalk.c`; the pure
# loop below is the reference and takes every opcode it leaves). Not built (no
# compiler at install time) or SAFELOAD_PURE_WALKER=1: the pure loop alone.
_fast_run: Callable[..., tuple[int, int]] | None = None
if os.environ.get("SAFELOAD_PURE_WALKER", "") in ("", "0"):
    try:
        from . import _fastwalk
    except ImportError:
        pass
    else:
        _fast_run = _fastwalk.run

DEFAULT_MAX_OPCODES = 200_000_000
#: Tuples longer than this keep only their length (their items are never
#: needed: only small tuples are call arguments or getattr operands).
_TUPLE_KEEP = 64
#: Bounds on attempts to find further pickles after unparseable bytes.
_MAX_RESYNC = 32
#: Memo indices further than this past the dense part are a loader DoS.
_MEMO_GAP = 1 << 16
#: Dict contents are kept (BUILD states, dtype fields: what state checks read)
#: up to this many items per dict, and this many over a pickle until a joblib
#: wrapper appears (whose state must always be read); past the second bound,
#: dicts created later are not kept and read as unknown.
_DICT_ITEMS = 2048
_DICT_BUDGET = 1 << 17
#: Reports show call arguments: the first items appended or added to a list
#: or set are kept (one more than shown, to say "..."), for this many of them.
_SHOWN_ITEMS = 8
_SHOWN_CONTAINERS = 4096

_unpack_i4 = struct.Struct("<i").unpack_from
_unpack_u4 = struct.Struct("<I").unpack_from
_unpack_u2 = struct.Struct("<H").unpack_from
_unpack_u8 = struct.Struct("<Q").unpack_from
_unpack_f8 = struct.Struct(">d").unpack_from

# Text integers: what int(x, 0) (pure Python) or strtol(x, 0) (C) accepts.
_STRTOL_RE = re.compile(rb"[ \t\r\f\v]*[+-]?(0[0-7]*|[1-9][0-9]*|0[xX][0-9a-fA-F]+)")


class GRef:
    """A global: what `find_class` would import, and how the stream uses it."""

    __slots__ = (
        "args",
        "base",
        "calls",
        "canon",
        "ext",
        "folds",
        "kind",
        "module",
        "name",
        "offset",
        "proto",
        "raw",
        "refs",
        "uses",
    )

    def __init__(
        self,
        module: str,
        name: str,
        offset: int,
        kind: str,
        raw: tuple[str, str] | None = None,
        proto: int = 0,
    ):
        self.module = module
        self.name = name
        self.offset = offset
        self.kind = kind
        """GLOBAL, STACK_GLOBAL, INST, EXT1/2/4 or getattr (a folded attribute)."""
        self.raw = raw
        """The (module, name) as written, when `_compat_pickle` mapped it."""
        self.proto = proto
        """The protocol current at its opcode: it decides the `_compat_pickle`
        mapping (< 3) and whether `find_class` walks a dotted name (>= 4)."""
        self.uses: set[str] = set()
        """`Use` members (plain strings compare equal)."""
        self.args: list[str] = []
        self.calls: list[Res] = []
        """Every call or instantiation of it, with its arguments and (after BUILD)
        its state: what the policy's argument and state checks read."""
        self.ext: int | None = None
        self.base: GRef | None = None
        self.refs = 1
        """Times the object was pushed (its opcode, then memo GETs and DUPs)."""
        self.folds = 0
        """Times it was consumed as the callable of a folded getattr."""
        self.canon = 0
        """Times (a joblib wrapper class) it was instantiated the way joblib does."""

    @property
    def resolved(self) -> bool:
        """False when the name cannot be known statically (computed or EXT)."""
        return self.ext is None and self.kind != "computed"

    @property
    def folded_away(self) -> bool:
        """`builtins.getattr` whose every reference was folded into the dotted
        global it reaches: judged through those names, never by itself (the
        scanner's findings and the restricted unpickler both ask this)."""
        return (
            self.module == "builtins"
            and self.name == "getattr"
            and self.resolved
            and self.uses == {Use.FOLDED}
            and self.refs == self.folds
        )

    @property
    def canonical(self) -> str:
        """`module.name` or `module:dotted.qualname`."""
        if self.ext is not None:
            return f"<extension code {self.ext}>"
        if self.kind == "computed":
            return (
                f"{self.module or '?'}:{self.name or '?'}"
                if "." in (self.name or "")
                else f"{self.module or '?'}.{self.name or '?'}"
            )
        return canonical(self.module, self.name)

    def __repr__(self) -> str:
        return f"GRef({self.canonical!r}, offset={self.offset}, uses={sorted(self.uses)})"


class Res:
    """The object a call (REDUCE/NEWOBJ/OBJ/INST) would return."""

    __slots__ = ("args", "builds", "fn", "kwargs", "lists", "offset", "state", "use")

    def __init__(self, fn: object, offset: int, args: object = None, use: str = ""):
        self.fn = fn
        self.offset = offset
        self.args = args
        self.use = use
        """'called' (REDUCE/INST/OBJ: __init__ or the function runs) or 'instantiated'."""
        self.kwargs: tuple[tuple[str, int], ...] = ()
        """Keyword arguments (name, constant's offset): only a call through a
        `functools.partial` has them (`_partial_call`)."""
        self.state: object = None
        """What BUILD gave it (kept for joblib's dtype and wrapper states)."""
        self.builds = 0
        """How many BUILDs it got: a genuine pickle builds an object once, and a
        check of its state must see every state it is given."""
        self.lists: dict[Any, int | None] | None = None
        """The lists among the items of its last BUILD state, each with the number
        of items it held at that BUILD (None: not known), or None for no list:
        `ndarray.__setstate__` reads an object array's items from its list without
        checking its length (`PickleWalk.list_length`)."""


class Tup:
    """A tuple built from stack items (items kept only when short)."""

    __slots__ = ("items", "n")

    def __init__(self, items: list[Any] | None, n: int):
        self.items = items
        self.n = n


class Opaque:
    """A container or value whose contents never matter to the analysis."""

    __slots__ = ("what",)

    def __init__(self, what: str):
        self.what = what


class PersRes:
    """Whatever the loader's `persistent_load` returns for a persistent id."""

    __slots__ = ("offset", "pid")

    def __init__(self, pid: object, offset: int):
        self.pid = pid
        self.offset = offset


_DICT = Opaque("dict")
"""A dict whose items are not kept."""
_UNSEEN: Any = object()
_FROZENSET = Opaque("frozenset")
_BUFFER = Opaque("buffer")


@dataclass
class Event:
    """A structural finding: `rule` is a rule *name* from rules/rules.toml."""

    rule: str
    offset: int
    message: str
    gref: GRef | None = None


@dataclass
class PickleWalk:
    """What one pickle (from a PROTO/first opcode to its STOP) contains."""

    start: int
    end: int
    complete: bool
    globals: list[GRef] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    persids: list[tuple[int, object]] = field(default_factory=list)
    opcodes: int = 0
    protocol: int = 0
    unpadded: list[int] = field(default_factory=list)
    """Offsets of joblib raw arrays with no padding byte before them: there a
    plain `pickle.load` (e.g. `pandas.read_pickle` of a gzipped joblib file)
    would read the array bytes as opcodes."""
    dicts: dict[Any, list[Any] | None] = field(default_factory=dict)
    """Items (key, value, key, value, ...) put into each dict, keyed by its
    EMPTY_DICT offset or (protocol 0) its DICT node; None when too many."""
    dict_gap: list[int] = field(default_factory=list)
    """[from, to): dicts created there were not kept (`_DICT_BUDGET`)."""
    shown: dict[int, list[Any]] = field(default_factory=dict)
    """The first items appended or added to each list or set, keyed by its
    EMPTY_LIST/EMPTY_SET offset (for `render`; `_SHOWN_ITEMS`)."""
    unshown: dict[Any, int] = field(default_factory=dict)
    """How many more items were put into each list or set than `shown` keeps
    (past its first items, or past `_SHOWN_CONTAINERS`), keyed like `shown`, or
    by the node of a list the LIST opcode built: every item counted once."""
    reassigned: set[Any] = field(default_factory=set)
    """Lists SETITEM(S) wrote into where `dicts` does not tell (`_keep`): a
    `slice` key (`builtins.slice` is allowlisted) removes items."""
    module_pids: bool = False
    """Read with torch's legacy `persistent_load`, which returns `cls` for a
    `('module', cls, source_file, source)` id (`torch_module_class`)."""

    def dict_items(self, item: object) -> list[Any] | None:
        """The items of the dict `item` stands for, or None when not known
        (not a dict, never filled, too big, or not kept)."""
        if type(item) is int:
            gap = self.dict_gap
            if gap and gap[0] <= item < (gap[1] if len(gap) > 1 else 1 << 62):
                return None
            return self.dicts.get(item)
        if type(item) is Opaque and item is not _DICT:
            return self.dicts.get(item)
        return None

    def list_length(self, item: object) -> int | None:
        """How many items the list `item` holds now (an EMPTY_LIST offset or a
        LIST node: `Values.is_list`), or None when that is not known: one that
        SETITEM(S) wrote into (a `slice` key removes items)."""
        if type(item) is not int and (type(item) is not Opaque or item.what != "list"):
            return None
        if item in self.reassigned or item in self.dicts:
            return None
        kept = self.shown.get(item) if type(item) is int else None
        return (0 if kept is None else len(kept)) + self.unshown.get(item, 0)


@dataclass
class StreamAnalysis:
    """Every pickle in a byte range, plus what lies between and after them."""

    pickles: list[PickleWalk] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    end: int = 0
    inert: Event | None = None
    """Set when no unpickler builds anything from this stream (`_inert_failure`):
    the event says where and why every loader stops. Whether the *file* is then
    `not-a-pickle` is the locator's call (no container reading may exist)."""

    @property
    def globals(self) -> list[GRef]:
        """Every global of every pickle, in stream order."""
        return [g for p in self.pickles for g in p.globals]

    @property
    def all_events(self) -> list[Event]:
        """Stream-level and per-pickle events."""
        return [*self.events, *(e for p in self.pickles for e in p.events)]

    @property
    def opcodes(self) -> int:
        """Opcodes walked over all pickles."""
        return sum(p.opcodes for p in self.pickles)


class _Memo:
    """The unpickler's memo, stored compactly.

    Picklers number memo entries 0, 1, 2, ... so the dense part is an int64
    array: a value >= 0 is a constant's offset, a negative value `~i` is
    `nodes[i]`.  Keys past the end of the array (only hand-made streams use
    them) go to a dict, so a huge index costs one entry, never an array of
    that size.  `len()` is the number of keys, as MEMOIZE needs.
    """

    __slots__ = ("appended", "events", "flagged", "nodes", "sparse", "vals")

    def __init__(self, events: list[Event]) -> None:
        self.vals = array("q")
        self.nodes: list[Any] = []
        self.sparse: dict[int, int] = {}
        self.events = events
        self.flagged = False
        self.appended = 0
        """Entries `put` appended to `vals`. The walk appends the others itself,
        one per memo write it takes in the same step as its string, and counts
        those opcodes by them (an int per write would cost 5% of a walk)."""

    def __len__(self) -> int:
        return len(self.vals) + len(self.sparse)

    def put(self, idx: int, item: Any, at: int) -> None:
        if type(item) is int:
            v = item
        else:
            self.nodes.append(item)
            v = ~(len(self.nodes) - 1)
        vals = self.vals
        n = len(vals)
        if idx < n:
            vals[idx] = v
        elif idx == n:
            vals.append(v)
            self.appended += 1
            sparse = self.sparse
            if sparse:
                sparse.pop(n, None)
                while len(vals) in sparse:
                    vals.append(sparse.pop(len(vals)))
                    self.appended += 1
        else:
            if idx - n > _MEMO_GAP and not self.flagged:
                self.flagged = True
                # CPython 3.11's C unpickler sizes its memo array by the
                # largest index: this one line would cost it gigabytes.
                self.events.append(
                    Event(
                        "resource-limit",
                        at,
                        f"memo index {idx} at offset {at} makes the C unpickler allocate "
                        f"about {(idx * 16) >> 20} MiB",
                    )
                )
            self.sparse[idx] = v

    def get(self, idx: int) -> Any:
        if 0 <= idx < len(self.vals):
            v = self.vals[idx]
        else:
            v = self.sparse[idx]  # KeyError: a memo miss
        if v >= 0:
            return v
        node = self.nodes[~v]
        if type(node) is GRef:
            node.refs += 1
        return node


class _Fail(Exception):
    """Stops one pickle's walk; `rule` names the SL3xx rule."""

    def __init__(self, rule: str, offset: int, message: str):
        super().__init__(message)
        self.rule = rule
        self.offset = offset
        self.message = message


# -- constant decoding (only when a consumer needs the value) -----------------


def const_value(data: Any, pos: int) -> object:
    """The Python value the constant-pushing opcode at `pos` stands for."""
    op = data[pos]
    if op == O.SHORT_BINUNICODE:
        n = data[pos + 1]
        return str(data[pos + 2 : pos + 2 + n], "utf-8", "surrogatepass")
    if op == O.BINUNICODE:
        n = _unpack_u4(data, pos + 1)[0]
        return str(data[pos + 5 : pos + 5 + n], "utf-8", "surrogatepass")
    if op == O.BINUNICODE8:
        n = _unpack_u8(data, pos + 1)[0]
        return str(data[pos + 9 : pos + 9 + n], "utf-8", "surrogatepass")
    if op == O.UNICODE:
        end = data.find(b"\n", pos + 1)
        return str(data[pos + 1 : end], "raw-unicode-escape")
    if op in (O.STRING, O.BINSTRING, O.SHORT_BINSTRING):
        return _string_bytes(data, pos).decode("latin-1")
    if op in (O.BININT1,):
        return data[pos + 1]
    if op == O.BININT2:
        return _unpack_u2(data, pos + 1)[0]
    if op == O.BININT:
        return _unpack_i4(data, pos + 1)[0]
    if op in (O.INT, O.LONG):
        end = data.find(b"\n", pos + 1)
        text = bytes(data[pos + 1 : end]).rstrip(b"L")
        if text == b"00" and op == O.INT:
            return False
        if text == b"01" and op == O.INT:
            return True
        try:
            return int(text, 0)
        except ValueError:
            return int(text, 8) if text.lstrip(b"+-").startswith(b"0") else text.decode("latin-1")
    if op == O.LONG1:
        n = data[pos + 1]
        return (
            int.from_bytes(data[pos + 2 : pos + 2 + n], "little", signed=True)
            if n <= 64
            else "<long int>"
        )
    if op == O.LONG4:
        return "<long int>"
    if op == O.BINFLOAT:
        return _unpack_f8(data, pos + 1)[0]
    if op == O.FLOAT:
        end = data.find(b"\n", pos + 1)
        return float(data[pos + 1 : end])
    if op == O.NONE:
        return None
    if op == O.NEWTRUE:
        return True
    if op == O.NEWFALSE:
        return False
    if op == O.SHORT_BINBYTES:
        n = data[pos + 1]
        return bytes(data[pos + 2 : pos + 2 + n])
    if op == O.BINBYTES:
        n = _unpack_u4(data, pos + 1)[0]
        return bytes(data[pos + 5 : pos + 5 + min(n, 4096)])
    if op in (O.BINBYTES8, O.BYTEARRAY8):
        n = _unpack_u8(data, pos + 1)[0]
        return bytes(data[pos + 9 : pos + 9 + min(n, 4096)])
    if op == O.EMPTY_TUPLE:
        return ()
    if op == O.EMPTY_LIST:
        return []
    if op == O.EMPTY_DICT:
        return {}
    if op == O.EMPTY_SET:
        return set()
    raise ValueError(f"opcode {op:#x} at {pos} does not push a constant")


def _const(data: Any, item: int) -> object:
    """`const_value` for the walker's own consumers: a string that does not
    decode is where the real unpickler would have failed, so fail there."""
    try:
        return const_value(data, item)
    except (UnicodeDecodeError, ValueError, IndexError, struct.error):
        raise _Fail("malformed-pickle", item, f"undecodable constant at offset {item}") from None


def _str_or_empty(data: Any, item: object) -> str:
    if type(item) is not int or not is_str_const(data, item):
        return ""
    try:
        return str(const_value(data, item))
    except (UnicodeDecodeError, ValueError):
        return ""


def _string_bytes(data: Any, pos: int) -> bytes:
    op = data[pos]
    if op == O.SHORT_BINSTRING:
        n = data[pos + 1]
        return bytes(data[pos + 2 : pos + 2 + n])
    if op == O.BINSTRING:
        n = _unpack_i4(data, pos + 1)[0]
        return bytes(data[pos + 5 : pos + 5 + n])
    end = data.find(b"\n", pos + 1)
    text = bytes(data[pos + 1 : end])
    return codecs.escape_decode(text[1:-1])[0]


def is_str_const(data: Any, item: object) -> bool:
    """True when a stack item is a constant that unpickles as `str`."""
    return type(item) is int and data[item] in O.STR_OPCODES


def render(data: Any, item: object, depth: int = 0, *, walk: PickleWalk | None = None) -> str:
    """A short, safe rendering of a stack item for reports: constants as `repr`
    (escaped), lists, sets and dicts with their first items when `walk` kept
    them, at most `_RENDER_WIDTH` characters."""
    text = _render(data, item, depth, walk)
    return text if len(text) <= _RENDER_WIDTH else text[: _RENDER_WIDTH - 3] + "..."


_RENDER_WIDTH = 200
_OPEN_CLOSE = {O.EMPTY_LIST: ("[", "]"), O.EMPTY_SET: ("{", "}"), O.EMPTY_DICT: ("{", "}")}


def _render(data: Any, item: object, depth: int, walk: PickleWalk | None) -> str:
    if type(item) is int:
        op = data[item]
        if walk is not None and op in _OPEN_CLOSE:
            return _render_container(data, item, op, depth, walk)
        try:
            value = const_value(data, item)
        except (ValueError, IndexError, UnicodeDecodeError, struct.error):
            return "<constant>"
        text = repr(value)
        return text if len(text) <= _RENDER_WIDTH else text[: _RENDER_WIDTH - 3] + "..."
    if isinstance(item, GRef):
        return item.canonical
    if isinstance(item, Tup):
        if item.items is None or depth > 2:
            return f"<tuple of {item.n}>"
        inner = _joined(_render(data, x, depth + 1, walk) for x in item.items)
        return f"({inner}{',' if item.n == 1 else ''})"
    if isinstance(item, Res):
        fn = item.fn.canonical if isinstance(item.fn, GRef) else "<object>"
        args = item.args
        if depth > 2 or type(args) is not Tup or args.items is None:
            return f"{fn}(...)"
        return f"{fn}({_joined(_render(data, x, depth + 1, walk) for x in args.items)})"
    if isinstance(item, PersRes):
        return "<persistent object>"
    if isinstance(item, Opaque):
        return f"<{item.what}>"
    return "<object>"


def _render_container(data: Any, item: int, op: int, depth: int, walk: PickleWalk) -> str:
    """A list, set or dict the pickle filled, with its first items."""
    kind = "dict" if op == O.EMPTY_DICT else "list" if op == O.EMPTY_LIST else "set"
    if op == O.EMPTY_DICT:
        if item not in walk.dicts:
            gap = walk.dict_gap
            if gap and gap[0] <= item < (gap[1] if len(gap) > 1 else 1 << 62):
                return "<dict>"  # created after the dict budget ran out: not kept
            return "{}"
        pairs = walk.dicts[item]
        if pairs is None:
            return "<dict>"  # too big to keep
        items = pairs[: 2 * _SHOWN_ITEMS + 2]
        more = len(pairs) > 2 * _SHOWN_ITEMS
    else:
        if item not in walk.shown:
            if len(walk.shown) >= _SHOWN_CONTAINERS:
                return f"<{kind}>"  # past the bound, contents were not kept
            return "[]" if kind == "list" else "set()"
        items = walk.shown[item]
        more = len(items) > _SHOWN_ITEMS
    if depth > 2:
        return f"<{kind}>"
    if op == O.EMPTY_DICT:
        kv = zip(items[0 : 2 * _SHOWN_ITEMS : 2], items[1 : 2 * _SHOWN_ITEMS : 2], strict=False)
        parts = (
            f"{_render(data, k, depth + 1, walk)}: {_render(data, v, depth + 1, walk)}"
            for k, v in kv
        )
    else:
        parts = (_render(data, x, depth + 1, walk) for x in items[:_SHOWN_ITEMS])
    open_, close = _OPEN_CLOSE[op]
    return open_ + _joined(parts, more) + close


def _joined(parts: Iterable[str], more: bool = False) -> str:
    """`", ".join(parts)`, stopping once past the width a report shows (so that
    rendering nested arguments costs at most about that many characters)."""
    out: list[str] = []
    size = 0
    for part in parts:
        out.append(part)
        size += len(part) + 2
        if size > _RENDER_WIDTH:
            more = True
            break
    if more:
        out.append("...")
    return ", ".join(out)


# -- the walk -------------------------------------------------------------------


def _underflow(at: int) -> _Fail:
    return _Fail("malformed-pickle", at, f"stack underflow at offset {at}")


def _line(data: Any, at: int, limit: int, n: int, start: int) -> tuple[bytes, int]:
    """One text argument line (without its newline) and the offset after it."""
    nl = data.find(b"\n", at, limit)
    if nl < 0:
        # A line running past its FRAME is followed (and reported at the
        # loop head as a frame violation); past the input it is truncation.
        nl = data.find(b"\n", limit, n) if limit != n else -1
        if nl < 0:
            raise _Fail(
                "truncated-pickle", start, f"pickle data was truncated (line at offset {at})"
            )
    return bytes(data[at:nl]), nl + 1


def _global_at_eof(
    data: Any, at: int, n: int, start: int, proto: int, out: PickleWalk, kind: str = "GLOBAL"
) -> None:
    """A GLOBAL cut by EOF: pickle.py's readline returns the rest without a
    newline and `[:-1]` drops its last byte, so pickle._Unpickler (joblib,
    pandas) imports that name before it notices the end."""
    nl = data.find(b"\n", at, n)
    if nl < 0:
        module, name = bytes(data[at:n])[:-1], b""
    elif data.find(b"\n", nl + 1, n) >= 0:
        return  # not cut by EOF (a frame problem): reported elsewhere
    else:
        module, name = bytes(data[at:nl]), bytes(data[nl + 1 : n])[:-1]
    encoding = "utf-8" if kind == "GLOBAL" else "ascii"
    try:
        _new_global(out, module.decode(encoding), name.decode(encoding), start, kind, proto)
    except UnicodeDecodeError:
        pass


def _new_global(out: PickleWalk, module: str, name: str, at: int, kind: str, proto: int) -> GRef:
    mod2, name2 = map_name(module, name, proto)
    g = GRef(
        mod2, name2, at, kind, None if (mod2, name2) == (module, name) else (module, name), proto
    )
    out.globals.append(g)
    return g


def _is_wrapper(g: object) -> bool:
    return type(g) is GRef and g.name == "NumpyArrayWrapper" and g.module == "joblib.numpy_pickle"


def _maybe_wrapper(inst: Res) -> bool:
    """Could this object be a joblib NumpyArrayWrapper instance?

    True when the wrapper class is the callable, or is handed to the callable
    (`copyreg._reconstructor(NumpyArrayWrapper, object, None)`, `__newobj__`).
    """
    if _is_wrapper(inst.fn):
        return True
    args = inst.args
    return type(args) is Tup and args.items is not None and any(_is_wrapper(x) for x in args.items)


def _stray(wrappers: list[GRef]) -> bool:
    return any(w.refs != w.canon for w in wrappers)


def _count_canonical(data: Any, res: Res) -> None:
    fn, args = res.fn, res.args
    if type(fn) is not GRef:
        return
    if _is_wrapper(fn):
        empty = (type(args) is int and data[args] == O.EMPTY_TUPLE) or (
            type(args) is Tup and args.n == 0
        )
        if res.use == Use.INSTANTIATED and empty:
            fn.canon += 1
    elif (
        (fn.module, fn.name) == ("copyreg", "_reconstructor")
        and type(args) is Tup
        and args.items is not None
        and args.n == 3
    ):
        cls = args.items[0]
        if type(cls) is GRef and _is_wrapper(cls):
            cls.canon += 1


def _canonical_wrapper(data: Any, inst: Res, wrappers: list[GRef]) -> bool:
    """The two shapes picklers give a wrapper, each BUILT exactly once.

    `NEWOBJ(NumpyArrayWrapper, ())` (protocol >= 2) and
    `copyreg._reconstructor(NumpyArrayWrapper, builtins.object, None)` (0, 1)
    both skip `__init__`, so every attribute comes from the one BUILD state.
    """
    if inst.state is not None:
        return False  # a second BUILD would merge into the first state
    if any(w.refs != w.canon for w in wrappers):
        # The class went somewhere else too (into a state dict, a list...):
        # `__class__` assignment can then turn any object into a wrapper.
        return False
    fn, args = inst.fn, inst.args
    if _is_wrapper(fn):
        no_args = (type(args) is int and data[args] == O.EMPTY_TUPLE) or (
            type(args) is Tup and args.n == 0
        )
        return inst.use == Use.INSTANTIATED and no_args
    if type(args) is not Tup or args.items is None:
        return False
    if type(fn) is GRef and (fn.module, fn.name) == ("copyreg", "_reconstructor") and args.n == 3:
        cls, base, state = args.items
        return (
            _is_wrapper(cls)
            and type(base) is GRef
            and (base.module, base.name) == ("builtins", "object")
            and type(state) is int
            and data[state] == O.NONE
        )
    return False


def _call(data: Any, out: PickleWalk, fn: object, args: object, at: int, use: str) -> Any:
    if type(fn) is GRef:
        if use == Use.CALLED and fn.resolved and fn.module == "builtins" and fn.name == "getattr":
            folded = _fold_getattr(data, fn, args, at)
            if folded is not None:
                out.globals.append(folded)
                return folded
        fn.uses.add(use)
        if len(fn.args) < 3 and type(args) is Tup:
            fn.args.append(render(data, args, walk=out))
        res = Res(fn, at, args, use)
        fn.calls.append(res)
        if fn.name == "NumpyArrayWrapper" or fn.name == "_reconstructor":
            _count_canonical(data, res)
        return res
    if type(fn) is Res and use == Use.CALLED:
        through = _partial_call(data, out, fn, args, at)
        if through is not None:
            return through
    out.events.append(
        Event(
            "computed-callable", at, f"{use} object is {render(data, fn)}, not an imported global"
        )
    )
    return Res(fn, at)


_PARTIAL = ("functools", "partial")
#: Opcodes of immutable constants: what a partial's bound arguments may be.
_IMMUTABLE_CONSTANTS = frozenset(
    op.code for op in O.OPCODES if op.effect is O.Effect.PUSH_CONST and op.code != O.BYTEARRAY8
)
_KEYWORD_RE = re.compile(r"[a-z_][a-z0-9_]{0,63}")


def _partial_call(data: Any, out: PickleWalk, part: Res, args: object, at: int) -> Res | None:
    """A call of a `functools.partial` built in the stream, as the call of its
    function it is; None (a computed call) for anything but exactly this shape.

    pandas 1.3-1.5 pickle each block as `partial(new_block, ndim=2)` called with
    `(values, placement)`: partial's `__reduce__` gives `partial(f)`, then one
    BUILD with `(f, args, keywords, None)`, and calling it runs `f(*args,
    *call_args, **keywords)`. When f is an imported global and the bound args
    and keywords are immutable constants, that is a call of f whose shape (with
    `name=kind` for each keyword) its allow entry judges, as it judges a
    direct call. A second BUILD, a function that is not a global, bound
    objects or containers, or a namespace dict leave it a computed call.
    """
    head = part.fn
    if type(head) is not GRef or (head.module, head.name) != _PARTIAL:
        return None
    made, state = part.args, part.state
    if (
        part.use != Use.CALLED
        or part.builds != 1
        or type(made) is not Tup
        or type(state) is not Tup
    ):
        return None
    if made.items is None or made.n != 1 or state.items is None or state.n != 4:
        return None
    func, bound, keywords, namespace = state.items
    first = made.items[0]
    if type(func) is not GRef or type(first) is not GRef or first.canonical != func.canonical:
        return None
    if type(namespace) is not int or data[namespace] != O.NONE:
        return None
    bound_items = _tuple_items(data, bound)
    call_items = _tuple_items(data, args)
    if bound_items is None or call_items is None:
        return None
    if not all(type(x) is int and data[x] in _IMMUTABLE_CONSTANTS for x in bound_items):
        return None
    named = _constant_keywords(data, out, keywords)
    if named is None:
        return None
    items = [*bound_items, *call_items]
    call = Tup(items, len(items))
    func.uses.add(Use.CALLED)
    if len(func.args) < 3:
        shown = render(data, call, walk=out)
        if named and shown.endswith(")"):
            given = ", ".join(f"{k}={render(data, v)}" for k, v in named)
            shown = f"{shown[:-1]}{', ' if items else ''}{given})"
        func.args.append(shown)
    res = Res(func, at, call, Use.CALLED)
    res.kwargs = named
    func.calls.append(res)
    return res


def _tuple_items(data: Any, item: object) -> list[Any] | None:
    if type(item) is int and data[item] == O.EMPTY_TUPLE:
        return []
    if type(item) is Tup and item.items is not None:
        return list(item.items)
    return None


def _constant_keywords(
    data: Any, out: PickleWalk, item: object
) -> tuple[tuple[str, int], ...] | None:
    """A partial's keywords as (name, constant's offset), as the dict holds them
    now (when the call runs); None unless every key is a plain lower-case name
    and every value an immutable constant."""
    if type(item) is int and data[item] == O.NONE:
        return ()
    pairs = out.dict_items(item)
    if pairs is None:
        if type(item) is not int or data[item] != O.EMPTY_DICT or item in out.dicts:
            return None
        gap = out.dict_gap
        if gap and gap[0] <= item < (gap[1] if len(gap) > 1 else 1 << 62):
            return None  # created where dicts were not kept: not known to be empty
        return ()  # an EMPTY_DICT nothing was ever put into
    found: dict[str, int] = {}
    for key, value in zip(pairs[::2], pairs[1::2], strict=True):
        if not is_str_const(data, key) or type(value) is not int:
            return None
        name = _const(data, key)
        if not isinstance(name, str) or not _KEYWORD_RE.fullmatch(name):
            return None
        if data[value] not in _IMMUTABLE_CONSTANTS:
            return None
        found[name] = value
    return tuple(sorted(found.items()))


def _show(out: PickleWalk, target: object, stack: list[Any], k: int) -> None:
    """Keep the first items `stack[k:]` puts into the list or set `target` (for
    reports), and count the others (`PickleWalk.unshown`)."""
    added = len(stack) - k
    if type(target) is int:
        kept = out.shown.get(target)
        if kept is None and len(out.shown) < _SHOWN_CONTAINERS:
            kept = out.shown[target] = []
        if kept is not None:
            room = _SHOWN_ITEMS + 1 - len(kept)
            if room > 0:
                kept.extend(stack[k : k + room])
                added -= min(room, added)
    elif type(target) is not Opaque or target.what != "list":
        return
    if added:
        out.unshown[target] = out.unshown.get(target, 0) + added


def _lists_at_build(data: Any, out: PickleWalk, state: Tup) -> dict[Any, int | None] | None:
    """The lists among the items of a BUILD state, with the length each has now
    (`Res.lists`): what `__setstate__` is handed, whatever the stream does later."""
    found: dict[Any, int | None] | None = None
    for item in state.items or ():
        t = type(item)
        if (t is int and data[item] == O.EMPTY_LIST) or (t is Opaque and item.what == "list"):
            if found is None:
                found = {}
            found[item] = out.list_length(item)
    return found


def _mutate(out: PickleWalk, target: object, at: int, what: str) -> None:
    if type(target) is GRef:
        target.uses.add(Use.MUTATED)
        out.events.append(
            Event("global-mutation", at, f"{what} into imported global {target.canonical}", target)
        )
    elif type(target) is Res and type(target.fn) is GRef:
        target.fn.uses.add(Use.MUTATED_INSTANCE)


def torch_module_class(data: Any, pid: object) -> GRef | None:
    """The class of a full-module id as legacy `torch.save` writes it, or None.

    `('module', cls, source_file, source)`: `cls` an imported global, the two
    others a string or None (torch writes None when it cannot read the
    source). torch's legacy `persistent_load` returns `cls`; the restricted
    loader's `safeload.load._torch` check accepts exactly these ids.
    """
    if type(pid) is not Tup or pid.items is None or pid.n != 4:
        return None
    tag, cls, source_file, source = pid.items
    if type(cls) is not GRef or not cls.resolved or not is_str_const(data, tag):
        return None
    try:
        if const_value(data, tag) != "module":
            return None
    except (UnicodeDecodeError, ValueError):
        return None
    for item in (source_file, source):
        if not (is_str_const(data, item) or (type(item) is int and data[item] == O.NONE)):
            return None
    return cls


def walk_one(
    data: Any, pos: int, end: int, budget: int, *, joblib: bool = True, module_pids: bool = False
) -> PickleWalk:
    """Walk one pickle starting at `pos`; never reads at or past `end`.

    With `joblib`, the stream is read the way `joblib.load` reads it once a
    `NumpyArrayWrapper` appears: raw array bytes after each wrapper's BUILD
    are skipped (their size derived statically from the wrapper's state) and
    object arrays are walked as the nested pickles they are.  `pickle.load`
    stops at the first array's padding byte, which is no opcode, so this
    reading covers the plain one. With `module_pids`, persistent ids are
    resolved as torch's legacy loader resolves full-module ids.
    """
    result = PickleWalk(start=pos, end=pos, complete=False, module_pids=module_pids)
    try:
        _walk(data, pos, end, budget, result, joblib)
    except _Fail as fail:
        if not (
            fail.rule == "truncated-pickle" and any(e.rule == fail.rule for e in result.events)
        ):
            result.events.append(Event(fail.rule, fail.offset, fail.message))
        result.end = max(result.end, fail.offset)
        _finish(result)
    except (IndexError, struct.error):
        # An argument ran past the end of the input.
        at = result.end
        result.events.append(
            Event("truncated-pickle", at, f"pickle data was truncated after offset {at}")
        )
        _finish(result)
    except Exception as exc:  # the last resort: a bug is a verdict, not a crash
        # What the walk saw before the error (its globals, events) is kept;
        # nothing after it was checked, so the stream is not verifiable.
        at = result.end
        result.events.append(Event("internal-error", at, internal_error_message(exc, at)))
        _finish(result)
    return result


def _more(data: Any, need: int, n: int) -> int:
    """The end of `data` once the walk needs bytes up to `need` past its end `n`.

    `n` itself, except for a stream being decompressed as it is walked
    (`compress.Sparse`), which decompresses on: every read of one opcode that
    starts before the end it returns lies in bytes it holds.
    """
    more = getattr(data, "spool_more", None)
    return n if more is None else int(more(need, n))


def internal_error_message(exc: BaseException, offset: int | None = None) -> str:
    """What an `internal-error` finding says: where the scan stopped and the exception."""
    where = f" after offset {offset}" if offset is not None else ""
    text = str(exc)
    if len(text) > 200:
        text = text[:200] + "..."
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    detail = f"{name}: {text}" if text else name
    return f"internal error while reading this file{where} ({detail}); nothing after it was checked"


def _walk(data: Any, pos: int, n: int, budget: int, out: PickleWalk, joblib: bool) -> None:
    stack: list[Any] = []
    marks: list[int] = []
    memo = _Memo(out.events)
    vals = memo.vals
    vals_append = vals.append
    nodes = memo.nodes
    sparse = memo.sparse
    fence = 0
    proto = 0
    limit = n  # end of the current frame, or of the input
    in_frame = False
    events = out.events
    globs = out.globals
    pop = stack.pop
    start = pos
    # One step per loop turn, counted by what the iterator has left: a range would
    # allocate an int per step (step numbers pass 256 at once), which costs a
    # data pickle's walk about 7%.
    steps = repeat(None, budget)
    fused = 0  # opcodes taken with the step before them, beyond those `vals_append` counts
    dicts = out.dicts
    shown = out.shown
    unshown = out.unshown
    room = _DICT_BUDGET  # items dicts may still keep (unbounded once a wrapper is seen)
    wrappers: list[GRef] = []  # joblib NumpyArrayWrapper classes seen
    unpack_u4 = _unpack_u4
    # The opcode table's names, as locals: compared as fast as literals.
    SHORT_BINUNICODE, BINUNICODE, MEMOIZE = O.SHORT_BINUNICODE, O.BINUNICODE, O.MEMOIZE
    BINPUT, LONG_BINPUT, BINGET, LONG_BINGET = O.BINPUT, O.LONG_BINPUT, O.BINGET, O.LONG_BINGET
    BININT, BININT1, BININT2, BINFLOAT = O.BININT, O.BININT1, O.BININT2, O.BINFLOAT
    SETITEMS, APPENDS, SETITEM, APPEND, MARK = O.SETITEMS, O.APPENDS, O.SETITEM, O.APPEND, O.MARK
    NONE, NEWTRUE, NEWFALSE, EMPTY_TUPLE = O.NONE, O.NEWTRUE, O.NEWFALSE, O.EMPTY_TUPLE
    EMPTY_LIST, EMPTY_DICT, EMPTY_SET = O.EMPTY_LIST, O.EMPTY_DICT, O.EMPTY_SET
    TUPLE1, TUPLE2, TUPLE3, SHORT_BINBYTES = O.TUPLE1, O.TUPLE2, O.TUPLE3, O.SHORT_BINBYTES
    REDUCE, BUILD, NEWOBJ, NEWOBJ_EX = O.REDUCE, O.BUILD, O.NEWOBJ, O.NEWOBJ_EX
    GLOBAL, STACK_GLOBAL, FRAME, PROTO, STOP = O.GLOBAL, O.STACK_GLOBAL, O.FRAME, O.PROTO, O.STOP
    # Called where a run of data opcodes starts (after MARK and FRAME), never per
    # step; a stream decompressed as it is walked grows under it: Python alone.
    fast = None if hasattr(data, "spool_more") else _fast_run

    try:
        for _ in steps:
            if pos >= limit:
                if in_frame:
                    if pos > limit:
                        events.append(
                            Event(
                                "frame-boundary-violation",
                                start,
                                f"opcode at offset {start} reads past the end of its FRAME (frame ends at {limit})",
                            )
                        )
                    in_frame = False
                    limit = n
                if pos >= n:
                    n = limit = _more(data, pos + 1, n)
                    if pos >= n:
                        raise _Fail(
                            "truncated-pickle",
                            start,
                            f"pickle data was truncated after offset {start}",
                        )
            start = pos
            op = data[pos]
            # Hot opcodes first (data pickles are mostly these).
            if op == SHORT_BINUNICODE:
                # String bodies are skipped, not decoded: only strings that a
                # consumer reads (global names, call arguments) are decoded.
                pos += 2 + data[pos + 1]
                stack.append(start)
                # Its MEMOIZE in the same step, when that lies before `limit`
                # (at or past it, the next step reads it, with the frame checks).
                if pos < limit and data[pos] == MEMOIZE:
                    if sparse:
                        memo.put(len(memo), start, pos)
                        fused += 1
                    else:
                        vals_append(start)  # counted by the memo (`_Memo.appended`)
                    pos += 1
            elif op == BININT:
                stack.append(start)
                pos += 5
            elif op == BINUNICODE:
                pos += 5 + unpack_u4(data, pos + 1)[0]
                stack.append(start)
                # Its BINPUT or LONG_BINPUT in the same step, likewise.
                if pos + 5 <= limit:
                    nxt = data[pos]
                    if nxt == BINPUT:
                        idx = data[pos + 1]
                        if idx == len(vals) and not sparse:
                            vals_append(start)
                        else:
                            memo.put(idx, start, pos)
                            fused += 1
                        pos += 2
                    elif nxt == LONG_BINPUT:
                        idx = unpack_u4(data, pos + 1)[0]
                        if idx == len(vals) and not sparse:
                            vals_append(start)
                        else:
                            memo.put(idx, start, pos)
                            fused += 1
                        pos += 5
            elif op == MEMOIZE:
                if len(stack) <= fence:
                    raise _underflow(start)
                memo.put(len(memo), stack[-1], start)
                pos += 1
            elif op == BININT1:
                stack.append(start)
                pos += 2
            elif op == BININT2:
                stack.append(start)
                pos += 3
            elif op == BINPUT:
                if len(stack) <= fence:
                    raise _underflow(start)
                memo.put(data[pos + 1], stack[-1], start)
                pos += 2
            elif op == BINGET:
                idx = data[pos + 1]
                if idx < len(vals):
                    v = vals[idx]
                    if v >= 0:
                        stack.append(v)
                    else:
                        v = nodes[~v]
                        if type(v) is GRef:
                            v.refs += 1
                        stack.append(v)
                    pos += 2
                    continue
                try:
                    stack.append(memo.get(idx))
                except KeyError:
                    raise _Fail(
                        "malformed-pickle", start, f"memo value not found at index {data[pos + 1]}"
                    ) from None
                pos += 2
            elif op == SETITEMS or op == APPENDS:
                if not marks:
                    raise _Fail("malformed-pickle", start, f"could not find MARK at offset {start}")
                k = marks.pop()
                fence = marks[-1] if marks else 0
                if op == SETITEMS and (len(stack) - k) & 1:
                    raise _Fail(
                        "malformed-pickle",
                        start,
                        f"odd number of items for SETITEMS at offset {start}",
                    )
                if k <= fence:
                    raise _underflow(start)
                target = stack[k - 1]
                if op == SETITEMS:
                    room = _keep(dicts, target, stack, k, room, out, start)
                else:
                    _show(out, target, stack, k)
                del stack[k:]
                if type(target) is not int:
                    _mutate(out, target, start, "SETITEMS" if op == SETITEMS else "APPENDS")
                pos += 1
            elif op == MARK:
                fence = len(stack)
                marks.append(fence)
                pos += 1
                if fast is not None:
                    pos, start = fast(
                        data, pos, limit, start, stack, marks, vals, sparse, memo, steps, GRef
                    )
                    fence = marks[-1] if marks else 0
            elif op == BINFLOAT:
                stack.append(start)
                pos += 9
            elif op == LONG_BINPUT:
                if len(stack) <= fence:
                    raise _underflow(start)
                if pos + 5 > n:
                    raise _Fail(
                        "truncated-pickle", start, f"pickle data was truncated at offset {start}"
                    )
                memo.put(_unpack_u4(data, pos + 1)[0], stack[-1], start)
                pos += 5
            elif op == LONG_BINGET:
                if pos + 5 > n:
                    raise _Fail(
                        "truncated-pickle", start, f"pickle data was truncated at offset {start}"
                    )
                idx = _unpack_u4(data, pos + 1)[0]
                try:
                    stack.append(memo.get(idx))
                except KeyError:
                    raise _Fail(
                        "malformed-pickle", start, f"memo value not found at index {idx}"
                    ) from None
                pos += 5
            elif (
                op == NONE
                or op == NEWTRUE
                or op == NEWFALSE
                or op == EMPTY_TUPLE
                or op == EMPTY_LIST
                or op == EMPTY_DICT
                or op == EMPTY_SET
            ):
                stack.append(start)
                pos += 1
            elif op == TUPLE1:
                if len(stack) <= fence:
                    raise _underflow(start)
                stack[-1] = Tup([stack[-1]], 1)
                pos += 1
            elif op == TUPLE2:
                if len(stack) - fence < 2:
                    raise _underflow(start)
                stack[-2:] = [Tup(stack[-2:], 2)]
                pos += 1
            elif op == TUPLE3:
                if len(stack) - fence < 3:
                    raise _underflow(start)
                stack[-3:] = [Tup(stack[-3:], 3)]
                pos += 1
            elif op == SHORT_BINBYTES:
                pos += 2 + data[pos + 1]
                stack.append(start)
            elif op == SETITEM:
                if len(stack) - fence < 3:
                    raise _underflow(start)
                target = stack[-3]
                room = _keep(dicts, target, stack, len(stack) - 2, room, out, start)
                del stack[-2:]
                if type(target) is not int:
                    _mutate(out, target, start, "SETITEM")
                pos += 1
            elif op == APPEND:
                if len(stack) - fence < 2:
                    raise _underflow(start)
                item = pop()
                target = stack[-1]
                t = type(target)
                if t is int:
                    kept = shown.get(target)
                    if kept is None and len(shown) < _SHOWN_CONTAINERS:
                        shown[target] = [item]
                    elif kept is not None and len(kept) <= _SHOWN_ITEMS:
                        kept.append(item)
                    else:  # counted past what `shown` keeps (`PickleWalk.unshown`)
                        unshown[target] = unshown.get(target, 0) + 1
                elif t is Opaque:
                    if target.what == "list":  # a list LIST built (protocol 0)
                        unshown[target] = unshown.get(target, 0) + 1
                else:
                    _mutate(out, target, start, "APPEND")
                pos += 1
            elif op == REDUCE:
                if len(stack) - fence < 2:
                    raise _underflow(start)
                args = pop()
                stack[-1] = _call(data, out, stack[-1], args, start, Use.CALLED)
                pos += 1
            elif op == BUILD:
                if len(stack) - fence < 2:
                    raise _underflow(start)
                state = pop()
                inst = stack[-1]
                t = type(inst)
                if t is GRef:
                    inst.uses.add(Use.STATE_REWRITE)
                    events.append(
                        Event(
                            "global-state-rewrite",
                            start,
                            f"BUILD sets attributes on the imported object {inst.canonical} itself",
                            inst,
                        )
                    )
                elif t is Res:
                    fn = inst.fn
                    if type(fn) is GRef:
                        fn.uses.add(Use.STATE)
                    if wrappers and not _maybe_wrapper(inst) and _stray(wrappers):
                        # A wrapper class was pushed without being instantiated the
                        # way joblib does: a BUILD (e.g. `__class__` in slot state)
                        # may turn this object into a wrapper.
                        raise _Fail(
                            "malformed-pickle",
                            start,
                            f"joblib wrapper class referenced oddly before BUILD at offset {start}",
                        )
                    if joblib and _maybe_wrapper(inst):
                        # joblib's load_build reads an array after *any* BUILD
                        # whose target is a wrapper instance; only the form
                        # joblib writes can be sized statically.
                        if not _canonical_wrapper(data, inst, wrappers):
                            raise _Fail(
                                "malformed-pickle",
                                start,
                                f"joblib wrapper at offset {start} is built in a way safeload "
                                "cannot follow",
                            )
                        inst.state = state
                        inst.builds += 1
                        # joblib reads the array from the file itself, past
                        # the frame, which its pickler always ends here.
                        if in_frame:
                            if pos + 1 != limit:
                                events.append(
                                    Event(
                                        "frame-boundary-violation",
                                        start,
                                        f"joblib array at offset {start} starts inside a FRAME",
                                    )
                                )
                                raise _Fail(
                                    "malformed-pickle",
                                    start,
                                    f"joblib array at offset {start} inside a FRAME",
                                )
                            in_frame = False
                            limit = n
                        pos = _joblib_array(data, pos + 1, n, state, out, length_hint(steps) + 1)
                        continue
                    inst.state = state
                    inst.builds += 1
                    if type(state) is Tup:
                        inst.lists = _lists_at_build(data, out, state)
                pos += 1
            elif op == STACK_GLOBAL:
                if len(stack) - fence < 2:
                    raise _underflow(start)
                name_item = pop()
                mod_item = pop()
                if is_str_const(data, mod_item) and is_str_const(data, name_item):
                    module = str(_const(data, mod_item))
                    name = str(_const(data, name_item))
                    g = _new_global(out, module, name, start, "STACK_GLOBAL", proto)
                    if joblib and _is_wrapper(g):
                        wrappers.append(g)
                        room = _unbounded(out, room, start)
                    stack.append(g)
                else:
                    g = GRef(
                        _str_or_empty(data, mod_item),
                        _str_or_empty(data, name_item),
                        start,
                        "computed",
                    )
                    globs.append(g)
                    events.append(
                        Event(
                            "computed-global-name",
                            start,
                            "STACK_GLOBAL operands are not constant strings: module="
                            f"{render(data, mod_item)}, name={render(data, name_item)}",
                            g,
                        )
                    )
                    stack.append(g)
                pos += 1
            elif op == GLOBAL:
                try:
                    raw_mod, p2 = _line(data, pos + 1, limit, n, start)
                    raw_name, pos = _line(data, p2, limit, n, start)
                except _Fail:
                    _global_at_eof(data, pos + 1, n, start, proto, out)
                    raise
                try:
                    module = raw_mod.decode("utf-8")
                    name = raw_name.decode("utf-8")
                except UnicodeDecodeError:
                    raise _Fail(
                        "malformed-pickle", start, f"GLOBAL name is not UTF-8 at offset {start}"
                    ) from None
                g = _new_global(out, module, name, start, "GLOBAL", proto)
                if joblib and _is_wrapper(g):
                    wrappers.append(g)
                    room = _unbounded(out, room, start)
                stack.append(g)
            elif op == NEWOBJ:
                if len(stack) - fence < 2:
                    raise _underflow(start)
                args = pop()
                stack[-1] = _call(data, out, stack[-1], args, start, Use.INSTANTIATED)
                pos += 1
            elif op == NEWOBJ_EX:
                if len(stack) - fence < 3:
                    raise _underflow(start)
                pop()
                args = pop()
                stack[-1] = _call(data, out, stack[-1], args, start, Use.INSTANTIATED)
                pos += 1
            elif op == FRAME:
                if pos + 9 > n:
                    raise _Fail(
                        "truncated-pickle", start, f"pickle data was truncated at offset {start}"
                    )
                size = _unpack_u8(data, pos + 1)[0]
                pos += 9
                if in_frame and pos != limit:
                    # pickle.py refuses this; the C unpickler reading a file
                    # follows it differently: either way scanners diverge.
                    events.append(
                        Event(
                            "frame-boundary-violation",
                            start,
                            f"FRAME at offset {start} starts inside another frame",
                        )
                    )
                if size > n - pos:
                    # The C unpickler stops here, but pickle._Unpickler (joblib,
                    # pandas) reads the short frame and runs what is in it: keep
                    # walking the rest as unframed bytes.
                    events.append(
                        Event(
                            "truncated-pickle",
                            start,
                            f"FRAME at offset {start} declares {size} bytes, {n - pos} remain",
                        )
                    )
                    limit = n
                    in_frame = False
                else:
                    limit = pos + size
                    in_frame = True
                if fast is not None:
                    pos, start = fast(
                        data, pos, limit, start, stack, marks, vals, sparse, memo, steps, GRef
                    )
                    fence = marks[-1] if marks else 0
            elif op == PROTO:
                if pos + 2 > n:
                    raise _Fail(
                        "truncated-pickle", start, f"pickle data was truncated at offset {start}"
                    )
                proto = data[pos + 1]
                if proto > O.HIGHEST_PROTOCOL:
                    raise _Fail("malformed-pickle", start, f"unsupported pickle protocol: {proto}")
                out.protocol = max(out.protocol, proto)
                pos += 2
            elif op == STOP:
                if len(stack) <= fence:
                    raise _underflow(start)
                pos += 1
                if in_frame and pos != limit:
                    # pickle.py drops the rest of the frame after STOP while the
                    # C unpickler hands it to the next load(): readers diverge.
                    events.append(
                        Event(
                            "frame-boundary-violation",
                            start,
                            f"STOP at offset {start} leaves {limit - pos} bytes of its FRAME unread",
                        )
                    )
                out.end = pos
                out.complete = True
                out.opcodes = budget - length_hint(steps) + fused + len(vals) - memo.appended
                _finish(out)
                return
            else:
                pos = _slow(
                    op,
                    data,
                    pos,
                    n,
                    limit,
                    stack,
                    marks,
                    memo,
                    out,
                    start,
                    proto,
                )
                fence = marks[-1] if marks else 0
        else:
            out.end = pos
            out.opcodes = budget
            _finish(out)
            raise _Fail(
                "resource-limit", pos, f"opcode budget of {budget} exhausted at offset {pos}"
            )
    except (_Fail, IndexError, struct.error):
        done = max(0, budget - length_hint(steps) - 1)
        out.opcodes = done + fused + len(vals) - memo.appended
        out.end = start
        raise
    raise AssertionError("unreachable")  # pragma: no cover


def _keep(
    dicts: dict[Any, list[Any] | None],
    target: object,
    stack: list[Any],
    k: int,
    room: int,
    out: PickleWalk,
    at: int,
) -> int:
    """Keep the items `stack[k:]` SETITEM(S) puts into the dict `target`; the room left."""
    if type(target) is int:
        kept = dicts.get(target, _UNSEEN)
        if kept is _UNSEEN:
            if room <= 0 and target >= out.dict_gap[0]:
                # Created after the budget ran out: not kept. A list with items
                # is marked (`PickleWalk.list_length`); an empty one cannot shrink.
                if target in out.shown or target in out.unshown:
                    out.reassigned.add(target)
                return room
            kept = dicts[target] = []
    elif type(target) is Opaque:
        if target.what == "list":
            out.reassigned.add(target)
        kept = dicts.get(target)
    else:
        return room
    if kept is None:
        return room
    added = len(stack) - k
    if len(kept) + added > _DICT_ITEMS:
        dicts[target] = None  # too big to be a state a check reads
        return room
    kept.extend(stack[k:])
    if room > 0:
        room -= added
        if room <= 0:
            out.dict_gap.append(at)  # dicts created from here on are not kept
    return room


def _unbounded(out: PickleWalk, room: int, at: int) -> int:
    """A joblib wrapper's state must be read: keep every dict from here on."""
    if len(out.dict_gap) == 1:
        out.dict_gap.append(at)
    return 1 << 62


_DTYPE_NAMES = frozenset(
    {("numpy", "dtype"), ("numpy.core.multiarray", "dtype"), ("numpy._core.multiarray", "dtype")}
)
# Bounded digits: int() refuses more than 4300, and no item size has 20.
_FIXED_TYPESTR = re.compile(r"[biufcmMO]([1-9][0-9]{0,18})")
_FLEXIBLE_TYPESTR = re.compile(r"[SUV][0-9]*")
_NPY_ITEM_HASOBJECT = 0x01


def _joblib_array(
    data: Any,
    pos: int,
    n: int,
    state: object,
    out: PickleWalk,
    budget: int,
) -> int:
    """Skip one joblib array after its wrapper's BUILD; return where unpickling resumes.

    Mirrors `NumpyArrayWrapper.read_array`: an object array is a complete
    nested pickle read by a fresh unpickler; any other array is an optional
    padding-length byte, that many padding bytes, then prod(shape)*itemsize
    raw bytes.  Everything is derived from constants in the stream; anything
    that cannot be derived statically fails closed.
    """

    def bad(why: str) -> _Fail:
        return _Fail("malformed-pickle", pos, f"joblib array at offset {pos}: {why}")

    fields = _const_dict(data, state, out)
    if fields is None:
        raise bad("wrapper state is not a constant dict")
    shape_item = fields.get("shape")
    if type(shape_item) is int:
        dims: list[int] | None = [] if _const(data, shape_item) == () else None
    elif type(shape_item) is Tup and shape_item.items is not None:
        dims = []
        for d in shape_item.items:
            value = _const(data, d) if type(d) is int else None
            if type(value) is not int or value < 0:
                dims = None
                break
            dims.append(value)
    else:
        dims = None
    if dims is None:
        raise bad("shape is not a tuple of non-negative integer constants")
    itemsize, hasobject = _dtype_layout(data, fields.get("dtype"))
    if hasobject:
        nested = walk_one(data, pos, n, budget, joblib=False)
        out.globals.extend(nested.globals)
        # Offsets are unique in `data`: the nested dicts read as the outer ones.
        out.dicts.update(nested.dicts)
        out.events.extend(nested.events)
        out.persids.extend(nested.persids)
        if not nested.complete:
            raise _Fail(
                "malformed-pickle", nested.end, f"object array pickle at offset {pos} is malformed"
            )
        return nested.end
    align_item = fields.get("numpy_array_alignment_bytes")
    if align_item is not None and type(align_item) is not int:
        raise bad("alignment is not a constant")
    padded = align_item is not None and _const(data, align_item) is not None
    first = pos
    if padded:
        # joblib reads a length byte and skips that many bytes, whatever they are.
        if pos >= n:
            raise _Fail("truncated-pickle", pos, f"joblib array at offset {pos} is truncated")
        if data[pos] in O.BY_CODE:
            # A plain pickle.load does not stop at this length byte: it reads
            # it, the padding and the array bytes as opcodes.
            out.unpadded.append(pos)
        pos += 1 + data[pos]
    count = 1
    for d in dims:
        count *= d
    nbytes = count * itemsize
    if nbytes and hasattr(data, "spool_more"):
        # A stream still being decompressed: on past the array, whose bytes it may
        # drop. A plain pickle.load stops at a padding byte that is no opcode;
        # otherwise it reads on into them.
        stops = padded and data[first] not in O.BY_CODE
        n = data.spool_more(pos + nbytes, n, pos, stops)
    if nbytes > n - pos:
        raise _Fail(
            "truncated-pickle",
            pos,
            f"joblib array at offset {pos} needs {nbytes} bytes, {max(0, n - pos)} remain",
        )
    if not padded and nbytes:
        out.unpadded.append(pos)
    return pos + nbytes


def _const_dict(data: Any, item: object, walk: PickleWalk) -> dict[str, Any] | None:
    if type(item) is not int or data[item] != O.EMPTY_DICT:
        return None
    items = walk.dict_items(item)
    if items is None:
        return None
    out: dict[str, Any] = {}
    for i in range(0, len(items) - 1, 2):
        key = items[i]
        if not is_str_const(data, key):
            return None
        out[str(_const(data, key))] = items[i + 1]
    return out


def _dtype_layout(data: Any, item: object) -> tuple[int, bool]:
    """(itemsize, hasobject) of `numpy.dtype(typestr, align, copy)` + its BUILD state.

    Mirrors numpy's `arraydescr_setstate`: the state's elsize counts only for
    flexible types (S, U, V); fixed types keep the size their typestr names;
    the flags (hence hasobject) always come from the state.  Only the forms
    numpy itself writes are accepted; anything else fails closed.
    """
    where = item.offset if type(item) is Res else 0
    fail = _Fail("malformed-pickle", where, "joblib array dtype cannot be derived statically")
    if (
        type(item) is not Res
        or type(item.fn) is not GRef
        or (item.fn.module, item.fn.name) not in _DTYPE_NAMES
        or item.use != Use.CALLED
    ):
        raise fail
    args, state = item.args, item.state
    if type(args) is not Tup or not args.items or not is_str_const(data, args.items[0]):
        raise fail
    if type(state) is not Tup or state.items is None or len(state.items) not in (8, 9):
        raise fail
    version, elsize, flags = (
        _const(data, x) if type(x) is int else None
        for x in (state.items[0], state.items[5], state.items[7])
    )
    if version not in (3, 4) or type(elsize) is not int or type(flags) is not int:
        raise fail
    hasobject = bool(flags & _NPY_ITEM_HASOBJECT)
    typestr = str(_const(data, args.items[0]))
    fixed = _FIXED_TYPESTR.fullmatch(typestr)
    if fixed is not None:
        return int(fixed.group(1)), hasobject
    if _FLEXIBLE_TYPESTR.fullmatch(typestr) is not None and elsize >= 0:
        return elsize, hasobject
    raise fail


def _finish(out: PickleWalk) -> None:
    for g in out.globals:
        if not g.uses:
            g.uses.add(Use.STORED)


def _fold_getattr(data: Any, fn: GRef, args: object, at: int) -> GRef | None:
    """`getattr(<resolved global>, '<constant>')` is the dotted global it reaches."""
    if type(args) is not Tup or args.items is None or args.n != 2:
        return None
    target, attr = args.items
    if type(target) is not GRef or not target.resolved or not is_str_const(data, attr):
        return None
    try:
        name = str(const_value(data, attr))
    except (UnicodeDecodeError, ValueError):
        return None
    fn.uses.add(Use.FOLDED)
    fn.folds += 1
    target.uses.add(Use.GETATTR_BASE)
    folded = GRef(target.module, f"{target.name}.{name}", at, "getattr")
    folded.base = target
    return folded


def _slow(
    op: int,
    data: Any,
    pos: int,
    n: int,
    limit: int,
    stack: list[Any],
    marks: list[int],
    memo: _Memo,
    out: PickleWalk,
    start: int,
    proto: int,
) -> int:
    """Every opcode that is rare in real files."""
    info = O.BY_CODE.get(op)
    if info is None:
        raise _Fail(
            "malformed-pickle", start, f"unknown opcode {op:#04x} ({chr(op)!r}) at offset {start}"
        )
    fence = marks[-1] if marks else 0

    def need(k: int) -> None:
        if len(stack) - fence < k:
            raise _Fail("malformed-pickle", start, f"stack underflow at offset {start}")

    def pop_mark() -> int:
        if not marks:
            raise _Fail(
                "malformed-pickle", start, f"could not find MARK for opcode at offset {start}"
            )
        return marks.pop()

    def counted(prefix: int, signed: bool = False) -> int:
        if pos + 1 + prefix > n:
            raise _Fail("truncated-pickle", start, f"pickle data was truncated at offset {start}")
        if prefix == 1:
            size = data[pos + 1]
        elif prefix == 4:
            size = (_unpack_i4 if signed else _unpack_u4)(data, pos + 1)[0]
        else:
            size = _unpack_u8(data, pos + 1)[0]
        if size < 0:
            raise _Fail(
                "malformed-pickle", start, f"{info.name} has negative byte count at offset {start}"
            )
        body = pos + 1 + prefix
        if size > n - body:
            raise _Fail(
                "truncated-pickle",
                start,
                f"{info.name} at offset {start} declares {size} bytes, {n - body} remain",
            )
        return int(body + size)

    e = info.effect
    if e is O.Effect.PUSH_CONST:
        arg = info.arg
        if arg in O.FIXED_SIZE:
            new = pos + 1 + O.FIXED_SIZE[arg]
            if new > n:
                raise _Fail(
                    "truncated-pickle", start, f"pickle data was truncated at offset {start}"
                )
        elif arg is O.Arg.LINE:
            text, new = _line(data, pos + 1, limit, n, start)
            _check_text_const(op, text, start)
        else:
            new = counted(O.LENGTH_PREFIX[arg], signed=arg is O.Arg.SLEN4)
            if op == O.BINUNICODE8:
                try:
                    str(data[pos + 9 : new], "utf-8", "surrogatepass")
                except UnicodeDecodeError:
                    raise _Fail(
                        "malformed-pickle", start, f"invalid UTF-8 in string at offset {start}"
                    ) from None
        stack.append(start)
        return new
    if e is O.Effect.PUSH_EMPTY:
        stack.append(start)
        return pos + 1
    if e is O.Effect.BUILD_FROM_MARK:
        k = pop_mark()
        items = stack[k:]
        del stack[k:]
        if op == O.TUPLE:
            stack.append(Tup(items if len(items) <= _TUPLE_KEEP else None, len(items)))
        elif op == O.DICT:
            if len(items) & 1:
                raise _Fail(
                    "malformed-pickle", start, f"odd number of items for DICT at offset {start}"
                )
            node = Opaque("dict")
            if len(out.dict_gap) == 1 or len(items) > _DICT_ITEMS:
                node = _DICT  # not kept: read as unknown
            else:
                out.dicts[node] = items
            stack.append(node)
        elif op == O.LIST:
            node = Opaque("list")  # its own node: its length is counted (`_show`)
            _show(out, node, items, 0)
            stack.append(node)
        else:
            stack.append(_FROZENSET)
        return pos + 1
    if e is O.Effect.MUTATE:  # ADDITEMS (the others are on the hot path)
        k = pop_mark()
        newfence = marks[-1] if marks else 0
        if k <= newfence:
            raise _Fail("malformed-pickle", start, f"stack underflow at offset {start}")
        target = stack[k - 1]
        if type(target) is int:
            _show(out, target, stack, k)
        del stack[k:]
        if type(target) is not int:
            _mutate(out, target, start, "ADDITEMS")
        return pos + 1
    if e is O.Effect.STACK:
        if op == O.POP:
            if len(stack) > fence:
                stack.pop()
            elif marks:
                marks.pop()
            else:
                raise _Fail("malformed-pickle", start, f"stack underflow at offset {start}")
        elif op == O.DUP:
            need(1)
            top = stack[-1]
            if type(top) is GRef:
                top.refs += 1
            stack.append(top)
        elif op == O.POP_MARK:
            k = pop_mark()
            del stack[k:]
        return pos + 1
    if e is O.Effect.MEMO_PUT:
        need(1)
        if op == O.PUT:
            text, new = _line(data, pos + 1, limit, n, start)
            idx = _text_index(text, start)
            if idx < 0:
                raise _Fail("malformed-pickle", start, f"negative PUT argument at offset {start}")
            memo.put(idx, stack[-1], start)
            return new
        if op == O.MEMOIZE:
            memo.put(len(memo), stack[-1], start)
            return pos + 1
        raise AssertionError(info.name)  # BINPUT/LONG_BINPUT are on the hot path
    if e is O.Effect.MEMO_GET:  # GET (BINGET/LONG_BINGET are on the hot path)
        text, new = _line(data, pos + 1, limit, n, start)
        idx = _text_index(text, start)
        try:
            stack.append(memo.get(idx))
        except KeyError:
            raise _Fail("malformed-pickle", start, f"memo value not found at index {idx}") from None
        return new
    if e is O.Effect.IMPORT_CALL:  # INST
        try:
            raw_mod, p2 = _line(data, pos + 1, limit, n, start)
            raw_name, new = _line(data, p2, limit, n, start)
        except _Fail:
            _global_at_eof(data, pos + 1, n, start, proto, out, "INST")
            raise
        try:
            module = raw_mod.decode("ascii")
            name = raw_name.decode("ascii")
        except UnicodeDecodeError:
            raise _Fail(
                "malformed-pickle", start, f"INST name is not ASCII at offset {start}"
            ) from None
        g = _new_global(out, module, name, start, "INST", proto)
        k = pop_mark()
        items = stack[k:]
        del stack[k:]
        stack.append(
            _call(
                data,
                out,
                g,
                Tup(items if len(items) <= _TUPLE_KEEP else None, len(items)),
                start,
                Use.CALLED,
            )
        )
        return new
    if e is O.Effect.CALL:  # OBJ (REDUCE/NEWOBJ/NEWOBJ_EX are on the hot path)
        k = pop_mark()
        items = stack[k:]
        if not items:
            raise _Fail("malformed-pickle", start, f"stack underflow at offset {start}")
        del stack[k:]
        rest = items[1:]
        stack.append(
            _call(
                data,
                out,
                items[0],
                Tup(rest if len(rest) <= _TUPLE_KEEP else None, len(rest)),
                start,
                Use.CALLED,
            )
        )
        return pos + 1
    if e is O.Effect.EXTENSION:
        size = O.FIXED_SIZE[info.arg]
        if pos + 1 + size > n:
            raise _Fail("truncated-pickle", start, f"pickle data was truncated at offset {start}")
        if op == O.EXT1:
            code = data[pos + 1]
        elif op == O.EXT2:
            code = _unpack_u2(data, pos + 1)[0]
        else:
            code = _unpack_i4(data, pos + 1)[0]
        if code <= 0:
            raise _Fail("malformed-pickle", start, f"EXT specifies code <= 0 at offset {start}")
        g = GRef("copyreg", "_extension_registry", start, info.name)
        g.ext = code
        out.globals.append(g)
        out.events.append(
            Event(
                "extension-code",
                start,
                f"{info.name} {code}: global comes from the copyreg extension registry",
                g,
            )
        )
        stack.append(g)
        return pos + 1 + size
    if e is O.Effect.PERSID:
        if op == O.PERSID:
            text, new = _line(data, pos + 1, limit, n, start)
            try:
                pid: object = text.decode("ascii")
            except UnicodeDecodeError:
                raise _Fail(
                    "malformed-pickle", start, f"persistent id is not ASCII at offset {start}"
                ) from None
            out.persids.append((start, pid))
            stack.append(PersRes(pid, start))
            return new
        need(1)
        item = stack.pop()
        cls = torch_module_class(data, item) if out.module_pids else None
        if cls is not None:
            # torch's legacy loader hands back the class itself (it compares the
            # saved source with the installed one, never runs it): from here on
            # the stream uses `cls` as if a GLOBAL had pushed it, and it is
            # judged by what it is then used for.
            cls.refs += 1
            out.persids.append((start, item))
            stack.append(cls)
            return pos + 1
        if type(item) is Tup and item.items:
            for x in item.items:
                if type(x) is GRef:
                    x.uses.add(Use.PERSISTENT_ID)
        elif type(item) is GRef:
            item.uses.add(Use.PERSISTENT_ID)
        out.persids.append((start, item))
        stack.append(PersRes(item, start))
        return pos + 1
    if e is O.Effect.BUFFER:
        if op == O.NEXT_BUFFER:
            out.events.append(
                Event(
                    "out-of-band-buffer",
                    start,
                    f"NEXT_BUFFER at offset {start} needs out-of-band buffers",
                )
            )
            stack.append(_BUFFER)
        else:
            need(1)
        return pos + 1
    if e is O.Effect.FRAMING:  # PROTO and FRAME are on the hot path
        raise AssertionError(info.name)
    if (
        e is O.Effect.BUILD_FROM_TOP
        or e is O.Effect.SET_STATE
        or e is O.Effect.IMPORT
        or e is O.Effect.STOP
    ):
        raise AssertionError(info.name)  # on the hot path
    raise AssertionError(f"no handler for {info.name}")  # pragma: no cover


def _c_str(text: bytes) -> bytes:
    """The line as the C unpickler parses it: a C string ends at its first NUL."""
    nul = text.find(b"\0")
    return text if nul < 0 else text[:nul]


def _parse_int(text: bytes, base: int) -> int | None:
    """What the C unpickler or pickle.py would read; the C reading first."""
    for candidate in (_c_str(text), text):
        try:
            return int(candidate, base)
        except ValueError:
            continue
    return None


def _fits_c_long(digits: bytes) -> bool:
    if len(digits) > 64:
        return False
    value = (
        int(digits, 16)
        if digits[:2] in (b"0x", b"0X")
        else int(digits, 8 if digits[:1] == b"0" else 10)
    )
    return value < 1 << 63


def _text_index(text: bytes, at: int) -> int:
    idx = _parse_int(text, 10)
    if idx is None:
        raise _Fail("malformed-pickle", at, f"bad memo index {text[:40]!r} at offset {at}")
    return idx


def _check_text_const(op: int, text: bytes, at: int) -> None:
    """Validate INT/LONG/FLOAT/STRING/UNICODE lines as the loaders would.

    A line either implementation accepts is accepted: int()'s digit limit
    only binds decimal, and the C unpickler reads up to a NUL.
    """
    try:
        if op == O.INT:
            if text in (b"00", b"01") or _parse_int(text, 0) is not None:
                return
            # strtol's own forms (octal "010") count only if they fit in a C
            # long; past that the C unpickler falls back to int() and fails.
            m = _STRTOL_RE.fullmatch(_c_str(text))
            if m is None or not _fits_c_long(m.group(1)):
                raise ValueError("not an integer")
        elif op == O.LONG:
            py_body = text[:-1] if text.endswith(b"L") else text
            if _parse_int(py_body, 0) is None and _parse_int(_c_str(py_body), 0) is None:
                raise ValueError("not an integer")
        elif op == O.FLOAT:
            try:
                float(text)
            except ValueError:
                float(_c_str(text))
        elif op == O.STRING:
            if len(text) < 2 or text[0] != text[-1] or text[0] not in b"\"'":
                raise ValueError("the STRING opcode argument must be quoted")
            codecs.escape_decode(text[1:-1])
        elif op == O.UNICODE:
            str(text, "raw-unicode-escape")
    except (ValueError, UnicodeDecodeError) as exc:
        name = O.BY_CODE[op].name
        raise _Fail("malformed-pickle", at, f"bad {name} argument at offset {at}: {exc}") from None


# -- streams --------------------------------------------------------------------


_NONZERO = re.compile(rb"[^\x00]")
# Whitespace and NUL are not opcodes: a further pickle.load stops at the first
# of them with "invalid load key" before doing anything, and no zip, tar or
# compressed reading can start or end inside them.  Only a short tail is
# accepted as a writer's newline or padding; a long one is not what writers
# leave behind and stays trailing data.
_INERT_TAIL_MAX = 4096
_INERT_TAIL = re.compile(rb"[\x00\t\n\x0b\x0c\r ]+\Z")


#: The most bytes read after the last pickle, or after bytes that do not parse: no
#: unpickler reads on past a zero byte or an unparseable one, so a huge tail (a
#: sparse file, a disk image of zeros) costs this read, not its size.
TAIL_READ = 16 << 20


def _all_zero(data: Any, a: int, b: int) -> bool:
    """The tail `data[a:b]` starts with zeros, up to its end or `TAIL_READ` bytes.

    A regex search stops at the first non-zero byte: checking after each of
    many stacked pickles stays linear overall.
    """
    return _NONZERO.search(data, a, min(b, a + TAIL_READ)) is None


_PROTO_START = re.compile(rb"\x80[\x00-\x05]")


def analyze(
    data: Any,
    start: int = 0,
    end: int | None = None,
    *,
    max_opcodes: int = DEFAULT_MAX_OPCODES,
    plain_reading: bool = True,
) -> StreamAnalysis:
    """Walk every pickle in `data[start:end]`: one after another until EOF.

    A loader that reads several pickles from one stream (torch legacy files,
    loops over `pickle.load`) sees them all, so all are walked, each with a
    fresh machine as a new `Unpickler` would have.  After the last STOP,
    zero padding is noted; any other bytes must parse as further pickles or
    the stream is not verifiable.  After unparseable bytes, later pickles
    are still searched for (bounded), so a benign pickle, junk, then a
    payload reports the payload.
    """
    n = len(data) if end is None else end
    out = StreamAnalysis(end=n)
    budget = max_opcodes
    pos = start
    if pos >= n:
        # pickle.load raises EOFError ("Ran out of input") before anything else.
        empty = Event("truncated-pickle", start, "input is empty")
        out.events.append(empty)
        out.inert = empty
        return out
    spent = [0, 0]  # resync attempts, bytes walked by them
    first = True
    while pos < n:
        if not first and _all_zero(data, pos, n):
            read = (
                f"; the first {TAIL_READ} were read (no unpickler reads past a zero byte)"
                if n - pos > TAIL_READ
                else ""
            )
            out.events.append(
                Event("zero-padding", pos, f"{n - pos} zero bytes after the last pickle{read}")
            )
            break
        if not first and n - pos <= _INERT_TAIL_MAX and _INERT_TAIL.match(data, pos, n):
            out.events.append(
                Event(
                    "inert-tail",
                    pos,
                    f"{n - pos} whitespace bytes after the last pickle, which no reader interprets",
                )
            )
            break
        walk = walk_one(data, pos, n, budget)
        budget -= walk.opcodes or 0
        if walk.complete:
            out.pickles.append(walk)
            pos = walk.end
            first = False
            continue
        # A failed walk still reports what it saw before the error.
        if not first:
            out.events.append(
                Event(
                    "trailing-data",
                    pos,
                    f"{n - pos} bytes after the last pickle at offset {pos} do not parse as a pickle",
                )
            )
        out.pickles.append(walk)
        if any(e.rule in ("resource-limit", "internal-error") for e in walk.events):
            break
        resumed = _resync(data, max(pos + 1, _fail_offset(walk)), n, budget, out, spent)
        if resumed is None:
            break
        pos = resumed
        first = False
    # `plain_reading=False`: the stream is one only joblib reads (the inside of
    # a zlib or lz4 stream), so no plain pickle.load ever sees its array bytes.
    for walk in list(out.pickles) if plain_reading else ():
        if walk.unpadded:
            _plain_reading(data, walk, n, max(budget, 0), out)
    out.inert = _inert_failure(data, out, n)
    return out


_BREAKS = ("malformed-pickle", "truncated-pickle")


def _inert_failure(data: Any, out: StreamAnalysis, n: int) -> Event | None:
    """The failure of a stream no unpickler builds anything from, or None.

    Every loader unpickles from the start (pickle.load, joblib.load,
    pandas.read_pickle, np.load's fallback, torch's legacy loader), and CPython's
    unpickler runs opcode by opcode: it stops for good at the first one that
    fails. Such a stream is inert when its one walk failed (an unknown opcode,
    a bad argument, a stack underflow, the end of the data) and everything
    before the failure only pushed constants or built tuples, lists, dicts and
    sets of them: no global (GLOBAL, STACK_GLOBAL, INST, EXT), no persistent
    id, no other event (a call of something that is not a global, a frame
    violation, a resource limit), and no complete pickle found further on.
    A persistent id (PERSID, BINPERSID) is where those loaders fail too: none
    has a `persistent_load` when it starts reading a file (torch's legacy
    loader reads its magic number with a plain unpickler; only pickles inside
    its formats get one, and those are TORCH readings, never judged by this),
    so each raises UnpicklingError there, as at a PNG's `\x89PNG` (NEWFALSE,
    PERSID). Yet an unpickler that has one would go on, so a persistent id
    only counts when the rest of the walk imports, calls and builds nothing
    either: a PERSID before a GLOBAL is no excuse to skip the GLOBAL.
    A stream that opens with a PROTO of a protocol CPython reads declares
    itself a pickle: its failure is a damaged pickle (truncated, malformed),
    reported as such and never called inert.
    """
    if out.events or len(out.pickles) != 1:
        return None
    walk = out.pickles[0]
    if walk.complete or walk.globals or len(walk.events) != 1:
        return None
    fail = walk.events[0]
    if fail.rule not in _BREAKS or O.starts_with_proto(data, walk.start, n):
        return None
    if walk.persids:
        cut = min(at for at, _pid in walk.persids)
        return Event(
            "malformed-pickle",
            cut,
            f"persistent id at offset {cut}, and no persistent_load to resolve it "
            "(UnpicklingError)",
        )
    return fail


def _plain_reading(data: Any, walk: PickleWalk, n: int, budget: int, out: StreamAnalysis) -> None:
    """Walk a joblib pickle again as plain `pickle.load` would, past its arrays.

    The two readings agree up to the first unpadded raw array; after it,
    plain unpickling treats the array bytes as opcodes.  Whatever that
    reading would import there is reported; if it simply breaks, the plain
    loader stops with an error and runs nothing more, so a parse error of
    this reading is not itself a finding.
    """
    plain = walk_one(data, walk.start, n, budget, joblib=False)
    cut = walk.unpadded[0]
    extra = PickleWalk(start=cut, end=plain.end, complete=plain.complete)
    extra.globals = [g for g in plain.globals if g.offset >= cut]
    extra.events = [
        e
        for e in plain.events
        if e.offset >= cut
        and e.rule not in ("malformed-pickle", "truncated-pickle", "resource-limit")
    ]
    extra.persids = [p for p in plain.persids if p[0] >= cut]
    extra.dicts, extra.dict_gap = plain.dicts, plain.dict_gap
    if extra.globals or extra.events or extra.persids:
        extra.events.append(
            Event(
                "polyglot-file",
                cut,
                f"read as a plain pickle (pickle.load, pandas.read_pickle), the joblib array bytes at offset {cut} are opcodes",
            )
        )
        out.pickles.append(extra)


def _fail_offset(walk: PickleWalk) -> int:
    offsets = [e.offset for e in walk.events if e.rule in ("malformed-pickle", "truncated-pickle")]
    return max(offsets) if offsets else walk.start


def _resync(
    data: Any, pos: int, n: int, budget: int, out: StreamAnalysis, spent: list[int]
) -> int | None:
    """Find the next complete pickle after unparseable bytes.

    Attempts and the bytes they walk are bounded per stream (`spent` holds
    attempts and bytes walked so far), so hostile inputs full of PROTO-like
    byte pairs cannot make the scan quadratic; PROTO opcodes are looked for in
    the next `TAIL_READ` bytes only (no loader reads a pickle further on: each
    starts at the front and stops at the bytes that failed).
    """
    window = min(n, pos + TAIL_READ)
    # First the byte right after the failure (junk then a protocol-0
    # pickle), then every PROTO opcode further on.
    direct = pos if pos < n and data[pos] in O.BY_CODE else None
    while spent[0] < _MAX_RESYNC and spent[1] <= 2 * n + (1 << 20) and budget > 0:
        if direct is not None:
            cand, direct = direct, None
        else:
            m = _PROTO_START.search(data, pos, window)
            if m is None:
                return None
            cand = m.start()
        spent[0] += 1
        walk = walk_one(data, cand, n, budget)
        budget -= walk.opcodes
        spent[1] += max(walk.end, cand + 1) - cand
        if walk.complete:
            walk.events.append(
                Event(
                    "trailing-data",
                    cand,
                    f"a further pickle starts at offset {cand} after unparseable bytes",
                )
            )
            out.pickles.append(walk)
            return walk.end
        pos = cand + 1
    return None
