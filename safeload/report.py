"""Result types returned by `safeload.scan`: plain frozen data, never printed here."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class Verdict(enum.Enum):
    """A file's verdict. Only `SAFE` means every global is on an allowlist.

    `NOT_A_PICKLE`: every loader that could be pointed at the file (pickle,
    joblib, numpy, pandas, torch) fails on it before importing, calling or
    building anything, and it holds no container a loader reads (a JSON config,
    a SentencePiece model, a CSV, an image). Nothing in it can run, but it is no
    model either: the guarded loader refuses it, and `scan --strict` fails on it.
    It ranks between `SAFE` and `UNKNOWN`.
    """

    SAFE = "safe"
    NOT_A_PICKLE = "not-a-pickle"
    UNKNOWN = "unknown"
    INVALID = "invalid"
    DANGEROUS = "dangerous"

    @property
    def rank(self) -> int:
        """Order used to combine verdicts: the worst one wins."""
        return _RANK[self]

    @staticmethod
    def worst(verdicts: list[Verdict]) -> Verdict:
        """The most severe of `verdicts` (`SAFE` for none)."""
        return max(verdicts, key=_RANK.__getitem__, default=Verdict.SAFE)


_RANK = {
    Verdict.SAFE: 0,
    Verdict.NOT_A_PICKLE: 1,
    Verdict.UNKNOWN: 2,
    Verdict.INVALID: 3,
    Verdict.DANGEROUS: 4,
}

CONTRACT_VERSION = 2
"""Version of the JSON contract (`ScanReport.to_json`). 2 added the `not-a-pickle`
verdict (and its count in `summary`); 1 had safe, unknown, invalid, dangerous."""


class Severity(enum.Enum):
    """How bad a finding is, SARIF-style."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    NOTE = "note"


@dataclass(frozen=True)
class Finding:
    """One thing the scanner found, tied to a rule."""

    rule: str
    """Stable rule ID, e.g. `SL101`."""
    rule_name: str
    """The rule's slug, e.g. `command-execution`."""
    severity: Severity
    verdict: Verdict | None
    """What this finding does to the file verdict (`None` for notes)."""
    message: str
    location: str
    """`file[:member[:member]]`."""
    offset: int | None
    """Byte offset of the opcode (within the innermost member), if any."""
    global_name: str | None = None
    """Canonical global name: `module.name`, or `module:dotted.qualname`."""
    usage: tuple[str, ...] = ()
    """How the global is used: called, instantiated, state, stored, ..."""
    arguments: tuple[str, ...] = ()
    """Constant call arguments, rendered and shortened."""
    count: int = 1
    """How many references to this global the stream holds."""
    fix: str | None = None
    """What the user can do about it."""

    def to_json(self) -> dict[str, Any]:
        """The JSON contract's finding object (plus extra keys)."""
        return {
            "rule": self.rule,
            "rule_name": self.rule_name,
            "severity": self.severity.value,
            "message": self.message,
            "location": self.location,
            "offset": self.offset,
            "global": self.global_name,
            "usage": list(self.usage),
            "arguments": list(self.arguments),
            "count": self.count,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class FileReport:
    """The scan result for one file (or one in-memory buffer)."""

    path: str
    verdict: Verdict
    format: str
    """What the bytes were read as, e.g. `pickle`, `pickle+zip`; for a `not-a-pickle`
    file, the format its content was recognized as (`json`, `protobuf`, `text`,
    `text+gzip`, ...) or `data`."""
    findings: tuple[Finding, ...]
    size: int = 0
    pickles: int = 0
    """Number of pickle streams analyzed inside the file."""
    opcodes: int = 0
    explanation: str | None = None
    """Optional Python-like rendering (`scan --explain`)."""
    fetched: int | None = None
    """Bytes read from a remote store to scan it (`None`: a local file or buffer)."""

    @property
    def safe(self) -> bool:
        """True only for the `safe` verdict."""
        return self.verdict is Verdict.SAFE

    def to_json(self) -> dict[str, Any]:
        """The JSON contract's file object (plus extra keys)."""
        out: dict[str, Any] = {
            "path": self.path,
            "verdict": self.verdict.value,
            "format": self.format,
            "findings": [f.to_json() for f in self.findings],
            "size": self.size,
            "pickles": self.pickles,
            "opcodes": self.opcodes,
        }
        if self.explanation is not None:
            out["explanation"] = self.explanation
        if self.fetched is not None:
            out["fetched"] = self.fetched
        return out


@dataclass(frozen=True)
class ScanReport:
    """Results for every scanned file, plus what a directory walk skipped."""

    files: tuple[FileReport, ...]
    skipped: tuple[str, ...] = ()
    errors: Mapping[str, str] = field(default_factory=dict)
    """Paths that could not be read at all, with the reason."""
    skip_reasons: Mapping[str, str] = field(default_factory=dict)
    """Why some skipped paths were skipped (symlinked directories, loops)."""

    @property
    def verdict(self) -> Verdict:
        """The worst verdict over all files."""
        return Verdict.worst([f.verdict for f in self.files])

    @property
    def safe(self) -> bool:
        """True when every file is safe and nothing failed to read."""
        return not self.errors and all(f.safe for f in self.files)

    def summary(self) -> dict[str, int]:
        """Counts per verdict, plus skipped and unreadable files."""
        counts = {v.value: 0 for v in Verdict}
        for f in self.files:
            counts[f.verdict.value] += 1
        counts["files"] = len(self.files)
        counts["skipped"] = len(self.skipped)
        counts["errors"] = len(self.errors)
        return counts

    def to_json(self) -> dict[str, Any]:
        """The versioned JSON contract."""
        return {
            "version": CONTRACT_VERSION,
            "files": [f.to_json() for f in self.files],
            "summary": self.summary(),
            "errors": dict(self.errors),
        }
