"""Sigstore (keyless) bundles: model-signing's default method, verified offline.

`model_signing sign sigstore` writes a Sigstore bundle v0.3: the DSSE envelope
of the model-signing statement, the short-lived Fulcio certificate of the
signer's key, and the Rekor (v1) entry of that envelope with its inclusion
proof, checkpoint and signed entry timestamp, sometimes RFC 3161 timestamps.
It is verified against a trusted root the user gives (`trusted_root.json`,
the file the Sigstore TUF repository publishes, or a copy of a private
instance's) and the identity and OIDC issuer the user expects. Nothing is
fetched: no TUF refresh, no Rekor lookup.

The transparency-log, certificate and SCT checks are sigstore-python's
`Verifier.verify_dsse`, not a second implementation: the certificate must
chain to a Fulcio CA of the root at the time the log's signed entry timestamp
(or a trusted timestamp authority) vouches for; carry exactly one SCT signed by
a CT log of the root; allow code signing; and the entry must be in the log
(its inclusion proof leads to a checkpoint a log key of the root signed) and
record this very envelope. Around it, safeload adds what sigstore-python
leaves out:

* the identity policy, exact: the expected identity is one of the
  certificate's SANs (email, URI or Sigstore's other name), and every OIDC
  issuer extension it carries (1.3.6.1.4.1.57264.1.1 and .8) is the expected
  issuer, at least one present;
* the root's validity windows: the Fulcio CA that issued the certificate and
  the log that logged it must have been valid (`validFor`) at every verified
  time, and the entry must name (by log ID) a log the root lists;
* bounded parsing: the bundle and root are read within the JSON limits of
  every signature file, duplicate keys refused, before sigstore-python sees
  them.

Each failure is a `SignatureError` subclass naming its reason:
`SigstoreIdentityError` (another identity or issuer), `UntrustedCertificateError`
(no chain to a trusted CA at the logged time, no valid SCT, a certificate
expired when logged), `TransparencyLogError` (a forged proof, a checkpoint or
SET not by a trusted log, an entry of another envelope), `InvalidSignatureError`
(the envelope's signature). sigstore-python is imported only when a Sigstore
bundle or root is used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..errors import (
    InvalidSignatureError,
    KeyFileError,
    MalformedSignatureError,
    SigstoreIdentityError,
    TransparencyLogError,
    UntrustedCertificateError,
)
from . import _json
from ._dsse import PAYLOAD_TYPE
from ._keys import read_bounded

if TYPE_CHECKING:
    from sigstore.models import TrustedRoot

__all__ = ["SigstoreTrust", "Sigstored", "verify_bundle"]

TRUSTED_ROOT_MEDIA = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
CLIENT_CONFIG_MEDIA = "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json"
ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
"""Fulcio's OIDC issuer extension: the raw issuer URL."""
ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
"""Fulcio's OIDC issuer extension (v2): a DER UTF8String."""
OTHER_NAME = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")
"""Sigstore's SAN other-name type (usernames)."""
_UTF8_STRING = 0x0C
_CURVES = {"secp256r1": "ecdsa-p256", "secp384r1": "ecdsa-p384", "secp521r1": "ecdsa-p521"}


def _sigstore_missing() -> KeyFileError:
    return KeyFileError(
        "verifying Sigstore bundles needs the `sigstore` package (pip install "
        "'safeload[sigstore]'); it is not installed"
    )


# -- the trusted root ---------------------------------------------------------------


@dataclass(frozen=True)
class _Window:
    start: datetime
    end: datetime | None

    def holds(self, moment: datetime) -> bool:
        return self.start <= moment and (self.end is None or moment <= self.end)

    def shown(self) -> str:
        end = _shown(self.end) if self.end is not None else "open end"
        return f"{_shown(self.start)} to {end}"


@dataclass(frozen=True)
class _Authority:
    certificates: tuple[x509.Certificate, ...]
    window: _Window


@dataclass(frozen=True, repr=False)
class SigstoreTrust:
    """What a Sigstore bundle is verified against: a trusted root, and who must have signed.

    `identity` is the signer's identity as Fulcio certified it (an email
    address, or a URI such as a CI workflow's), `issuer` the OIDC issuer that
    vouched for it (e.g. `https://github.com/login/oauth`); both must match
    exactly. Build it with `SigstoreTrust.load(path, identity=, issuer=)`.
    """

    root: TrustedRoot
    identity: str
    issuer: str
    source: str
    authorities: tuple[_Authority, ...] = field(default=())
    logs: tuple[tuple[bytes, _Window], ...] = field(default=())
    """(log ID, validity) of each transparency log of the root."""

    def __repr__(self) -> str:
        return (
            f"SigstoreTrust(identity={self.identity!r}, issuer={self.issuer!r}, "
            f"source={self.source!r})"
        )

    @property
    def key_id(self) -> str:
        """How messages name this trust."""
        return f"Sigstore identity {self.identity!r} (issuer {self.issuer!r})"

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, identity: str, issuer: str) -> SigstoreTrust:
        """Read a `trusted_root.json` (or a client trust config holding one), within the
        size and JSON limits of signature files. Raises `KeyFileError`."""
        path = Path(path)
        return cls.from_json(
            read_bounded(path, "Sigstore trusted root"),
            identity=identity,
            issuer=issuer,
            source=str(path),
        )

    @classmethod
    def from_json(
        cls, data: bytes, *, identity: str, issuer: str, source: str = "<memory>"
    ) -> SigstoreTrust:
        """`load` from bytes already read."""
        for what, value in (("identity", identity), ("issuer", issuer)):
            if not isinstance(value, str) or not value.strip():
                raise KeyFileError(
                    f"a Sigstore trust needs the expected {what} (--identity, --issuer): "
                    "without it any certificate the CA issued would be trusted"
                )
        try:
            document = _json.loads(data, _json.ENVELOPE_LIMITS)
        except _json.JsonError as exc:
            raise KeyFileError(f"{source} {exc}: it is no Sigstore trusted root") from None
        if isinstance(document, dict) and document.get("mediaType") == CLIENT_CONFIG_MEDIA:
            document = document.get("trustedRoot")
        if not isinstance(document, dict) or document.get("mediaType") != TRUSTED_ROOT_MEDIA:
            raise KeyFileError(
                f"{source} is no Sigstore trusted root (mediaType {TRUSTED_ROOT_MEDIA!r})"
            )
        authorities = _authorities(document, source)
        logs = _logs(document.get("tlogs"), "tlogs", source)
        _logs(document.get("ctlogs"), "ctlogs", source)  # SCTs are required: see verify_bundle
        try:
            from sigstore.models import TrustedRoot
            from sigstore_models.trustroot import v1 as trustroot_v1
        except ImportError:
            raise _sigstore_missing() from None
        try:
            root = TrustedRoot(trustroot_v1.TrustedRoot.from_json(json.dumps(document)))
        except Exception as exc:  # sigstore's parser on user input: a usage error
            raise KeyFileError(
                f"{source}: sigstore cannot read this trusted root ({type(exc).__name__}: "
                f"{str(exc)[:300]})"
            ) from None
        return cls(root, identity, issuer, source, authorities, logs)


def _time(value: object, where: str) -> datetime:
    if not isinstance(value, str):
        raise KeyFileError(f"{where} is not a time")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise KeyFileError(f"{where} is not an RFC 3339 time ({value[:40]!r})") from None
    if moment.tzinfo is None:
        raise KeyFileError(f"{where} has no time zone ({value[:40]!r})")
    return moment


def _window(value: object, where: str) -> _Window:
    if not isinstance(value, dict) or "start" not in value:
        raise KeyFileError(f"{where}.validFor has no start")
    end = value.get("end")
    return _Window(
        _time(value["start"], f"{where}.validFor.start"),
        _time(end, f"{where}.validFor.end") if end is not None else None,
    )


def _b64(value: object, where: str) -> bytes:
    if not isinstance(value, str):
        raise KeyFileError(f"{where} is not base64")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise KeyFileError(f"{where} is not base64") from None


def _authorities(document: dict[str, Any], source: str) -> tuple[_Authority, ...]:
    items = document.get("certificateAuthorities")
    if not isinstance(items, list) or not items:
        raise KeyFileError(f"{source} lists no certificate authority (Fulcio)")
    found = []
    for index, item in enumerate(items):
        where = f"{source}: certificateAuthorities[{index}]"
        chain = item.get("certChain") if isinstance(item, dict) else None
        certs = chain.get("certificates") if isinstance(chain, dict) else None
        if not isinstance(certs, list) or not certs:
            raise KeyFileError(f"{where} has no certificate")
        try:
            loaded = tuple(
                x509.load_der_x509_certificate(
                    _b64(c.get("rawBytes") if isinstance(c, dict) else None, where)
                )
                for c in certs
            )
        except ValueError as exc:
            raise KeyFileError(f"{where}: unreadable certificate ({exc})") from None
        found.append(_Authority(loaded, _window(item.get("validFor"), where)))
    return tuple(found)


def _logs(items: object, name: str, source: str) -> tuple[tuple[bytes, _Window], ...]:
    if not isinstance(items, list) or not items:
        raise KeyFileError(f"{source} lists no {name} key")
    found = []
    for index, item in enumerate(items):
        where = f"{source}: {name}[{index}]"
        log_id = item.get("logId") if isinstance(item, dict) else None
        key = item.get("publicKey") if isinstance(item, dict) else None
        if not isinstance(log_id, dict) or not isinstance(key, dict):
            raise KeyFileError(f"{where} has no logId or publicKey")
        found.append(
            (_b64(log_id.get("keyId"), f"{where}.logId"), _window(key.get("validFor"), where))
        )
    return tuple(found)


# -- the identity policy ------------------------------------------------------------


def _utf8_string(der: bytes) -> str | None:
    """The text of a DER UTF8String (short or long definite length), else None."""
    if len(der) < 2 or der[0] != _UTF8_STRING:
        return None
    length, offset = der[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(der) < 2 + count:
            return None
        length, offset = int.from_bytes(der[2 : 2 + count], "big"), 2 + count
    if offset + length != len(der):
        return None
    try:
        return der[offset:].decode("utf-8")
    except UnicodeDecodeError:
        return None


def certificate_identities(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    """The identities (SAN emails, URIs, Sigstore other names) and the OIDC issuers a
    Fulcio certificate names."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        names: list[str] = []
    else:
        names = [*san.get_values_for_type(x509.RFC822Name)]
        names += san.get_values_for_type(x509.UniformResourceIdentifier)
        names += [
            o.value.decode("utf-8", "replace")
            for o in san.get_values_for_type(x509.OtherName)
            if o.type_id == OTHER_NAME
        ]
    issuers: list[str] = []
    for oid in (ISSUER_V1, ISSUER_V2):
        try:
            value = cert.extensions.get_extension_for_oid(oid).value
        except x509.ExtensionNotFound:
            continue
        raw = value.value if isinstance(value, x509.UnrecognizedExtension) else b""
        text = raw.decode("utf-8", "replace") if oid == ISSUER_V1 else _utf8_string(raw)
        issuers.append(text if text is not None else f"<undecodable {raw[:32].hex()}>")
    return names, issuers


class _Policy:
    """sigstore-python's `VerificationPolicy` protocol, raising safeload's own error: it
    is called once the chain verified, and its error passes through the verifier."""

    def __init__(self, trust: SigstoreTrust, where: str) -> None:
        self.trust = trust
        self.where = where

    def verify(self, cert: x509.Certificate) -> None:
        names, issuers = certificate_identities(cert)
        expected = self.trust.issuer
        if not issuers:
            raise SigstoreIdentityError(
                f"{self.where}: the signing certificate names no OIDC issuer (extension "
                f"{ISSUER_V1.dotted_string} or {ISSUER_V2.dotted_string}); it is no Fulcio "
                "certificate, do not trust the model"
            )
        other = next((i for i in issuers if i != expected), None)
        if other is not None:
            raise SigstoreIdentityError(
                f"{self.where}: the signer's identity was vouched for by OIDC issuer "
                f"{other!r}, not the expected {expected!r}; do not trust the model, or give "
                f"--issuer {other!r} if you trust that issuer"
            )
        if self.trust.identity not in names:
            shown = ", ".join(repr(n) for n in names[:4]) or "no identity"
            raise SigstoreIdentityError(
                f"{self.where} was signed by {shown}, not the expected identity "
                f"{self.trust.identity!r}; do not trust the model, or give --identity with "
                "the signer you trust"
            )


# -- verification -------------------------------------------------------------------


@dataclass(frozen=True)
class Sigstored:
    """A Sigstore bundle that verified: its payload and who signed it, when."""

    payload: bytes
    """The exact DSSE payload bytes the certificate's key signed."""
    identity: str
    issuer: str
    algorithm: str
    """`sigstore-ecdsa-p256` (or -p384/-p521)."""
    fingerprint: str
    """SHA-256 of the signing certificate's DER, hex."""
    log_index: int
    logged_at: datetime | None
    """When the log integrated the entry (its signed entry timestamp verified), else the
    time of the bundle's only RFC 3161 timestamp (verified), else None."""


def _shown(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class _Entry:
    log_id: bytes
    log_index: int
    integrated: datetime | None


def _entry(document: object, where: str) -> _Entry:
    """The log entry fields safeload checks itself, read from the bounded parse."""

    def bad(problem: str) -> MalformedSignatureError:
        return MalformedSignatureError(f"{where}: the Sigstore bundle's log entry {problem}")

    material = document.get("verificationMaterial") if isinstance(document, dict) else None
    entries = material.get("tlogEntries") if isinstance(material, dict) else None
    if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], dict):
        raise bad("is missing: a Sigstore bundle holds exactly one transparency-log entry")
    entry = entries[0]
    log_id = entry.get("logId")
    raw_id = log_id.get("keyId") if isinstance(log_id, dict) else None
    try:
        if not isinstance(raw_id, str):
            raise TypeError
        key_id = base64.b64decode(raw_id, validate=True)
        index = int(str(entry.get("logIndex")), 10)
    except (binascii.Error, ValueError, TypeError):
        raise bad("has no readable logId or logIndex") from None
    integrated: datetime | None = None
    if "inclusionPromise" in entry and entry.get("integratedTime") is not None:
        try:
            integrated = datetime.fromtimestamp(int(str(entry["integratedTime"]), 10), UTC)
        except (ValueError, OverflowError, OSError):
            raise bad("has an unreadable integratedTime") from None
    return _Entry(key_id, index, integrated)


def _verified_times(bundle: Any, entry: _Entry) -> list[datetime]:
    """Every time the verifier relies on: the log's (with its SET) and each RFC 3161
    timestamp's (an untrusted one only makes the window checks stricter)."""
    times = [entry.integrated] if entry.integrated is not None else []
    data = bundle.verification_material.timestamp_verification_data
    if data is not None:
        times += [t.tst_info.gen_time for t in data.rfc3161_timestamps]
    return [t if t.tzinfo is not None else t.replace(tzinfo=UTC) for t in times]


def _check_windows(
    trust: SigstoreTrust, cert: x509.Certificate, entry: _Entry, times: list[datetime], where: str
) -> None:
    """The CA that issued `cert` and the log of `entry` were valid at every verified time."""
    logs = [w for log_id, w in trust.logs if log_id == entry.log_id]
    if not logs:
        raise TransparencyLogError(
            f"{where}: the log entry names log {entry.log_id.hex()[:16]}, which "
            f"{trust.source} does not list; it was not logged by a trusted log"
        )
    for moment in times:
        if not any(w.holds(moment) for w in logs):
            raise TransparencyLogError(
                f"{where}: the log {entry.log_id.hex()[:16]} was not trusted at "
                f"{_shown(moment)} (its key is valid {logs[0].shown()} in {trust.source})"
            )
    # sigstore-python trusts every certificate of a CA's chain as an anchor: the issuer
    # may be any of them.
    issuers = [a for a in trust.authorities if any(_issued_by(cert, c) for c in a.certificates)]
    for moment in times:
        if not any(a.window.holds(moment) for a in issuers):
            shown = issuers[0].window.shown() if issuers else "never"
            raise UntrustedCertificateError(
                f"{where}: the certificate authority that issued the signing certificate was "
                f"not trusted at {_shown(moment)}, when it was logged (valid {shown} in "
                f"{trust.source}); do not trust the model"
            )


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):  # any failure: not this issuer
        return False
    return True


def _refusal(
    exc: Exception, cert: x509.Certificate, times: list[datetime], where: str
) -> Exception:
    """sigstore-python's `VerificationError`, as the `SignatureError` naming its reason."""
    from sigstore.errors import CertValidationError

    detail = str(exc)[:400]
    if isinstance(exc, CertValidationError) or detail.startswith("invalid signing cert"):
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        late = [t for t in times if not start <= t <= end]
        if late:
            return UntrustedCertificateError(
                f"{where}: the signing certificate was valid from {_shown(start)} to "
                f"{_shown(end)}, but the signature was logged at {_shown(late[0])}: it had "
                "expired (or was not yet valid) when it signed; do not trust the model"
            )
        return UntrustedCertificateError(
            f"{where}: the signing certificate does not chain to a Fulcio CA of the trusted "
            f"root at the time it was logged ({detail}); do not trust the model"
        )
    if "SCT" in detail:
        return UntrustedCertificateError(
            f"{where}: the signing certificate has no valid SCT from a CT log of the trusted "
            f"root ({detail}); do not trust the model"
        )
    if detail.startswith(("Key usage", "Extended usage")):
        return UntrustedCertificateError(
            f"{where}: the signing certificate may not sign code ({detail})"
        )
    if detail.startswith("not enough sources of verified time") or "Timestamp Authorit" in detail:
        return TransparencyLogError(
            f"{where}: nothing vouches for when it was signed (no signed entry timestamp "
            "from a trusted log, no timestamp from a trusted authority); do not trust the model"
        )
    if detail.startswith("invalid log entry"):
        if "checkpoint" in detail:
            reason = "its checkpoint is not signed by a log key of the trusted root"
        elif "inclusion proof" in detail:
            reason = "its inclusion proof does not lead to the checkpoint's tree (it is forged)"
        elif "SET" in detail:
            reason = "its signed entry timestamp is not by a log key of the trusted root"
        else:
            reason = "it does not verify"
        return TransparencyLogError(
            f"{where}: the transparency-log entry is not proven: {reason} ({detail}); do not "
            "trust the model"
        )
    if "log entry" in detail:
        return TransparencyLogError(
            f"{where}: the transparency-log entry records another envelope or signer than "
            f"this bundle's ({detail}); do not trust the model"
        )
    if detail.startswith("DSSE"):
        return InvalidSignatureError(
            f"{where}: the envelope's signature does not match its payload under the "
            f"certified key ({detail}); the signature file was altered, do not trust the model"
        )
    return InvalidSignatureError(
        f"{where}: the Sigstore bundle does not verify ({detail}); do not trust the model"
    )


def verify_bundle(data: bytes, trust: SigstoreTrust, where: str) -> Sigstored:
    """Verify the Sigstore bundle `data` (a signature file's bytes, read within the signature
    limits) against `trust`; returns the signed payload. Never touches the network."""
    try:
        from sigstore.errors import Error as SigstoreError
        from sigstore.models import Bundle
        from sigstore.verify import Verifier
    except ImportError:
        raise _sigstore_missing() from None
    try:
        document = _json.loads(data, _json.ENVELOPE_LIMITS)
    except _json.JsonError as exc:
        raise MalformedSignatureError(f"{where} {exc}") from None
    entry = _entry(document, where)
    try:
        bundle = Bundle.from_json(data)
        cert = bundle.signing_certificate
        times = _verified_times(bundle, entry)
    except Exception as exc:  # sigstore's parser on untrusted bytes: never past a verdict
        raise MalformedSignatureError(
            f"{where}: not a valid Sigstore bundle ({type(exc).__name__}: {str(exc)[:300]})"
        ) from None
    try:
        payload_type, payload = Verifier(trusted_root=trust.root).verify_dsse(
            bundle, _Policy(trust, where)
        )
    except SigstoreIdentityError:
        raise
    except SigstoreError as exc:
        raise _refusal(exc, cert, times, where) from None
    except Exception as exc:  # a hostile bundle tripping the verifier: not verified
        raise MalformedSignatureError(
            f"{where}: the Sigstore verifier could not process this bundle "
            f"({type(exc).__name__}: {str(exc)[:300]}); do not trust the model"
        ) from None
    _check_windows(trust, cert, entry, times, where)
    names, issuers = certificate_identities(cert)
    key = cert.public_key()
    curve = key.curve.name if isinstance(key, ec.EllipticCurvePublicKey) else "unknown"
    if payload_type != PAYLOAD_TYPE:
        raise MalformedSignatureError(
            f"{where}: payloadType is {payload_type[:80]!r}, expected {PAYLOAD_TYPE!r}"
        )
    return Sigstored(
        payload=payload,
        identity=trust.identity if trust.identity in names else names[0],
        issuer=issuers[0],
        algorithm=f"sigstore-{_CURVES.get(curve, curve)}",
        fingerprint=hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
        log_index=entry.log_index,
        # The log's time (its SET verified), else a single timestamp's: the verifier
        # needs one verified time, so a lone timestamp is the verified one.
        logged_at=entry.integrated if entry.integrated is not None or len(times) != 1 else times[0],
    )
