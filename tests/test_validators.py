"""State checks of allowlisted types whose native code trusts their content.

Each hostile file here names only allowlisted globals, so the scan calls it
safe; its state is what is wrong. The proof runs the plain loader and the
model's own method in a subprocess and sees the process crash or hang; the
guarded loader must refuse the same bytes.
"""

from __future__ import annotations

import io
import pickle
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from unittest import mock

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier
from sklearn.tree._tree import Tree

import safeload

X = np.random.default_rng(0).random((80, 4))
Y = (X[:, 0] + X[:, 1] > 1).astype(int) + (X[:, 2] > 0.5).astype(int)

_PROOF = """
import pickle, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
model = pickle.loads(open(sys.argv[1], "rb").read())
X = np.random.default_rng(0).random((80, 4))
print("loaded", flush=True)
if hasattr(model, "predict"):
    model.predict(X)
elif hasattr(model, "query"):
    model.query(X, k=50)
    model.query_radius(X, r=10.0)
else:
    model.toarray()
print("survived", flush=True)
"""


def plain_outcome(path: Path, timeout: float = 5.0) -> str:
    """What the plain loader plus one prediction does to a process: crash, hang or survive."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROOF, str(path)],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "hang"
    if done.returncode == -signal.SIGSEGV or done.returncode == -signal.SIGBUS:
        return "crash"
    return "survived" if b"survived" in done.stdout else f"exit {done.returncode}"


def refused(data: bytes, *, scan: str | None = None) -> str:
    """The guarded loader's refusal of `data` by its own (real-side) checks.

    Only allowlisted names: the state is the attack. The scan calls it safe, or
    (`scan`) refuses it under that rule alone; the load is then made with the
    scan's judgment set aside, so the real check is what refuses it.
    """
    report = safeload.scan_bytes(data)
    if scan is None:
        assert report.safe, report.findings
    else:
        assert not report.safe and {f.rule for f in report.findings} == {scan}, report.findings
    with mock.patch("safeload.load._guarded.judge", lambda located, policy: []):
        with pytest.raises(safeload.UnsafeFileError) as info:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", safeload.UnsignedLoadWarning)
                safeload.loads(data, require_signature=False)
    return str(info.value)


def tree_model(mutate: str) -> bytes:
    model = DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, Y)
    state = model.tree_.__getstate__()
    nodes = state["nodes"].copy()
    inner = int(np.flatnonzero(nodes["left_child"] != -1)[1])
    if mutate == "feature":
        nodes["feature"][inner] = 10**9
    elif mutate == "cycle":
        nodes["left_child"][inner] = 0
        nodes["right_child"][inner] = 0
    elif mutate == "child":
        nodes["right_child"][inner] = len(nodes) + 10**6
    elif mutate == "one-child":
        nodes["left_child"][inner] = -1
    state["nodes"] = nodes
    model.tree_.__setstate__(state)
    return pickle.dumps(model)


@pytest.mark.parametrize(
    ("mutate", "proof", "reason"),
    [
        ("feature", "crash", "splits on feature 1000000000 of 4"),
        ("cycle", "hang", "left child 0 is not a later node"),
        ("child", None, "right child"),
        ("one-child", None, "exactly one child"),
    ],
)
def test_tree_nodes_out_of_range_are_refused(
    tmp_path: Path, mutate: str, proof: str | None, reason: str
) -> None:
    data = tree_model(mutate)
    if proof is not None:
        path = tmp_path / "tree.pkl"
        path.write_bytes(data)
        # A hang is what outlives 5 s; a crash may take longer to start on a busy machine.
        assert plain_outcome(path, timeout=5.0 if proof == "hang" else 60.0) == proof
    message = refused(data, scan="SL406")  # the scan reads the node array too
    assert "scikit-learn Tree" in message and reason in message


class _TreeCall:
    """Pickles as `Tree(*args)`: the constructor call a hostile file can make."""

    def __init__(self, *args: object) -> None:
        self.args = args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Tree, self.args)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ((4, np.array([3], dtype=np.intp), 1_000_000), "n_outputs"),
        ((4, np.array([3], dtype=np.intp), 2), "one count per output"),
        ((4, np.array([0], dtype=np.intp), 1), "out of range"),
        ((-1, np.array([3], dtype=np.intp), 1), "n_features"),
        ((4, np.array([3.0]), 1), "integer array"),
    ],
)
def test_tree_constructor_arguments_are_checked_before_the_call(
    args: tuple[object, ...], reason: str
) -> None:
    # Tree.__cinit__ reads n_classes[k] for every output without bounds checks.
    message = refused(pickle.dumps([_TreeCall(*args)]), scan="SL406")
    assert "Tree() call" in message and reason in message


def test_hist_gradient_boosting_predictor_out_of_range_is_refused(tmp_path: Path) -> None:
    model = HistGradientBoostingClassifier(max_iter=3, random_state=0).fit(X, Y)
    predictor = model._predictors[0][0]
    inner = int(np.flatnonzero(predictor.nodes["is_leaf"] == 0)[0])
    predictor.nodes["feature_idx"][inner] = 10**8
    path = tmp_path / "hgb.pkl"
    data = pickle.dumps(model)
    path.write_bytes(data)
    assert plain_outcome(path, timeout=60.0) == "crash"
    assert "splits on feature 100000000" in refused(data)


def test_hist_gradient_boosting_feature_past_the_models_inputs_is_refused() -> None:
    model = HistGradientBoostingClassifier(max_iter=3, random_state=0).fit(X, Y)
    predictor = model._predictors[0][0]
    inner = int(np.flatnonzero(predictor.nodes["is_leaf"] == 0)[0])
    predictor.nodes["feature_idx"][inner] = 4  # one past the 4 columns predict accepts
    assert "splits on feature 4" in refused(pickle.dumps(model))


@pytest.mark.parametrize("fmt", ["csr", "csc", "bsr", "coo"])
def test_sparse_indices_out_of_range_are_refused(tmp_path: Path, fmt: str) -> None:
    matrix = sp.random(50, 40, density=0.2, format="csr", random_state=0).asformat(fmt)
    if fmt == "coo":
        matrix.coords[1][3] = 10**8
    else:
        matrix.indices[3] = 10**8
    data = pickle.dumps(matrix)
    if fmt == "csr":
        path = tmp_path / "sparse.pkl"
        path.write_bytes(data)
        assert plain_outcome(path, timeout=60.0) == "crash"
    assert f"invalid {type(matrix).__name__}" in refused(data)


def test_genuine_models_load_and_predict_the_same() -> None:
    categorical = np.c_[X[:, :3], (X[:, 3] * 4).astype(int)]
    models = [
        (RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(X, Y), X),
        (HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(X, Y), X),
        (
            HistGradientBoostingClassifier(
                max_iter=5, random_state=0, categorical_features=[3]
            ).fit(categorical, Y),
            categorical,
        ),
    ]
    for model, inputs in models:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", safeload.UnsignedLoadWarning)
            loaded = safeload.loads(pickle.dumps(model), require_signature=False)
        assert (loaded.predict(inputs) == model.predict(inputs)).all()
    for fmt in ("csr", "csc", "bsr", "coo", "dia", "lil", "dok"):
        matrix = sp.random(20, 10, density=0.3, format=fmt, random_state=1)
        for value in (matrix, sp.csr_array(matrix).asformat(fmt)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", safeload.UnsignedLoadWarning)
                loaded = safeload.loads(pickle.dumps(value), require_signature=False)
            assert (loaded != value).nnz == 0


# -- neighbor trees and distance metrics ---------------------------------------------------------


def neighbor_tree(kind: str, mutate: str) -> bytes:
    from sklearn.neighbors import BallTree, KDTree

    tree = (KDTree if kind == "kd" else BallTree)(np.random.default_rng(1).random((200, 4)))
    state = list(tree.__getstate__())
    if mutate == "index":
        state[1] = state[1].copy()
        state[1][5] = 10**9
    elif mutate == "node-end":
        nodes = state[2].copy()
        nodes["idx_end"][-1] = 10**8
        state[2] = nodes
    elif mutate == "levels":
        state[5] = 40
    elif mutate == "inner-leaf":
        nodes = state[2].copy()
        nodes["is_leaf"][-1] = 0  # a last-level node said to have children
        state[2] = nodes
    tree.__setstate__(tuple(state))
    return pickle.dumps(tree)


@pytest.mark.parametrize("kind", ["kd", "ball"])
@pytest.mark.parametrize(
    ("mutate", "proof", "reason"),
    [
        ("index", "crash", "index 1000000000 is not one of the 200 samples"),
        ("node-end", "crash", "spans [") ,
        ("levels", None, "2**n_levels - 1 of n_levels 40"),
        ("inner-leaf", None, "is not a leaf but has no children"),
    ],
)  # fmt: skip
def test_neighbor_tree_state_out_of_range_is_refused(
    tmp_path: Path, kind: str, mutate: str, proof: str | None, reason: str
) -> None:
    data = neighbor_tree(kind, mutate)
    if proof is not None:
        path = tmp_path / "tree.pkl"
        path.write_bytes(data)
        assert plain_outcome(path, timeout=60) == proof  # a crash, whatever the load on the machine
    messages = [f.message for f in safeload.scan_bytes(data).findings]
    assert any("check sklearn-neighbor-tree failed" in m and reason in m for m in messages)
    message = refused(data, scan="SL406")
    assert "scikit-learn neighbor tree" in message and reason in message


def test_neighbor_tree_in_a_joblib_file_is_checked_by_the_loader() -> None:
    from sklearn.neighbors import KNeighborsClassifier

    model = KNeighborsClassifier(algorithm="kd_tree").fit(X, Y)
    state = list(model._tree.__getstate__())
    state[1] = state[1].copy()
    state[1][3] = -(10**9)
    model._tree.__setstate__(tuple(state))
    buf = io.BytesIO()
    joblib.dump(model, buf)
    assert "index -1000000000 is not one of the 80 samples" in refused(buf.getvalue())


def test_mahalanobis_matrix_that_is_not_square_is_refused() -> None:
    # Its distance reads the matrix as rows x rows: (d, 1) is read past its end
    # (garbage distances, up to d doubles beyond; no crash at this size).
    from sklearn.metrics import DistanceMetric

    metric = DistanceMetric.get_metric("mahalanobis", VI=np.eye(50))
    p, vec, _ = metric.__getstate__()
    metric.__setstate__((p, vec, np.ones((50, 1))))
    data = pickle.dumps(metric)
    messages = [f.message for f in safeload.scan_bytes(data).findings]
    assert any("sklearn-distance-metric failed" in m and "(50, 1)" in m for m in messages)
    assert "read as square" in refused(data, scan="SL406")


def test_genuine_neighbor_models_load_and_query_the_same() -> None:
    from sklearn.neighbors import (
        BallTree,
        KDTree,
        KernelDensity,
        KNeighborsClassifier,
        NearestNeighbors,
    )

    rng = np.random.default_rng(2)
    objects: list[object] = []
    for n in (1, 2, 7, 300):
        points = rng.random((n, 3))
        for leaf_size in (1, 2, 40):
            objects += [KDTree(points, leaf_size=leaf_size), BallTree(points, leaf_size=leaf_size)]
    objects += [KNeighborsClassifier(algorithm=a).fit(X, Y) for a in ("kd_tree", "ball_tree")]
    objects += [
        NearestNeighbors(
            algorithm="ball_tree", metric="mahalanobis", metric_params={"VI": np.eye(4)}
        ).fit(X),
        KernelDensity().fit(X),
    ]
    for obj in objects:
        buf = io.BytesIO()
        joblib.dump(obj, buf)
        for data in [*(pickle.dumps(obj, p) for p in range(6)), buf.getvalue()]:
            assert safeload.scan_bytes(data).safe, obj
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", safeload.UnsignedLoadWarning)
                loaded = safeload.loads(data, require_signature=False)
            if hasattr(obj, "query"):
                probe = rng.random((4, 3))
                k = min(2, obj.data.shape[0])
                assert (loaded.query(probe, k=k)[1] == obj.query(probe, k=k)[1]).all()


# -- libsvm estimators ---------------------------------------------------------------------------


def svm_model(mutate: str) -> bytes:
    from sklearn.svm import SVC

    if mutate == "precomputed-support":
        model = SVC(kernel="precomputed").fit(X @ X.T, Y)
        model.support_ = model.support_.copy()
        model.support_[-1] = 10**9
    else:
        model = SVC().fit(X, Y)
    if mutate == "dual-columns":
        model._dual_coef_ = model._dual_coef_[:, :1].copy()
    elif mutate == "dual-rows":
        model._dual_coef_ = model._dual_coef_[:1].copy()
    elif mutate == "intercept":
        model._intercept_ = model._intercept_[:1].copy()
    elif mutate == "vectors":
        model.support_vectors_ = model.support_vectors_[:, :1].copy()
    elif mutate == "class-counts":
        model._n_support = model._n_support * 2
    return pickle.dumps(model)


_SVM_PROOF = """
import pickle, sys
import numpy as np
model = pickle.loads(open(sys.argv[1], "rb").read())
X = np.random.default_rng(0).random((80, 4))
print("loaded", flush=True)
model.decision_function(X @ X.T)
print("survived", flush=True)
"""


def test_libsvm_support_index_past_the_kernel_crashes_and_is_refused(tmp_path: Path) -> None:
    # With a precomputed kernel, support_ indexes the kernel matrix's columns unchecked.
    data = svm_model("precomputed-support")
    path = tmp_path / "svm.pkl"
    path.write_bytes(data)
    done = subprocess.run(
        [sys.executable, "-c", _SVM_PROOF, str(path)], capture_output=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode in (-signal.SIGSEGV, -signal.SIGBUS), done
    message = refused(data, scan="SL406")
    assert "libsvm" in message and "support index 1000000000 is not one of the 80" in message


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        # libsvm reads (classes - 1) x vectors coefficients, pairs intercepts, vectors x
        # features values, whatever the arrays hold: each of these is read past its end.
        ("dual-columns", "dual coefficients of shape (2, 1), not (2, "),
        ("dual-rows", "dual coefficients of shape (1, "),
        ("intercept", "intercepts of shape (1,), not (3,)"),
        ("vectors", "support vectors of shape"),
        ("class-counts", "_n_support"),
    ],
)
def test_libsvm_arrays_that_disagree_are_refused(mutate: str, reason: str) -> None:
    data = svm_model(mutate)
    messages = [f.message for f in safeload.scan_bytes(data).findings]
    assert any("check sklearn-libsvm failed" in m and reason in m for m in messages), messages
    assert reason in refused(data, scan="SL406")


def test_libsvm_arrays_in_a_joblib_file_are_checked_by_the_loader() -> None:
    buf = io.BytesIO()
    joblib.dump(pickle.loads(svm_model("dual-columns")), buf)
    assert "dual coefficients of shape (2, 1)" in refused(buf.getvalue())


def test_genuine_libsvm_models_load_and_predict_the_same() -> None:
    import scipy.sparse as sparse
    from sklearn.svm import SVC, SVR, NuSVC, NuSVR, OneClassSVM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # SVC(probability=True)
        models = [
            (SVC().fit(X, Y), X),
            (SVC().fit(X, Y > 0), X),
            (NuSVC(nu=0.1).fit(X, Y), X),
            (SVR().fit(X, X[:, 0]), X),
            (NuSVR().fit(X, X[:, 0]), X),
            (OneClassSVM().fit(X), X),
            (SVC(kernel="precomputed").fit(X @ X.T, Y), X @ X.T),
            (SVC(probability=True).fit(X, Y), X),
            (SVC().fit(sparse.csr_matrix(X), Y), sparse.csr_matrix(X)),
            (SVC(kernel="linear").fit(X, np.array(["a", "b", "c"])[Y]), X),
        ]
    for model, inputs in models:
        buf = io.BytesIO()
        joblib.dump(model, buf)
        for data in [*(pickle.dumps(model, p) for p in range(6)), buf.getvalue()]:
            assert safeload.scan_bytes(data).safe, model
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", safeload.UnsignedLoadWarning)
                loaded = safeload.loads(data, require_signature=False)
            assert (loaded.predict(inputs) == model.predict(inputs)).all()


# -- scipy B-splines -------------------------------------------------------------------------------


def bspline(mutate: str) -> bytes:
    from scipy.interpolate import BSpline

    spline = BSpline(np.arange(10.0), np.ones(6), 3)
    if mutate == "degree":
        spline.k = 10**6
    elif mutate == "negative-degree":
        spline.k = -5
    elif mutate == "coefficients":
        spline.c = np.ones(1)
    elif mutate == "knots":
        spline.t = np.arange(2.0)
    return pickle.dumps(spline)


_SPLINE_PROOF = """
import pickle, sys
import numpy as np
spline = pickle.loads(open(sys.argv[1], "rb").read())
print("loaded", flush=True)
spline(np.linspace(0, 9, 50))
print("survived", flush=True)
"""


@pytest.mark.parametrize(
    ("mutate", "dies", "reason"),
    [
        # The evaluator reads knots and coefficients by the degree: SIGSEGV; a
        # negative degree makes a std::vector too large: abort().
        ("degree", signal.SIGSEGV, "10 knots for degree 1000000"),
        ("negative-degree", signal.SIGABRT, "degree -5 is not a non-negative int"),
        ("coefficients", None, "1 coefficients for 10 knots of degree 3"),
        ("knots", None, "2 knots for degree 3"),
    ],
)
def test_bspline_state_is_checked_as_its_constructor_checks(
    tmp_path: Path, mutate: str, dies: int | None, reason: str
) -> None:
    data = bspline(mutate)
    if dies is not None:
        path = tmp_path / "spline.pkl"
        path.write_bytes(data)
        done = subprocess.run(
            [sys.executable, "-c", _SPLINE_PROOF, str(path)], capture_output=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == -dies, done
    messages = [f.message for f in safeload.scan_bytes(data).findings]
    assert any("check scipy-bspline failed" in m and reason in m for m in messages), messages
    assert reason in refused(data, scan="SL406")


def test_bspline_knots_out_of_order_are_refused_by_the_loader() -> None:
    from scipy.interpolate import BSpline

    spline = BSpline(np.arange(10.0), np.ones(6), 3)
    spline.t = spline.t[::-1].copy()  # float knots: the scan does not read their order
    assert "non-decreasing" in refused(pickle.dumps(spline))


def test_genuine_splines_load_and_evaluate_the_same() -> None:
    from scipy.interpolate import BSpline, make_interp_spline
    from sklearn.preprocessing import SplineTransformer

    points = np.linspace(0, 9, 30)
    splines: list[object] = [
        BSpline(np.arange(10.0), np.ones(6), 3),
        BSpline(np.arange(10.0), np.ones((6, 2)), 3),
        BSpline(np.arange(4.0), np.ones(3), 0),
        BSpline(np.arange(10.0), np.ones(6), 3, extrapolate="periodic"),
        make_interp_spline(np.arange(10.0), np.arange(20.0).reshape(10, 2), k=3),
        SplineTransformer(n_knots=4, degree=2).fit(X),
        SplineTransformer(extrapolation="periodic").fit(X),
    ]
    for obj in splines:
        buf = io.BytesIO()
        joblib.dump(obj, buf)
        for data in [*(pickle.dumps(obj, p) for p in range(6)), buf.getvalue()]:
            assert safeload.scan_bytes(data).safe, obj
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", safeload.UnsignedLoadWarning)
                loaded = safeload.loads(data, require_signature=False)
            if isinstance(obj, BSpline):
                assert np.allclose(loaded(points), obj(points), equal_nan=True)
            else:
                assert np.allclose(loaded.transform(X), obj.transform(X))  # type: ignore[attr-defined]
