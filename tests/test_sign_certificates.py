"""Certificate bundles (model-signing's "certificate" method), both ways with model-signing.

A CA, an intermediate and signing certificates are made in the test run with
`cryptography`. safeload verifies a bundle only through its chain, up to a CA
the user trusts, with a leaf allowed to sign; never by a raw key given beside
it. model-signing 1.1.1 verifies safeload's certificate bundles and safeload
verifies model-signing's.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from safeload._cli.sign import add_parsers, run
from safeload.sign import (
    DigestMismatchError,
    EcdsaSigner,
    InvalidSignatureError,
    KeyFileError,
    MalformedSignatureError,
    TrustStore,
    UnknownKeyError,
    sign,
    verify,
)
from safeload.sign._keys import certify

MODEL = b"\x80\x05\x95\x0a\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01w\x94K\x01s."
"""pickle.dumps({'w': 1}, protocol=5): `safeload sign` scans it first (the frame
length was 11 for 10 bytes, a truncated pickle it now refuses to sign)."""
NOW = datetime.now(UTC)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _usage(*, sign: bool = False, ca: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool,
    usage: x509.KeyUsage | None,
    extended: list[x509.ObjectIdentifier] | None = None,
    valid: tuple[datetime, datetime] = (NOW - timedelta(days=1), NOW + timedelta(days=30)),
) -> x509.Certificate:
    issuer_name, issuer_key = issuer if issuer is not None else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if usage is not None:
        builder = builder.add_extension(usage, critical=True)
    if extended is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


class Pki:
    """A root CA, an intermediate CA and a signing key certified by the intermediate."""

    def __init__(self, folder: Path, name: str = "Test") -> None:
        self.folder = folder
        folder.mkdir(exist_ok=True)
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = _certificate(
            f"{name} Root", self.root_key, None, ca=True, usage=_usage(ca=True)
        )
        self.inter_key = ec.generate_private_key(ec.SECP256R1())
        self.inter = _certificate(
            f"{name} Intermediate",
            self.inter_key,
            (f"{name} Root", self.root_key),
            ca=True,
            usage=_usage(ca=True),
        )
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.root_pem = self.write("root.pem", _pem(self.root))
        self.inter_pem = self.write("intermediate.pem", _pem(self.inter))
        self.key_pem = self.write(
            "signing.key",
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        self.key_pem.chmod(0o600)

    def write(self, name: str, data: bytes) -> Path:
        path = self.folder / name
        path.write_bytes(data)
        return path

    def leaf(
        self,
        name: str = "leaf.pem",
        *,
        usage: x509.KeyUsage | None = None,
        extended: list[x509.ObjectIdentifier] | None = None,
        valid: tuple[datetime, datetime] | None = None,
    ) -> Path:
        certificate = _certificate(
            "model signer",
            self.key,
            (self.inter.subject.rfc4514_string().removeprefix("CN="), self.inter_key),
            ca=False,
            usage=usage if usage is not None else _usage(sign=True),
            extended=extended if extended is not None else [ExtendedKeyUsageOID.CODE_SIGNING],
            valid=valid or (NOW - timedelta(hours=1), NOW + timedelta(days=10)),
        )
        return self.write(name, _pem(certificate))

    def signer(self, leaf: Path | None = None) -> EcdsaSigner:
        signer = EcdsaSigner(self.key)
        certify(signer, leaf or self.leaf(), [self.inter_pem])
        return signer


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.pkl"
    path.write_bytes(MODEL)
    return path


def test_a_certificate_bundle_verifies_through_its_chain(pki: Pki, model_file: Path) -> None:
    sig = sign(model_file, pki.signer())
    material = json.loads(sig.read_bytes())["verificationMaterial"]
    assert (
        "publicKey" not in material and len(material["x509CertificateChain"]["certificates"]) == 2
    )
    result = verify(model_file, TrustStore.load(ca_certs=[pki.root_pem]))
    assert result.certificate == "CN=model signer" and result.algorithm == "ecdsa-p256"
    # The signing key alone, trusted as a raw key, does not verify a certificate bundle.
    raw = TrustStore([pki.key.public_key()])
    with pytest.raises(UnknownKeyError, match="no CA certificate is trusted"):
        verify(model_file, raw)


def test_untrusted_chains_and_leaves_that_may_not_sign(
    tmp_path: Path, pki: Pki, model_file: Path
) -> None:
    other = Pki(tmp_path / "other", "Other")
    sign(model_file, pki.signer())
    with pytest.raises(UnknownKeyError, match="does not chain to a trusted CA"):
        verify(model_file, TrustStore.load(ca_certs=[other.root_pem]))
    trust = TrustStore.load(ca_certs=[pki.root_pem])
    cases = {
        "KeyUsage without digitalSignature": pki.leaf("a.pem", usage=_usage()),
        "ExtendedKeyUsage without code signing": pki.leaf(
            "b.pem", extended=[ExtendedKeyUsageOID.SERVER_AUTH]
        ),
        "not valid at validation time": pki.leaf(
            "c.pem", valid=(NOW - timedelta(days=9), NOW - timedelta(days=1))
        ),
    }
    for problem, leaf in cases.items():
        sign(model_file, pki.signer(leaf))
        with pytest.raises(UnknownKeyError, match=problem):
            verify(model_file, trust)


def test_a_tampered_certificate_bundle(pki: Pki, model_file: Path) -> None:
    sig = sign(model_file, pki.signer())
    trust = TrustStore.load(ca_certs=[pki.root_pem])
    document = json.loads(sig.read_bytes())
    chain = document["verificationMaterial"]["x509CertificateChain"]["certificates"]
    good = list(chain)
    # Another certificate of the same CA, for another key: the signature does not match it.
    stranger = Pki(pki.folder / "x")
    stranger.inter, stranger.inter_key = pki.inter, pki.inter_key
    leaf = x509.load_pem_x509_certificate(stranger.leaf().read_bytes())
    chain[0] = {
        "rawBytes": base64.b64encode(leaf.public_bytes(serialization.Encoding.DER)).decode()
    }
    sig.write_text(json.dumps(document))
    with pytest.raises(InvalidSignatureError):
        verify(model_file, trust)
    chain[:] = [{"rawBytes": "AAAA"}, *good[1:]]
    sig.write_text(json.dumps(document))
    with pytest.raises(MalformedSignatureError, match="unreadable"):
        verify(model_file, trust)


def test_certify_checks_the_key_and_the_ca_file(tmp_path: Path, pki: Pki) -> None:
    other = Pki(tmp_path / "other", "Other")
    with pytest.raises(KeyFileError, match="certifies another key"):
        certify(EcdsaSigner(other.key), pki.leaf())
    with pytest.raises(KeyFileError, match="no CA certificate"):
        TrustStore.load(ca_certs=[pki.leaf()])


def _cli(*argv: str | Path) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="safeload")
    add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args([str(a) for a in argv])
    out, err = io.StringIO(), io.StringIO()
    return run(args, out, err), out.getvalue(), err.getvalue()


def test_cli_certificate_bundles(pki: Pki, model_file: Path) -> None:
    leaf = pki.leaf()
    code, _, err = _cli(
        "sign", model_file, "--key", pki.key_pem, "--certificate", leaf,
        "--certificate-chain", pki.inter_pem,
    )  # fmt: skip
    assert code == 0, err
    code, out, _ = _cli("verify", model_file, "--ca-cert", pki.root_pem)
    assert code == 0 and "(certificate 'CN=model signer')" in out
    code, out, _ = _cli("verify", model_file, "--ca-cert", pki.root_pem, "--format", "json")
    assert json.loads(out)["results"][0]["certificate"] == "CN=model signer"
    code, _, err = _cli("verify", model_file, "--key", pki.key_pem)
    assert code == 1 and "no CA certificate is trusted" in err


model_signing = pytest.importorskip("model_signing", reason="needs the test extra")


def model_signing_cli(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "model_signing", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_model_signing_verifies_safeload_certificate_bundles(pki: Pki, model_file: Path) -> None:
    sig = sign(model_file, pki.signer())
    chain = pki.write("chain.pem", pki.root_pem.read_bytes() + pki.inter_pem.read_bytes())
    done = model_signing_cli(
        "verify", "certificate", model_file, "--signature", sig, "--certificate_chain", chain
    )
    assert done.returncode == 0, done.stderr
    # The check is real: another root does not verify it.
    other = Pki(pki.folder / "other", "Other")
    done = model_signing_cli(
        "verify", "certificate", model_file, "--signature", sig,
        "--certificate_chain", other.root_pem,
    )  # fmt: skip
    assert done.returncode != 0


def test_safeload_verifies_model_signing_certificate_bundles(pki: Pki, model_file: Path) -> None:
    sig = model_file.with_name("model.pkl.sig")
    done = model_signing_cli(
        "sign", "certificate", model_file, "--signature", sig,
        "--private_key", pki.key_pem, "--signing_certificate", pki.leaf(),
        "--certificate_chain", pki.inter_pem,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = verify(model_file, TrustStore.load(ca_certs=[pki.root_pem]))
    assert result.certificate == "CN=model signer" and result.files == (".",)
    model_file.write_bytes(MODEL + b" ")
    with pytest.raises(DigestMismatchError):
        verify(model_file, TrustStore.load(ca_certs=[pki.root_pem]))
