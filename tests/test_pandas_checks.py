"""pandas state its Cython code trusts: block placements and Categorical codes.

Each hostile file is a real pandas pickle whose state was corrupted through
pandas' own internals: it names only allowlisted globals. The proof loads it
with `pickle.loads` in a subprocess and uses it as a user would (a column, the
values): the process dies of a memory fault. The scan refuses it (SL406 naming
the check) and, with the scan set aside, so does the guarded loader's check of
the loaded objects, before anything is returned. Genuine frames and
categoricals of every kind stay safe and load.
"""

from __future__ import annotations

import io
import pickle
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any
from unittest import mock

import joblib
import numpy as np
import pandas as pd
import pytest
from pandas._libs.internals import BlockPlacement
from pandas.core.internals.blocks import new_block
from pandas.core.internals.managers import BlockManager

import safeload
from safeload import Verdict

_USE = """
import pickle, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
obj = pickle.loads(open(sys.argv[1], "rb").read())
print("loaded", flush=True)
if hasattr(obj, "columns"):
    for column in obj.columns:
        obj[column]
np.asarray(obj)
repr(obj)
print("survived", flush=True)
"""


def plain_outcome(tmp_path: Path, data: bytes) -> str:
    """What pickle.loads and a first use do to a process: crash or survive."""
    path = tmp_path / "frame.pkl"
    path.write_bytes(data)
    done = subprocess.run(
        [sys.executable, "-c", _USE, str(path)], capture_output=True, timeout=60, check=False
    )
    if done.returncode in (-signal.SIGSEGV, -signal.SIGBUS):
        return "crash"
    return "survived" if b"survived" in done.stdout else f"exit {done.returncode}"


def scan_failure(data: bytes) -> str:
    """The scan's one SL406 finding (the only rule it reports)."""
    report = safeload.scan_bytes(data)
    assert report.verdict is Verdict.DANGEROUS, report.findings
    assert {f.rule for f in report.findings} == {"SL406"}, report.findings
    return " ".join(f.message for f in report.findings)


def forced_refusal(data: bytes) -> str:
    """The guarded loader's refusal with the scan's judgment set aside."""
    with mock.patch("safeload.load._guarded.judge", lambda located, policy: []):
        with pytest.raises(safeload.UnsafeFileError) as info:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", safeload.UnsignedLoadWarning)
                safeload.loads(data, require_signature=False)
    return str(info.value)


def load(data: bytes, *, forced: bool = False) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", safeload.UnsignedLoadWarning)
        if not forced:
            return safeload.loads(data, require_signature=False)
        with mock.patch("safeload.load._guarded.judge", lambda located, policy: []):
            return safeload.loads(data, require_signature=False)


def joblib_bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    joblib.dump(obj, buf)
    return buf.getvalue()


# -- block placements -------------------------------------------------------------------------


def frame(placement: Any, rows: int = 3, extra_blocks: int = 0) -> pd.DataFrame:
    """A frame whose one int block is placed at `placement` (an index array or a
    slice); `extra_blocks` genuine one-column blocks follow it."""
    values = np.arange(2 * rows, dtype=np.int64).reshape(2, rows)
    blocks = [new_block(values, placement=BlockPlacement(placement), ndim=2)]
    for i in range(extra_blocks):
        column = pd.Categorical(["a", "b", "a"][:rows])
        blocks.append(new_block(column, placement=BlockPlacement(slice(2 + i, 3 + i)), ndim=2))
    items = pd.Index([f"c{i}" for i in range(2 + extra_blocks)])
    mgr = BlockManager(tuple(blocks), [items, pd.RangeIndex(rows)], verify_integrity=False)
    return pd.DataFrame._from_mgr(mgr, axes=mgr.axes)


_FAR = 10**7
PLACEMENTS = {
    "index-array-past-the-items": np.array([0, _FAR], dtype=np.intp),
    "slice-past-the-items": slice(0, 2 * _FAR, _FAR),
    "negative-index": np.array([-_FAR, 1], dtype=np.intp),
}


@pytest.mark.parametrize("name", sorted(PLACEMENTS))
def test_block_placement_outside_the_frame_crashes_and_is_refused(
    tmp_path: Path, name: str
) -> None:
    data = pickle.dumps(frame(PLACEMENTS[name]))
    assert plain_outcome(tmp_path, data) == "crash"
    assert "check pandas-block-placement failed" in scan_failure(data)
    message = forced_refusal(data)
    assert "pandas BlockManager" in message and "is not an item of 2" in message


def test_block_placed_twice_is_refused() -> None:
    # Not a crash (pandas finds the gap), but no frame pandas writes.
    data = pickle.dumps(frame(np.array([1, 1], dtype=np.intp)))
    assert "item 1 is placed twice" in scan_failure(data)
    assert "do not hold each of the 2 items once" in forced_refusal(data)


def test_a_frame_of_more_blocks_than_the_walk_keeps_is_still_bounded(tmp_path: Path) -> None:
    # 80 blocks: the walk keeps no tuple that long, so the scan bounds every
    # placement by all the items the pickle's blocks place.
    data = pickle.dumps(frame(np.array([0, _FAR], dtype=np.intp), extra_blocks=80))
    assert plain_outcome(tmp_path, data) == "crash"
    assert "reaches past the 82 items" in scan_failure(data)
    assert "is not an item of 82" in forced_refusal(data)


def test_joblib_files_are_checked_by_the_scan_and_the_loader() -> None:
    data = joblib_bytes(frame(np.array([0, _FAR], dtype=np.intp)))
    assert "is not an item of 2" in scan_failure(data)
    assert "is not an item of 2" in forced_refusal(data)


# -- Categorical codes --------------------------------------------------------------------------


def categorical(codes: list[int], categories: list[Any]) -> pd.Categorical:
    cat = pd.Categorical.from_codes([0] * len(codes), categories=categories)
    cat.__setstate__((cat.dtype, np.array(codes, dtype=np.int32)))
    return cat


CODES = {
    "categorical": lambda: categorical([0, 1, 10**8], [1.5, 2.5]),
    "in-a-series": lambda: pd.Series(categorical([0, 1, 10**8], [1.5, 2.5])),
    "in-a-frame": lambda: pd.DataFrame({"c": categorical([0, 1, 10**8], [1.5, 2.5])}),
    "negative-code": lambda: categorical([0, -(10**8), 1], [1.5, 2.5]),
    "index-categories": lambda: categorical([0, 10**8], pd.Index(["a", "b"])),
}


@pytest.mark.parametrize("name", sorted(CODES))
def test_categorical_codes_outside_the_categories_crash_and_are_refused(
    tmp_path: Path, name: str
) -> None:
    data = pickle.dumps(CODES[name]())
    if name != "index-categories":  # object categories: pandas' take raises instead
        assert plain_outcome(tmp_path, data) == "crash"
    assert "check pandas-categorical-codes failed" in scan_failure(data)
    message = forced_refusal(data)
    assert "pandas Categorical" in message and "categor" in message


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_categorical_codes_are_read_at_every_protocol(protocol: int) -> None:
    data = pickle.dumps(categorical([0, 1, 10**8], [1.5, 2.5]), protocol=protocol)
    assert "code 100000000 is not one of the 2 categories" in scan_failure(data)


def test_joblib_keeps_codes_after_the_pickle_and_the_loader_checks_them() -> None:
    data = joblib_bytes(pd.DataFrame({"c": categorical([0, 1, 10**8], [1.5, 2.5])}))
    assert safeload.scan_bytes(data).verdict is Verdict.SAFE
    with pytest.raises(safeload.UnsafeFileError, match="code 100000000 is not one of"):
        load(data)


# -- genuine pandas objects ---------------------------------------------------------------------


def genuine() -> dict[str, object]:
    n = 40
    rng = np.random.default_rng(0)
    wide = {f"c{i}": pd.Categorical(["a", "b"] * 5) for i in range(80)}
    return {
        "mixed": pd.DataFrame(
            {
                "a": np.arange(n),
                "b": rng.random(n),
                "c": ["x"] * n,
                "e": np.arange(n),
                "d": pd.Categorical(rng.choice(["p", "q", "r"], n)),
            }
        ),
        "cut": pd.DataFrame({"v": rng.random(n), "bin": pd.cut(rng.random(n), 4)}),
        "qcut": pd.qcut(rng.random(n), 3),
        "ints": pd.Categorical(rng.integers(0, 5, n)),
        "floats": pd.Categorical(rng.random(5).repeat(4)),
        "missing": pd.Categorical(["a", None, "b"] * 5),
        "empty": pd.Categorical([]),
        "no-categories": pd.Categorical([None, None], categories=[]),
        "many-categories": pd.Categorical([f"k{i}" for i in range(40_000)]),
        "datetimes": pd.Categorical(pd.date_range("2020", periods=5).repeat(3)),
        "tz-aware": pd.Categorical(pd.date_range("2020", periods=5, tz="UTC").repeat(3)),
        "timedeltas": pd.Categorical(pd.to_timedelta(np.arange(5), unit="D")),
        "periods": pd.Categorical(pd.period_range("2020", periods=4, freq="M")),
        "bools": pd.Categorical([True, False, True]),
        "range-categories": pd.Categorical.from_codes([0, 1, 2], categories=pd.RangeIndex(3)),
        "ordered": pd.Categorical(["lo", "hi"], categories=["lo", "hi"], ordered=True),
        "objects": pd.Categorical(np.array(["a", 1, 2.5], dtype=object)),
        "categorical-index": pd.CategoricalIndex(["a", "b", "a"]),
        "wide": pd.DataFrame(wide),
        "wide-mixed": pd.concat(
            [pd.DataFrame({f"c{i}": np.arange(3) + (0.5 if i % 2 else 0)}) for i in range(100)],
            axis=1,
        ),
        "multi-index": pd.DataFrame(
            rng.random((6, 2)), index=pd.MultiIndex.from_product([["a", "b"], [1, 2, 3]])
        ),
        "series": pd.Series(pd.Categorical(["a", "b"])),
        "no-columns": pd.DataFrame(),
        "no-rows": pd.DataFrame(index=range(3)),
        "nullable": pd.DataFrame(
            {"i": pd.array([1, None], dtype="Int64"), "s": pd.array(["a", None], dtype="string")}
        ),
        "sparse": pd.DataFrame({"s": pd.arrays.SparseArray([0, 1, 0])}),
        "sparse-nan": pd.arrays.SparseArray([np.nan, 1.0, np.nan, 2.0]),
        "masked": pd.DataFrame(
            {"b": pd.array([True, None]), "f": pd.array([1.5, None]), "u": pd.array([1, 2])}
        ),
        "masked-empty": pd.array([], dtype="Int8"),
        "sparse-empty": pd.arrays.SparseArray(np.zeros(5), fill_value=0.0),
        "sparse-series": pd.Series(pd.arrays.SparseArray(np.arange(50) % 7 == 0)),
    }


def test_genuine_frames_and_categoricals_are_safe_and_load() -> None:
    for name, obj in genuine().items():
        files = {f"protocol {p}": pickle.dumps(obj, p) for p in range(6)}
        files["joblib"] = joblib_bytes(obj)
        for how, data in files.items():
            report = safeload.scan_bytes(data)
            assert report.verdict is Verdict.SAFE, (name, how, report.findings)
            for forced in (False, True):
                loaded = load(data, forced=forced)
                assert type(loaded) is type(obj), (name, how)
                assert repr(loaded) == repr(obj), (name, how)


# -- SparseArray --------------------------------------------------------------------------------


def short_sparse() -> pd.arrays.SparseArray:
    """2000 points, one stored value."""
    array = pd.arrays.SparseArray(np.r_[np.zeros(2000), np.arange(1.0, 2001)], fill_value=0.0)
    array._sparse_values = array._sparse_values[:1].copy()
    return array


_SPARSE_USE = """
import pickle, sys
import numpy as np, pandas as pd
a = pickle.loads(open(sys.argv[1], "rb").read())
b = pd.arrays.SparseArray(np.where(np.arange(len(a)) % 3 == 0, 1.0, 0.0), fill_value=0.0)
print(len((a * b).sp_values), len(a.sp_values))
"""


def test_sparse_values_fewer_than_the_index_points_are_read_past_and_refused(
    tmp_path: Path,
) -> None:
    data = pickle.dumps(short_sparse())
    path = tmp_path / "sparse.pkl"
    path.write_bytes(data)
    done = subprocess.run(
        [sys.executable, "-c", _SPARSE_USE, str(path)], capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    # The Cython product read hundreds of values from a buffer of one.
    products, stored = (int(x) for x in done.stdout.split())
    assert stored == 1 and products > 100, done
    assert "1 stored values for the 2000 points" in scan_failure(data)
    assert "1 stored values for the 2000 points" in forced_refusal(data)
    joblib_data = joblib_bytes(pd.Series(short_sparse()))
    assert "1 stored values for the 2000 points" in forced_refusal(joblib_data)


# -- masked arrays ------------------------------------------------------------------------------


def masked(mutate: str) -> pd.Series:
    array = pd.array(np.arange(200_000), dtype="Int64")
    if mutate == "short-mask":
        array._mask = np.zeros(1, dtype=bool)
    elif mutate == "int-mask":
        array._mask = np.zeros(200_000, dtype=np.int64)
    elif mutate == "short-data":
        array._data = np.arange(1)
    return pd.Series(array)


_GROUPBY = """
import pickle, sys
import numpy as np
s = pickle.loads(open(sys.argv[1], "rb").read())
s.groupby(np.arange(len(s)) % 7).cumsum()
print("survived")
"""


def test_masked_array_mask_shorter_than_its_data_crashes_and_is_refused(tmp_path: Path) -> None:
    data = pickle.dumps(masked("short-mask"))
    path = tmp_path / "masked.pkl"
    path.write_bytes(data)
    done = subprocess.run(
        [sys.executable, "-c", _GROUPBY, str(path)], capture_output=True, timeout=120,
        check=False,
    )  # fmt: skip
    # A memory fault, or glibc aborting on the heap it finds corrupted.
    assert done.returncode in (-signal.SIGSEGV, -signal.SIGBUS, -signal.SIGABRT), done
    reason = "data of shape (200000,) under a mask of shape (1,)"
    assert reason in scan_failure(data)
    assert reason in forced_refusal(data)
    assert reason in forced_refusal(joblib_bytes(masked("short-mask")))


@pytest.mark.parametrize(
    ("mutate", "scan", "load"),
    [
        ("int-mask", "its mask is not a boolean array (of kind 'i')", "not bool"),
        ("short-data", "data of shape (1,) under a mask of shape (200000,)", "(1,)"),
    ],
)
def test_masked_array_data_and_mask_that_disagree_are_refused(
    mutate: str, scan: str, load: str
) -> None:
    data = pickle.dumps(masked(mutate))
    assert scan in scan_failure(data)
    assert load in forced_refusal(data)


def test_older_pandas_generations_pass_the_checks() -> None:
    # pandas 1.3 builds blocks through functools.partial(new_block, ndim=2) (the loader
    # checks those placements); pandas 2.0 keeps a TimedeltaArray's attributes in an
    # empty dict: neither is a failed check.
    root = Path(__file__).resolve().parent / "fixtures" / "generations"
    files = sorted(root.glob("*/pandas/*.pkl"))
    assert len(files) >= 10
    for path in files:
        report = safeload.scan_bytes(path.read_bytes())
        assert not [f for f in report.findings if f.rule in ("SL405", "SL406")], path
