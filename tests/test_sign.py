"""Signing and verification: round trips, every tamper case, keys, dump() and the CLI.

Keys are generated in the test run; models are real files in tmp_path.
Interoperability with the real model-signing package is in test_sign_interop.py.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import pickle
import random
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from safeload._cli.sign import add_parsers, run
from safeload.errors import SafeloadError, SignatureError
from safeload.load import dump
from safeload.sign import (
    DigestMismatchError,
    EcdsaSigner,
    HmacKey,
    HmacSigner,
    InvalidSignatureError,
    KeyFileError,
    MalformedSignatureError,
    MissingFileError,
    MissingSignatureError,
    Signer,
    SigningError,
    SubjectMismatchError,
    TrustStore,
    UnknownKeyError,
    UnsignedFileError,
    UnsupportedSignatureError,
    Verified,
    _dsse,
    _statement,
    generate_key,
    hmac_keys_from_env,
    load_signer,
    sign,
    signature_path,
    verify,
)

ALGORITHMS = ("ed25519", "ecdsa-p256", "hmac")
EXPECTED_ALGORITHM = {"ed25519": "ed25519", "ecdsa-p256": "ecdsa-p256", "hmac": "hmac-sha256"}


# -- fixtures -----------------------------------------------------------------------


def make_key(tmp_path: Path, kind: str, name: str = "key") -> tuple[Signer, TrustStore]:
    """A fresh key of `kind`: its signer and a trust store holding only its verifier."""
    folder = tmp_path / "keys"
    folder.mkdir(exist_ok=True)
    info = generate_key(kind, folder / name)  # type: ignore[arg-type]
    trusted = info.public if info.public is not None else info.private
    return load_signer(info.private), TrustStore.load(keys=[trusted])


@pytest.fixture(params=ALGORITHMS)
def keypair(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Signer, TrustStore]:
    signer, trust = make_key(tmp_path, request.param)
    return request.param, signer, trust


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"weights": list(range(1000)), "name": "m"}, protocol=5))
    return path


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "config.json").write_text('{"layers": 3}')
    # Random-looking weights behind a byte no unpickler reads (0x00 is no opcode),
    # from a fixed seed: about 1 in 120 draws of 300 KB of os.urandom holds a
    # protocol header the scan reads as a further pickle after unparseable bytes
    # (SL304, or a global in it), and `safeload sign` then refuses the directory.
    (root / "weights.bin").write_bytes(b"\x00" + random.Random(20261201).randbytes(300_000))
    (root / "sub" / "tokenizer.pkl").write_bytes(pickle.dumps(["a", "b"]))
    (root / "sub" / "deeper" / "empty").write_bytes(b"")
    (root / "a-b").mkdir()
    (root / "a-b" / "x").write_bytes(b"x")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / ".gitattributes").write_text("*.bin filter=lfs\n")
    return root


def flip_bit(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def envelope_of(sig: Path) -> dict[str, Any]:
    """The DSSE envelope inside a signature file (bundle or bare)."""
    document: dict[str, Any] = json.loads(sig.read_text())
    return document.get("dsseEnvelope", document)


def rewrite(sig: Path, change: Callable[[dict[str, Any]], None]) -> None:
    document = json.loads(sig.read_text())
    change(document.get("dsseEnvelope", document))
    sig.write_text(json.dumps(document))


def statement_of(sig: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(base64.b64decode(envelope_of(sig)["payload"]))
    return result


def sign_payload(payload: bytes, signer: Signer, sig: Path) -> None:
    """Sign arbitrary statement bytes exactly as safeload would (for malformed-statement tests)."""
    data = _dsse.pae(_dsse.PAYLOAD_TYPE, payload)
    signature = _dsse.Signature(signer.sign(data), signer.keyid)
    sig.write_bytes(
        _dsse.encode(payload, [signature], bundle=signer.bundle, key_hint=signer.key_id)
    )


# -- round trips --------------------------------------------------------------------


def test_round_trip_single_file(keypair: tuple[str, Signer, TrustStore], model_file: Path) -> None:
    kind, signer, trust = keypair
    sig = sign(model_file, signer)
    assert sig == model_file.with_name("model.pkl.sig")
    result = verify(model_file, trust)
    assert isinstance(result, Verified)
    assert result.algorithm == EXPECTED_ALGORITHM[kind]
    assert result.key_id == signer.key_id
    assert result.files == (".",)
    assert result.subject == "model.pkl"
    assert result.unsigned == ()
    statement = statement_of(sig)
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert statement["predicate"]["resources"] == [
        {"name": ".", "algorithm": "sha256", "digest": digest}
    ]
    assert result.root_digest == hashlib.sha256(bytes.fromhex(digest)).hexdigest()
    assert dict(result.digests) == {".": digest} and result.hash_type == "sha256"
    result.check_bytes(model_file.read_bytes())
    with pytest.raises(DigestMismatchError, match="changed after it was verified"):
        result.check_bytes(model_file.read_bytes() + b"\0")
    with pytest.raises(MissingFileError):
        result.check_bytes(b"", "other.pkl")


def test_round_trip_directory(keypair: tuple[str, Signer, TrustStore], model_dir: Path) -> None:
    kind, signer, trust = keypair
    sig = sign(model_dir, signer, ignore_git=True)
    assert sig == model_dir.parent / "model.sig"
    result = verify(model_dir, trust)
    assert result.algorithm == EXPECTED_ALGORITHM[kind]
    expected = ["a-b/x", "config.json", "sub/deeper/empty", "sub/tokenizer.pkl", "weights.bin"]
    assert list(result.files) == expected
    assert result.ignored == (".git/", ".gitattributes")  # left out, and listed
    resources = statement_of(sig)["predicate"]["resources"]
    assert [r["name"] for r in resources] == expected  # code-point order, git files left out
    for resource in resources:
        content = (model_dir / resource["name"]).read_bytes()
        assert resource["digest"] == hashlib.sha256(content).hexdigest()
        assert result.digests[resource["name"]] == resource["digest"]


def test_directory_given_as_dot(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer, trust = make_key(tmp_path, "ecdsa-p256")
    monkeypatch.chdir(model_dir)
    assert signature_path(".") == model_dir.parent / "model.sig"
    sign(".", signer)
    assert verify(".", trust).subject == "model"


def test_parallel_and_serial_hashing_agree(tmp_path: Path, model_dir: Path) -> None:
    for index in range(40):
        (model_dir / f"shard-{index:02d}.bin").write_bytes(os.urandom(10_000 + index))
    signer, trust = make_key(tmp_path, "hmac")
    sign(model_dir, signer, workers=1)
    serial = statement_of(model_dir.parent / "model.sig")
    sign(model_dir, signer, workers=4)
    parallel = statement_of(model_dir.parent / "model.sig")
    for statement in (serial, parallel):  # the signing times may differ by a second
        del statement["subject"][0]["annotations"]
    assert parallel == serial
    assert len(verify(model_dir, trust, workers=4).files) == 47  # git files are signed too


def test_signature_inside_directory_is_not_signed(tmp_path: Path, model_dir: Path) -> None:
    signer, trust = make_key(tmp_path, "ed25519")
    inner = model_dir / "model.sig"
    sign(model_dir, signer, signature=inner)
    assert "model.sig" in statement_of(inner)["predicate"]["serialization"]["ignore_paths"]
    assert "model.sig" not in verify(model_dir, trust, signature=inner).files


def test_ignore_paths_are_recorded_and_honoured(tmp_path: Path, model_dir: Path) -> None:
    signer, trust = make_key(tmp_path, "hmac")
    sign(model_dir, signer, ignore_paths=["sub/"])
    result = verify(model_dir, trust)
    assert not any(name.startswith("sub/") for name in result.files)
    (model_dir / "sub" / "late.txt").write_text("not signed, but ignored by the signer")
    verify(model_dir, trust)
    (model_dir / "late.txt").write_text("not ignored")
    with pytest.raises(UnsignedFileError):
        verify(model_dir, trust)


def test_git_files_are_ignored(tmp_path: Path, model_dir: Path) -> None:
    signer, trust = make_key(tmp_path, "hmac")
    sign(model_dir, signer, ignore_git=True)
    (model_dir / ".git" / "index").write_bytes(b"changed")
    (model_dir / ".gitignore").write_text("*.tmp\n")
    assert verify(model_dir, trust).ignored == (".git/", ".gitattributes", ".gitignore")
    # The verifier follows the signed ignore list: without git paths, git files are unsigned.
    sig = model_dir.parent / "model.sig"
    statement = statement_of(sig)
    statement["predicate"]["serialization"]["ignore_paths"] = []
    sign_payload(json.dumps(statement).encode(), signer, sig)
    with pytest.raises(UnsignedFileError, match=re.escape(".git/HEAD")):
        verify(model_dir, trust)


def test_several_signers_in_one_bundle(tmp_path: Path, model_file: Path) -> None:
    hmac_signer, hmac_trust = make_key(tmp_path, "hmac", "h")
    ecdsa_signer, ecdsa_trust = make_key(tmp_path, "ecdsa-p256", "e")
    sign(model_file, [hmac_signer, ecdsa_signer])
    document = json.loads(model_file.with_name("model.pkl.sig").read_text())
    assert document["verificationMaterial"]["publicKey"]["hint"] == ecdsa_signer.key_id
    keyids = [s["keyid"] for s in document["dsseEnvelope"]["signatures"]]
    assert keyids == ["", f"hmac-sha256:{hmac_signer.key_id}"]
    assert verify(model_file, hmac_trust).algorithm == "hmac-sha256"
    assert verify(model_file, ecdsa_trust).algorithm == "ecdsa-p256"


# -- format details -----------------------------------------------------------------


def test_bundle_shape_for_public_keys(tmp_path: Path, model_file: Path) -> None:
    info = generate_key("ecdsa-p256", tmp_path / "k")
    assert info.public is not None
    sign(model_file, load_signer(info.private))
    document = json.loads(model_file.with_name("model.pkl.sig").read_text())
    assert document["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    hint = hashlib.sha256(info.public.read_bytes()).hexdigest()  # SHA-256 of the PEM text
    assert document["verificationMaterial"] == {"publicKey": {"hint": hint}, "tlogEntries": []}
    envelope = document["dsseEnvelope"]
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://model_signing/signature/v1.0"
    assert set(statement["predicate"]) == {"serialization", "resources"}
    # The DER ECDSA signature covers PAE(payloadType, payload), checked independently here.
    payload = base64.b64decode(envelope["payload"])
    pae = b"DSSEv1 28 application/vnd.in-toto+json %d %b" % (len(payload), payload)
    public = serialization.load_pem_public_key(info.public.read_bytes())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(
        base64.b64decode(envelope["signatures"][0]["sig"]), pae, ec.ECDSA(hashes_sha256())
    )


def hashes_sha256() -> Any:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def test_hmac_is_a_bare_envelope_with_named_key(tmp_path: Path, model_file: Path) -> None:
    generate_key("hmac", tmp_path / "h.key", kid="team-2026")
    sign(model_file, load_signer(tmp_path / "h.key"))
    document = json.loads(model_file.with_name("model.pkl.sig").read_text())
    assert set(document) == {"payloadType", "payload", "signatures"}
    (signature,) = document["signatures"]
    assert signature["keyid"] == "hmac-sha256:team-2026"
    assert len(base64.b64decode(signature["sig"])) == 32


def test_payload_bytes_are_verified_as_is(tmp_path: Path, model_file: Path) -> None:
    """Signed bytes are never re-serialized: odd but valid JSON layout verifies."""
    signer, trust = make_key(tmp_path, "ed25519")
    sign(model_file, signer)
    sig = model_file.with_name("model.pkl.sig")
    statement = statement_of(sig)
    payload = json.dumps(statement, indent=7, sort_keys=True).encode()
    sign_payload(payload, signer, sig)
    verify(model_file, trust)


def test_url_safe_unpadded_base64_is_accepted(tmp_path: Path, model_file: Path) -> None:
    signer, trust = make_key(tmp_path, "ecdsa-p256")
    sign(model_file, signer)
    sig = model_file.with_name("model.pkl.sig")

    def to_url_safe(envelope: dict[str, Any]) -> None:
        for item in [envelope, *envelope["signatures"]]:
            key = "payload" if item is envelope else "sig"
            raw = base64.b64decode(item[key])
            item[key] = base64.urlsafe_b64encode(raw).decode().rstrip("=")

    rewrite(sig, to_url_safe)
    verify(model_file, trust)


# -- tampering: each case fails with its own error --------------------------------------


def test_flipped_bit_in_artifact(keypair: tuple[str, Signer, TrustStore], model_file: Path) -> None:
    _, signer, trust = keypair
    sign(model_file, signer)
    model_file.write_bytes(flip_bit(model_file.read_bytes(), 100))
    with pytest.raises(DigestMismatchError, match="changed since it was signed") as caught:
        verify(model_file, trust)
    assert type(caught.value) is DigestMismatchError
    assert str(model_file) in str(caught.value)


def test_flipped_bit_in_payload(keypair: tuple[str, Signer, TrustStore], model_file: Path) -> None:
    _, signer, trust = keypair
    sig = sign(model_file, signer)

    def tamper(envelope: dict[str, Any]) -> None:
        payload = base64.b64decode(envelope["payload"])
        envelope["payload"] = base64.b64encode(flip_bit(payload, len(payload) // 2)).decode()

    rewrite(sig, tamper)
    with pytest.raises(InvalidSignatureError, match="does not match its payload"):
        verify(model_file, trust)


def test_flipped_bit_in_signature(
    keypair: tuple[str, Signer, TrustStore], model_file: Path
) -> None:
    _, signer, trust = keypair
    sig = sign(model_file, signer)

    def tamper(envelope: dict[str, Any]) -> None:
        raw = base64.b64decode(envelope["signatures"][0]["sig"])
        envelope["signatures"][0]["sig"] = base64.b64encode(flip_bit(raw, 10)).decode()

    rewrite(sig, tamper)
    with pytest.raises(InvalidSignatureError):
        verify(model_file, trust)


def test_signature_moved_to_another_file(
    keypair: tuple[str, Signer, TrustStore], model_file: Path
) -> None:
    _, signer, trust = keypair
    sig = sign(model_file, signer)
    other = model_file.with_name("other.pkl")
    other.write_bytes(pickle.dumps("another model"))
    other.with_name("other.pkl.sig").write_bytes(sig.read_bytes())
    with pytest.raises(SubjectMismatchError, match=re.escape("signed for 'model.pkl'")):
        verify(other, trust)
    with pytest.raises(SubjectMismatchError, match=re.escape("made for 'model.pkl'")):
        verify(other, trust, any_name=True)  # the name check skipped, the content differs
    # A signed file renamed together with its signature verifies only under its signed name.
    model_file.rename(tmp := model_file.with_name("renamed.pkl"))
    sig.rename(tmp.with_name("renamed.pkl.sig"))
    with pytest.raises(SubjectMismatchError, match=re.escape("signed for 'model.pkl'")):
        verify(tmp, trust)
    assert verify(tmp, trust, subject="model.pkl").subject == "model.pkl"
    assert verify(tmp, trust, any_name=True).subject == "model.pkl"


def test_directory_signature_used_for_a_file_and_back(tmp_path: Path, model_dir: Path) -> None:
    signer, trust = make_key(tmp_path, "hmac")
    dir_sig = sign(model_dir, signer)
    weights = model_dir / "weights.bin"
    with pytest.raises(MissingFileError, match="single file"):
        verify(weights, trust, signature=dir_sig, subject="model")
    file_sig = sign(weights, signer, signature=tmp_path / "w.sig")
    with pytest.raises(SubjectMismatchError, match="is a directory"):
        verify(model_dir, trust, signature=file_sig, subject="weights.bin")


def test_file_added_to_directory(keypair: tuple[str, Signer, TrustStore], model_dir: Path) -> None:
    _, signer, trust = keypair
    sign(model_dir, signer)
    (model_dir / "sub" / "payload.pkl").write_bytes(b"cos\nsystem\n.")
    with pytest.raises(UnsignedFileError, match=re.escape("sub/payload.pkl")):
        verify(model_dir, trust)
    result = verify(model_dir, trust, ignore_unsigned=True)
    assert result.unsigned == ("sub/payload.pkl",)
    assert "sub/payload.pkl" not in result.files


def test_file_removed_from_directory(
    keypair: tuple[str, Signer, TrustStore], model_dir: Path
) -> None:
    _, signer, trust = keypair
    sign(model_dir, signer)
    (model_dir / "sub" / "tokenizer.pkl").unlink()
    with pytest.raises(MissingFileError, match=re.escape("sub/tokenizer.pkl")):
        verify(model_dir, trust)
    with pytest.raises(MissingFileError):  # ignoring unsigned files never hides a removal
        verify(model_dir, trust, ignore_unsigned=True)


def test_file_changed_in_directory(tmp_path: Path, model_dir: Path) -> None:
    signer, trust = make_key(tmp_path, "ed25519")
    sign(model_dir, signer)
    (model_dir / "sub" / "deeper" / "empty").write_bytes(b"\0")
    with pytest.raises(DigestMismatchError, match="sub/deeper/empty") as caught:
        verify(model_dir, trust)
    assert type(caught.value) is DigestMismatchError


def test_file_renamed_in_directory(tmp_path: Path, model_dir: Path) -> None:
    signer, trust = make_key(tmp_path, "ed25519")
    sign(model_dir, signer)
    (model_dir / "config.json").rename(model_dir / "config2.json")
    with pytest.raises(MissingFileError, match=re.escape("config.json")):
        verify(model_dir, trust)


def test_symlinks_are_refused(tmp_path: Path, model_dir: Path) -> None:
    signer, trust = make_key(tmp_path, "hmac")
    (model_dir / "link").symlink_to(model_dir / "weights.bin")
    with pytest.raises(SigningError, match="symbolic link"):
        sign(model_dir, signer)
    (model_dir / "link").unlink()
    sign(model_dir, signer)
    (model_dir / "sub" / "escape").symlink_to("/etc")
    with pytest.raises(UnsignedFileError, match="sub/escape is a symbolic link"):
        verify(model_dir, trust)


def test_unknown_public_key(tmp_path: Path, model_file: Path) -> None:
    signer, _ = make_key(tmp_path, "ecdsa-p256", "signer")
    _, other_trust = make_key(tmp_path, "ed25519", "other")
    sign(model_file, signer)
    with pytest.raises(UnknownKeyError, match=f"public key '{signer.key_id[:16]}'"):
        verify(model_file, other_trust)


def test_unknown_hmac_kid(tmp_path: Path, model_file: Path) -> None:
    sign(model_file, HmacSigner(HmacKey("old", os.urandom(32))))
    trust = TrustStore(hmac_keys={"new": os.urandom(32)})
    with pytest.raises(UnknownKeyError, match="hmac-sha256:old"):
        verify(model_file, trust)


def test_wrong_hmac_secret_for_a_known_kid(model_file: Path) -> None:
    sign(model_file, HmacSigner(HmacKey("ci", os.urandom(32))))
    with pytest.raises(InvalidSignatureError):
        verify(model_file, TrustStore(hmac_keys={"ci": os.urandom(32)}))


def test_hmac_tag_of_the_wrong_length(model_file: Path) -> None:
    key = HmacKey("ci", os.urandom(32))
    sig = sign(model_file, HmacSigner(key))
    for length in (31, 33, 0):

        def cut(envelope: dict[str, Any], length: int = length) -> None:
            raw = key.tag(b"x")[:length] if length < 32 else key.tag(b"x") + b"\0"
            envelope["signatures"][0]["sig"] = base64.b64encode(raw).decode()

        rewrite(sig, cut)
        with pytest.raises(MalformedSignatureError, match=r"is \d+ bytes, expected 32"):
            verify(model_file, TrustStore([], [key]))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"not json at all", "is not valid JSON"),
        (b"[1, 2, 3]", "expected a JSON object"),
        (b"[" * 200_000 + b"]" * 200_000, "objects and arrays"),
        (b'{"dsseEnvelope": {}, "mediaType": "text/plain"}', "not a Sigstore bundle"),
        (b'{"payloadType": "text/plain", "payload": "", "signatures": []}', "payloadType"),
        (
            b'{"payloadType": "application/vnd.in-toto+json", "payload": "!!", "signatures": []}',
            "not valid base64",
        ),
        (
            b'{"payloadType": "application/vnd.in-toto+json", "payload": "", "signatures": []}',
            "holds no signatures",
        ),
    ],
)
def test_malformed_signature_files(
    tmp_path: Path, model_file: Path, content: bytes, message: str
) -> None:
    _, trust = make_key(tmp_path, "hmac")
    model_file.with_name("model.pkl.sig").write_bytes(content)
    with pytest.raises(MalformedSignatureError, match=message):
        verify(model_file, trust)


def test_truncated_signature(keypair: tuple[str, Signer, TrustStore], model_file: Path) -> None:
    _, signer, trust = keypair
    sig = sign(model_file, signer)
    data = sig.read_bytes()
    for cut in (len(data) // 3, len(data) - 5):
        sig.write_bytes(data[:cut])
        with pytest.raises(MalformedSignatureError, match="truncated"):
            verify(model_file, trust)


def test_missing_signature(tmp_path: Path, model_file: Path) -> None:
    _, trust = make_key(tmp_path, "hmac")
    with pytest.raises(MissingSignatureError, match=re.escape("model.pkl.sig does not exist")):
        verify(model_file, trust)


def test_inconsistent_statement_is_malformed(tmp_path: Path, model_file: Path) -> None:
    """A validly signed statement whose subject digest is not the root of its resources."""
    signer, trust = make_key(tmp_path, "ed25519")
    sig = sign(model_file, signer)
    statement = statement_of(sig)
    statement["subject"][0]["digest"]["sha256"] = "0" * 64
    sign_payload(json.dumps(statement).encode(), signer, sig)
    with pytest.raises(MalformedSignatureError, match="inconsistent"):
        verify(model_file, trust)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (
            lambda s: s.update(predicateType="https://model_signing/Digests/v0.1"),
            UnsupportedSignatureError,
            "legacy",
        ),
        (
            lambda s: s["predicate"]["serialization"].update(hash_type="blake3"),
            UnsupportedSignatureError,
            "blake3",
        ),
        (
            lambda s: s["predicate"]["resources"].append(dict(s["predicate"]["resources"][0])),
            MalformedSignatureError,
            "duplicate",
        ),
        (lambda s: s["subject"].append(s["subject"][0]), MalformedSignatureError, "one subject"),
        (
            lambda s: s["predicate"]["resources"][0].update(digest="XYZ"),
            MalformedSignatureError,
            "malformed digest",
        ),
    ],
)
def test_signed_but_unusable_statements(
    tmp_path: Path,
    model_file: Path,
    change: Callable[[dict[str, Any]], None],
    error: type[SignatureError],
    message: str,
) -> None:
    signer, trust = make_key(tmp_path, "hmac")
    sig = sign(model_file, signer)
    statement = statement_of(sig)
    change(statement)
    sign_payload(json.dumps(statement).encode(), signer, sig)
    with pytest.raises(error, match=message):
        verify(model_file, trust)


def test_duplicate_json_keys_in_payload_are_refused(tmp_path: Path, model_file: Path) -> None:
    signer, trust = make_key(tmp_path, "hmac")
    sig = sign(model_file, signer)
    payload = base64.b64decode(envelope_of(sig)["payload"])
    doubled = payload.replace(b'"_type":', b'"_type":"x","_type":', 1)
    sign_payload(doubled, signer, sig)
    with pytest.raises(MalformedSignatureError, match="repeats the key '_type'"):
        verify(model_file, trust)
    sign_payload(b"[" * 100_000 + b"]" * 100_000, signer, sig)
    with pytest.raises(MalformedSignatureError, match="nested more than 16 levels"):
        verify(model_file, trust)


def test_sigstore_bundles_are_unsupported(tmp_path: Path, model_file: Path) -> None:
    signer, trust = make_key(tmp_path, "ecdsa-p256")
    sig = sign(model_file, signer)
    document = json.loads(sig.read_text())
    document["verificationMaterial"] = {"certificate": {"rawBytes": "AAAA"}, "tlogEntries": []}
    sig.write_text(json.dumps(document))
    with pytest.raises(UnsupportedSignatureError, match="model_signing verify"):
        verify(model_file, trust)


# -- model-signing quirks (constructed here; the real package is in test_sign_interop) -----


def test_spec_basename_resource_and_path_component_order(tmp_path: Path) -> None:
    signer, trust = make_key(tmp_path, "ecdsa-p256")
    single = tmp_path / "model.bin"
    single.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    statement = json.loads(_statement.build("model.bin", {".": digest}, ()))
    statement["predicate"]["resources"][0]["name"] = "model.bin"  # the spec's name
    sign_payload(json.dumps(statement).encode(), signer, tmp_path / "model.bin.sig")
    assert verify(single, trust).files == (".",)

    root = tmp_path / "d"
    (root / "a").mkdir(parents=True)
    (root / "a-b").mkdir()
    (root / "a" / "b").write_bytes(b"1")
    (root / "a-b" / "x").write_bytes(b"2")
    names = ["a/b", "a-b/x"]  # path-component order, as model-signing 1.1.1 writes it
    digests = [hashlib.sha256(b"1").hexdigest(), hashlib.sha256(b"2").hexdigest()]
    statement = json.loads(_statement.build("d", dict(zip(names, digests, strict=True)), ()))
    statement["predicate"]["resources"] = [
        {"name": n, "algorithm": "sha256", "digest": d} for n, d in zip(names, digests, strict=True)
    ]
    statement["subject"][0]["digest"]["sha256"] = _statement.root_digest(digests)
    sign_payload(json.dumps(statement).encode(), signer, tmp_path / "d.sig")
    assert verify(root, trust).files == ("a-b/x", "a/b")


@pytest.mark.parametrize("shard_size", [40, 40.0])
def test_shard_manifests(tmp_path: Path, model_dir: Path, shard_size: float) -> None:
    signer, trust = make_key(tmp_path, "ecdsa-p256")
    weights = model_dir / "weights.bin"
    weights.write_bytes(os.urandom(1_000))
    files = _statement.list_files(model_dir).files
    resources = []
    for name, path in sorted(files.items()):
        data = path.read_bytes()
        for start in range(0, len(data), 40):
            chunk = data[start : start + 40]
            resources.append(
                {
                    "name": f"{name}:{start}:{start + len(chunk)}",
                    "algorithm": "sha256-sharded-40",
                    "digest": hashlib.sha256(chunk).hexdigest(),
                }
            )
    statement = json.loads(_statement.build("model", {}, ()))
    statement["predicate"]["serialization"].update(method="shards", shard_size=shard_size)
    statement["predicate"]["resources"] = resources
    statement["subject"][0]["digest"]["sha256"] = _statement.root_digest(
        r["digest"] for r in resources
    )
    sig = tmp_path / "model.sig"
    sign_payload(json.dumps(statement).encode(), signer, sig)
    result = verify(model_dir, trust)
    assert "sub/deeper/empty" not in result.files  # shard manifests cannot list empty files
    assert dict(result.digests) == {}  # no whole-file digests in a shard manifest
    weights.write_bytes(flip_bit(weights.read_bytes(), 999))
    with pytest.raises(DigestMismatchError, match=re.escape("weights.bin")):
        verify(model_dir, trust)
    weights.write_bytes(weights.read_bytes()[:-1])  # a shorter file has other shards
    with pytest.raises(DigestMismatchError, match=re.escape("weights.bin")):
        verify(model_dir, trust)


# -- keys and the trust store ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa-p256"])
def test_keygen_asymmetric_files(tmp_path: Path, kind: str) -> None:
    info = generate_key(kind, tmp_path / "k")  # type: ignore[arg-type]
    assert info.public == tmp_path / "k.pub"
    assert stat.S_IMODE(os.stat(info.private).st_mode) == 0o600
    private_pem = info.private.read_bytes()
    assert private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    assert info.public.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")  # SPKI
    private = serialization.load_pem_private_key(private_pem, None)
    expected = ed25519.Ed25519PrivateKey if kind == "ed25519" else ec.EllipticCurvePrivateKey
    assert isinstance(private, expected)
    if isinstance(private, ec.EllipticCurvePrivateKey):
        assert private.curve.name == "secp256r1"
    assert info.key_id == hashlib.sha256(info.public.read_bytes()).hexdigest()
    with pytest.raises(KeyFileError, match="exists"):
        generate_key(kind, tmp_path / "k")  # type: ignore[arg-type]
    generate_key(kind, tmp_path / "k", overwrite=True)  # type: ignore[arg-type]
    assert info.private.read_bytes() != private_pem


def test_keygen_hmac_file(tmp_path: Path) -> None:
    info = generate_key("hmac", tmp_path / "h.key", kid="prod-1")
    assert info.public is None and info.key_id == "hmac-sha256:prod-1"
    assert stat.S_IMODE(os.stat(info.private).st_mode) == 0o600
    document = json.loads(info.private.read_text())
    assert document["type"] == "hmac-sha256" and document["kid"] == "prod-1"
    assert len(base64.b64decode(document["secret"])) == 32
    assert "secret" not in repr(load_signer(info.private).__dict__)
    with pytest.raises(KeyFileError, match="key id"):
        generate_key("hmac", tmp_path / "bad.key", kid="has space")
    with pytest.raises(KeyFileError, match="--kid applies to HMAC"):
        generate_key("ed25519", tmp_path / "e", kid="x")


def test_short_hmac_secrets_are_refused() -> None:
    with pytest.raises(KeyFileError, match="at least 32"):
        HmacKey("k", b"short secret")


def test_hmac_key_is_derived_per_purpose() -> None:
    """The tag is not a plain HMAC under the raw secret (HKDF, info=safeload/dsse-hmac/v1)."""
    import hmac as std_hmac

    secret = os.urandom(32)
    key = HmacKey("k", secret)
    assert key.tag(b"data") != std_hmac.digest(secret, b"data", "sha256")
    assert key.tag(b"data") == HmacKey("k2", secret).tag(b"data")


def test_empty_trust_store_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="empty"):
        TrustStore()
    (tmp_path / "trust").mkdir()
    with pytest.raises(KeyFileError, match="empty"):
        TrustStore.load(trust_dir=tmp_path / "trust")


def test_trust_dir(tmp_path: Path, model_file: Path) -> None:
    trust_dir = tmp_path / "trust"
    trust_dir.mkdir()
    signers = []
    for index, kind in enumerate(["ed25519", "ecdsa-p256"]):
        info = generate_key(kind, tmp_path / f"k{index}")  # type: ignore[arg-type]
        assert info.public is not None
        (trust_dir / info.public.name).write_bytes(info.public.read_bytes())
        signers.append(load_signer(info.private))
    (trust_dir / "README").write_text("not a key, not loaded")
    trust = TrustStore.load(trust_dir=trust_dir)
    for signer in signers:
        sign(model_file, signer)
        assert verify(model_file, trust).key_id == signer.key_id
    (trust_dir / "leaked.pem").write_bytes((tmp_path / "k0").read_bytes())
    with pytest.raises(KeyFileError, match="private key"):
        TrustStore.load(trust_dir=trust_dir)


def test_hmac_rotation_through_environment(model_file: Path) -> None:
    old, new = HmacKey("2026-01", os.urandom(32)), HmacKey("2026-02", os.urandom(32))
    encode = lambda k: f"{k.kid}:{base64.b64encode(k.secret).decode()}"  # noqa: E731
    environ = {"KEYS": f"{encode(old)}, {encode(new)}", "NEW": encode(new)}
    keys = hmac_keys_from_env("KEYS", environ)
    assert [k.kid for k in keys] == ["2026-01", "2026-02"]
    sign(model_file, HmacSigner(keys[0]))  # made before the rotation
    assert verify(model_file, TrustStore.load(hmac_env="KEYS", environ=environ)).key_id == "2026-01"
    with pytest.raises(UnknownKeyError):
        verify(model_file, TrustStore.load(hmac_env="NEW", environ=environ))
    environ["JSON"] = old.to_json()
    assert [k.kid for k in hmac_keys_from_env("JSON", environ)] == ["2026-01"]
    with pytest.raises(KeyFileError, match="not set"):
        hmac_keys_from_env("UNSET", environ)
    with pytest.raises(KeyFileError, match="kid:base64secret"):
        hmac_keys_from_env("BAD", {"BAD": "no-colon-here"})


def test_unreadable_key_files(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read"):
        load_signer(tmp_path / "absent.key")
    (tmp_path / "junk.key").write_text("hello")
    with pytest.raises(KeyFileError, match="neither a PEM key nor an HMAC key"):
        load_signer(tmp_path / "junk.key")
    info = generate_key("ed25519", tmp_path / "e")
    assert info.public is not None
    with pytest.raises(KeyFileError, match="public key; signing needs the private key"):
        load_signer(info.public)


def test_p384_keys_from_other_tools_verify(tmp_path: Path, model_file: Path) -> None:
    private = ec.generate_private_key(ec.SECP384R1())
    sign(model_file, EcdsaSigner(private))
    result = verify(model_file, TrustStore([private.public_key()]))
    assert result.algorithm == "ecdsa-p384"


# -- dump -----------------------------------------------------------------------------


def test_dump_joblib_matches_joblib_dump(tmp_path: Path) -> None:
    joblib = pytest.importorskip("joblib")
    np = pytest.importorskip("numpy")
    signer, trust = make_key(tmp_path, "ecdsa-p256")
    obj = {"coef": np.arange(10_000, dtype=np.float64), "names": ["a", "b"], "n": 3}
    sig = dump(obj, tmp_path / "model.joblib", signer=signer)
    assert sig == tmp_path / "model.joblib.sig"
    joblib.dump(obj, tmp_path / "plain.joblib")
    # Same bytes as joblib.dump: array alignment works through the hashing writer.
    assert (tmp_path / "model.joblib").read_bytes() == (tmp_path / "plain.joblib").read_bytes()
    verify(tmp_path / "model.joblib", trust)
    loaded = joblib.load(tmp_path / "model.joblib")
    assert np.array_equal(loaded["coef"], obj["coef"]) and loaded["names"] == ["a", "b"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


@pytest.mark.parametrize(
    ("name", "compress", "magic"),
    [
        ("m.joblib", 3, b"\x78"),
        ("m.joblib", ("gzip", 1), b"\x1f\x8b"),
        ("m.joblib.bz2", 0, b"BZ"),
        ("m.joblib.xz", 0, b"\xfd7zXZ"),
        ("m.joblib", "lzma", b"\x5d\x00"),
    ],
)
def test_dump_joblib_compressed(tmp_path: Path, name: str, compress: Any, magic: bytes) -> None:
    joblib = pytest.importorskip("joblib")
    signer, trust = make_key(tmp_path, "hmac")
    obj = {"data": list(range(5000))}
    dump(obj, tmp_path / name, signer=signer, compress=compress)
    assert (tmp_path / name).read_bytes().startswith(magic)
    verify(tmp_path / name, trust)
    assert joblib.load(tmp_path / name) == obj


def test_dump_pickle(tmp_path: Path) -> None:
    signer, trust = make_key(tmp_path, "ed25519")
    obj = {"a": [1, 2, 3], "b": b"\0" * 100_000}
    dump(obj, tmp_path / "m.pkl", signer=signer, format="pickle", protocol=5)
    assert (tmp_path / "m.pkl").read_bytes() == pickle.dumps(obj, protocol=5)
    verify(tmp_path / "m.pkl", trust)
    with pytest.raises(ValueError, match="does not compress"):
        dump(obj, tmp_path / "x.pkl", signer=signer, format="pickle", compress=3)
    with pytest.raises(IsADirectoryError):
        dump(obj, tmp_path, signer=signer, format="pickle")
    with pytest.raises(ValueError, match="format must be"):
        dump(obj, tmp_path / "x.pkl", signer=signer, format="yaml")  # type: ignore[arg-type]


def test_dump_large_output_hashes_every_byte(tmp_path: Path) -> None:
    """More than the hashing backlog in flight: the digest still covers every write."""
    signer, trust = make_key(tmp_path, "hmac")
    obj = [os.urandom(1 << 20) for _ in range(80)]
    dump(obj, tmp_path / "big.pkl", signer=signer, format="pickle")
    digest = hashlib.sha256((tmp_path / "big.pkl").read_bytes()).hexdigest()
    assert statement_of(tmp_path / "big.pkl.sig")["predicate"]["resources"][0]["digest"] == digest
    verify(tmp_path / "big.pkl", trust)


class Exploding:
    """Fails half-way through pickling, after bytes were written."""

    def __reduce__(self) -> Any:
        raise RuntimeError("serialization failed")


@pytest.mark.parametrize("fmt", ["joblib", "pickle"])
def test_dump_failure_leaves_previous_artifact(tmp_path: Path, fmt: str) -> None:
    pytest.importorskip("joblib")
    signer, trust = make_key(tmp_path, "ecdsa-p256")
    target = tmp_path / "model.bin"
    dump({"version": 1}, target, signer=signer, format=fmt)  # type: ignore[arg-type]
    before = target.read_bytes(), target.with_name("model.bin.sig").read_bytes()
    with pytest.raises(RuntimeError, match="serialization failed"):
        dump([b"x" * 100_000, Exploding()], target, signer=signer, format=fmt)  # type: ignore[arg-type]
    assert (target.read_bytes(), target.with_name("model.bin.sig").read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys", "model.bin", "model.bin.sig"]
    verify(target, trust)


def test_dump_crash_between_renames_never_exposes_an_unsigned_artifact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signature is renamed first: a crash before the artifact's rename leaves the
    old artifact under the final name, which its new signature then refuses."""
    signer, trust = make_key(tmp_path, "hmac")
    target = tmp_path / "model.pkl"
    real_replace = os.replace
    calls: list[str] = []

    def crash_on_artifact(src: Any, dst: Any) -> None:
        calls.append(Path(dst).name)
        if Path(dst) == target:
            raise OSError("simulated crash")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_artifact)
    with pytest.raises(OSError, match="simulated crash"):
        dump({"fresh": True}, target, signer=signer, format="pickle")
    assert calls == ["model.pkl.sig", "model.pkl"]
    assert not target.exists()  # nothing under the final name, so nothing unsigned
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    target.write_bytes(pickle.dumps({"stale": True}))
    with pytest.raises(DigestMismatchError):
        verify(target, trust)


def test_sign_and_verify_reject_non_signers(tmp_path: Path, model_file: Path) -> None:
    with pytest.raises(TypeError):
        sign(model_file, "key.pem")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        sign(model_file, [])
    with pytest.raises(TypeError):
        verify(model_file, None)  # type: ignore[arg-type]
    _, trust = make_key(tmp_path, "hmac")
    with pytest.raises(FileNotFoundError):
        verify(tmp_path / "absent.pkl", trust)


def test_errors_are_safeload_errors() -> None:
    for error in (MissingSignatureError, DigestMismatchError, UnknownKeyError, UnsignedFileError):
        assert issubclass(error, SignatureError)
    assert issubclass(SubjectMismatchError, DigestMismatchError)
    assert issubclass(KeyFileError, SafeloadError) and not issubclass(KeyFileError, SignatureError)


# -- CLI ------------------------------------------------------------------------------


def cli(*argv: str | Path) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="safeload")
    add_parsers(parser.add_subparsers(dest="command"))
    try:
        args = parser.parse_args([str(a) for a in argv])
    except SystemExit as exc:
        return int(exc.code or 0), "", ""
    out, err = io.StringIO(), io.StringIO()
    assert args.handler is run
    return run(args, out, err), out.getvalue(), err.getvalue()


@pytest.mark.parametrize("kind", ALGORITHMS)
def test_cli_keygen_sign_verify(tmp_path: Path, model_dir: Path, kind: str) -> None:
    key = tmp_path / "team.key"
    code, out, _ = cli("keygen", "--type", kind, "--out", key)
    assert code == 0 and f"wrote private key {key}" in out
    code, out, _ = cli("sign", model_dir, "--key", key)
    assert code == 0 and "wrote" in out and (tmp_path / "model.sig").exists()
    trusted = key if kind == "hmac" else key.with_name("team.key.pub")
    code, out, err = cli("verify", model_dir, "--key", trusted)
    assert (code, err) == (0, "")
    assert out.startswith(f"signature valid: {model_dir}: subject 'model', 7 files, sha256:")
    assert f", {EXPECTED_ALGORITHM[kind]} key " in out and ", signed 20" in out


def test_cli_exit_codes_and_messages(tmp_path: Path, model_dir: Path) -> None:
    key = tmp_path / "k"
    cli("keygen", "--type", "ecdsa-p256", "--out", key)
    pub = tmp_path / "k.pub"
    assert cli("sign", model_dir, "--key", key)[0] == 0

    (model_dir / "extra.pkl").write_bytes(b"N.")
    code, _, err = cli("verify", model_dir, "--key", pub)
    assert code == 1 and "not verified (unsigned file)" in err and "extra.pkl" in err
    code, _, err = cli("verify", model_dir, "--key", pub, "--ignore-unsigned-files")
    assert code == 0 and "warning: 1 unsigned file(s)" in err and "extra.pkl" in err
    (model_dir / "extra.pkl").unlink()

    (model_dir / "config.json").write_text('{"layers": 4}')
    code, _, err = cli("verify", model_dir, "--key", pub)
    assert code == 1 and "not verified (digest mismatch)" in err and "config.json" in err

    (model_dir / "config.json").unlink()
    code, _, err = cli("verify", model_dir, "--key", pub)
    assert code == 1 and "not verified (file removed)" in err

    other = tmp_path / "other"
    cli("keygen", "--type", "ed25519", "--out", other)
    code, _, err = cli("verify", model_dir, "--key", tmp_path / "other.pub")
    assert code == 1 and "not verified (unknown key)" in err

    (tmp_path / "model.sig").write_text("{")
    code, _, err = cli("verify", model_dir, "--key", pub)
    assert code == 1 and "not verified (malformed signature)" in err
    (tmp_path / "model.sig").unlink()
    code, _, err = cli("verify", model_dir, "--key", pub)
    assert code == 1 and "not verified (missing signature)" in err

    code, _, err = cli("verify", model_dir)  # no key at all: usage error, never "trust anything"
    assert code == 2 and "trust store is empty" in err
    code, _, err = cli("verify", tmp_path / "absent", "--key", pub)
    assert code == 2 and "absent" in err
    code, _, err = cli("verify", model_dir, "--key", tmp_path / "absent.pub")
    assert code == 2 and "cannot read key file" in err
    code, _, err = cli("sign", model_dir)
    assert code == 2 and "--key or --hmac-key-env" in err
    code, _, err = cli("keygen", "--type", "ecdsa-p256", "--out", key)
    assert code == 2 and "exists" in err
    assert cli("keygen", "--type", "rsa", "--out", tmp_path / "r")[0] == 2  # argparse


def test_cli_hmac_env_and_signature_option(
    tmp_path: Path, model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = HmacKey("old", os.urandom(32)), HmacKey("new", os.urandom(32))
    value = ",".join(f"{k.kid}:{base64.b64encode(k.secret).decode()}" for k in (old, new))
    monkeypatch.setenv("SAFELOAD_TEST_KEYS", value)
    sig = tmp_path / "elsewhere.sig"
    code, out, _ = cli(
        "sign", model_file, "--hmac-key-env", "SAFELOAD_TEST_KEYS", "--signature", sig
    )
    assert code == 0 and "hmac-sha256 key new" in out  # the newest key signs
    code, out, _ = cli(
        "verify", model_file, "--hmac-key-env", "SAFELOAD_TEST_KEYS", "--signature", sig
    )
    assert code == 0 and "hmac-sha256 key new" in out
    sig.write_text(sig.read_text().replace("hmac-sha256:new", "hmac-sha256:old"))
    code, _, err = cli(
        "verify", model_file, "--hmac-key-env", "SAFELOAD_TEST_KEYS", "--signature", sig
    )
    assert code == 1 and "not verified (invalid signature)" in err


# -- property: any single change to a signed directory is caught, with its own error ------

NAMES = st.text(alphabet="abcXYZ019-_.", min_size=1, max_size=6).filter(
    lambda n: n not in (".", "..") and not n.startswith(".git")
)
TREES = st.dictionaries(
    st.lists(NAMES, min_size=1, max_size=3).map("/".join),
    st.binary(max_size=64),
    min_size=1,
    max_size=8,
)


def _write_tree(root: Path, tree: dict[str, bytes]) -> bool:
    """Write the tree; False when a name is both a file and a directory."""
    for name, content in tree.items():
        path = root / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            return False
    return True


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tree=TREES,
    action=st.sampled_from(["flip", "append", "remove", "add", "rename"]),
    pick=st.integers(0, 100),
)
def test_every_single_change_is_caught(
    tmp_path_factory: pytest.TempPathFactory, tree: dict[str, bytes], action: str, pick: int
) -> None:
    base = tmp_path_factory.mktemp("tree")
    root = base / "model"
    assume(_write_tree(root, tree))
    key = HmacKey("prop", b"k" * 32)
    trust = TrustStore([], [key])
    sign(root, HmacSigner(key))
    assert verify(root, trust).files == tuple(sorted(tree))
    name = sorted(tree)[pick % len(tree)]
    target = root / name
    expected: type[SignatureError]
    if action == "flip":
        assume(tree[name])
        target.write_bytes(flip_bit(tree[name], pick % len(tree[name])))
        expected = DigestMismatchError
    elif action == "append":
        target.write_bytes(tree[name] + b"\0")
        expected = DigestMismatchError
    elif action == "remove":
        target.unlink()
        expected = MissingFileError
    elif action == "add":
        extra = target.with_name(target.name + "~")
        assume(not extra.exists())
        extra.write_bytes(b"")
        expected = UnsignedFileError
    else:
        moved = target.with_name(target.name + ".renamed")
        assume(not moved.exists())
        target.rename(moved)
        expected = MissingFileError
    with pytest.raises(expected):
        verify(root, trust)


def test_directory_files_are_hashed_concurrently(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With two workers, two files are being hashed at the same moment (a barrier proves it)."""
    import threading

    real = _statement.digest_file
    barrier = threading.Barrier(2, timeout=30)
    threads: set[int] = set()
    calls = iter(range(1_000))

    def rendezvous(*args: Any) -> str:
        threads.add(threading.get_ident())
        if next(calls) < 2:  # the first two files meet here, so they are hashed at once
            barrier.wait()  # raises BrokenBarrierError if the other worker never arrives
        return real(*args)

    monkeypatch.setattr(_statement, "digest_file", rendezvous)
    signer, trust = make_key(tmp_path, "hmac")
    sign(model_dir, signer, workers=2)
    assert len(threads) == 2
    monkeypatch.setattr(_statement, "digest_file", real)
    verify(model_dir, trust)


def test_dump_never_reads_the_artifact_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The digest comes from the bytes as they are written, not from re-reading the file."""

    def no_reading(*args: Any) -> str:
        raise AssertionError("dump() read the file back")

    signer, trust = make_key(tmp_path, "ecdsa-p256")
    monkeypatch.setattr(_statement, "digest_file", no_reading)
    monkeypatch.setattr(hashlib, "file_digest", no_reading)
    dump({"w": list(range(100))}, tmp_path / "m.pkl", signer=signer, format="pickle")
    monkeypatch.undo()
    verify(tmp_path / "m.pkl", trust)


def test_cli_trust_dir_ignore_paths_and_several_keys(tmp_path: Path, model_dir: Path) -> None:
    trust_dir = tmp_path / "trusted"
    trust_dir.mkdir()
    for name, kind in (("a", "ed25519"), ("b", "ecdsa-p256")):
        assert cli("keygen", "--type", kind, "--out", tmp_path / name)[0] == 0
        (trust_dir / f"{name}.pub").write_bytes((tmp_path / f"{name}.pub").read_bytes())
    code, out, _ = cli(
        "sign", model_dir, "--key", tmp_path / "a", "--key", tmp_path / "b", "--ignore-paths", "sub"
    )
    assert code == 0 and "ed25519 key" in out and "ecdsa-p256 key" in out
    assert (
        "sub" in statement_of(tmp_path / "model.sig")["predicate"]["serialization"]["ignore_paths"]
    )
    (model_dir / "sub" / "unsigned-but-ignored.bin").write_bytes(b"1")
    code, out, err = cli("verify", model_dir, "--trust-dir", trust_dir)
    assert code == 0 and "5 files" in out  # the git files are signed too
    assert "left out by the ignore list and were not verified, never load them: sub/" in err
    code, _, err = cli("verify", model_dir, "--trust-dir", tmp_path / "nowhere")
    assert code == 2 and "does not exist" in err
