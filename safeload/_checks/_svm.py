"""scikit-learn's libsvm estimators, whose C model builder trusts their fitted arrays.

`predict` hands `support_`, `support_vectors_`, `_n_support`, `_dual_coef_`,
`_intercept_` and `_probA`/`_probB` to libsvm, which sizes its reads by the
class count and the support-vector count, not by the arrays: a dual
coefficient array of one column is read as one per support vector (out of
bounds), and with a precomputed kernel `support_` indexes the columns of the
kernel matrix unchecked (an index `10**9` crashes the process).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from functools import cache
from typing import Any

from ._arrays import array_shape, is_joblib_array, symbolic_array
from ._base import Check, ObjectCheck, Problem, Site

__all__ = ["LIBSVM"]

_CLASSIFIERS = ("SVC", "NuSVC")
_REGRESSORS = ("SVR", "NuSVR", "OneClassSVM")
_NAMES = frozenset(
    (module, name)
    for module in ("sklearn.svm._classes", "sklearn.svm.classes")
    for name in (*_CLASSIFIERS, *_REGRESSORS)
)


class _Deferred(Exception):
    """A value the scan cannot read here (joblib's arrays, sparse matrices): the loader's."""


def _np() -> Any:
    import numpy

    return numpy


def _rules(
    classifier: bool,
    precomputed: bool,
    support: Sequence[int],
    vectors: tuple[int, ...] | None,
    n_support: Sequence[int],
    dual: tuple[int, ...],
    intercept: tuple[int, ...],
    prob: tuple[tuple[int, ...], tuple[int, ...]],
    fit_shape: tuple[int, ...] | None,
    n_classes: int | None,
    n_features: int | None,
) -> Problem:
    """The arrays agree with each other as libsvm reads them. `vectors` is None when
    the support vectors are not an array the caller could size (checked elsewhere)."""
    n_sv = len(support)
    if fit_shape is None or len(fit_shape) != 2:
        return f"shape_fit_ {fit_shape} is not the training data's shape"
    if n_sv and (min(support) < 0 or max(support) >= fit_shape[0]):
        bad = min(support) if min(support) < 0 else max(support)
        return f"support index {bad} is not one of the {fit_shape[0]} training samples"
    if vectors is not None:
        want = (0, 0) if precomputed else (n_sv, n_features)
        if vectors != want:
            return f"support vectors of shape {vectors} for {n_sv} support vectors ({want})"
    if classifier:
        if n_classes is None or n_classes < 2:
            return f"a classifier of {n_classes} classes"
        pairs = n_classes * (n_classes - 1) // 2
        if len(n_support) != n_classes or sum(n_support) != n_sv or min(n_support) < 0:
            return f"_n_support {list(n_support)} for {n_classes} classes and {n_sv} vectors"
        want_dual, want_intercept = (n_classes - 1, n_sv), (pairs,)
    else:
        pairs = 1
        if len(n_support) != 2:
            return f"_n_support of {len(n_support)} counts, not 2"
        want_dual, want_intercept = (1, n_sv), (1,)
    if dual != want_dual:
        return f"dual coefficients of shape {dual}, not {want_dual}"
    if intercept != want_intercept:
        return f"intercepts of shape {intercept}, not {want_intercept}"
    for name, shape in zip(("_probA", "_probB"), prob, strict=True):
        if shape not in ((0,), (pairs,)):
            return f"{name} of shape {shape} for {pairs} class pairs"
    return None


# -- symbolic ------------------------------------------------------------------------------


def _ints(site: Site, item: object) -> Sequence[int]:
    if is_joblib_array(item):
        raise _Deferred
    array = symbolic_array(site.values, item, site.cache)
    if array is None:
        raise _Deferred
    if isinstance(array, str) or len(array.shape) != 1:
        raise ValueError(f"not a 1-D integer array ({array})")
    column = array.column()
    if column is None:
        raise ValueError("not an integer array")
    return column


def _shape_of(site: Site, item: object) -> tuple[int, ...]:
    shape = array_shape(site.values, item)
    if shape is None:
        raise _Deferred  # a sparse matrix or another form: the loader's
    return shape


def _symbolic(site: Site) -> Problem:
    values = site.values
    if site.res.builds == 0:
        return None  # not fitted: nothing predicts
    if site.res.builds > 1:
        return f"an estimator given state {site.res.builds} times"
    state = values.str_dict(site.res.state)
    if state is None:
        return "its state is not a dict the scan could read"
    if "support_" not in state:
        return None  # not fitted
    classifier = site.name[1] in _CLASSIFIERS
    try:
        support = _ints(site, state["support_"])
        n_support = _ints(site, state.get("_n_support"))
        vectors = array_shape(values, state.get("support_vectors_"))
        dual = _shape_of(site, state.get("_dual_coef_"))
        intercept = _shape_of(site, state.get("_intercept_"))
        prob = (_shape_of(site, state.get("_probA")), _shape_of(site, state.get("_probB")))
        classes = _shape_of(site, state.get("classes_")) if classifier else None
    except _Deferred:
        return None
    except ValueError as exc:
        return str(exc)
    fit_shape = values.int_tuple(state.get("shape_fit_"))
    n_features = values.int_value(state.get("n_features_in_"))
    kernel = values.text(state.get("kernel"))
    return _rules(
        classifier, kernel == "precomputed", support, vectors, n_support, dual, intercept,
        prob, fit_shape, classes[0] if classes else None, n_features,
    )  # fmt: skip


# -- real ----------------------------------------------------------------------------------


@cache
def _base() -> type:
    found: type = importlib.import_module("sklearn.svm._base").BaseLibSVM
    return found


def _applies(obj: object) -> bool:
    return isinstance(obj, _base())


def _real(model: Any) -> Problem:
    np = _np()
    attrs = vars(model)
    if "support_" not in attrs:
        return None  # not fitted
    try:
        support = np.asarray(attrs["support_"])
        n_support = np.asarray(attrs["_n_support"])
        if support.ndim != 1 or support.dtype.kind not in "iu":
            return "support_ is not a 1-D integer array"
        if n_support.ndim != 1 or n_support.dtype.kind not in "iu":
            return "_n_support is not a 1-D integer array"
        vectors = attrs["support_vectors_"]
        classifier = type(model).__name__ in _CLASSIFIERS or hasattr(model, "classes_")
        classes = attrs.get("classes_")
        shapes = [
            tuple(np.shape(attrs[k])) for k in ("_dual_coef_", "_intercept_", "_probA", "_probB")
        ]
    except KeyError as exc:
        return f"a fitted estimator without {exc}"
    fit_shape = attrs.get("shape_fit_")
    return _rules(
        classifier, attrs.get("kernel") == "precomputed", support.tolist(),
        tuple(vectors.shape), n_support.tolist(), shapes[0], shapes[1],
        (shapes[2], shapes[3]), tuple(fit_shape) if fit_shape is not None else None,
        len(classes) if classes is not None else None, attrs.get("n_features_in_"),
    )  # fmt: skip


LIBSVM = Check(
    name="sklearn-libsvm",
    doc="a libsvm estimator's fitted arrays agree as libsvm reads them: support indices "
    "within the training samples, support vectors, class counts, dual coefficients, "
    "intercepts and probability pairs of the shapes the class and vector counts give",
    names=_NAMES,
    symbolic=_symbolic,
    objects=(ObjectCheck(("sklearn.svm",), _applies, _real, "scikit-learn libsvm estimator"),),
    what="scikit-learn libsvm estimator",
)
