"""scipy: sparse matrices and B-splines, whose compiled code trusts their arrays.

sparsetools kernels index with `indices`/`indptr`/`coords` unchecked; the
B-spline evaluator reads knots and coefficients by the degree `k` unchecked.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._arrays import array_shape, is_joblib_array
from ._base import Check, ObjectCheck, Problem, Site

__all__ = ["BSPLINE", "SPARSE"]

_FORMATS = ("bsr", "coo", "csc", "csr", "dia", "dok", "lil")
_SPELLINGS = frozenset(
    spelling
    for fmt in _FORMATS
    for spelling in (
        (f"scipy.sparse._{fmt}", f"{fmt}_matrix"),
        (f"scipy.sparse._{fmt}", f"{fmt}_array"),
        (f"scipy.sparse.{fmt}", f"{fmt}_matrix"),  # scipy < 1.8
        ("scipy.sparse._arrays", f"{fmt}_array"),  # scipy 1.8-1.10
    )
)
"""Where each release pickles the classes: the old modules' states are the attribute
dicts scipy still reads (coo's `row`/`col` become `coords` in its `__setstate__`),
and the loaded object is what the check runs on, whatever spelling built it."""


def _sparse(matrix: Any) -> Problem:
    """scipy's own full format check (`__setstate__` checks nothing)."""
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


def _is_sparse(obj: object) -> bool:
    return any(c.__module__.startswith("scipy.sparse") for c in type(obj).__mro__[:-1]) and (
        hasattr(obj, "check_format") or hasattr(obj, "_check")
    )


SPARSE = Check(
    name="scipy-sparse-format",
    doc="scipy.sparse matrices and arrays pass scipy's own full format check "
    "(indices, index pointers and coordinates within the shape)",
    names=_SPELLINGS,
    objects=(ObjectCheck(("scipy.sparse",), _is_sparse, _sparse, "scipy.sparse matrix or array"),),
    what="scipy.sparse matrix or array",
)


# -- BSpline -------------------------------------------------------------------------------

_BSPLINE = ("scipy.interpolate._bsplines", "BSpline")


def _spline_rules(k: object, n_knots: int, n_coefficients: int | None) -> Problem:
    """What BSpline.__init__ checks of degree, knots and coefficients (its state is not
    checked, and the evaluator reads t and c by k)."""
    if type(k) is not int or k < 0:
        return f"degree {k!r} is not a non-negative int"
    if n_knots < 2 * k + 2:
        return f"{n_knots} knots for degree {k} (at least {2 * k + 2})"
    if n_coefficients is not None and n_coefficients < n_knots - k - 1:
        return f"{n_coefficients} coefficients for {n_knots} knots of degree {k}"
    return None


def _spline_symbolic(site: Site) -> Problem:
    values = site.values
    if site.called:
        return None  # BSpline(t, c, k) runs __init__, which checks them
    if site.res.builds == 0:
        return "a BSpline rebuilt without its state"
    if site.res.builds > 1:
        return f"a BSpline given state {site.res.builds} times"
    state = values.str_dict(site.res.state)
    if state is None:
        return "its state is not a dict the scan could read"
    knots = state.get("_t", state.get("t"))
    coefficients = state.get("_c", state.get("c"))
    if "k" not in state or knots is None or coefficients is None:
        return "its state lacks t, c or k"
    t_shape, c_shape = array_shape(values, knots), array_shape(values, coefficients)
    if t_shape is None or c_shape is None:
        return (
            None
            if is_joblib_array(knots) or is_joblib_array(coefficients)
            else ("its knots or coefficients are not arrays the scan could read")
        )
    if len(t_shape) != 1 or not c_shape:
        return f"knots of shape {t_shape}, coefficients of shape {c_shape}"
    return _spline_rules(values.int_value(state["k"]), t_shape[0], c_shape[0])


def _is_spline(obj: object) -> bool:
    return isinstance(obj, importlib.import_module("scipy.interpolate").BSpline)


def _real_spline(spline: Any) -> Problem:
    import numpy as np

    state = vars(spline)
    t, c = state.get("_t", state.get("t")), state.get("_c", state.get("c"))
    if not isinstance(t, np.ndarray) or not isinstance(c, np.ndarray) or t.ndim != 1 or not c.ndim:
        return "its knots are not a 1-D array, or its coefficients not an array"
    k = state.get("k")
    problem = _spline_rules(int(k) if isinstance(k, int | np.integer) else k, len(t), len(c))
    if problem is not None:
        return problem
    if t.dtype.kind != "f" or np.isnan(t).any() or (np.diff(t) < 0).any():
        return "its knots are not non-decreasing floats"
    return None


BSPLINE = Check(
    name="scipy-bspline",
    doc="a scipy BSpline rebuilt from its state has what BSpline.__init__ checks: a "
    "non-negative int degree k, at least 2k+2 non-decreasing knots, at least "
    "len(t)-k-1 coefficients",
    names=frozenset({_BSPLINE}),
    symbolic=_spline_symbolic,
    objects=(ObjectCheck(("scipy.interpolate",), _is_spline, _real_spline, "scipy BSpline"),),
    what="scipy BSpline",
)
