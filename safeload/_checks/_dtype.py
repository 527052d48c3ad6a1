"""numpy dtypes without numpy: the layout and flags numpy computes for a structure.

`numpy.dtype.__setstate__` takes the state a pickle gives it (byte order,
subarray, fields, item size, alignment and *flags*) without checking it
against the type, on every descriptor that is not one of numpy's builtin
singletons (`numpy.dtype('O8', False, True)`, how numpy itself pickles a
dtype, is a copy). The flags decide whether numpy reference-counts the items:
an object dtype whose state clears them lets `frombuffer` and
`multiarray.scalar` read raw bytes as object pointers; fields placed past the
item, or overlapping an object field, read and write outside it. So a dtype
state is accepted only when it is exactly what numpy writes for its structure.

`Layout` is that structure: built here from the walker's symbolic values
(`symbolic_layout`) and, in the guarded loader, from real dtype objects
(`real_layout`), with the same rules (`simple`, `subarray`, `structured`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from .._machine.walker import GRef, Res
from ._values import Values, canonical_of

__all__ = [
    "DTYPE_CLASSES",
    "DTYPE_NAMES",
    "Layout",
    "dtype_args",
    "real_layout",
    "symbolic_layout",
    "typecode_itemsize",
]

# numpy/ndarraytypes.h
ITEM_REFCOUNT = 0x01
LIST_PICKLE = 0x02
ITEM_IS_POINTER = 0x04
NEEDS_INIT = 0x08
NEEDS_PYAPI = 0x10
USE_GETITEM = 0x20
USE_SETITEM = 0x40
ALIGNED_STRUCT = 0x80
FROM_FIELDS = NEEDS_INIT | LIST_PICKLE | ITEM_REFCOUNT | NEEDS_PYAPI
OBJECT_FLAGS = (
    LIST_PICKLE | USE_GETITEM | ITEM_IS_POINTER | ITEM_REFCOUNT | NEEDS_INIT | NEEDS_PYAPI
)

DTYPE_NAMES = frozenset({("numpy", "dtype")})
"""The class numpy pickles every legacy dtype through."""
STRING_DTYPE = frozenset(
    (f"{core}._internal", "_convert_to_stringdtype_kwargs")
    for core in ("numpy._core", "numpy.core")
)
"""How numpy pickles a StringDType (`_convert_to_stringdtype_kwargs(coerce, na_object)`)."""
DTYPE_CLASSES = frozenset(
    ("numpy.dtypes", name)
    for name in (
        "BoolDType", "BytesDType", "CLongDoubleDType", "Complex128DType", "Complex64DType",
        "DateTime64DType", "Float16DType", "Float32DType", "Float64DType", "Int16DType",
        "Int32DType", "Int64DType", "Int8DType", "LongDoubleDType", "LongLongDType",
        "ObjectDType", "StrDType", "TimeDelta64DType", "UInt16DType", "UInt32DType",
        "UInt64DType", "UInt8DType", "ULongLongDType", "VoidDType",
    )
)  # fmt: skip
"""numpy's DType classes: pickled as classes only, never built by a genuine pickle."""

#: Item sizes numpy has for each fixed kind on some platform.
_FIXED_SIZES = {
    "b": frozenset({1}),
    "i": frozenset({1, 2, 4, 8}),
    "u": frozenset({1, 2, 4, 8}),
    "f": frozenset({2, 4, 8, 10, 12, 16}),
    "c": frozenset({8, 16, 20, 24, 32}),
    "O": frozenset({4, 8}),
    "M": frozenset({8}),
    "m": frozenset({8}),
}
_FLEXIBLE = frozenset("SUV")
_TYPESTR = re.compile(r"([biufcOSUVMm])([0-9]{1,19})")
#: The scalar types numpy names instead of a type string (record arrays).
_VOID_TYPES = frozenset({("numpy", "record"), ("numpy", "void")})
_DATETIME_UNITS = frozenset(
    {"Y", "M", "W", "D", "h", "m", "s", "ms", "us", "ns", "ps", "fs", "as", "generic"}
)
_MAX_DEPTH = 32
_MAX_NDIM = 64
_MAX_ALIGNMENT = 64
#: One-character type codes (`_reconstruct(ndarray, (0,), b'b')`) and their item sizes.
_TYPECODE_SIZES = {
    "?": 1, "b": 1, "B": 1, "h": 2, "H": 2, "i": 4, "I": 4, "l": 8, "L": 8, "q": 8, "Q": 8,
    "n": 8, "N": 8, "p": 8, "P": 8, "e": 2, "f": 4, "d": 8, "g": 16, "F": 8, "D": 16,
    "G": 32, "O": 8, "M": 8, "m": 8, "S": 1, "a": 1, "U": 4, "V": 1,
}  # fmt: skip


@dataclass(frozen=True)
class Layout:
    """What numpy computes for a dtype's structure."""

    kind: str
    itemsize: int
    alignment: int
    objects: bool
    """Holds Python object pointers somewhere (the kind, a field, a subarray base)."""
    flags: int
    """The flags numpy computes for it."""
    optional: int = 0
    """Flag bits genuine numpy may or may not set for it, none of which decides
    whether items are object pointers (`NEEDS_INIT` for text, `ALIGNED_STRUCT`,
    `NEEDS_PYAPI` of a structured dtype without object fields)."""
    structured: bool = False
    byteorder: str = "|"
    fields: tuple[tuple[str, int, Layout], ...] = ()
    """(name, offset, layout) of each named field, titles left out."""

    def flags_problem(self, declared: int) -> str | None:
        """Why `declared` flags are not the ones numpy computes, or None."""
        keep = ~self.optional
        if declared & keep == self.flags & keep and 0 <= declared < 0x100:
            return None
        return (
            f"its state declares flags {declared:#x}; numpy computes {self.flags:#x} for its type"
        )


STRING_LAYOUT = Layout("T", 16, 8, True, 0x6B)


def simple(kind: str, size: int) -> Layout:
    """A type with no fields and no subarray; `size` in bytes."""
    if kind == "O":
        return Layout(kind, size, size, True, OBJECT_FLAGS)
    if kind == "U":
        return Layout(kind, size, 4, False, 0, NEEDS_INIT)
    if kind in ("S", "V"):
        return Layout(kind, size, 1, False, 0)
    if kind == "c":
        return Layout(kind, size, min(size // 2, 16), False, 0)
    return Layout(kind, size, min(size, 16), False, 0)


def subarray(base: Layout, shape: tuple[int, ...]) -> Layout | str:
    if len(shape) > _MAX_NDIM or any(d < 0 for d in shape):
        return f"subarray shape {shape} is not an array shape"
    count = 1
    for d in shape:
        count *= d
    return Layout(
        "V", base.itemsize * count, base.alignment, base.objects, base.flags, base.optional
    )


def structured(fields: list[tuple[Layout, int]], itemsize: int, aligned: bool) -> Layout | str:
    """A structured dtype from its distinct (field layout, offset) pairs."""
    flags = NEEDS_PYAPI
    optional = ALIGNED_STRUCT
    objects = False
    alignment = 1
    spans: list[tuple[int, int, bool]] = []
    for layout, offset in fields:
        if offset < 0 or offset + layout.itemsize > itemsize:
            return (
                f"a field of {layout.itemsize} bytes at offset {offset} lies outside "
                f"the {itemsize}-byte item"
            )
        flags |= layout.flags & FROM_FIELDS
        optional |= layout.optional & FROM_FIELDS
        objects = objects or layout.objects
        alignment = max(alignment, layout.alignment)
        spans.append((offset, offset + layout.itemsize, layout.objects))
    spans.sort()
    any_end = obj_end = 0
    for start, end, obj in spans:
        # Overlapping plain fields are legal in numpy (unions); a field overlapping
        # an object field writes or reads its pointer, and two object fields on the
        # same bytes count one reference twice.
        if start < obj_end or (obj and start < any_end):
            return "a field overlaps an object field"
        any_end = max(any_end, end)
        if obj:
            obj_end = max(obj_end, end)
    if not objects:
        # numpy 2 marks every structured dtype as needing the Python API; without
        # object fields nothing reads or releases a pointer either way, so pickles
        # of releases that did not mark them stay readable.
        optional |= NEEDS_PYAPI
    return Layout("V", itemsize, alignment if aligned else 1, objects, flags, optional, True)


# -- from the walker's values -----------------------------------------------------------


def dtype_args(values: Values, res: Res) -> tuple[tuple[str, str], tuple[Any, ...] | None] | None:
    """(class, constructor arguments) of an object a dtype class built, else None.

    Covers a call or NEWOBJ of the class and `copyreg.__newobj__(cls, *args)`;
    `copyreg._reconstructor` and `__newobj_ex__` give `(class, None)`: numpy
    never writes them, so their arguments are not read.
    """
    fn = canonical_of(res.fn)
    if fn is None:
        return None
    args = values.items(res.args)
    if fn in DTYPE_NAMES or fn in DTYPE_CLASSES:
        return fn, args
    if fn[0] == "copyreg" and args:
        cls = canonical_of(args[0])
        if cls is not None and (cls in DTYPE_NAMES or cls in DTYPE_CLASSES):
            return cls, args[1:] if fn[1] == "__newobj__" else None
        if fn[1] == "_reconstructor" and len(args) > 1:
            base = canonical_of(args[1])
            if base is not None and (base in DTYPE_NAMES or base in DTYPE_CLASSES):
                return base, None
    return None


@dataclass
class _Ctx:
    values: Values
    done: dict[int, Layout | str]
    active: set[int]


def symbolic_layout(values: Values, item: object, cache: dict[int, Layout | str]) -> Layout | str:
    """The layout of the dtype `item` stands for, as numpy would build it from the
    pickle, or why it is not a dtype state numpy writes. `cache` is shared by the
    calls over one pickle (shared dtypes are judged once)."""
    return _layout(_Ctx(values, cache, set()), item, 0)


def _layout(ctx: _Ctx, item: object, depth: int) -> Layout | str:
    if type(item) is not Res:
        return "it is not a dtype built by the pickle"
    if canonical_of(item.fn) in STRING_DTYPE:
        # StringDType: numpy builds it from keywords and it has no state to forge;
        # its items are references into an arena, never raw bytes from a file.
        return STRING_LAYOUT
    key = id(item)
    known = ctx.done.get(key)
    if known is not None:
        return known
    if key in ctx.active:
        return "a dtype that contains itself"
    if depth > _MAX_DEPTH:
        return f"dtypes nested more than {_MAX_DEPTH} deep"
    ctx.active.add(key)
    try:
        found = _build(ctx, item, depth)
    finally:
        ctx.active.discard(key)
    ctx.done[key] = found
    return found


def _base(values: Values, res: Res) -> tuple[str, int] | str:
    """(kind, size in bytes) from `numpy.dtype(typestr, align, copy)`."""
    built = dtype_args(values, res)
    if built is None:
        return "it is not a dtype built by the pickle"
    cls, args = built
    if cls in DTYPE_CLASSES:
        return f"numpy writes dtypes as numpy.dtype(...), never through {cls[0]}.{cls[1]}"
    if args is None:
        return "numpy writes dtypes as numpy.dtype(typestr, align, copy), never rebuilt by copyreg"
    if not 1 <= len(args) <= 3 or not all(values.is_bool(a) for a in args[1:]):
        return "numpy.dtype is called with (typestr, align, copy)"
    first = args[0]
    void = canonical_of(first)
    if void is not None:
        if void not in _VOID_TYPES:
            return f"numpy.dtype({void[0]}.{void[1]}) is not a dtype numpy pickles"
        return "V", -1  # its size comes from the state
    text = values.text(first)
    match = _TYPESTR.fullmatch(text or "")
    if match is None:
        return f"type string {text!r} is not one numpy writes" if text else "no type string"
    kind, size = match.group(1), int(match.group(2))
    if kind in _FLEXIBLE:
        return kind, size * 4 if kind == "U" else size
    if size not in _FIXED_SIZES[kind]:
        return f"type string {text!r} has no such item size"
    return kind, size


def _build(ctx: _Ctx, res: Res, depth: int) -> Layout | str:
    values = ctx.values
    base = _base(values, res)
    if isinstance(base, str):
        return base
    kind, size = base
    if res.builds == 0:
        return simple(kind, max(size, 0))
    if res.builds > 1:
        return f"it is given state {res.builds} times"
    state = values.items(res.state)
    if state is None or len(state) not in (8, 9):
        return "its state is not the 8- or 9-item tuple numpy writes"
    version, order, sub, names, fields, elsize, alignment, flags = (
        values.const(x) if i in (0, 1, 5, 6, 7) else x for i, x in enumerate(state[:8])
    )
    if version != (4 if len(state) == 9 else 3):
        return f"state version {version!r} is not one numpy writes"
    if type(elsize) is not int or type(alignment) is not int or type(flags) is not int:
        return "its item size, alignment and flags are not integers"
    if len(state) == 9:
        problem = _metadata(values, kind, state[8])
        if problem is not None:
            return problem
    if kind != "V":
        if not (values.is_none(sub) and values.is_none(names) and values.is_none(fields)):
            return f"a dtype of kind {kind!r} with fields or a subarray"
        layout = simple(kind, size)
        expected_size = size if kind in _FLEXIBLE else -1
        expected_alignment = layout.alignment if kind in _FLEXIBLE else -1
        if elsize != expected_size or alignment != expected_alignment:
            return (
                f"state item size {elsize} and alignment {alignment}: numpy writes "
                f"{expected_size} and {expected_alignment} for its type"
            )
    else:
        if size >= 0 and elsize != size:
            return f"state item size {elsize} for type V{size}"
        if elsize < 0:
            return f"negative item size {elsize}"
        found = _void(ctx, sub, names, fields, elsize, flags, depth)
        if isinstance(found, str):
            return found
        layout = found
        if alignment != layout.alignment and not (
            layout.structured and flags & ALIGNED_STRUCT and _power_of_two(alignment)
        ):
            return f"state alignment {alignment}; numpy computes {layout.alignment}"
    problem = _byte_order(order, kind, layout.itemsize)
    if problem is None:
        problem = layout.flags_problem(flags)
    return problem if problem is not None else replace(layout, byteorder=str(order))


def _void(
    ctx: _Ctx, sub: object, names: object, fields: object, elsize: int, flags: int, depth: int
) -> Layout | str:
    values = ctx.values
    if not values.is_none(sub):
        if not (values.is_none(names) and values.is_none(fields)):
            return "a subarray dtype with fields"
        pair = values.items(sub)
        shape = values.int_tuple(pair[1]) if pair is not None and len(pair) == 2 else None
        if pair is None or shape is None:
            return "its subarray is not (dtype, shape)"
        base = _layout(ctx, pair[0], depth + 1)
        if isinstance(base, str):
            return f"subarray base: {base}"
        layout = subarray(base, shape)
        if isinstance(layout, Layout) and layout.itemsize != elsize:
            return f"a subarray of {layout.itemsize} bytes in a {elsize}-byte item"
        return layout
    if values.is_none(fields):
        if not values.is_none(names):
            return "field names without fields"
        return simple("V", elsize)
    entries = values.str_dict(fields)
    if entries is None:
        return "its fields are not a dict the scan could read"
    name_list = values.items(names)
    keys = [values.text(n) for n in name_list] if name_list is not None else None
    if keys is not None and (None in keys or not set(keys) <= set(entries)):
        return "its field names are not all fields"
    seen: dict[tuple[int, int], tuple[Layout, int]] = {}
    named: list[tuple[str, int, Layout]] = []
    for key, value in entries.items():
        parts = values.items(value)
        if parts is None or len(parts) not in (2, 3):
            return f"field {key!r} is not (dtype, offset[, title])"
        offset = values.int_value(parts[1]) if values.is_int(parts[1]) else None
        if offset is None:
            return f"field {key!r} has no integer offset"
        if len(parts) == 3 and keys is not None and key not in keys:
            if values.text(parts[2]) != key:
                return f"field {key!r} is neither a name nor its title"
        elif keys is not None and key not in keys:
            return f"field {key!r} is not among the names"
        layout = _layout(ctx, parts[0], depth + 1)
        if isinstance(layout, str):
            return f"field {key!r}: {layout}"
        # A title names the same field again: one field, however many keys.
        seen[(id(parts[0]), offset)] = (layout, offset)
        if keys is None or key in keys:
            named.append((key, offset, layout))
    found = structured(list(seen.values()), elsize, bool(flags & ALIGNED_STRUCT))
    return found if isinstance(found, str) else replace(found, fields=tuple(named))


def _metadata(values: Values, kind: str, item: object) -> str | None:
    if kind not in ("M", "m"):
        return None if values.is_dict(item) or values.is_none(item) else "metadata is not a dict"
    pair = values.items(item)
    unit = values.items(pair[1]) if pair is not None and len(pair) == 2 else None
    if unit is None or len(unit) != 4 or not all(values.is_int(x) for x in unit[1:]):
        return "datetime metadata is not (metadata, (unit, num, den, events))"
    raw = values.raw_bytes(unit[0])  # bytes: a constant, or _codecs.encode below protocol 3
    text = bytes(raw).decode("ascii", "replace") if raw is not None else values.text(unit[0])
    if text not in _DATETIME_UNITS:
        return f"datetime unit {text!r} is not a numpy unit"
    return None


def _byte_order(order: object, kind: str, itemsize: int) -> str | None:
    if type(order) is not str or order not in ("<", ">", "|", "="):
        return f"byte order {order!r}"
    if kind in ("O", "S", "V") or (kind in ("b", "i", "u") and itemsize == 1):
        if order != "|":
            return f"byte order {order!r} for a type that has none"
    return None


def _power_of_two(n: int) -> bool:
    return 0 < n <= _MAX_ALIGNMENT and n & (n - 1) == 0


def typecode_itemsize(values: Values, item: object, cache: dict[int, Layout | str]) -> int | None:
    """The item size a `_reconstruct`/`ndarray` dtype argument names (a type code
    or a dtype built by the pickle), else None."""
    raw = values.const(item)
    if type(raw) is bytes:
        raw = raw.decode("latin-1")
    if type(raw) is str:
        if raw in _TYPECODE_SIZES:
            return _TYPECODE_SIZES[raw]
        match = _TYPESTR.fullmatch(raw.lstrip("<>|="))
        return int(match.group(2)) * (4 if match.group(1) == "U" else 1) if match else None
    if type(item) is Res:
        layout = symbolic_layout(values, item, cache)
        return layout.itemsize if isinstance(layout, Layout) else None
    if type(item) is GRef:
        return None
    return None


# -- from real dtype objects (the guarded loader) -----------------------------------------


def real_layout(dtype: Any, depth: int = 0) -> Layout | str:
    """The layout numpy computes for a real legacy dtype's structure, or why it is
    not one numpy builds (fields outside the item, flags that are not its own)."""
    if depth > _MAX_DEPTH:
        return f"dtypes nested more than {_MAX_DEPTH} deep"
    kind = dtype.kind
    if kind not in _FIXED_SIZES and kind not in _FLEXIBLE:
        return Layout(kind, dtype.itemsize, dtype.alignment, True, int(dtype.flags))  # not legacy
    sub = dtype.subdtype
    fields = dtype.fields
    if kind != "V":
        if sub is not None or fields is not None:
            return f"a dtype of kind {kind!r} with fields or a subarray"
        layout = simple(kind, dtype.itemsize)
    elif sub is not None:
        base = real_layout(sub[0], depth + 1)
        if isinstance(base, str):
            return f"subarray base: {base}"
        found = subarray(base, tuple(int(d) for d in sub[1]))
        if isinstance(found, str):
            return found
        if found.itemsize != dtype.itemsize:
            return f"a subarray of {found.itemsize} bytes in a {dtype.itemsize}-byte item"
        layout = found
    elif fields is not None:
        seen: dict[tuple[int, int], tuple[Layout, int]] = {}
        for value in fields.values():
            child = real_layout(value[0], depth + 1)
            if isinstance(child, str):
                return child
            seen[(id(value[0]), int(value[1]))] = (child, int(value[1]))
        found = structured(list(seen.values()), dtype.itemsize, bool(dtype.isalignedstruct))
        if isinstance(found, str):
            return found
        layout = found
    else:
        layout = simple("V", dtype.itemsize)
    if dtype.itemsize < 0:
        return f"negative item size {dtype.itemsize}"
    if (
        kind == "V"
        and dtype.alignment != layout.alignment
        and not (layout.structured and dtype.isalignedstruct and _power_of_two(dtype.alignment))
    ):
        return f"alignment {dtype.alignment}; numpy computes {layout.alignment}"
    problem = _byte_order(dtype.byteorder, kind, layout.itemsize)
    if problem is None:
        problem = layout.flags_problem(int(dtype.flags))
    return problem if problem is not None else layout
