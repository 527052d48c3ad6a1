"""The exception hierarchy: one root, one subclass per kind of failure.

Findings from `safeload.scan` are data, not exceptions; only operations that
must refuse (loading, verifying, reading policy) raise. Every message names
the file involved and says what to do about it.

```
SafeloadError
 +-- PolicyError
 +-- ScanInputError
 +-- UnsafeFileError
 +-- LoadInputError
 +-- UnsupportedFormatError
 +-- KeyFileError
 +-- SigningError
 +-- SignatureError
      +-- MissingSignatureError, MalformedSignatureError,
      +-- UnsupportedSignatureError, UnknownKeyError, InvalidSignatureError,
      |    UnknownKeyError: SigstoreIdentityError, UntrustedCertificateError
      |    InvalidSignatureError: TransparencyLogError
      +-- MissingFileError, UnsignedFileError,
      +-- DigestMismatchError
           +-- SubjectMismatchError
```
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .report import Finding


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
    """A file was refused because its scan verdict is not `safe`, or because
    the restricted unpickler met a global or construct the policy refuses.

    `findings` says why, as the scanner reports it: each names the rule ID,
    the global (when there is one), where it is and the fix.
    """

    def __init__(
        self, message: str, *, path: str | None = None, findings: Iterable[Finding] = ()
    ) -> None:
        super().__init__(message)
        self.path = path
        """The file (and member) refused, when known."""
        self.findings: tuple[Finding, ...] = tuple(findings)

    @property
    def rule(self) -> str | None:
        """The rule ID of the first finding (e.g. `SL101`), if any."""
        return self.findings[0].rule if self.findings else None

    @property
    def global_name(self) -> str | None:
        """The fully qualified global of the first finding, if it names one."""
        return self.findings[0].global_name if self.findings else None

    def diagnostics(self) -> str:
        """The message, then one line per further finding."""
        lines = [str(self)]
        for f in self.findings[1:]:
            what = f" {f.global_name}" if f.global_name else ""
            lines.append(f"  {f.location}: {f.rule} {f.rule_name}{what}: {f.message}")
        return "\n".join(lines)


class LoadInputError(SafeloadError):
    """The file to load cannot be opened as a regular file (missing, a symlink, a FIFO,
    a device): the guarded loader refuses it before reading anything."""


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
    """A well-formed signature of a kind safeload does not verify (legacy predicates,
    BLAKE3), or not with the trust given (a Sigstore bundle, and no Sigstore trust)."""


class UnknownKeyError(SignatureError):
    """The signature was made with a key that is not in the trust store."""


class InvalidSignatureError(SignatureError):
    """A trusted key's signature does not match the signed payload: the payload
    or the signature was altered, or the key is wrong."""


class SigstoreIdentityError(UnknownKeyError):
    """A Sigstore bundle's certificate names another identity or OIDC issuer than the
    expected ones: someone else signed."""


class UntrustedCertificateError(UnknownKeyError):
    """A Sigstore signing certificate does not chain to a trusted Fulcio CA at the time
    it was logged (expired then, or another CA), or has no valid SCT from a trusted
    CT log."""


class TransparencyLogError(InvalidSignatureError):
    """A Sigstore bundle's transparency-log entry does not prove this signature was
    logged: a forged inclusion proof, a checkpoint or signed entry timestamp not by a
    trusted log, or an entry recording another envelope."""


class DigestMismatchError(SignatureError):
    """A file's content differs from the digest recorded in the signature."""


class SubjectMismatchError(DigestMismatchError):
    """The signature belongs to another artifact (it was copied or moved)."""


class MissingFileError(SignatureError):
    """A file listed in the signature is missing from the model."""


class UnsignedFileError(SignatureError):
    """The model holds a file (or link) that the signature does not list."""


class UnexpectedVersionError(SignatureError):
    """A valid signature of another version than the one pinned: its digest is
    not the expected one, or it was made before the minimum signing time."""


class KeyFileError(SafeloadError):
    """A key file or key variable is unreadable or malformed, or the trust
    store is empty. A usage error, not a verification failure."""


class SigningError(SafeloadError):
    """The model cannot be signed as asked (links in it, nothing to sign, ...)."""
