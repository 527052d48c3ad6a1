"""pandas: block placements and Categorical codes, which Cython code trusts.

- `BlockManager(blocks, axes)` checks that the blocks' placements hold as many
  items as the axis, not which items: the first column access builds
  `blknos`/`blklocs` by writing through each placement unchecked (a placement
  `[0, 10**7]` writes far outside the array and crashes the process).
- A Categorical's codes index its categories through an unchecked Cython take
  (`np.asarray(cat)`, `repr`): a code `10**8` reads outside the categories.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

from .._machine import opcodes as O
from .._machine.walker import GRef, Res
from ._arrays import array_shape, is_joblib_array, symbolic_array
from ._base import Check, ObjectCheck, Problem, Site
from ._values import Values, canonical_of

__all__ = ["BLOCK_PLACEMENT", "CATEGORICAL_CODES", "MASKED_ARRAY", "SPARSE_VALUES"]

_BLOCK_MANAGER = ("pandas.core.internals.managers", "BlockManager")
_UNPICKLE_BLOCK = ("pandas._libs.internals", "_unpickle_block")
_BLOCK_BUILDERS = frozenset({_UNPICKLE_BLOCK, ("pandas.core.internals.blocks", "new_block")})
"""How blocks pickle: `_unpickle_block(values, placement, ndim)` (pandas >= 2), and
`new_block(values, placement, ndim=n)` (pandas 1.3-1.5, through `functools.partial`, which
the walk reads as a call of `new_block` with the keyword)."""
_NDARRAY_BACKED = ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked")
_CATEGORICAL = frozenset(
    {("pandas", "Categorical"), ("pandas.core.arrays.categorical", "Categorical")}
)
_SLICE = ("builtins", "slice")
_RECONSTRUCT = frozenset(
    {("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct")}
)
_FROMBUFFER = frozenset(
    {("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer")}
)
_JOBLIB_WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")
_NEW_INDEX = frozenset(
    ("pandas.core.indexes." + m, f)
    for m, f in (
        ("base", "_new_Index"),
        ("datetimes", "_new_DatetimeIndex"),
        ("period", "_new_PeriodIndex"),
        ("timedeltas", "_new_TimedeltaIndex"),
        ("interval", "_new_IntervalIndex"),
    )
)
_INTERVAL_MIXIN = ("pandas._libs.interval", "__pyx_unpickle_IntervalMixin")
_COPYREG_BUILDERS = frozenset(
    {("copyreg", "_reconstructor"), ("copyreg", "__newobj__"), ("copyreg", "__newobj_ex__")}
)
_RANGE_INDEX = frozenset({("pandas", "RangeIndex"), ("pandas.core.indexes.range", "RangeIndex")})

_MAX_ITEMS = 1 << 24
"""More placement indices than this are no real frame (and are not expanded)."""


def _np() -> Any:
    import numpy

    return numpy


class _Deferred(Exception):
    """The value lies outside the pickle (joblib's arrays follow it): the loader checks it."""


# -- symbolic: what a pickle builds ---------------------------------------------------------


def _int_or_none(values: Values, item: object) -> int | str | None:
    if values.is_none(item):
        return None
    if values.is_int(item):
        value = values.int_value(item)
        if value is not None:
            return value
    return "<not an int constant>"


def _is_joblib_array(item: object) -> bool:
    return type(item) is Res and canonical_of(item.fn) == _JOBLIB_WRAPPER


_shape = array_shape


def _index_array(values: Values, item: object, cache: dict[Any, Any]) -> Sequence[int] | str:
    """The integers of a 1-D integer array in the pickle (raises `_Deferred` for joblib's)."""
    shape = _shape(values, item)
    if shape is not None and len(shape) == 1 and shape[0] == 0:
        return ()
    if _is_joblib_array(item):
        raise _Deferred
    array = symbolic_array(values, item, cache)
    if array is None:
        return "not an integer array the scan could read"
    if isinstance(array, str):
        return array
    ints = array.column()
    if ints is None or len(array.shape) != 1:
        return "not a 1-D integer array"
    return ints


def _placement(
    values: Values, item: object, cache: dict[Any, Any]
) -> tuple[range | Sequence[int], int] | str:
    """A block's placement, a slice or an array of indices, and how many it holds."""
    if type(item) is Res and canonical_of(item.fn) == _SLICE:
        args = values.items(item.args)
        if args is None or not 1 <= len(args) <= 3:
            return "a slice the scan could not read"
        bounds = [_int_or_none(values, a) for a in args]
        if any(isinstance(b, str) for b in bounds):
            return "a slice whose bounds are not int constants"
        ints = [b if isinstance(b, int) else None for b in bounds]
        start, stop, step = [None, *ints, None][:3] if len(ints) == 1 else [*ints, None][:3]
        if stop is None or (start or 0) < 0 or stop < 0 or (step is not None and step <= 0):
            return f"slice({start}, {stop}, {step}) is not a placement pandas writes"
        span = range(start or 0, stop, step or 1)
        return span, len(span)
    found = _index_array(values, item, cache)
    if isinstance(found, str):
        return f"placement: {found}"
    return found, len(found)


def _partition(placements: Iterable[range | Sequence[int]], total: int) -> Problem:
    """The placements hold each of range(total) exactly once."""
    seen = bytearray(total)
    for placement in placements:
        if isinstance(placement, range) and placement.step == 1:
            lo, hi = placement.start, placement.stop
            if hi > total:
                return f"placement {placement} reaches item {hi - 1} of {total}"
            if seen.find(1, lo, hi) != -1:
                return f"item {seen.index(1, lo, hi)} is placed twice"
            seen[lo:hi] = b"\x01" * (hi - lo)
            continue
        for i in placement:
            if not 0 <= i < total:
                return f"placement index {i} is not an item of {total}"
            if seen[i]:
                return f"item {i} is placed twice"
            seen[i] = 1
    return None


def _blocks_symbolic(site: Site) -> Problem:
    values, args = site.values, site.args
    if not site.called:
        return f"pandas writes BlockManager(blocks, axes), not {site.how}"
    if args is None or len(args) not in (2, 3):
        return "BlockManager() is not given (blocks, axes)"
    blocks = values.items(args[0])
    if blocks is None:
        # More blocks than the walk keeps: bound every 2-D block's placement by
        # all the items the pickle's blocks place (the loader checks the rest).
        return _all_blocks_bounded(site)
    placements = []
    total = 0
    for block in blocks:
        try:
            block_args = _block_args(values, block)
            if block_args is None:
                return "a block that is not _unpickle_block(values, placement, ndim)"
            found = _placement(values, block_args[1], site.cache)
        except _Deferred:
            return None  # joblib's indices follow the pickle, or pandas 1.x: checked at load
        if isinstance(found, str):
            return found
        placements.append(found[0])
        total += found[1]
    if total > _MAX_ITEMS:
        return f"{total} placed items"
    return _partition(placements, total)


def _all_blocks_bounded(site: Site) -> Problem:
    values = site.values
    placements: list[range | Sequence[int]] = []
    total = 0
    for g in values.walk.globals:
        if (g.module, g.name) not in _BLOCK_BUILDERS:
            continue
        for res in g.calls:
            try:
                block_args = _block_args(values, res)
            except _Deferred:
                continue
            if block_args is None:
                return "a block that is not _unpickle_block(values, placement, ndim)"
            if block_args[2] != 2:
                continue
            try:
                found = _placement(values, block_args[1], site.cache)
            except _Deferred:
                return None
            if isinstance(found, str):
                return found
            placements.append(found[0])
            total += found[1]
    for placement in placements:
        if len(placement) and (min(placement) < 0 or max(placement) >= total):
            return f"a placement reaches past the {total} items the pickle's blocks place"
    return None


def _block_args(values: Values, block: object) -> tuple[Any, Any, int | None] | None:
    """(values, placement, ndim) of a block, `_unpickle_block(values, placement, ndim)` or
    `new_block(values, placement, ndim)`, or `new_block(values, placement, ndim=n)` as
    pandas 1.3-1.5 call it through `functools.partial`; None for anything else."""
    if type(block) is not Res or canonical_of(block.fn) not in _BLOCK_BUILDERS:
        return None
    args = values.items(block.args)
    keywords = dict(block.kwargs)
    if args is not None and len(args) == 2 and set(keywords) == {"ndim"}:
        return args[0], args[1], values.int_value(keywords["ndim"])
    if args is None or len(args) != 3 or keywords:
        return None
    return args[0], args[1], values.int_value(args[2])


def _array_length(values: Values, item: object, depth: int = 0) -> int | str:
    """How many items an index's data holds, read from the pickle."""
    if depth > 8 or type(item) is not Res:
        return "categories the scan could not size"
    fn = canonical_of(item.fn)
    if _is_array(values, item):
        shape = _shape(values, item)
        if shape is None or len(shape) != 1:
            return "categories that are not a 1-D array"
        return shape[0]
    if fn == _NDARRAY_BACKED:
        state = _backed_state(values, item)
        if isinstance(state, str):
            return state
        return _array_length(values, state[1], depth + 1)
    if fn == _INTERVAL_MIXIN:
        args = values.items(item.args)
        given = item.state if args is None or len(args) != 3 or values.is_none(args[2]) else args[2]
        inner = values.items(given)
        entries = values.str_dict(inner[0] if inner is not None and len(inner) == 1 else given)
        if entries is None or "_left" not in entries:
            return "an IntervalArray the scan could not read"
        return _array_length(values, entries["_left"], depth + 1)
    if fn in _NEW_INDEX:
        args = values.items(item.args)
        if args is None or len(args) != 2:
            return "an index the scan could not read"
        entries = values.str_dict(args[1])
        if entries is None:
            return "an index the scan could not read"
        if canonical_of(args[0]) in _RANGE_INDEX:
            start, stop, step = (
                values.int_value(entries.get(k)) for k in ("start", "stop", "step")
            )
            if start is None or stop is None or not step:
                return "a RangeIndex the scan could not read"
            return len(range(start, stop, step))
        for key in ("data", "left"):  # an IntervalIndex keeps its left and right ends
            if key in entries:
                return _array_length(values, entries[key], depth + 1)
        return "an index without data"
    return "categories the scan could not size"


def _backed_state(values: Values, res: Res) -> tuple[Any, Any] | str:
    """(dtype, ndarray) of an NDArrayBacked array built by the Cython unpickle helper."""
    args = values.items(res.args)
    if args is None or len(args) != 3:
        return "__pyx_unpickle_NDArrayBacked is not given (class, checksum, state)"
    if not values.is_none(args[2]):
        state: object = args[2]
    elif res.builds == 1:
        state = res.state
    elif res.builds == 0:
        return "an NDArrayBacked array never given its state"
    else:
        return f"an NDArrayBacked array given state {res.builds} times"
    items = values.items(state)
    if items is not None and len(items) in (2, 3):
        first, second = items[0], items[1]
        if len(items) == 3:
            extra = _attributes(values, items[2])
            if extra is None or {"_ndarray", "_data", "_dtype", "_codes"} & set(extra):
                return "an NDArrayBacked state whose attributes the scan could not read"
        # __setstate__ takes (dtype, ndarray) or (ndarray, dtype)
        if _is_array(values, first) and not _is_array(values, second):
            first, second = second, first
        return first, second
    entries = values.str_dict(state)
    if entries is not None:
        data = entries.get("_ndarray", entries.get("_data"))
        if data is None or "_dtype" not in entries or "_codes" in entries:
            return "an NDArrayBacked state whose attributes the scan could not read"
        return entries["_dtype"], data
    return "an NDArrayBacked state the scan could not read"


def _attributes(values: Values, item: object) -> dict[str, Any] | None:
    """A dict of attributes: its str-keyed items, {} for an EMPTY_DICT no opcode ever
    filled (the walk reads such a dict as unknown), else None."""
    found = values.str_dict(item)
    if found is not None or type(item) is not int or values.data[item] != O.EMPTY_DICT:
        return found
    walk = values.walk
    gap = walk.dict_gap
    if item in walk.dicts or (gap and gap[0] <= item < (gap[1] if len(gap) > 1 else 1 << 62)):
        return None
    return {}


def _is_array(values: Values, item: object) -> bool:
    if type(item) is not Res:
        return False
    fn = canonical_of(item.fn)
    return fn in _RECONSTRUCT or fn in _FROMBUFFER or fn == _JOBLIB_WRAPPER


def _categories_count(values: Values, dtype: object) -> int | str:
    """How many categories a CategoricalDtype built in the pickle holds."""
    if type(dtype) is not Res:
        return "a Categorical whose dtype is not a CategoricalDtype the scan could read"
    cls = dtype.fn
    if canonical_of(cls) in _COPYREG_BUILDERS:  # protocols 0-1: the class is the first argument
        args = values.items(dtype.args)
        cls = args[0] if args else None
    if not isinstance(cls, GRef):
        return "a Categorical whose dtype is not a CategoricalDtype the scan could read"
    if cls.name != "CategoricalDtype" or dtype.builds != 1:
        return "a Categorical whose dtype is not a CategoricalDtype the scan could read"
    state = values.str_dict(dtype.state)
    if state is None:
        return "a CategoricalDtype whose state the scan could not read"
    categories = state.get("categories")
    if categories is None or values.is_none(categories):
        return 0
    return _array_length(values, categories)


def _categorical_symbolic(site: Site) -> Problem:
    values, args = site.values, site.args
    if args is None or not args or canonical_of(args[0]) not in _CATEGORICAL:
        return None  # another NDArrayBacked class: no codes index anything
    state = _backed_state(values, site.res)
    if isinstance(state, str):
        return state
    dtype, codes = state
    try:
        count = _categories_count(values, dtype)
        if isinstance(count, str):
            return count
        ints = _index_array(values, codes, site.cache)
    except _Deferred:
        return None  # joblib keeps the arrays after the pickle: checked at load
    if isinstance(ints, str):
        return f"codes: {ints}"
    return _codes_problem(min(ints, default=-1), max(ints, default=-1), count)


def _codes_problem(low: int, high: int, count: int) -> Problem:
    if low < -1:
        return f"code {low} is not a category (or -1, missing)"
    if high >= count:
        return f"code {high} is not one of the {count} categories"
    return None


# -- real: loaded objects ---------------------------------------------------------------------


@cache
def _pandas_type(module: str, name: str) -> type:
    """A pandas class, imported only once a pickle imported pandas (pandas 3 names its
    public classes' module `pandas`, so they are matched by identity, not by name)."""
    found: type = getattr(importlib.import_module(module), name)
    return found


def _is_block_manager(obj: object) -> bool:
    return isinstance(obj, _pandas_type("pandas._libs.internals", "BlockManager"))


def _real_blocks(manager: Any) -> Problem:
    np = _np()
    axes = manager.axes
    if len(axes) != 2:
        return f"a BlockManager with {len(axes)} axes"
    total = len(axes[0])
    found = []
    for block in manager.blocks:
        locs = np.asarray(block.mgr_locs.as_array)
        if locs.ndim != 1 or locs.dtype.kind not in "iu":
            return "a block placement that is not a 1-D integer array"
        if getattr(block, "ndim", 2) != 2 or block.shape[1:] != (len(axes[1]),):
            return f"a block of shape {block.shape} in a frame of {total} x {len(axes[1])}"
        found.append(locs.astype(np.int64))
    placed = np.sort(np.concatenate(found)) if found else np.zeros(0, np.int64)
    if len(placed) != total or not np.array_equal(placed, np.arange(total)):
        bad = placed[(placed < 0) | (placed >= total)]
        if len(bad):
            return f"placement index {int(bad[0])} is not an item of {total}"
        return f"block placements do not hold each of the {total} items once"
    return None


BLOCK_PLACEMENT = Check(
    name="pandas-block-placement",
    doc="a pandas BlockManager's block placements hold each item of the frame exactly once "
    "(the first column access writes through them unchecked)",
    names=frozenset({_BLOCK_MANAGER}),
    symbolic=_blocks_symbolic,
    objects=(ObjectCheck(("pandas",), _is_block_manager, _real_blocks, "pandas BlockManager"),),
    what="pandas BlockManager",
)


def _is_categorical(obj: object) -> bool:
    return isinstance(obj, _pandas_type("pandas.core.arrays.categorical", "Categorical"))


def _real_categorical(cat: Any) -> Problem:
    np = _np()
    codes = cat._ndarray
    if not isinstance(codes, np.ndarray) or codes.dtype.kind not in "iu":
        return "codes that are not an integer array"
    categories = cat.dtype.categories
    count = 0 if categories is None else len(categories)
    if codes.size == 0:
        return None
    return _codes_problem(int(codes.min()), int(codes.max()), count)


CATEGORICAL_CODES = Check(
    name="pandas-categorical-codes",
    doc="a pandas Categorical's codes lie in [-1, number of categories) (they index the "
    "categories through an unchecked Cython take)",
    names=frozenset({_NDARRAY_BACKED}),
    symbolic=_categorical_symbolic,
    objects=(ObjectCheck(("pandas",), _is_categorical, _real_categorical, "pandas Categorical"),),
    what="pandas Categorical",
)


# -- SparseArray ------------------------------------------------------------------------------

_SPARSE_ARRAY = frozenset(
    {("pandas.arrays", "SparseArray"), ("pandas.core.arrays.sparse.array", "SparseArray")}
)
_INT_INDEX = ("pandas._libs.sparse", "IntIndex")


def _points_problem(values: int, points: int) -> Problem:
    if values != points:
        return f"{values} stored values for the {points} points of its sparse index"
    return None


def _sparse_symbolic(site: Site) -> Problem:
    values = site.values
    if site.called:
        return "pandas rebuilds a SparseArray, it never calls the class"
    if site.res.builds == 0:
        return None
    if site.res.builds > 1:
        return f"a SparseArray given state {site.res.builds} times"
    entries = values.str_dict(site.res.state)
    stored: object = None
    if entries is not None:
        stored, index = entries.get("_sparse_values"), entries.get("_sparse_index")
        shape = _shape(values, stored)
    else:  # pandas < 0.24: (ndarray state, (fill value, sparse index))
        items = values.items(site.res.state)
        inner = values.items(items[1]) if items is not None and len(items) == 2 else None
        array = values.items(items[0]) if items is not None else None
        if inner is None or len(inner) != 2 or array is None or len(array) not in (4, 5):
            return "its state is not one pandas writes"
        index, shape = inner[1], values.int_tuple(array[-4])
    if type(index) is not Res or canonical_of(index.fn) != _INT_INDEX:
        return "its sparse index is not an IntIndex(length, indices)"
    args = values.items(index.args)
    points = _shape(values, args[1]) if args is not None and len(args) == 2 else None
    if shape is None or points is None:
        if is_joblib_array(args[1] if args else None) or is_joblib_array(stored):
            return None  # joblib keeps the arrays after the pickle: checked at load
        return "its values or sparse index are not arrays the scan could size"
    if len(shape) != 1 or len(points) != 1:
        return f"values of shape {shape} for indices of shape {points}"
    return _points_problem(shape[0], points[0])


def _is_sparse_array(obj: object) -> bool:
    return isinstance(obj, _pandas_type("pandas.core.arrays.sparse.array", "SparseArray"))


def _real_sparse(array: Any) -> Problem:
    np = _np()
    stored, index = array._sparse_values, array._sparse_index
    points: Any = getattr(index, "npoints", None)
    if not isinstance(stored, np.ndarray) or stored.ndim != 1:
        return "its stored values are not a 1-D array"
    if not isinstance(index, _pandas_type("pandas._libs.sparse", "SparseIndex")):
        return "its sparse index is not a pandas SparseIndex"
    return _points_problem(len(stored), int(points))


SPARSE_VALUES = Check(
    name="pandas-sparse-values",
    doc="a pandas SparseArray holds one stored value per point of its sparse index (Cython "
    "sparse arithmetic reads values by index position unchecked)",
    names=_SPARSE_ARRAY,
    symbolic=_sparse_symbolic,
    objects=(ObjectCheck(("pandas",), _is_sparse_array, _real_sparse, "pandas SparseArray"),),
    what="pandas SparseArray",
)


# -- masked arrays ----------------------------------------------------------------------------

_MASKED = frozenset(
    (module, name)
    for module, name in (
        ("pandas.arrays", "BooleanArray"),
        ("pandas.arrays", "FloatingArray"),
        ("pandas.arrays", "IntegerArray"),
        ("pandas.core.arrays.boolean", "BooleanArray"),
        ("pandas.core.arrays.floating", "FloatingArray"),
        ("pandas.core.arrays.integer", "IntegerArray"),
    )
)


def _masked_problem(data: tuple[int, ...] | None, mask: tuple[int, ...] | None) -> Problem:
    if data is None or mask is None or data != mask:
        return f"data of shape {data} under a mask of shape {mask}"
    return None


def _masked_symbolic(site: Site) -> Problem:
    values = site.values
    if site.called:
        return "pandas rebuilds a masked array, it never calls the class"
    if site.res.builds == 0:
        return None
    if site.res.builds > 1:
        return f"a masked array given state {site.res.builds} times"
    entries = values.str_dict(site.res.state)
    if entries is None or "_data" not in entries or "_mask" not in entries:
        return "its state is not the {'_data', '_mask'} dict pandas writes"
    data, mask = entries["_data"], entries["_mask"]
    if is_joblib_array(mask):
        return None  # joblib keeps the mask after the pickle: checked at load
    array = symbolic_array(values, mask, site.cache)
    if isinstance(array, str):
        return f"its mask: {array}"
    if array is None:
        shape = _shape(values, mask)
        if shape is not None and 0 in shape:  # no items to read (protocols 0-2 write bytes())
            return _masked_problem(_shape(values, data), shape)
    if array is None or array.layout.kind != "b":
        kind = "unread" if array is None else f"of kind {array.layout.kind!r}"
        return f"its mask is not a boolean array ({kind})"
    return _masked_problem(_shape(values, data), array.shape)


def _is_masked(obj: object) -> bool:
    return isinstance(obj, _pandas_type("pandas.core.arrays.masked", "BaseMaskedArray"))


def _real_masked(array: Any) -> Problem:
    np = _np()
    data, mask = array._data, array._mask
    if not isinstance(data, np.ndarray) or not isinstance(mask, np.ndarray):
        return "its data or mask is not an array"
    if mask.dtype != np.bool_:
        return f"a mask of dtype {mask.dtype}, not bool"
    return _masked_problem(data.shape, mask.shape)


MASKED_ARRAY = Check(
    name="pandas-masked-array",
    doc="a pandas masked array (IntegerArray, FloatingArray, BooleanArray) rebuilt from its "
    "state has a boolean mask of its data's shape (Cython kernels read both by the "
    "data's length)",
    names=_MASKED,
    symbolic=_masked_symbolic,
    objects=(ObjectCheck(("pandas",), _is_masked, _real_masked, "pandas masked array"),),
    what="pandas masked array",
)
