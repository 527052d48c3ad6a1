"""Save the cross-release fixture corpus of one library generation.

    <generation venv>/bin/python tools/make_generation_fixtures.py OUT_DIR
    <dev venv>/bin/python tools/make_generation_fixtures.py --torch OUT_DIR
    <generation venv>/bin/python tools/make_generation_fixtures.py --boosting OUT_DIR

Run by `python -m tools.generations fixtures` with the Python of each older
generation's virtualenv; the files go to tests/fixtures/generations/<gen>/.
The objects are built the way a user saves a model, on purpose NOT with the
pack generator's enumeration (tools/generation_enumerate.py): other data
(make_classification / make_regression / a small frame), default
constructors with a few size limits, hand-built meta-estimators, and other
writers (`pickle.dump` to a file and compressed `joblib.dump`), so that a
fixture scanning safe is evidence that the packs generalise, not that they
list what this script pickled.

Files: sklearn/<Estimator>.joblib (every all_estimators() class that fits on
the toy data, zlib-compressed joblib), search/pipelines/kernels, pandas/*.pkl
(pandas.to_pickle), numpy/*.pkl and *.npy (np.save with allow_pickle),
scipy/*.pkl, boosting/* (xgboost and lightgbm wrappers and raw boosters, pickled
and joblib-dumped; --boosting makes only these, keeping the folder's other files);
with --torch (the development venv's torch, the only torch
release installable here) torch/*.pt checkpoints holding numpy values and
argparse options, in the zip and the legacy layout, a whole module, uint16 and
float8 tensors, a quantized tensor, and a tensor pickled the way torch 0.4.0
did (_rebuild_tensor); and index.json: per file the object and the library releases,
and the estimators that could not be fitted with why.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import pickle
import platform
import sys
import warnings
from collections.abc import Callable
from typing import Any

SEED = 7
INDEX: dict[str, dict[str, str]] = {}
NOT_FITTED: dict[str, str] = {}


def _data() -> dict[str, Any]:
    import numpy as np
    from sklearn.datasets import make_classification, make_regression

    x, yc = make_classification(
        n_samples=24, n_features=5, n_informative=3, n_classes=3, random_state=SEED
    )
    xr, yr = make_regression(n_samples=24, n_features=5, random_state=SEED)
    return {"X": x - x.min() + 0.5, "yc": yc, "Xr": xr, "yr": yr, "rng": np.random}


def _shrink(est: Any) -> Any:
    params = est.get_params(deep=False)
    limits = {"n_estimators": 2, "max_iter": 15, "n_init": 1, "cv": 2, "max_depth": 3}
    est.set_params(**{k: v for k, v in limits.items() if k in params})
    return est


def _meta(name: str) -> Any:
    """Meta-estimators built by hand, as a user writes them."""
    import sklearn
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.preprocessing import MinMaxScaler
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    all_est = dict(sklearn.utils.all_estimators())
    cls = all_est[name]
    reg = getattr(cls, "_estimator_type", "") == "regressor" or "Regressor" in name
    base = DecisionTreeRegressor(max_depth=2) if reg else DecisionTreeClassifier(max_depth=2)
    linear = LinearRegression() if reg else LogisticRegression(max_iter=50)
    if name in ("Pipeline",):
        return cls([("scale", MinMaxScaler()), ("model", LogisticRegression(max_iter=50))])
    if name == "FeatureUnion":
        return cls([("a", MinMaxScaler()), ("b", MinMaxScaler())])
    if name == "ColumnTransformer":
        return cls([("a", MinMaxScaler(), [0, 1])], remainder="passthrough")
    if name.startswith("Stacking") or name.startswith("Voting"):
        return cls([("a", base), ("b", linear)])
    if name in ("SelectFromModel", "RFE", "RFECV", "SequentialFeatureSelector"):
        return cls(linear)
    if name in ("GridSearchCV", "HalvingGridSearchCV"):
        return cls(base, {"max_depth": [1, 2]}, cv=2)
    if name in ("RandomizedSearchCV", "HalvingRandomSearchCV"):
        return cls(base, {"max_depth": [1, 2, 3]}, cv=2, random_state=0)
    if name == "SparseCoder":
        import numpy as np

        return cls(dictionary=np.eye(5)[:3])
    if name in (
        "ClassifierChain",
        "RegressorChain",
        "MultiOutputClassifier",
        "MultiOutputRegressor",
        "SelfTrainingClassifier",
    ):
        return cls(linear)
    if name == "FrozenEstimator":
        d = _data()
        return cls(LogisticRegression(max_iter=50).fit(d["X"], d["yc"]))
    for key in ("estimator", "base_estimator", "regressor", "classifier", "estimators"):
        try:
            return cls(**{key: base if key != "estimators" else [("a", base)]})
        except TypeError:
            continue
    return cls()


def _input_kinds(est: Any) -> str:
    """The estimator's input kinds in scikit-learn < 1.6's tag words."""
    try:
        from sklearn.utils import get_tags  # scikit-learn >= 1.6
    except ImportError:
        tags = est._get_tags() if hasattr(est, "_get_tags") else {}
        return str(tags.get("X_types", ["2darray"]))
    tags = get_tags(est)
    inputs = tags.input_tags
    kinds = [
        k
        for k, on in (
            ("2darray", inputs.two_d_array),
            ("string", inputs.string),
            ("dict", inputs.dict),
        )
        if on
    ]
    if not kinds and tags.target_tags.one_d_labels:
        kinds.append("1dlabels")
    if not kinds and tags.target_tags.two_d_labels:
        kinds.append("2dlabels")
    return str(kinds)


def _fit(name: str, cls: type) -> Any:
    d = _data()
    try:
        est = cls()
    except TypeError:
        est = _meta(name)
    est = _shrink(est)
    params = est.get_params(deep=False)
    if name.endswith("RandomProjection"):
        est.set_params(n_components=2)
    if name in ("CCA", "PLSCanonical", "PLSSVD"):
        est.set_params(n_components=1)
    if name == "SelectKBest":
        est.set_params(k=2)
    if name == "TSNE":
        est.set_params(perplexity=4.0, **{k: 250 for k in ("max_iter", "n_iter") if k in params})
    if name.startswith("GraphicalLasso"):
        est.set_params(alpha=0.9) if "alpha" in params else None
    kinds = _input_kinds(est)
    from sklearn.base import is_regressor

    reg = is_regressor(est)
    if "2darray" in kinds:
        kinds = "2darray"
    if "dict" in kinds:
        return est.fit([{"x": 1.0}, {"y": 2.0, "x": 0.5}] * 3)
    if "string" in kinds or "text" in kinds:
        return est.fit(["red fox", "blue fox", "red hen"] * 4)
    if "labels" in kinds:
        return est.fit(["b", "a", "c", "a"] if "1d" in kinds else [["a"], ["a", "b"]])
    x, y = (d["Xr"], d["yr"]) if reg else (d["X"], d["yc"])
    if name in ("PoissonRegressor", "GammaRegressor", "TweedieRegressor"):
        y = abs(y) + 1.0
    if name in ("IsotonicRegression",):
        x = x[:, 0]
    if name == "KernelCenterer":
        x = x @ x.T
    if name in ("TargetEncoder", "FixedThresholdClassifier", "TunedThresholdClassifierCV"):
        y = y % 2
    if name.startswith(("MultiOutput", "MultiTask")) or "Chain" in name:
        import numpy as np

        y = np.c_[y, y[::-1]] if reg or name.startswith("MultiTask") else np.c_[y % 2, y[::-1] % 2]
    for args in ((x, y), (x,)):
        try:
            return est.fit(*args)
        except TypeError:
            continue
    return est.fit(x, y)


def sklearn_files(out: pathlib.Path) -> None:
    import joblib
    from sklearn.utils import all_estimators

    folder = out / "sklearn"
    folder.mkdir(parents=True, exist_ok=True)
    for name, cls in all_estimators():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est = _fit(name, cls)
        except Exception as exc:
            NOT_FITTED[name] = f"{type(exc).__name__}: {str(exc)[:160]}"
            continue
        path = folder / f"{name}.joblib"
        joblib.dump(est, path, compress=3)
        if path.stat().st_size > 60_000:  # keep the corpus small
            path.unlink()
            NOT_FITTED[name] = "larger than 60 kB pickled"
            continue
        INDEX[f"sklearn/{name}.joblib"] = {
            "object": f"fitted {name}",
            "writer": "joblib.dump(compress=3)",
        }


def _save(out: pathlib.Path, rel: str, obj: Any, what: str) -> None:
    path = out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if rel.endswith(".joblib"):
        import joblib

        joblib.dump(obj, path, compress=("gzip", 3))
        writer = "joblib.dump(compress=gzip)"
    else:
        with open(path, "wb") as fh:
            pickle.dump(obj, fh)
        writer = "pickle.dump (default protocol)"
    INDEX[rel] = {"object": what, "writer": writer}


def _attempt(out: pathlib.Path, rel: str, make: Callable[[], Any], what: str) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _save(out, rel, make(), what)
    except Exception as exc:
        NOT_FITTED[rel] = f"{type(exc).__name__}: {str(exc)[:160]}"


def model_files(out: pathlib.Path) -> None:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import (
        RBF,
        ConstantKernel,
        ExpSineSquared,
        WhiteKernel,
    )
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.model_selection import (
        GridSearchCV,
        RandomizedSearchCV,
        StratifiedKFold,
        TimeSeriesSplit,
    )
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    d = _data()
    x, yc, xr, yr = d["X"], d["yc"], d["Xr"], d["yr"]
    frame = pd.DataFrame(
        {"age": x[:, 0], "city": ["Oslo", "Rome", "Lima", "Oslo"] * 6, "n": x[:, 1]}
    )
    prep = ColumnTransformer(
        [
            ("num", Pipeline([("imp", SimpleImputer()), ("sc", StandardScaler())]), ["age", "n"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
        ]
    )
    _attempt(
        out,
        "models/column-pipeline.joblib",
        lambda: Pipeline([("prep", prep), ("clf", LogisticRegression(max_iter=50))]).fit(frame, yc),
        "Pipeline(ColumnTransformer(imputer+scaler, one-hot), LogisticRegression) on a frame",
    )
    _attempt(
        out,
        "models/grid-search-stratified.pkl",
        lambda: GridSearchCV(
            SGDClassifier(max_iter=20),
            {"alpha": [1e-4, 1e-2], "loss": ["hinge", "modified_huber"]},
            cv=StratifiedKFold(2),
            scoring="accuracy",
        ).fit(x, yc),
        "GridSearchCV(SGDClassifier) with a StratifiedKFold and a scorer name",
    )
    _attempt(
        out,
        "models/randomized-search-timeseries.joblib",
        lambda: RandomizedSearchCV(
            MLPClassifier((3,), solver="sgd", max_iter=10),
            {"alpha": [1e-3, 1e-1]},
            n_iter=2,
            cv=TimeSeriesSplit(2),
            random_state=1,
        ).fit(x, yc),
        "RandomizedSearchCV(MLPClassifier sgd) with a TimeSeriesSplit",
    )
    _attempt(
        out,
        "models/gp-kernels.pkl",
        lambda: GaussianProcessRegressor(
            ConstantKernel() * RBF() + WhiteKernel() + ExpSineSquared(),
            alpha=0.5,
            normalize_y=True,
            optimizer=None,
        ).fit(xr[:, :2], yr),
        "GaussianProcessRegressor with a composite kernel",
    )
    _attempt(
        out,
        "models/mlp-adam.pkl",
        lambda: MLPClassifier((5,), max_iter=20).fit(x, yc),
        "MLPClassifier adam",
    )


def data_files(out: pathlib.Path) -> None:
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp
    from dateutil import tz as dtz

    n = 3
    stamps = lambda tz: pd.date_range("2021-03-27", periods=n, freq="12h", tz=tz)  # noqa: E731
    tzs: dict[str, Any] = {
        "utc": "UTC",
        "offset": datetime.timezone(datetime.timedelta(hours=5, minutes=30)),
        "dateutil": dtz.gettz("Asia/Tokyo"),
        "dateutil-utc": dtz.tzutc(),
    }
    try:
        import pytz

        tzs["pytz"] = pytz.timezone("America/Chicago")
        tzs["pytz-fixed"] = pytz.FixedOffset(-120)
    except ImportError:
        pass
    try:
        import zoneinfo

        tzs["zoneinfo"] = zoneinfo.ZoneInfo("Australia/Sydney")
    except ImportError:
        pass
    for label, tz in tzs.items():
        _attempt(
            out,
            f"pandas/tz-{label}.pkl",
            lambda t=tz: pd.DataFrame({"when": stamps(t), "v": range(n)}),
            f"frame with a tz-aware column ({label})",
        )
    ext = {
        "Int32": [1, None, 3],
        "UInt8": [1, 2, None],
        "Float64": [0.5, None, 1.5],
        "boolean": [True, None, False],
        "string": ["x", None, "z"],
        "category": ["u", "v", "u"],
    }
    _attempt(
        out,
        "pandas/extension-dtypes.pkl",
        lambda: pd.DataFrame(
            {
                k: pd.array(v, dtype=k) if k != "category" else pd.Categorical(v)
                for k, v in ext.items()
            }
        ),
        "frame with nullable, string and categorical columns",
    )
    _attempt(
        out,
        "pandas/period-interval-sparse.pkl",
        lambda: pd.DataFrame(
            {
                "p": pd.period_range("2021-01", periods=n, freq="M"),
                "i": pd.interval_range(0, n),
                "s": pd.arrays.SparseArray([0.0, 1.0, 0.0]),
            }
        ),
        "frame with period, interval and sparse columns",
    )
    _attempt(
        out,
        "pandas/indexes.pkl",
        lambda: {
            "multi": pd.MultiIndex.from_arrays([["a", "b"], [1, 2]]),
            "td": pd.timedelta_range("1h", periods=2),
            "ci": pd.CategoricalIndex(["x", "y"]),
            "rng": pd.RangeIndex(2, 8, 2),
            "nat": pd.NaT,
            "na": pd.NA,
        },
        "index kinds, NaT and NA",
    )
    _attempt(
        out,
        "numpy/arrays.pkl",
        lambda: {
            "masked": np.ma.array([[1, 2], [3, 4]], mask=[[0, 1], [0, 0]]),
            "record": np.rec.array(
                [(1, b"a", 2.5)], dtype=[("id", "i2"), ("tag", "S1"), ("w", "f8")]
            ),
            "dates": np.arange("2021-01", "2021-04", dtype="datetime64[M]"),
            "deltas": np.array([3, 4], dtype="timedelta64[h]"),
            "f16": np.ones(2, np.float16),
            "c": np.array([1 + 2j]),
        },
        "masked, record, datetime64 and timedelta64 arrays",
    )
    path = out / "numpy/object-array.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.array([{"k": 1}, "s", 2.0], dtype=object), allow_pickle=True)
    INDEX["numpy/object-array.npy"] = {
        "object": "object array",
        "writer": "numpy.save(allow_pickle=True)",
    }
    _attempt(
        out,
        "numpy/generators.pkl",
        lambda: {"rng": np.random.default_rng(3), "legacy": np.random.RandomState(3)},
        "numpy Generator and RandomState",
    )
    dense = np.array([[0.0, 2.0], [3.0, 0.0]])

    def mats(kind: str) -> dict[str, Any]:
        return {
            f: getattr(sp, f"{f}_{kind}")(dense)
            for f in ("csr", "csc", "coo", "lil", "dok", "bsr", "dia")
            if hasattr(sp, f"{f}_{kind}")
        }

    _attempt(
        out, "scipy/sparse-matrices.pkl", lambda: mats("matrix"), "every scipy.sparse matrix format"
    )
    if hasattr(sp, "csr_array"):
        _attempt(
            out, "scipy/sparse-arrays.pkl", lambda: mats("array"), "every scipy.sparse array format"
        )


def boosting_files(out: pathlib.Path) -> None:
    """xgboost and lightgbm models of the generation's releases: the scikit-learn
    wrappers and the raw boosters, pickled and joblib-dumped."""
    d = _data()
    x, yc, xr, yr = d["X"], d["yc"], d["Xr"], d["yr"]
    small = {"n_estimators": 3, "max_depth": 2}
    try:
        import xgboost as xgb
    except ImportError as exc:
        NOT_FITTED["boosting/xgboost"] = f"ImportError: {exc}"
    else:
        for ext in ("pkl", "joblib"):
            _attempt(
                out,
                f"boosting/xgb-classifier.{ext}",
                lambda: xgb.XGBClassifier(**small).fit(x, yc),
                f"xgboost {xgb.__version__} XGBClassifier (3 classes)",
            )
            _attempt(
                out,
                f"boosting/xgb-booster.{ext}",
                lambda: xgb.train({"max_depth": 2}, xgb.DMatrix(xr, label=yr), 3),
                f"xgboost {xgb.__version__} Booster (xgboost.train)",
            )
        _attempt(
            out,
            "boosting/xgb-regressor.joblib",
            lambda: xgb.XGBRegressor(**small).fit(xr, yr),
            f"xgboost {xgb.__version__} XGBRegressor",
        )
    try:
        import lightgbm as lgb
    except ImportError as exc:
        NOT_FITTED["boosting/lightgbm"] = f"ImportError: {exc}"
    else:
        leaves = {"n_estimators": 3, "num_leaves": 4, "min_child_samples": 2, "verbose": -1}
        params = {"num_leaves": 4, "min_data_in_leaf": 2, "verbose": -1}
        for ext in ("pkl", "joblib"):
            _attempt(
                out,
                f"boosting/lgbm-classifier.{ext}",
                lambda: lgb.LGBMClassifier(**leaves).fit(x, yc),
                f"lightgbm {lgb.__version__} LGBMClassifier (3 classes)",
            )
            _attempt(
                out,
                f"boosting/lgbm-booster.{ext}",
                lambda: lgb.train(params, lgb.Dataset(xr, label=yr), 3),
                f"lightgbm {lgb.__version__} Booster (lightgbm.train)",
            )
        _attempt(
            out,
            "boosting/lgbm-regressor.joblib",
            lambda: lgb.LGBMRegressor(**leaves).fit(xr, yr),
            f"lightgbm {lgb.__version__} LGBMRegressor",
        )


class _OldTensor:
    """Pickles a tensor the way torch 0.4.0 did: _rebuild_tensor(storage, offset,
    size, stride), the storage by persistent id (still in torch's weights_only
    allowlist, and in published .pth files)."""

    def __init__(self, tensor: Any) -> None:
        self.tensor = tensor

    def __reduce_ex__(self, protocol: Any) -> Any:
        import torch

        t = self.tensor
        args = (t.storage(), t.storage_offset(), tuple(t.size()), t.stride())
        return (torch._utils._rebuild_tensor, args)


def torch_files(out: pathlib.Path) -> None:
    """Checkpoints made with the installed torch (the only torch release here)."""
    import argparse

    import numpy as np
    import torch

    torch.manual_seed(SEED)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    checkpoint = {
        "args": argparse.Namespace(lr=0.1, epochs=10, arch="mlp", seed=SEED),
        "epoch": np.int64(7),
        "best_acc": np.float64(0.875),
        "history": np.linspace(0.0, 1.0, 4),
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
    }
    folder = out
    files = {
        "checkpoint-argparse-numpy.pt": (checkpoint, True),
        "checkpoint-legacy-format.pt": (checkpoint, False),
        "whole-module.pt": (model, True),
        "rebuild-tensor-v1.pth": (
            {"net.weight": _OldTensor(torch.arange(6.0).reshape(2, 3))},
            False,
        ),
        "uint16-float8.pt": (
            {
                "u16": torch.tensor([1, 2, 3]).to(torch.uint16),
                "f8": torch.zeros(2, dtype=torch.float8_e4m3fn),
            },
            True,
        ),
        "quantized-per-tensor.pt": (
            torch.quantize_per_tensor(torch.ones(3), 0.1, 0, torch.quint8),
            True,
        ),
        "numpy-rng-state.pt": (
            {
                "numpy_rng": np.random.RandomState(SEED).get_state(),
                "torch_rng": torch.get_rng_state(),
            },
            True,
        ),
    }
    for name, (obj, zipped) in files.items():
        torch.save(obj, folder / name, _use_new_zipfile_serialization=zipped)
        layout = "zip" if zipped else "legacy (_use_new_zipfile_serialization=False)"
        INDEX[name] = {"object": name.rsplit(".", 1)[0], "writer": f"torch.save, {layout}"}


def releases() -> dict[str, str]:
    import importlib

    found = {"python": platform.python_version()}
    for key, module in (
        ("numpy", "numpy"),
        ("scipy", "scipy"),
        ("pandas", "pandas"),
        ("scikit-learn", "sklearn"),
        ("joblib", "joblib"),
    ):
        found[key] = str(importlib.import_module(module).__version__)
    for key in ("xgboost", "lightgbm"):
        try:
            found[key] = str(importlib.import_module(key).__version__)
        except ImportError:
            pass
    try:
        found["torch"] = str(importlib.import_module("torch").__version__)
    except ImportError:
        pass
    return found


def main(argv: list[str]) -> int:
    out = pathlib.Path(argv[-1])
    out.mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = {"releases": {}, "files": {}, "not_saved": {}}
    if argv[0] == "--torch":
        torch_files(out)
    elif argv[0] == "--boosting":  # add to a generation's files, keep the others
        if (out / "index.json").exists():
            index = json.loads((out / "index.json").read_text())
        for key in list(index["files"]):
            if key.startswith("boosting/"):
                del index["files"][key]
        boosting_files(out)
    else:
        sklearn_files(out)
        model_files(out)
        data_files(out)
        boosting_files(out)
    index["releases"].update(releases())
    index["files"].update(INDEX)
    index["not_saved"].update(NOT_FITTED)
    (out / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(
        f"{len(INDEX)} files, {size} bytes, {len(NOT_FITTED)} not saved -> {out}", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
