"""Giving back the real globals in place of the checking stand-ins a load handed out.

`find_class` hands out a checking stand-in (`safeload._checks.CheckedConstructor`)
for some globals, so that every call of them while the pickle loads, by an
opcode or by code that received the global, checks its arguments first. A
pickle may also keep such a global as data (in a tuple, a list, an object's
state): `pickle.loads` returns the global itself there, and so must the
guarded load. Once the load is over no opcode and no code of the pickle runs
any more, so the stand-ins the result still holds are swapped for their
globals: lists, dicts, sets, instance dicts, slots and object arrays in
place, tuples and frozensets rebuilt (every reference to one tuple gets the
same new tuple). A stand-in held where it cannot be swapped (inside an object
whose references are not attributes or items, such as a functools.partial)
refuses the load rather than return something `pickle.loads` does not.
"""

from __future__ import annotations

import gc
import sys
import types
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from .._checks._real import CODE_TYPES
from ..errors import UnsupportedFormatError

__all__ = ["held_elsewhere", "swap_stand_ins"]

_ATOMS = (int, float, complex, str, bytes, bytearray, bool, type(None))
_SKIP = (*_ATOMS, *CODE_TYPES)  # the object checks' walk stops at the same code types
_IMMUTABLE = (tuple, frozenset)


def held_elsewhere(pairs: Iterable[tuple[object, object]]) -> bool:
    """True when anything but its (stand-in, global) pair holds a stand-in of `pairs`.

    CPython's reference counts: each stand-in is compared with a fresh object
    held the same way (by one tuple, then the loop variable), so nothing
    depends on the interpreter's own bookkeeping. False means the pickle kept
    no stand-in anywhere: each was consumed by the call it was loaded for.
    """
    probe = (object(), None)
    baseline = None
    for held, _ in (probe, *pairs):
        count = sys.getrefcount(held)
        if baseline is None:
            baseline = count
        elif count != baseline:
            return True
    return False


def _is_object_array(obj: object) -> bool:
    if not type(obj).__module__.startswith("numpy"):
        return False
    dtype = getattr(obj, "dtype", None)
    return getattr(dtype, "kind", None) == "O" and getattr(dtype, "fields", None) is None


def _slots(obj: object) -> list[Any]:
    """The member descriptors of `obj`'s `__slots__`, along its type's MRO."""
    found = []
    for cls in type(obj).__mro__:
        names = cls.__dict__.get("__slots__", ())
        for name in (names,) if isinstance(names, str) else names:
            desc = cls.__dict__.get(name)
            if isinstance(desc, types.MemberDescriptorType):
                found.append(desc)
    return found


def _instance_dict(obj: object) -> dict[str, Any] | None:
    try:
        # object.__getattribute__: no __getattr__ of the object's class runs.
        found = object.__getattribute__(obj, "__dict__")
    except AttributeError:
        return None
    return found if type(found) is dict else None


def _children(obj: Any) -> list[Any]:
    kind = type(obj)
    if kind in (list, tuple, set, frozenset):
        return list(obj)
    if kind in (dict, OrderedDict):
        return [*obj.keys(), *obj.values()]
    if _is_object_array(obj):
        return list(obj.flat)
    _instance_dict(obj)  # made real, so that gc lists it rather than its values
    return [r for r in gc.get_referents(obj) if r is not kind]


def swap_stand_ins(root: Any, swaps: dict[int, Any], location: str) -> Any:
    """`root` with every stand-in it reaches (`swaps`: id of stand-in -> global) swapped."""
    nodes: dict[int, Any] = {}
    order: list[Any] = []
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in swaps or isinstance(obj, _SKIP) or id(obj) in nodes:
            continue
        nodes[id(obj)] = obj
        order.append(obj)
        stack.extend(_children(obj))
    new = _rebuilt_immutables(order, swaps)

    def given(x: Any) -> Any:
        return swaps.get(id(x), new.get(id(x), x))

    for obj in order:
        _patch(obj, given, location)
    return given(root)


def _rebuilt_immutables(order: list[Any], swaps: dict[int, Any]) -> dict[int, Any]:
    """A new tuple or frozenset for each one that reaches a stand-in through others.

    Tuples and frozensets cannot hold themselves but through a mutable object,
    which keeps its identity: among themselves they are acyclic, so children
    are rebuilt first (an explicit post-order: no recursion limit).
    """
    new: dict[int, Any] = {}
    done: set[int] = set()
    for start in order:
        if type(start) not in _IMMUTABLE or id(start) in done:
            continue
        stack: list[tuple[Any, bool]] = [(start, False)]
        while stack:
            node, expanded = stack.pop()
            if id(node) in done:
                continue
            if not expanded:
                stack.append((node, True))
                stack.extend((c, False) for c in node if type(c) in _IMMUTABLE)
                continue
            done.add(id(node))
            items = [swaps.get(id(c), new.get(id(c), c)) for c in node]
            if any(a is not b for a, b in zip(items, node, strict=True)):
                new[id(node)] = type(node)(items)
    return new


def _patch(obj: Any, given: Callable[[Any], Any], location: str) -> None:
    kind = type(obj)
    if kind in _IMMUTABLE:
        return
    if kind is list:
        for i, x in enumerate(obj):
            if given(x) is not x:
                obj[i] = given(x)
    elif kind in (dict, OrderedDict):
        if any(given(k) is not k for k in obj):
            items = [(given(k), given(v)) for k, v in obj.items()]
            obj.clear()
            obj.update(items)
        else:
            for k, v in obj.items():
                if given(v) is not v:
                    obj[k] = given(v)
    elif kind is set:
        for x in list(obj):
            if given(x) is not x:
                obj.discard(x)
                obj.add(given(x))
    elif _is_object_array(obj):
        for i, x in enumerate(obj.flat):
            if given(x) is not x:
                if not obj.flags.writeable:
                    raise _held(location, obj)
                obj.flat[i] = given(x)
    else:
        attrs = _instance_dict(obj)
        handled: list[Any] = [attrs, kind]
        if isinstance(obj, dict) and kind.__setitem__ is dict.__setitem__:
            # A dict subclass that stores items as dict does (defaultdict, a Bunch):
            # its values are swapped as a dict's; a key that needs it is not.
            for k, v in list(dict.items(obj)):
                handled += (k, v)
                if given(k) is not k:
                    raise _held(location, obj)
                if given(v) is not v:
                    dict.__setitem__(obj, k, given(v))
        for desc in _slots(obj):
            try:
                value = desc.__get__(obj, kind)
            except AttributeError:
                continue
            handled.append(value)
            if given(value) is not value:
                desc.__set__(obj, given(value))
        seen = {id(x) for x in handled}
        for ref in gc.get_referents(obj):
            if id(ref) not in seen and given(ref) is not ref:
                raise _held(location, obj)


def _held(location: str, holder: object) -> UnsupportedFormatError:
    return UnsupportedFormatError(
        f"{location}: a global this pickle keeps as data (its loader hands out a checking "
        f"stand-in while loading) is held inside a {type(holder).__qualname__} object, where "
        "the guarded loader cannot put the global itself back: it does not return what "
        "pickle.loads would not"
    )
