"""numpy: dtype states, arrays read from raw bytes, random generator constructors."""

from __future__ import annotations

from typing import Any

from .._machine.walker import Res, StreamAnalysis
from ._base import Check, ObjectCheck, Problem, Site
from ._dtype import (
    DTYPE_CLASSES,
    DTYPE_NAMES,
    LIST_PICKLE,
    Layout,
    real_layout,
    symbolic_layout,
)
from ._values import Values, canonical_of

__all__ = ["BIT_GENERATOR", "DTYPE_STATE", "RAW_BYTES", "array_states_before_load"]

_CORE = ("numpy._core", "numpy.core")
_FROMBUFFER = frozenset((f"{c}.numeric", "_frombuffer") for c in _CORE)
_SCALAR = frozenset((f"{c}.multiarray", "scalar") for c in _CORE)
_RECONSTRUCT = frozenset((f"{c}.multiarray", "_reconstruct") for c in _CORE)
_ARRAY_CLASSES = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "matrix"),
        ("numpy", "memmap"),
        ("numpy.rec", "recarray"),
        ("numpy", "recarray"),
        ("numpy.ma", "MaskedArray"),
        ("numpy.ma.core", "MaskedArray"),
    }
)
_MARECONSTRUCT = frozenset({("numpy.ma.core", "_mareconstruct")})
_JOBLIB_WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")
#: numpy's NPY_MAXDIMS (2.x; 32 before) and the largest npy_intp.
_MAX_DIMS = 64
_MAX_INTP = (1 << 63) - 1


def _layout(site: Site, item: object) -> Layout | str:
    return symbolic_layout(site.values, item, site.cache.setdefault("dtype", {}))


# -- numpy-dtype-state ---------------------------------------------------------------------


def _dtype_symbolic(site: Site) -> Problem:
    if site.name in DTYPE_CLASSES:
        return f"numpy writes dtypes as numpy.dtype(...), never through {site.name[1]}"
    found = _layout(site, site.res)
    return found if isinstance(found, str) else None


def _never_called(args: tuple[Any, ...]) -> Problem:
    return "numpy writes dtypes as numpy.dtype(...), never through a DType class"


def _real_dtype(dtype: Any) -> Problem:
    found = real_layout(dtype)
    return found if isinstance(found, str) else None


def _is_dtype(obj: object) -> bool:
    import numpy as np

    return isinstance(obj, np.dtype)


def _has_dtype(obj: object) -> bool:
    import numpy as np

    return isinstance(obj, np.ndarray | np.generic)


def _dtype_of(obj: Any) -> Problem:
    return _real_dtype(obj.dtype)


DTYPE_STATE = Check(
    name="numpy-dtype-state",
    doc="a numpy dtype's state is exactly what numpy writes for its type: flags, item "
    "size, alignment, byte order, fields inside the item and clear of object fields",
    names=DTYPE_NAMES | DTYPE_CLASSES,
    symbolic=_dtype_symbolic,
    arguments=dict.fromkeys(DTYPE_CLASSES, _never_called),
    verify=dict.fromkeys(DTYPE_NAMES, _real_dtype),
    objects=(
        ObjectCheck(("numpy",), _is_dtype, _real_dtype, "numpy dtype"),
        ObjectCheck(("numpy",), _has_dtype, _dtype_of, "numpy array"),
    ),
    what="numpy dtype",
)


# -- numpy-raw-bytes -----------------------------------------------------------------------


def _no_objects(site: Site, dtype: object, what: str) -> Problem:
    found = _layout(site, dtype)
    if isinstance(found, str):
        return f"its dtype: {found}"
    if found.objects:
        return f"{what} would read raw bytes as Python object pointers"
    return None


def _array_state(site: Site, state: object, masked: bool) -> Problem:
    """`ndarray.__setstate__((version, shape, dtype, is_fortran, data))` (or the
    4-item form without a version); a masked array adds mask and fill value."""
    values = site.values
    items = values.items(state)
    if items is None:
        return "its state is not the tuple numpy writes"
    if masked:
        if len(items) != 7:
            return "a masked array's state is not the 7-item tuple numpy writes"
        shape, dtype, data = items[1], items[2], items[4]
    elif len(items) == 5:
        shape, dtype, data = items[1], items[2], items[4]
    elif len(items) == 4:
        shape, dtype, data = items[0], items[1], items[3]
    else:
        return "its state is not the tuple numpy writes"
    if values.is_raw_bytes(data):
        return _no_objects(site, dtype, "the array")
    found = _layout(site, dtype)
    if isinstance(found, str):
        return f"its dtype: {found}"
    if found.objects or found.flags & LIST_PICKLE or values.is_list(data):
        return _list_state(site, shape, found, data)
    return None


def _list_state(site: Site, shape: object, layout: Layout, data: object) -> Problem:
    """An object array's items come from a list: numpy's `array_setstate` checks
    that it is a list (`PyList_Check`, so a subclass too), never its length, and
    `_setlist_pkl` then reads `PyList_GET_ITEM(list, i)` for every item of the
    shape, past the end of a shorter list. numpy writes exactly that many."""
    values = site.values
    dims = values.int_tuple(shape)
    if dims is None:
        return "its shape is not the tuple of int constants numpy writes"
    if len(dims) > _MAX_DIMS:
        return f"its shape has {len(dims)} dimensions; numpy allows {_MAX_DIMS}"
    # As array_setstate: no negative dimension, and shape x item size within an
    # npy_intp (multiplied in order, zero dimensions included); an empty array
    # reads no item.
    nbytes, count = 1, 1
    for d in (*dims, layout.itemsize):
        if d < 0:
            return f"its shape {dims} has a negative dimension"
        nbytes *= d
        if nbytes > _MAX_INTP:
            return f"its shape {dims} is larger than numpy allows"
    for d in dims:
        count *= d
    if not values.is_list(data):
        return "an object array whose data is not the list numpy writes"
    lists = site.res.lists
    held = lists.get(data) if lists else None
    if held is None:
        return (
            "an object array whose list's length the scan cannot know "
            "(written into, or built other than by appending)"
        )
    if held != count:
        return (
            f"an object array of shape {dims} ({count} items) whose list holds {held}: "
            "numpy reads every item of the shape from the list without checking its length"
        )
    return None


def _raw_bytes_symbolic(site: Site) -> Problem:
    name, args, values = site.name, site.args, site.values
    if name in _FROMBUFFER or name in _SCALAR:
        if args is None or not args:
            return "numpy calls it with (buffer, dtype, shape, order) or (dtype, bytes)"
        if not site.called:
            return "numpy calls it; it is not rebuilt"
        dtype = args[1] if name in _FROMBUFFER and len(args) > 1 else args[0]
        return _no_objects(site, dtype, "it")
    if name == _JOBLIB_WRAPPER:
        if site.res.builds != 1:
            return f"a joblib array wrapper given state {site.res.builds} times"
        fields = values.str_dict(site.res.state)
        if fields is None or "dtype" not in fields:
            return "a joblib array wrapper whose state is not a dict with its dtype"
        found = _layout(site, fields["dtype"])
        return f"its dtype: {found}" if isinstance(found, str) else None
    problem = None
    if name in _ARRAY_CLASSES and args is not None and len(args) > 2:
        # ndarray(shape, dtype, buffer, ...): the buffer's bytes become the items.
        if not values.is_none(args[2]):
            problem = _no_objects(site, args[1], "the array")
    if problem is None and site.res.builds:
        if site.res.builds > 1:
            return f"an array given state {site.res.builds} times"
        problem = _array_state(site, site.res.state, masked=name in _MARECONSTRUCT)
    return problem


def _buffer_arguments(args: tuple[Any, ...]) -> Problem:
    """`_frombuffer(buffer, dtype, shape, order[, axis_order])`."""
    return _real_no_objects(args[1]) if len(args) > 1 else None


def _scalar_arguments(args: tuple[Any, ...]) -> Problem:
    """`scalar(dtype[, bytes])`."""
    return _real_no_objects(args[0]) if args else None


def _real_no_objects(dtype: Any) -> Problem:
    import numpy as np

    if not isinstance(dtype, np.dtype):
        return None  # numpy converts it, or refuses: no forged state in either
    found = real_layout(dtype)
    if isinstance(found, str):
        return f"its dtype: {found}"
    return "it would read raw bytes as Python object pointers" if found.objects else None


RAW_BYTES = Check(
    name="numpy-raw-bytes",
    doc="arrays and scalars read from raw bytes (_frombuffer, scalar, ndarray states, "
    "joblib arrays) have a dtype with no object fields, judged from its structure; "
    "an object array's state list holds exactly as many items as its shape",
    names=_FROMBUFFER | _SCALAR | _RECONSTRUCT | _ARRAY_CLASSES | _MARECONSTRUCT
    | frozenset({_JOBLIB_WRAPPER}),
    symbolic=_raw_bytes_symbolic,
    arguments=dict.fromkeys(_FROMBUFFER, _buffer_arguments)
    | dict.fromkeys(_SCALAR, _scalar_arguments),
    stand_in_always=True,
    what="numpy array read from raw bytes",
)  # fmt: skip


def array_states_before_load(data: Any, analysis: StreamAnalysis) -> Problem:
    """The loader's own run of `numpy-raw-bytes` before anything is unpickled,
    whatever the scan's judgment: the C unpickler hands each array its BUILD
    state (`ndarray.__setstate__`) with no call back into Python a check could
    take, and numpy reads an object array's items from that state's list
    without checking its length (`_list_state`)."""
    from ._symbolic import run_symbolic  # imported late: the registry imports this module

    failures = run_symbolic(
        analysis,
        data,
        lambda module, name: (RAW_BYTES,) if (module, name) in RAW_BYTES.names else (),
    )
    return failures[0].problem if failures else None


# -- numpy-bit-generator -------------------------------------------------------------------

_BIT_GENERATORS = {
    ("numpy.random._mt19937", "MT19937"): "MT19937",
    ("numpy.random._pcg64", "PCG64"): "PCG64",
    ("numpy.random._pcg64", "PCG64DXSM"): "PCG64DXSM",
    ("numpy.random._philox", "Philox"): "Philox",
    ("numpy.random._sfc64", "SFC64"): "SFC64",
}
_BIT_GENERATOR_NAMES = frozenset(_BIT_GENERATORS.values())
_PICKLE = "numpy.random._pickle"
_BIT_CTOR = (_PICKLE, "__bit_generator_ctor")
_CTORS = frozenset({(_PICKLE, "__generator_ctor"), (_PICKLE, "__randomstate_ctor"), _BIT_CTOR})
_RECONSTRUCTORS = frozenset(
    {("copyreg", "_reconstructor"), ("copyreg", "__newobj__"), ("copyreg", "__newobj_ex__")}
)


def _builds_bit_generator(values: Values, item: object) -> bool:
    """A bit generator the pickle builds: `__bit_generator_ctor(<class or name>)`,
    an allowlisted bit generator class called or rebuilt."""
    if type(item) is not Res:
        return False
    fn = canonical_of(item.fn)
    if fn == _BIT_CTOR:
        args = values.items(item.args)
        return args is not None and _bit_generator_choice(values, args) is None
    if fn in _BIT_GENERATORS:
        return True
    args = values.items(item.args)
    if fn not in _RECONSTRUCTORS or not args:
        return False
    return canonical_of(args[0]) in _BIT_GENERATORS


def _bit_generator_choice(values: Values, args: tuple[Any, ...]) -> Problem:
    """`__bit_generator_ctor(bit_generator='MT19937')` calls a class it is given."""
    if not args:
        return None
    if len(args) > 1:
        return "__bit_generator_ctor takes one argument"
    choice = args[0]
    if canonical_of(choice) in _BIT_GENERATORS or values.text(choice) in _BIT_GENERATOR_NAMES:
        return None
    return "its argument is not an allowlisted bit generator class or name"


def _bit_generator_symbolic(site: Site) -> Problem:
    if site.name != _BIT_CTOR and not site.called:
        return "numpy calls it; it is not rebuilt"
    args, values = site.args, site.values
    if args is None:
        return "its arguments are not known one by one"
    if site.name == _BIT_CTOR:
        return _bit_generator_choice(values, args) if site.called else None
    if len(args) > 2:
        return "it takes (bit generator, constructor)"
    if args:
        first = args[0]
        if values.text(first) not in _BIT_GENERATOR_NAMES and not _builds_bit_generator(
            values, first
        ):
            return "its bit generator is not an allowlisted bit generator"
    if len(args) == 2 and canonical_of(args[1]) not in {_BIT_CTOR, *_BIT_GENERATORS}:
        # numpy calls its second argument with the first.
        return "its constructor argument is not __bit_generator_ctor or a bit generator class"
    return None


def _real_bit_generators() -> tuple[dict[Any, str], Any]:
    import numpy.random._pickle as rp

    classes: dict[Any, str] = {cls: name for name, cls in rp.BitGenerators.items()}
    return classes, rp.__bit_generator_ctor


def _real_choice(choice: Any) -> bool:
    classes, _ = _real_bit_generators()
    if type(choice) is str:
        return choice in _BIT_GENERATOR_NAMES
    return any(choice is cls for cls in classes)


def _bit_ctor_arguments(args: tuple[Any, ...]) -> Problem:
    if len(args) > 1 or (args and not _real_choice(args[0])):
        return "its argument is not an allowlisted bit generator class or name"
    return None


def _generator_arguments(args: tuple[Any, ...]) -> Problem:
    classes, bit_ctor = _real_bit_generators()
    if len(args) > 2:
        return "it takes (bit generator, constructor)"
    if args and not (type(args[0]) in classes or _real_choice(args[0])):
        return "its bit generator is not an allowlisted bit generator"
    ctor = args[1] if len(args) == 2 else None
    if ctor is not None:
        from ._real import CheckedConstructor  # imported late: _real imports this module

        if type(ctor) is CheckedConstructor:
            # numpy < 1.25 pickled (name, __bit_generator_ctor); the loader hands
            # that global out as its checking stand-in, which numpy then calls.
            ctor = ctor.wrapped
    if ctor is not None and not (ctor is bit_ctor or any(ctor is c for c in classes)):
        return "its constructor argument is not __bit_generator_ctor or a bit generator class"
    return None


BIT_GENERATOR = Check(
    name="numpy-bit-generator",
    doc="numpy.random's pickle constructors get an allowlisted bit generator (or its "
    "name), and only __bit_generator_ctor or a bit generator class as the constructor "
    "they call",
    names=_CTORS,
    symbolic=_bit_generator_symbolic,
    arguments={
        _BIT_CTOR: _bit_ctor_arguments,
        (_PICKLE, "__generator_ctor"): _generator_arguments,
        (_PICKLE, "__randomstate_ctor"): _generator_arguments,
    },
    stand_in_always=True,
    what="numpy.random constructor call",
)
