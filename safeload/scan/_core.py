"""Scan one file or buffer: locate its readings, walk them, judge them by a policy."""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Any

from .._formats import locate
from .._machine.walker import DEFAULT_MAX_OPCODES
from ..errors import ScanInputError
from ..policy import Policy
from ..report import FileReport, Finding
from ._judge import internal_error, judge, verdict_of

_default_policy: Policy | None = None


def default_policy() -> Policy:
    """The built-in policy, loaded once."""
    global _default_policy
    if _default_policy is None:
        _default_policy = Policy.default()
    return _default_policy


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
    findings: list[Finding] = []
    shape, pickles, opcodes = "data", 0, 0
    try:
        with locate(
            data,
            location,
            size=size,
            max_opcodes=max_opcodes,
            max_expansion=policy.max_expansion,
            stream=True,
        ) as located:
            shape, pickles, opcodes = str(located.shape), located.pickles, located.opcodes
            findings = judge(located, policy)
    except Exception as exc:  # the last resort: "everything else is a verdict"
        # The locator and the judge keep what they found before an error of
        # their own; this catches what escapes them (and the release of buffers).
        findings.append(internal_error(policy, exc, location))
    return FileReport(
        path=location,
        verdict=verdict_of(findings),
        format=shape,
        findings=tuple(findings),
        size=size,
        pickles=pickles,
        opcodes=opcodes,
    )
