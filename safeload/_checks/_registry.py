"""Every check by slug, and the checks of each global."""

from __future__ import annotations

from collections.abc import Mapping

from .._names import canonical
from ._base import Check
from ._neighbors import DISTANCE_METRIC, NEIGHBOR_TREE
from ._numbers import TEXT_NUMBER
from ._numpy import BIT_GENERATOR, DTYPE_STATE, RAW_BYTES
from ._pandas import BLOCK_PLACEMENT, CATEGORICAL_CODES, MASKED_ARRAY, SPARSE_VALUES
from ._scipy import BSPLINE, SPARSE
from ._sklearn import HIST_PREDICTOR, TREE
from ._svm import LIBSVM

__all__ = ["APPLIES_TO", "CHECKS", "check_named", "checks_for"]

CHECKS: tuple[Check, ...] = (
    DTYPE_STATE,
    RAW_BYTES,
    BIT_GENERATOR,
    TREE,
    HIST_PREDICTOR,
    SPARSE,
    TEXT_NUMBER,
    BLOCK_PLACEMENT,
    CATEGORICAL_CODES,
    NEIGHBOR_TREE,
    DISTANCE_METRIC,
    LIBSVM,
    BSPLINE,
    SPARSE_VALUES,
    MASKED_ARRAY,
)

_BY_NAME: dict[str, Check] = {c.name: c for c in CHECKS}
_BY_GLOBAL: dict[tuple[str, str], tuple[Check, ...]] = {}
for _check in CHECKS:
    for _pair in _check.names:
        _BY_GLOBAL[_pair] = (*_BY_GLOBAL.get(_pair, ()), _check)

APPLIES_TO: Mapping[str, frozenset[str]] = {
    c.name: frozenset(canonical(*pair) for pair in c.names) for c in CHECKS
}
"""Check slug -> the globals (`module.qualname` / `module:dotted.name`) it applies to:
what an allow pack entry may name in `check = "<slug>"`."""


def check_named(name: str) -> Check | None:
    """The check with this slug, or None."""
    return _BY_NAME.get(name)


def checks_for(module: str, qualname: str) -> tuple[Check, ...]:
    """The checks that apply to a global (whatever its allow entry names)."""
    return _BY_GLOBAL.get((module, qualname), ())
