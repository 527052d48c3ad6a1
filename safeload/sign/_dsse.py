"""DSSE envelopes and the Sigstore bundle shape that model-signing writes.

A signature file is either an OpenSSF model-signing "key" bundle

    {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
     "verificationMaterial": {"publicKey": {"hint": <sha256 of PEM SPKI>}, "tlogEntries": []},
     "dsseEnvelope": {"payloadType": ..., "payload": <b64>, "signatures": [{"sig": <b64>, "keyid": ""}]}}

or a bare DSSE envelope (HMAC signatures). Signatures always cover
PAE(payloadType, payload) over the exact decoded payload bytes, which are
never re-serialized. See https://github.com/secure-systems-lab/dsse.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from ..errors import MalformedSignatureError
from . import _json

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "PAYLOAD_TYPE",
    "Envelope",
    "Signature",
    "encode",
    "pae",
    "parse",
]

PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
VERIFICATION_METHODS = ("certificate", "publicKey", "x509CertificateChain")
"""The ways a Sigstore bundle names what verifies it; a bundle declares exactly one."""
MAX_CERTIFICATES = 8
"""Certificates in a chain, at most (leaf and intermediates)."""
MAX_SIGNATURES = 16
"""More signatures than this in one envelope is treated as malformed."""

_STD_B64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_URL_B64 = re.compile(rb"[A-Za-z0-9_-]*={0,2}")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what is actually signed."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def b64decode(text: object, what: str, where: str) -> bytes:
    """Strictly decode standard or URL-safe base64 (padding optional), as DSSE allows."""
    if not isinstance(text, str):
        raise MalformedSignatureError(f"{where}: {what} is not a base64 string")
    raw = text.encode("ascii", "replace")
    if _STD_B64.fullmatch(raw):
        alphabet = None
    elif _URL_B64.fullmatch(raw):
        alphabet = b"-_"
    else:
        raise MalformedSignatureError(f"{where}: {what} is not valid base64")
    raw = raw.rstrip(b"=")
    raw += b"=" * (-len(raw) % 4)
    try:
        return base64.b64decode(raw, altchars=alphabet, validate=True)
    except binascii.Error as exc:
        raise MalformedSignatureError(f"{where}: {what} is not valid base64 ({exc})") from None


@dataclass(frozen=True)
class Signature:
    """One DSSE signature: raw bytes plus the optional key id."""

    sig: bytes
    keyid: str = ""


@dataclass(frozen=True)
class Envelope:
    """A decoded signature file."""

    payload: bytes
    """The exact signed statement bytes."""
    signatures: tuple[Signature, ...]
    payload_type: str = PAYLOAD_TYPE
    key_hint: str | None = None
    """`verificationMaterial.publicKey.hint` of a bundle (applies to signature 0)."""
    bundle: bool = False
    """True for the OpenSSF bundle shape, False for a bare DSSE envelope."""
    certificates: tuple[bytes, ...] = ()
    """DER certificates of an `x509CertificateChain` bundle, leaf first: signature 0 is
    verified with the leaf's key, once the chain is verified, and with nothing else."""
    sigstore: bool = False
    """A Sigstore (keyless) bundle: verified by `_sigstore.verify_bundle` as a whole (its
    Fulcio certificate and transparency-log entry), and by nothing else."""

    def pae(self) -> bytes:
        """The bytes every signature covers."""
        return pae(self.payload_type, self.payload)


def encode(
    payload: bytes,
    signatures: list[Signature],
    *,
    bundle: bool,
    key_hint: str | None,
    certificates: tuple[bytes, ...] = (),
) -> bytes:
    """Serialize an envelope (bare DSSE), a model-signing "key" bundle or, with
    `certificates` (DER, leaf first), a "certificate" bundle."""
    envelope: dict[str, Any] = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [
            {"sig": base64.b64encode(s.sig).decode("ascii"), "keyid": s.keyid} for s in signatures
        ],
    }
    document: dict[str, Any] = envelope
    if bundle:
        material: dict[str, Any] = (
            {
                "x509CertificateChain": {
                    "certificates": [
                        {"rawBytes": base64.b64encode(c).decode("ascii")} for c in certificates
                    ]
                }
            }
            if certificates
            else {"publicKey": {"hint": key_hint or ""}}
        )
        material["tlogEntries"] = []
        document = {
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": material,
            "dsseEnvelope": envelope,
        }
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def parse(data: bytes, where: str) -> Envelope:
    """Decode a signature file; `where` names it in error messages."""
    try:
        document = _json.loads(data, _json.ENVELOPE_LIMITS)
    except _json.JsonError as exc:
        raise MalformedSignatureError(
            f"{where} {exc}: it is truncated, altered or not a signature file; sign the model again"
        ) from None
    if not isinstance(document, dict):
        raise MalformedSignatureError(f"{where}: expected a JSON object")
    key_hint: str | None = None
    certificates: tuple[bytes, ...] = ()
    sigstore = False
    bundle = "dsseEnvelope" in document
    if bundle:
        media = document.get("mediaType")
        if not isinstance(media, str) or not media.startswith(
            "application/vnd.dev.sigstore.bundle"
        ):
            raise MalformedSignatureError(f"{where}: not a Sigstore bundle (mediaType {media!r})")
        material = document.get("verificationMaterial")
        if not isinstance(material, dict):
            raise MalformedSignatureError(f"{where}: bundle has no verificationMaterial")
        methods = sorted(m for m in VERIFICATION_METHODS if m in material)
        if len(methods) != 1:
            # A bundle is verified by the one method it declares, never by another one
            # injected beside it (a raw key next to a certificate, say).
            raise MalformedSignatureError(
                f"{where}: verificationMaterial must declare exactly one of "
                f"{', '.join(VERIFICATION_METHODS)}, not {', '.join(methods) or 'none'}"
            )
        sigstore = methods == ["certificate"]
        if methods == ["x509CertificateChain"]:
            certificates = _chain(material["x509CertificateChain"], where)
        elif not sigstore:
            public_key = material["publicKey"]
            if not isinstance(public_key, dict):
                raise MalformedSignatureError(
                    f"{where}: verificationMaterial.publicKey is not an object"
                )
            hint = public_key.get("hint")
            if hint is not None and not isinstance(hint, str):
                raise MalformedSignatureError(f"{where}: publicKey.hint is not a string")
            key_hint = hint or None
        envelope = document["dsseEnvelope"]
        if not isinstance(envelope, dict):
            raise MalformedSignatureError(f"{where}: dsseEnvelope is not an object")
    else:
        envelope = document
    payload_type = envelope.get("payloadType")
    if payload_type != PAYLOAD_TYPE:
        raise MalformedSignatureError(
            f"{where}: payloadType is {payload_type!r}, expected {PAYLOAD_TYPE!r}"
        )
    payload = b64decode(envelope.get("payload"), "payload", where)
    raw_signatures = envelope.get("signatures")
    if not isinstance(raw_signatures, list) or not raw_signatures:
        raise MalformedSignatureError(f"{where}: the envelope holds no signatures")
    if len(raw_signatures) > MAX_SIGNATURES:
        raise MalformedSignatureError(f"{where}: more than {MAX_SIGNATURES} signatures")
    signatures = []
    for index, item in enumerate(raw_signatures):
        if not isinstance(item, dict):
            raise MalformedSignatureError(f"{where}: signature {index} is not an object")
        keyid = item.get("keyid")
        if keyid is None:
            keyid = ""
        if not isinstance(keyid, str):
            raise MalformedSignatureError(f"{where}: signature {index} keyid is not a string")
        sig = b64decode(item.get("sig"), f"signature {index}", where)
        signatures.append(Signature(sig, keyid))
    return Envelope(
        payload, tuple(signatures), payload_type, key_hint, bundle, certificates, sigstore
    )


def _chain(chain: object, where: str) -> tuple[bytes, ...]:
    items = chain.get("certificates") if isinstance(chain, dict) else None
    if not isinstance(items, list) or not items:
        raise MalformedSignatureError(f"{where}: x509CertificateChain holds no certificates")
    if len(items) > MAX_CERTIFICATES:
        raise MalformedSignatureError(
            f"{where}: x509CertificateChain holds more than {MAX_CERTIFICATES} certificates"
        )
    found = []
    for index, item in enumerate(items):
        raw = item.get("rawBytes") if isinstance(item, dict) else None
        found.append(b64decode(raw, f"certificate {index}", where))
    return tuple(found)
