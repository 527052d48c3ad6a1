"""scipy.sparse: sparsetools kernels index with `indices`/`indptr`/`coords` unchecked."""

from __future__ import annotations

from typing import Any

from ._base import Check, ObjectCheck, Problem

__all__ = ["SPARSE"]

_FORMATS = ("bsr", "coo", "csc", "csr", "dia", "dok", "lil")


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
    names=frozenset(
        (f"scipy.sparse._{fmt}", f"{fmt}_{kind}")
        for fmt in _FORMATS
        for kind in ("matrix", "array")
    ),
    objects=(ObjectCheck(("scipy.sparse",), _is_sparse, _sparse, "scipy.sparse matrix or array"),),
    what="scipy.sparse matrix or array",
)
