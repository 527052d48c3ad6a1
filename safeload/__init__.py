"""safeload: scan, sign and safely load pickle-based ML model files.

The package has three rooms, each importing only the shared pieces below it:

- `safeload.scan`: judge every pickle a file holds, without running it;
- `safeload.sign`: sign model files and verify signatures;
- `safeload.load`: load verified, allow-listed files (and `dump` at save time).

Shared below them: `safeload.policy` (the one allow/deny decision),
`safeload.report`, `safeload.errors`, and the private `_formats` (the locator:
which bytes a loader would deserialize), `_machine` (the symbolic pickle
machine) and `_names` (how the unpickler resolves a global's name).

>>> import safeload
>>> report = safeload.scan(b"\\x80\\x04K\\x01.")
>>> report.files[0].verdict.value
'safe'
"""

from __future__ import annotations

from .errors import (
    PolicyError,
    SafeloadError,
    ScanInputError,
    SignatureError,
    UnsafeFileError,
    UnsupportedFormatError,
)
from .load import UnsignedLoadWarning, allowed_globals, dump, guard, load, loads
from .policy import Policy
from .report import FileReport, Finding, ScanReport, Severity, Verdict
from .scan import scan, scan_bytes, scan_file, scan_many
from .sign import SigstoreTrust, TrustStore, Verified, load_signer, sign, verify

__version__ = "0.1.0"

__all__ = [
    "FileReport",
    "Finding",
    "Policy",
    "PolicyError",
    "SafeloadError",
    "ScanInputError",
    "ScanReport",
    "Severity",
    "SignatureError",
    "SigstoreTrust",
    "TrustStore",
    "UnsafeFileError",
    "UnsignedLoadWarning",
    "UnsupportedFormatError",
    "Verdict",
    "Verified",
    "__version__",
    "allowed_globals",
    "dump",
    "guard",
    "load",
    "load_signer",
    "loads",
    "scan",
    "scan_bytes",
    "scan_file",
    "scan_many",
    "sign",
    "verify",
]
