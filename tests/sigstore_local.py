"""A complete local Sigstore, made in the test run with `cryptography`, for offline tests.

Nothing here talks to a network. It plays every Sigstore service:

* **Fulcio**: a root CA and an intermediate issue a short-lived leaf certificate
  with the extensions Fulcio writes (the identity as a critical SAN, the OIDC
  issuer in OIDs 1.3.6.1.4.1.57264.1.1 and .8, code signing) and an embedded
  SCT: a precertificate timestamp that a CT log key signs (RFC 6962 §3.2).
* **Rekor** (v1): a `dsse` 0.0.1 entry for the envelope, appended to a Merkle
  tree of other entries (RFC 6962 hashing), its inclusion proof, a checkpoint
  over the tree's root in the signed-note format, and the signed entry
  timestamp (SET) over the entry's canonical JSON (RFC 8785).
* **trusted_root.json**: the CA chain, the log and CT keys with their log IDs
  and validity windows, as the public Sigstore's TUF repository publishes it.

`LocalSigstore.sign(statement)` returns bundle bytes shaped as
`model_signing sign sigstore` writes them (a Sigstore bundle v0.3 with a DSSE
envelope). Every piece can be altered through its keyword arguments, so tests
build exactly the broken bundle they need.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
SCT_LIST = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
PAYLOAD_TYPE = "application/vnd.in-toto+json"
IDENTITY = "alice@example.com"
ISSUER = "https://accounts.example.com"
ORIGIN = "rekor.test.invalid - 1234567890"


def _name(common: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sigstore.test"),
            x509.NameAttribute(NameOID.COMMON_NAME, common),
        ]
    )


def _usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
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


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def log_id(key: ec.EllipticCurvePublicKey) -> bytes:
    """RFC 6962 key ID: SHA-256 of the DER SubjectPublicKeyInfo."""
    return hashlib.sha256(spki(key)).digest()


def pae(payload: bytes) -> bytes:
    kind = PAYLOAD_TYPE.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


# -- RFC 6962 Merkle tree ----------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (RFC 6962 §2.1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def tree_root(leaves: list[bytes]) -> bytes:
    """MTH over leaf hashes."""
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(tree_root(leaves[:k]), tree_root(leaves[k:]))


def inclusion_path(index: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 6962 §2.1.1, bottom-up."""
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*inclusion_path(index, leaves[:k]), tree_root(leaves[k:])]
    return [*inclusion_path(index - k, leaves[k:]), tree_root(leaves[:k])]


# -- SCT (RFC 6962 §3.2) ------------------------------------------------------------


def _u24(data: bytes) -> bytes:
    return struct.pack("!I", len(data))[1:] + data


def _u16(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def sct_list(
    ct_key: ec.EllipticCurvePrivateKey,
    issuer_key: ec.EllipticCurvePublicKey,
    tbs: bytes,
    when: datetime,
) -> bytes:
    """The embedded SCT list extension value (DER OCTET STRING of the TLS list) for a
    precertificate whose TBS (without this extension) is `tbs`."""
    millis = int(when.timestamp() * 1000)
    issuer_hash = hashlib.sha256(spki(issuer_key)).digest()
    signed = struct.pack("!BBQH", 0, 0, millis, 1) + issuer_hash + _u24(tbs) + _u16(b"")
    signature = ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
    sct = (
        b"\x00"
        + log_id(ct_key.public_key())
        + struct.pack("!Q", millis)
        + _u16(b"")
        + bytes([4, 3])  # sha256, ecdsa
        + _u16(signature)
    )
    return _der(0x04, _u16(_u16(sct)))


def _der(tag: int, content: bytes) -> bytes:
    """A DER TLV (definite length)."""
    if len(content) < 0x80:
        return bytes([tag, len(content)]) + content
    size = len(content).to_bytes((len(content).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _der_utf8(text: str) -> bytes:
    return _der(0x0C, text.encode())


def _ski(key: ec.EllipticCurvePublicKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key)


def _aki(key: ec.EllipticCurvePublicKey) -> x509.AuthorityKeyIdentifier:
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(key)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class LocalSigstore:
    """One local Sigstore instance: keys, CA, log, and the entries logged so far."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    root_key: ec.EllipticCurvePrivateKey = field(default_factory=_key)
    fulcio_key: ec.EllipticCurvePrivateKey = field(default_factory=_key)
    log_key: ec.EllipticCurvePrivateKey = field(default_factory=_key)
    ct_key: ec.EllipticCurvePrivateKey = field(default_factory=_key)
    others: int = 6
    """Entries already in the log before ours (so the proof has a real path)."""

    def __post_init__(self) -> None:
        start = self.now - timedelta(days=365)
        end = self.now + timedelta(days=365)
        self.root = self._ca("sigstore-test root", self.root_key, None, start, end)
        self.fulcio = self._ca(
            "sigstore-test intermediate", self.fulcio_key, self.root_key, start, end
        )

    def _ca(
        self,
        common: str,
        key: ec.EllipticCurvePrivateKey,
        parent: ec.EllipticCurvePrivateKey | None,
        start: datetime,
        end: datetime,
    ) -> x509.Certificate:
        issuer_name = _name("sigstore-test root") if parent is not None else _name(common)
        signer = parent if parent is not None else key
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common))
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(
                x509.BasicConstraints(ca=True, path_length=None if parent is None else 0),
                critical=True,
            )
            .add_extension(_usage(sign=False, ca=True), critical=True)
            .add_extension(_ski(key.public_key()), critical=False)
            .add_extension(_aki(signer.public_key()), critical=False)
        )
        if parent is not None:  # Fulcio's intermediate says code signing, as the real one
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    # -- Fulcio ---------------------------------------------------------------------

    def leaf(
        self,
        key: ec.EllipticCurvePrivateKey,
        *,
        identity: str = IDENTITY,
        issuer: str = ISSUER,
        issued: datetime | None = None,
        lifetime: timedelta = timedelta(minutes=10),
        uri: bool = False,
        issuer_v1: str | None = None,
        sct: bool = True,
        ct_key: ec.EllipticCurvePrivateKey | None = None,
        by_root: bool = False,
    ) -> x509.Certificate:
        """A Fulcio-style leaf for `key`: valid from `issued` (default: 5 minutes before
        `now`) for `lifetime`, SCT embedded; issued by the intermediate, or the root."""
        ca, signer = (self.root, self.root_key) if by_root else (self.fulcio, self.fulcio_key)
        start = issued if issued is not None else self.now - timedelta(minutes=5)
        san: x509.GeneralName = (
            x509.UniformResourceIdentifier(identity) if uri else x509.RFC822Name(identity)
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + lifetime)
            .add_extension(_usage(sign=True, ca=False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
            )
            .add_extension(_ski(key.public_key()), critical=False)
            .add_extension(_aki(signer.public_key()), critical=False)
            .add_extension(x509.SubjectAlternativeName([san]), critical=True)
            .add_extension(
                x509.UnrecognizedExtension(
                    ISSUER_V1, (issuer_v1 if issuer_v1 is not None else issuer).encode()
                ),
                critical=False,
            )
            .add_extension(x509.UnrecognizedExtension(ISSUER_V2, _der_utf8(issuer)), critical=False)
        )
        if not sct:
            return builder.sign(signer, hashes.SHA256())
        precert = builder.sign(signer, hashes.SHA256())
        value = sct_list(
            ct_key if ct_key is not None else self.ct_key,
            signer.public_key(),
            precert.tbs_certificate_bytes,
            start,
        )
        final = builder.add_extension(
            x509.UnrecognizedExtension(SCT_LIST, value), critical=False
        ).sign(signer, hashes.SHA256())
        assert final.tbs_precertificate_bytes == precert.tbs_certificate_bytes
        return final

    # -- Rekor ----------------------------------------------------------------------

    @staticmethod
    def dsse_body(
        payload: bytes, envelope: dict[str, Any], signature: bytes, cert: x509.Certificate
    ) -> bytes:
        """The canonical `dsse` 0.0.1 entry body Rekor v1 stores for an envelope."""
        body = {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(
                        json.dumps(envelope, separators=(",", ":")).encode()
                    ).hexdigest(),
                },
                "payloadHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(payload).hexdigest(),
                },
                "signatures": [
                    {
                        "signature": b64(signature),
                        "verifier": b64(cert.public_bytes(serialization.Encoding.PEM)),
                    }
                ],
            },
        }
        return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()

    def checkpoint(
        self, size: int, root: bytes, key: ec.EllipticCurvePrivateKey | None = None
    ) -> str:
        """A signed note over the tree head (transparency-dev checkpoint format)."""
        signer = key if key is not None else self.log_key
        note = f"{ORIGIN}\n{size}\n{b64(root)}\n"
        signature = signer.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        hint = log_id(signer.public_key())[:4]
        return f"{note}\n\u2014 {ORIGIN.split()[0]} {b64(hint + signature)}\n"

    def set_signature(
        self,
        body: bytes,
        integrated: int,
        index: int,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> bytes:
        """The signed entry timestamp: the log's signature over the entry's RFC 8785 JSON."""
        signer = key if key is not None else self.log_key
        canonical = json.dumps(
            {
                "body": b64(body),
                "integratedTime": integrated,
                "logID": log_id(self.log_key.public_key()).hex(),
                "logIndex": index,
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
        return signer.sign(canonical, ec.ECDSA(hashes.SHA256()))

    def entry(
        self,
        body: bytes,
        *,
        integrated: datetime | None = None,
        checkpoint_key: ec.EllipticCurvePrivateKey | None = None,
        set_key: ec.EllipticCurvePrivateKey | None = None,
        promise: bool = True,
        proof: Callable[[list[bytes]], list[bytes]] | None = None,
    ) -> dict[str, Any]:
        """Log `body` after `others` entries; the bundle's `tlogEntries[0]`."""
        leaves = [leaf_hash(f"other entry {i}".encode()) for i in range(self.others)]
        index = len(leaves)
        leaves.append(leaf_hash(body))
        leaves.append(leaf_hash(b"a later entry"))
        root = tree_root(leaves)
        path = inclusion_path(index, leaves)
        if proof is not None:
            path = proof(path)
        when = int((integrated if integrated is not None else self.now).timestamp())
        found: dict[str, Any] = {
            "logIndex": str(index),
            "logId": {"keyId": b64(log_id(self.log_key.public_key()))},
            "kindVersion": {"kind": "dsse", "version": "0.0.1"},
            "integratedTime": str(when),
            "inclusionProof": {
                "logIndex": str(index),
                "rootHash": b64(root),
                "treeSize": str(len(leaves)),
                "hashes": [b64(h) for h in path],
                "checkpoint": {"envelope": self.checkpoint(len(leaves), root, checkpoint_key)},
            },
            "canonicalizedBody": b64(body),
        }
        if promise:
            found["inclusionPromise"] = {
                "signedEntryTimestamp": b64(self.set_signature(body, when, index, set_key))
            }
        return found

    # -- the bundle -----------------------------------------------------------------

    def sign(
        self,
        statement: bytes,
        *,
        key: ec.EllipticCurvePrivateKey | None = None,
        cert: x509.Certificate | None = None,
        logged: bytes | None = None,
        logged_cert: x509.Certificate | None = None,
        stamps: Sequence[tuple[LocalTsa, datetime]] = (),
        **entry: Any,
    ) -> bytes:
        """A model-signing Sigstore bundle for `statement` (the in-toto statement bytes).

        `logged` puts another payload's entry in the log instead of this one's,
        `logged_cert` an entry naming another certificate;
        `stamps` adds an RFC 3161 timestamp of the signature per (authority, time);
        `entry` keywords go to `entry()`.
        """
        key = key if key is not None else _key()
        cert = cert if cert is not None else self.leaf(key)
        signature = key.sign(pae(statement), ec.ECDSA(hashes.SHA256()))
        envelope = {
            "payload": b64(statement),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": b64(signature)}],
        }
        if logged is not None:
            other = key.sign(pae(logged), ec.ECDSA(hashes.SHA256()))
            other_envelope = {
                **envelope,
                "payload": b64(logged),
                "signatures": [{"sig": b64(other)}],
            }
            body = self.dsse_body(logged, other_envelope, other, cert)
        else:
            body = self.dsse_body(statement, envelope, signature, logged_cert or cert)
        bundle = {
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {
                "certificate": {"rawBytes": b64(cert.public_bytes(serialization.Encoding.DER))},
                "tlogEntries": [self.entry(body, **entry)],
                "timestampVerificationData": {
                    "rfc3161Timestamps": [
                        {"signedTimestamp": b64(tsa.stamp(signature, when))} for tsa, when in stamps
                    ]
                },
            },
            "dsseEnvelope": envelope,
        }
        return json.dumps(bundle, indent=2).encode()

    def trusted_root(
        self,
        *,
        ca_window: tuple[datetime, datetime | None] | None = None,
        log_window: tuple[datetime, datetime | None] | None = None,
        tsa: LocalTsa | None = None,
    ) -> dict[str, Any]:
        """trusted_root.json for this instance (the shape of the public Sigstore's)."""
        start = self.now - timedelta(days=365)

        def window(given: tuple[datetime, datetime | None] | None) -> dict[str, str]:
            begin, end = given if given is not None else (start, None)
            found = {"start": _time(begin)}
            if end is not None:
                found["end"] = _time(end)
            return found

        def log(key: ec.EllipticCurvePrivateKey, url: str, valid: dict[str, str]) -> dict[str, Any]:
            return {
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": b64(spki(key.public_key())),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": valid,
                },
                "logId": {"keyId": b64(log_id(key.public_key()))},
            }

        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(self.log_key, "https://rekor.test.invalid", window(log_window))],
            "certificateAuthorities": [
                {
                    "subject": {"organization": "sigstore.test", "commonName": "sigstore-test"},
                    "uri": "https://fulcio.test.invalid",
                    "certChain": {
                        "certificates": [
                            {"rawBytes": b64(c.public_bytes(serialization.Encoding.DER))}
                            for c in (self.fulcio, self.root)
                        ]
                    },
                    "validFor": window(ca_window),
                }
            ],
            "ctlogs": [log(self.ct_key, "https://ctfe.test.invalid", window(None))],
            "timestampAuthorities": [tsa.authority()] if tsa is not None else [],
        }


# -- an RFC 3161 timestamp authority ---------------------------------------------------


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytes([parts[0] * 40 + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.append(0x80 | (part & 0x7F))
            part >>= 7
        body += bytes(reversed(chunk))
    return _der(0x06, body)


def _int(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def _seq(*items: bytes) -> bytes:
    return _der(0x30, b"".join(items))


def _set(*items: bytes) -> bytes:
    return _der(0x31, b"".join(sorted(items)))  # DER: a SET OF is sorted


SHA256 = _seq(_oid("2.16.840.1.101.3.4.2.1"))
TST_INFO = "1.2.840.113549.1.9.16.1.4"


@dataclass
class LocalTsa:
    """A timestamp authority: a root and a TSA certificate (critical EKU timeStamping)."""

    now: datetime
    root_key: ec.EllipticCurvePrivateKey = field(default_factory=_key)
    key: ec.EllipticCurvePrivateKey = field(default_factory=_key)

    def __post_init__(self) -> None:
        start, end = self.now - timedelta(days=365), self.now + timedelta(days=365)
        name = _name("tsa-test root")
        self.root = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_usage(sign=False, ca=True), critical=True)
            .add_extension(_ski(self.root_key.public_key()), critical=False)
            .sign(self.root_key, hashes.SHA256())
        )
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name("tsa-test timestamping"))
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(sign=True, ca=False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
            )
            .add_extension(_ski(self.key.public_key()), critical=False)
            .add_extension(_aki(self.root_key.public_key()), critical=False)
            .sign(self.root_key, hashes.SHA256())
        )

    def stamp(self, message: bytes, when: datetime) -> bytes:
        """A granted TimeStampResp over SHA-256(`message`) at `when` (DER)."""
        tst_info = _seq(
            _int(1),
            _oid("1.3.6.1.4.1.57264.2"),
            _seq(SHA256, _der(0x04, hashlib.sha256(message).digest())),
            _int(x509.random_serial_number()),
            _der(0x18, when.astimezone(UTC).strftime("%Y%m%d%H%M%SZ").encode()),
        )
        cert_der = self.cert.public_bytes(serialization.Encoding.DER)
        attributes = [
            _seq(_oid("1.2.840.113549.1.9.3"), _set(_oid(TST_INFO))),
            _seq(
                _oid("1.2.840.113549.1.9.4"),
                _set(_der(0x04, hashlib.sha256(tst_info).digest())),
            ),
            _seq(
                _oid("1.2.840.113549.1.9.16.2.47"),
                _set(_seq(_seq(_seq(_der(0x04, hashlib.sha256(cert_der).digest()))))),
            ),
        ]
        signed = _set(*attributes)
        signature = self.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        issuer = self.cert.issuer.public_bytes()
        signer_info = _seq(
            _int(1),
            _seq(issuer, _int(self.cert.serial_number)),
            SHA256,
            b"\xa0" + signed[1:],  # [0] IMPLICIT SET OF Attribute
            _seq(_oid("1.2.840.10045.4.3.2")),
            _der(0x04, signature),
        )
        signed_data = _seq(
            _int(3),
            _set(SHA256),
            _seq(_oid(TST_INFO), _der(0xA0, _der(0x04, tst_info))),
            _der(0xA0, cert_der),
            _set(signer_info),
        )
        token = _seq(_oid("1.2.840.113549.1.7.2"), _der(0xA0, signed_data))
        return _seq(_seq(_int(0)), token)

    def authority(self) -> dict[str, Any]:
        """The trusted root's `timestampAuthorities` entry."""
        return {
            "subject": {"organization": "sigstore.test", "commonName": "tsa-test"},
            "uri": "https://tsa.test.invalid",
            "certChain": {
                "certificates": [
                    {"rawBytes": b64(c.public_bytes(serialization.Encoding.DER))}
                    for c in (self.cert, self.root)
                ]
            },
            "validFor": {"start": _time(self.now - timedelta(days=365))},
        }
