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

import importlib
import sys
import types
from typing import TYPE_CHECKING

from .errors import (
    PolicyError,
    SafeloadError,
    ScanInputError,
    SignatureError,
    UnsafeFileError,
    UnsupportedFormatError,
)

if TYPE_CHECKING:
    from .load import UnsignedLoadWarning, allowed_globals, dump, guard, load, loads
    from .policy import Policy
    from .report import FileReport, Finding, ScanReport, Severity, Verdict
    from .scan import scan, scan_bytes, scan_file, scan_many
    from .sign import SigstoreTrust, TrustStore, Verified, load_signer, sign, verify

__version__ = "0.1.0"

#: The public names each room provides, imported on first use: `safeload scan`
#: never imports the loader, nor signing and its `cryptography`.
_LAZY: dict[str, str] = {
    **dict.fromkeys(
        ("UnsignedLoadWarning", "allowed_globals", "dump", "guard", "load", "loads"), "load"
    ),
    "Policy": "policy",
    **dict.fromkeys(("FileReport", "Finding", "ScanReport", "Severity", "Verdict"), "report"),
    **dict.fromkeys(("scan", "scan_bytes", "scan_file", "scan_many"), "scan"),
    **dict.fromkeys(
        ("SigstoreTrust", "TrustStore", "Verified", "load_signer", "sign", "verify"), "sign"
    ),
}


def __getattr__(name: str) -> object:
    room = _LAZY.get(name)
    if room is not None:
        value = getattr(importlib.import_module(f".{room}", __name__), name)
        globals()[name] = value
        return value
    if not name.startswith("__"):
        # A submodule (`safeload.policy`, `safeload.report`...), as attributes of the
        # package they were when it imported them all.
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


class _Package(types.ModuleType):
    """`safeload.scan`, `.load` and `.sign` name functions, as they always did.

    Importing a subpackage sets the attribute of the same name on its parent
    to the module; these three stay the functions (the subpackages are in
    `sys.modules` for `from safeload.scan import ...`).
    """

    def __setattr__(self, name: str, value: object) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

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
