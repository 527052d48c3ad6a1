"""Signing hardening (issue 11): each attack of the review, refused.

Name binding, small-order Ed25519 keys, bounded parsing before authentication,
crashes that must be verdicts, terminal escapes, directory gaps, several
signatures in one envelope, duplicate JSON keys, key handling and the JSON
output of `safeload verify`. Keys are real `cryptography` keys made in the
test run; models are real pickles written by `pickle`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib
import io
import json
import os
import pickle
import re
import shutil
import stat
import threading
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

import safeload
from safeload._cli.sign import add_parsers, escape, run
from safeload.errors import UnexpectedVersionError
from safeload.sign import (
    DigestMismatchError,
    HmacKey,
    InvalidSignatureError,
    KeyFileError,
    MalformedSignatureError,
    PublicKey,
    Signer,
    SigningError,
    SubjectMismatchError,
    TrustStore,
    UnknownKeyError,
    UnsupportedSignatureError,
    _dsse,
    _statement,
    generate_key,
    hmac_keys_from_env,
    load_signer,
    sign,
    verify,
)
from safeload.sign._keys import KeyWarning, read_key_file

MODEL = pickle.dumps({"weights": [0.5, -1.25, 3.0], "name": "tiny"}, protocol=5)


# -- helpers ------------------------------------------------------------------------


def make_key(folder: Path, kind: str, name: str = "key") -> tuple[Signer, TrustStore, Path]:
    """A fresh key: its signer, a trust store of its verifier, and the verifier's file."""
    folder.mkdir(exist_ok=True)
    info = generate_key(kind, folder / name)  # type: ignore[arg-type]
    trusted = info.public if info.public is not None else info.private
    return load_signer(info.private), TrustStore.load(keys=[trusted]), trusted


def cli(*argv: str | Path) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="safeload")
    add_parsers(parser.add_subparsers(dest="command"))
    try:
        args = parser.parse_args([str(a) for a in argv])
    except SystemExit as exc:
        return int(exc.code or 0), "", ""
    out, err = io.StringIO(), io.StringIO()
    return run(args, out, err), out.getvalue(), err.getvalue()


def signed_envelope(payload: bytes, signatures: list[_dsse.Signature], hint: str | None) -> bytes:
    return _dsse.encode(payload, signatures, bundle=hint is not None, key_hint=hint)


def pae(payload: bytes) -> bytes:
    return _dsse.pae(_dsse.PAYLOAD_TYPE, payload)


def payload_of(sig: Path) -> bytes:
    document = json.loads(sig.read_bytes())
    envelope = document.get("dsseEnvelope", document)
    return base64.b64decode(envelope["payload"])


def sign_statement(statement: dict[str, Any], signer: Signer, sig: Path) -> None:
    payload = json.dumps(statement).encode()
    signature = _dsse.Signature(signer.sign(pae(payload)), signer.keyid)
    sig.write_bytes(
        _dsse.encode(payload, [signature], bundle=signer.bundle, key_hint=signer.key_id)
    )


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "b.bin"
    path.write_bytes(MODEL)
    return path


# -- 1. a signed file under another name; pinning a version ---------------------------


@pytest.mark.parametrize("kind", ["ecdsa-p256", "ed25519", "hmac"])
def test_a_signed_file_copied_under_another_name_is_refused(
    tmp_path: Path, model_file: Path, kind: str
) -> None:
    signer, trust, trusted = make_key(tmp_path / "keys", kind)
    sig = sign(model_file, signer)
    (tmp_path / "sub").mkdir()
    copy = tmp_path / "sub" / "a.bin"
    shutil.copy(model_file, copy)
    shutil.copy(sig, tmp_path / "sub" / "a.bin.sig")
    with pytest.raises(SubjectMismatchError, match=re.escape("signed for 'b.bin', not 'a.bin'")):
        verify(copy, trust)
    code, out, err = cli("verify", copy, "--key", trusted)
    assert code == 1 and out == "" and "not verified (signature of another artifact)" in err
    # The name is checked on purpose when asked, or skipped explicitly.
    assert verify(copy, trust, subject="b.bin").subject == "b.bin"
    assert verify(copy, trust, any_name=True).subject == "b.bin"
    assert cli("verify", copy, "--key", trusted, "--subject", "b.bin")[0] == 0
    assert cli("verify", copy, "--key", trusted, "--any-name")[0] == 0
    assert cli("verify", copy, "--key", trusted, "--subject", "c.bin")[0] == 1
    with pytest.raises(SubjectMismatchError):
        verify(copy, trust, subject="c.bin")


def test_the_guarded_loader_checks_the_name_too(tmp_path: Path) -> None:
    signer, trust, _ = make_key(tmp_path / "keys", "ecdsa-p256")
    original = tmp_path / "b.pkl"
    safeload.dump({"w": [1.0, 2.0]}, original, signer=signer, format="pickle")
    assert safeload.load(original, trust=trust) == {"w": [1.0, 2.0]}
    (tmp_path / "sub").mkdir()
    shutil.copy(original, tmp_path / "sub" / "a.pkl")
    shutil.copy(tmp_path / "b.pkl.sig", tmp_path / "sub" / "a.pkl.sig")
    with pytest.raises(SubjectMismatchError, match=re.escape("signed for 'b.pkl', not 'a.pkl'")):
        safeload.load(tmp_path / "sub" / "a.pkl", trust=trust)
    # A signed directory copied beside another name: its files are refused too.
    model = tmp_path / "model"
    model.mkdir()
    (model / "w.pkl").write_bytes(MODEL)
    sign(model, signer)
    shutil.copytree(model, tmp_path / "other")
    shutil.copy(tmp_path / "model.sig", tmp_path / "other.sig")
    assert safeload.load(model / "w.pkl", trust=trust) == pickle.loads(MODEL)
    with pytest.raises(SubjectMismatchError, match=re.escape("signed for 'model', not 'other'")):
        safeload.load(tmp_path / "other" / "w.pkl", trust=trust)


def test_guard_checks_the_name_of_a_file_it_is_handed(tmp_path: Path) -> None:
    signer, trust, _ = make_key(tmp_path / "keys", "hmac")
    original = tmp_path / "b.pkl"
    original.write_bytes(MODEL)
    sign(original, signer)
    copy = tmp_path / "a.pkl"
    shutil.copy(original, copy)
    shutil.copy(tmp_path / "b.pkl.sig", tmp_path / "a.pkl.sig")
    expected = pickle.loads(MODEL)
    with safeload.guard(trust=trust):  # pickle.load and pickle.loads are guarded here
        with open(str(original), "rb") as handle:
            assert pickle.load(handle) == expected
        with open(str(copy), "rb") as handle, pytest.raises(SubjectMismatchError):
            pickle.load(handle)


def test_verify_prints_the_subject_key_id_and_signing_time(
    tmp_path: Path, model_file: Path
) -> None:
    signer, _, trusted = make_key(tmp_path / "keys", "ed25519")
    before = datetime.now(UTC).replace(microsecond=0)
    sign(model_file, signer)
    code, out, _ = cli("verify", model_file, "--key", trusted)
    assert code == 0
    root = json.loads(payload_of(tmp_path / "b.bin.sig"))["subject"][0]["digest"]["sha256"]
    assert f"subject 'b.bin', 1 file, sha256:{root}, ed25519 key {signer.key_id[:16]}" in out
    signed = datetime.strptime(out.split(", signed ")[1][:20], "%Y-%m-%dT%H:%M:%SZ")
    assert before <= signed.replace(tzinfo=UTC) <= datetime.now(UTC)


def test_expect_digest_pins_one_version(tmp_path: Path, model_file: Path) -> None:
    signer, trust, trusted = make_key(tmp_path / "keys", "ecdsa-p256")
    sign(model_file, signer)
    old_file, old_sig = model_file.read_bytes(), (tmp_path / "b.bin.sig").read_bytes()
    pinned = verify(model_file, trust).root_digest
    file_digest = hashlib.sha256(old_file).hexdigest()
    model_file.write_bytes(MODEL + b"\n")  # version 2, validly signed
    sign(model_file, signer)
    new = verify(model_file, trust).root_digest
    # A pipeline pinned to version 2 refuses version 1 put back with its valid signature.
    model_file.write_bytes(old_file)
    (tmp_path / "b.bin.sig").write_bytes(old_sig)
    assert verify(model_file, trust).root_digest == pinned  # valid, but old
    with pytest.raises(UnexpectedVersionError, match="another version"):
        verify(model_file, trust, expect_digest=f"sha256:{new}")
    code, _, err = cli("verify", model_file, "--key", trusted, "--expect-digest", f"sha256:{new}")
    assert code == 1 and "not verified (not the pinned version)" in err
    assert verify(model_file, trust, expect_digest=f"sha256:{pinned}").root_digest == pinned
    assert verify(model_file, trust, expect_digest=pinned.upper())  # plain hex, any case
    assert verify(model_file, trust, expect_digest=file_digest)  # a single file's own SHA-256


def test_signed_after_refuses_older_signatures(tmp_path: Path, model_file: Path) -> None:
    signer, trust, trusted = make_key(tmp_path / "keys", "hmac")
    sign(model_file, signer)
    signed_at = verify(model_file, trust).signed_at
    assert signed_at is not None
    assert verify(model_file, trust, signed_after=signed_at).signed_at == signed_at
    later = signed_at + timedelta(seconds=1)
    with pytest.raises(UnexpectedVersionError, match="older version"):
        verify(model_file, trust, signed_after=later)
    code, _, err = cli(
        "verify",
        model_file,
        "--key",
        trusted,
        "--signed-after",
        later.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    assert code == 1 and "not the pinned version" in err
    # A signature that records no time (model-signing writes none) cannot prove it is recent.
    statement = json.loads(payload_of(tmp_path / "b.bin.sig"))
    del statement["subject"][0]["annotations"]
    sign_statement(statement, signer, tmp_path / "b.bin.sig")
    assert verify(model_file, trust).signed_at is None
    with pytest.raises(UnexpectedVersionError, match="records no signing time"):
        verify(model_file, trust, signed_after=signed_at)


# -- 2. small-order and non-canonical Ed25519 keys ------------------------------------

IDENTITY = "01" + "00" * 31
WEAK_KEYS = {
    "identity": IDENTITY,
    "order 2": "ec" + "ff" * 30 + "7f",
    "order 4, all zeros": "00" * 32,
    "order 4, negative": "00" * 31 + "80",
    "order 8 (a)": "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "order 8 (b)": "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "order 8 (c)": "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "order 8 (d)": "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "y = p (non-canonical 0)": "ed" + "ff" * 30 + "7f",
    "y = p + 1 (non-canonical identity)": "ee" + "ff" * 30 + "7f",
}
FORGED = bytes.fromhex(IDENTITY) + bytes(32)
"""The signature R = identity, S = 0."""


@pytest.mark.parametrize("name", sorted(WEAK_KEYS))
def test_small_order_and_non_canonical_ed25519_keys_are_refused(tmp_path: Path, name: str) -> None:
    raw = bytes.fromhex(WEAK_KEYS[name])
    key = ed25519.Ed25519PublicKey.from_public_bytes(raw)
    # The danger is real: with the library verifying, the forged signature passes for
    # some of a handful of messages (every one for the identity).
    accepted = 0
    for index in range(64):
        try:
            key.verify(FORGED, b"message %d" % index)
            accepted += 1
        except InvalidSignature:
            pass
    assert accepted > 0
    with pytest.raises(KeyFileError, match=r"forged signatures|canonically encoded"):
        PublicKey(key)
    with pytest.raises(KeyFileError):
        TrustStore([key])
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "weak.pub").write_bytes(pem)
    with pytest.raises(KeyFileError, match=re.escape("weak.pub: the Ed25519 public key")):
        TrustStore.load(keys=[tmp_path / "weak.pub"])
    with pytest.raises(KeyFileError):
        TrustStore.load(trust_dir=tmp_path)
    code, _, err = cli("verify", tmp_path / "weak.pub", "--key", tmp_path / "weak.pub")
    assert code == 2 and ("forged signatures" in err or "canonically" in err)


def test_a_forged_identity_signature_never_verifies(tmp_path: Path, model_file: Path) -> None:
    """The whole attack: a statement for the attacker's file, signed R = identity, S = 0."""
    statement = _statement.build("b.bin", {".": hashlib.sha256(MODEL).hexdigest()}, ())
    identity = ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(IDENTITY))
    identity.verify(FORGED, pae(statement))  # what OpenSSL accepts
    (tmp_path / "b.bin.sig").write_bytes(
        signed_envelope(statement, [_dsse.Signature(FORGED, "")], hint=None)
    )
    _, trust, _ = make_key(tmp_path / "keys", "ed25519")
    with pytest.raises(InvalidSignatureError):
        verify(model_file, trust)


# Affine Edwards arithmetic, written here apart from safeload's (extended coordinates).
_P = 2**255 - 19
_D = -121665 * pow(121666, -1, _P) % _P


def _decode(raw: bytes) -> tuple[int, int]:
    value = int.from_bytes(raw, "little")
    y, sign = value & ((1 << 255) - 1), value >> 255
    x2 = (y * y - 1) * pow(_D * y * y + 1, -1, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
    assert (x * x - x2) % _P == 0
    return (_P - x if x & 1 != sign else x), y


def _encode(point: tuple[int, int]) -> bytes:
    x, y = point
    return (y | (x & 1) << 255).to_bytes(32, "little")


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = a, b
    t = _D * x1 * x2 * y1 * y2 % _P
    return (
        (x1 * y2 + y1 * x2) * pow(1 + t, -1, _P) % _P,
        (y1 * y2 + x1 * x2) * pow(1 - t, -1, _P) % _P,
    )


def test_keys_with_a_small_order_component_are_refused() -> None:
    genuine = ed25519.Ed25519PrivateKey.generate().public_key()
    raw = genuine.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    PublicKey(genuine)
    for name in ("order 2", "order 4, negative", "order 8 (a)", "order 8 (d)"):
        torsion = _decode(bytes.fromhex(WEAK_KEYS[name]))
        mixed = _encode(_add(_decode(raw), torsion))
        assert _decode(mixed) == _add(_decode(raw), torsion)  # a real point of the curve
        key = ed25519.Ed25519PublicKey.from_public_bytes(mixed)
        with pytest.raises(KeyFileError, match="small-order component"):
            PublicKey(key)


def test_genuine_ed25519_keys_load(tmp_path: Path) -> None:
    keys = [ed25519.Ed25519PrivateKey.generate().public_key() for _ in range(50)]
    assert len(TrustStore(keys).public_keys()) == 50


# -- 3. bounded reading before authentication -----------------------------------------


def test_a_64_mib_array_signature_is_refused_fast_and_small(
    tmp_path: Path, model_file: Path
) -> None:
    _, trust, _ = make_key(tmp_path / "keys", "ecdsa-p256")
    sig = tmp_path / "b.bin.sig"
    with open(sig, "wb") as handle:
        handle.write(b"[" + b"{}," * ((64 << 20) // 3) + b"{}]")
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(MalformedSignatureError, match="larger than a signature file may be"):
            verify(model_file, trust)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 1.0
    assert peak < 1 << 20  # never read


def test_json_within_the_size_limit_is_measured_before_it_is_parsed(
    tmp_path: Path, model_file: Path
) -> None:
    _, trust, _ = make_key(tmp_path / "keys", "ecdsa-p256")
    sig = tmp_path / "b.bin.sig"
    sig.write_bytes(b"[" + b"{}," * ((7 << 20) // 3) + b"{}]")  # under 8 MiB
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(MalformedSignatureError, match="objects and arrays"):
            verify(model_file, trust)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 2.0
    # json.loads would build 2.4 million dicts (about 150 MiB); measuring costs a copy.
    assert peak < 40 << 20, peak
    for text, problem in [
        (b"[" * 17 + b"]" * 17, "nested more than 16"),
        (b'{"a": ' + b"1" * 5000 + b"}", "number of 5000 characters"),
        (b'{"a": 1e999}', "does not fit a float"),
        (b'{"a": NaN}', "non-standard constant NaN"),
        ("{}".encode("utf-16"), "not UTF-8"),
    ]:
        sig.write_bytes(text)
        with pytest.raises(MalformedSignatureError, match=problem):
            verify(model_file, trust)


def _finishes(action: Any, seconds: float = 5.0) -> BaseException | None:
    """Run `action` in a daemon thread; the exception it raised, or fail if it hangs."""
    outcome: list[BaseException | None] = []

    def work() -> None:
        try:
            action()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, "it hangs"
    return outcome[0]


def test_fifos_are_never_waited_on(tmp_path: Path, model_file: Path) -> None:
    _, trust, _ = make_key(tmp_path / "keys", "ecdsa-p256")
    os.mkfifo(tmp_path / "b.bin.sig")
    error = _finishes(lambda: verify(model_file, trust))
    assert isinstance(error, MalformedSignatureError) and "not a regular file" in str(error)
    os.mkfifo(tmp_path / "key.pub")
    error = _finishes(lambda: TrustStore.load(keys=[tmp_path / "key.pub"]))
    assert isinstance(error, KeyFileError) and "not a regular file" in str(error)
    (tmp_path / "b.bin.sig").unlink()
    error = _finishes(lambda: cli("verify", model_file, "--key", tmp_path / "key.pub"))
    assert error is None


# -- 4. every malformed input is a SignatureError; crashes are not verdicts -----------


def test_huge_numbers_are_malformed_not_crashes(tmp_path: Path, model_file: Path) -> None:
    signer, trust, trusted = make_key(tmp_path / "keys", "hmac")
    sig = sign(model_file, signer)
    document = json.loads(sig.read_bytes())
    document["signatures"][0]["extra"] = 0
    text = json.dumps(document).replace('"extra": 0', '"extra": ' + "9" * 5000)
    sig.write_text(text)
    with pytest.raises(MalformedSignatureError, match="number of 5000 characters"):
        verify(model_file, trust)
    code, _, err = cli("verify", model_file, "--key", trusted)
    assert code == 1 and "malformed signature" in err
    # Inside a statement a trusted key signed: shard sizes that do not fit.
    for size in ("9" * 5000, "1e400", "-1e400"):
        statement = json.loads(_statement.build("b.bin", {".": "00" * 32}, ()))
        statement["predicate"]["serialization"].update(method="shards", shard_size=1)
        payload = json.dumps(statement).replace('"shard_size": 1', f'"shard_size": {size}')
        signature = _dsse.Signature(signer.sign(pae(payload.encode())), signer.keyid)
        sig.write_bytes(signed_envelope(payload.encode(), [signature], hint=None))
        with pytest.raises(MalformedSignatureError):
            verify(model_file, trust)


def test_statement_fields_of_the_wrong_type_are_malformed(tmp_path: Path, model_file: Path) -> None:
    """Found by test_sign_fuzz: a list as hash_type raised TypeError (unhashable)."""
    signer, trust, _ = make_key(tmp_path / "keys", "hmac")
    for field, value in (("hash_type", []), ("hash_type", {}), ("method", []), ("ignore_paths", 1)):
        statement = json.loads(
            _statement.build("b.bin", {".": hashlib.sha256(MODEL).hexdigest()}, ())
        )
        statement["predicate"]["serialization"][field] = value
        sign_statement(statement, signer, tmp_path / "b.bin.sig")
        with pytest.raises((MalformedSignatureError, UnsupportedSignatureError)):
            verify(model_file, trust)


def test_an_internal_error_is_never_a_verdict(
    tmp_path: Path, model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer, _, trusted = make_key(tmp_path / "keys", "ecdsa-p256")
    sign(model_file, signer)

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("a bug")

    # The CLI imports it from safeload.sign._verify when a verify command runs
    # (by module: the attribute `safeload.sign` is the function).
    monkeypatch.setattr(
        importlib.import_module("safeload.sign._verify"), "verify_reporting", broken
    )
    code, out, err = cli("verify", model_file, "--key", trusted)
    assert (code, out) == (2, "") and "internal error (ValueError: a bug)" in err
    code, out, _ = cli("verify", model_file, "--key", trusted, "--format", "json")
    assert code == 2 and json.loads(out)["results"][0]["reason"] == "internal-error"


# -- 5. terminal escapes ---------------------------------------------------------------

HOSTILE = "\r\x1b[2K\x1b[32mverified a.bin\u202e\x07"


def test_control_characters_from_files_are_escaped(tmp_path: Path, model_file: Path) -> None:
    signer, _, trusted = make_key(tmp_path / "keys", "ecdsa-p256")
    sig = sign(model_file, signer)
    document = json.loads(sig.read_bytes())
    # A second signature by an unknown key, named with a line that redraws the terminal.
    document["dsseEnvelope"]["signatures"].append({"sig": "AAAA", "keyid": HOSTILE})
    sig.write_text(json.dumps(document))
    code, out, err = cli("verify", model_file, "--key", trusted)
    assert code == 0
    for text in (out, err):
        assert not any(c in text for c in "\r\x1b\x07\u202e"), repr(text)
    assert "\\r\\x1b[2K" in err
    # A file named with escapes: its name, the subject and the paths are escaped too.
    named = tmp_path / "m\x1b[31m\u202e.pkl"
    named.write_bytes(MODEL)
    sign(named, signer)
    code, out, err = cli("verify", named, "--key", trusted)
    assert (
        code == 0 and "\x1b" not in out and "\u202e" not in out and "m\\x1b[31m\\u202e.pkl" in out
    )
    named.write_bytes(MODEL + b"!")
    code, out, err = cli("verify", named, "--key", trusted)
    assert code == 1 and "\x1b" not in err and "\u202e" not in err


def test_escape() -> None:
    assert escape("plain näme.pkl") == "plain näme.pkl"
    assert escape("a\rb\x1bc\x7f\u200e\u2066\x85") == "a\\x0db\\x1bc\\x7f\\u200e\\u2066\\x85"


# -- 6. directories: nothing left out silently ------------------------------------------


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    (root / ".git").mkdir(parents=True)
    (root / "weights.pkl").write_bytes(MODEL)
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / ".gitattributes").write_text("*.pkl filter=lfs\n")
    (root / ".github").mkdir()
    (root / ".github" / "hook.pkl").write_bytes(MODEL)
    return root


def test_git_paths_are_signed_unless_asked(tmp_path: Path, model_dir: Path) -> None:
    signer, trust, _ = make_key(tmp_path / "keys", "ecdsa-p256")
    sign(model_dir, signer)
    assert verify(model_dir, trust).files == (
        ".git/HEAD",
        ".gitattributes",
        ".github/hook.pkl",
        "weights.pkl",
    )
    (model_dir / ".github" / "hook.pkl").write_bytes(b"cos\nsystem\n.")  # a loader may walk it
    with pytest.raises(DigestMismatchError, match=re.escape("hook.pkl")):
        verify(model_dir, trust)


def test_ignored_paths_are_signed_and_listed(tmp_path: Path, model_dir: Path) -> None:
    signer, trust, trusted = make_key(tmp_path / "keys", "ecdsa-p256")
    sign(model_dir, signer, ignore_git=True)
    recorded = json.loads(payload_of(tmp_path / "model.sig"))
    assert recorded["predicate"]["serialization"]["ignore_paths"] == list(_statement.GIT_PATHS)
    result = verify(model_dir, trust)
    assert result.files == ("weights.pkl",)
    assert result.ignored == (".git/", ".gitattributes", ".github/")
    code, _, err = cli("verify", model_dir, "--key", trusted)
    assert code == 0 and "3 path(s) are left out by the ignore list" in err and ".github/" in err
    code, out, _ = cli("verify", model_dir, "--key", trusted, "--format", "json")
    assert json.loads(out)["results"][0]["ignored"] == [".git/", ".gitattributes", ".github/"]
    code, _, _ = cli("sign", model_dir, "--key", tmp_path / "keys" / "key", "--ignore-git-paths")
    assert code == 0 and verify(model_dir, trust).files == ("weights.pkl",)


def test_zero_file_manifests_are_refused(tmp_path: Path, model_dir: Path) -> None:
    signer, trust, trusted = make_key(tmp_path / "keys", "hmac")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SigningError, match="holds no file"):
        sign(empty, signer)
    (model_dir / "weights.pkl").unlink()
    with pytest.raises(SigningError, match="besides ignored ones"):
        sign(model_dir, signer, ignore_git=True)
    assert cli("sign", empty, "--key", tmp_path / "keys" / "key")[0] == 2
    # A zero-file statement signed by hand would vouch for any directory.
    statement = json.loads(_statement.build("model", {}, ()))
    sign_statement(statement, signer, tmp_path / "model.sig")
    with pytest.raises(MalformedSignatureError, match="lists no files"):
        verify(model_dir, trust, ignore_unsigned=True)
    code, _, err = cli("verify", model_dir, "--key", trusted, "--ignore-unsigned-files")
    assert code == 1 and "lists no files" in err


# -- 7. several signatures in one envelope ----------------------------------------------


def test_a_bogus_signature_beside_a_valid_one_is_refused(tmp_path: Path, model_file: Path) -> None:
    signer, trust, _ = make_key(tmp_path / "keys", "ecdsa-p256")
    sig = sign(model_file, signer)
    document = json.loads(sig.read_bytes())
    good = document["dsseEnvelope"]["signatures"][0]
    bogus = {"sig": base64.b64encode(os.urandom(70)).decode(), "keyid": ""}
    for order in ([bogus, good], [good, bogus]):
        document["dsseEnvelope"]["signatures"] = order
        sig.write_text(json.dumps(document))
        with pytest.raises(InvalidSignatureError, match="does not match its payload"):
            verify(model_file, trust)
    # The same key's signature, altered, named by its hint: refused as well.
    named = dict(bogus, keyid=signer.key_id)
    document["dsseEnvelope"]["signatures"] = [good, named]
    sig.write_text(json.dumps(document))
    with pytest.raises(InvalidSignatureError):
        verify(model_file, trust)


def test_signatures_by_untrusted_keys_are_reported_not_counted(
    tmp_path: Path, model_file: Path
) -> None:
    ecdsa, ecdsa_trust, ecdsa_pub = make_key(tmp_path / "keys", "ecdsa-p256", "e")
    hmac_signer, hmac_trust, _ = make_key(tmp_path / "keys", "hmac", "h")
    sign(model_file, [ecdsa, hmac_signer])
    result = verify(model_file, ecdsa_trust)
    assert result.key_id == ecdsa.key_id and result.untrusted == (hmac_signer.keyid,)
    code, _, err = cli("verify", model_file, "--key", ecdsa_pub)
    assert code == 0 and "1 other signature(s) by untrusted keys were not checked" in err
    assert verify(model_file, hmac_trust).untrusted == (f"public key {ecdsa.key_id[:16]!r}",)
    # Only untrusted signatures: not verified.
    _, other_trust, _ = make_key(tmp_path / "keys", "ed25519", "o")
    with pytest.raises(UnknownKeyError):
        verify(model_file, other_trust)


# -- 8. duplicate keys and mixed verification methods ----------------------------------


def test_duplicate_keys_in_the_envelope_are_refused(tmp_path: Path, model_file: Path) -> None:
    signer, trust, _ = make_key(tmp_path / "keys", "hmac")
    sig = sign(model_file, signer)
    text = sig.read_text()
    other = base64.b64encode(b'{"another": "statement"}').decode()
    doubled = text.replace('"payload":', f'"payload": "{other}", "payload":', 1)
    sig.write_text(doubled)
    with pytest.raises(MalformedSignatureError, match="repeats the key 'payload'"):
        verify(model_file, trust)
    sig.write_text(text.replace('"keyid":', '"keyid": "x", "keyid":', 1))
    with pytest.raises(MalformedSignatureError, match="repeats the key 'keyid'"):
        verify(model_file, trust)
    key_file = tmp_path / "keys" / "key"
    secret = json.loads(key_file.read_text())["secret"]
    key_file.write_text(
        key_file.read_text().replace('"secret":', f'"secret": "{secret}", "secret":', 1)
    )
    with pytest.raises(KeyFileError, match="repeats the key 'secret'"):
        read_key_file(key_file)


def test_a_bundle_declares_exactly_one_verification_method(
    tmp_path: Path, model_file: Path
) -> None:
    signer, trust, _ = make_key(tmp_path / "keys", "ecdsa-p256")
    sig = sign(model_file, signer)
    document = json.loads(sig.read_bytes())
    # A certificate bundle with a raw key injected beside its chain: never verified by the key.
    document["verificationMaterial"]["x509CertificateChain"] = {"certificates": []}
    sig.write_text(json.dumps(document))
    with pytest.raises(MalformedSignatureError, match="exactly one of"):
        verify(model_file, trust)
    del document["verificationMaterial"]["publicKey"]
    sig.write_text(json.dumps(document))
    with pytest.raises(MalformedSignatureError, match="holds no certificates"):
        verify(model_file, trust)
    del document["verificationMaterial"]["x509CertificateChain"]
    document["verificationMaterial"]["certificate"] = {"rawBytes": ""}
    sig.write_text(json.dumps(document))
    with pytest.raises(UnsupportedSignatureError, match="Sigstore"):
        verify(model_file, trust)


# -- key handling ------------------------------------------------------------------------


def test_keygen_force_refuses_a_symbolic_link(tmp_path: Path) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("not a key")
    target.chmod(0o644)
    link = tmp_path / "team.key"
    link.symlink_to(target)
    code, _, err = cli("keygen", "--type", "ed25519", "--out", link, "--force")
    assert code == 2 and "symbolic link" in err
    assert target.read_text() == "not a key" and stat.S_IMODE(target.stat().st_mode) == 0o644
    (tmp_path / "other.key").write_text("")
    (tmp_path / "other.key.pub").symlink_to(target)
    code, _, err = cli("keygen", "--type", "ecdsa-p256", "--out", tmp_path / "other.key", "--force")
    assert code == 2 and "symbolic link" in err and target.read_text() == "not a key"
    os.link(target, tmp_path / "hard.key")
    with pytest.raises(KeyFileError, match="other hard links"):
        generate_key("hmac", tmp_path / "hard.key", overwrite=True)
    assert target.read_text() == "not a key"


def test_sign_never_overwrites_the_model_or_a_key(tmp_path: Path, model_dir: Path) -> None:
    key = tmp_path / "keys" / "key"
    make_key(tmp_path / "keys", "ecdsa-p256")
    weights = model_dir / "weights.pkl"
    for target in (weights, model_dir / ".gitattributes", key, key.with_name("key.pub")):
        before = target.read_bytes()
        code, _, err = cli("sign", model_dir, "--key", key, "--signature", target)
        assert code == 2 and "refusing" in err, target
        assert target.read_bytes() == before
    code, _, err = cli("sign", weights, "--key", key, "--signature", weights)
    assert code == 2 and weights.read_bytes() == MODEL
    # An old signature is replaced, inside the directory too.
    inner = model_dir / "model.sig"
    assert cli("sign", model_dir, "--key", key, "--signature", inner)[0] == 0
    assert cli("sign", model_dir, "--key", key, "--signature", inner)[0] == 0


def test_readable_private_keys_warn(tmp_path: Path, model_file: Path) -> None:
    key = tmp_path / "keys" / "key"
    make_key(tmp_path / "keys", "ed25519")
    code, _, err = cli("sign", model_file, "--key", key)
    assert code == 0 and "warning" not in err
    key.chmod(0o644)
    code, _, err = cli("sign", model_file, "--key", key)
    assert code == 0 and "accessible by others (mode 0644)" in err and "chmod 600" in err
    with pytest.warns(KeyWarning, match="accessible by others"):
        load_signer(key)


def test_a_private_key_given_to_verify_warns(tmp_path: Path, model_file: Path) -> None:
    key = tmp_path / "keys" / "key"
    signer, _, _ = make_key(tmp_path / "keys", "ecdsa-p256")
    sign(model_file, signer)
    code, _, err = cli("verify", model_file, "--key", key)
    assert code == 0 and "is a private key; only its public half is trusted" in err
    with pytest.warns(KeyWarning, match="only its public half"):
        TrustStore.load(keys=[key])


def test_secrets_in_a_trust_directory_are_refused(tmp_path: Path) -> None:
    trust_dir = tmp_path / "trusted"
    trust_dir.mkdir()
    info = generate_key("ed25519", tmp_path / "signer")
    assert info.public is not None
    shutil.copy(info.public, trust_dir / "signer.pub")
    TrustStore.load(trust_dir=trust_dir)
    generate_key("hmac", trust_dir / "team.pem")  # a shared secret, named like a PEM
    with pytest.raises(KeyFileError, match="is an HMAC secret; a trust directory holds public"):
        TrustStore.load(trust_dir=trust_dir)


def test_a_pem_file_with_two_keys_is_refused(tmp_path: Path) -> None:
    pems = [
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        for _ in range(2)
    ]
    (tmp_path / "two.pub").write_bytes(b"".join(pems))
    with pytest.raises(KeyFileError, match="holds 2 PEM blocks"):
        TrustStore.load(keys=[tmp_path / "two.pub"])


def test_hmac_key_ids_are_unique() -> None:
    one, two = (base64.b64encode(os.urandom(32)).decode() for _ in range(2))
    with pytest.raises(KeyFileError, match="names key id 'k' twice"):
        hmac_keys_from_env("V", {"V": f"k:{one},k:{two}"})
    with pytest.raises(KeyFileError, match="two different HMAC secrets are named 'k'"):
        TrustStore(hmac_keys=[HmacKey("k", os.urandom(32)), HmacKey("k", os.urandom(32))])


def test_encrypted_private_keys(
    tmp_path: Path, model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    key = tmp_path / "enc.key"
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"correct horse"),
        )
    )
    key.chmod(0o600)
    pub = tmp_path / "enc.pub"
    pub.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    monkeypatch.setattr("sys.stdin", io.StringIO())  # not a terminal: never prompts
    code, _, err = cli("sign", model_file, "--key", key)
    assert code == 2 and "encrypted private key" in err and "--password-env" in err
    monkeypatch.setenv("SAFELOAD_TEST_PASSWORD", "wrong")
    code, _, err = cli("sign", model_file, "--key", key, "--password-env", "SAFELOAD_TEST_PASSWORD")
    assert code == 2 and "wrong password" in err
    monkeypatch.setenv("SAFELOAD_TEST_PASSWORD", "correct horse")
    code, _, _ = cli("sign", model_file, "--key", key, "--password-env", "SAFELOAD_TEST_PASSWORD")
    assert code == 0 and cli("verify", model_file, "--key", pub)[0] == 0
    # keygen writes encrypted keys too.
    out = tmp_path / "new.key"
    code, text, _ = cli(
        "keygen", "--type", "ed25519", "--out", out, "--password-env", "SAFELOAD_TEST_PASSWORD"
    )
    assert code == 0 and "encrypted" in text
    assert b"ENCRYPTED PRIVATE KEY" in out.read_bytes()
    assert load_signer(out, password=b"correct horse").algorithm == "ed25519"
    with pytest.raises(KeyFileError, match="encrypted private key"):
        load_signer(out)


# -- JSON output ----------------------------------------------------------------------------


def test_verify_json_output(tmp_path: Path, model_file: Path) -> None:
    signer, _, trusted = make_key(tmp_path / "keys", "ecdsa-p256")
    sign(model_file, signer)
    changed = tmp_path / "c.bin"
    changed.write_bytes(MODEL)
    sign(changed, signer)
    changed.write_bytes(MODEL + b"x")
    code, out, err = cli("verify", model_file, "--key", trusted, "--format", "json")
    assert (code, err) == (0, "")
    (entry,) = json.loads(out)["results"]
    digest = hashlib.sha256(MODEL).hexdigest()
    assert entry["verdict"] == "verified" and entry["reason"] == "verified"
    assert entry["subject"] == "b.bin" and entry["algorithm"] == "ecdsa-p256"
    assert entry["key_id"] == signer.key_id and entry["digest"].startswith("sha256:")
    assert entry["files"] == [{"name": ".", "digest": digest}]
    assert entry["signed_at"].endswith("Z") and entry["ignored"] == [] and entry["unsigned"] == []
    code, out, _ = cli("verify", model_file, changed, "--key", trusted, "--format", "json")
    assert code == 1
    good, bad = json.loads(out)["results"]
    assert good["verdict"] == "verified"
    assert (bad["verdict"], bad["reason"]) == ("not verified", "digest-mismatch")
    # Authenticated, then refused: what was signed, by whom and when, is reported too.
    assert (bad["subject"], bad["key_id"], bad["algorithm"]) == (
        "c.bin",
        signer.key_id,
        "ecdsa-p256",
    )
    assert bad["signed_at"].endswith("Z") and bad["digest"].startswith("sha256:")
    code, out, _ = cli("verify", changed, "--key", trusted, "--format", "json", "--subject", "x")
    (renamed,) = json.loads(out)["results"]
    assert (renamed["reason"], renamed["subject"]) == ("subject-mismatch", "c.bin")
    code, out, _ = cli(
        "verify", model_file, changed, tmp_path / "absent", "--key", trusted, "--format", "json"
    )
    assert code == 2 and json.loads(out)["results"][2]["verdict"] == "error"
    # Strings from files are JSON-escaped, never raw.
    assert "\x1b" not in json.dumps({"k": "\x1b"})
