"""Batch results as JSON Lines: one line per file, appended as each file finishes.

A line is the JSON contract's file object (`FileReport.to_json`) plus what
identifies the version of the file that was scanned: `size`, `mtime_ns` (local
files) and `etag` (remote objects). A file that could not be read at all is a
line with `error` instead of a verdict.

`--resume` trusts a line only when the file still has the same path, size and
ETag or modification time, and the line was judged by the same policy (its
`policy` fingerprint: rules, allow packs, limits, safeload's version); a line cut short by a killed run is dropped, so its
file is scanned again. A run over a million files keeps in memory only this
index (a 64-bit digest and a verdict per line), never the results.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..policy import Policy
from ..report import Verdict

__all__ = [
    "Identity",
    "Index",
    "Writer",
    "error_line",
    "file_line",
    "policy_fingerprint",
    "read_lines",
]


@dataclass(frozen=True)
class Identity:
    """Which version of a file a line is about."""

    path: str
    size: int | None
    mtime_ns: int | None = None
    etag: str | None = None

    def digest(self) -> int:
        """A 64-bit digest of the whole identity (what the resume index keeps)."""
        text = json.dumps([self.path, self.size, self.mtime_ns, self.etag])
        return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")

    @property
    def resumable(self) -> bool:
        """A file without size and ETag or mtime cannot be told unchanged: always rescanned."""
        return self.size is not None and (self.mtime_ns is not None or self.etag is not None)


def file_line(report: dict[str, Any], identity: Identity, policy: str) -> dict[str, Any]:
    """The line for a scanned file: its report object, its identity, the policy's fingerprint."""
    return {
        **report,
        "size": identity.size,
        "mtime_ns": identity.mtime_ns,
        "etag": identity.etag,
        "policy": policy,
    }


def policy_fingerprint(policy: Policy, max_opcodes: int) -> str:
    """What a verdict was judged by: the rules, allow packs and limits, and safeload's version.

    Canonical (sets sorted, dataclasses by field), so every process computes the
    same text; a resumed run trusts only lines of the same fingerprint.
    """
    import importlib.metadata  # only when a run writes lines: start-up stays light

    try:
        version = importlib.metadata.version("safeload")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    judged = [
        version,
        max_opcodes,
        sorted(policy.rules.items()),
        policy.packs,
        policy.extra_allow,
        policy.max_load_cost,
        policy.max_expansion,
    ]
    text = json.dumps(_canonical(judged), sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _canonical(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return _canonical(value.value)
    if isinstance(value, set | frozenset):
        items = [_canonical(x) for x in value]
        return sorted(items, key=lambda x: json.dumps(x, sort_keys=True))
    if isinstance(value, list | tuple):
        return [_canonical(x) for x in value]
    if isinstance(value, Mapping):
        pairs = [[_canonical(k), _canonical(v)] for k, v in value.items()]
        return sorted(pairs, key=lambda x: json.dumps(x, sort_keys=True))
    if value is None or isinstance(value, str | int | float | bool):
        return value
    # Nothing else is in a policy today; a new kind of field must be added above.
    raise TypeError(f"cannot fingerprint a {type(value).__qualname__} in a policy")


def error_line(identity: Identity, reason: str) -> dict[str, Any]:
    """The line for a file that could not be read (never resumed: it is read again)."""
    return {
        "path": identity.path,
        "error": reason,
        "size": identity.size,
        "mtime_ns": identity.mtime_ns,
        "etag": identity.etag,
    }


def _identity_of(line: dict[str, Any]) -> Identity:
    return Identity(line["path"], line.get("size"), line.get("mtime_ns"), line.get("etag"))


class Index:
    """What an earlier run already wrote: identity digest -> verdict."""

    def __init__(self) -> None:
        self._done: dict[int, Verdict] = {}
        self.valid_end = 0
        """Bytes of the file up to the end of its last complete line."""

    def __len__(self) -> int:
        return len(self._done)

    @classmethod
    def read(cls, path: Path, policy: str) -> Index:
        """Index the lines of `path` judged by policy fingerprint `policy` (none if no file)."""
        index = cls()
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            return index
        with fh:
            offset = 0
            for raw in fh:
                line = _parse(raw)
                if line is None:
                    break  # the cut-short last line of a killed run; appending starts here
                offset += len(raw)
                index.valid_end = offset
                verdict = line.get("verdict")
                identity = _identity_of(line)
                if verdict is not None and identity.resumable and line.get("policy") == policy:
                    index._done[identity.digest()] = Verdict(verdict)
        return index

    def verdict(self, identity: Identity) -> Verdict | None:
        """The verdict already recorded for exactly this version of the file, if any."""
        if not identity.resumable:
            return None
        return self._done.get(identity.digest())


def _parse(raw: bytes) -> dict[str, Any] | None:
    """A complete, well-formed line, or None (no newline: the writer was killed mid-line)."""
    if not raw.endswith(b"\n"):
        return None
    try:
        line = json.loads(raw)
    except ValueError:
        return None
    return line if isinstance(line, dict) and isinstance(line.get("path"), str) else None


class Writer:
    """Appends lines, each flushed as written, so a killed run keeps every finished file."""

    def __init__(self, path: Path, *, resume_from: int | None = None) -> None:
        # Resuming appends after the last complete line (dropping a cut-short
        # one); a fresh run starts the file anew.
        if resume_from is None:
            self._fh: IO[str] = open(path, "w", encoding="utf-8")
        else:
            self._fh = open(path, "a", encoding="utf-8")
            self._fh.truncate(resume_from)
        self.lines = 0

    def write(self, line: dict[str, Any]) -> None:
        self._fh.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._fh.flush()
        self.lines += 1

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_lines(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Every complete line of a results file, in the order written."""
    with open(path, "rb") as fh:
        for raw in fh:
            line = _parse(raw)
            if line is not None:
                yield line
