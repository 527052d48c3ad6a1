"""scikit-learn neighbor trees and distance metrics, whose Cython code trusts their arrays.

`KDTree`/`BallTree.__setstate__` sets the data, the index array, the node
records and bounds and the counts from the state without checking them
against each other; `query`/`query_radius` read `data[idx_array[i]]` for
`idx_start <= i < idx_end` of each node and follow children `2i+1`, `2i+2`
unchecked (an index `10**9`, or a node ending past the data, crashes the
process). `MahalanobisDistance64` reads its matrix as `size x size` where
`size` is its row count (a matrix of fewer columns is read past its end).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from functools import cache
from typing import Any

from .._machine.walker import Res
from ._arrays import array_shape, symbolic_array
from ._base import Check, ObjectCheck, Problem, Site
from ._values import Values, canonical_of

__all__ = ["DISTANCE_METRIC", "NEIGHBOR_TREE"]

_TREE_MODULES = ("sklearn.neighbors._kd_tree", "sklearn.neighbors._ball_tree")
_TREE_CTORS = frozenset((m, "newObj") for m in _TREE_MODULES)
_TREE_CLASSES = frozenset(
    (m, f"{kind}{bits}")
    for m, kind in zip(_TREE_MODULES, ("KDTree", "BallTree"), strict=True)
    for bits in ("", "64", "32")
)
_METRICS = "sklearn.metrics._dist_metrics"
_METRIC_CTOR = (_METRICS, "newObj")
_MAHALANOBIS = frozenset({(_METRICS, "MahalanobisDistance64"), (_METRICS, "MahalanobisDistance")})
_JOBLIB_WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")
_RECONSTRUCT = frozenset(
    {("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct")}
)
_FROMBUFFER = frozenset(
    {("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer")}
)


class _Deferred(Exception):
    """An array joblib keeps after the pickle: the loader checks it."""


def _np() -> Any:
    import numpy

    return numpy


# -- the rules, on plain sequences (symbolic) and arrays (real) ----------------------------


def _tree_rules(
    n_samples: int,
    n_features: int,
    idx: Sequence[int],
    starts: Sequence[int],
    ends: Sequence[int],
    leaves: Sequence[int],
    bounds: tuple[int, ...] | None,
    n_levels: object,
    n_nodes: object,
) -> Problem:
    if len(idx) != n_samples:
        return f"an index array of {len(idx)} for {n_samples} samples"
    if len(idx) and (min(idx) < 0 or max(idx) >= n_samples):
        bad = min(idx) if min(idx) < 0 else max(idx)
        return f"index {bad} is not one of the {n_samples} samples"
    count = len(starts)
    if n_nodes != count or len(ends) != count or len(leaves) != count:
        return f"n_nodes {n_nodes!r} does not match the {count} node records"
    if type(n_levels) is not int or not 0 < n_levels < 64 or count != (1 << n_levels) - 1:
        return f"{count} nodes are not the 2**n_levels - 1 of n_levels {n_levels!r}"
    if bounds is None or len(bounds) != 3 or bounds[1:] != (count, n_features):
        return f"node bounds of shape {bounds} for {count} nodes of {n_features} features"
    for i in range(count):
        if not 0 <= starts[i] <= ends[i] <= n_samples:
            return f"node {i} spans [{starts[i]}, {ends[i]}) of {n_samples} samples"
        if not leaves[i] and 2 * i + 2 >= count:
            return f"node {i} is not a leaf but has no children among {count} nodes"
    return None


# -- symbolic ------------------------------------------------------------------------------


_shape = array_shape


def _columns(
    values: Values, item: object, cache: dict[Any, Any], *names: str | None
) -> list[Sequence[int]] | str:
    if type(item) is Res and canonical_of(item.fn) == _JOBLIB_WRAPPER:
        raise _Deferred
    array = symbolic_array(values, item, cache)
    if array is None or isinstance(array, str):
        return f"an array the scan could not read ({array})" if array else "an unread array"
    if len(array.shape) != 1:
        return f"an array of shape {array.shape}, not 1-D"
    out = []
    for name in names:
        column = array.column(name)
        if column is None:
            return f"no integer {name or 'items'} in the array"
        out.append(column)
    return out


def _tree_symbolic(site: Site) -> Problem:
    values, args = site.values, site.args
    if not site.called or args is None or len(args) != 1:
        return "scikit-learn writes newObj(tree class)"
    if canonical_of(args[0]) not in _TREE_CLASSES:
        return "newObj of a neighbor tree module builds only KDTree or BallTree"
    if site.res.builds != 1:
        return f"a neighbor tree given state {site.res.builds} times"
    state = values.items(site.res.state)
    if state is None or len(state) not in (12, 13):
        return "its state is not the tuple scikit-learn writes"
    try:
        data = _shape(values, state[0])
        if data is None or len(data) != 2:
            return "its data is not a 2-D array the scan could read"
        idx = _columns(values, state[1], site.cache, None)
        nodes = _columns(values, state[2], site.cache, "idx_start", "idx_end", "is_leaf")
    except _Deferred:
        return None  # joblib keeps the arrays after the pickle: checked at load
    if isinstance(idx, str):
        return f"idx_array: {idx}"
    if isinstance(nodes, str):
        return f"node_data: {nodes}"
    starts, ends, leaves = nodes
    problem = _tree_rules(
        data[0], data[1], idx[0], starts, ends, leaves, _shape(values, state[3]),
        values.int_value(state[5]), values.int_value(state[6]),
    )  # fmt: skip
    if problem is None and len(state) == 13 and not values.is_none(state[12]):
        weights = _shape(values, state[12])
        if weights != (data[0],):
            return f"sample weights of shape {weights} for {data[0]} samples"
    return problem


def _metric_symbolic(site: Site) -> Problem:
    values, args = site.values, site.args
    if not site.called or args is None or len(args) != 1:
        return "scikit-learn writes newObj(metric class)"
    if canonical_of(args[0]) not in _MAHALANOBIS or site.res.builds == 0:
        return None  # the other metrics' distance loops never read vec or mat by size
    state = values.items(site.res.state)
    if site.res.builds != 1 or state is None or len(state) != 3:
        return "its state is not the (p, vec, mat) scikit-learn writes"
    shape = _shape(values, state[2])
    if shape is None:
        return "its matrix is not an array the scan could read"
    return _square(shape)


def _square(shape: tuple[int, ...]) -> Problem:
    if len(shape) != 2 or shape[0] != shape[1]:
        return f"a Mahalanobis matrix of shape {shape} is read as square"
    return None


# -- real ----------------------------------------------------------------------------------


@cache
def _classes(kind: str) -> tuple[type, ...]:
    if kind == "tree":
        found = []
        for module, name in _TREE_CLASSES:
            cls = getattr(importlib.import_module(module), name, None)
            if isinstance(cls, type):
                found.append(cls)
        return tuple(found)
    cls = getattr(importlib.import_module(_METRICS), "MahalanobisDistance64", None)
    return (cls,) if isinstance(cls, type) else ()


def _is_tree(obj: object) -> bool:
    return isinstance(obj, _classes("tree"))


def _is_mahalanobis(obj: object) -> bool:
    return isinstance(obj, _classes("mahalanobis"))


def _real_tree(tree: Any) -> Problem:
    np = _np()
    state = tree.__getstate__()
    data, idx, nodes, bounds = state[:4]
    if not all(isinstance(a, np.ndarray) for a in (data, idx, nodes, bounds)) or data.ndim != 2:
        return "its arrays are not the ones scikit-learn writes"
    if idx.ndim != 1 or idx.dtype.kind not in "iu" or nodes.ndim != 1:
        return "its index array or node records are not 1-D"
    names = nodes.dtype.names or ()
    if not {"idx_start", "idx_end", "is_leaf"} <= set(names):
        return "its node records lack idx_start, idx_end or is_leaf"
    problem = _tree_rules(
        data.shape[0], data.shape[1], idx.tolist(), nodes["idx_start"].tolist(),
        nodes["idx_end"].tolist(), nodes["is_leaf"].tolist(), bounds.shape,
        int(state[5]), int(state[6]),
    )  # fmt: skip
    if problem is None and len(state) == 13 and state[12] is not None:
        if np.shape(state[12]) != (data.shape[0],):
            return f"sample weights of shape {np.shape(state[12])} for {data.shape[0]} samples"
    return problem


def _real_mahalanobis(metric: Any) -> Problem:
    return _square(tuple(metric.__getstate__()[2].shape))


NEIGHBOR_TREE = Check(
    name="sklearn-neighbor-tree",
    doc="a KDTree or BallTree's index array holds sample indices, its nodes span samples "
    "within the data and have children where they are not leaves, its counts and node "
    "bounds match its node records",
    names=_TREE_CTORS,
    symbolic=_tree_symbolic,
    objects=(
        ObjectCheck(("sklearn.neighbors",), _is_tree, _real_tree, "scikit-learn neighbor tree"),
    ),
    what="scikit-learn neighbor tree",
)

DISTANCE_METRIC = Check(
    name="sklearn-distance-metric",
    doc="a Mahalanobis distance's matrix is square (its Cython distance reads it as rows x rows)",
    names=frozenset({_METRIC_CTOR}),
    symbolic=_metric_symbolic,
    objects=(
        ObjectCheck(
            ("sklearn.metrics",), _is_mahalanobis, _real_mahalanobis, "Mahalanobis distance"
        ),
    ),
    what="scikit-learn distance metric",
)
