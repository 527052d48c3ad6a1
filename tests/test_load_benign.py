"""Benign files, written by the real libraries in this test run, load through
`safeload.load` to objects equal to what the plain loader returns.

Every format the guarded loader reads is covered: fitted scikit-learn
estimators (their predictions compared too), pandas pickles under every
`to_pickle` compression, `.npy`/`.npz`, joblib with every compressor, plain
pickles at protocols 0-5 of the benign corpus (`tools/corpus.py`), PyTorch
zip checkpoints (state dicts, optimizer states, whole modules), and the signed
round trip `safeload.dump` -> `safeload.load`. A global that no allow pack
lists is refused with its name in the message, and loads once `allow=` names it.
"""

from __future__ import annotations

import pickle
import warnings
import weakref
import zoneinfo
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse
import torch

import safeload
from safeload import UnsafeFileError
from safeload.sign import TrustStore, generate_key, load_signer
from tools import corpus


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # UnsignedLoadWarning, estimator warnings
        yield


def guarded(path: Path, **kw: Any) -> Any:
    return safeload.load(path, require_signature=False, **kw)


def assert_same(
    a: Any,
    b: Any,
    where: str = "",
    depth: int = 0,
    seen: dict[tuple[int, int], tuple[Any, Any]] | None = None,
) -> None:
    """`a` and `b` hold the same data.

    Pickles cannot be compared byte for byte: tensors pickle their storage's
    address, and scikit-learn trees the uninitialized padding of their node
    records. So containers are walked; arrays are compared field by field;
    tensors, frames and sparse matrices by their own equality; any other object
    by its `__dict__`, or the state its `__reduce_ex__` gives.
    """
    assert depth < 100, where
    assert type(a) is type(b), (where, type(a), type(b))
    seen = {} if seen is None else seen
    if (id(a), id(b)) in seen:  # shared or cyclic structure: compared once
        return
    seen[id(a), id(b)] = (a, b)  # kept alive, so that no id is reused meanwhile
    if isinstance(a, torch.Tensor):
        assert (a.dtype, a.layout, a.shape, a.requires_grad) == (
            b.dtype, b.layout, b.shape, b.requires_grad,
        ), where  # fmt: skip
        if a.is_quantized:
            assert torch.equal(a.int_repr(), b.int_repr()), where
            assert (a.q_scale(), a.q_zero_point()) == (b.q_scale(), b.q_zero_point()), where
        elif a.layout is not torch.strided:
            assert torch.equal(a.to_dense(), b.to_dense()), where
        else:
            assert torch.equal(a, b), where
            assert a.stride() == b.stride(), where
        assert_same(vars(a), vars(b), f"{where}.__dict__", depth + 1, seen)
    elif isinstance(a, weakref.ref):
        assert_same(a(), b(), f"{where}()", depth + 1, seen)
    elif isinstance(a, np.ndarray) and type(a) is not np.ndarray:
        # matrix, masked arrays: no padding, their pickles compare
        assert pickle.dumps(a, 4) == pickle.dumps(b, 4), where
    elif isinstance(a, np.ndarray):
        assert (a.dtype, a.shape) == (b.dtype, b.shape), where
        if a.dtype.names:
            for name in a.dtype.names:
                assert_same(a[name], b[name], f"{where}[{name!r}]", depth + 1, seen)
        elif a.dtype.hasobject:
            for i, (x, y) in enumerate(zip(a.ravel(), b.ravel(), strict=True)):
                assert_same(x, y, f"{where}.flat[{i}]", depth + 1, seen)
        else:
            assert a.tobytes() == b.tobytes(), where  # NaN- and NaT-safe
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=where)
    elif isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b, check_exact=True, obj=where)
    elif isinstance(a, pd.Index):
        pd.testing.assert_index_equal(a, b, exact=True, obj=where)
    elif scipy.sparse.issparse(a):
        assert_same(a.toarray(), b.toarray(), where, depth + 1, seen)
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]", depth + 1, seen)
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]", depth + 1, seen)
    elif isinstance(a, float | complex) and a != a:
        assert b != b, where  # NaN
    elif isinstance(a, type | str | bytes | int | float | complex | bool) or a is None:
        assert a == b, where
    elif hasattr(a, "__dict__") and type(a).__eq__ is object.__eq__:
        assert_same(vars(a), vars(b), f"{where}.__dict__", depth + 1, seen)
        state = getattr(a, "__getstate__", None)
        if state is not None and type(a).__reduce_ex__ is not object.__reduce_ex__:
            assert_same(a.__reduce_ex__(4)[1:], b.__reduce_ex__(4)[1:], where, depth + 1, seen)
    else:
        try:
            equal = a == b
        except Exception:
            equal = NotImplemented
        if isinstance(equal, bool | np.bool_):
            if equal:
                return
            if type(a).__eq__ is not object.__eq__:
                # unequal to itself, as NaN-like values are: the same pickle, then
                assert pickle.dumps(a, 4) == pickle.dumps(b, 4), where
                return
        # an extension type without equality (a Cython tree, a loss): its pickled state
        assert_same(
            a.__reduce_ex__(4)[1:], b.__reduce_ex__(4)[1:], f"{where}<state>", depth + 1, seen
        )


# -- scikit-learn ---------------------------------------------------------------------

_METHODS = ("predict", "predict_proba", "decision_function", "transform", "score_samples")


def _inputs() -> list[Any]:
    data = corpus._sklearn_data()
    x = data["X"]
    return [x, data["docs"], data["dicts"], x[:, 0], x[:24].reshape(4, 6, 4)]


def _outputs(est: Any) -> dict[str, Any]:
    """What each prediction method returns, on the first input it accepts."""
    out = {}
    for method in _METHODS:
        fn = getattr(est, method, None)
        if fn is None:
            continue
        for x in _inputs():
            np.random.seed(0)  # some methods draw from the global generator
            try:
                out[method] = fn(x)
                break
            except Exception:
                continue
    return out


def _assert_outputs_equal(got: dict[str, Any], want: dict[str, Any], where: str) -> None:
    assert list(got) == list(want), where
    for method, value in want.items():
        if hasattr(value, "toarray"):
            value, other = value.toarray(), got[method].toarray()
        else:
            other = got[method]
        np.testing.assert_array_equal(np.asarray(other), np.asarray(value), err_msg=where)


def test_every_fitted_estimator_loads_and_predicts_alike(tmp_path: Path) -> None:
    fitted = [(name, est) for name, est, err in corpus.sklearn_estimators() if err is None]
    assert len(fitted) > 150
    predicted = 0
    problems = []
    for name, est in fitted:
        path = tmp_path / f"{name}.joblib"
        joblib.dump(est, path)
        try:
            got = guarded(path)
        except Exception as exc:
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        want = joblib.load(path)
        try:
            assert_same(got, want, name)
        except AssertionError as exc:
            problems.append(f"{name}: differs from joblib.load: {exc}")
            continue
        want_out = _outputs(want)
        _assert_outputs_equal(_outputs(got), want_out, name)
        predicted += bool(want_out)
    assert not problems, "\n".join(problems)
    assert predicted > 150, predicted


# -- pandas -----------------------------------------------------------------------------

PANDAS_COMPRESSIONS = [None, "gzip", "bz2", "xz", "zstd", "zip", "tar"]


def _frame() -> pd.DataFrame:
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    return pd.DataFrame(
        {
            "int": range(4),
            "float": np.arange(4, dtype="float32"),
            "str": list("abcd"),
            "cat": pd.Categorical(list("xyxy")),
            "ordered": pd.Categorical(["lo", "hi"] * 2, categories=["lo", "hi"], ordered=True),
            "when": pd.date_range("2024-03-30", periods=4, freq="12h", tz=paris),
            "utc": pd.date_range("2024-01-01", periods=4, tz="UTC"),
            "nullable": pd.array([1, None, 3, 4], dtype="Int64"),
            "period": pd.period_range("2024-01", periods=4, freq="M"),
        },
        index=pd.date_range("2024", periods=4, tz=paris, name="at"),
    )


@pytest.mark.parametrize("compression", PANDAS_COMPRESSIONS, ids=str)
def test_pandas_to_pickle_every_compression(tmp_path: Path, compression: str | None) -> None:
    path = tmp_path / "frame.pkl"
    _frame().to_pickle(path, compression=compression)
    got = guarded(path)
    want = pd.read_pickle(path, compression=compression)
    assert_same(got, want)


@pytest.mark.parametrize(
    "suffix",
    [
        ".pkl.gz",
        ".pkl.bz2",
        ".pkl.xz",
        ".pkl.zst",
        ".zip",
        ".tar",
        ".tar.gz",
        ".tar.bz2",
        ".tar.xz",
    ],
)
def test_pandas_compression_inferred_from_the_name(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"frame{suffix}"
    _frame().to_pickle(path)  # compression="infer"
    pd.testing.assert_frame_equal(guarded(path), pd.read_pickle(path))


def test_pandas_frame_pickled_after_use(tmp_path: Path) -> None:
    """A frame used before it is saved, as in any real program: pandas' dtype singletons
    (`Int64Dtype`, ...) then pickle with the state of their cached properties."""
    frame = _frame()
    frame["nullable"].to_numpy()
    repr(frame)
    dtype = frame["nullable"].dtype
    assert vars(dtype).get("_cache"), "the dtype cached nothing: the test would be moot"
    path = tmp_path / "used.pkl"
    frame.to_pickle(path)
    assert_same(guarded(path), pd.read_pickle(path))


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_archive_of_two_pickles_is_refused_as_pandas_refuses_it(tmp_path: Path, kind: str) -> None:
    import tarfile
    import zipfile

    from tests.hostile_containers import tar_member

    path = tmp_path / f"two.{kind}"
    members = {"a.pkl": pickle.dumps(1), "b.pkl": pickle.dumps(2)}
    if kind == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data)
    else:
        with tarfile.open(path, "w") as tf:
            for name, data in members.items():
                tar_member(tf, name, data)
    with pytest.raises(ValueError, match="Multiple files"):
        pd.read_pickle(path, compression=kind)
    with pytest.raises(safeload.UnsupportedFormatError, match="2 entries"):
        guarded(path)


def test_global_on_no_allow_pack_in_a_frame_is_named_and_allowed(tmp_path: Path) -> None:
    # dateutil tz files were this test's example until the packs allowed them
    # (both dateutil generations); ipaddress is on no pack.
    import ipaddress

    path = tmp_path / "hosts.pkl"
    frame = pd.DataFrame({"ip": [ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("::1")]})
    frame.to_pickle(path)
    with pytest.raises(UnsafeFileError) as info:
        guarded(path)
    names = sorted({f.global_name for f in info.value.findings if f.global_name})
    assert names and all(f.rule == "SL401" for f in info.value.findings), info.value.findings
    for name in names:
        assert name in str(info.value)
    pd.testing.assert_frame_equal(guarded(path, allow=names), pd.read_pickle(path))


# -- numpy ----------------------------------------------------------------------------------


def _arrays() -> dict[str, np.ndarray]:
    structured = np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8", (2,)), ("c", "U3")])
    structured["a"] = [1, 2, 3]
    with_objects = np.zeros(2, dtype=[("n", "<i8"), ("o", "O")])
    with_objects["o"] = ["x", {"k": [1, 2]}]
    return {
        "float": np.arange(12.0).reshape(3, 4),
        "fortran": np.asfortranarray(np.arange(6).reshape(2, 3)),
        "big-endian": np.arange(5, dtype=">i4"),
        "scalar": np.array(3.5),
        "str": np.array(["a", "bc"]),
        "datetime": np.array(["2024-01-01", "NaT"], dtype="M8[ns]"),
        "bool": np.array([True, False]),
        "complex": np.array([1 + 2j]),
        "structured": structured,
        "object": np.array([1, "x", None, 2.5, {"k": (1, 2)}], dtype=object),
        "structured-object": with_objects,
        "empty": np.zeros((0, 3)),
    }


def _assert_array_equal(got: Any, want: np.ndarray, where: str) -> None:
    assert isinstance(got, np.ndarray), where
    assert (got.dtype, got.shape) == (want.dtype, want.shape), where
    assert got.flags.f_contiguous == want.flags.f_contiguous, where
    assert_same(got, want, where)


@pytest.mark.parametrize("name", list(_arrays()))
def test_npy(tmp_path: Path, name: str) -> None:
    path = tmp_path / "a.npy"
    np.save(path, _arrays()[name])
    _assert_array_equal(guarded(path), np.load(path, allow_pickle=True), name)


@pytest.mark.parametrize("saver", [np.savez, np.savez_compressed], ids=["stored", "compressed"])
def test_npz(tmp_path: Path, saver: Any) -> None:
    path = tmp_path / "arrays.npz"
    arrays = _arrays()
    saver(path, **arrays)
    got = guarded(path)
    with np.load(path, allow_pickle=True) as want:
        assert got.files == want.files
        for name in want.files:
            _assert_array_equal(got[name], want[name], name)
            _assert_array_equal(got[f"{name}.npy"], want[name], name)


def test_npz_member_is_an_array_by_its_bytes_not_its_name(tmp_path: Path) -> None:
    """numpy reads a member that starts with the .npy magic as an array, whatever its name."""
    import io
    import zipfile

    buf = io.BytesIO()
    np.save(buf, np.array([1, "x"], dtype=object))
    path = tmp_path / "odd.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("weights.bin", buf.getvalue())
    got = guarded(path)
    with np.load(path, allow_pickle=True) as want:
        _assert_array_equal(got["weights.bin"], want["weights.bin"], "weights.bin")


# -- joblib ------------------------------------------------------------------------------

JOBLIB_COMPRESSORS = [None, "zlib", "gzip", "bz2", "xz", "lzma", "lz4"]


@pytest.mark.parametrize("compressor", JOBLIB_COMPRESSORS, ids=str)
def test_joblib_every_compressor(tmp_path: Path, compressor: str | None) -> None:
    objects = corpus.joblib_objects()
    path = tmp_path / "objects.joblib"
    joblib.dump(objects, path, compress=(compressor, 3) if compressor else 0)
    assert_same(guarded(path), joblib.load(path))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_joblib_protocols(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "objects.joblib"
    joblib.dump(dict(corpus.joblib_objects())["arrays"], path, protocol=protocol)
    assert_same(guarded(path), joblib.load(path))


# -- plain pickles, protocols 0 to 5 -------------------------------------------------------


@pytest.mark.parametrize("group", ["stdlib", "numpy", "scipy", "pandas", "sklearn-extra"])
def test_pickles_at_every_protocol(tmp_path: Path, group: str) -> None:
    problems = []
    loaded = 0
    for label, obj in corpus.BUILDERS[group]():
        for protocol, data in corpus.pickles(obj):
            path = tmp_path / f"{label}-{protocol}.pkl"
            path.write_bytes(data)
            want = pickle.loads(data)
            try:
                got = guarded(path)
            except UnsafeFileError as exc:
                # Only a global on no allow pack may be refused; it is named, and allowing it
                # loads the file.
                names = sorted({f.global_name for f in exc.findings if f.global_name})
                if not names or any(f.rule != "SL401" for f in exc.findings):
                    problems.append(f"{label} protocol {protocol}: {exc}")
                    continue
                assert all(n in str(exc) for n in names), str(exc)
                got = guarded(path, allow=names)
            loaded += 1
            try:
                assert_same(got, want, label)
            except AssertionError as exc:
                problems.append(f"{label} protocol {protocol}: differs from pickle.loads: {exc}")
    assert not problems, "\n".join(problems)
    assert loaded == 6 * len(corpus.BUILDERS[group]())


# -- PyTorch --------------------------------------------------------------------------------


class TinyNet(torch.nn.Module):
    """A model class of this test module: on no allow pack."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x))


TORCH_LABELS = [label for label, _ in corpus.torch_objects()]


@pytest.mark.parametrize("label", TORCH_LABELS)
def test_torch_zip_checkpoints(tmp_path: Path, label: str) -> None:
    obj = dict(corpus.torch_objects())[label]
    path = tmp_path / "ckpt.pt"
    torch.save(obj, path)
    assert_same(guarded(path), torch.load(path, weights_only=False), label)


def test_torch_map_location(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save({"w": torch.arange(4.0)}, path)
    got = guarded(path, map_location="cpu")
    assert_same(got, torch.load(path, map_location="cpu", weights_only=False))


def test_torch_module_of_an_unlisted_class_is_named_then_allowed(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = TinyNet()
    path = tmp_path / "net.pt"
    torch.save(net, path)
    name = f"{TinyNet.__module__}.TinyNet"
    with pytest.raises(UnsafeFileError) as info:
        guarded(path)
    assert {f.global_name for f in info.value.findings if f.verdict is not None} == {name}
    assert name in str(info.value)
    assert f"allow=['{name}']" in str(info.value)
    got = guarded(path, allow=[name])
    assert_same(got, torch.load(path, weights_only=False))
    x = torch.randn(5, 3)
    assert torch.equal(got(x), net(x))
    with safeload.allowed_globals([name]):
        assert_same(guarded(path), got)


# -- signed round trip ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, TrustStore]:
    folder = tmp_path_factory.mktemp("keys")
    info = generate_key("ed25519", folder / "team")
    assert info.public is not None
    return load_signer(info.private), TrustStore.load(keys=[info.public])


@pytest.mark.parametrize(
    ("fmt", "compress", "name"),
    [("joblib", 0, "m.joblib"), ("joblib", 3, "m.joblib"), ("joblib", True, "m.joblib.xz"),
     ("pickle", 0, "m.pkl")],
    ids=["joblib", "joblib-zlib", "joblib-xz-by-name", "pickle"],
)  # fmt: skip
def test_dump_then_load_signed(
    tmp_path: Path, keys: tuple[Any, TrustStore], fmt: str, compress: Any, name: str
) -> None:
    signer, trust = keys
    model = dict(corpus.joblib_objects())["random-forest"]
    obj = {"model": model, "frame": _frame(), "arrays": _arrays()["structured-object"]}
    path = tmp_path / name
    sig = safeload.dump(obj, path, signer=signer, format=fmt, compress=compress)  # type: ignore[arg-type]
    assert sig == tmp_path / f"{name}.sig"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a verified load warns about nothing
        got = safeload.load(path, trust=trust)
    assert_same(got, obj)
    x = corpus._sklearn_data()["X"]
    np.testing.assert_array_equal(got["model"].predict(x), model.predict(x))
