"""The guarded loader's side: checks of real arguments, built objects and loaded objects.

- `find_class` hands out `checked_constructor(...)`: for a global whose check
  reads its arguments or what it builds, a stand-in that checks the real
  arguments before the global sees them, and records what it returns for a
  check once the load is over (BUILD states are applied by then);
- after the load, `LoadChecks.finish` verifies those objects, then every
  loaded object of the types some check names (found by following references
  from the result).

A stand-in is loaded in place of its global wherever the pickle puts it, so
it is handed out only where the walk shows every reference to the global is
called (`LoadChecks` knows the walks), or for names no genuine pickle uses
otherwise (`Check.stand_in_always`).
"""

from __future__ import annotations

import gc
import types
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from .._machine.walker import GRef, StreamAnalysis
from .._names import Use
from ..errors import UnsafeFileError
from ._base import Check, ObjectCheck, Problem
from ._numpy import array_states_before_load
from ._prebuild import dtype_states_before_load
from ._registry import CHECKS, checks_for

__all__ = ["CheckedConstructor", "LoadChecks", "check_loaded", "checked_constructor", "load_checks"]

_RESULT_USES = frozenset({Use.CALLED, Use.STATE, Use.MUTATED_INSTANCE})


def refusal(location: str, what: str, problem: str) -> UnsafeFileError:
    """The error for an object a check refuses."""
    return UnsafeFileError(
        f"{location}: refused to load: a {what} whose state its native code would trust "
        f"is invalid ({problem}); a genuine model never has this. Do not load the file; "
        "re-create it from its source.",
        path=location,
    )


@dataclass
class LoadChecks:
    """The checks of one guarded load: which globals may be stand-ins, what they built."""

    location: str
    call_only: frozenset[tuple[str, str]] = frozenset()
    built: list[tuple[Callable[[Any], Problem], Any, str]] = field(default_factory=list)
    real_handed: set[str] = field(default_factory=set)
    """Checks with a `verify` side whose global was handed out as itself."""

    @classmethod
    def for_walks(cls, analyses: Iterable[StreamAnalysis], location: str) -> LoadChecks:
        """Knowing the walks: a global all of whose references are calls may be a stand-in."""
        seen: dict[tuple[str, str], bool] = {}
        for analysis in analyses:
            for g in analysis.globals:
                pair = (g.module, g.name)
                seen[pair] = seen.get(pair, True) and _only_called(g)
        return cls(location, frozenset(p for p, ok in seen.items() if ok))

    @classmethod
    def for_readings(
        cls, readings: Iterable[tuple[Any, StreamAnalysis]], location: str
    ) -> LoadChecks:
        """`for_walks` of each (buffer, walk) reading, once the dtypes every pickle
        builds were built on their own and passed (`dtype_states_before_load`): the
        C unpickler hands a dtype to arrays and scalars before any later check."""
        pairs = list(readings)
        for data, analysis in pairs:
            for walk in analysis.pickles:
                problem = dtype_states_before_load(data, walk)
                if problem is not None:
                    raise refusal(location, "numpy dtype", problem)
            problem = array_states_before_load(data, analysis)
            if problem is not None:
                raise refusal(location, "numpy array", problem)
        return cls.for_walks((analysis for _, analysis in pairs), location)

    def finish(self, obj: object, imported: Iterable[tuple[str, str]]) -> None:
        """Verify what the stand-ins built, then every loaded object checks name."""
        for verify, built, what in self.built:
            problem = verify(built)
            if problem is not None:
                raise refusal(self.location, what, problem)
        check_loaded(obj, imported, self.location, fallback=self.real_handed)


def _only_called(g: GRef) -> bool:
    return (
        g.resolved
        and bool(g.calls)
        and g.refs == len(g.calls)
        and all(c.use == Use.CALLED for c in g.calls)
        and set(g.uses) <= _RESULT_USES
    )


_current: ContextVar[LoadChecks | None] = ContextVar("safeload_load_checks", default=None)


@contextmanager
def load_checks(session: LoadChecks) -> Iterator[LoadChecks]:
    """Make `session` the one `checked_constructor` consults in this context."""
    token = _current.set(session)
    try:
        yield session
    finally:
        _current.reset(token)


class CheckedConstructor:
    """What `find_class` hands out for a checked global: checks, calls, records."""

    __slots__ = ("_arguments", "_location", "_real", "_session", "_verify", "_what")

    def __init__(
        self,
        real: Any,
        arguments: list[tuple[Callable[[tuple[Any, ...]], Problem], str]],
        verify: list[tuple[Callable[[Any], Problem], str]],
        location: str,
        session: LoadChecks | None,
    ) -> None:
        self._real = real
        self._arguments = arguments
        self._verify = verify
        self._location = location
        self._session = session

    @property
    def wrapped(self) -> Any:
        """The global this stand-in checks and calls."""
        return self._real

    def __call__(self, *args: Any) -> Any:
        for check, what in self._arguments:
            problem = check(args)
            if problem is not None:
                name = getattr(self._real, "__qualname__", "constructor")
                raise refusal(self._location, f"{what} ({name}() call)", problem)
        obj = self._real(*args)
        if self._session is not None:
            self._session.built.extend((check, obj, what) for check, what in self._verify)
        return obj

    def __repr__(self) -> str:
        return f"<checked constructor {self._real!r}>"


def checked_constructor(module: str, qualname: str, real: Any, location: str) -> Any:
    """The object `find_class` returns for an allowed global: a checking stand-in for
    a global whose real arguments or results a check reads, else the global itself."""
    pair = (module, qualname)
    checks = checks_for(module, qualname)
    arguments = [(c.arguments[pair], c.what) for c in checks if pair in c.arguments]
    verify = [(c.verify[pair], c.what) for c in checks if pair in c.verify]
    if not arguments and not verify:
        return real
    session = _current.get()
    only_called = session is not None and pair in session.call_only
    always = any(c.stand_in_always for c in checks if pair in c.arguments)
    if not only_called and not always:
        if session is not None:
            session.real_handed.update(c.name for c in checks if pair in c.verify)
        return real
    if not only_called:
        verify = []  # without the walk's word, nothing is recorded
        if session is not None:
            session.real_handed.update(c.name for c in checks if pair in c.verify)
    return CheckedConstructor(real, arguments, verify, location, session)


# -- loaded objects ------------------------------------------------------------------------

_ATOMS = (int, float, complex, str, bytes, bool, type(None))
# References from these lead out of the loaded data into code and modules
# (a function's globals reach the whole interpreter), never to loaded state.
CODE_TYPES = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.CodeType,
    types.FrameType,
)
_SKIP = (*_ATOMS, *CODE_TYPES)


def _active(modules: set[str], fallback: Iterable[str]) -> list[ObjectCheck]:
    """Object checks of checks whose modules the pickle imported from; a check with
    a `verify` side only when its global was not a stand-in (`fallback`)."""
    wanted = set(fallback)
    out = []
    for check in CHECKS:
        if check.verify and check.name not in wanted:
            continue
        for obj_check in check.objects:
            if any(m == p or m.startswith(p + ".") for m in modules for p in obj_check.modules):
                out.append(obj_check)
    return out


def check_loaded(
    obj: object,
    imported: Iterable[tuple[str, str]],
    location: str,
    *,
    fallback: Iterable[str] = (),
) -> None:
    """Check every object reachable from `obj` of a type the pickle may have built.

    Object arrays are followed into their items once their dtype has passed.
    """
    active = _active({m for m, _ in imported}, fallback)
    if not active:
        return
    seen: set[int] = set()
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, _SKIP) or id(item) in seen:
            continue
        seen.add(id(item))
        for c in active:
            if c.applies(item):
                problem = c.check(item)
                if problem is not None:
                    raise refusal(location, c.what, problem)
        stack.extend(gc.get_referents(item))
        stack.extend(_object_items(item))


_ATOM_TYPES = frozenset(_ATOMS)


def _object_items(item: Any) -> Iterable[object]:
    """The items of a numpy object array that could hold checked objects (numpy arrays
    are not gc containers). A column of strings or numbers is passed over at C speed."""
    if type(item).__module__.startswith("numpy"):
        dtype = getattr(item, "dtype", None)
        if getattr(dtype, "kind", None) == "O" and hasattr(item, "flat"):
            if set(map(type, item.flat)) <= _ATOM_TYPES:
                return ()
            return [x for x in item.flat if not isinstance(x, _SKIP)]
    return ()


def all_checks() -> tuple[Check, ...]:
    """Every registered check."""
    return CHECKS
