"""The guarded loader's signature checks, with real keys from safeload's own keygen.

A missing signature, a tampered file, an untrusted key, a forged or corrupt
signature each raise their own `SignatureError` subclass; a tampered file is
reported as tampered even when it is also hostile or unloadable. An unsigned
load is possible only by asking (`require_signature=False`), and warns with
the file's name. `loads` verifies bytes held in memory against signature bytes.
Hostile bytes only ever create `canary` in the test's own `tmp_path`.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import re
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import safeload
from safeload import UnsignedLoadWarning
from safeload.errors import (
    DigestMismatchError,
    InvalidSignatureError,
    MalformedSignatureError,
    MissingFileError,
    MissingSignatureError,
    SignatureError,
    UnknownKeyError,
    UnsafeFileError,
)
from safeload.sign import Signer, TrustStore, generate_key, load_signer, sign
from tests.hostile_containers import payload

OBJ = {"coef": [0.25, -1.0], "classes": ("a", "b")}
KINDS = ("ed25519", "ecdsa-p256", "hmac")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    yield
    assert not (tmp_path / "canary").exists(), "a payload ran"


def make_key(folder: Path, kind: str, name: str) -> tuple[Signer, TrustStore]:
    folder.mkdir(exist_ok=True)
    info = generate_key(kind, folder / name)  # type: ignore[arg-type]
    trusted = info.public if info.public is not None else info.private
    return load_signer(info.private), TrustStore.load(keys=[trusted])


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Signer, TrustStore]]:
    folder = tmp_path_factory.mktemp("keys")
    return {kind: make_key(folder, kind, f"team-{kind}") for kind in KINDS}


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> tuple[Signer, TrustStore]:
    return make_key(tmp_path_factory.mktemp("stranger"), "ed25519", "stranger")


def model(tmp_path: Path, data: bytes | None = None, name: str = "model.pkl") -> Path:
    path = tmp_path / name
    path.write_bytes(pickle.dumps(OBJ, protocol=4) if data is None else data)
    return path


@pytest.mark.parametrize("kind", KINDS)
def test_signed_file_loads(tmp_path: Path, team: dict[str, Any], kind: str) -> None:
    signer, trust = team[kind]
    path = model(tmp_path)
    sign(path, signer)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert safeload.load(path, trust=trust) == OBJ


def test_missing_signature(tmp_path: Path, team: dict[str, Any]) -> None:
    path = model(tmp_path)
    with pytest.raises(MissingSignatureError, match=r"model\.pkl is not signed"):
        safeload.load(path, trust=team["ed25519"][1])
    with pytest.raises(MissingSignatureError):
        safeload.load(path, trust=team["ed25519"][1], require_signature=True)
    with pytest.raises(MissingSignatureError, match="does not exist"):
        safeload.load(path, trust=team["ed25519"][1], signature=tmp_path / "elsewhere.sig")


def test_signature_is_required_unless_refused_explicitly(tmp_path: Path) -> None:
    """No trust store and no require_signature=False: a usage error, nothing is read."""
    path = model(tmp_path)
    with pytest.raises(TypeError, match="require_signature=False"):
        safeload.load(path)
    with pytest.raises(TypeError, match="require_signature=False"):
        safeload.loads(path.read_bytes())


@pytest.mark.parametrize("kind", KINDS)
def test_tampered_file(tmp_path: Path, team: dict[str, Any], kind: str) -> None:
    signer, trust = team[kind]
    path = model(tmp_path)
    sign(path, signer)
    path.write_bytes(pickle.dumps({**OBJ, "coef": [9.0, 9.0]}, protocol=4))
    with pytest.raises(DigestMismatchError, match="changed since it was signed") as info:
        safeload.load(path, trust=trust)
    assert type(info.value) is DigestMismatchError


@pytest.mark.parametrize(
    "content",
    ["hostile", "unknown-global", "unloadable-archive", "truncated"],
)
def test_tampered_file_is_reported_as_tampered_first(
    tmp_path: Path, team: dict[str, Any], content: str
) -> None:
    """Whatever else is wrong with the bytes, the signature says they are not the signed ones."""
    signer, trust = team["ed25519"]
    path = model(tmp_path)
    sign(path, signer)
    if content == "hostile":
        data = payload()
    elif content == "unknown-global":
        data = b"\x80\x02cacme.models\nNet\nq\x00)\x81q\x01."
    elif content == "unloadable-archive":
        # scans safe, but the loader reads no archive of two files
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("a.pkl", pickle.dumps(1))
            zf.writestr("b.pkl", pickle.dumps(2))
        data = buf.getvalue()
    else:
        data = pickle.dumps(OBJ, protocol=4)[:-5]
    # the same bytes, unsigned, are refused for their own reason
    with pytest.raises(safeload.SafeloadError) as unsigned, warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsignedLoadWarning)
        safeload.loads(data, require_signature=False)
    assert not isinstance(unsigned.value, SignatureError)
    path.write_bytes(data)
    with pytest.raises(DigestMismatchError) as info:
        safeload.load(path, trust=trust)
    assert type(info.value) is DigestMismatchError, info.value


def test_unsigned_load_warns_with_the_file_name(tmp_path: Path) -> None:
    path = model(tmp_path)
    with pytest.warns(UnsignedLoadWarning, match=re.escape(str(path))):
        assert safeload.load(path, require_signature=False) == OBJ
    with pytest.warns(UnsignedLoadWarning, match="weights.bin"):
        safeload.loads(path.read_bytes(), require_signature=False, location="weights.bin")


def test_unsigned_load_still_scans(tmp_path: Path) -> None:
    path = model(tmp_path, payload())
    with pytest.warns(UnsignedLoadWarning), pytest.raises(UnsafeFileError):
        safeload.load(path, require_signature=False)


def test_require_signature_false_with_trust_still_verifies(
    tmp_path: Path, team: dict[str, Any]
) -> None:
    """Giving a trust store means verifying: require_signature=False does not skip it."""
    path = model(tmp_path)
    with pytest.raises(MissingSignatureError):
        safeload.load(path, trust=team["ed25519"][1], require_signature=False)


def test_untrusted_key(tmp_path: Path, team: dict[str, Any], stranger: Any) -> None:
    path = model(tmp_path)
    sign(path, stranger[0])
    with pytest.raises(UnknownKeyError):
        safeload.load(path, trust=team["ed25519"][1])
    assert safeload.load(path, trust=stranger[1]) == OBJ


def test_forged_signature(tmp_path: Path, team: dict[str, Any]) -> None:
    """The trusted key's hint, but a signature value it did not make."""
    signer, trust = team["ed25519"]
    path = model(tmp_path)
    sig = sign(path, signer)
    bundle = json.loads(sig.read_text())
    envelope = bundle["dsseEnvelope"]
    raw = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    raw[0] ^= 0x01
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    sig.write_text(json.dumps(bundle))
    with pytest.raises(InvalidSignatureError):
        safeload.load(path, trust=trust)


def test_corrupt_signature_file(tmp_path: Path, team: dict[str, Any]) -> None:
    path = model(tmp_path)
    (tmp_path / "model.pkl.sig").write_text("{not json")
    with pytest.raises(MalformedSignatureError):
        safeload.load(path, trust=team["ed25519"][1])


def test_file_added_to_a_signed_directory(tmp_path: Path, team: dict[str, Any]) -> None:
    signer, trust = team["ed25519"]
    root = tmp_path / "bundle"
    root.mkdir()
    model(root)
    sign(root, signer)
    assert safeload.load(root / "model.pkl", trust=trust) == OBJ
    extra = model(root, name="extra.pkl")
    with pytest.raises(MissingFileError, match=r"extra\.pkl"):
        safeload.load(extra, trust=trust)


# -- loads: bytes held in memory ---------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_loads_with_signature_bytes(tmp_path: Path, team: dict[str, Any], kind: str) -> None:
    signer, trust = team[kind]
    path = model(tmp_path)
    sig = sign(path, signer)
    data, signature = path.read_bytes(), sig.read_bytes()
    assert safeload.loads(data, signature=signature, trust=trust) == OBJ
    assert safeload.loads(bytearray(data), signature=sig, trust=trust) == OBJ
    tampered = data.replace(b"classes", b"Classes")
    with pytest.raises(DigestMismatchError):
        safeload.loads(tampered, signature=signature, trust=trust)
    with pytest.raises(DigestMismatchError):
        safeload.loads(payload(), signature=signature, trust=trust)


def test_loads_needs_signature_and_trust(tmp_path: Path, team: dict[str, Any]) -> None:
    signer, trust = team["ed25519"]
    path = model(tmp_path)
    signature = sign(path, signer).read_bytes()
    with pytest.raises(TypeError):
        safeload.loads(path.read_bytes(), trust=trust)
    with pytest.raises(TypeError):
        safeload.loads(path.read_bytes(), signature=signature)


def test_loads_untrusted_key(tmp_path: Path, team: dict[str, Any], stranger: Any) -> None:
    path = model(tmp_path)
    signature = sign(path, stranger[0]).read_bytes()
    with pytest.raises(UnknownKeyError):
        safeload.loads(path.read_bytes(), signature=signature, trust=team["ed25519"][1])


def test_loads_member_of_a_signed_directory(tmp_path: Path, team: dict[str, Any]) -> None:
    signer, trust = team["ed25519"]
    root = tmp_path / "bundle"
    (root / "sub").mkdir(parents=True)
    model(root / "sub")
    model(root, pickle.dumps([1, 2], protocol=2), name="other.pkl")
    signature = sign(root, signer).read_bytes()
    data = (root / "sub" / "model.pkl").read_bytes()
    assert safeload.loads(data, signature=signature, trust=trust, name="sub/model.pkl") == OBJ
    with pytest.raises(DigestMismatchError):  # the bytes of another member
        safeload.loads(data, signature=signature, trust=trust, name="other.pkl")
    with pytest.raises(MissingFileError):
        safeload.loads(data, signature=signature, trust=trust, name="nope.pkl")
