"""Scan many paths: find the model files under directories, scan them in parallel.

Files named explicitly are always scanned. Inside a directory, a file is
scanned when its name has a model-file extension or its first bytes look
like a pickle or a container that can hold one; everything else is counted
as skipped. Paths that cannot be read end up in `ScanReport.errors`.
"""

from __future__ import annotations

import errno
import fnmatch
import functools
import os
import pickletools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .._formats import Format, compress, container_kind
from .._machine.opcodes import OPCODE_BYTES, starts_with_proto
from .._machine.walker import DEFAULT_MAX_OPCODES
from ..errors import ScanInputError
from ..policy import Policy
from ..report import FileReport, Finding, ScanReport
from ._core import scan_file
from ._judge import internal_error, structural, verdict_of

if TYPE_CHECKING:
    from ._workers import Lost

__all__ = ["MODEL_SUFFIXES", "Found", "discover", "scan_paths", "sniff", "walk"]

Progress = Callable[[int, int], None]
"""`progress(done, total)`, called after each file is scanned."""

MODEL_SUFFIXES = frozenset(
    {
        # pickle and friends
        ".pkl", ".pickle", ".p", ".pk", ".pck", ".pcl", ".dill", ".cloudpkl",
        # framework formats built on pickle
        ".pt", ".pth", ".bin", ".ckpt", ".mar", ".nemo", ".joblib", ".jbl",
        ".npy", ".npz", ".dat", ".data", ".model", ".sav",
        # compressed or archived pickles
        ".gz", ".bz2", ".xz", ".lzma", ".zip", ".tar", ".tgz", ".zst", ".lz4", ".7z",
        # no code, but checked (header, offsets, polyglots)
        ".safetensors",
    }
)  # fmt: skip

_SKIP_DIRS = frozenset({".git", ".hg", ".svn"})

_HEAD = 64 * 1024
"""Bytes read to sniff a file: tar's `ustar` sits at offset 257, and a stream
without PROTO may open with a long string before its first global."""

_TRUNCATION = ("not enough data", "no newline found", "but only", "exhausted before seeing STOP")
"""pickletools' messages for a stream that simply ends too early."""


def sniff(head: bytes, size: int | None = None) -> str | None:
    """What a file starting with `head` holds: `pickle`, a container kind, or None.

    Containers are recognised exactly as `safeload.scan` opens them. A Git
    LFS pointer is only a model when its name says so, so it is not sniffed.
    """
    if starts_with_proto(head):
        return Format.PICKLE.value
    kind = container_kind(head, len(head) if size is None else size)
    if kind is not None and kind is not Format.LFS_POINTER:
        return str(kind.value)
    if head and head[0] in OPCODE_BYTES and _decodes_as_pickle(head):
        return Format.PICKLE.value
    return None


def _decodes_as_pickle(head: bytes) -> bool:
    """A stream without PROTO (protocol 0/1, or a headerless binary one).

    The head must decode as opcodes up to STOP, or up to where a head cut
    from a longer file ends. pickletools.genops only parses: nothing is
    imported or called.
    """
    count = 0
    try:
        for opcode, _arg, _pos in pickletools.genops(head):
            count += 1
            if opcode.name == "STOP":
                return count >= 2
    except ValueError as exc:
        cut_short = len(head) >= _HEAD and any(t in str(exc) for t in _TRUNCATION)
        return cut_short and count >= 1
    return False


def _wanted(path: Path) -> bool:
    if path.suffix.lower() in MODEL_SUFFIXES:
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEAD)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return True  # let the scan report why it cannot be read
    return sniff(head, size) is not None


def _excluded(path: Path, base: str, patterns: Sequence[str]) -> bool:
    if not patterns:
        return False
    rel = Path(os.path.relpath(os.path.abspath(path), base)).as_posix()
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(path.name, p) for p in patterns)


def discover(
    paths: Iterable[Path],
    *,
    exclude: Sequence[str] = (),
    exclude_base: Path | None = None,
    sniff_named: bool = False,
    follow_symlinks: bool = False,
    reasons: dict[str, str] | None = None,
) -> tuple[list[Path], list[str], dict[str, str]]:
    """Files to scan, files skipped, and paths that could not be read.

    `exclude` holds glob patterns matched against paths relative to
    `exclude_base` (default: the current directory) and against bare names;
    they apply inside directory walks, never to files named explicitly.
    Named files are always scanned unless `sniff_named` chooses them as a
    walk does (for pre-commit hooks that pass every staged file).
    A symlinked directory inside a walk is skipped, with its reason in
    `reasons`, unless `follow_symlinks`; a followed link that leads back to a
    folder already being walked is skipped as a symlink loop.
    """
    chosen: list[Path] = []
    skipped: list[str] = []
    errors: dict[str, str] = {}
    why = reasons if reasons is not None else {}
    for found in walk(
        paths,
        exclude=exclude,
        exclude_base=exclude_base,
        sniff_named=sniff_named,
        follow_symlinks=follow_symlinks,
    ):
        if found.kind == "scan":
            chosen.append(Path(found.path))
        elif found.kind == "skip":
            skipped.append(found.path)
            if found.reason is not None:
                why[found.path] = found.reason
        else:
            errors[found.path] = found.reason or "cannot read"
    return chosen, skipped, errors


@dataclass(frozen=True)
class Found:
    """One path met by `walk`: to `scan`, `skip` (with a reason worth telling) or an `error`."""

    path: str
    kind: Literal["scan", "skip", "error"]
    reason: str | None = None


def walk(
    paths: Iterable[Path],
    *,
    exclude: Sequence[str] = (),
    exclude_base: Path | None = None,
    sniff_named: bool = False,
    follow_symlinks: bool = False,
) -> Iterator[Found]:
    """`discover`'s rules, one path at a time, as the walk meets them.

    For batches too large to list first (`scan_many`): the caller starts
    scanning before the walk ends and never holds every path.
    """
    base = os.path.abspath(exclude_base or Path.cwd())
    seen: set[str] = set()
    # A failed os.walk step (an unreadable folder) is reported by a callback.
    failed: list[Found] = []

    def add(path: Path) -> Iterator[Found]:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            yield Found(str(path), "scan")

    def descend(here: Path, d: str, walked: set[str]) -> Found | bool:
        if d in _SKIP_DIRS or _excluded(here / d, base, exclude):
            return False
        if not os.path.islink(here / d):
            return True
        if not follow_symlinks:
            reason = "symlinked directory, not followed (--follow-symlinks follows it)"
            return Found(str(here / d), "skip", reason)
        target = os.path.realpath(here / d)
        if target in walked:
            reason = f"symlink loop: leads back to {target}, already scanned"
            return Found(str(here / d), "skip", reason)
        return True

    for root in paths:
        if root.is_dir():
            walked: set[str] = set()
            for folder, dirs, files in os.walk(
                root, onerror=_walk_error(failed), followlinks=follow_symlinks
            ):
                yield from failed
                failed.clear()
                here = Path(folder)
                walked.add(os.path.realpath(here))
                kept = []
                for d in sorted(dirs):
                    verdict = descend(here, d, walked)
                    if isinstance(verdict, Found):
                        yield verdict
                    elif verdict:
                        kept.append(d)
                dirs[:] = kept
                for name in sorted(files):
                    path = here / name
                    if _excluded(path, base, exclude):
                        yield Found(str(path), "skip")
                    elif not path.is_file():
                        yield Found(str(path), "skip")  # socket, fifo, dangling link
                    elif _wanted(path):
                        yield from add(path)
                    else:
                        yield Found(str(path), "skip")
            yield from failed
            failed.clear()
        elif root.is_file():
            if sniff_named and not _wanted(root):
                yield Found(str(root), "skip")
            else:
                yield from add(root)
        elif root.exists():
            # A fifo or device would block or never end.
            yield Found(str(root), "error", "not a regular file")
        else:
            yield Found(str(root), "error", _missing(root))


def _missing(path: Path) -> str:
    """Why `path` cannot be opened: a symlink loop or a dangling link says so."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop"
        if os.path.islink(path):
            return f"dangling symlink to {os.readlink(path)}"
    return "no such file or directory"


def _walk_error(failed: list[Found]) -> Callable[[OSError], None]:
    def record(exc: OSError) -> None:
        reason = f"cannot read directory: {exc.strerror or exc}"
        failed.append(Found(str(exc.filename), "error", reason))

    return record


def scan_paths(
    paths: list[Path],
    policy: Policy,
    *,
    max_opcodes: int = DEFAULT_MAX_OPCODES,
    jobs: int | None = None,
    progress: Progress | None = None,
    exclude: Sequence[str] = (),
    exclude_base: Path | None = None,
    sniff_named: bool = False,
    timeout: float | None = None,
    follow_symlinks: bool = False,
) -> ScanReport:
    """Scan files and directories (recursively); results sorted by path.

    `jobs` worker processes share the work (default: one per core); a
    handful of files is scanned in this process. With `timeout` (seconds per
    file), every file is scanned in a worker process, which is killed when
    its file takes longer; that file's verdict is then `invalid`
    (`resource-limit`). A file whose scan fails in any other way (a bug, a
    worker killed by the out-of-memory killer) is `invalid` too
    (`internal-error`); either way every other file is still scanned.
    """
    reasons: dict[str, str] = {}
    files, skipped, errors = discover(
        paths,
        exclude=exclude,
        exclude_base=exclude_base,
        sniff_named=sniff_named,
        follow_symlinks=follow_symlinks,
        reasons=reasons,
    )
    jobs = max(1, jobs if jobs is not None else (os.cpu_count() or 1))
    reports: list[FileReport] = []
    total = len(files)
    if timeout is None and (jobs == 1 or total < _PARALLEL_MIN):
        for done, path in enumerate(files, 1):
            _collect(_scan_one(path, policy, max_opcodes), reports, errors)
            if progress is not None:
                progress(done, total)
    elif files:
        # One decompression budget for every worker: N workers never hold N times it.
        shared = compress.Budget.shared(processes=2 * jobs)
        from . import _workers  # multiprocessing: only a parallel scan pays its import

        finished = _workers.run(
            files,
            functools.partial(_scan_in_worker, max_opcodes=max_opcodes),
            workers=jobs,
            timeout=timeout,
            initializer=_init_worker,
            initargs=(policy, shared.handle),
        )
        for done, result in enumerate(finished, 1):
            if isinstance(result, _workers.Lost):
                result = _lost(result, policy)
            _collect(result, reports, errors)
            if progress is not None:
                progress(done, total)
    reports.sort(key=lambda r: r.path)
    return ScanReport(
        files=tuple(reports),
        skipped=tuple(sorted(skipped)),
        errors=dict(sorted(errors.items())),
        skip_reasons=dict(sorted(reasons.items())),
    )


_PARALLEL_MIN = 8
"""Below this many files, starting worker processes costs more than it saves."""

_worker_policy: Policy | None = None


def _init_worker(policy: Policy, budget: Any) -> None:
    global _worker_policy
    _worker_policy = policy
    compress.use_budget(budget)


def _scan_in_worker(path: Path, max_opcodes: int) -> FileReport | tuple[str, str]:
    assert _worker_policy is not None, "worker started without a policy"
    return _scan_one(path, _worker_policy, max_opcodes)


def _scan_one(path: Path, policy: Policy, max_opcodes: int) -> FileReport | tuple[str, str]:
    try:
        return scan_file(path, policy, max_opcodes=max_opcodes)
    except ScanInputError as exc:
        return str(path), _reason(str(path), exc.diagnostics())
    except Exception as exc:  # the last resort: one file's bug never stops the batch
        return _failed(path, internal_error(policy, exc, str(path)))


def _lost(lost: Lost, policy: Policy) -> FileReport:
    """The report of a file whose worker was killed (time limit) or died."""
    if lost.timed_out:
        message = (
            f"{lost.reason} (the per-file time limit); it was stopped and nothing was verified"
        )
        finding = structural(policy, "resource-limit", message, str(lost.path), None)
    else:
        message = f"internal error while reading this file: {lost.reason}; nothing was verified"
        finding = structural(policy, "internal-error", message, str(lost.path), None)
    return _failed(lost.path, finding)


def _failed(path: Path, finding: Finding) -> FileReport:
    try:
        size = os.stat(path).st_size
    except OSError:
        size = 0
    return FileReport(
        path=str(path),
        verdict=verdict_of([finding]),
        format="unknown",
        findings=(finding,),
        size=size,
    )


def _reason(path: str, text: str) -> str:
    prefix = f"{path}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _collect(
    result: FileReport | tuple[str, str], reports: list[FileReport], errors: dict[str, str]
) -> None:
    if isinstance(result, FileReport):
        reports.append(result)
    else:
        errors[result[0]] = result[1]
