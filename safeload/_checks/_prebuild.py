"""The loader's check of numpy dtype states before anything is unpickled.

The C unpickler applies a dtype's BUILD state (`dtype.__setstate__`) and then
hands that dtype to `ndarray.__setstate__`, `multiarray.scalar` or
`_frombuffer` without calling back into Python in between, so a dtype checked
only after the load has already been used (an int field over an object field
overwrites a pointer numpy later releases). Before the unpickler runs, the
loader therefore builds every dtype a walked pickle builds, for real and on its
own, from the pickle's constants: `numpy.dtype(*args)` then `__setstate__` of
its state (a dtype alone corrupts nothing; only arrays and scalars made with
it read through its flags and fields), and checks what numpy made of it with
`real_layout`, the loader's side of `numpy-dtype-state`. A dtype whose
arguments or state are not constants is refused: numpy writes only constants.

This shares the walk with the scanner, not the scanner's static layout
rules: numpy itself computes the dtype that is judged.
"""

from __future__ import annotations

from typing import Any

from .._machine.walker import GRef, PickleWalk, Res, Tup
from ._base import Problem
from ._dtype import DTYPE_NAMES, real_layout
from ._values import NOT_KNOWN, Values, canonical_of

__all__ = ["dtype_states_before_load", "real_dtypes"]

_CODECS_ENCODE = ("_codecs", "encode")
_VOID_TYPES = {("numpy", "record"): "record", ("numpy", "void"): "void"}
_COPYREG = "copyreg"
_MAX_DEPTH = 32
_BUILDING: Any = object()


class _NotConstant(Exception):
    pass


class _Refused(Exception):
    pass


def dtype_states_before_load(data: Any, walk: PickleWalk) -> Problem:
    """Why a dtype this pickle builds is not one numpy writes, else None."""
    found = real_dtypes(data, walk)
    return found if isinstance(found, str) else None


def real_dtypes(data: Any, walk: PickleWalk) -> list[Any] | str:
    """Every dtype this pickle builds, built for real and checked (in the order of
    their sites), or why one is not a dtype numpy writes."""
    values = Values(data, walk)
    memo: dict[int, Any] = {}
    try:
        return [_build(values, res, args, memo, 0) for res, args in _dtype_sites(values, walk)]
    except _Refused as exc:
        return str(exc)


def _dtype_sites(values: Values, walk: PickleWalk) -> list[tuple[Res, tuple[Any, ...] | None]]:
    """Each object `numpy.dtype` builds: its calls and NEWOBJ (with their arguments),
    and copyreg's reconstructors of it."""
    sites: list[tuple[Res, tuple[Any, ...] | None]] = []
    for g in walk.globals:
        if not g.resolved or g.folded_away:
            continue
        if (g.module, g.name) in DTYPE_NAMES:
            sites.extend((res, values.items(res.args)) for res in g.calls)
        elif g.module == _COPYREG:
            for res in g.calls:
                args = values.items(res.args)
                if not args or canonical_of(args[0]) not in DTYPE_NAMES:
                    if args and len(args) == 3 and canonical_of(args[1]) in DTYPE_NAMES:
                        sites.append((res, (args[2],)))  # dtype.__new__(cls, state)
                    continue
                if g.name == "__newobj__":
                    sites.append((res, args[1:]))
                elif g.name == "_reconstructor":
                    continue  # object.__new__(dtype) raises: nothing is built
                else:
                    sites.append((res, None))
    return sites


def _build(
    values: Values, res: Res, args: tuple[Any, ...] | None, memo: dict[int, Any], depth: int
) -> Any:
    """The real dtype `res` stands for, checked; `_Refused` when it is not one numpy writes."""
    import numpy as np

    key = id(res)
    found = memo.get(key)
    if found is _BUILDING:
        raise _Refused("a dtype that contains itself")
    if found is not None:
        return found
    if depth > _MAX_DEPTH:
        raise _Refused(f"dtypes nested more than {_MAX_DEPTH} deep")
    memo[key] = _BUILDING
    if args is None or not 1 <= len(args) <= 3:
        raise _Refused("numpy.dtype is not given the (type, align, copy) numpy writes")
    try:
        real_args = tuple(_decode(values, a, memo, depth) for a in args)
        if res.builds > 1:
            raise _Refused(f"a dtype given state {res.builds} times")
        state = _state(values, res.state, memo, depth) if res.builds else None
    except _NotConstant as exc:
        raise _Refused(f"a dtype built from {exc}, not constants") from None
    try:
        dtype = np.dtype(*real_args)
        if state is not None:
            dtype.__setstate__(state)
    except Exception as exc:  # numpy refuses the arguments or the state
        raise _Refused(f"numpy refuses the dtype's state: {type(exc).__name__}: {exc}") from None
    layout = real_layout(dtype)
    if isinstance(layout, str):
        raise _Refused(layout)
    memo[key] = dtype
    return dtype


def _state(values: Values, item: object, memo: dict[int, Any], depth: int) -> Any:
    """A dtype's state; metadata (the 9th item) that is not constants is left out
    (it is kept as data: flags and layout never depend on it)."""
    items = values.items(item)
    if items is None or len(items) not in (8, 9):
        return _decode(values, item, memo, depth)
    head = [_decode(values, x, memo, depth) for x in items[:3]]
    names, fields = items[3], _decode(values, items[4], memo, depth)
    if type(names) is Tup and names.items is None and isinstance(fields, dict):
        # More names than the walk keeps: the fields dict holds them, titles aside
        # (a title maps to the same (dtype, offset, title) as its field's name).
        head.append(tuple(k for k, v in fields.items() if not (len(v) == 3 and v[2] == k)))
    else:
        head.append(_decode(values, names, memo, depth))
    head.append(fields)
    head += [_decode(values, x, memo, depth) for x in items[5:8]]
    if len(items) == 8:
        return tuple(head)
    try:
        return (*head, _decode(values, items[8], memo, depth))
    except _NotConstant:
        pass
    # A datetime dtype's 9th item is (metadata, (unit, num, den, events)): numpy
    # needs the unit tuple; numpy < 2.1 wrote an (empty) metadata dict beside it.
    pair = values.items(items[8])
    if pair is not None and len(pair) == 2:
        try:
            return (*head, (None, _decode(values, pair[1], memo, depth)))
        except _NotConstant:
            pass
    return (*head, None)


def _decode(values: Values, item: object, memo: dict[int, Any], depth: int) -> Any:
    """A constant, a tuple or dict of them, bytes, or a dtype built in the pickle."""
    if values.is_dict(item):
        entries = values.dict_entries(item)
        if entries is None:
            raise _NotConstant("a dict the walk did not keep")
        return {
            _decode(values, k, memo, depth): _decode(values, v, memo, depth) for k, v in entries
        }
    if values.is_list(item):
        raise _NotConstant("a list")
    if type(item) is int:
        value = values.const(item)
        if value is NOT_KNOWN:
            raw = values.raw_bytes(item)
            if raw is None:
                raise _NotConstant("a value the scan could not decode")
            return bytes(raw)
        return value
    if type(item) is Tup:
        items = values.items(item)
        if items is None:
            raise _NotConstant("a tuple the walk did not keep")
        return tuple(_decode(values, x, memo, depth) for x in items)
    if type(item) is GRef:
        pair = canonical_of(item)
        if pair in _VOID_TYPES:
            import numpy as np

            return getattr(np, _VOID_TYPES[pair])
        raise _NotConstant(f"the global {item.canonical}")
    if type(item) is Res:
        fn = canonical_of(item.fn)
        if fn in DTYPE_NAMES:
            return _build(values, item, values.items(item.args), memo, depth + 1)
        if fn == _CODECS_ENCODE:
            raw = values.raw_bytes(item)
            if raw is None:
                raise _NotConstant("an encoding the scan could not read")
            return bytes(raw)
        raise _NotConstant(f"a call of {fn[0]}.{fn[1]}" if fn else "a call")
    raise _NotConstant("a value that is not a constant")
