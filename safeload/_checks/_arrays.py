"""numpy arrays a pickle builds from its own bytes, read without numpy."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._machine.walker import Res
from ._dtype import Layout, symbolic_layout
from ._values import Values, canonical_of

__all__ = ["SymArray", "array_shape", "is_joblib_array", "symbolic_array"]

_RECONSTRUCT = frozenset(
    {("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct")}
)
_FROMBUFFER = frozenset(
    {("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer")}
)
_JOBLIB_WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")


def is_joblib_array(item: object) -> bool:
    """A joblib array wrapper: its items follow the pickle (the loader reads them)."""
    return type(item) is Res and canonical_of(item.fn) == _JOBLIB_WRAPPER


def array_shape(values: Values, item: object) -> tuple[int, ...] | None:
    """The shape of an array the pickle builds (`_reconstruct` + state, `_frombuffer`,
    joblib's wrapper), whatever its items are; None for anything else."""
    if type(item) is not Res:
        return None
    fn = canonical_of(item.fn)
    if fn == _JOBLIB_WRAPPER:
        entries = values.str_dict(item.state)
        return values.int_tuple(entries.get("shape")) if entries is not None else None
    if fn in _RECONSTRUCT:
        state = values.items(item.state)
        if item.builds != 1 or state is None or len(state) not in (4, 5):
            return None
        return values.int_tuple(state[-4])
    if fn in _FROMBUFFER:
        args = values.items(item.args)
        return values.int_tuple(args[2]) if args is not None and len(args) >= 3 else None
    return None


@dataclass(frozen=True)
class SymArray:
    """An array whose items are bytes in the pickle."""

    shape: tuple[int, ...]
    layout: Layout
    raw: Any
    """Its items' bytes (C order unless `fortran`)."""
    fortran: bool

    @property
    def size(self) -> int:
        count = 1
        for d in self.shape:
            count *= d
        return count

    def column(self, name: str | None = None) -> Sequence[int] | None:
        """The integers of one field (or of the items, for `name=None`), in storage
        order; None when there is no such integer field."""
        layout, offset = self.layout, 0
        if name is not None:
            found = next((f for f in layout.fields if f[0] == name), None)
            if found is None:
                return None
            _, offset, layout = found
        if layout.kind not in ("i", "u") or layout.fields:
            return None
        return _ints(
            self.raw,
            self.size,
            self.layout.itemsize,
            offset,
            layout.itemsize,
            signed=layout.kind == "i",
            little=_little(layout.byteorder),
        )


def _little(order: str) -> bool:
    return order == "<" or (order in ("=", "|") and sys.byteorder == "little")


def _ints(
    raw: Any, count: int, stride: int, offset: int, size: int, *, signed: bool, little: bool
) -> Sequence[int]:
    view = memoryview(raw).cast("B")
    native = little == (sys.byteorder == "little")
    if native and size == 8 and stride % 8 == 0 and offset % 8 == 0:
        column: Sequence[int] = view.cast("q" if signed else "Q")[offset // 8 :: stride // 8]
        return column
    if native and size == 4 and stride % 4 == 0 and offset % 4 == 0:
        column = view.cast("i" if signed else "I")[offset // 4 :: stride // 4]
        return column
    return [
        int.from_bytes(
            view[i * stride + offset : i * stride + offset + size],
            "little" if little else "big",
            signed=signed,
        )
        for i in range(count)
    ]


def symbolic_array(values: Values, item: object, cache: dict[Any, Any]) -> SymArray | str | None:
    """The array `item` stands for when its items are bytes in this pickle;
    None when they are not (a joblib array's follow the pickle; an object array
    is a list); a problem when it is no array form numpy writes."""
    if type(item) is not Res:
        return None
    fn = canonical_of(item.fn)
    dtypes = cache.setdefault("dtype", {})
    if fn in _FROMBUFFER:
        args = values.items(item.args)
        if args is None or len(args) < 3:
            return "not the (buffer, dtype, shape, order) numpy writes"
        raw, dtype, shape_item = args[0], args[1], args[2]
        fortran = values.text(args[3]) == "F" if len(args) > 3 else False
    elif fn in _RECONSTRUCT:
        if item.builds != 1:
            return None if item.builds == 0 else "an array given state twice"
        state = values.items(item.state)
        if state is None or len(state) not in (4, 5):
            return "its state is not the tuple numpy writes"
        body = state[-4:]
        shape_item, dtype, fortran_item, raw = body
        fortran = values.const(fortran_item) is True
    else:
        return None
    data = values.raw_bytes(raw)
    if data is None:
        return None
    shape = values.int_tuple(shape_item)
    if shape is None or any(d < 0 for d in shape):
        return "its shape is not a tuple of sizes"
    layout = symbolic_layout(values, dtype, dtypes)
    if isinstance(layout, str):
        return f"its dtype: {layout}"
    array = SymArray(shape, layout, data, fortran)
    if array.size * layout.itemsize != len(data):
        return f"{len(data)} bytes for {array.size} items of {layout.itemsize} bytes"
    return array
