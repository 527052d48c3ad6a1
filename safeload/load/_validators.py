"""State checks for allowlisted types whose native code trusts their content.

Unpickling an allowed class is safe only if what it is built from is sane:
scikit-learn's Cython tree code follows child indices and reads feature
columns without bounds checks, so a `Tree` whose nodes point outside the
arrays crashes the process on `predict` (or loops forever on a cycle), and
its constructor reads `n_classes[k]` for every output. These checks run in
the guarded loader:

- on constructor arguments, before the native constructor sees them
  (`find_class` hands out a checking stand-in for the constructor);
- on every loaded object of a checked type, after the load and before the
  object is returned (found by following references from the result).

SECURITY.md lists the types checked here and the others considered.
"""

from __future__ import annotations

import gc
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import UnsafeFileError

__all__ = ["CONSTRUCTOR_CHECKS", "OBJECT_CHECKS", "Checked", "check_loaded"]

_MAX_DIM = 1 << 31
"""Feature and class counts above this are no real model (and overflow C ints)."""
_MAX_OUTPUTS = 1 << 16

Problem = str | None


def _np() -> Any:
    import numpy

    return numpy


def _is_int(value: object) -> bool:
    np = _np()
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


# -- scikit-learn Tree ----------------------------------------------------------------


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


def _tree_nodes(left: Any, right: Any, feature: Any, n_features: int) -> Problem:
    """Leaves have no children; an inner node's children come after it (no cycles) and
    inside the array, and its feature is a column of the input."""
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
    problem = _tree_nodes(tree.children_left, tree.children_right, tree.feature, tree.n_features)
    if problem is not None:
        return problem
    if len(tree.children_left) != n:
        return f"node_count {n} does not match the node array"
    if tree.value.shape != (n, tree.n_outputs, tree.max_n_classes):
        return f"value array of shape {tree.value.shape} for {n} nodes"
    return None


# -- scikit-learn HistGradientBoosting ------------------------------------------------


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


# -- scipy.sparse ----------------------------------------------------------------------


def _sparse(matrix: Any) -> Problem:
    """scipy's own full format check: its C++ kernels index without bounds checks."""
    try:
        check = getattr(matrix, "check_format", None)
        if check is not None:
            check(full_check=True)
        elif hasattr(matrix, "_check"):
            matrix._check()
        else:
            return None
    except Exception as exc:  # scipy raises ValueError/TypeError/IndexError alike
        return f"invalid {type(matrix).__name__}: {exc}"
    return None


# -- the tables -------------------------------------------------------------------------


@dataclass(frozen=True)
class Checked:
    """A type whose loaded objects are checked."""

    modules: tuple[str, ...]
    """The check runs when the pickle imported anything from these modules."""
    applies: Callable[[object], bool]
    check: Callable[[Any], Problem]
    what: str


def _type_named(module: str, name: str) -> Callable[[object], bool]:
    def applies(obj: object) -> bool:
        cls = type(obj)
        return any(c.__module__ == module and c.__qualname__ == name for c in cls.__mro__)

    return applies


def _is_sparse(obj: object) -> bool:
    return any(c.__module__.startswith("scipy.sparse") for c in type(obj).__mro__[:-1]) and (
        hasattr(obj, "check_format") or hasattr(obj, "_check")
    )


OBJECT_CHECKS: tuple[Checked, ...] = (
    Checked(("sklearn.tree",), _type_named("sklearn.tree._tree", "Tree"), _tree,
            "scikit-learn Tree"),
    Checked(("sklearn.ensemble._hist_gradient_boosting",),
            _type_named("sklearn.ensemble._hist_gradient_boosting.predictor", "TreePredictor"),
            _predictor, "HistGradientBoosting TreePredictor"),
    Checked(("sklearn.ensemble._hist_gradient_boosting",),
            _type_named("sklearn.ensemble._hist_gradient_boosting.gradient_boosting",
                        "BaseHistGradientBoosting"),
            _hist_gradient_boosting, "HistGradientBoosting model"),
    Checked(("scipy.sparse",), _is_sparse, _sparse, "scipy.sparse matrix or array"),
)  # fmt: skip

CONSTRUCTOR_CHECKS: dict[tuple[str, str], Callable[[tuple[Any, ...]], Problem]] = {
    ("sklearn.tree._tree", "Tree"): _tree_args,
}
"""Constructors whose arguments reach native code: checked before the call."""


def _refuse(location: str, what: str, problem: str) -> UnsafeFileError:
    return UnsafeFileError(
        f"{location}: refused to load: a {what} whose state its native code would trust "
        f"is invalid ({problem}); a genuine model never has this. Do not load the file; "
        "re-create it from its source.",
        path=location,
    )


class CheckedConstructor:
    """What `find_class` hands out for a constructor in `CONSTRUCTOR_CHECKS`."""

    __slots__ = ("_check", "_location", "_real")

    def __init__(self, real: Any, check: Callable[[tuple[Any, ...]], Problem], location: str):
        self._real = real
        self._check = check
        self._location = location

    def __call__(self, *args: Any) -> Any:
        problem = self._check(args)
        if problem is not None:
            raise _refuse(self._location, f"{self._real.__qualname__}() call", problem)
        return self._real(*args)

    def __repr__(self) -> str:
        return f"<checked constructor {self._real!r}>"


def checked_constructor(module: str, qualname: str, real: Any, location: str) -> Any:
    """The object `find_class` returns for an allowed global: a checking stand-in for a
    constructor whose arguments native code trusts, else the global itself."""
    check = CONSTRUCTOR_CHECKS.get((module, qualname))
    return real if check is None else CheckedConstructor(real, check, location)


_ATOMS = (int, float, complex, str, bytes, bool, type(None))
# References from these lead out of the loaded data into code and modules
# (a function's globals reach the whole interpreter), never to loaded state.
_CODE = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.CodeType,
    types.FrameType,
)
_SKIP = (*_ATOMS, *_CODE)


def check_loaded(obj: object, imported: Iterable[tuple[str, str]], location: str) -> None:
    """Check every object reachable from `obj` of a type the pickle may have built."""
    modules = {m for m, _ in imported}
    active = [
        c
        for c in OBJECT_CHECKS
        if any(m == p or m.startswith(p + ".") for m in modules for p in c.modules)
    ]
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
                    raise _refuse(location, c.what, problem)
        stack.extend(gc.get_referents(item))
