"""Public scanning API: `scan(path_or_bytes, policy=None) -> ScanReport`.

Nothing named in a scanned file is ever imported or called: the analysis is
a symbolic walk over the opcodes (see `safeload._walker`).
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ._findings import verdict_of
from ._formats import Ctx, scan_blob
from ._walker import DEFAULT_MAX_OPCODES
from .errors import ScanInputError
from .policy import Policy
from .report import FileReport, ScanReport

__all__ = ["DEFAULT_MAX_OPCODES", "scan", "scan_bytes", "scan_file"]

_default_policy: Policy | None = None


def default_policy() -> Policy:
    """The built-in policy, loaded once."""
    global _default_policy
    if _default_policy is None:
        _default_policy = Policy.default()
    return _default_policy


def scan(
    target: str | os.PathLike[str] | bytes | bytearray | memoryview,
    policy: Policy | None = None,
    *,
    max_opcodes: int = DEFAULT_MAX_OPCODES,
    jobs: int = 1,
) -> ScanReport:
    """Scan a file, a directory (recursively) or an in-memory buffer.

    Returns data and never prints. A path that cannot be read raises
    `ScanInputError`; everything else, however malformed, is a verdict.
    """
    policy = policy or default_policy()
    if isinstance(target, bytes | bytearray | memoryview):
        return ScanReport(files=(scan_bytes(bytes(target), policy, max_opcodes=max_opcodes),))
    path = Path(target)
    if path.is_dir():
        from ._batch import scan_paths

        return scan_paths([path], policy, max_opcodes=max_opcodes, jobs=jobs)
    return ScanReport(files=(scan_file(path, policy, max_opcodes=max_opcodes),))


def scan_bytes(
    data: bytes,
    policy: Policy | None = None,
    *,
    location: str = "<bytes>",
    max_opcodes: int = DEFAULT_MAX_OPCODES,
) -> FileReport:
    """Scan one in-memory file."""
    policy = policy or default_policy()
    return _scan_data(data, len(data), policy, location, max_opcodes)


def scan_file(
    path: str | os.PathLike[str],
    policy: Policy | None = None,
    *,
    location: str | None = None,
    max_opcodes: int = DEFAULT_MAX_OPCODES,
) -> FileReport:
    """Scan one file on disk (memory-mapped, never read twice)."""
    policy = policy or default_policy()
    path = Path(path)
    where = location or str(path)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                return _scan_data(b"", 0, policy, where, max_opcodes)
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                return _scan_data(mapped, size, policy, where, max_opcodes)
    except IsADirectoryError as exc:
        raise ScanInputError(f"{path}: is a directory") from exc
    except OSError as exc:
        raise ScanInputError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _scan_data(data: Any, size: int, policy: Policy, location: str, max_opcodes: int) -> FileReport:
    with ExitStack() as stack:
        ctx = Ctx(policy=policy, max_opcodes=max_opcodes, stack=stack)
        fmt = scan_blob(ctx, data, location, 0, 0, size)
        findings = sorted(
            ctx.findings,
            key=lambda f: (
                f.location != location,
                f.location,
                f.offset if f.offset is not None else -1,
            ),
        )
        return FileReport(
            path=location,
            verdict=verdict_of(findings),
            format=fmt,
            findings=tuple(findings),
            size=size,
            pickles=ctx.pickles,
            opcodes=ctx.opcodes,
        )


def scan_many(paths: Sequence[Path], policy: Policy | None = None) -> list[FileReport]:
    """Scan explicit files one after another (the CLI parallelises above this)."""
    policy = policy or default_policy()
    return [scan_file(p, policy) for p in paths]
