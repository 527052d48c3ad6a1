"""`safeload.guard()`: existing code calling the real `pickle.load`, `pickle.loads`,
`joblib.load`, `numpy.load`, `pandas.read_pickle` and `torch.load` is routed through
the guarded loader, and everything is restored afterwards.

Benign files load as the original functions load them; hostile ones (from
`tests/hostile_containers.py` and `tests/test_hostile.py`), loaded in forked
subprocesses whose working directory is a temporary folder, raise a
`SafeloadError` and leave no canary, while the same call without the guard
runs the payload.
"""

from __future__ import annotations

import io
import pickle
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import test_hostile
import torch
from test_load_benign import assert_same

import safeload
from safeload.errors import MissingSignatureError, UnsafeFileError, UnsupportedFormatError
from safeload.sign import Signer, TrustStore, generate_key, load_signer, sign
from tests import hostile_containers
from tests.loadrun import canary_in, run_jobs

TARGETS = [
    ("pickle", "load"),
    ("pickle", "loads"),
    ("joblib", "load"),
    ("joblib.numpy_pickle", "load"),
    ("numpy", "load"),
    ("pandas", "read_pickle"),
    ("pandas.io.pickle", "read_pickle"),
    ("torch", "load"),
]


def originals() -> dict[tuple[str, str], Any]:
    return {(m, a): getattr(sys.modules[m], a) for m, a in TARGETS}


ORIGINALS = originals()
"""The real functions, taken when this module was imported (no guard was active)."""


@pytest.fixture(autouse=True)
def _restored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    assert originals() == ORIGINALS, "a guard was left installed"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Signer, TrustStore]:
    folder = tmp_path_factory.mktemp("keys")
    info = generate_key("ed25519", folder / "team")
    assert info.public is not None
    return load_signer(info.private), TrustStore.load(keys=[info.public])


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Benign files of every kind the hooks read."""
    frame = pd.DataFrame({"a": [1, 2], "t": pd.date_range("2024", periods=2, tz="UTC")})
    out = {
        "pickle": tmp_path / "obj.pkl",
        "joblib": tmp_path / "obj.joblib",
        "joblib-gzip": tmp_path / "obj.joblib.gz",
        "npy": tmp_path / "a.npy",
        "npy-object": tmp_path / "o.npy",
        "npz": tmp_path / "z.npz",
        "pandas": tmp_path / "frame.pkl",
        "pandas-zip": tmp_path / "frame.zip",
        "torch": tmp_path / "ckpt.pt",
    }
    out["pickle"].write_bytes(pickle.dumps({"k": [1, 2.5]}, protocol=2))
    joblib.dump({"w": np.arange(5.0), "o": np.array([1, "x"], dtype=object)}, out["joblib"])
    joblib.dump({"w": np.arange(5.0)}, out["joblib-gzip"], compress=("gzip", 3))
    np.save(out["npy"], np.arange(6).reshape(2, 3))
    np.save(out["npy-object"], np.array([{"k": 1}, None], dtype=object))
    np.savez_compressed(out["npz"], a=np.arange(3), b=np.ones(2))
    frame.to_pickle(out["pandas"])
    frame.to_pickle(out["pandas-zip"])
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    torch.save({"model": net.state_dict(), "epoch": 3}, out["torch"])
    return out


def _calls(files: dict[str, Path]) -> dict[str, Any]:
    """Real code calling the real functions (looked up when called, as user code does)."""

    def npz() -> dict[str, Any]:
        with np.load(files["npz"]) as z:
            return {name: z[name] for name in z.files}

    def pickle_load() -> Any:
        with open(files["pickle"], "rb") as fh:
            return pickle.load(fh)

    return {
        "pickle.load": pickle_load,
        "pickle.loads": lambda: pickle.loads(files["pickle"].read_bytes()),
        "joblib.load": lambda: joblib.load(files["joblib"]),
        "joblib.load-gzip": lambda: joblib.load(str(files["joblib-gzip"])),
        "joblib.load-file": lambda: joblib.load(io.BytesIO(files["joblib"].read_bytes())),
        "numpy.load": lambda: np.load(files["npy"]),
        "numpy.load-object": lambda: np.load(files["npy-object"], allow_pickle=True),
        "numpy.load-npz": npz,
        "pandas.read_pickle": lambda: pd.read_pickle(files["pandas"]),
        "pandas.read_pickle-zip": lambda: pd.read_pickle(files["pandas-zip"]),
        "pandas.io.pickle.read_pickle": lambda: pd.io.pickle.read_pickle(files["pandas"]),
        "torch.load": lambda: torch.load(files["torch"], weights_only=False),
        "torch.load-map": lambda: torch.load(files["torch"], map_location="cpu"),
        "torch.load-file": lambda: torch.load(io.BytesIO(files["torch"].read_bytes())),
    }


def test_benign_loads_through_the_guard_equal_the_originals(files: dict[str, Path]) -> None:
    calls = _calls(files)
    want = {name: call() for name, call in calls.items()}
    with safeload.guard(require_signature=False):
        assert originals() != ORIGINALS
        for name, call in calls.items():
            assert_same(call(), want[name], name)


def test_the_guard_really_routes_through_safeload(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every hook reaches the guarded loader (counted), not the original function."""
    guarded = sys.modules["safeload.load._guarded"]
    count = {"n": 0}
    real = guarded._load_buffer

    def counting(*args: Any, **kw: Any) -> Any:
        count["n"] += 1
        return real(*args, **kw)

    monkeypatch.setattr(guarded, "_load_buffer", counting)
    calls = _calls(files)
    with safeload.guard(require_signature=False):
        for call in calls.values():
            call()
    assert count["n"] == len(calls)


def test_signed_files_through_the_guard(
    files: dict[str, Path], keys: tuple[Signer, TrustStore]
) -> None:
    signer, trust = keys
    for path in files.values():
        sign(path, signer)
    calls = _calls(files)
    want = {name: call() for name, call in calls.items()}
    with safeload.guard(trust=trust):
        for name, call in calls.items():
            if name in ("pickle.loads", "joblib.load-file", "torch.load-file"):
                # bytes with no file name carry no signature
                with pytest.raises(MissingSignatureError):
                    call()
                continue
            assert_same(call(), want[name], name)


def test_unsigned_files_under_a_trusting_guard(
    files: dict[str, Path], keys: tuple[Signer, TrustStore]
) -> None:
    with safeload.guard(trust=keys[1]):
        for call in _calls(files).values():
            with pytest.raises(MissingSignatureError):
                call()


def test_guard_needs_trust_or_an_explicit_opt_out() -> None:
    with pytest.raises(TypeError, match="require_signature=False"):
        safeload.guard()


def test_mmap_mode_is_refused(files: dict[str, Path]) -> None:
    with safeload.guard(require_signature=False):
        with pytest.raises(UnsupportedFormatError, match="mmap_mode"):
            np.load(files["npy"], mmap_mode="r")
        with pytest.raises(UnsupportedFormatError, match="mmap_mode"):
            joblib.load(files["joblib"], mmap_mode="r")


def _load_all(path: Path) -> list[Any]:
    """The usual loop over a file of several pickles."""
    out = []
    with open(path, "rb") as fh:
        while True:
            try:
                out.append(pickle.load(fh))
            except EOFError:
                return out


def test_a_loop_over_pickle_load_reads_every_pickle(tmp_path: Path) -> None:
    path = tmp_path / "log.pkl"
    with open(path, "wb") as fh:
        for protocol, obj in enumerate([{"a": 1}, [2, 3], "four", (5.0,), {6}, None]):
            pickle.dump(obj, fh, protocol=protocol)
    want = _load_all(path)
    assert len(want) == 6
    with safeload.guard(require_signature=False):
        assert _load_all(path) == want


def test_a_loop_over_pickle_load_refuses_a_later_hostile_pickle(tmp_path: Path) -> None:
    path = tmp_path / "log.pkl"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=2) + test_hostile.C02)
    with safeload.guard(require_signature=False), pytest.raises(UnsafeFileError):
        _load_all(path)  # refused at the first load: it scans all that follows


def test_hostile_bytes_in_process_are_refused(tmp_path: Path) -> None:
    """`pickle.loads` of a hostile stream under the guard (the payload would only
    create the canary in this test's directory)."""
    with safeload.guard(require_signature=False), pytest.raises(UnsafeFileError):
        pickle.loads(test_hostile.C02)
    assert not (tmp_path / "canary").exists()


# -- restoring --------------------------------------------------------------------------


def test_restored_after_the_with_block_even_on_error() -> None:
    with pytest.raises(RuntimeError), safeload.guard(require_signature=False):
        assert pickle.loads is not ORIGINALS[("pickle", "loads")]
        raise RuntimeError("boom")
    assert originals() == ORIGINALS


def test_install_and_uninstall_nest() -> None:
    outer = safeload.guard(require_signature=False).install()
    try:
        patched = originals()
        assert all(patched[t] is not ORIGINALS[t] for t in TARGETS)
        inner = safeload.guard(require_signature=False, allow=["collections.OrderedDict"])
        with inner:
            assert originals() == patched
        assert originals() == patched  # the outer guard is still installed
        assert outer.install() is outer  # installing twice is one install
    finally:
        outer.uninstall()
    assert originals() == ORIGINALS
    outer.uninstall()  # a second uninstall does nothing
    assert originals() == ORIGINALS


def test_the_innermost_guard_decides() -> None:
    data = pickle.dumps(OrderedThing(), protocol=4)
    name = f"{OrderedThing.__module__}.OrderedThing"
    with safeload.guard(require_signature=False):
        with pytest.raises(UnsafeFileError):
            pickle.loads(data)
        with safeload.guard(require_signature=False, allow=[name]):
            assert isinstance(pickle.loads(data), OrderedThing)
        with pytest.raises(UnsafeFileError):
            pickle.loads(data)


class OrderedThing:
    """A class of this module: on no allow pack."""


# -- hostile files, for real, in subprocesses ----------------------------------------------

#: (hostile variant, code that loads `path` the way user code does)
HOSTILE_CALLS = {
    "torch.load": ("torch-zip-data-pkl", "import torch; torch.load(path, weights_only=False)"),
    "numpy.load": ("npy-object", "import numpy as np; np.load(path, allow_pickle=True)"),
    "numpy.load-npz": (
        "npz-member-deflated",
        "import numpy as np\nwith np.load(path, allow_pickle=True) as z: z['o']",
    ),
    "joblib.load": ("joblib-after-first-array-none", "import joblib; joblib.load(path)"),
    "joblib.load-lz4": ("joblib-after-first-array-lz4", "import joblib; joblib.load(path)"),
    "pandas.read_pickle": (
        "compressed-pickle-gzip",
        "import pandas as pd; pd.read_pickle(path, compression='gzip')",
    ),
    "pandas.read_pickle-tar": (
        "tar-wrapped",
        "import pandas as pd; pd.read_pickle(path, compression='tar')",
    ),
    "pickle.load": ("pickle-zip-polyglot", "import pickle; pickle.load(open(path, 'rb'))"),
    "pickle.loads": (
        "torch-legacy-pickle-0",
        "import pickle; pickle.loads(open(path, 'rb').read())",
    ),
}


_SIGNED_REFUSAL = {"pickle.loads": "MissingSignatureError"}
"""Bytes handed to pickle.loads carry no file name, so no signature: refused for that."""


@pytest.mark.parametrize("mode", ["with", "install", "signed"])
def test_hostile_files_through_the_real_hooks(
    tmp_path: Path, keys: tuple[Signer, TrustStore], mode: str
) -> None:
    paths = hostile_containers.write_corpus(
        tmp_path / "files", {variant for variant, _ in HOSTILE_CALLS.values()}
    )
    (tmp_path / "keys").mkdir()
    info = generate_key("ed25519", tmp_path / "keys" / "team")
    signer = load_signer(info.private)
    for path in paths.values():
        sign(path, signer)
    if mode == "with":
        guard = "with safeload.guard(require_signature=False):\n"
    elif mode == "install":
        guard = "safeload.guard(require_signature=False).install()\nif True:\n"
    else:
        guard = (
            f"with safeload.guard(trust=safeload.TrustStore.load(keys=[{str(info.public)!r}])):\n"
        )
    jobs = []
    for name, (variant, code) in HOSTILE_CALLS.items():
        body = "".join(f"    {line}\n" for line in code.splitlines())
        for guarded in (True, False):
            jobs.append(
                {
                    "kind": "plain",
                    "code": f"import safeload\n{guard}{body}" if guarded else code,
                    "path": paths[variant],
                    "cwd": tmp_path / ("guarded" if guarded else "plain") / name,
                }
            )
    results = run_jobs(jobs)
    problems = []
    for job, result in zip(jobs, results, strict=True):
        name = Path(job["cwd"]).name
        if Path(job["cwd"]).parent.name == "plain":
            if not canary_in(job["cwd"]):
                problems.append(f"{name}: the unguarded call did not run the payload: {result}")
        elif canary_in(job["cwd"]):
            problems.append(f"{name}: THE PAYLOAD RAN under the guard: {result}")
        elif result["outcome"] != "raised" or not result["safeload_error"]:
            problems.append(f"{name}: {result}")
        elif mode == "signed" and result["type"] != _SIGNED_REFUSAL.get(name, "UnsafeFileError"):
            problems.append(f"{name}: signed, yet {result['type']}: {result['message'][:300]}")
    assert not problems, "\n".join(problems)
