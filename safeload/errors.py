"""The exception hierarchy: one root, one subclass per kind of failure.

Findings from `safeload.scan` are data, not exceptions; only operations that
must refuse (loading, verifying, reading policy) raise.
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


class SignatureError(SafeloadError):
    """Root of signature failures: `verify()` raises a subclass, never returns False."""
