"""Verifying bytes held in memory: authenticate, check_bytes, start_check, locate_signature.

Keys are generated in the test run (real `cryptography` keys); models are real
files in tmp_path. Shard manifests made by the real model-signing package are
checked in test_sign_interop.py.
"""

from __future__ import annotations

import array
import hashlib
import json
import mmap
import os
import pickle
import re
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import pytest

from safeload.sign import (
    MAX_SIGNATURE_FILE,
    Authenticated,
    DigestMismatchError,
    InvalidSignatureError,
    MalformedSignatureError,
    MissingFileError,
    MissingSignatureError,
    PendingCheck,
    SignatureError,
    Signer,
    SubjectMismatchError,
    TrustStore,
    UnknownKeyError,
    _bytes,
    _dsse,
    _statement,
    _verify,
    authenticate,
    generate_key,
    load_signer,
    locate_signature,
    read_signature,
    sign,
    verify,
)

ALGORITHMS = ("ed25519", "ecdsa-p256", "hmac")


def make_key(tmp_path: Path, kind: str, name: str = "key") -> tuple[Signer, TrustStore]:
    folder = tmp_path / "keys"
    folder.mkdir(exist_ok=True)
    info = generate_key(kind, folder / name)  # type: ignore[arg-type]
    trusted = info.public if info.public is not None else info.private
    return load_signer(info.private), TrustStore.load(keys=[trusted])


@pytest.fixture(params=ALGORITHMS)
def keypair(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Signer, TrustStore]:
    return make_key(tmp_path, request.param)


@pytest.fixture
def ecdsa(tmp_path: Path) -> tuple[Signer, TrustStore]:
    return make_key(tmp_path, "ecdsa-p256")


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"weights": list(range(1000))}, protocol=5))
    return path


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "config.json").write_text('{"layers": 3}')
    (root / "weights.bin").write_bytes(os.urandom(3000))
    (root / "sub" / "tokenizer.pkl").write_bytes(pickle.dumps(["a", "b"]))
    (root / "sub" / "deeper" / "empty").write_bytes(b"")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return root


def authenticated(sig: Path, trust: TrustStore) -> Authenticated:
    return authenticate(read_signature(sig), trust, where=sig)


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def sign_payload(payload: bytes, signer: Signer, sig: Path) -> None:
    """Sign statement bytes exactly as safeload would."""
    signature = _dsse.Signature(signer.sign(_dsse.pae(_dsse.PAYLOAD_TYPE, payload)), signer.keyid)
    sig.write_bytes(
        _dsse.encode(payload, [signature], bundle=signer.bundle, key_hint=signer.key_id)
    )


def sign_shards(
    files: dict[str, bytes], subject: str, shard_size: int, signer: Signer, sig: Path
) -> None:
    """A model-signing "shards" statement over `files` (`"."` for a single file), signed."""
    resources = []
    for name, data in sorted(files.items()):
        for start in range(0, len(data), shard_size):
            chunk = data[start : start + shard_size]
            resources.append(
                {
                    "name": f"{name}:{start}:{start + len(chunk)}",
                    "algorithm": f"sha256-sharded-{shard_size}",
                    "digest": hashlib.sha256(chunk).hexdigest(),
                }
            )
    statement = json.loads(_statement.build(subject, {}, ()))
    statement["predicate"]["serialization"].update(method="shards", shard_size=shard_size)
    statement["predicate"]["resources"] = resources
    statement["subject"][0]["digest"]["sha256"] = _statement.root_digest(
        r["digest"] for r in resources
    )
    sign_payload(json.dumps(statement).encode(), signer, sig)


def outcome(action: Callable[[], object]) -> tuple[type[BaseException], str] | None:
    """None on success, else the exception's type and message."""
    try:
        action()
    except SignatureError as exc:
        return type(exc), str(exc)
    return None


# -- authenticate: no model file is read ----------------------------------------------


def test_authenticate_then_bytes_of_the_signed_file_pass(
    keypair: tuple[Signer, TrustStore], model_file: Path
) -> None:
    signer, trust = keypair
    sig = sign(model_file, signer)
    data = model_file.read_bytes()
    model_file.unlink()  # authenticate and check_bytes never look at the model on disk
    auth = authenticated(sig, trust)
    assert (auth.key_id, auth.subject, auth.method, auth.hash_type) == (
        signer.key_id,
        "model.pkl",
        "files",
        "sha256",
    )
    assert auth.files == (".",) and auth.shard_size is None and auth.where == str(sig)
    assert [r.digest for r in auth.resources] == [hashlib.sha256(data).hexdigest()]
    assert auth.ignore_paths == ()  # nothing is left out unless asked
    auth.check_bytes(data)
    auth.check_bytes(data, "model.pkl")  # the file's own name is accepted too
    for held in (bytearray(data), memoryview(data), memoryview(bytearray(data))):
        auth.check_bytes(held)


def test_one_flipped_byte_fails(keypair: tuple[Signer, TrustStore], model_file: Path) -> None:
    signer, trust = keypair
    sig = sign(model_file, signer)
    data = model_file.read_bytes()
    auth = authenticated(sig, trust)
    for index in (0, len(data) // 2, len(data) - 1):
        with pytest.raises(DigestMismatchError, match="changed since it was signed") as caught:
            auth.check_bytes(flip(data, index))
        assert type(caught.value) is DigestMismatchError  # not a subject mismatch
    for changed in (data[:-1], data + b"\0", b""):
        with pytest.raises(DigestMismatchError):
            auth.check_bytes(changed)


def test_authenticate_refuses_before_reading_any_model(model_file: Path, tmp_path: Path) -> None:
    signer, _ = make_key(tmp_path, "ecdsa-p256", "signer")
    _, other = make_key(tmp_path, "ecdsa-p256", "other")
    signature = sign(model_file, signer).read_bytes()
    with pytest.raises(UnknownKeyError, match="not trusted"):
        authenticate(signature, other, where="model.pkl.sig")
    trust = TrustStore.load(keys=[tmp_path / "keys" / "signer.pub"])
    document = json.loads(signature)
    payload = bytearray(document["dsseEnvelope"]["payload"].encode())
    payload[10] = ord("A") if payload[10] != ord("A") else ord("B")  # still valid base64
    document["dsseEnvelope"]["payload"] = payload.decode()
    with pytest.raises(InvalidSignatureError, match="does not match its payload"):
        authenticate(json.dumps(document).encode(), trust, where="model.pkl.sig")
    with pytest.raises(MalformedSignatureError, match=r"^in memory is not valid JSON"):
        authenticate(signature[:-20], trust, where="in memory")
    with pytest.raises(TypeError):
        authenticate(signature, None, where="x")  # type: ignore[arg-type]


def test_read_signature_is_bounded(
    tmp_path: Path, model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sig = tmp_path / "model.pkl.sig"
    with pytest.raises(MissingSignatureError, match=re.escape(f"{model_file} is not signed")):
        read_signature(sig, model=model_file)
    sig.write_bytes(b"  \n")
    with pytest.raises(MalformedSignatureError, match="empty"):
        read_signature(sig)
    sig.write_bytes(b"{" + b" " * 100 + b"}")
    monkeypatch.setattr(_verify, "MAX_SIGNATURE_FILE", 100)
    with pytest.raises(MalformedSignatureError, match=r"is 102 bytes, larger than .* \(100\)"):
        read_signature(sig)
    assert MAX_SIGNATURE_FILE == 8 << 20


# -- single files: names and subjects --------------------------------------------------


def test_signature_of_another_file(ecdsa: tuple[Signer, TrustStore], tmp_path: Path) -> None:
    signer, trust = ecdsa
    a = tmp_path / "a.pkl"
    a.write_bytes(b"\x80\x05K\x01.")
    auth = authenticated(sign(a, signer), trust)
    other = b"\x80\x05K\x02."
    with pytest.raises(SubjectMismatchError, match=re.escape("signed for 'a.pkl', not 'b.pkl'")):
        auth.check_bytes(other, "b.pkl")  # named: the signature belongs to another file
    with pytest.raises(DigestMismatchError) as caught:
        auth.check_bytes(other)  # unnamed: only the content is known to differ
    assert type(caught.value) is DigestMismatchError
    with pytest.raises(SubjectMismatchError, match=re.escape("signed for 'a.pkl', not 'b.pkl'")):
        auth.check_bytes(a.read_bytes(), "b.pkl")  # the signed bytes under another name
    auth.check_bytes(a.read_bytes())  # unnamed ("."): the caller checked the name itself
    with pytest.raises(SubjectMismatchError, match=re.escape("single file 'a.pkl'")):
        auth.check_bytes(a.read_bytes(), "sub/a.pkl")


def test_spec_basename_resource(ecdsa: tuple[Signer, TrustStore], tmp_path: Path) -> None:
    """The spec names a single file's resource by its basename (model-signing writes ".")."""
    signer, trust = ecdsa
    digest = hashlib.sha256(b"weights").hexdigest()
    statement = json.loads(_statement.build("model.bin", {".": digest}, ()))
    statement["predicate"]["resources"][0]["name"] = "model.bin"
    sig = tmp_path / "model.bin.sig"
    sign_payload(json.dumps(statement).encode(), signer, sig)
    auth = authenticated(sig, trust)
    auth.check_bytes(b"weights")
    auth.check_bytes(b"weights", "model.bin")
    with pytest.raises(
        SubjectMismatchError, match=re.escape("signed for 'model.bin', not 'other.bin'")
    ):
        auth.check_bytes(b"weights", "other.bin")
    with pytest.raises(DigestMismatchError):
        auth.check_bytes(b"weightz", "model.bin")


# -- files inside a signed directory ---------------------------------------------------


def test_files_inside_a_signed_directory(
    keypair: tuple[Signer, TrustStore], model_dir: Path
) -> None:
    signer, trust = keypair
    auth = authenticated(sign(model_dir, signer, ignore_git=True), trust)
    names = ["config.json", "sub/deeper/empty", "sub/tokenizer.pkl", "weights.bin"]
    assert list(auth.files) == names
    for name in names:
        auth.check_bytes((model_dir / name).read_bytes(), name)
    weights = (model_dir / "weights.bin").read_bytes()
    with pytest.raises(DigestMismatchError, match=re.escape("weights.bin changed")):
        auth.check_bytes(flip(weights, 2999), "weights.bin")
    with pytest.raises(DigestMismatchError):  # another signed file's bytes under this name
        auth.check_bytes((model_dir / "config.json").read_bytes(), "weights.bin")


def test_names_a_directory_signature_does_not_list(
    ecdsa: tuple[Signer, TrustStore], model_dir: Path
) -> None:
    signer, trust = ecdsa
    auth = authenticated(sign(model_dir, signer, ignore_git=True), trust)
    with pytest.raises(
        MissingFileError, match=re.escape("does not list 'added.pkl': it is not part")
    ):
        auth.check_bytes(b"\x80\x05N.", "added.pkl")
    with pytest.raises(MissingFileError, match="ignore list excludes it"):
        auth.check_bytes((model_dir / ".git" / "HEAD").read_bytes(), ".git/HEAD")
    with pytest.raises(MissingFileError, match="not a single file"):
        auth.check_bytes(b"", ".")
    for unnormalized in ("./config.json", "sub//tokenizer.pkl", "/config.json"):
        with pytest.raises(MissingFileError):  # names are exact, as locate_signature gives them
            auth.check_bytes((model_dir / "config.json").read_bytes(), unnormalized)


# -- shard manifests -------------------------------------------------------------------


@pytest.mark.parametrize("size", [2500, 2048, 1, 1024])
def test_single_file_shards(ecdsa: tuple[Signer, TrustStore], tmp_path: Path, size: int) -> None:
    signer, trust = ecdsa
    data = os.urandom(size)
    sig = tmp_path / "model.bin.sig"
    sign_shards({".": data}, "model.bin", 1024, signer, sig)
    auth = authenticated(sig, trust)
    assert (auth.method, auth.shard_size, auth.files) == ("shards", 1024, (".",))
    auth.check_bytes(data)
    auth.check_bytes(data, "model.bin")
    wrong = {
        "truncated by one byte": data[:-1],
        "truncated by a shard": data[:-1024],
        "extended by one byte": data + b"\0",
        "extended by a shard": data + bytes(1024),
        "first byte altered": flip(data, 0),
        "last byte altered": flip(data, size - 1),
    }
    for reason, held in wrong.items():
        with pytest.raises(DigestMismatchError, match="changed since it was signed"):
            auth.check_bytes(held)
            pytest.fail(reason)


def test_directory_shards(ecdsa: tuple[Signer, TrustStore], tmp_path: Path) -> None:
    signer, trust = ecdsa
    files = {"weights.bin": os.urandom(5000), "config.json": b"{}", "empty": b""}
    sig = tmp_path / "model.sig"
    sign_shards(files, "model", 40, signer, sig)
    auth = authenticated(sig, trust)
    assert auth.files == ("config.json", "weights.bin")  # an empty file has no shards
    auth.check_bytes(files["weights.bin"], "weights.bin")
    auth.check_bytes(files["config.json"], "config.json")
    with pytest.raises(DigestMismatchError, match=re.escape("weights.bin")):
        auth.check_bytes(flip(files["weights.bin"], 4321), "weights.bin")
    with pytest.raises(DigestMismatchError):
        auth.check_bytes(files["weights.bin"][:4999], "weights.bin")
    with pytest.raises(MissingFileError):  # unlisted, so not signed, though it is empty
        auth.check_bytes(b"", "empty")


def test_shards_must_tile_the_bytes(ecdsa: tuple[Signer, TrustStore], tmp_path: Path) -> None:
    """Every shard matching is not enough: together they must cover exactly the bytes held."""
    signer, trust = ecdsa
    data = os.urandom(100)
    sig = tmp_path / "m.sig"
    sign_shards({".": data}, "m", 40, signer, sig)
    statement = json.loads(_dsse.parse(sig.read_bytes(), "m.sig").payload)
    statement["predicate"]["resources"].pop(1)  # drop the middle shard 40:80
    statement["subject"][0]["digest"]["sha256"] = _statement.root_digest(
        r["digest"] for r in statement["predicate"]["resources"]
    )
    sign_payload(json.dumps(statement).encode(), signer, sig)
    auth = authenticated(sig, trust)
    with pytest.raises(DigestMismatchError):  # shards 0:40 and 80:100 both match
        auth.check_bytes(data)


@pytest.mark.parametrize("name", ["w:01:40", "w:+0:40", "w:0:4_0", "w: 0:40", "w:0:0"])
def test_shard_offsets_are_parsed_strictly(
    ecdsa: tuple[Signer, TrustStore], tmp_path: Path, name: str
) -> None:
    signer, trust = ecdsa
    digest = hashlib.sha256(b"x").hexdigest()
    statement = json.loads(_statement.build("m", {}, ()))
    statement["predicate"]["serialization"].update(method="shards", shard_size=40)
    statement["predicate"]["resources"] = [
        {"name": name, "algorithm": "sha256-sharded-40", "digest": digest}
    ]
    statement["subject"][0]["digest"]["sha256"] = _statement.root_digest([digest])
    sig = tmp_path / "m.sig"
    sign_payload(json.dumps(statement).encode(), signer, sig)
    with pytest.raises(MalformedSignatureError, match="shard resource"):
        authenticated(sig, trust)


def test_verified_check_bytes_on_shards(ecdsa: tuple[Signer, TrustStore], tmp_path: Path) -> None:
    signer, trust = ecdsa
    root = tmp_path / "model"
    root.mkdir()
    weights = os.urandom(1000)
    (root / "weights.bin").write_bytes(weights)
    sign_shards({"weights.bin": weights}, "model", 64, signer, tmp_path / "model.sig")
    verified = verify(root, trust)
    assert dict(verified.digests) == {}  # no whole-file digest; the shards are checked instead
    verified.check_bytes(weights, "weights.bin")
    with pytest.raises(DigestMismatchError, match="changed after it was verified"):
        verified.check_bytes(weights[:-64], "weights.bin")
    with pytest.raises(DigestMismatchError):
        verified.check_bytes(flip(weights, 500), "weights.bin")


def test_verified_check_bytes_refuses_unsigned_files(
    ecdsa: tuple[Signer, TrustStore], model_dir: Path
) -> None:
    signer, trust = ecdsa
    sign(model_dir, signer)
    (model_dir / "added.pkl").write_bytes(b"N.")
    verified = verify(model_dir, trust, ignore_unsigned=True)
    assert verified.unsigned == ("added.pkl",)
    with pytest.raises(MissingFileError, match=re.escape("'added.pkl' is not signed")):
        verified.check_bytes(b"N.", "added.pkl")
    verified.check_bytes((model_dir / "config.json").read_bytes(), "config.json")


# -- hashing in place, in a second thread ----------------------------------------------


class RecordingHash:
    """A SHA-256 that records what it is given, and can hold its first update."""

    seen: ClassVar[list[memoryview | bytes]] = []
    gate: ClassVar[threading.Event | None] = None
    threads: ClassVar[set[int]] = set()

    def __init__(self) -> None:
        self._inner = hashlib.sha256()

    def update(self, data: memoryview | bytes) -> None:
        RecordingHash.threads.add(threading.get_ident())
        if RecordingHash.gate is not None:
            assert RecordingHash.gate.wait(30), "the caller never opened the gate"
        RecordingHash.seen.append(data)
        self._inner.update(data)

    def hexdigest(self) -> str:
        return self._inner.hexdigest()


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> type[RecordingHash]:
    """Byte checks (only they: signing still hashes files normally) use `RecordingHash`."""
    RecordingHash.seen, RecordingHash.gate, RecordingHash.threads = [], None, set()
    monkeypatch.setattr(_bytes, "HASHES", {**_bytes.HASHES, "sha256": RecordingHash})
    return RecordingHash


def test_large_buffers_are_hashed_in_place_in_chunks(
    ecdsa: tuple[Signer, TrustStore], tmp_path: Path, recording: type[RecordingHash]
) -> None:
    signer, trust = ecdsa
    path = tmp_path / "big.bin"
    data = os.urandom(3 * _bytes.CHUNK + 12345)
    path.write_bytes(data)
    auth = authenticated(sign(path, signer), trust)
    auth.check_bytes(data)
    assert [len(v) for v in recording.seen] == [_bytes.CHUNK] * 3 + [12345]
    # Slices of the caller's own buffer: nothing was copied.
    assert all(isinstance(v, memoryview) and v.obj is data for v in recording.seen)


def test_any_contiguous_buffer(ecdsa: tuple[Signer, TrustStore], tmp_path: Path) -> None:
    signer, trust = ecdsa
    words = array.array("I", range(1000))
    path = tmp_path / "words.bin"
    path.write_bytes(words.tobytes())
    auth = authenticated(sign(path, signer), trust)
    auth.check_bytes(words)  # hashed as its bytes, not as 1000 items
    auth.check_bytes(memoryview(words))
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        auth.check_bytes(mm)
        auth.start_check(mm).result()
        mm.close()  # the check released its view, so the map can close
    with pytest.raises(TypeError, match="contiguous"):
        auth.check_bytes(memoryview(words.tobytes())[::2])
    held = bytearray(words.tobytes())
    auth.check_bytes(held)
    held[0] ^= 1
    with pytest.raises(DigestMismatchError) as caught:
        auth.check_bytes(held)
    pending = auth.start_check(held)
    with pytest.raises(DigestMismatchError):
        pending.result()
    # The errors keep the checking frames alive, but their views were released, so the
    # bytearray can be resized (an exported buffer would raise BufferError).
    held.append(0)
    assert caught.value.__traceback__ is not None


def test_start_check_hashes_in_another_thread(
    ecdsa: tuple[Signer, TrustStore], tmp_path: Path, recording: type[RecordingHash]
) -> None:
    """The hash waits for a gate the caller opens after start_check returned: hashing in
    the calling thread would deadlock (and fail the gate's assertion)."""
    signer, trust = ecdsa
    path = tmp_path / "m.bin"
    data = os.urandom(10_000)
    path.write_bytes(data)
    auth = authenticated(sign(path, signer), trust)
    recording.gate = threading.Event()
    pending = auth.start_check(data)
    assert isinstance(pending, PendingCheck) and not pending.done()
    with pytest.raises(TimeoutError):
        pending.result(timeout=0.05)
    recording.gate.set()
    assert pending.result(timeout=30) is None
    assert pending.done()
    assert threading.get_ident() not in recording.threads


def test_cancelled_check_never_succeeds(
    ecdsa: tuple[Signer, TrustStore], tmp_path: Path, recording: type[RecordingHash]
) -> None:
    signer, trust = ecdsa
    path = tmp_path / "m.bin"
    data = os.urandom(3 * _bytes.CHUNK)
    path.write_bytes(data)
    auth = authenticated(sign(path, signer), trust)
    recording.gate = threading.Event()
    pending = auth.start_check(data)
    pending.cancel()
    recording.gate.set()
    with pytest.raises(CancelledError):
        pending.result(timeout=30)
    assert len(recording.seen) < 3  # it stopped before hashing every chunk


def in_thread(checker: Any, data: bytes, name: str) -> None:
    checker.start_check(data, name).result(timeout=30)


def test_threaded_check_gives_the_same_results(
    keypair: tuple[Signer, TrustStore], tmp_path: Path, model_dir: Path
) -> None:
    signer, trust = keypair
    directory = authenticated(sign(model_dir, signer), trust)
    shard_data = os.urandom(2500)
    sign_shards({".": shard_data}, "sharded.bin", 1024, signer, tmp_path / "sharded.bin.sig")
    shards = authenticated(tmp_path / "sharded.bin.sig", trust)
    verified = verify(model_dir, trust)
    weights = (model_dir / "weights.bin").read_bytes()
    cases: list[tuple[Any, bytes, str]] = [
        (directory, weights, "weights.bin"),
        (directory, flip(weights, 7), "weights.bin"),
        (directory, weights, "config.json"),
        (directory, weights, "absent.bin"),
        (directory, weights, "."),
        (shards, shard_data, "."),
        (shards, shard_data[:-1], "."),
        (shards, shard_data + b"\0", "."),
        (shards, flip(shard_data, 2000), "."),
        (shards, shard_data, "sub/sharded.bin"),
        (verified, weights, "weights.bin"),
        (verified, weights[:-1], "weights.bin"),
        (verified, weights, "nowhere"),
    ]
    results = []
    for checker, data, name in cases:
        direct = outcome(partial(checker.check_bytes, data, name))
        threaded = outcome(partial(in_thread, checker, data, name))
        assert direct == threaded, (name, direct, threaded)
        results.append(direct[0] if direct else None)
    assert results == [
        None,
        DigestMismatchError,
        DigestMismatchError,
        MissingFileError,
        MissingFileError,
        None,
        DigestMismatchError,
        DigestMismatchError,
        DigestMismatchError,
        SubjectMismatchError,
        None,
        DigestMismatchError,
        MissingFileError,
    ]


# -- locate_signature ------------------------------------------------------------------


def test_locate_signature_of_a_file(ecdsa: tuple[Signer, TrustStore], model_file: Path) -> None:
    signer, trust = ecdsa
    sig = sign(model_file, signer)
    found = locate_signature(model_file)
    assert found == (sig, model_file, ".")
    assert (found.signature, found.root, found.name) == (sig, model_file, ".")
    auth = authenticate(read_signature(found.signature), trust, where=found.signature)
    auth.check_bytes(model_file.read_bytes(), found.name)


def test_locate_signature_inside_a_signed_directory(
    ecdsa: tuple[Signer, TrustStore], model_dir: Path, tmp_path: Path
) -> None:
    signer, trust = ecdsa
    sig = sign(model_dir, signer)
    target = model_dir / "sub" / "tokenizer.pkl"
    found = locate_signature(target)
    assert found == (sig, model_dir, "sub/tokenizer.pkl")
    auth = authenticate(read_signature(found.signature), trust, where=found.signature)
    auth.check_bytes(target.read_bytes(), found.name)
    # A file of the directory that was not signed is located, then refused by name.
    (model_dir / "sub" / "added.pkl").write_bytes(b"N.")
    found = locate_signature(model_dir / "sub" / "added.pkl")
    assert found.name == "sub/added.pkl"
    with pytest.raises(MissingFileError):
        auth.check_bytes(b"N.", found.name)


def test_locate_signature_prefers_the_nearest(
    ecdsa: tuple[Signer, TrustStore], model_dir: Path
) -> None:
    signer, _ = ecdsa
    outer = sign(model_dir, signer)
    inner = sign(model_dir / "sub", signer)  # sub.sig sits inside model/, beside sub/
    own = sign(model_dir / "sub" / "tokenizer.pkl", signer)
    assert locate_signature(model_dir / "sub" / "tokenizer.pkl") == (
        own,
        model_dir / "sub" / "tokenizer.pkl",
        ".",
    )
    own.unlink()
    assert locate_signature(model_dir / "sub" / "tokenizer.pkl") == (
        inner,
        model_dir / "sub",
        "tokenizer.pkl",
    )
    assert locate_signature(model_dir / "sub" / "deeper" / "empty").signature == inner
    inner.unlink()
    assert locate_signature(model_dir / "sub" / "deeper" / "empty") == (
        outer,
        model_dir,
        "sub/deeper/empty",
    )


def test_locate_signature_of_an_unsigned_file(tmp_path: Path, model_file: Path) -> None:
    with pytest.raises(MissingSignatureError, match=re.escape(f"{model_file} is not signed")):
        locate_signature(model_file)
    with pytest.raises(FileNotFoundError):
        locate_signature(tmp_path / "absent.pkl")


def test_locate_signature_relative_paths(
    ecdsa: tuple[Signer, TrustStore], model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer, _ = ecdsa
    model_dir = model_dir.resolve()  # the working directory is always a resolved path
    sig = sign(model_dir, signer)
    monkeypatch.chdir(model_dir / "sub")
    assert locate_signature("tokenizer.pkl") == (sig, model_dir, "sub/tokenizer.pkl")
    assert locate_signature("deeper/../tokenizer.pkl") == (sig, model_dir, "sub/tokenizer.pkl")
    assert locate_signature("../config.json") == (sig, model_dir, "config.json")


def test_locate_signature_stops_at_symbolic_links(
    ecdsa: tuple[Signer, TrustStore], model_dir: Path, tmp_path: Path
) -> None:
    signer, _ = ecdsa
    sig = sign(model_dir, signer)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "evil.pkl").write_bytes(b"N.")
    (model_dir / "linked").symlink_to(elsewhere)
    with pytest.raises(MissingSignatureError, match="stopped at symbolic link"):
        locate_signature(model_dir / "linked" / "evil.pkl")
    (model_dir / "alias.pkl").symlink_to(model_dir / "config.json")
    with pytest.raises(MissingSignatureError, match="stopped at symbolic link"):
        locate_signature(model_dir / "alias.pkl")
    # Links above the signed directory are fine: they lead to it, they are not in it.
    (tmp_path / "models").symlink_to(tmp_path)
    found = locate_signature(tmp_path / "models" / "model" / "config.json")
    assert found == (
        tmp_path / "models" / "model.sig",
        tmp_path / "models" / "model",
        "config.json",
    )
    assert found.signature.read_bytes() == sig.read_bytes()


# -- the loader's flow ------------------------------------------------------------------


def test_bytes_held_are_what_is_checked(
    keypair: tuple[Signer, TrustStore], model_dir: Path
) -> None:
    """Locate, authenticate, read once, hash beside the parse: a file replaced on disk after
    it was read cannot change what is checked, and its new bytes fail."""
    signer, trust = keypair
    sign(model_dir, signer)
    path = model_dir / "sub" / "tokenizer.pkl"
    found = locate_signature(path)
    auth = authenticate(read_signature(found.signature), trust, where=found.signature)
    held = path.read_bytes()
    pending = auth.start_check(held, found.name)
    path.write_bytes(pickle.dumps(["replaced"]))  # swapped after the read
    assert pickle.loads(held) == ["a", "b"]  # the parse (a stand-in) runs meanwhile
    pending.result()
    with pytest.raises(DigestMismatchError, match=re.escape("sub/tokenizer.pkl")):
        auth.start_check(path.read_bytes(), found.name).result()
