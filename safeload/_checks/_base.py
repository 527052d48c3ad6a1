"""What a check is: a slug, the globals it applies to, and its symbolic and real sides."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._machine.walker import GRef, Res
from ._values import Values

__all__ = ["Check", "ObjectCheck", "Problem", "Site"]

Problem = str | None
"""Why a value fails a check, or None."""


@dataclass(frozen=True)
class Site:
    """One object a checked global builds in a walked pickle."""

    values: Values
    name: tuple[str, str]
    """The checked global: the callable, or the class a reconstructor builds."""
    gref: GRef
    res: Res
    """The object built (its BUILD state is `res.state`, given `res.builds` times)."""
    args: tuple[Any, ...] | None
    """The arguments the global receives (None when not known one by one, or
    when a copyreg reconstructor builds it without passing any)."""
    how: str
    """'called', 'rebuilt' (NEWOBJ) or the copyreg function that built it."""
    cache: dict[Any, Any] = field(default_factory=dict)
    """Shared by every site of one pickle (dtype layouts are worked out once)."""

    @property
    def called(self) -> bool:
        """Its constructor or function runs with `args` (REDUCE, INST, OBJ)."""
        return self.how == "called"


@dataclass(frozen=True)
class ObjectCheck:
    """A check of loaded objects, run by the guarded loader after the load."""

    modules: tuple[str, ...]
    """Run when the pickle imported anything from these modules (or below)."""
    applies: Callable[[object], bool]
    check: Callable[[Any], Problem]
    what: str


@dataclass(frozen=True)
class Check:
    """A named check of the arguments or state of the globals in `names`.

    `symbolic` runs in the scanner on each object the global builds (the
    walker's values: constants decoded, anything else a node); a value that is
    not a constant where the check needs one is a problem. The real side runs
    in the guarded loader: `arguments` on a call's real arguments before the
    global sees them (through a stand-in `find_class` hands out), `verify` on
    each object such a stand-in built, once the load is over, and `objects` on
    every loaded object of the types it names.
    """

    name: str
    doc: str
    names: frozenset[tuple[str, str]]
    symbolic: Callable[[Site], Problem] | None = None
    arguments: Mapping[tuple[str, str], Callable[[tuple[Any, ...]], Problem]] = field(
        default_factory=dict
    )
    """Per global: the real arguments of a call, before the global sees them."""
    verify: Mapping[tuple[str, str], Callable[[Any], Problem]] = field(default_factory=dict)
    """Per global: each object its stand-in returned, once the load is over
    (BUILD states are applied by then)."""
    objects: tuple[ObjectCheck, ...] = ()
    stand_in_always: bool = False
    """Hand out the stand-in even when the walk cannot say the global is only
    called: names no genuine pickle stores as values (a stored stand-in would
    be loaded in place of the global)."""
    what: str = ""
    """How a refusal names what failed."""
