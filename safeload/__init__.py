"""safeload: scan, sign and safely load pickle-based ML model files.

>>> import safeload
>>> report = safeload.scan(b"\\x80\\x04K\\x01.")
>>> report.files[0].verdict.value
'safe'
"""

from __future__ import annotations

from .errors import PolicyError, SafeloadError, ScanInputError, SignatureError, UnsafeFileError
from .policy import Policy
from .report import FileReport, Finding, ScanReport, Severity, Verdict
from .scan import scan, scan_bytes, scan_file
from .sign import TrustStore, Verified, dump, load_signer, sign, verify

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
    "TrustStore",
    "UnsafeFileError",
    "Verdict",
    "Verified",
    "__version__",
    "dump",
    "load_signer",
    "scan",
    "scan_bytes",
    "scan_file",
    "sign",
    "verify",
]
