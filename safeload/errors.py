"""The exception hierarchy: one root, one subclass per kind of failure.

Findings from `safeload.scan` are data, not exceptions; only operations that
must refuse (loading, verifying, reading policy) raise. Every message names
the file involved and says what to do about it.

```
SafeloadError
 +-- PolicyError
 +-- ScanInputError
 +-- UnsafeFileError
 +-- UnsupportedFormatError
 +-- KeyFileError
 +-- SigningError
 +-- SignatureError
      +-- MissingSignatureError, MalformedSignatureError,
      +-- UnsupportedSignatureError, UnknownKeyError, InvalidSignatureError,
      +-- MissingFileError, UnsignedFileError,
      +-- DigestMismatchError
           +-- SubjectMismatchError
```
"""

from __future__ import annotations


class SafeloadError(Exception):
    """Root of every error safeload raises on purpose."""

    def diagnostics(self) -> str:
        """Human-friendly text for the CLI; defaults to the message."""
        return str(self)


class PolicyError(SafeloadError):
    """A rule file, allow pack or `[tool.safeload]` table is malformed."""


class ScanInputError(SafeloadError):
    """The thing to scan cannot be read at all (missing file, permission)."""


class UnsafeFileError(SafeloadError):
    """A file was refused because its scan verdict is not `safe`."""


class UnsupportedFormatError(SafeloadError):
    """The bytes are in no format the guarded loader can deserialize."""


class SignatureError(SafeloadError):
    """Root of signature failures: `verify()` raises a subclass, never returns False."""


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
