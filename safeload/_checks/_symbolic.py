"""The scanner's side: run each check on every object its globals build in a walk."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .._machine.walker import GRef, Res, StreamAnalysis
from .._names import Use
from ._base import Check, Site
from ._values import Values, canonical_of

__all__ = ["Failure", "run_symbolic"]

ChecksOf = Callable[[str, str], tuple[Check, ...]]
_COPYREG = "copyreg"


@dataclass(frozen=True)
class Failure:
    """One object that fails a check."""

    check: Check
    site: Site
    problem: str


def run_symbolic(analysis: StreamAnalysis, data: Any, checks_of: ChecksOf) -> list[Failure]:
    """Every failure of every check over the pickles of `analysis` (walked in `data`).

    A checked global is judged on each object it builds: its own calls and
    instantiations, and the objects copyreg's reconstructors build from it
    (`__newobj__(cls, *args)`, `__newobj_ex__`, `_reconstructor(cls, base, state)`,
    where `base.__new__(cls, state)` runs too).
    """
    out: list[Failure] = []
    for walk in analysis.pickles:
        values = Values(data, walk)
        cache: dict[Any, Any] = {}
        for g in walk.globals:
            if not g.resolved or g.folded_away or not g.calls:
                continue
            for site in _sites(values, g, checks_of, cache):
                for check in checks_of(*site.name):
                    if check.symbolic is None:
                        continue
                    problem = check.symbolic(site)
                    if problem is not None:
                        out.append(Failure(check, site, problem))
    return out


def _sites(values: Values, g: GRef, checks_of: ChecksOf, cache: dict[Any, Any]) -> Iterator[Site]:
    pair = (g.module, g.name)
    if checks_of(*pair):
        for res in g.calls:
            how = "called" if res.use == Use.CALLED else "rebuilt"
            yield Site(values, pair, g, res, values.items(res.args), how, cache)
    if g.module != _COPYREG:
        return
    for res in g.calls:
        args = values.items(res.args)
        if not args:
            continue
        cls = args[0]
        if g.name == "__newobj__":
            yield from _site(values, cls, res, args[1:], "copyreg.__newobj__", checks_of, cache)
        elif g.name == "__newobj_ex__":
            inner = values.items(args[1]) if len(args) == 3 else None
            kwargs = values.dict_entries(args[2]) if len(args) == 3 else None
            known = inner if kwargs == [] or (len(args) == 3 and values.is_none(args[2])) else None
            yield from _site(values, cls, res, known, "copyreg.__newobj_ex__", checks_of, cache)
        elif g.name == "_reconstructor":
            yield from _site(values, cls, res, None, "copyreg._reconstructor", checks_of, cache)
            if len(args) == 3:
                # base.__new__(cls, state) (and base.__init__(obj, state)) when base is not object
                yield from _site(
                    values, args[1], res, (args[2],), "copyreg._reconstructor (as its base)",
                    checks_of, cache,
                )  # fmt: skip


def _site(
    values: Values,
    cls: object,
    res: Res,
    args: tuple[Any, ...] | None,
    how: str,
    checks_of: ChecksOf,
    cache: dict[Any, Any],
) -> Iterator[Site]:
    pair = canonical_of(cls)
    if pair is not None and type(cls) is GRef and checks_of(*pair):
        yield Site(values, pair, cls, res, args, how, cache)
