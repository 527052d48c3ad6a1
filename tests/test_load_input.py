"""What the guarded loader opens, and when: one read of a regular file, no reopening.

A file replaced on disk right after the loader read it is loaded as the bytes
it read (the verified ones); replaced right before, it is refused by the
signature. Symlinks, FIFOs, devices and directories are refused with
`LoadInputError` before anything is read, and never block. A file in a signed
directory is read through the directory's handle, component by component, so
a directory swapped for a symlink is refused even when it holds the same bytes.

Swapped-in files carry a payload that only creates `canary` in the working
directory, which every test here sets to its own `tmp_path`.
"""

from __future__ import annotations

import importlib
import os
import pickle
import shutil
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import safeload
from safeload.errors import (
    DigestMismatchError,
    LoadInputError,
    MalformedSignatureError,
    MissingSignatureError,
    SubjectMismatchError,
    UnsafeFileError,
)
from safeload.sign import Signer, TrustStore, generate_key, load_signer, sign
from tests.hostile_containers import payload

GUARDED = importlib.import_module("safeload.load._guarded")
ROOT = Path(__file__).resolve().parent.parent
BENIGN = {"weights": [0.5, 1.5], "name": "model"}
OTHER = {"weights": [9.0], "name": "other"}
HOSTILE = payload()
"""builtins.open('canary', 'w'): refused by the scan, runs under pickle.loads."""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # where a payload that ran would leave its canary
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", safeload.UnsignedLoadWarning)
        yield
    assert not (tmp_path / "canary").exists(), "a payload ran"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Signer, TrustStore]:
    folder = tmp_path_factory.mktemp("keys")
    info = generate_key("ed25519", folder / "team")
    assert info.public is not None
    return load_signer(info.private), TrustStore.load(keys=[info.public])


def replace(path: Path, data: bytes) -> None:
    """Replace `path` atomically, as a writer racing the loader would."""
    temp = path.with_name(f".{path.name}.new")
    temp.write_bytes(data)
    os.replace(temp, path)


def signed_model(tmp_path: Path, signer: Signer) -> Path:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(BENIGN, protocol=4))
    sign(path, signer)
    return path


SWAPS = {"hostile": HOSTILE, "other": pickle.dumps(OTHER, protocol=4)}


# -- a file replaced between open and load ---------------------------------------------------


def _patch_read(monkeypatch: pytest.MonkeyPatch, name: str, before: Callable[[], None] | None,
                after: Callable[[], None] | None) -> list[int]:  # fmt: skip
    """Run `before` before the loader's one open (`_open.open_private[_in]`) and `after`
    once that file has been read whole (`PrivateFile.fill`)."""
    real = getattr(GUARDED, name)
    calls: list[int] = []

    def open_once(*args: Any) -> Any:
        calls.append(1)
        if before is not None:
            before()
        opened = real(*args)
        fill = opened.fill

        def fill_then() -> Any:
            data = fill()
            if after is not None:
                after()
            return data

        opened.fill = fill_then
        return opened

    monkeypatch.setattr(GUARDED, name, open_once)
    return calls


@pytest.mark.parametrize("swap", sorted(SWAPS))
def test_swapped_after_the_read_the_verified_bytes_are_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keys: tuple[Signer, TrustStore], swap: str
) -> None:
    signer, trust = keys
    path = signed_model(tmp_path, signer)
    calls = _patch_read(monkeypatch, "open_private", None, lambda: replace(path, SWAPS[swap]))
    assert safeload.load(path, trust=trust) == BENIGN
    assert calls and path.read_bytes() == SWAPS[swap]  # the swap did happen


@pytest.mark.parametrize("swap", sorted(SWAPS))
def test_swapped_after_the_read_unsigned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, swap: str
) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(BENIGN, protocol=4))
    _patch_read(monkeypatch, "open_private", None, lambda: replace(path, SWAPS[swap]))
    assert safeload.load(path, require_signature=False) == BENIGN
    assert path.read_bytes() == SWAPS[swap]


@pytest.mark.parametrize("swap", sorted(SWAPS))
def test_swapped_before_the_read_is_refused_by_the_signature(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keys: tuple[Signer, TrustStore], swap: str
) -> None:
    signer, trust = keys
    path = signed_model(tmp_path, signer)
    calls = _patch_read(monkeypatch, "open_private", lambda: replace(path, SWAPS[swap]), None)
    with pytest.raises(DigestMismatchError) as info:
        safeload.load(path, trust=trust)
    # the bytes changed, not the signature's subject: the exact subclass
    assert type(info.value) is DigestMismatchError, info.value
    assert calls


def test_swapped_before_the_read_unsigned_is_judged_on_what_was_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(BENIGN, protocol=4))
    _patch_read(monkeypatch, "open_private", lambda: replace(path, HOSTILE), None)
    with pytest.raises(UnsafeFileError, match=r"builtins\.open"):
        safeload.load(path, require_signature=False)


def test_signature_of_another_file_is_a_subject_mismatch(
    tmp_path: Path, keys: tuple[Signer, TrustStore]
) -> None:
    """The other SignatureError a swap can produce: a signature moved beside another file."""
    signer, trust = keys
    path = signed_model(tmp_path, signer)
    other = tmp_path / "other.pkl"
    other.write_bytes(pickle.dumps(OTHER, protocol=4))
    shutil.copy(f"{path}.sig", f"{other}.sig")
    with pytest.raises(SubjectMismatchError):
        safeload.load(other, trust=trust)


# -- a file in a signed directory -------------------------------------------------------------


@pytest.fixture
def signed_dir(tmp_path: Path, keys: tuple[Signer, TrustStore]) -> Path:
    root = tmp_path / "bundle"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "model.pkl").write_bytes(pickle.dumps(BENIGN, protocol=4))
    (root / "README.md").write_text("a model\n")
    sign(root, keys[0])
    # another directory: the same signed bytes, and a hostile file
    for name, data in (("copy", pickle.dumps(BENIGN, protocol=4)), ("evil", HOSTILE)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.pkl").write_bytes(data)
    return root


def test_signed_directory_member_loads(signed_dir: Path, keys: tuple[Signer, TrustStore]) -> None:
    assert safeload.load(signed_dir / "sub" / "model.pkl", trust=keys[1]) == BENIGN


@pytest.mark.parametrize("target", ["copy", "evil"])
def test_directory_swapped_for_a_symlink_is_refused(
    signed_dir: Path, keys: tuple[Signer, TrustStore], target: str
) -> None:
    """Swapped before the load: the signature search stops at the link."""
    sub = signed_dir / "sub"
    shutil.rmtree(sub)
    sub.symlink_to(signed_dir.parent / target, target_is_directory=True)
    with pytest.raises(MissingSignatureError, match="symbolic link"):
        safeload.load(sub / "model.pkl", trust=keys[1])


@pytest.mark.parametrize("target", ["copy", "evil"])
def test_directory_swapped_during_the_load_is_refused_at_the_handle(
    signed_dir: Path, keys: tuple[Signer, TrustStore], monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    """Swapped after the signature was found: opening `sub` relative to the directory
    handle with O_NOFOLLOW refuses the link, even to a copy of the very signed bytes."""
    sub = signed_dir / "sub"

    def swap() -> None:
        sub.rename(signed_dir / "sub.old")
        sub.symlink_to(signed_dir.parent / target, target_is_directory=True)

    calls = _patch_read(monkeypatch, "open_private_in", swap, None)
    with pytest.raises(LoadInputError, match="'sub' on its path is a symbolic link"):
        safeload.load(sub / "model.pkl", trust=keys[1])
    assert calls and sub.is_symlink()


def test_file_in_signed_directory_swapped_for_a_symlink_during_the_load(
    signed_dir: Path, keys: tuple[Signer, TrustStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = signed_dir / "sub" / "model.pkl"

    def swap() -> None:
        model.unlink()
        model.symlink_to(signed_dir.parent / "copy" / "model.pkl")

    _patch_read(monkeypatch, "open_private_in", swap, None)
    with pytest.raises(LoadInputError, match="symbolic link"):
        safeload.load(model, trust=keys[1])


@pytest.mark.parametrize(("when", "swap"), [("after", "hostile"), ("before", "hostile"),
                                            ("before", "other")])  # fmt: skip
def test_file_in_signed_directory_replaced_around_the_read(
    signed_dir: Path,
    keys: tuple[Signer, TrustStore],
    monkeypatch: pytest.MonkeyPatch,
    when: str,
    swap: str,
) -> None:
    model = signed_dir / "sub" / "model.pkl"

    def action() -> None:
        replace(model, SWAPS[swap])

    if when == "after":
        _patch_read(monkeypatch, "open_private_in", None, action)
        assert safeload.load(model, trust=keys[1]) == BENIGN
    else:
        _patch_read(monkeypatch, "open_private_in", action, None)
        with pytest.raises(DigestMismatchError) as info:
            safeload.load(model, trust=keys[1])
        assert type(info.value) is DigestMismatchError
    assert model.read_bytes() == SWAPS[swap]


# -- what is never read: symlinks, FIFOs, devices, directories ---------------------------------


def _within(seconds: float, fn: Callable[[], Any], unblock: Callable[[], None]) -> BaseException:
    """Run `fn` in a thread; it must raise within `seconds` (else `unblock` it, and fail)."""
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        unblock()
        thread.join(5)
        pytest.fail(f"the load blocked for more than {seconds} s")
    assert time.monotonic() - start < seconds
    assert outcome, "the load returned instead of raising"
    return outcome[0]


def _open_writer(fifo: Path) -> Callable[[], None]:
    def unblock() -> None:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)

    return unblock


def test_symlink_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "model.pkl"
    target.write_bytes(pickle.dumps(BENIGN, protocol=4))
    link = tmp_path / "link.pkl"
    link.symlink_to(target)
    with pytest.raises(LoadInputError, match="symbolic link"):
        safeload.load(link, require_signature=False)
    assert safeload.load(target, require_signature=False) == BENIGN


def test_symlink_with_a_signature_beside_it_is_refused(
    tmp_path: Path, keys: tuple[Signer, TrustStore]
) -> None:
    target = signed_model(tmp_path, keys[0])
    link = tmp_path / "link.pkl"
    link.symlink_to(target)
    shutil.copy(f"{target}.sig", f"{link}.sig")
    with pytest.raises(LoadInputError, match="symbolic link"):
        safeload.load(link, trust=keys[1])
    with pytest.raises(LoadInputError, match="symbolic link"):
        safeload.load(link, trust=keys[1], signature=f"{target}.sig")


@pytest.mark.parametrize("signed", [False, True])
def test_fifo_is_refused_without_blocking(
    tmp_path: Path, keys: tuple[Signer, TrustStore], signed: bool
) -> None:
    fifo = tmp_path / "model.pkl"
    os.mkfifo(fifo)
    if signed:  # a signature beside it: the FIFO is still never read
        real = tmp_path / "real.pkl"
        real.write_bytes(pickle.dumps(BENIGN, protocol=4))
        sign(real, keys[0])
        shutil.copy(f"{real}.sig", f"{fifo}.sig")
        kw: dict[str, Any] = {"trust": keys[1]}
    else:
        kw = {"require_signature": False}
    exc = _within(10, lambda: safeload.load(fifo, **kw), _open_writer(fifo))
    assert isinstance(exc, LoadInputError) and "FIFO" in str(exc), exc


def test_fifo_as_the_signature_is_refused_without_blocking(
    tmp_path: Path, keys: tuple[Signer, TrustStore]
) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(BENIGN, protocol=4))
    sig = tmp_path / "model.pkl.sig"
    os.mkfifo(sig)
    exc = _within(10, lambda: safeload.load(path, trust=keys[1]), _open_writer(sig))
    assert isinstance(exc, MalformedSignatureError), exc


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_character_devices_are_refused(tmp_path: Path, device: str) -> None:
    if not os.path.exists(device):  # pragma: no cover - every POSIX system has them
        pytest.skip(f"{device} does not exist here")
    # In a subprocess: a loader that read /dev/zero would never stop (the timeout kills it).
    code = (
        "import sys, warnings, safeload\n"
        "warnings.simplefilter('ignore')\n"
        "try:\n"
        "    safeload.load(sys.argv[1], require_signature=False)\n"
        "except safeload.errors.LoadInputError as exc:\n"
        "    print('LoadInputError:', exc)\n"
    )
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code, device],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.startswith("LoadInputError:") and "device" in done.stdout, done
    assert time.monotonic() - start < 30


def test_device_as_the_signature_is_refused(
    tmp_path: Path, keys: tuple[Signer, TrustStore]
) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(BENIGN, protocol=4))
    exc = _within(10, lambda: safeload.load(path, trust=keys[1], signature="/dev/zero"),
                  lambda: None)  # fmt: skip
    assert isinstance(exc, MalformedSignatureError), exc


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LoadInputError, match="directory"):
        safeload.load(tmp_path, require_signature=False)


@pytest.mark.parametrize("signed", [False, True])
def test_missing_file_is_a_load_input_error(
    tmp_path: Path, keys: tuple[Signer, TrustStore], signed: bool
) -> None:
    kw: dict[str, Any] = {"trust": keys[1]} if signed else {"require_signature": False}
    with pytest.raises(LoadInputError, match="no such file"):
        safeload.load(tmp_path / "missing.pkl", **kw)
