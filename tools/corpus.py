"""Real benign objects built with the real libraries, for allow packs and tests.

Every builder returns a list of `(label, object)` pairs. The objects are what
people really pickle: stdlib data types, numpy arrays and generators, sparse
matrices, fitted scikit-learn estimators, pandas frames, PyTorch state dicts
and modules, xgboost and lightgbm models. `tools/gen_allow_packs.py` pickles
them and lists the globals the walker reports; `tests/test_benign_real.py`
pickles them and checks the scanner calls them safe.

Builders are cached: a test session fits every estimator once.
"""

from __future__ import annotations

import array
import collections
import datetime
import decimal
import fractions
import functools
import inspect
import io
import pathlib
import pickle
import re
import uuid
import warnings
import zipfile
import zoneinfo
from collections.abc import Callable, Iterator
from typing import Any

Objects = list[tuple[str, Any]]

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)
N_SAMPLES = 30
SEED = 0


def pickles(obj: Any, protocols: range = PROTOCOLS) -> Iterator[tuple[int, bytes]]:
    """`pickle.dumps(obj, protocol=p)` at every protocol (every corpus object supports all)."""
    for proto in protocols:
        yield proto, pickle.dumps(obj, protocol=proto)


# -- the Python standard library ---------------------------------------------


@functools.cache
def stdlib_objects() -> Objects:
    """Stdlib data types at their usual shapes."""
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    plus2 = datetime.timezone(datetime.timedelta(hours=2), "CEST")
    counts: collections.defaultdict[str, int] = collections.defaultdict(int, {"a": 1})
    lists: collections.defaultdict[str, list[int]] = collections.defaultdict(list, {"a": [1]})
    return [
        ("none-bool-int", [None, True, False, 0, 1, -1, 2**70, -(2**70)]),
        ("float-complex", [0.5, float("inf"), float("nan"), complex(1, -2)]),
        ("str-bytes", ["", "text", "ü∂", b"", b"bytes\x00\xff", bytearray(b"mutable")]),
        ("containers", [(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), [], {}, {"k": [1, {2, 3}]}]),
        ("set-frozenset", [set(), {1, 2}, frozenset(), frozenset({"a"})]),
        ("slice-range-ellipsis", [slice(1, 5, 2), range(3, 9, 2), Ellipsis, NotImplemented]),
        ("builtin-types", [int, float, complex, str, bytes, bytearray, bool, list, dict, set]),
        ("builtin-types-2", [tuple, frozenset, object, slice, range]),
        ("shared-refs", [[1, 2]] * 3),
        ("ordereddict", collections.OrderedDict([("b", 1), ("a", 2)])),
        ("defaultdict-int", counts),
        ("defaultdict-list", lists),
        ("deque", collections.deque([1, 2, 3], maxlen=5)),
        ("counter", collections.Counter("abracadabra")),
        ("chainmap", collections.ChainMap({"a": 1}, {"b": 2})),
        ("date", datetime.date(2024, 2, 29)),
        ("time", datetime.time(12, 30, 15, 500)),
        ("time-tz", datetime.time(12, 30, tzinfo=datetime.UTC)),
        ("datetime", datetime.datetime(2024, 2, 29, 12, 30, 15, 123456)),
        ("datetime-utc", datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)),
        ("datetime-offset", datetime.datetime(2024, 1, 1, tzinfo=plus2)),
        ("datetime-zoneinfo", datetime.datetime(2024, 7, 1, 9, tzinfo=paris)),
        ("timedelta", datetime.timedelta(days=3, seconds=7, microseconds=9)),
        ("timezone", [datetime.UTC, plus2]),
        ("zoneinfo", paris),
        ("zoneinfo-utc", zoneinfo.ZoneInfo("UTC")),
        ("zoneinfo-no-cache", zoneinfo.ZoneInfo.no_cache("America/New_York")),
        ("decimal", [decimal.Decimal("3.14159"), decimal.Decimal("-0"), decimal.Decimal("NaN")]),
        ("fractions", fractions.Fraction(22, 7)),
        ("uuid", uuid.UUID("12345678-1234-5678-1234-567812345678")),
        ("uuid-safe", uuid.UUID(int=2**100, is_safe=uuid.SafeUUID.safe)),
        ("uuid-unsafe", uuid.UUID(int=7, is_safe=uuid.SafeUUID.unsafe)),
        ("pure-posix-path", pathlib.PurePosixPath("models/model.pkl")),
        ("pure-windows-path", pathlib.PureWindowsPath("C:/models/model.pkl")),
        ("re-pattern", re.compile(r"^[a-z]+\d*$")),
        ("re-pattern-flags", re.compile(rb"abc", re.IGNORECASE | re.MULTILINE)),
        ("array-d", array.array("d", [1.0, 2.5])),
        ("array-i", array.array("i", [1, -2, 3])),
        ("array-u", array.array("u", "text")),
        ("array-B", array.array("B", b"\x00\xff")),
    ]


# -- numpy -------------------------------------------------------------------


@functools.cache
def numpy_objects() -> Objects:
    """Arrays of every builtin dtype, scalars of every scalar type, generators."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # np.matrix is pending deprecation
        return _numpy_objects()


def _numpy_objects() -> Objects:
    import numpy as np

    out: Objects = []
    for code in np.typecodes["All"]:
        if code in "SUVOMm":
            continue
        out.append((f"array-{code}", np.arange(6).astype(code).reshape(2, 3)))
    out += [
        ("array-S", np.array([b"ab", b"c"], dtype="S3")),
        ("array-U", np.array(["ab", "c"], dtype="U3")),
        ("array-V", np.array([b"\x01\x02"], dtype="V2")),
        ("array-O", np.array([1, "a", None, 2.5], dtype=object)),
        ("array-T", np.array(["variable", "width"], dtype=np.dtypes.StringDType())),
        ("array-M8", np.array(["2024-01-01", "NaT"], dtype="datetime64[ns]")),
        ("array-M8-D", np.array(["2024-01-01"], dtype="datetime64[D]")),
        ("array-m8", np.array([1, 2], dtype="timedelta64[s]")),
        ("array-big-endian", np.arange(4, dtype=">i4")),
        ("array-fortran", np.asfortranarray(np.arange(6.0).reshape(2, 3))),
        ("array-0d", np.array(3.5)),
        ("array-empty", np.empty((0, 3))),
        ("array-noncontiguous", np.arange(10.0)[::2]),
        (
            "array-structured",
            np.array(
                [(1, 2.0, b"x", [1, 2]), (3, 4.0, b"y", [5, 6])],
                dtype=[("a", "<i4"), ("b", ">f8"), ("c", "S1"), ("d", "u1", (2,))],
            ),
        ),
        ("array-aligned", np.zeros(2, dtype=np.dtype([("a", "u1"), ("b", "f8")], align=True))),
        (
            "array-titles",
            np.zeros(2, dtype=np.dtype({"names": ["a"], "formats": ["i2"], "titles": ["T"]})),
        ),
        ("array-subarray", np.zeros(2, dtype=("f4", (2, 2)))),
        ("record-array", np.rec.array([(1, 2.0)], dtype=[("x", "i4"), ("y", "f8")])),
        ("matrix", np.matrix([[1, 2], [3, 4]])),
        ("masked-array", np.ma.masked_array([1.0, 2.0, 3.0], mask=[False, True, False])),
        ("masked-constant", np.ma.masked),
        ("dtypes", [np.dtype(c) for c in np.typecodes["All"] if c not in "SUVMm"]),
        ("dtypes-flexible", [np.dtype("S4"), np.dtype("U4"), np.dtype("V4"), np.dtype("M8[s]")]),
        ("dtype-T", np.dtypes.StringDType(na_object=None)),
    ]
    scalar_types = sorted(set(np.sctypeDict.values()), key=lambda t: t.__name__)
    scalars = []
    for t in scalar_types:
        if t in (np.datetime64, np.timedelta64):
            scalars.append(t(1, "s"))
        elif t is np.void:
            scalars.append(np.zeros(1, dtype=[("a", "i4")])[0])
        else:
            scalars.append(t(1) if t is not np.str_ else t("s"))
    out.append(("scalars", scalars))
    out.append(("scalar-types", scalar_types))
    # ufuncs, as FunctionTransformer(np.log1p) and TransformedTargetRegressor store them
    ufuncs = {getattr(np, n) for n in dir(np) if isinstance(getattr(np, n), np.ufunc)}
    out.append(("ufuncs", sorted(ufuncs, key=lambda u: u.__name__)))
    out.append(("dtype-classes", sorted({type(np.dtype(t)) for t in scalar_types}, key=str)))
    bit_generators = [np.random.MT19937, np.random.PCG64, np.random.PCG64DXSM]
    bit_generators += [np.random.Philox, np.random.SFC64]
    for bg in bit_generators:
        out.append((f"bitgen-{bg.__name__}", bg(SEED)))
        out.append((f"generator-{bg.__name__}", np.random.Generator(bg(SEED))))
    out += [
        ("default-rng", np.random.default_rng(SEED)),
        ("random-state", np.random.RandomState(SEED)),
        ("seed-sequence", np.random.SeedSequence(SEED)),
    ]
    return out


# -- scipy.sparse --------------------------------------------------------------


@functools.cache
def scipy_objects() -> Objects:
    """Sparse matrices and sparse arrays of every format."""
    import numpy as np
    import scipy.sparse as sp

    dense = np.array([[0, 1.5, 0, 0], [2, 0, 0, 3], [0, 0, 0, 0], [0, 4, 5, 0]])
    out: Objects = []
    for fmt in ("bsr", "coo", "csc", "csr", "dia", "dok", "lil"):
        out.append((f"{fmt}_matrix", getattr(sp, f"{fmt}_matrix")(dense)))
        out.append((f"{fmt}_array", getattr(sp, f"{fmt}_array")(dense)))
    return out


# -- pandas --------------------------------------------------------------------


@functools.cache
def pandas_objects() -> Objects:
    """Series, frames and indexes of every kind, with and without time zones."""
    import numpy as np
    import pandas as pd

    n = 4
    tz_paris = zoneinfo.ZoneInfo("Europe/Paris")
    out: Objects = [
        ("series-int", pd.Series(range(n), name="x")),
        ("series-float", pd.Series(np.linspace(0, 1, n))),
        ("series-bool", pd.Series([True, False] * 2)),
        ("series-str", pd.Series(["a", "b", None, "d"])),
        ("series-object", pd.Series([1, "a", None, 2.5], dtype=object)),
        ("series-categorical", pd.Series(pd.Categorical(["a", "b", "a", "c"]))),
        (
            "series-categorical-ordered",
            pd.Series(pd.Categorical(["lo", "hi"], categories=["lo", "hi"], ordered=True)),
        ),
        ("series-datetime", pd.Series(pd.date_range("2024-01-01", periods=n))),
        ("series-datetime-utc", pd.Series(pd.date_range("2024-01-01", periods=n, tz="UTC"))),
        ("series-datetime-zoneinfo", pd.Series(pd.date_range("2024", periods=n, tz=tz_paris))),
        (
            "series-datetime-fixed-offset",
            pd.Series(
                pd.date_range("2024", periods=n, tz=datetime.timezone(datetime.timedelta(hours=-5)))
            ),
        ),
        ("series-timedelta", pd.Series(pd.to_timedelta(range(n), unit="s"))),
        ("series-period", pd.Series(pd.period_range("2024-01", periods=n, freq="M"))),
        ("series-interval", pd.Series(pd.interval_range(0, n))),
        ("series-sparse", pd.Series(pd.arrays.SparseArray([0, 0, 1, 0]))),
        ("index-range", pd.RangeIndex(5)),
        ("index-int", pd.Index([3, 1, 2])),
        ("index-str", pd.Index(["a", "b"])),
        ("index-categorical", pd.CategoricalIndex(["a", "b", "a"])),
        ("index-datetime-freq", pd.date_range("2024-01-01", periods=n, freq="h")),
        ("index-timedelta", pd.timedelta_range("1D", periods=n)),
        ("index-period", pd.period_range("2024Q1", periods=n, freq="Q")),
        ("index-interval", pd.IntervalIndex.from_breaks([0, 1, 3, 6])),
        ("index-multi", pd.MultiIndex.from_product([["a", "b"], [1, 2]], names=["k", "v"])),
        ("timestamp", pd.Timestamp("2024-05-01 10:00", tz=tz_paris)),
        ("timestamp-naive", pd.Timestamp("2024-05-01 10:00")),
        ("timedelta", pd.Timedelta("1 days 2 hours")),
        ("period", pd.Period("2024-05", freq="M")),
        ("interval", pd.Interval(0, 1, closed="left")),
        ("missing", [pd.NaT, pd.NA]),
        ("offsets", [pd.offsets.Day(2), pd.offsets.MonthEnd(), pd.offsets.BusinessDay(3)]),
        ("offsets-2", [pd.offsets.Hour(), pd.offsets.Week(weekday=0), pd.offsets.QuarterBegin()]),
    ]
    for dtype in ("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64"):
        out.append((f"series-{dtype}", pd.Series([1, None, 3, 4], dtype=dtype)))
    for dtype in ("Float32", "Float64", "boolean", "string"):
        out.append(
            (
                f"series-{dtype}",
                pd.Series([1, None, 0, 1], dtype=dtype)
                if dtype != "string"
                else pd.Series(["a", None], dtype=dtype),
            )
        )
    frame = pd.DataFrame(
        {
            "int": range(n),
            "float": np.arange(n, dtype="float32"),
            "str": list("abcd"),
            "cat": pd.Categorical(list("xyxy")),
            "when": pd.date_range("2024-01-01", periods=n, tz=tz_paris),
            "nullable": pd.array([1, None, 3, 4], dtype="Int64"),
        }
    )
    out += [
        ("frame-mixed", frame),
        ("frame-tz-aware", pd.DataFrame({"t": pd.date_range("2020", periods=3, tz=tz_paris)})),
        ("frame-multiindex", frame.set_index(["str", "int"])),
        (
            "frame-multi-columns",
            pd.DataFrame(np.eye(2), columns=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)])),
        ),
        ("frame-empty", pd.DataFrame()),
    ]
    try:
        from dateutil import tz as dateutil_tz
    except ImportError:  # pragma: no cover - python-dateutil is a pandas dependency
        pass
    else:
        out += [
            (
                "series-datetime-dateutil",
                pd.Series(pd.date_range("2024", periods=n, tz=dateutil_tz.gettz("Europe/Berlin"))),
            ),
            ("dateutil-tzutc", datetime.datetime(2024, 1, 1, tzinfo=dateutil_tz.tzutc())),
            (
                "dateutil-tzoffset",
                datetime.datetime(2024, 1, 1, tzinfo=dateutil_tz.tzoffset("X", 3600)),
            ),
        ]
    return out


# -- scikit-learn --------------------------------------------------------------

#: Estimators of `all_estimators()` that cannot be fitted and pickled on toy
#: data, with the reason. Every other estimator is fitted; the class names of
#: these are still allowlisted (tools/gen_allow_packs.py enumerates them all).
SKLEARN_SKIP: dict[str, str] = {}


def _sklearn_data() -> dict[str, Any]:
    import numpy as np

    rng = np.random.RandomState(SEED)
    x = rng.uniform(0.1, 3.0, size=(N_SAMPLES, 4))
    return {
        "X": x,
        "y_class": np.array([0, 1, 2] * (N_SAMPLES // 3)),
        "y_reg": x[:, 0] * 2.0 + rng.normal(scale=0.1, size=N_SAMPLES),
        "docs": ["the cat sat", "a dog ran", "the dog sat", "cats and dogs"] * 5,
        "dicts": [{"a": 1.0, "b": 2.0}, {"a": 3.0, "c": 1.0}] * 10,
    }


def _instance(cls: type) -> Any:
    """An instance with the small parameters scikit-learn's own tests use."""
    # scikit-learn's own test helper (private API of the pinned version)
    from sklearn.utils._test_common.instance_generator import _construct_instances

    name = cls.__name__
    if name == "FrozenEstimator":
        from sklearn.linear_model import LogisticRegression

        d = _sklearn_data()
        return cls(LogisticRegression().fit(d["X"], d["y_class"]))
    est = next(iter(_construct_instances(cls)))
    params = est.get_params()
    if name == "TSNE":  # exact gradients are 20x faster than Barnes-Hut on 30 samples
        est.set_params(max_iter=250, perplexity=5.0, method="exact")
    if params.get("cv") in (None, 3, 5) and "cv" in params:
        est.set_params(cv=2)  # fewer refits; the fitted types are the same
    return est


def fit_estimator(cls: type, *, binary: bool = False) -> Any:
    """`cls` instantiated and fitted on toy data suited to its tags.

    Classifiers see three classes, or two with `binary` (binary losses, links
    and calibrators are other types than the multiclass ones).
    """
    from sklearn.utils import get_tags
    from sklearn.utils.estimator_checks import _enforce_estimator_tags_X, _enforce_estimator_tags_y

    d = _sklearn_data()
    est = _instance(cls)
    tags = get_tags(est)
    inputs = tags.input_tags
    y = d["y_reg"] if tags.estimator_type == "regressor" else d["y_class"]
    if binary:
        y = d["y_class"] % 2
    y = _enforce_estimator_tags_y(est, y)
    if inputs.two_d_array:
        x: Any = _enforce_estimator_tags_X(est, d["X"].copy())
        if cls.__name__ == "SparseCoder":
            x = x[:, : est.dictionary.shape[1]]
    elif inputs.string:
        x = d["docs"]
    elif inputs.dict:
        x = d["dicts"]
    elif inputs.one_d_array:
        x = d["X"][:, 0]
    elif inputs.three_d_array:
        x = d["X"][:24].reshape(4, 6, 4)
    else:
        # target transformers (LabelEncoder, LabelBinarizer, ...) fit on labels alone
        labels = [{1, 2}, {3}, {1}] if tags.target_tags.two_d_labels else d["y_class"]
        return est.fit(labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return est.fit(x, y)
        except TypeError:
            return est.fit(x)


@functools.cache
def sklearn_estimators() -> tuple[tuple[str, Any, str | None], ...]:
    """Every estimator of `all_estimators()`: (name, fitted estimator or None, error)."""
    from sklearn.utils import all_estimators

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, cls in all_estimators():
            try:
                out.append((name, fit_estimator(cls), None))
            except Exception as exc:
                out.append((name, None, f"{type(exc).__name__}: {exc}"))
    return tuple(out)


@functools.cache
def sklearn_binary_estimators() -> tuple[tuple[str, Any, str | None], ...]:
    """Every classifier of `all_estimators()` fitted on a binary target."""
    from sklearn.utils import all_estimators

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, cls in all_estimators(type_filter="classifier"):
            try:
                out.append((name, fit_estimator(cls, binary=True), None))
            except Exception as exc:
                out.append((name, None, f"{type(exc).__name__}: {exc}"))
    return tuple(out)


def _sklearn_internals() -> Objects:
    """Every loss, link and distance metric, and both neighbor trees.

    Fitted estimators hold these; which ones depends on parameters (`loss=`,
    `metric=`, `algorithm=`), so each is built and pickled on its own too.
    """
    import numpy as np
    import sklearn._loss.loss as losses
    from sklearn.metrics import DistanceMetric
    from sklearn.metrics._dist_metrics import METRIC_MAPPING64
    from sklearn.neighbors import BallTree, KDTree

    x = _sklearn_data()["X"]
    out: Objects = []
    loss_classes = [
        c
        for c in vars(losses).values()
        if isinstance(c, type) and issubclass(c, losses.BaseLoss) and c is not losses.BaseLoss
    ]
    for cls in sorted(loss_classes, key=lambda c: c.__name__):
        out.append((f"loss-{cls.__name__}", cls()))
    metric_args = {"mahalanobis": {"VI": np.eye(4)}, "seuclidean": {"V": np.ones(4)}}
    for metric in sorted(METRIC_MAPPING64):
        if metric == "pyfunc":  # wraps a user function: that function is the global
            continue
        out.append(
            (f"metric-{metric}", DistanceMetric.get_metric(metric, **metric_args.get(metric, {})))
        )
    out.append(("ball-tree", BallTree(x)))
    out.append(("ball-tree-manhattan", BallTree(x, metric="manhattan")))
    out.append(("kd-tree", KDTree(x)))
    out.append(("kd-tree-chebyshev", KDTree(x, metric="chebyshev")))
    return out


@functools.cache
def sklearn_extra_objects() -> Objects:
    """Compositions and internals that the defaults above do not reach."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    d = _sklearn_data()
    frame = pd.DataFrame({"num": d["X"][:, 0], "cat": list("abc") * (N_SAMPLES // 3)})
    column = ColumnTransformer(
        [("num", StandardScaler(), ["num"]), ("cat", OneHotEncoder(), ["cat"])]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [
            *_sklearn_compositions(d, frame, column),
            *_sklearn_loss_fits(d),
            *_sklearn_internals(),
        ]


def _sklearn_loss_fits(d: dict[str, Any]) -> Objects:
    """Estimators whose fitted types depend on `loss=` / `power=` / `link=`."""
    import numpy as np
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingRegressor,
    )
    from sklearn.linear_model import SGDClassifier, SGDRegressor, TweedieRegressor

    x, y_pos, y_bin = d["X"], np.abs(d["y_reg"]) + 0.1, d["y_class"] % 2
    out: Objects = []
    for loss in ("absolute_error", "gamma", "poisson", "quantile"):
        quantile = {"quantile": 0.5} if loss == "quantile" else {}
        out.append(
            (
                f"hgb-{loss}",
                HistGradientBoostingRegressor(loss=loss, max_iter=3, **quantile).fit(x, y_pos),
            )
        )
    for loss in ("absolute_error", "huber", "quantile"):
        out.append(
            (f"gb-{loss}", GradientBoostingRegressor(loss=loss, n_estimators=3).fit(x, y_pos))
        )
    out.append(
        (
            "gb-exponential",
            GradientBoostingClassifier(loss="exponential", n_estimators=3).fit(x, y_bin),
        )
    )
    for power, link in (
        (0, "auto"),
        (0, "log"),
        (1, "auto"),
        (1.5, "auto"),
        (1.5, "identity"),
        (2, "auto"),
        (3, "auto"),
    ):
        out.append(
            (f"tweedie-{power}-{link}", TweedieRegressor(power=power, link=link).fit(x, y_pos))
        )
    for loss in ("hinge", "log_loss", "modified_huber", "squared_hinge", "perceptron"):
        out.append((f"sgd-{loss}", SGDClassifier(loss=loss, max_iter=5).fit(x, y_bin)))
    for loss in ("squared_error", "huber", "epsilon_insensitive", "squared_epsilon_insensitive"):
        out.append((f"sgd-reg-{loss}", SGDRegressor(loss=loss, max_iter=5).fit(x, y_pos)))
    return out


def _sklearn_compositions(d: dict[str, Any], frame: Any, column: Any) -> Objects:
    """Pipelines, column transformers, an explicit RandomState, stored ufuncs."""
    import numpy as np
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    log_target = TransformedTargetRegressor(Ridge(), func=np.log1p, inverse_func=np.expm1)
    return [
        ("log-target", log_target.fit(d["X"], np.abs(d["y_reg"]))),
        ("function-transformer", FunctionTransformer(np.sqrt).fit(d["X"])),
        (
            "pipeline",
            make_pipeline(StandardScaler(), LogisticRegression()).fit(d["X"], d["y_class"]),
        ),
        (
            "column-transformer-frame",
            make_pipeline(column, LogisticRegression()).fit(frame, d["y_class"]),
        ),
        (
            "forest-random-state",
            RandomForestClassifier(n_estimators=3, random_state=np.random.RandomState(SEED)).fit(
                d["X"], d["y_class"]
            ),
        ),
        (
            "hgb-categorical",
            HistGradientBoostingClassifier(max_iter=5, categorical_features=[0]).fit(
                np.c_[np.arange(N_SAMPLES) % 3, d["X"]], d["y_class"]
            ),
        ),
    ]


# -- PyTorch -------------------------------------------------------------------

_TORCH_ARGS: tuple[tuple[Any, ...], ...] = (
    (),
    (4,),
    (4, 4),
    (4, 4, 3),
    (4, 2),
    (2, 3, 4),
    ((1, 2),),
)


def torch_module_classes() -> list[type]:
    """Every `torch.nn.Module` subclass that `torch.nn` exports."""
    import torch

    found = {getattr(torch.nn, n) for n in dir(torch.nn) if not n.startswith("_")}
    classes = [c for c in found if inspect.isclass(c) and issubclass(c, torch.nn.Module)]
    return sorted(classes, key=lambda c: (c.__module__, c.__qualname__))


def _torch_layers() -> list[Any]:
    """One instance of every torch.nn layer that builds from small positional args."""
    import torch

    layers = []
    for cls in torch_module_classes():
        if cls.__name__ in ("DataParallel", "Module", "Container") or cls.__name__.startswith(
            "Lazy"
        ):
            # Lazy* modules pickle their load hooks as bound methods of the
            # instance (`getattr(<module>, '_lazy_load_hook')`), which no
            # allowlist can vouch for; their classes are still enumerated.
            continue
        if cls.__name__ == "Transformer":  # the defaults hold 44M parameters
            layers.append(
                cls(
                    d_model=4,
                    nhead=2,
                    num_encoder_layers=1,
                    num_decoder_layers=1,
                    dim_feedforward=8,
                )
            )
            continue
        for args in _TORCH_ARGS:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    layers.append(cls(*args))
                break
            except Exception:
                continue
    return [m for m in layers if isinstance(m, torch.nn.Module)]


@functools.cache
def torch_objects() -> Objects:
    """State dicts, optimizer states, checkpoints and whole nn modules."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _torch_objects()


def _torch_objects() -> Objects:
    import torch

    torch.manual_seed(SEED)
    model = torch.nn.Sequential(
        torch.nn.Conv1d(1, 2, 3),
        torch.nn.BatchNorm1d(2),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 3),
        torch.nn.Dropout(0.1),
    )
    out: Objects = [("sequential-state-dict", model.state_dict()), ("sequential", model)]
    for opt_cls in (
        torch.optim.SGD,
        torch.optim.Adam,
        torch.optim.AdamW,
        torch.optim.RMSprop,
        torch.optim.Adagrad,
    ):
        kwargs = {"momentum": 0.9} if opt_cls is torch.optim.SGD else {}
        opt = opt_cls(model.parameters(), lr=0.01, **kwargs)
        model(torch.randn(5, 1, 6)).sum().backward()
        opt.step()
        out.append((f"optimizer-{opt_cls.__name__}", opt.state_dict()))
        if opt_cls is torch.optim.AdamW:
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2)
            out.append(("lr-scheduler", sched.state_dict()))
            out.append(
                (
                    "checkpoint",
                    {
                        "model": model.state_dict(),
                        "optimizer": opt.state_dict(),
                        "epoch": 3,
                        "loss": 0.25,
                    },
                )
            )
    layers = _torch_layers()
    out.append(("layers", torch.nn.ModuleList(layers)))
    out.append(("layers-state-dicts", [m.state_dict() for m in layers]))
    out.append(
        ("module-dict", torch.nn.ModuleDict({"lin": torch.nn.Linear(2, 2), "act": torch.nn.GELU()}))
    )
    out.append(("parameter-list", torch.nn.ParameterList([torch.nn.Parameter(torch.ones(2))])))
    dtypes = [
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
        torch.complex64,
        torch.complex128,
    ]
    dtypes += [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool]
    out.append(("tensors-every-dtype", {str(dt): torch.zeros(2, dtype=dt) for dt in dtypes}))
    out.append(("tensor-sparse-coo", torch.eye(3).to_sparse()))
    out.append(("tensor-sparse-csr", torch.eye(3).to_sparse_csr()))
    out.append(("tensor-quantized", torch.quantize_per_tensor(torch.ones(3), 0.1, 0, torch.quint8)))
    out.append(("tensor-requires-grad", torch.ones(2, requires_grad=True)))
    out.append(
        (
            "dtypes-devices",
            {"dtype": torch.float32, "device": torch.device("cpu"), "size": torch.Size([2, 3])},
        )
    )
    return out


def torch_save_data_pkl(obj: Any) -> bytes:
    """The `data.pkl` member of a real `torch.save` zip archive of `obj`."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as archive:
        (member,) = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        return archive.read(member)


# -- xgboost, lightgbm, joblib -------------------------------------------------


@functools.cache
def xgboost_objects() -> Objects:
    """Fitted xgboost scikit-learn wrappers."""
    import xgboost

    d = _sklearn_data()
    params = {"n_estimators": 3, "max_depth": 2, "n_jobs": 1, "random_state": SEED}
    group = [10, 10, 10]
    return [
        ("XGBClassifier", xgboost.XGBClassifier(**params).fit(d["X"], d["y_class"])),
        ("XGBClassifier-binary", xgboost.XGBClassifier(**params).fit(d["X"], d["y_class"] % 2)),
        ("XGBRegressor", xgboost.XGBRegressor(**params).fit(d["X"], d["y_reg"])),
        ("XGBRFClassifier", xgboost.XGBRFClassifier(**params).fit(d["X"], d["y_class"])),
        ("XGBRFRegressor", xgboost.XGBRFRegressor(**params).fit(d["X"], d["y_reg"])),
        ("XGBRanker", xgboost.XGBRanker(**params).fit(d["X"], d["y_class"], group=group)),
        ("Booster", xgboost.XGBRegressor(**params).fit(d["X"], d["y_reg"]).get_booster()),
    ]


@functools.cache
def lightgbm_objects() -> Objects:
    """Fitted lightgbm scikit-learn wrappers."""
    import lightgbm

    d = _sklearn_data()
    params = {"n_estimators": 3, "num_leaves": 4, "min_child_samples": 2, "n_jobs": 1}
    params |= {"random_state": SEED, "verbose": -1}
    return [
        ("LGBMClassifier", lightgbm.LGBMClassifier(**params).fit(d["X"], d["y_class"])),
        ("LGBMClassifier-binary", lightgbm.LGBMClassifier(**params).fit(d["X"], d["y_class"] % 2)),
        ("LGBMRegressor", lightgbm.LGBMRegressor(**params).fit(d["X"], d["y_reg"])),
        ("LGBMRanker", lightgbm.LGBMRanker(**params).fit(d["X"], d["y_class"], group=[10, 10, 10])),
        ("Booster", lightgbm.LGBMRegressor(**params).fit(d["X"], d["y_reg"]).booster_),
    ]


def joblib_dump_bytes(obj: Any) -> bytes:
    """An uncompressed `joblib.dump` of `obj`, as bytes."""
    import joblib

    buf = io.BytesIO()
    joblib.dump(obj, buf)
    return buf.getvalue()


@functools.cache
def joblib_objects() -> Objects:
    """Objects as people `joblib.dump` them: arrays inline, estimators, frames."""
    import numpy as np

    estimators = {name: est for name, est, err in sklearn_estimators() if err is None}
    return [
        (
            "arrays",
            {
                "f8": np.arange(5.0),
                "i4": np.arange(3, dtype="<i4"),
                "M8": np.array(["2024"], "M8[s]"),
            },
        ),
        ("object-array", np.array([1, "a", None], dtype=object)),
        ("fortran-array", np.asfortranarray(np.eye(3))),
        ("structured-array", np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")])),
        ("random-forest", estimators["RandomForestClassifier"]),
        ("pipeline", dict(sklearn_extra_objects())["pipeline"]),
        ("frame", dict(pandas_objects())["frame-mixed"]),
    ]


#: Builders by group name (the keys are also test ids).
BUILDERS: dict[str, Callable[[], Objects]] = {
    "stdlib": stdlib_objects,
    "numpy": numpy_objects,
    "scipy": scipy_objects,
    "pandas": pandas_objects,
    "sklearn-extra": sklearn_extra_objects,
    "xgboost": xgboost_objects,
    "lightgbm": lightgbm_objects,
}
