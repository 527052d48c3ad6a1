"""scikit-learn: Tree and HistGradientBoosting predictors, whose Cython code trusts its arrays.

`Tree.__cinit__` reads `n_classes[k]` for every output; `predict`/`apply`
follow child indices and read feature columns without bounds checks (a bad
feature crashes the process, a cycle hangs it). The HistGradientBoosting
predictor does the same with its node records and categorical bitsets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._arrays import SymArray, symbolic_array
from ._base import Check, ObjectCheck, Problem, Site

__all__ = ["HIST_PREDICTOR", "TREE"]

_MAX_DIM = 1 << 31
"""Feature and class counts above this are no real model (and overflow C ints)."""
_MAX_OUTPUTS = 1 << 16
_TREE = ("sklearn.tree._tree", "Tree")


def _np() -> Any:
    import numpy

    return numpy


def _is_int(value: object) -> bool:
    np = _np()
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


# -- the rules, on plain sequences (symbolic) and arrays (real) ----------------------------


def _counts(n_features: object, n_outputs: object) -> Problem:
    if type(n_features) is not int or not 0 <= n_features < _MAX_DIM:
        return f"n_features {n_features!r} is not a feature count"
    if type(n_outputs) is not int or not 1 <= n_outputs <= _MAX_OUTPUTS:
        return f"n_outputs {n_outputs!r} is not an output count"
    return None


def _class_counts(counts: Sequence[int], n_outputs: int) -> Problem:
    if len(counts) != n_outputs:
        return "n_classes must be a 1-D integer array with one count per output"
    if any(not 1 <= c < _MAX_DIM for c in counts):
        return "n_classes holds a count out of range"
    return None


def _nodes(
    left: Sequence[int], right: Sequence[int], feature: Sequence[int], n_features: int
) -> Problem:
    """Leaves have no children; an inner node's children come after it (no cycles)
    and inside the array, and its feature is a column of the input."""
    n = len(left)
    if len(right) != n or len(feature) != n:
        return "node arrays of different lengths"
    for i in range(n):
        lo, hi = left[i], right[i]
        if lo == -1 or hi == -1:
            if lo != hi:
                return "a node with exactly one child"
            continue
        if not i < lo < n:
            return f"node {i}'s left child {lo} is not a later node of {n}"
        if not i < hi < n:
            return f"node {i}'s right child {hi} is not a later node of {n}"
        f = feature[i]
        if not 0 <= f < n_features:
            return f"node {i} splits on feature {f} of {n_features}"
    return None


# -- symbolic ------------------------------------------------------------------------------


def _tree_symbolic(site: Site) -> Problem:
    values, args = site.values, site.args
    if site.how.startswith("copyreg._reconstructor"):
        return None  # object.__new__(Tree) raises: nothing is built
    if args is None:
        return "Tree() is built with arguments that are not known one by one"
    if len(args) != 3:
        return f"Tree() takes (n_features, n_classes, n_outputs), got {len(args)} arguments"
    n_features = values.int_value(args[0]) if values.is_int(args[0]) else None
    n_outputs = values.int_value(args[2]) if values.is_int(args[2]) else None
    problem = _counts(
        n_features if n_features is not None else "<not an int constant>",
        n_outputs if n_outputs is not None else "<not an int constant>",
    )
    if problem is not None or n_features is None or n_outputs is None:
        return problem
    classes = symbolic_array(values, args[1], site.cache)
    if isinstance(classes, str):
        return f"n_classes: {classes}"
    max_classes = None
    if isinstance(classes, SymArray):
        counts = classes.column()
        if counts is None or len(classes.shape) != 1:
            return "n_classes must be a 1-D integer array with one count per output"
        problem = _class_counts(counts, n_outputs)
        if problem is not None:
            return problem
        max_classes = max(counts, default=1)
    if site.res.builds == 0:
        return None
    if site.res.builds > 1:
        return f"a Tree given state {site.res.builds} times"
    return _tree_state(site, n_features, n_outputs, max_classes)


def _tree_state(site: Site, n_features: int, n_outputs: int, max_classes: int | None) -> Problem:
    values = site.values
    state = values.str_dict(site.res.state)
    if state is None:
        return "its state is not a dict the scan could read"
    nodes = symbolic_array(values, state.get("nodes"), site.cache)
    if nodes is None:
        return None  # not in this pickle (joblib keeps arrays outside it): checked at load
    if isinstance(nodes, str):
        return f"nodes: {nodes}"
    left, right, feature = (nodes.column(f) for f in ("left_child", "right_child", "feature"))
    if left is None or right is None or feature is None or len(nodes.shape) != 1:
        return "nodes are not a 1-D node record array"
    count = values.int_value(state.get("node_count"))
    if count != len(left):
        return f"node_count {count} does not match the {len(left)} nodes"
    problem = _nodes(left, right, feature, n_features)
    if problem is not None:
        return problem
    value = symbolic_array(values, state.get("values"), site.cache)
    if isinstance(value, str):
        return f"values: {value}"
    if isinstance(value, SymArray) and max_classes is not None:
        if value.shape != (len(left), n_outputs, max_classes):
            return f"value array of shape {value.shape} for {len(left)} nodes"
    return None


# -- real ----------------------------------------------------------------------------------


def _tree_args(args: tuple[Any, ...]) -> Problem:
    np = _np()
    if len(args) != 3:
        return f"Tree() takes (n_features, n_classes, n_outputs), got {len(args)} arguments"
    n_features, n_classes, n_outputs = args
    if not _is_int(n_features) or not 0 <= int(n_features) < _MAX_DIM:
        return f"n_features {n_features!r} is not a feature count"
    if not _is_int(n_outputs) or not 1 <= int(n_outputs) <= _MAX_OUTPUTS:
        return f"n_outputs {n_outputs!r} is not an output count"
    if (
        not isinstance(n_classes, np.ndarray)
        or n_classes.ndim != 1
        or n_classes.dtype.kind not in "iu"
        or len(n_classes) != int(n_outputs)
    ):
        return "n_classes must be a 1-D integer array with one count per output"
    if len(n_classes) and (n_classes.min() < 1 or n_classes.max() >= _MAX_DIM):
        return "n_classes holds a count out of range"
    return None


def _real_nodes(left: Any, right: Any, feature: Any, n_features: int) -> Problem:
    np = _np()
    n = len(left)
    if len(right) != n or len(feature) != n:
        return "node arrays of different lengths"
    index = np.arange(n)
    leaf = left == -1
    if np.any(leaf != (right == -1)):
        return "a node with exactly one child"
    inner = ~leaf
    for name, child in (("left", left), ("right", right)):
        bad = inner & ((child <= index) | (child >= n))
        if np.any(bad):
            at = int(np.argmax(bad))
            return f"node {at}'s {name} child {int(child[at])} is not a later node of {n}"
    bad = inner & ((feature < 0) | (feature >= n_features))
    if np.any(bad):
        at = int(np.argmax(bad))
        return f"node {at} splits on feature {int(feature[at])} of {n_features}"
    return None


def _tree(tree: Any) -> Problem:
    problem = _tree_args((tree.n_features, tree.n_classes, tree.n_outputs))
    if problem is not None:
        return problem
    n = tree.node_count
    problem = _real_nodes(tree.children_left, tree.children_right, tree.feature, tree.n_features)
    if problem is not None:
        return problem
    if len(tree.children_left) != n:
        return f"node_count {n} does not match the node array"
    if tree.value.shape != (n, tree.n_outputs, tree.max_n_classes):
        return f"value array of shape {tree.value.shape} for {n} nodes"
    return None


def _type_named(module: str, name: str) -> Any:
    def applies(obj: object) -> bool:
        return any(c.__module__ == module and c.__qualname__ == name for c in type(obj).__mro__)

    return applies


TREE = Check(
    name="sklearn-tree",
    doc="a scikit-learn Tree's constructor counts and n_classes, and its nodes: leaves "
    "have no children, inner nodes' children come later in the array, features are "
    "columns of the input",
    names=frozenset({_TREE}),
    symbolic=_tree_symbolic,
    arguments={_TREE: _tree_args},
    objects=(ObjectCheck(("sklearn.tree",), _type_named(*_TREE), _tree, "scikit-learn Tree"),),
    stand_in_always=True,
    what="scikit-learn Tree",
)


# -- HistGradientBoosting ------------------------------------------------------------------


def _predictor(predictor: Any, n_features: int | None = None) -> Problem:
    np = _np()
    nodes = predictor.nodes
    fields = ("left", "right", "feature_idx", "is_leaf", "is_categorical", "bitset_idx")
    if not isinstance(nodes, np.ndarray) or nodes.ndim != 1 or nodes.dtype.names is None:
        return "predictor nodes are not a structured node array"
    if any(f not in nodes.dtype.names for f in fields):
        return "predictor nodes lack the fields the prediction code reads"
    n = len(nodes)
    index = np.arange(n)
    inner = ~nodes["is_leaf"].astype(bool)
    for name in ("left", "right"):
        child = nodes[name].astype(np.int64)
        bad = inner & ((child <= index) | (child >= n))
        if np.any(bad):
            at = int(np.argmax(bad))
            return f"predictor node {at}'s {name} child {int(child[at])} is not a later node"
    feature = nodes["feature_idx"].astype(np.int64)
    limit = n_features if n_features is not None else _MAX_DIM
    bad = inner & ((feature < 0) | (feature >= limit))
    if np.any(bad):
        at = int(np.argmax(bad))
        return f"predictor node {at} splits on feature {int(feature[at])}"
    categorical = inner & nodes["is_categorical"].astype(bool)
    if np.any(categorical):
        bitsets = (predictor.binned_left_cat_bitsets, predictor.raw_left_cat_bitsets)
        idx = nodes["bitset_idx"][categorical].astype(np.int64)
        for table in bitsets:
            if not isinstance(table, np.ndarray) or table.ndim != 2 or table.shape[1] != 8:
                return "categorical bitsets are not an (n, 8) array"
            if np.any(idx >= len(table)):
                return "a categorical split points past its bitsets"
    return None


def _hist_gradient_boosting(model: Any) -> Problem:
    n_features = getattr(model, "n_features_in_", None)
    if n_features is None or not _is_int(n_features):
        return None  # not fitted: nothing will predict
    for per_iteration in getattr(model, "_predictors", ()) or ():
        for predictor in per_iteration:
            problem = _predictor(predictor, int(n_features))
            if problem is not None:
                return problem
    return None


_HGB = "sklearn.ensemble._hist_gradient_boosting"
HIST_PREDICTOR = Check(
    name="sklearn-hist-predictor",
    doc="a HistGradientBoosting predictor's children come later and in range, its "
    "features are within the estimator's inputs, its categorical bitset indices within "
    "the bitset tables",
    names=frozenset(
        {
            (f"{_HGB}.predictor", "TreePredictor"),
            (f"{_HGB}.gradient_boosting", "HistGradientBoostingClassifier"),
            (f"{_HGB}.gradient_boosting", "HistGradientBoostingRegressor"),
        }
    ),
    objects=(
        ObjectCheck(
            (_HGB,),
            _type_named(f"{_HGB}.predictor", "TreePredictor"),
            _predictor,
            "HistGradientBoosting TreePredictor",
        ),
        ObjectCheck(
            (_HGB,),
            _type_named(f"{_HGB}.gradient_boosting", "BaseHistGradientBoosting"),
            _hist_gradient_boosting,
            "HistGradientBoosting model",
        ),
    ),
    what="HistGradientBoosting predictor",
)
