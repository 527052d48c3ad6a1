"""Public scanning API: `scan(path_or_bytes, policy=None) -> ScanReport`.

Nothing named in a scanned file is ever imported or called: the analysis is
a symbolic walk over the opcodes (see `safeload._machine.walker`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._machine.walker import DEFAULT_MAX_OPCODES
from ..errors import ScanInputError
from ..policy import Policy
from ..report import ScanReport
from ._batch import scan_paths
from ._core import default_policy, scan_bytes, scan_file

if TYPE_CHECKING:
    from ._dask import BatchProgress, BatchSummary, scan_many


def __getattr__(name: str) -> Any:
    # The Dask engine (and its JSON Lines and metadata imports) loads only when
    # asked for: `safeload scan` on a few files must start fast (a hook's cost).
    if name in ("BatchProgress", "BatchSummary", "scan_many"):
        from . import _dask

        return getattr(_dask, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_MAX_OPCODES",
    "BatchProgress",
    "BatchSummary",
    "default_policy",
    "scan",
    "scan_bytes",
    "scan_file",
    "scan_many",
]


def scan(
    target: str | os.PathLike[str] | bytes | bytearray | memoryview,
    policy: Policy | None = None,
    *,
    max_opcodes: int = DEFAULT_MAX_OPCODES,
    jobs: int = 1,
    timeout: float | None = None,
) -> ScanReport:
    """Scan a file, a directory (recursively), an in-memory buffer or a URL.

    A URL (`s3://`, `gs://`, `az://`, `hf://`, `http(s)://`, `file://`: any
    fsspec URL; `pip install 'safeload[remote]'`) is read in ranges: only the
    bytes the scan reads are fetched (`FileReport.fetched`). A directory-like
    URL (a bucket prefix, a repository) is listed and scanned recursively.

    Returns data and never prints. A path that cannot be read raises
    `ScanInputError`; everything else, however malformed, is a verdict (a scan
    that fails on a bug is `invalid`, SL312). With `timeout`, each file is
    scanned in a worker process and one that takes longer is `invalid`
    (SL303); buffers are scanned in this process.
    """
    policy = policy or default_policy()
    if isinstance(target, str) and "://" in target:
        from ._remote import scan_target

        return scan_target(target, policy, max_opcodes=max_opcodes)
    if isinstance(target, bytes | bytearray | memoryview):
        return ScanReport(files=(scan_bytes(bytes(target), policy, max_opcodes=max_opcodes),))
    path = Path(target)
    if path.is_dir():
        return scan_paths([path], policy, max_opcodes=max_opcodes, jobs=jobs, timeout=timeout)
    if timeout is not None:
        report = scan_paths([path], policy, max_opcodes=max_opcodes, timeout=timeout)
        for where, reason in report.errors.items():
            raise ScanInputError(f"{where}: {reason}")
        return report
    return ScanReport(files=(scan_file(path, policy, max_opcodes=max_opcodes),))
