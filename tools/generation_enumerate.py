"""Pickle everything a library generation's users keep, for the allow packs.

    <generation venv>/bin/python tools/generation_enumerate.py OUT_DIR

Run by `tools/generations.py` with the Python of one generation's virtualenv
(Python 3.8 to 3.12, libraries of that generation, no safeload). It builds
objects with the libraries of that generation and writes each one, as bytes,
to OUT_DIR/<group>/<label>.p<protocol> (pickle.dumps at every protocol) and
OUT_DIR/joblib/<label>.joblib (an uncompressed joblib.dump), plus
OUT_DIR/manifest.json (releases, objects that could not be built and why).
`tools/generations.py` then walks those bytes with safeload's walker in the
development venv: names are read from the pickles, never imported.

How the objects are enumerated (each group a function below):
- stdlib: builtins, collections, datetime (every tzinfo kind), decimal,
  fractions, uuid, pure paths, re patterns, array, argparse.Namespace.
- numpy: an array of every type code, structured/record/matrix/masked arrays
  (and masked_array's fill values), datetime64/timedelta64 arrays of several
  units, every scalar type, every dtype, every ufunc in numpy's namespace,
  every bit generator, Generator, RandomState, SeedSequence.
- scipy: every sparse matrix format, and every sparse array format where the
  release has them; a B-spline.
- pandas: Series of every extension dtype (nullable ints/floats, boolean,
  string, categorical, sparse, period, interval, datetime with every time-zone
  kind: UTC, fixed offset, pytz, dateutil tzfile/tzutc/tzoffset/tzlocal-free
  kinds, zoneinfo where available), every Index kind, frames, offsets, NaT, NA.
- sklearn: every class of all_estimators() fitted on toy data (classifiers
  also on a binary target); every Gaussian-process kernel class; every
  cross-validation splitter class; every scorer of the scorer registry;
  fitted GridSearchCV / RandomizedSearchCV / HalvingGridSearchCV (masked
  arrays in cv_results_); MLPs trained with each solver (optimizer objects);
  gradient boosting, histogram gradient boosting, SGD and GLMs with each loss;
  neighbors with every tree algorithm and metric; pipelines with column
  transformers on frames; FunctionTransformer/TransformedTargetRegressor with
  ufuncs; estimators with an explicit RandomState.
- xgboost / lightgbm: every scikit-learn wrapper fitted, and their boosters.
- joblib: joblib.dump of arrays, an estimator and a frame.
"""

from __future__ import annotations

import argparse
import array
import collections
import datetime
import decimal
import fractions
import inspect
import io
import json
import os
import pathlib
import pickle
import platform
import re
import sys
import traceback
import uuid
import warnings
from collections.abc import Callable
from typing import Any, List, Tuple  # noqa: UP035

# typing.List: this script also runs on Python 3.8, where list[...] fails at runtime
Objects = List[Tuple[str, Any]]  # noqa: UP006
N = 30
SEED = 0
SKIPPED: dict[str, str] = {}


def _try(label: str, make: Callable[[], Any], out: Objects) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out.append((label, make()))
    except Exception as exc:
        SKIPPED[label] = f"{type(exc).__name__}: {str(exc)[:200]}"


def stdlib_objects() -> Objects:
    plus2 = datetime.timezone(datetime.timedelta(hours=2), "CEST")
    out: Objects = [
        ("scalars", [None, True, 1, -(2**70), 0.5, complex(1, 2), "s", b"b", bytearray(b"x")]),
        ("containers", [(), (1,), (1, 2), [], {}, {1, 2}, frozenset({1}), slice(1, 5, 2)]),
        ("range-ellipsis", [range(3, 9, 2), Ellipsis, NotImplemented]),
        ("types", [int, float, str, bytes, list, dict, tuple, set, object]),
        ("ordereddict", collections.OrderedDict([("a", 1)])),
        ("defaultdict", collections.defaultdict(list, {"a": [1]})),
        ("deque", collections.deque([1, 2], maxlen=4)),
        ("counter", collections.Counter("abca")),
        ("datetime", [datetime.date(2022, 1, 2), datetime.time(1, 2), datetime.timedelta(3)]),
        ("datetime-tz", [datetime.datetime(2022, 1, 1, tzinfo=datetime.timezone.utc), plus2]),  # noqa: UP017 (runs on 3.9)
        ("decimal-fraction", [decimal.Decimal("1.5"), fractions.Fraction(1, 3)]),
        ("uuid", uuid.UUID(int=5)),
        ("paths", [pathlib.PurePosixPath("a/b"), pathlib.PureWindowsPath("c:/a")]),
        ("re", re.compile("a+b", re.I)),
        ("array", array.array("d", [1.0])),
        ("namespace", argparse.Namespace(lr=0.1, epochs=3, name="run")),
    ]
    try:
        import zoneinfo

        out.append(("zoneinfo", zoneinfo.ZoneInfo("Europe/Paris")))
    except ImportError:
        pass
    return out


def numpy_objects() -> Objects:
    import numpy as np

    out: Objects = []
    for code in np.typecodes["All"]:
        if code not in "SUVOMm":
            _try(f"array-{code}", lambda c=code: np.arange(6).astype(c).reshape(2, 3), out)
    for unit in ("ns", "us", "s", "D", "M", "Y"):
        _try(f"datetime64-{unit}", lambda u=unit: np.array(["2022-01-01"], f"M8[{u}]"), out)
        _try(f"timedelta64-{unit}", lambda u=unit: np.array([1, 2], f"m8[{u}]"), out)
    out += [
        ("array-S", np.array([b"ab"], "S2")),
        ("array-U", np.array(["ab"], "U2")),
        ("array-V", np.zeros(2, "V3")),
        ("array-O", np.array([1, None, "a"], dtype=object)),
        ("array-be", np.arange(3, dtype=">f4")),
        ("array-fortran", np.asfortranarray(np.eye(2))),
        ("structured", np.zeros(2, dtype=[("a", "<i8"), ("b", "S2"), ("c", "f4", (2,))])),
        ("record", np.rec.fromrecords([(1, 2.0)], names="x,y")),
        ("masked", np.ma.masked_array([1.0, 2.0], mask=[True, False], fill_value=-1.0)),
        ("masked-int", np.ma.masked_array([1, 2], mask=[False, True])),
        ("masked-object", np.ma.masked_array(np.array(["a", None], dtype=object), mask=[0, 1])),
        ("masked-constant", np.ma.masked),
        ("dtypes", [np.dtype(c) for c in np.typecodes["All"] if c not in "MmSUV"]),
        ("dtype-flex", [np.dtype("S3"), np.dtype("U3"), np.dtype("V3"), np.dtype("M8[D]")]),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out.append(("matrix", np.matrix([[1, 2]])))
    scalar_types = sorted(set(np.sctypeDict.values()), key=lambda t: t.__name__)
    scalars = []
    for t in scalar_types:
        try:
            if t in (np.datetime64, np.timedelta64):
                scalars.append(t(1, "s"))
            elif t is np.void:
                scalars.append(np.zeros(1, dtype=[("a", "i4")])[0])
            else:
                scalars.append(t(1) if t is not np.str_ else t("s"))
        except Exception:
            continue
    out += [("scalars", scalars), ("scalar-types", scalar_types)]
    ufuncs = {getattr(np, n) for n in dir(np) if isinstance(getattr(np, n, None), np.ufunc)}
    out.append(("ufuncs", sorted(ufuncs, key=lambda u: u.__name__)))
    out.append(("functions", [np.mean, np.median, np.sum, np.nanmean, np.std]))
    for name in ("MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64"):
        bg = getattr(np.random, name, None)
        if bg is not None:
            out.append((f"bitgen-{name}", bg(SEED)))
            out.append((f"generator-{name}", np.random.Generator(bg(SEED))))
    out += [
        ("default-rng", np.random.default_rng(SEED)),
        ("random-state", np.random.RandomState(SEED)),
        ("seed-sequence", np.random.SeedSequence(SEED)),
    ]
    return out


def scipy_objects() -> Objects:
    import numpy as np
    import scipy.sparse as sp

    dense = np.array([[0, 1.5, 0], [2, 0, 3.0]])
    out: Objects = []
    for fmt in ("bsr", "coo", "csc", "csr", "dia", "dok", "lil"):
        for kind in ("matrix", "array"):
            cls = getattr(sp, f"{fmt}_{kind}", None)
            if cls is not None:
                _try(f"{fmt}_{kind}", lambda c=cls: c(dense), out)
    from scipy.interpolate import BSpline

    out.append(("bspline", BSpline(np.arange(8.0), np.ones(4), 3)))
    return out


def pandas_objects() -> Objects:
    import numpy as np
    import pandas as pd

    out: Objects = []
    tzs: dict[str, Any] = {
        "utc-str": "UTC",
        "stdlib-utc": datetime.timezone.utc,  # noqa: UP017 (runs on Python 3.9)
        "fixed": datetime.timezone(datetime.timedelta(hours=-5)),
    }
    try:
        import pytz

        tzs["pytz"] = pytz.timezone("Europe/Paris")
        tzs["pytz-utc"] = pytz.utc
        tzs["pytz-fixed"] = pytz.FixedOffset(90)
    except ImportError:
        pass
    from dateutil import tz as dtz

    tzs["dateutil-file"] = dtz.gettz("Europe/Berlin")
    tzs["dateutil-utc"] = dtz.tzutc()
    tzs["dateutil-offset"] = dtz.tzoffset("X", 3600)
    try:
        import zoneinfo

        tzs["zoneinfo"] = zoneinfo.ZoneInfo("America/New_York")
    except ImportError:
        pass
    for label, tz in tzs.items():
        _try(
            f"series-tz-{label}",
            lambda t=tz: pd.Series(pd.date_range("2022", periods=3, tz=t)),
            out,
        )
        _try(f"timestamp-{label}", lambda t=tz: pd.Timestamp("2022-05-01", tz=t), out)
        _try(f"index-tz-{label}", lambda t=tz: pd.date_range("2022", periods=2, tz=t), out)
    dtypes = ["Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64"]
    for dt in [*dtypes, "Float32", "Float64", "boolean"]:
        _try(f"series-{dt}", lambda d=dt: pd.Series([1, None, 0], dtype=d), out)
    for storage in ("python", "pyarrow"):
        _try(
            f"series-string-{storage}",
            lambda s=storage: pd.Series(["a", None], dtype=pd.StringDtype(s)),
            out,
        )
    _try("series-string", lambda: pd.Series(["a", None], dtype="string"), out)
    _try("series-categorical", lambda: pd.Series(pd.Categorical(["a", "b", "a"])), out)
    _try("series-sparse", lambda: pd.Series(pd.arrays.SparseArray([0, 0, 1.0])), out)
    _try("series-sparse-int", lambda: pd.Series(pd.arrays.SparseArray([0, 2], fill_value=0)), out)
    _try("series-period", lambda: pd.Series(pd.period_range("2022-01", periods=2, freq="M")), out)
    _try("series-interval", lambda: pd.Series(pd.interval_range(0, 3)), out)
    _try("series-timedelta", lambda: pd.Series(pd.to_timedelta([1, 2], unit="s")), out)
    _try("series-naive", lambda: pd.Series(pd.date_range("2022", periods=2)), out)
    _try("series-float", lambda: pd.Series([0.5, 1.5], name="f"), out)
    _try("series-object", lambda: pd.Series(["a", 1], dtype=object), out)
    for label, make in [
        ("index-range", lambda: pd.RangeIndex(4)),
        ("index-int", lambda: pd.Index([1, 2, 3])),
        ("index-uint", lambda: pd.Index(np.array([1, 2], dtype="u8"))),
        ("index-float", lambda: pd.Index([0.5, 1.5])),
        ("index-str", lambda: pd.Index(["a", "b"])),
        ("index-bool", lambda: pd.Index([True, False])),
        ("index-categorical", lambda: pd.CategoricalIndex(["a", "b"])),
        ("index-datetime", lambda: pd.date_range("2022", periods=3, freq="D")),
        ("index-timedelta", lambda: pd.timedelta_range("1D", periods=2)),
        ("index-period", lambda: pd.period_range("2022Q1", periods=2, freq="Q")),
        ("index-interval", lambda: pd.IntervalIndex.from_breaks([0, 1, 2])),
        ("index-multi", lambda: pd.MultiIndex.from_product([["a"], [1, 2]])),
        ("index-Int64", lambda: pd.Index(pd.array([1, None], dtype="Int64"))),
        ("timedelta", lambda: pd.Timedelta("1 days")),
        ("period", lambda: pd.Period("2022-01", freq="M")),
        ("interval", lambda: pd.Interval(0, 1)),
        ("missing", lambda: [pd.NaT, pd.NA]),
        (
            "dtypes",
            lambda: [pd.CategoricalDtype(["a"]), pd.PeriodDtype("M"), pd.IntervalDtype("int64")],
        ),
        ("dtype-datetimetz", lambda: pd.DatetimeTZDtype(tz="UTC")),
        ("dtype-sparse", lambda: pd.SparseDtype("float64", 0.0)),
        ("offsets", lambda: [pd.offsets.Day(2), pd.offsets.MonthEnd(), pd.offsets.BusinessDay()]),
        (
            "offsets-2",
            lambda: [pd.offsets.Hour(), pd.offsets.Week(weekday=0), pd.offsets.YearBegin()],
        ),
        (
            "offsets-3",
            lambda: [pd.offsets.Minute(5), pd.offsets.QuarterEnd(), pd.offsets.DateOffset(days=1)],
        ),
        (
            "frame-mixed",
            lambda: pd.DataFrame(
                {
                    "i": [1, 2],
                    "f": [0.5, 1.0],
                    "s": ["a", "b"],
                    "c": pd.Categorical(["x", "y"]),
                    "t": pd.date_range("2022", periods=2, tz="UTC"),
                    "n": pd.array([1, None], dtype="Int64"),
                }
            ),
        ),
        (
            "frame-multiindex",
            lambda: pd.DataFrame(
                {"a": [1, 2]}, index=pd.MultiIndex.from_tuples([("x", 1), ("y", 2)])
            ),
        ),
        ("frame-empty", lambda: pd.DataFrame()),
    ]:
        _try(label, make, out)
    return out


# -- scikit-learn -------------------------------------------------------------------


def _data() -> dict[str, Any]:
    import numpy as np

    rng = np.random.RandomState(SEED)
    x = rng.uniform(0.1, 3.0, size=(N, 4))
    return {
        "X": x,
        "y_class": np.array([0, 1, 2] * (N // 3)),
        "y_reg": x[:, 0] * 2.0 + rng.normal(scale=0.1, size=N),
        "docs": ["the cat sat", "a dog ran", "the dog sat", "cats and dogs"] * 5,
        "dicts": [{"a": 1.0, "b": 2.0}, {"a": 3.0, "c": 1.0}] * 10,
    }


def _construct(cls: type) -> Any:
    """An instance as scikit-learn's own test helper builds it (its private
    location moved between releases), else the default constructor."""
    for module, attr in (
        ("sklearn.utils._test_common.instance_generator", "_construct_instances"),
        ("sklearn.utils.estimator_checks", "_construct_instance"),
    ):
        try:
            helper = getattr(__import__(module, fromlist=[attr]), attr)
        except (ImportError, AttributeError):
            continue
        made = helper(cls)
        return next(iter(made)) if inspect.isgenerator(made) else made
    return cls()


def _fit(cls: type, binary: bool) -> Any:
    import numpy as np

    d = _data()
    est = _construct(cls)
    params = est.get_params()
    small = {"n_estimators": 3, "max_iter": 20, "n_components": 2, "cv": 2}
    est.set_params(**{k: v for k, v in small.items() if k in params and k != "n_components"})
    if "cv" in params:
        est.set_params(cv=2)
    name = cls.__name__
    if name.endswith("RandomProjection") or name in ("CCA", "PLSCanonical", "PLSSVD"):
        est.set_params(n_components=1 if name in ("CCA", "PLSCanonical", "PLSSVD") else 2)
    if name == "SelectKBest":
        est.set_params(k=2)
    if name == "TSNE":
        est.set_params(perplexity=5.0)
    tags = est._get_tags() if hasattr(est, "_get_tags") else {}
    x_types = tags.get("X_types", ["2darray"])
    is_reg = getattr(est, "_estimator_type", "") == "regressor"
    y = d["y_reg"] if is_reg else d["y_class"]
    if binary:
        y = d["y_class"] % 2
    if (
        tags.get("multioutput_only")
        or name.startswith(("MultiOutput", "MultiTask"))
        or "Chain" in name
    ):
        y = (
            np.c_[y, y[::-1]]
            if is_reg or name.startswith("MultiTask")
            else np.c_[y % 2, y[::-1] % 2]
        )
    if "string" in x_types or "text" in str(x_types):
        x: Any = d["docs"][:N] * 1
        y = y[: len(x)]
    elif "dict" in x_types:
        x = d["dicts"]
        y = y[: len(x)]
    elif "1dlabels" in x_types or "2dlabels" in x_types:
        return est.fit([{1, 2}, {3}, {1}] if "2dlabels" in x_types else d["y_class"])
    elif "1darray" in x_types:
        x = d["X"][:, 0]
    else:
        x = d["X"].copy()
        if tags.get("pairwise") or getattr(est, "metric", None) == "precomputed":
            x = np.abs(x @ x.T)
    for args in ((x, y), (x,)):
        try:
            return est.fit(*args)
        except TypeError:
            continue
    return est.fit(x, y)


def sklearn_estimators(binary: bool) -> Objects:
    from sklearn.utils import all_estimators

    out: Objects = []
    kind = "classifier" if binary else None
    for name, cls in all_estimators(type_filter=kind):
        label = f"{name}-binary" if binary else name
        _try(label, lambda c=cls: _fit(c, binary), out)
    return out


def sklearn_extra_objects() -> Objects:
    import numpy as np
    import pandas as pd
    import sklearn
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    d = _data()
    x, yc, yr = d["X"], d["y_class"], d["y_reg"]
    y_pos, y_bin = np.abs(yr) + 0.1, yc % 2
    out: Objects = []
    # Gaussian-process kernels: every kernel class, alone and fitted in a GP
    from sklearn.gaussian_process import GaussianProcessClassifier, GaussianProcessRegressor
    from sklearn.gaussian_process import kernels as K

    for name, cls in sorted(vars(K).items()):
        if isinstance(cls, type) and issubclass(cls, K.Kernel) and not inspect.isabstract(cls):
            _try(
                f"kernel-{name}",
                lambda c=cls: c() if c not in (K.Exponentiation,) else c(K.RBF(), 2),
                out,
            )
    _try("kernel-sum-product", lambda: K.ConstantKernel() * K.RBF() + K.WhiteKernel(), out)
    _try("kernel-compound", lambda: K.CompoundKernel([K.RBF(), K.DotProduct()]), out)
    _try("kernel-pairwise", lambda: K.PairwiseKernel(metric="rbf"), out)
    _try(
        "gpr-matern", lambda: GaussianProcessRegressor(K.Matern() + K.WhiteKernel()).fit(x, yr), out
    )
    _try("gpc-rq", lambda: GaussianProcessClassifier(K.RationalQuadratic()).fit(x, y_bin), out)
    _try("gpc-multi", lambda: GaussianProcessClassifier(K.RBF()).fit(x, yc), out)
    # cross-validation splitters: every splitter class of model_selection
    import sklearn.model_selection as ms

    for name in sorted(dir(ms)):
        cls = getattr(ms, name)
        if isinstance(cls, type) and (name.endswith(("Fold", "Split")) or "Out" in name):
            kwargs: dict[str, Any] = {}
            if name == "PredefinedSplit":
                kwargs = {"test_fold": [0, 1, -1]}
            elif name == "LeavePOut" or name == "LeavePGroupsOut":
                kwargs = {"p": 1} if name == "LeavePOut" else {"n_groups": 1}
            _try(f"splitter-{name}", lambda c=cls, k=kwargs: c(**k), out)
    # scorers: every name of the scorer registry
    from sklearn import metrics

    names = (
        metrics.get_scorer_names()
        if hasattr(metrics, "get_scorer_names")
        else sorted(metrics.SCORERS)  # scikit-learn < 1.1
    )
    for name in names:
        _try(f"scorer-{name}", lambda n=name: metrics.get_scorer(n), out)
    _try("scorer-made", lambda: metrics.make_scorer(metrics.fbeta_score, beta=2), out)
    # fitted search objects: cv_results_ holds masked arrays of parameters
    grid = {"C": [0.1, 1.0], "penalty": ["l2"]}
    _try("grid-search", lambda: ms.GridSearchCV(LogisticRegression(), grid, cv=2).fit(x, yc), out)
    _try(
        "grid-search-splitter",
        lambda: ms.GridSearchCV(
            Ridge(), {"alpha": [0.1, 1]}, cv=ms.KFold(2, shuffle=True, random_state=0), scoring="r2"
        ).fit(x, yr),
        out,
    )
    _try(
        "randomized-search",
        lambda: ms.RandomizedSearchCV(
            Ridge(), {"alpha": [0.1, 1.0, 10.0]}, n_iter=2, cv=ms.ShuffleSplit(2, random_state=0)
        ).fit(x, yr),
        out,
    )

    def halving() -> Any:
        from sklearn.experimental import enable_halving_search_cv  # noqa: F401

        return ms.HalvingGridSearchCV(Ridge(), {"alpha": [0.1, 1, 10]}, cv=2, min_resources=10).fit(
            x, yr
        )

    _try("halving-search", halving, out)
    try:
        from scipy.stats import loguniform

        _try(
            "randomized-search-dist",
            lambda: ms.RandomizedSearchCV(
                Ridge(), {"alpha": loguniform(0.01, 1)}, n_iter=2, cv=2, random_state=0
            ).fit(x, yr),
            out,
        )
    except ImportError:
        pass
    # MLPs: each solver keeps its optimizer object
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    for solver in ("sgd", "adam", "lbfgs"):
        _try(
            f"mlp-{solver}",
            lambda s=solver: MLPClassifier((4,), solver=s, max_iter=30).fit(x, yc),
            out,
        )
        _try(
            f"mlp-reg-{solver}",
            lambda s=solver: MLPRegressor((4,), solver=s, max_iter=30).fit(x, yr),
            out,
        )
    _try(
        "mlp-early-stopping",
        lambda: MLPClassifier((4,), early_stopping=True, max_iter=30).fit(x, yc),
        out,
    )
    # losses: gradient boosting, histogram gradient boosting, SGD, GLMs
    from sklearn import ensemble, linear_model

    for loss in ("squared_error", "absolute_error", "huber", "quantile", "ls", "lad"):
        _try(
            f"gb-{loss}",
            lambda lo=loss: ensemble.GradientBoostingRegressor(loss=lo, n_estimators=3).fit(
                x, y_pos
            ),
            out,
        )
    for loss in ("log_loss", "deviance", "exponential"):
        _try(
            f"gb-clf-{loss}",
            lambda lo=loss: ensemble.GradientBoostingClassifier(loss=lo, n_estimators=3).fit(
                x, y_bin
            ),
            out,
        )
        _try(
            f"gb-clf3-{loss}",
            lambda lo=loss: ensemble.GradientBoostingClassifier(loss=lo, n_estimators=3).fit(x, yc),
            out,
        )
    try:
        from sklearn.experimental import enable_hist_gradient_boosting  # noqa: F401
    except ImportError:
        pass
    hgb = ensemble.HistGradientBoostingRegressor
    for loss in (
        "squared_error",
        "absolute_error",
        "poisson",
        "gamma",
        "quantile",
        "least_squares",
    ):
        extra = {"quantile": 0.5} if loss == "quantile" else {}
        _try(
            f"hgb-{loss}", lambda lo=loss, e=extra: hgb(loss=lo, max_iter=3, **e).fit(x, y_pos), out
        )
    hgbc = ensemble.HistGradientBoostingClassifier
    _try("hgbc-binary", lambda: hgbc(max_iter=3).fit(x, y_bin), out)
    _try("hgbc-multi", lambda: hgbc(max_iter=3).fit(x, yc), out)
    _try(
        "hgbc-categorical",
        lambda: hgbc(max_iter=3, categorical_features=[0]).fit(np.c_[np.arange(N) % 3, x], yc),
        out,
    )
    sgd_losses = ("hinge", "log_loss", "log", "modified_huber", "squared_hinge", "perceptron")
    for loss in sgd_losses:
        _try(
            f"sgd-{loss}",
            lambda lo=loss: linear_model.SGDClassifier(loss=lo, max_iter=5).fit(x, y_bin),
            out,
        )
    for loss in (
        "squared_error",
        "squared_loss",
        "huber",
        "epsilon_insensitive",
        "squared_epsilon_insensitive",
    ):
        _try(
            f"sgd-reg-{loss}",
            lambda lo=loss: linear_model.SGDRegressor(loss=lo, max_iter=5).fit(x, y_pos),
            out,
        )
    for power, link in (
        (0, "auto"),
        (1, "auto"),
        (1.5, "auto"),
        (1.5, "identity"),
        (2, "log"),
        (3, "auto"),
    ):
        _try(
            f"tweedie-{power}-{link}",
            lambda p=power, li=link: linear_model.TweedieRegressor(power=p, link=li).fit(x, y_pos),
            out,
        )
    _try("poisson", lambda: linear_model.PoissonRegressor().fit(x, y_pos), out)
    _try("gamma", lambda: linear_model.GammaRegressor().fit(x, y_pos), out)
    _try(
        "logistic-multinomial",
        lambda: LogisticRegression(multi_class="multinomial").fit(x, yc),
        out,
    )
    _try(
        "quantile-regressor",
        lambda: linear_model.QuantileRegressor(alpha=0, solver="highs").fit(x, yr),
        out,
    )
    # neighbors: every tree algorithm and metric
    from sklearn.neighbors import BallTree, KDTree, KNeighborsClassifier

    metric_args = {
        "mahalanobis": {"VI": np.eye(4)},
        "seuclidean": {"V": np.ones(4)},
        "wminkowski": {"p": 2, "w": np.ones(4)},
        "minkowski": {"p": 3},
    }
    metrics_ = [
        "euclidean",
        "manhattan",
        "chebyshev",
        "minkowski",
        "seuclidean",
        "mahalanobis",
        "hamming",
        "canberra",
        "braycurtis",
        "haversine",
        "jaccard",
        "dice",
        "matching",
        "rogerstanimoto",
        "russellrao",
        "sokalmichener",
        "sokalsneath",
        "kulsinski",
    ]
    try:
        from sklearn.metrics import DistanceMetric
    except ImportError:
        from sklearn.neighbors import DistanceMetric  # type: ignore[no-redef]
    for metric in metrics_:
        _try(
            f"metric-{metric}",
            lambda m=metric: DistanceMetric.get_metric(m, **metric_args.get(m, {})),
            out,
        )
    _try("ball-tree", lambda: BallTree(x), out)
    _try("ball-tree-haversine", lambda: BallTree(x[:, :2], metric="haversine"), out)
    _try("kd-tree", lambda: KDTree(x, metric="manhattan"), out)
    for algo in ("ball_tree", "kd_tree", "brute"):
        _try(f"knn-{algo}", lambda a=algo: KNeighborsClassifier(3, algorithm=a).fit(x, yc), out)
    _try(
        "knn-minkowski-p3",
        lambda: KNeighborsClassifier(3, algorithm="ball_tree", p=3).fit(x, yc),
        out,
    )
    # compositions
    frame = pd.DataFrame({"num": x[:, 0], "cat": list("abc") * (N // 3)})
    column = ColumnTransformer(
        [
            ("num", StandardScaler(), ["num"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["cat"]),
        ]
    )
    _try("column-pipeline", lambda: make_pipeline(column, LogisticRegression()).fit(frame, yc), out)
    _try(
        "log-target",
        lambda: TransformedTargetRegressor(Ridge(), func=np.log1p, inverse_func=np.expm1).fit(
            x, y_pos
        ),
        out,
    )
    _try("function-transformer", lambda: FunctionTransformer(np.sqrt).fit(x), out)
    _try(
        "random-state",
        lambda: ensemble.RandomForestClassifier(
            n_estimators=2, random_state=np.random.RandomState(0)
        ).fit(x, yc),
        out,
    )
    _try("bunch", lambda: sklearn.utils.Bunch(a=1), out)
    # internal losses of scikit-learn >= 1.1 (sklearn._loss)
    try:
        import sklearn._loss.loss as losses

        for name, cls in sorted(vars(losses).items()):
            if (
                isinstance(cls, type)
                and issubclass(cls, losses.BaseLoss)
                and cls is not losses.BaseLoss
            ):
                _try(f"loss-{name}", lambda c=cls: c(), out)
    except ImportError:
        pass
    return out


def xgboost_objects() -> Objects:
    import xgboost

    d = _data()
    p = {"n_estimators": 2, "max_depth": 2, "n_jobs": 1}
    out: Objects = []
    _try("XGBClassifier", lambda: xgboost.XGBClassifier(**p).fit(d["X"], d["y_class"]), out)
    _try(
        "XGBClassifier-binary",
        lambda: xgboost.XGBClassifier(**p).fit(d["X"], d["y_class"] % 2),
        out,
    )
    _try("XGBRegressor", lambda: xgboost.XGBRegressor(**p).fit(d["X"], d["y_reg"]), out)
    _try("XGBRFClassifier", lambda: xgboost.XGBRFClassifier(**p).fit(d["X"], d["y_class"]), out)
    _try("XGBRFRegressor", lambda: xgboost.XGBRFRegressor(**p).fit(d["X"], d["y_reg"]), out)
    _try(
        "XGBRanker",
        lambda: xgboost.XGBRanker(**p).fit(d["X"], d["y_class"], group=[10, 10, 10]),
        out,
    )
    _try("Booster", lambda: xgboost.XGBRegressor(**p).fit(d["X"], d["y_reg"]).get_booster(), out)
    return out


def lightgbm_objects() -> Objects:
    import lightgbm

    d = _data()
    p = {"n_estimators": 2, "num_leaves": 4, "min_child_samples": 2, "verbose": -1}
    out: Objects = []
    _try("LGBMClassifier", lambda: lightgbm.LGBMClassifier(**p).fit(d["X"], d["y_class"]), out)
    _try(
        "LGBMClassifier-binary",
        lambda: lightgbm.LGBMClassifier(**p).fit(d["X"], d["y_class"] % 2),
        out,
    )
    _try("LGBMRegressor", lambda: lightgbm.LGBMRegressor(**p).fit(d["X"], d["y_reg"]), out)
    _try(
        "LGBMRanker",
        lambda: lightgbm.LGBMRanker(**p).fit(d["X"], d["y_class"], group=[10, 10, 10]),
        out,
    )
    _try("Booster", lambda: lightgbm.LGBMRegressor(**p).fit(d["X"], d["y_reg"]).booster_, out)
    return out


GROUPS: dict[str, Callable[[], Objects]] = {
    "stdlib": stdlib_objects,
    "numpy": numpy_objects,
    "scipy": scipy_objects,
    "pandas": pandas_objects,
    "sklearn": lambda: sklearn_estimators(binary=False),
    "sklearn-binary": lambda: sklearn_estimators(binary=True),
    "sklearn-extra": sklearn_extra_objects,
    "xgboost": xgboost_objects,
    "lightgbm": lightgbm_objects,
}


def releases() -> dict[str, str]:
    import importlib

    found = {"python": platform.python_version()}
    for key, module in (
        ("numpy", "numpy"),
        ("scipy", "scipy"),
        ("pandas", "pandas"),
        ("scikit-learn", "sklearn"),
        ("joblib", "joblib"),
        ("xgboost", "xgboost"),
        ("lightgbm", "lightgbm"),
        ("python-dateutil", "dateutil"),
        ("pytz", "pytz"),
    ):
        try:
            found[key] = str(importlib.import_module(module).__version__)
        except ImportError:
            pass
    return found


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", label)


def main(argv: list[str]) -> int:
    out = pathlib.Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    joblib_objects: Objects = []
    for group, build in GROUPS.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                objects = build()
        except Exception:
            SKIPPED[group] = traceback.format_exc(limit=2)[-300:]
            continue
        folder = out / group
        folder.mkdir(exist_ok=True)
        for label, obj in objects:
            for proto in range(pickle.HIGHEST_PROTOCOL + 1):
                try:
                    data = pickle.dumps(obj, protocol=proto)
                except Exception as exc:
                    SKIPPED[f"{group}/{label}/p{proto}"] = f"{type(exc).__name__}: {exc}"[:200]
                    continue
                name = f"{group}/{_safe(label)}.p{proto}"
                (out / name).write_bytes(data)
                files.append(name)
            if group == "sklearn" and label in ("RandomForestClassifier", "LogisticRegression"):
                joblib_objects.append((label, obj))
            if group == "pandas" and label == "frame-mixed":
                joblib_objects.append((label, obj))
    import joblib
    import numpy as np

    joblib_objects.append(("arrays", {"f8": np.arange(3.0), "O": np.array([1, "a"], dtype=object)}))
    (out / "joblib").mkdir(exist_ok=True)
    for label, obj in joblib_objects:
        buf = io.BytesIO()
        joblib.dump(obj, buf)
        name = f"joblib/{_safe(label)}.joblib"
        (out / name).write_bytes(buf.getvalue())
        files.append(name)
    manifest = {"releases": releases(), "files": sorted(files), "skipped": SKIPPED}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    print(f"{len(files)} files, {len(SKIPPED)} skipped -> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main(sys.argv[1:]))
