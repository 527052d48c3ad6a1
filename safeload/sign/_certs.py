"""Certificate bundles: the OpenSSF model-signing "certificate" method.

The bundle's `verificationMaterial.x509CertificateChain.certificates` holds
the signing (leaf) certificate, then intermediates. Its signature is verified
with the leaf's key only after the chain is verified, by `cryptography`'s
X.509 path validation, up to a CA certificate the verifier trusts, at the
time of verification. The leaf must be allowed to sign: a KeyUsage extension
must allow digitalSignature and an ExtendedKeyUsage extension must allow code
signing, and it needs at least one of them (as model-signing checks, but
stricter: a leaf whose extended usage excludes code signing is refused even
when its key usage allows signatures).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from ..errors import KeyFileError, MalformedSignatureError, UnknownKeyError
from ._dsse import MAX_CERTIFICATES

__all__ = [
    "MAX_CHAIN",
    "CertifiedKey",
    "certificate_pem",
    "load_certificates",
    "verify_chain",
]

MAX_CHAIN = MAX_CERTIFICATES


@dataclass(frozen=True)
class CertifiedKey:
    """The leaf's public key, once its chain verified, and who it names."""

    key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
    subject: str
    """The leaf's subject (RFC 4514)."""
    fingerprint: str
    """SHA-256 of the leaf's DER, hex."""


def load_certificates(path: Path, data: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM file (a CA file may hold several)."""
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise KeyFileError(f"{path}: no readable PEM certificate ({exc})") from None
    if not certificates:
        raise KeyFileError(f"{path} holds no certificate")
    return certificates


def certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _usage_problem(leaf: x509.Certificate) -> str | None:
    extensions = leaf.extensions
    try:
        usage: x509.KeyUsage | None = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    try:
        extended: x509.ExtendedKeyUsage | None = extensions.get_extension_for_class(
            x509.ExtendedKeyUsage
        ).value
    except x509.ExtensionNotFound:
        extended = None
    if usage is None and extended is None:
        return "says neither KeyUsage nor ExtendedKeyUsage, so it is not meant for signing"
    if usage is not None and not usage.digital_signature:
        return "has a KeyUsage without digitalSignature"
    if extended is not None and ExtendedKeyUsageOID.CODE_SIGNING not in extended:
        return "has an ExtendedKeyUsage without code signing"
    return None


def verify_chain(
    chain: Iterable[bytes],
    roots: Iterable[x509.Certificate],
    where: str,
    *,
    at: datetime | None = None,
) -> CertifiedKey:
    """Verify a bundle's DER chain (leaf first) up to one of `roots`; the leaf's key.

    Raises `MalformedSignatureError` for certificates that do not parse and
    `UnknownKeyError` for a chain that does not lead to a trusted CA, or a
    leaf that may not sign.
    """
    roots = list(roots)
    if not roots:
        raise UnknownKeyError(
            f"{where} is a certificate bundle, and no CA certificate is trusted; give the "
            "CA that issued the signer's certificate (--ca-cert)"
        )
    try:
        certificates = [x509.load_der_x509_certificate(der) for der in chain]
    except ValueError as exc:
        raise MalformedSignatureError(
            f"{where}: a bundle certificate is unreadable ({exc})"
        ) from None
    if not certificates or len(certificates) > MAX_CHAIN:
        raise MalformedSignatureError(
            f"{where}: the certificate chain holds {len(certificates)} certificates "
            f"(1 to {MAX_CHAIN})"
        )
    leaf, intermediates = certificates[0], certificates[1:]
    subject = leaf.subject.rfc4514_string()
    problem = _usage_problem(leaf)
    if problem is not None:
        raise UnknownKeyError(f"{where}: the signing certificate {subject!r} {problem}")
    # The leaf's extensions are checked above; path validation checks the CAs', the
    # signatures, validity times and name chaining.
    policy = verification.ExtensionPolicy.permit_all()
    builder = (
        verification.PolicyBuilder()
        .store(verification.Store(roots))
        .time(at if at is not None else datetime.now(UTC))
        .max_chain_depth(MAX_CHAIN)
        .extension_policies(
            ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(), ee_policy=policy
        )
    )
    try:
        builder.build_client_verifier().verify(leaf, intermediates)
    except verification.VerificationError as exc:
        raise UnknownKeyError(
            f"{where}: the signing certificate {subject!r} does not chain to a trusted CA "
            f"({exc}); trust its CA (--ca-cert) if you trust it"
        ) from None
    except ValueError as exc:  # a malformed extension found during validation
        raise MalformedSignatureError(f"{where}: unusable certificate chain ({exc})") from None
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise UnknownKeyError(
            f"{where}: the signing certificate {subject!r} holds a {type(key).__name__}; "
            "only ECDSA and Ed25519 keys are supported"
        )
    fingerprint = hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()
    return CertifiedKey(key, subject, fingerprint)
