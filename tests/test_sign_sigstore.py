"""Sigstore (keyless) bundles, verified offline against a local test Sigstore.

tests/sigstore_local.py plays Fulcio, a CT log and Rekor with keys made in
the test run. model-signing 1.1.1 writes the signature file itself: its own
signing pipeline (hashing, in-toto statement, `Signature.write`) runs with a
signer that asks the local Sigstore instead of the public one, which a test
cannot reach (nor get an OIDC token for). model-signing's own Sigstore
verifier is the oracle: each bundle it accepts safeload accepts, and each
broken one both refuse, safeload with the `SignatureError` subclass naming
the reason. No test opens a network connection: sockets are blocked.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import pickle
import socket
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import safeload
from safeload._cli.sign import add_parsers, run
from safeload.sign import (
    DigestMismatchError,
    InvalidSignatureError,
    KeyFileError,
    MalformedSignatureError,
    SignatureError,
    SigstoreIdentityError,
    SigstoreTrust,
    TransparencyLogError,
    TrustStore,
    UnsupportedSignatureError,
    UntrustedCertificateError,
    authenticate,
    read_signature,
    verify,
)
from safeload.sign._keys import PublicKey
from tests.sigstore_local import IDENTITY, ISSUER, LocalSigstore, LocalTsa, b64

model_signing = pytest.importorskip("model_signing", reason="needs the test extra")
pytest.importorskip("sigstore", reason="needs the test extra")

from google.protobuf import json_format  # noqa: E402  (model-signing's dependency)
from model_signing._signing import sign_sigstore, signing  # noqa: E402
from sigstore.models import Bundle  # noqa: E402

WORKFLOW = "https://github.com/example/models/.github/workflows/release.yml@refs/heads/main"
GITHUB = "https://token.actions.githubusercontent.com"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verification is offline: any attempt to connect or resolve fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


class LocalSigner(signing.Signer):  # type: ignore[misc]
    """model-signing's Sigstore signer, with the local Sigstore in place of the public one:
    the statement is model-signing's, the bundle sigstore-python's `Bundle`."""

    def __init__(self, local: LocalSigstore, **options: Any) -> None:
        self.local = local
        self.options = options
        self.statements: list[bytes] = []

    def sign(self, payload: signing.Payload) -> sign_sigstore.Signature:
        statement = json_format.MessageToJson(payload.statement.pb).encode("utf-8")
        self.statements.append(statement)
        return sign_sigstore.Signature(Bundle.from_json(self.local.sign(statement, **self.options)))


def model_sign(local: LocalSigstore, model: Path, signature: Path, **options: Any) -> bytes:
    """Sign `model` with model-signing's pipeline and the local Sigstore; the statement."""
    signer = LocalSigner(local, **options)
    config = model_signing.signing.Config()
    config._signer = signer
    config.sign(model, signature)
    return signer.statements[0]


@pytest.fixture(scope="module")
def local() -> LocalSigstore:
    return LocalSigstore()


@pytest.fixture
def root_file(tmp_path: Path, local: LocalSigstore) -> Path:
    path = tmp_path / "trusted_root.json"
    path.write_text(json.dumps(local.trusted_root()))
    return path


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"weights": [0.5, 1.5], "bias": 2.0}, protocol=5))
    return path


def trust_of(root: Path, identity: str = IDENTITY, issuer: str = ISSUER) -> TrustStore:
    return TrustStore(sigstore=SigstoreTrust.load(root, identity=identity, issuer=issuer))


def oracle(
    model: Path, sig: Path, root: Path, identity: str = IDENTITY, issuer: str = ISSUER
) -> bool:
    """model-signing 1.1.1's own Sigstore verification (sigstore-python underneath), with
    the local trusted root as its trust config."""
    config_file = root.with_name("client_trust_config.json")
    config_file.write_text(
        json.dumps(
            {
                "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
                "trustedRoot": json.loads(root.read_text()),
                "signingConfig": {
                    "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json"
                },
            }
        )
    )
    config = model_signing.verifying.Config().use_sigstore_verifier(
        identity=identity, oidc_issuer=issuer, trust_config=config_file
    )
    try:
        config.verify(model, sig)
    except Exception:
        return False
    return True


# -- bundles that verify ----------------------------------------------------------------


def test_a_model_signing_sigstore_bundle_verifies(
    local: LocalSigstore, model: Path, root_file: Path
) -> None:
    sig = model.with_name("model.pkl.sig")
    model_sign(local, model, sig)
    document = json.loads(sig.read_text())
    assert document["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert set(document["verificationMaterial"]) >= {"certificate", "tlogEntries"}
    assert oracle(model, sig, root_file)
    result = verify(model, trust_of(root_file))
    assert result.algorithm == "sigstore-ecdsa-p256"
    assert result.certificate is not None and IDENTITY in result.certificate
    assert ISSUER in result.certificate and "log index 6" in result.certificate
    # The signing time is the log's, verified through its signed entry timestamp.
    assert result.signed_at == local.now
    assert result.files == (".",) and result.subject == "model.pkl"


def test_a_directory_and_a_workflow_identity(tmp_path: Path, root_file: Path) -> None:
    local = LocalSigstore()
    root_file.write_text(json.dumps(local.trusted_root()))
    folder = tmp_path / "bert"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"layers": 2}')
    (folder / "sub" / "weights.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    sig = tmp_path / "bert.sig"
    key = ec.generate_private_key(ec.SECP256R1())
    cert = local.leaf(key, identity=WORKFLOW, issuer=GITHUB, uri=True)
    model_sign(local, folder, sig, key=key, cert=cert)
    assert oracle(folder, sig, root_file, WORKFLOW, GITHUB)
    result = verify(folder, trust_of(root_file, WORKFLOW, GITHUB))
    assert set(result.files) == {"config.json", "sub/weights.pkl"}
    (folder / "sub" / "weights.pkl").write_bytes(pickle.dumps([1, 2, 4]))
    with pytest.raises(DigestMismatchError, match=r"changed since signing: 'sub/weights\.pkl'"):
        verify(folder, trust_of(root_file, WORKFLOW, GITHUB))
    assert not oracle(folder, sig, root_file, WORKFLOW, GITHUB)


def test_a_certificate_expired_now_but_valid_when_logged_verifies(
    tmp_path: Path, model: Path
) -> None:
    """Fulcio certificates live ten minutes: what counts is the logged time, not now."""
    local = LocalSigstore()
    root = tmp_path / "root.json"
    root.write_text(json.dumps(local.trusted_root()))
    key = ec.generate_private_key(ec.SECP256R1())
    issued = local.now - timedelta(days=3)
    cert = local.leaf(key, issued=issued)
    sig = model.with_name("model.pkl.sig")
    model_sign(local, model, sig, key=key, cert=cert, integrated=issued + timedelta(minutes=2))
    assert cert.not_valid_after_utc < local.now
    assert oracle(model, sig, root)
    assert verify(model, trust_of(root)).signed_at == issued + timedelta(minutes=2)


def test_an_rfc3161_timestamp_dates_the_signature(tmp_path: Path, model: Path) -> None:
    """Without a signed entry timestamp, a trusted timestamp authority's time is the one the
    chain is checked at; an untrusted authority's vouches for nothing."""
    local = LocalSigstore()
    tsa = LocalTsa(local.now)
    root = tmp_path / "root.json"
    root.write_text(json.dumps(local.trusted_root(tsa=tsa)))
    sig = model.with_name("model.pkl.sig")
    when = local.now - timedelta(minutes=1)
    model_sign(local, model, sig, promise=False, stamps=[(tsa, when)])
    assert "inclusionPromise" not in sig.read_text()
    assert oracle(model, sig, root)
    assert verify(model, trust_of(root)).signed_at == when
    statement = model_sign(local, model, sig, promise=False, stamps=[(tsa, local.now)])
    key = _key()
    late = local.leaf(key, issued=local.now - timedelta(minutes=30))
    sig.write_bytes(
        local.sign(statement, key=key, cert=late, promise=False, stamps=[(tsa, local.now)])
    )
    with pytest.raises(UntrustedCertificateError, match="it had expired"):
        verify(model, trust_of(root))
    assert not oracle(model, sig, root)
    stranger = LocalTsa(local.now)
    sig.write_bytes(local.sign(statement, promise=False, stamps=[(stranger, local.now)]))
    with pytest.raises(TransparencyLogError, match="nothing vouches for when it was signed"):
        verify(model, trust_of(root))
    assert not oracle(model, sig, root)


# -- bundles that do not ----------------------------------------------------------------

Breaker = Callable[[LocalSigstore, bytes], bytes]


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _with_cert(**leaf: Any) -> Breaker:
    def make(local: LocalSigstore, statement: bytes) -> bytes:
        key = _key()
        return local.sign(statement, key=key, cert=local.leaf(key, **leaf))

    return make


def _forged_proof(local: LocalSigstore, statement: bytes) -> bytes:
    return local.sign(statement, proof=lambda path: [path[0][::-1], *path[1:]])


def _other_envelope(local: LocalSigstore, statement: bytes) -> bytes:
    other = statement.replace(b'"name"', b'"name" ', 1)
    assert other != statement
    return local.sign(statement, logged=other)


def _altered_payload(local: LocalSigstore, statement: bytes) -> bytes:
    document = json.loads(local.sign(statement))
    changed = statement.replace(b"sha256", b"SHA256", 1)
    document["dsseEnvelope"]["payload"] = b64(changed)
    return json.dumps(document).encode()


def _expired_when_logged(local: LocalSigstore, statement: bytes) -> bytes:
    key = _key()
    cert = local.leaf(key, issued=local.now - timedelta(minutes=30))
    return local.sign(statement, key=key, cert=cert)


def _other_ca(local: LocalSigstore, statement: bytes) -> bytes:
    rogue = LocalSigstore(now=local.now, log_key=local.log_key, ct_key=local.ct_key)
    key = _key()
    return local.sign(statement, key=key, cert=rogue.leaf(key))


def _no_promise(local: LocalSigstore, statement: bytes) -> bytes:
    return local.sign(statement, promise=False)


CASES: dict[str, tuple[Breaker, type[SignatureError], str]] = {
    "wrong identity": (
        _with_cert(identity="mallory@example.com"),
        SigstoreIdentityError,
        "not the expected identity 'alice@example.com'",
    ),
    "wrong issuer": (
        _with_cert(issuer="https://evil.example"),
        SigstoreIdentityError,
        "issuer 'https://evil.example', not the expected",
    ),
    "issuer extensions disagree": (
        _with_cert(issuer="https://evil.example", issuer_v1=ISSUER),
        SigstoreIdentityError,
        "issuer 'https://evil.example'",
    ),
    "expired when logged": (_expired_when_logged, UntrustedCertificateError, "it had expired"),
    "another CA": (_other_ca, UntrustedCertificateError, "does not chain to a Fulcio CA"),
    "no SCT": (_with_cert(sct=False), UntrustedCertificateError, "no valid SCT"),
    "SCT by an untrusted CT log": (
        _with_cert(ct_key=_key()),
        UntrustedCertificateError,
        "no valid SCT",
    ),
    "forged inclusion proof": (
        _forged_proof,
        TransparencyLogError,
        "inclusion proof does not lead",
    ),
    "checkpoint by an untrusted key": (
        lambda lo, s: lo.sign(s, checkpoint_key=_key()),
        TransparencyLogError,
        "checkpoint is not signed by a log key",
    ),
    "SET by an untrusted key": (
        lambda lo, s: lo.sign(s, set_key=_key()),
        TransparencyLogError,
        "signed entry timestamp is not by a log key",
    ),
    "entry of another envelope": (
        _other_envelope,
        TransparencyLogError,
        "records another envelope",
    ),
    "entry of another certificate": (
        lambda lo, s: lo.sign(s, logged_cert=lo.leaf(_key())),
        TransparencyLogError,
        "records another envelope or signer",
    ),
    "payload altered": (
        _altered_payload,
        InvalidSignatureError,
        "signature does not match its payload",
    ),
    "no signed time": (_no_promise, MalformedSignatureError, "inclusion promise"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_broken_bundles_are_refused_naming_the_reason(
    case: str, local: LocalSigstore, model: Path, root_file: Path
) -> None:
    breaker, error, message = CASES[case]
    sig = model.with_name("model.pkl.sig")
    statement = model_sign(local, model, sig)
    assert verify(model, trust_of(root_file)).algorithm == "sigstore-ecdsa-p256"
    sig.write_bytes(breaker(local, statement))
    with pytest.raises(error, match=message) as caught:
        verify(model, trust_of(root_file))
    assert str(sig) in str(caught.value)
    # sigstore-python reads only the first issuer extension (.1.1): safeload is stricter.
    assert oracle(model, sig, root_file) == (case == "issuer extensions disagree")


def test_a_tampered_model_file(local: LocalSigstore, model: Path, root_file: Path) -> None:
    model_sign(local, model, model.with_name("model.pkl.sig"))
    model.write_bytes(model.read_bytes()[:-2] + b"X.")
    with pytest.raises(DigestMismatchError, match="changed since it was signed"):
        verify(model, trust_of(root_file))
    assert not oracle(model, model.with_name("model.pkl.sig"), root_file)


def test_the_roots_validity_windows_bound_the_logged_time(
    local: LocalSigstore, model: Path, tmp_path: Path
) -> None:
    """A CA or log key retired before the signature was logged does not vouch for it
    (sigstore-python checks these windows only against the present time)."""
    sig = model.with_name("model.pkl.sig")
    model_sign(local, model, sig)
    retired = (local.now - timedelta(days=30), local.now - timedelta(days=1))
    ca_root = tmp_path / "ca_retired.json"
    ca_root.write_text(json.dumps(local.trusted_root(ca_window=retired)))
    with pytest.raises(UntrustedCertificateError, match="was not trusted at"):
        verify(model, trust_of(ca_root))
    log_root = tmp_path / "log_retired.json"
    log_root.write_text(json.dumps(local.trusted_root(log_window=retired)))
    with pytest.raises(TransparencyLogError, match="was not trusted at"):
        verify(model, trust_of(log_root))
    # A leaf the root CA issued itself: its authority's window is the one checked.
    key = _key()
    model_sign(local, model, sig, key=key, cert=local.leaf(key, by_root=True))
    good = tmp_path / "good.json"
    good.write_text(json.dumps(local.trusted_root()))
    assert oracle(model, sig, good)
    assert verify(model, trust_of(good)).algorithm == "sigstore-ecdsa-p256"
    with pytest.raises(UntrustedCertificateError, match="was not trusted at"):
        verify(model, trust_of(ca_root))
    other = LocalSigstore()
    elsewhere = tmp_path / "other_log.json"
    document = local.trusted_root()
    document["tlogs"] = other.trusted_root()["tlogs"] + document["tlogs"]
    document["tlogs"][1]["logId"]["keyId"] = b64(b"\x01" * 32)
    elsewhere.write_text(json.dumps(document))
    with pytest.raises(TransparencyLogError, match="does not list"):
        verify(model, trust_of(elsewhere))


def test_only_the_declared_method_verifies_a_sigstore_bundle(
    local: LocalSigstore, model: Path, root_file: Path
) -> None:
    key = _key()
    cert = local.leaf(key, identity="mallory@example.com")
    sig = model.with_name("model.pkl.sig")
    model_sign(local, model, sig, key=key, cert=cert)
    # The certificate's own key, trusted as a raw key, never verifies a Sigstore bundle.
    with pytest.raises(UnsupportedSignatureError, match="no Sigstore trust is given"):
        verify(model, TrustStore([PublicKey(key.public_key())]))
    both = TrustStore(
        [PublicKey(key.public_key())],
        sigstore=SigstoreTrust.load(root_file, identity=IDENTITY, issuer=ISSUER),
    )
    with pytest.raises(SigstoreIdentityError):
        verify(model, both)
    # A Sigstore trust never verifies a key bundle either.
    sig.write_bytes(local.sign(b"{}"))
    document = json.loads(sig.read_text())
    document["verificationMaterial"] = {"publicKey": {"hint": "00" * 32}, "tlogEntries": []}
    sig.write_text(json.dumps(document))
    with pytest.raises(SignatureError) as caught:
        verify(model, trust_of(root_file))
    assert not isinstance(caught.value, SigstoreIdentityError)


# -- bounded parsing and hostile input ------------------------------------------------------


def test_the_bundle_is_read_within_the_signature_limits(
    local: LocalSigstore, model: Path, root_file: Path
) -> None:
    sig = model.with_name("model.pkl.sig")
    statement = model_sign(local, model, sig)
    good = json.loads(sig.read_text())
    trust = trust_of(root_file)
    deep = json.loads(json.dumps(good))
    deep["verificationMaterial"]["tlogEntries"][0]["x"] = json.loads("[" * 40 + "]" * 40)
    doubled = sig.read_text().replace('"logIndex":', '"logIndex": "1", "logIndex":', 1)
    assert doubled != sig.read_text()
    huge_int = sig.read_text().replace('"dsseEnvelope"', '"n": ' + "9" * 5000 + ', "dsseEnvelope"')
    for text, message in (
        (json.dumps(deep), "nested more than"),
        (doubled, "repeats the key 'logIndex'"),
        (huge_int, "a number of 5000 characters"),
    ):
        sig.write_text(text)
        with pytest.raises(MalformedSignatureError, match=message):
            verify(model, trust)
    # An RFC 3161 timestamp that does not decode: malformed, not an uncaught error.
    stamped = json.loads(json.dumps(good))
    stamped["verificationMaterial"]["timestampVerificationData"] = {
        "rfc3161Timestamps": [{"signedTimestamp": "AAAA"}]
    }
    sig.write_text(json.dumps(stamped))
    with pytest.raises(MalformedSignatureError, match="Invalid Timestamp Response"):
        verify(model, trust)
    sig.write_bytes(b" " * (9 << 20))
    with pytest.raises(MalformedSignatureError, match="larger than a signature file"):
        verify(model, trust)
    assert statement


_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.text(max_size=12),
    st.sampled_from(["", "AAAA", "0.0.1", "dsse", "-1", "99999999999999999999"]),
    st.lists(st.integers(0, 3), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_bundles_end_as_signature_errors(
    data: st.DataObject, local: LocalSigstore, tmp_path: Path
) -> None:
    """Any field of a valid bundle replaced by any JSON value: verified or a SignatureError
    subclass, never another exception (sigstore-python's parser and verifier included)."""
    root = tmp_path / "fuzz_root.json"
    if not root.exists():
        root.write_text(json.dumps(local.trusted_root()))
    statement = json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "m", "digest": {"sha256": "00" * 32}}],
            "predicateType": "https://model_signing/signature/v1.0",
            "predicate": {},
        }
    ).encode()
    document = json.loads(local.sign(statement))
    paths = [p for p in _paths(document) if p]
    target = data.draw(st.sampled_from(paths))
    holder = document
    for step in target[:-1]:
        holder = holder[step]
    holder[target[-1]] = data.draw(_LEAVES)
    trust = SigstoreTrust.load(root, identity=IDENTITY, issuer=ISSUER)
    try:
        authenticate(json.dumps(document).encode(), TrustStore(sigstore=trust), where="m.sig")
    except SignatureError:
        pass


def test_trusted_roots_are_read_with_care(tmp_path: Path, local: LocalSigstore) -> None:
    root = tmp_path / "root.json"
    root.write_text(json.dumps(local.trusted_root()))
    for identity, issuer in (("", ISSUER), (IDENTITY, " ")):
        with pytest.raises(KeyFileError, match="needs the expected"):
            SigstoreTrust.load(root, identity=identity, issuer=issuer)
    # model-signing's --trust_config file (a client trust config) holds a root: accepted.
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
                "trustedRoot": local.trusted_root(),
                "signingConfig": {},
            }
        )
    )
    assert SigstoreTrust.load(config, identity=IDENTITY, issuer=ISSUER).issuer == ISSUER
    for change, message in (
        (lambda d: d.pop("ctlogs"), "no ctlogs key"),
        (lambda d: d.pop("tlogs"), "no tlogs key"),
        (lambda d: d.update(certificateAuthorities=[]), "no certificate authority"),
        (lambda d: d.update(mediaType="x"), "is no Sigstore trusted root"),
    ):
        document = local.trusted_root()
        change(document)
        root.write_text(json.dumps(document))
        with pytest.raises(KeyFileError, match=message):
            SigstoreTrust.load(root, identity=IDENTITY, issuer=ISSUER)
    root.write_text(json.dumps(local.trusted_root()).replace('"tlogs":', '"tlogs": [], "tlogs":'))
    with pytest.raises(KeyFileError, match="repeats the key 'tlogs'"):
        SigstoreTrust.load(root, identity=IDENTITY, issuer=ISSUER)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(KeyFileError, match="not a regular file"):
        SigstoreTrust.load(fifo, identity=IDENTITY, issuer=ISSUER)


# -- the CLI and the guarded loader ------------------------------------------------------


def cli(*argv: str | Path) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers())
    out, err = io.StringIO(), io.StringIO()
    code = run(parser.parse_args([str(a) for a in argv]), out, err)
    return code, out.getvalue(), err.getvalue()


def test_cli_verify_sigstore(local: LocalSigstore, model: Path, root_file: Path) -> None:
    sig = model.with_name("model.pkl.sig")
    model_sign(local, model, sig)
    base = ("verify", "--sigstore-root", root_file)
    code, out, _ = cli(*base, "--identity", IDENTITY, "--issuer", ISSUER, model)
    assert code == 0 and str(model) in out and IDENTITY in out and "sigstore-ecdsa-p256" in out
    code, out, _ = cli(
        *base, "--identity", "bob@example.com", "--issuer", ISSUER, "--format", "json", model
    )
    entry = json.loads(out)["results"][0]
    assert code == 1 and entry["reason"] == "identity-mismatch"
    statement = base64.b64decode(json.loads(sig.read_text())["dsseEnvelope"]["payload"])
    sig.write_bytes(_forged_proof(local, statement))
    code, _, err = cli(*base, "--identity", IDENTITY, "--issuer", ISSUER, model)
    assert code == 1 and "not proven in the transparency log" in err
    code, _, err = cli(*base, "--identity", IDENTITY, model)
    assert code == 2 and "go together" in err
    code, _, err = cli("verify", "--key", root_file, model)
    assert code == 2


def test_the_guarded_loader_takes_sigstore_trust(
    local: LocalSigstore, tmp_path: Path, root_file: Path
) -> None:
    joblib = pytest.importorskip("joblib")
    numpy = pytest.importorskip("numpy")
    linear = pytest.importorskip("sklearn.linear_model")
    estimator = linear.LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    model = tmp_path / "model.joblib"
    joblib.dump(estimator, model)
    sig = model.with_name("model.joblib.sig")
    model_sign(local, model, sig)
    loaded = safeload.load(model, trust=trust_of(root_file))
    assert numpy.array_equal(loaded.coef_, estimator.coef_)
    again = safeload.loads(
        model.read_bytes(),
        signature=read_signature(sig),
        trust=trust_of(root_file),
        subject="model.joblib",
    )
    assert numpy.array_equal(again.predict([[0.5], [2.5]]), estimator.predict([[0.5], [2.5]]))
    with pytest.raises(SigstoreIdentityError):
        safeload.load(model, trust=trust_of(root_file, identity="bob@example.com"))
    with safeload.guard(trust=trust_of(root_file)):
        assert numpy.array_equal(joblib.load(model).coef_, estimator.coef_)
    with (
        safeload.guard(trust=trust_of(root_file, issuer="https://evil.example")),
        pytest.raises(SigstoreIdentityError),
    ):
        joblib.load(model)


def test_without_the_sigstore_package(
    monkeypatch: pytest.MonkeyPatch, local: LocalSigstore, model: Path, root_file: Path
) -> None:
    """sigstore-python is an optional extra: without it a Sigstore trust is a usage error
    naming the extra, and nothing else in safeload.sign needs it."""
    sig = model.with_name("model.pkl.sig")
    model_sign(local, model, sig)
    trust = trust_of(root_file)
    monkeypatch.setitem(sys.modules, "sigstore.models", None)
    with pytest.raises(KeyFileError, match=r"safeload\[sigstore\]"):
        SigstoreTrust.load(root_file, identity=IDENTITY, issuer=ISSUER)
    with pytest.raises(KeyFileError, match=r"safeload\[sigstore\]"):
        verify(model, trust)
    code, _, err = cli(
        "verify", "--sigstore-root", root_file, "--identity", IDENTITY, "--issuer", ISSUER, model
    )
    assert code == 2 and "safeload[sigstore]" in err
