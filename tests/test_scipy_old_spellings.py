"""scipy.sparse classes under the modules older scipy pickled them in.

scipy < 1.8 pickled `scipy.sparse.csr.csr_matrix` (and coo's `row`/`col` where
today's coo keeps `coords`); scipy 1.8-1.10 pickled sparse arrays under
`scipy.sparse._arrays`. The scipy-sparse-format check covers these spellings,
so the packs allow them with it: the loaded object, whatever spelling built it,
passes scipy's own full format check or is refused.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import warnings
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import scipy.sparse as sp

import safeload
from safeload import Verdict
from safeload._checks import APPLIES_TO
from safeload.policy import Policy

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "generations"


def _pickled(obj: Any, state: dict[str, Any]) -> bytes:
    """`obj` pickled as scipy's matrices pickle (they define no `__reduce__` of their
    own: NEWOBJ of the class, then BUILD with the attribute dict), with `state`."""

    class Pickler(pickle.Pickler):
        def reducer_override(self, o: Any) -> Any:
            return (copyreg.__newobj__, (type(o),), state) if o is obj else NotImplemented

    out = io.BytesIO()
    Pickler(out, protocol=2).dump(obj)
    return out.getvalue()


def _old_coo(row: list[int]) -> bytes:
    """A coo_matrix as scipy 1.7 pickles it: module scipy.sparse.coo, `row` and `col`."""
    state = {
        "_shape": (3, 4),
        "maxprint": 50,
        "row": np.array(row, dtype=np.int32),
        "col": np.array([0, 3], dtype=np.int32),
        "data": np.array([1.5, 2.5]),
        "has_canonical_format": False,
    }
    data = _pickled(sp.coo_matrix((3, 4)), state)
    assert data.count(b"scipy.sparse._coo\n") == 1
    return data.replace(b"scipy.sparse._coo\n", b"scipy.sparse.coo\n")


def _old_csr(indices: list[int]) -> bytes:
    state = {
        "_shape": (2, 4),
        "maxprint": 50,
        "indices": np.array(indices, dtype=np.int32),
        "indptr": np.array([0, 1, 2], dtype=np.int32),
        "data": np.array([1.0, 2.0]),
    }
    data = _pickled(sp.csr_matrix((2, 4)), state)
    return data.replace(b"scipy.sparse._csr\n", b"scipy.sparse.csr\n")


def _load(data: bytes, *, scanned: bool = True) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if scanned:
            return safeload.loads(data, require_signature=False)
        # the scan's judgment set aside: the loader's own check is what refuses
        with mock.patch("safeload.load._guarded.judge", lambda located, policy: []):
            return safeload.loads(data, require_signature=False)


def test_the_check_covers_every_spelling_the_packs_allow() -> None:
    covered = APPLIES_TO["scipy-sparse-format"]
    for fmt in ("bsr", "coo", "csc", "csr", "dia", "dok", "lil"):
        for name in (
            f"scipy.sparse.{fmt}.{fmt}_matrix",
            f"scipy.sparse._arrays.{fmt}_array",
            f"scipy.sparse._{fmt}.{fmt}_matrix",
        ):
            assert name in covered, name
            decision = Policy.default().decide(*name.rsplit(".", 1))
            assert decision.allowed, name


def test_an_old_coo_layout_loads_as_scipy_reads_it() -> None:
    data = _old_coo([0, 2])
    plain = pickle.loads(data)
    assert plain.row.tolist() == [0, 2]  # scipy's __setstate__ turns row/col into coords
    assert safeload.scan_bytes(data).verdict is Verdict.SAFE
    loaded = _load(data)
    assert type(loaded) is sp.coo_matrix
    assert np.array_equal(loaded.toarray(), plain.toarray())


def test_an_old_coo_layout_out_of_its_shape_is_refused() -> None:
    data = _old_coo([0, 7])  # row 7 of a 3-row matrix
    plain = pickle.loads(data)  # the plain loader takes it
    with pytest.raises(ValueError):
        plain.check_format(full_check=True) if hasattr(plain, "check_format") else plain._check()
    assert safeload.scan_bytes(data).verdict is Verdict.SAFE  # allowed names, bad state
    for scanned in (True, False):
        with pytest.raises(safeload.UnsafeFileError, match="invalid coo_matrix"):
            _load(data, scanned=scanned)


def test_an_old_csr_spelling_with_an_index_past_its_columns_is_refused() -> None:
    good = _old_csr([1, 3])
    assert b"scipy.sparse.csr\ncsr_matrix" in good
    assert np.array_equal(_load(good).toarray(), pickle.loads(good).toarray())
    bad = _old_csr([1, 10**8])
    with pytest.raises(safeload.UnsafeFileError, match="invalid csr_matrix"):
        _load(bad)


def test_the_2022_and_2023_fixtures_hold_the_old_spellings() -> None:
    old = (FIXTURES / "2022" / "scipy" / "sparse-matrices.pkl").read_bytes()
    arrays = (FIXTURES / "2023" / "scipy" / "sparse-arrays.pkl").read_bytes()
    assert b"scipy.sparse.csr" in old and b"scipy.sparse._arrays" in arrays
    for data in (old, arrays):
        assert safeload.scan_bytes(data).verdict is Verdict.SAFE
    loaded = _load(old)
    assert sorted(loaded) == ["bsr", "coo", "csc", "csr", "dia", "dok", "lil"]
    for fmt, matrix in loaded.items():
        if fmt != "dok":  # scipy < 1.12's dok was a dict subclass: today's cannot use it
            assert np.array_equal(matrix.toarray(), [[0.0, 2.0], [3.0, 0.0]]), fmt
