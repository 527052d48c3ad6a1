"""What constructing a pickle's objects would cost: a static estimate, in bytes.

A file of a hundred bytes can make its loader allocate gigabytes
(`bytearray(n)`, `numpy.ndarray((n, n))`, `torch.nn.Linear(20000, 20000)`),
iterate forever (`collections.deque(range(10**18), 0)`) or compute a number
of ten million digits (`fractions.Fraction('1e10000000')`). The estimate adds,
over every call the walk saw:

- memory allocated from constant sizes: `bytes(n)`, `bytearray(n)`, arrays
  from `_reconstruct`/`ndarray`/`_mareconstruct` shapes times their item size,
  torch storages (element count times element size), torch.nn layers called
  with sizes instead of being rebuilt;
- items iterated by constructors that consume an iterable (`list`, `tuple`,
  `set`, `frozenset`, `dict`, `bytes`, `bytearray`, `deque`, `Counter`,
  `OrderedDict`, `array.array`), 8 bytes each; the length comes from
  constants (`range` bounds, string lengths, array shapes, nested consumers);
  an iterable whose length cannot be derived is counted as unbounded;
- digits computed from text: `Fraction('1e<D>')` builds a D-digit power of ten
  (about D**1.585 / 10 steps), `Decimal(<int>)` converts an int in quadratic
  time;

where one byte of cost is one byte allocated or about one nanosecond of work.
Bytes the file itself holds (array data, strings) are not counted again: a
real model costs about what it weighs. What the estimate does not follow it
does not count; the named checks (`safeload._checks`) bound the rest.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from .._machine.walker import GRef, PickleWalk, Res, StreamAnalysis, Tup
from .._names import Use
from ._dtype import typecode_itemsize
from ._values import Values, canonical_of

__all__ = ["UNBOUNDED", "CostItem", "LoadCost", "estimate_load_cost"]

UNBOUNDED = 1 << 80
"""The cost of what never ends (or cannot be bounded from constants)."""
ITEM = 8
"""Cost of one item iterated (a pointer stored, a step taken)."""
_KEEP = 5
_MAX_DEPTH = 32
_UNKNOWN = -1

_CONSUMERS = frozenset(
    {
        ("builtins", "list"),
        ("builtins", "tuple"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "dict"),
        ("builtins", "bytes"),
        ("builtins", "bytearray"),
        ("builtins", "sorted"),
        ("builtins", "reversed"),
        ("builtins", "enumerate"),
        ("builtins", "zip"),
        ("builtins", "map"),
        ("builtins", "filter"),
        ("builtins", "sum"),
        ("builtins", "min"),
        ("builtins", "max"),
        ("builtins", "any"),
        ("builtins", "all"),
        ("collections", "deque"),
        ("collections", "Counter"),
        ("collections", "OrderedDict"),
        ("collections", "defaultdict"),
        ("array", "array"),
    }
)
#: Which positional argument each consumer iterates (default: the first).
_ITERABLE_AT = {("collections", "defaultdict"): 1, ("array", "array"): 1}
_SIZED = frozenset({("builtins", "bytes"), ("builtins", "bytearray")})
_NEWOBJ = ("copyreg", "__newobj__")
_RANGE = ("builtins", "range")
_CODECS_ENCODE = ("_codecs", "encode")
_RECONSTRUCT = frozenset(
    {("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct")}
)
_FROMBUFFER = frozenset(
    {("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer")}
)
_ARRAY_CLASSES = frozenset(
    {("numpy", "ndarray"), ("numpy", "recarray"), ("numpy.rec", "recarray"), ("numpy", "memmap")}
)
_MARECONSTRUCT = ("numpy.ma.core", "_mareconstruct")
#: What does its work in `__new__`, so NEWOBJ (no `__init__`) runs it too.
_NEW_CONSUMES = _ARRAY_CLASSES | {
    ("builtins", "bytes"), ("builtins", "tuple"), ("builtins", "frozenset"),
    ("fractions", "Fraction"), ("decimal", "Decimal"),
}  # fmt: skip
_NEW_INDEX = ("pandas.core.indexes.base", "_new_Index")
_FRACTION = ("fractions", "Fraction")
_DECIMAL = ("decimal", "Decimal")
_TORCH_NN = "torch.nn.modules."
#: Bytes per element of torch's typed storages (the storage type of a persistent id).
_STORAGE_ITEM = {
    "DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2,
    "LongStorage": 8, "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1,
    "BoolStorage": 1, "ComplexDoubleStorage": 16, "ComplexFloatStorage": 8,
    "QUInt8Storage": 1, "QInt8Storage": 1, "QInt32Storage": 4, "QUInt4x2Storage": 1,
    "QUInt2x4Storage": 1, "UntypedStorage": 1,
}  # fmt: skip


@dataclass(frozen=True)
class CostItem:
    """One contribution to the estimate."""

    cost: int
    offset: int
    what: str


@dataclass
class LoadCost:
    """The estimate for some pickles: its total and its largest contributions."""

    total: int = 0
    largest: list[CostItem] = field(default_factory=list)

    def add(self, item: CostItem) -> None:
        self.total = min(UNBOUNDED, self.total + item.cost)
        if item.cost <= 0:
            return
        self.largest.append(item)
        self.largest.sort(key=lambda i: -i.cost)
        del self.largest[_KEEP:]

    def merge(self, other: LoadCost) -> None:
        for item in other.largest:
            self.largest.append(item)
        self.total = min(UNBOUNDED, self.total + other.total)
        self.largest.sort(key=lambda i: -i.cost)
        del self.largest[_KEEP:]


def estimate_load_cost(
    analysis: StreamAnalysis,
    data: Any,
    *,
    torch_storages: bool = False,
    skip: Collection[tuple[str, str]] = (),
) -> LoadCost:
    """The cost of constructing every pickle of `analysis` (walked in `data`),
    leaving out calls of the globals in `skip`."""
    out = LoadCost()
    for walk in analysis.pickles:
        _Estimate(Values(data, walk), walk, out, torch_storages, frozenset(skip)).run()
    return out


class _Estimate:
    def __init__(
        self,
        values: Values,
        walk: PickleWalk,
        out: LoadCost,
        torch: bool,
        skip: frozenset[tuple[str, str]],
    ) -> None:
        self.skip = skip
        self.values = values
        self.walk = walk
        self.out = out
        self.torch = torch
        self.lengths: dict[int, int] = {}
        self.dtypes: dict[int, Any] = {}

    def run(self) -> None:
        for g in self.walk.globals:
            if not g.resolved or not g.calls:
                continue
            pair = (g.module, g.name)
            if pair in self.skip:
                continue
            for res in g.calls:
                args = self.values.items(res.args)
                called, name = pair, g.canonical
                use = res.use
                if pair == _NEWOBJ and args:
                    # copyreg.__newobj__(cls, *args) is cls.__new__(cls, *args)
                    cls = canonical_of(args[0])
                    if cls is None or cls in self.skip:
                        continue
                    called, args, use, name = cls, args[1:], Use.INSTANTIATED, ".".join(cls)
                cost, what = self.call_cost(called, args, use)
                if cost:
                    self.out.add(CostItem(cost, res.offset, f"{name}{what}"))
        if self.torch:
            for offset, pid in self.walk.persids:
                cost = self.storage_cost(pid)
                if cost:
                    self.out.add(CostItem(cost, offset, "a torch storage"))

    # -- what one call costs ------------------------------------------------------------

    def call_cost(
        self, pair: tuple[str, str], args: tuple[Any, ...] | None, use: str
    ) -> tuple[int, str]:
        values = self.values
        if use != Use.CALLED and pair not in _NEW_CONSUMES:
            return 0, ""  # rebuilt without __init__: list, dict, deque... consume nothing
        if pair in _CONSUMERS and args:
            at = _ITERABLE_AT.get(pair, 0)
            if pair in _SIZED and values.is_int(args[0]):
                size = self.int_bound(args[0])
                return size, f"({_shown(size)}) allocates {shown(size)}"
            if len(args) > at:
                length = self.length(args[at], 0)
                if length == _UNKNOWN:
                    return UNBOUNDED, " is given something whose size cannot be bounded"
                # bytes and bytearray store a byte per item; the others a pointer
                cost = min(UNBOUNDED, (1 if pair in _SIZED else ITEM) * length)
                return cost, f" iterates {_shown(length)} items"
            return 0, ""
        if pair in _RECONSTRUCT and args is not None and len(args) == 3:
            return self.array_cost(args[1], args[2], "_reconstruct")
        if pair in _ARRAY_CLASSES and args:
            if len(args) > 2 and not values.is_none(args[2]):
                return 0, ""  # ndarray(shape, dtype, buffer): the buffer's bytes
            return self.array_cost(args[0], args[1] if len(args) > 1 else None, "ndarray")
        if pair == _MARECONSTRUCT and args is not None and len(args) == 4:
            cost, what = self.array_cost(args[2], args[3], "_mareconstruct")
            return cost + cost // 8, what
        if pair == _NEW_INDEX and args is not None and len(args) == 2:
            # pandas Index(data): a range is materialized (a RangeIndex has no data)
            data = (self.values.str_dict(args[1]) or {}).get("data")
            if type(data) is Res and canonical_of(data.fn) == _RANGE:
                length = self.length(data, 0)
                cost = UNBOUNDED if length == _UNKNOWN else min(UNBOUNDED, ITEM * length)
                return cost, f" materializes a range of {_shown(length)} items"
            return 0, ""
        if pair == _FRACTION and args:
            return self.fraction_cost(args[0])
        if pair == _DECIMAL and args and values.is_int(args[0]):
            size = values.int_size(args[0]) or 0
            words = size // 8
            cost = 10 * words * words
            return cost, f" converts a {size}-byte integer to decimal"
        if pair[0].startswith(_TORCH_NN) and use == Use.CALLED and args:
            return self.layer_cost(pair, args)
        return 0, ""

    def array_cost(self, shape_item: object, dtype: object, how: str) -> tuple[int, str]:
        values = self.values
        shape = values.int_tuple(shape_item)
        if shape is None:
            one = self.int_bound(shape_item) if values.is_int(shape_item) else None
            if one is None:
                return 0, ""
            shape = (one,)
        count = _product(shape)
        itemsize = 8 if dtype is None else typecode_itemsize(values, dtype, self.dtypes)
        cost = min(UNBOUNDED, count * (itemsize if itemsize is not None else 8))
        return cost, f" allocates an array of shape {_shape(shape)} ({shown(cost)})"

    def fraction_cost(self, item: object) -> tuple[int, str]:
        text = self.values.text(item)
        if text is None or "e" not in text.lower():
            return 0, ""
        exponent = text.lower().rpartition("e")[2].replace("_", "").lstrip("+")
        if not exponent.isdecimal():
            # What int() and Fraction's pattern read as digits ('²' is a digit to
            # isdigit(), and int('²') raises).
            return 0, ""
        if len(exponent) > 18:
            return UNBOUNDED, f" computes 10**{exponent[:20]}..."
        digits = int(exponent)
        cost = int(digits**1.585 / 10) + digits
        return cost, f"({text[:30]!r}) computes a {_shown(digits)}-digit number"

    def layer_cost(self, pair: tuple[str, str], args: tuple[Any, ...]) -> tuple[int, str]:
        """torch.nn layers allocate and initialize their parameters from their sizes."""
        sizes: list[int] = []
        for item in args:
            if self.values.is_int(item):
                sizes.append(self.int_bound(item))
            else:
                found = self.values.int_tuple(item)
                if found is not None:
                    sizes.extend(found)
        sizes = [s for s in sizes if s > 0]
        if not sizes:
            return 0, ""
        name = pair[1]
        if name in ("LSTM", "GRU", "RNN") and len(sizes) >= 2:
            gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[name]
            layers = sizes[2] if len(sizes) > 2 else 1
            count = gates * sizes[1] * (sizes[0] + sizes[1]) * layers
        else:
            count = _product(sizes)
            if name.startswith("Conv") and len(sizes) >= 3 and name[-2:-1].isdigit():
                count *= sizes[2] ** (int(name[-2]) - 1)  # an int kernel size is per dimension
        cost = min(UNBOUNDED, 4 * count)
        return cost, f" called with sizes {_shape(tuple(sizes))} allocates {shown(cost)}"

    def storage_cost(self, pid: object) -> int:
        items = self.values.items(pid)
        if items is None or len(items) < 5:
            return 0
        kind = items[1]
        name = kind.name if type(kind) is GRef else ""
        numel = self.int_bound(items[4]) if self.values.is_int(items[4]) else 0
        return min(UNBOUNDED, numel * _STORAGE_ITEM.get(name.rpartition(".")[2], 8))

    # -- lengths ------------------------------------------------------------------------

    def int_bound(self, item: object) -> int:
        """An int constant, or a lower bound of its magnitude when too big to decode."""
        value = self.values.int_value(item)
        if value is not None:
            return max(value, 0)
        size = self.values.int_size(item) or 0
        return UNBOUNDED if size > 9 else 0

    def length(self, item: object, depth: int) -> int:
        """How many items iterating `item` yields; `_UNKNOWN` when not derivable."""
        values = self.values
        if type(item) is int:
            text = values.text_length(item)
            if text is not None:
                return text
            raw = values.raw_length(item)
            return raw if raw is not None else 0
        if type(item) is Tup:
            return item.n
        if type(item) is not Res:
            return 0 if type(item) is not GRef else _UNKNOWN
        key = id(item)
        known = self.lengths.get(key)
        if known is not None:
            return known
        found = _UNKNOWN if depth > _MAX_DEPTH else self.result_length(item, depth)
        self.lengths[key] = found
        return found

    def result_length(self, res: Res, depth: int) -> int:
        values = self.values
        fn = canonical_of(res.fn)
        args = values.items(res.args)
        if fn is None or args is None:
            return _UNKNOWN
        if fn == _CODECS_ENCODE:
            raw = values.raw_length(res)
            return raw if raw is not None else _UNKNOWN
        if fn == _RANGE:
            return _range_length([self.signed(a) for a in args])
        if fn in _SIZED and args and values.is_int(args[0]):
            return self.int_bound(args[0])
        if fn in _CONSUMERS:
            at = _ITERABLE_AT.get(fn, 0)
            return self.length(args[at], depth + 1) if len(args) > at else 0
        if fn in _RECONSTRUCT and len(args) == 3:
            shape = values.int_tuple(args[1])
            if res.builds:
                state = values.items(res.state)
                shape = values.int_tuple(state[-4]) if state and len(state) in (4, 5) else None
            return shape[0] if shape else _UNKNOWN
        if fn in _FROMBUFFER and len(args) > 2:
            shape = values.int_tuple(args[2])
            return shape[0] if shape else _UNKNOWN
        return _UNKNOWN

    def signed(self, item: object) -> int | None:
        value = self.values.int_value(item)
        if value is not None:
            return value
        size = self.values.int_size(item)
        return UNBOUNDED if size is not None and size > 9 else None


def _range_length(bounds: list[int | None]) -> int:
    if any(b is None for b in bounds) or not 1 <= len(bounds) <= 3:
        return _UNKNOWN
    known = [b for b in bounds if b is not None]
    if len(known) == 1:
        start, stop, step = 0, known[0], 1
    elif len(known) == 2:
        start, stop, step = known[0], known[1], 1
    else:
        start, stop, step = known
    if step == 0:
        return 0
    if UNBOUNDED in (start, stop, step):
        return UNBOUNDED
    count = (stop - start + step - (1 if step > 0 else -1)) // step
    return max(0, min(count, UNBOUNDED))


def _product(values: Iterable[int]) -> int:
    count = 1
    for v in values:
        count = min(UNBOUNDED, count * max(v, 0))
    return count


def _shown(n: int) -> str:
    if n >= UNBOUNDED:
        return "unbounded"
    for unit, size in (("Ei", 1 << 60), ("Pi", 1 << 50), ("Ti", 1 << 40), ("Gi", 1 << 30),
                       ("Mi", 1 << 20)):  # fmt: skip
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return str(n)


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(_shown(d) if d >= 1 << 20 else str(d) for d in shape) + ")"


def shown(n: int) -> str:
    """A cost for a message: bytes with binary prefixes, or "unbounded"."""
    if n >= UNBOUNDED:
        return "unbounded"
    return _shown(n) + ("B" if n >= 1 << 20 else " bytes")
