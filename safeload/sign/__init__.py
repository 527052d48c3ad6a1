"""Cryptographic signatures for model files and directories (OpenSSF model-signing format).

>>> from safeload.sign import sign, verify, load_signer, TrustStore  # doctest: +SKIP
>>> sign("model.joblib", load_signer("team.key"))                        # doctest: +SKIP
>>> verify("model.joblib", TrustStore.load(keys=["team.key.pub"]))        # doctest: +SKIP

A signature is a detached sidecar, `<artifact>.sig` (for a directory `DIR`,
`DIR.sig` beside it). Its payload is the model-signing in-toto statement
(one SHA-256 per file) inside a DSSE envelope:

* **ECDSA P-256** and **Ed25519** in the OpenSSF "key" bundle shape. ECDSA
  signatures verify with `model_signing verify key`; Ed25519 ones only with
  safeload (model-signing 1.1.1 cannot verify Ed25519).
* A key with a certificate (`certify`) writes model-signing's "certificate"
  bundle, verified through its chain up to a trusted CA.
* A Sigstore (keyless) bundle of `model_signing sign sigstore` verifies
  offline against a Sigstore trusted root and the expected signer:
  `TrustStore(sigstore=SigstoreTrust.load("trusted_root.json", identity=...,
  issuer=...))`. safeload does not sign with Sigstore.
* **HMAC-SHA256** in a bare DSSE envelope with `keyid: "hmac-sha256:<kid>"`,
  safeload-only, for a single team or CI: whoever can verify can also sign.

`verify` raises a `SignatureError` subclass for every failure and never
returns False. A loader that holds a file's bytes in memory verifies those
bytes instead: `locate_signature`, `read_signature`, `authenticate`, then
`Authenticated.check_bytes` (or `start_check`, hashing beside the parser).
"""

from __future__ import annotations

from ..errors import (
    DigestMismatchError,
    InvalidSignatureError,
    KeyFileError,
    MalformedSignatureError,
    MissingFileError,
    MissingSignatureError,
    SignatureError,
    SigningError,
    SigstoreIdentityError,
    SubjectMismatchError,
    TransparencyLogError,
    UnexpectedVersionError,
    UnknownKeyError,
    UnsignedFileError,
    UnsupportedSignatureError,
    UntrustedCertificateError,
)
from ._bytes import PendingCheck
from ._keys import (
    EcdsaSigner,
    Ed25519Signer,
    HmacKey,
    HmacSigner,
    KeyInfo,
    KeyType,
    KeyWarning,
    PublicKey,
    Signer,
    TrustStore,
    certify,
    generate_key,
    hmac_keys_from_env,
    load_signer,
)
from ._paths import SignatureLocation, locate_signature, signature_path
from ._signing import envelope_for_file, sign
from ._sigstore import SigstoreTrust
from ._statement import Resource, Statement
from ._verify import (
    MAX_SIGNATURE_FILE,
    Authenticated,
    Verified,
    authenticate,
    read_signature,
    verify,
)

__all__ = [
    "MAX_SIGNATURE_FILE",
    "Authenticated",
    "DigestMismatchError",
    "EcdsaSigner",
    "Ed25519Signer",
    "HmacKey",
    "HmacSigner",
    "InvalidSignatureError",
    "KeyFileError",
    "KeyInfo",
    "KeyType",
    "KeyWarning",
    "MalformedSignatureError",
    "MissingFileError",
    "MissingSignatureError",
    "PendingCheck",
    "PublicKey",
    "Resource",
    "SignatureError",
    "SignatureLocation",
    "Signer",
    "SigningError",
    "SigstoreIdentityError",
    "SigstoreTrust",
    "Statement",
    "SubjectMismatchError",
    "TransparencyLogError",
    "TrustStore",
    "UnexpectedVersionError",
    "UnknownKeyError",
    "UnsignedFileError",
    "UnsupportedSignatureError",
    "UntrustedCertificateError",
    "Verified",
    "authenticate",
    "certify",
    "envelope_for_file",
    "generate_key",
    "hmac_keys_from_env",
    "load_signer",
    "locate_signature",
    "read_signature",
    "sign",
    "signature_path",
    "verify",
]
