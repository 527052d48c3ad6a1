"""Signature failures, one class per reason; public through `safeload.sign`.

They live in a private module so that the key, envelope and manifest helpers
can raise them without importing `safeload.sign` (which imports them).
Every message names the file involved and says what to do about it.
"""

from __future__ import annotations

from .errors import SafeloadError, SignatureError

__all__ = [
    "DigestMismatchError",
    "InvalidSignatureError",
    "KeyFileError",
    "MalformedSignatureError",
    "MissingFileError",
    "MissingSignatureError",
    "SigningError",
    "SubjectMismatchError",
    "UnknownKeyError",
    "UnsignedFileError",
    "UnsupportedSignatureError",
]


class MissingSignatureError(SignatureError):
    """There is no signature file where one was expected."""


class MalformedSignatureError(SignatureError):
    """The signature file is not a DSSE envelope or bundle safeload can read.

    Covers truncated or non-JSON files, bad base64, an HMAC tag of the wrong
    length, and a signed statement that is not a valid model-signing manifest.
    """


class UnsupportedSignatureError(SignatureError):
    """A well-formed signature of a kind safeload does not verify itself
    (Sigstore keyless or certificate bundles, legacy predicates, BLAKE3)."""


class UnknownKeyError(SignatureError):
    """The signature was made with a key that is not in the trust store."""


class InvalidSignatureError(SignatureError):
    """A trusted key's signature does not match the signed payload: the payload
    or the signature was altered, or the key is wrong."""


class DigestMismatchError(SignatureError):
    """A file's content differs from the digest recorded in the signature."""


class SubjectMismatchError(DigestMismatchError):
    """The signature belongs to another artifact (it was copied or moved)."""


class MissingFileError(SignatureError):
    """A file listed in the signature is missing from the model."""


class UnsignedFileError(SignatureError):
    """The model holds a file (or link) that the signature does not list."""


class KeyFileError(SafeloadError):
    """A key file or key variable is unreadable or malformed, or the trust
    store is empty. A usage error, not a verification failure."""


class SigningError(SafeloadError):
    """The model cannot be signed as asked (links in it, nothing to sign, ...)."""
