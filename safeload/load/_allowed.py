"""`allowed_globals`: extra allowed names for the guarded loads of one scope.

A `contextvars` variable, so each thread and each asyncio task sees only the
names its own `with` block added.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .._names import parse_canonical
from ..errors import PolicyError
from ..policy import Policy, UserConfig

__all__ = ["allowed_globals", "current_allowed", "effective_policy"]

_ALLOWED: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "safeload_allowed_globals", default=()
)


@contextmanager
def allowed_globals(names: Iterable[str]) -> Iterator[None]:
    """Allow `names` (`pkg.Class` or `pkg:Outer.Inner`) in guarded loads inside the block.

    >>> import safeload
    >>> with safeload.allowed_globals(["collections.OrderedDict"]):  # doctest: +SKIP
    ...     model = safeload.load("model.pkl", trust=trust)

    A name that a deny rule covers is refused with `PolicyError`, as for any
    allow entry: deny rules always win.
    """
    if isinstance(names, str):
        raise TypeError("allowed_globals takes a list of names, not one string")
    added = tuple(names)
    from ..scan import default_policy

    _extend(default_policy(), added)  # refuse a bad or denied name here, where the mistake is
    token = _ALLOWED.set(_ALLOWED.get() + added)
    try:
        yield
    finally:
        _ALLOWED.reset(token)


def current_allowed() -> tuple[str, ...]:
    """The names `allowed_globals` blocks add in this context."""
    return _ALLOWED.get()


def _extend(base: Policy, names: tuple[str, ...]) -> Policy:
    pairs = set()
    for name in names:
        try:
            pairs.add(parse_canonical(name))
        except ValueError as exc:
            raise PolicyError(f"allow: {exc}") from None
    # The constructor refuses a pair that a deny rule names.
    return Policy(
        base.rules.values(),
        base.packs,
        base.extra_allow | pairs,
        max_load_cost=base.max_load_cost,
        max_expansion=base.max_expansion,
    )


_cache: dict[tuple[int, tuple[str, ...]], tuple[Policy, Policy]] = {}


_project: dict[tuple[str, int], Policy] = {}


def project_policy() -> Policy:
    """The built-in policy plus the `[tool.safeload]` table of the nearest pyproject.toml
    above the working directory (its `allow` and `rules`), as the CLI reads it."""
    from ..scan import default_policy

    config = UserConfig.find(Path.cwd())
    if config.path is None or not (
        config.allow or config.rules or config.max_load_cost or config.max_expansion
    ):
        return default_policy()
    key = (str(config.path), config.path.stat().st_mtime_ns)
    hit = _project.get(key)
    if hit is None:
        _project.clear()
        hit = _project[key] = Policy.build(config=config)
    return hit


def effective_policy(policy: Policy | None, allow: Iterable[str]) -> Policy:
    """`policy` (default: the built-in one with the project's `[tool.safeload]`) plus
    the `allow` argument and the current `allowed_globals` names."""
    base = policy if policy is not None else project_policy()
    if isinstance(allow, str):
        raise TypeError("allow takes a list of names, not one string")
    extra = (*allow, *current_allowed())
    if not extra:
        return base
    key = (id(base), extra)
    hit = _cache.get(key)
    if hit is not None and hit[0] is base:
        return hit[1]
    built = _extend(base, extra)
    if len(_cache) > 64:
        _cache.clear()
    _cache[key] = (base, built)
    return built
