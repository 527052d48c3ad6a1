"""Scan files where they live: any fsspec URL, read in ranges, never judged on bytes not read.

A remote file is scanned from a *sparse image*: an anonymous private memory
map of the file's size, in which only the pages fetched from the store hold
bytes. The locator and the judge run on that image unchanged (it is a buffer
like the local mmap), and then the kernel says which pages they read.

Why this is fail-closed (Linux, `/proc/self/pagemap`):

1. A page of an anonymous map that was never touched is not mapped. Reading
   any byte of it, from Python or from C (struct, zlib, a slice), faults the
   kernel's zero page in, and from then on the page is *present* in
   `/proc/self/pagemap`. Pages this module writes fetched bytes into are
   present too, and it records each one it filled completely (`Image.have`).
2. Before each run of `locate` + `judge`, every unfilled page an earlier run
   read is unmapped again (`MADV_DONTNEED`), and the pagemap must then show
   no unfilled page present. After the run, every unfilled page present was
   read by this run while it held zeros, not the file's bytes: those pages
   (and some read-ahead) are fetched, and the scan runs again from the
   start; its result is thrown away.
3. A run that read no unfilled page read only the file's own bytes. The
   locator and the judge are functions of the bytes they read, so that run's
   report is the report of the whole file: what was never fetched was never
   read, so it cannot have been judged.
4. Every check fails towards fetching more: a page the kernel reports for
   any other reason (a huge zero page, say) only costs a fetch; a filled page
   the kernel does not report present, an unfilled one still present after
   it was unmapped, a failed self-test at start-up, or no pagemap at all
   (another OS) turns tracking off, and the file is then read whole before
   it is scanned. After `MAX_ROUNDS` runs, or once the runs took longer than
   fetching the rest would (`COST_AWARE`), the rest of the file is fetched
   whole, so the number of runs is bounded.

Which pages a scan reads is thus never predicted: it is observed. Read-ahead
is only a guess at what the next run will read (the tail for a zip's end
record and central directory, a growing window after a pickle being walked,
one small block past a skipped array), so a wrong guess costs a round trip,
never a wrong verdict. Compressed streams are read in order, their window
doubling each run.

A file whose size or identity (ETag, version, modification time) differs
between the reads of one scan, or whose store refuses a range because its
`If-Match` no longer holds, is `changed-during-scan` (SL313): never safe.
Missing files, refused credentials and other store errors are that file's
error; throttling (HTTP 429, 503) is retried with exponential backoff.

fsspec is imported only when a URL is scanned (`pip install 'safeload[remote]'`,
plus the store's backend: s3fs, gcsfs, adlfs, huggingface_hub).
"""

from __future__ import annotations

import ctypes
import fnmatch
import mmap
import os
import platform
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from .._machine.walker import DEFAULT_MAX_OPCODES
from ..errors import ScanInputError
from ..policy import Policy
from ..report import FileReport, ScanReport
from ._batch import _HEAD, _SKIP_DIRS, MODEL_SUFFIXES, Found, sniff
from ._core import _scan_data
from ._judge import structural, verdict_of

__all__ = [
    "CONCURRENCY",
    "MAX_ROUNDS",
    "combine",
    "is_url",
    "scan_target",
    "scan_url",
    "scan_urls",
    "tracking_available",
]

CONCURRENCY = 16
"""Remote files scanned (and so fetched) at once by default."""
MAX_ROUNDS = 48
"""Scan runs with ranged reads before the rest of a file is fetched whole."""
COST_AWARE = True
"""Fetch the rest whole as soon as the runs so far took longer than fetching the rest
would (at the throughput measured so far), after `_MIN_ROUNDS` runs: a file that needs
a run per array (a forest) then costs at most about twice the cheaper of the two ways."""
_MIN_ROUNDS = 6
_PAGE = mmap.PAGESIZE
_FIRST = 64 * 1024
"""Read first from each end: a header, a zip's end record and central directory."""
_WHOLE_BELOW = 256 * 1024
"""Files this small are fetched in one read."""
_ISOLATED = 4 * 1024
"""Read-ahead at a page read away from anything fetched (past a skipped array)."""
_CHUNK = 8 << 20
"""Size of each read when a file is fetched whole."""
_RETRIES = 6
_BACKOFF = 0.05
"""Seconds before the first retry of a throttled read; doubled each time."""
_THROTTLED = frozenset({429, 503})
_GENERIC_MMAN = {
    "x86_64",
    "amd64",
    "i386",
    "i686",
    "aarch64",
    "arm64",
    "armv7l",
    "riscv64",
    "s390x",
}
_MAP_NORESERVE = getattr(
    mmap,
    "MAP_NORESERVE",
    0x4000 if sys.platform.startswith("linux") and platform.machine() in _GENERIC_MMAN else 0,
)
"""MAP_NORESERVE (Python 3.11 does not export it; 0x4000 in Linux's generic mman.h): the
image's untouched pages are no commitment, so a 2 GB file's image costs what was fetched."""

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(target: object) -> bool:
    """`scheme://...`: a target for fsspec, not a local path."""
    return isinstance(target, str) and _URL.match(target) is not None


# -- the store ---------------------------------------------------------------------------


class _Changed(Exception):
    """The file is not the one the scan started reading."""


def _filesystem(url: str) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError as exc:
        raise ScanInputError(
            f"{url}: scanning URLs needs fsspec: pip install 'safeload[remote]'"
        ) from exc
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise ScanInputError(f"{url}: no filesystem for this URL: {exc}") from exc
    return fs, path


def _status(exc: BaseException) -> int | None:
    """The HTTP status behind an exception raised by a store (aiohttp, botocore, fsspec)."""
    for cur in _chain(exc):
        for attr in ("status", "status_code"):
            value = getattr(cur, attr, None)
            if isinstance(value, int):
                return value
        response = getattr(cur, "response", None)
        if isinstance(response, dict):
            code = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if isinstance(code, int):
                return code
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _reason(exc: BaseException) -> str:
    """Why a store refused a file, for `ScanReport.errors`."""
    status = _status(exc)
    refused = next((e for e in _chain(exc) if "Connector" in type(e).__name__), None)
    if status is None and refused is not None:
        return f"cannot connect: {refused}"  # fsspec calls an unreachable host "not found"
    if status == 404 or (status is None and isinstance(exc, FileNotFoundError)):
        return "not found (HTTP 404)" if status else "not found"
    if status in (401, 403) or isinstance(exc, PermissionError):
        code = f" (HTTP {status})" if status else ""
        return f"access denied{code}: check the store's credentials and permissions"
    if status in _THROTTLED:
        return f"throttled (HTTP {status}) after {_RETRIES} retries with backoff; try again later"
    if status is not None:
        return f"cannot read (HTTP {status}): {exc}"
    return f"cannot read: {exc}"


_T = TypeVar("_T")


_DROPPED = frozenset({"ClientConnectionError", "ServerDisconnectedError", "ClientPayloadError"})
"""aiohttp's errors for a connection that broke (a keep-alive the server closed)."""


def _transient(exc: BaseException) -> bool:
    """Throttling, or a dropped connection: worth asking again after a pause."""
    if _status(exc) in _THROTTLED or isinstance(exc, ConnectionError | TimeoutError):
        return True
    return any(c.__name__ in _DROPPED for c in type(exc).__mro__)


def _retrying(call: Callable[[], _T]) -> _T:
    """`call()`, retried with exponential backoff while the store throttles."""
    for attempt in range(_RETRIES + 1):
        try:
            return call()
        except Exception as exc:
            if not _transient(exc) or attempt == _RETRIES:
                raise
        time.sleep(_BACKOFF * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _identity(info: dict[str, Any], key: object = None) -> tuple[object, ...]:
    """What says a file is still the same: its size and the first version tag the store
    gives (`key` first: a listing and a HEAD may not give the same fields)."""
    if isinstance(key, str) and info.get(key) is not None:
        return info.get("size"), key, str(info[key])
    if key is not None:
        return (info.get("size"),)
    for key in ("VersionId", "ETag", "etag", "version_id", "generation", "blob_id", "md5Hash",
                "md5", "Last-Modified", "LastModified", "last_modified", "mtime", "created"):  # fmt: skip
        if info.get(key) is not None:
            return info.get("size"), key, str(info[key])
    return (info.get("size"),)


@dataclass
class _Remote:
    """One remote file, read in ranges that must all come from one version of it."""

    fs: Any
    path: str
    url: str
    size: int
    identity: tuple[object, ...]
    fetched: int = 0
    requests: int = 0
    seconds: float = 0.0
    """Time spent waiting for the store."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def _kwargs(self) -> dict[str, Any]:
        # An HTTP server that honours If-Match refuses (412) a range of another version.
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        tag = (
            str(self.identity[2])
            if len(self.identity) == 3 and self.identity[1] == "ETag"
            else None
        )
        # A weak ETag (W/"...") never matches If-Match: such servers are checked by HEAD only.
        if tag is not None and not tag.startswith("W/") and {"http", "https"} & set(protocols):
            return {"headers": {"If-Match": tag}}
        return {}

    def read(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """The bytes of each `[start, end)` range, fetched concurrently (raises `_Changed`).

        Throttled ranges are asked again with exponential backoff; any other
        failure is raised.
        """
        out: list[bytes | None] = [None] * len(ranges)
        todo = list(range(len(ranges)))
        for attempt in range(_RETRIES + 1):
            began = time.monotonic()
            got = self.fs.cat_ranges(
                [self.path] * len(todo),
                [ranges[i][0] for i in todo],
                [ranges[i][1] for i in todo],
                on_error="return",
                **self._kwargs,
            )
            with self._lock:
                self.seconds += time.monotonic() - began
            again = []
            for i, value in zip(todo, got, strict=True):
                if not isinstance(value, BaseException):
                    out[i] = bytes(value)
                    continue
                status = _status(value)
                if status == 412:
                    raise _Changed("the store refused a range: its ETag no longer matches")
                if status == 416:
                    raise _Changed("the store says a range lies past the file's end")
                if not _transient(value) or attempt == _RETRIES:
                    raise value
                again.append(i)
            if not again:
                break
            todo = again
            time.sleep(_BACKOFF * 2**attempt)
        chunks: list[bytes] = []
        for (a, b), chunk in zip(ranges, out, strict=True):
            assert chunk is not None
            with self._lock:
                self.fetched += len(chunk)
                self.requests += 1
            if len(chunk) == self.size != b - a:
                chunk = chunk[a:b]  # a server that ignores Range sends the whole file
            chunks.append(chunk)
            if len(chunk) != b - a:
                raise _Changed(
                    f"the store returned {len(chunk)} bytes for bytes {a}..{b} of a "
                    f"{self.size}-byte file"
                )
        return chunks

    def check(self) -> None:
        """Raise `_Changed` when the store now describes another file."""
        self.fs.invalidate_cache(self.path)
        try:
            info = _retrying(lambda: self.fs.info(self.path))
        except Exception as exc:
            raise _Changed(f"it can no longer be read ({_reason(exc)})") from exc
        now = _identity(info, self.identity[1] if len(self.identity) == 3 else "")
        if now[0] != self.identity[0] or (len(now) == 3 and now != self.identity):
            raise _Changed(f"it was {_describe(self.identity)}, now {_describe(now)}")


def _describe(identity: tuple[object, ...]) -> str:
    size = f"{identity[0]} bytes"
    return f"{size}, {identity[1]} {identity[2]}" if len(identity) == 3 else size


# -- the sparse image ----------------------------------------------------------------------


class Image:
    """An anonymous map of a remote file's size, filled page by page with fetched bytes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pages = (size + _PAGE - 1) // _PAGE
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE
        self.map = mmap.mmap(-1, size, flags=flags)
        if hasattr(mmap, "MADV_NOHUGEPAGE"):
            # A huge zero page would mark 512 pages read at once: only costs
            # fetches, but needlessly.
            self.map.madvise(mmap.MADV_NOHUGEPAGE)
        self.have = bytearray(self.pages)
        """1 for each page filled with the file's bytes."""
        self.address = _address(self.map) if tracking_available() else None

    def close(self) -> None:
        self.map.close()

    def missing(self, start: int, end: int) -> list[tuple[int, int]]:
        """Page-aligned ranges in `[start, end)` not yet filled."""
        first, last = start // _PAGE, (min(end, self.size) + _PAGE - 1) // _PAGE
        runs = []
        for m in re.finditer(b"\0+", bytes(self.have[first:last])):
            a, b = (first + m.start()) * _PAGE, (first + m.end()) * _PAGE
            runs.append((a, min(b, self.size)))
        return runs

    def fill(self, start: int, chunk: bytes) -> None:
        """Write fetched bytes; only pages they cover wholly (or to the end) count as filled."""
        end = start + len(chunk)
        self.map[start:end] = chunk
        first = (start + _PAGE - 1) // _PAGE
        last = self.pages if end >= self.size else end // _PAGE
        if last > first:
            self.have[first:last] = b"\1" * (last - first)

    @property
    def complete(self) -> bool:
        return self.have.count(0) == 0

    def read_unfilled(self) -> list[tuple[int, int]] | None:
        """Runs of pages (first, end) read without their bytes; None: cannot tell."""
        if self.address is None:
            return None
        present = _present(self.address, self.pages)
        if present is None:
            return None
        touched = int.from_bytes(present, "little")
        have = int.from_bytes(self.have, "little")
        if have & ~touched:
            return None  # a filled page not reported present: the kernel's word is no proof
        unread = (touched & ~have).to_bytes(self.pages, "little")
        return [(m.start(), m.end()) for m in re.finditer(b"\1+", unread)]

    def forget(self) -> bool:
        """Unmap every unfilled page a run read (its zero page), so the next run starts
        with none present; False when that cannot be confirmed."""
        runs = self.read_unfilled()
        if runs is None or not hasattr(mmap, "MADV_DONTNEED"):
            return False
        for first, end in runs:
            self.map.madvise(mmap.MADV_DONTNEED, first * _PAGE, (end - first) * _PAGE)
        return self.read_unfilled() == []


def _address(buffer: mmap.mmap) -> int:
    view = ctypes.c_char.from_buffer(buffer)
    try:
        return ctypes.addressof(view)
    finally:
        del view


_PRESENT = bytes(1 if b & 0xC0 else 0 for b in range(256))
"""pagemap entry's top byte -> 1 when bit 63 (present) or 62 (swapped) is set."""


def _present(address: int, pages: int) -> bytes | None:
    """One byte per page of the range at `address`: 1 when the page was ever touched."""
    try:
        fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    except OSError:
        return None
    try:
        raw = os.pread(fd, pages * 8, address // _PAGE * 8)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(raw) != pages * 8:
        return None
    return raw[7::8].translate(_PRESENT)


_tracking: bool | None = None


def tracking_available() -> bool:
    """Whether this process can see which pages of a map were read (checked once, by trying)."""
    global _tracking
    if _tracking is None:
        _tracking = _self_test()
    return _tracking


def _self_test() -> bool:
    probe = mmap.mmap(-1, 4 * _PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        if hasattr(mmap, "MADV_NOHUGEPAGE"):
            probe.madvise(mmap.MADV_NOHUGEPAGE)
        address = _address(probe)
        probe[0:1] = b"x"  # written
        _ = probe[2 * _PAGE + 7]  # read
        present = _present(address, 4)
        return present == b"\1\0\1\0"
    except (OSError, ValueError, TypeError):
        return False
    finally:
        probe.close()


# -- one file ------------------------------------------------------------------------------


def _open(url: str) -> tuple[_Remote, dict[str, Any]]:
    fs, path = _filesystem(url)
    try:
        info = _retrying(lambda: fs.info(path))
    except Exception as exc:
        raise ScanInputError(f"{url}: {_reason(exc)}") from exc
    size = info.get("size")
    return _Remote(fs, path, url, size if isinstance(size, int) else -1, _identity(info)), info


def scan_url(
    url: str,
    policy: Policy,
    *,
    max_opcodes: int = DEFAULT_MAX_OPCODES,
    location: str | None = None,
) -> FileReport:
    """Scan one remote file by ranged reads (raises `ScanInputError` when it cannot be read)."""
    remote, info = _open(url)
    if info.get("type") == "directory":
        raise ScanInputError(f"{url}: is a directory")
    return _scan_remote(remote, policy, max_opcodes, location or url)


def scan_target(
    url: str,
    policy: Policy,
    *,
    max_opcodes: int = DEFAULT_MAX_OPCODES,
    concurrency: int = CONCURRENCY,
) -> ScanReport:
    """`safeload.scan(url)`: one file (raises `ScanInputError` when it cannot be read), or
    every model file under a directory-like URL."""
    remote, info = _open(url)
    if info.get("type") == "directory":
        return scan_urls([url], policy, max_opcodes=max_opcodes, concurrency=concurrency)
    return ScanReport(files=(_scan_remote(remote, policy, max_opcodes, url),))


def _scan_remote(remote: _Remote, policy: Policy, max_opcodes: int, where: str) -> FileReport:
    if remote.size < 0:
        raise ScanInputError(f"{remote.url}: the store does not say the file's size")
    image: Image | None = None
    report: FileReport | None = None
    try:
        if remote.size == 0:
            report = _scan_data(b"", 0, policy, where, max_opcodes)
        else:
            image = Image(remote.size)
            report = _rounds(remote, image, policy, max_opcodes, where)
        remote.check()
    except _Changed as exc:
        return _changed(remote, policy, where, str(exc), report)
    except ScanInputError:
        raise
    except Exception as exc:
        raise ScanInputError(f"{remote.url}: {_reason(exc)}") from exc
    finally:
        if image is not None:
            try:
                image.close()
            except BufferError:  # a view still held: the map goes with its last view
                pass
    return replace(report, fetched=remote.fetched)


def _fetch(remote: _Remote, image: Image, ranges: list[tuple[int, int]]) -> None:
    wanted = sorted({r for a, b in ranges for r in image.missing(a, b)})
    merged: list[tuple[int, int]] = []
    for a, b in wanted:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    pieces = [(s, min(s + _CHUNK, b)) for a, b in merged for s in range(a, b, _CHUNK)]
    for (a, _b), chunk in zip(pieces, remote.read(pieces), strict=True):
        image.fill(a, chunk)


def _rounds(
    remote: _Remote, image: Image, policy: Policy, max_opcodes: int, where: str
) -> FileReport:
    """Scan, see what was read unfetched, fetch it, scan again: until a run read only real bytes."""
    size = image.size
    if image.address is None or size <= _WHOLE_BELOW:
        _fetch(remote, image, [(0, size)])
    else:
        _fetch(remote, image, [(0, _FIRST), (size - _FIRST, size)])
    began = time.monotonic()
    for done in range(MAX_ROUNDS):
        if COST_AWARE and done >= _MIN_ROUNDS and not _worth_it(remote, image, began):
            break
        if not image.complete and not image.forget():
            break  # no proof of what the next run reads: read it all
        report = _scan_data(image.map, size, policy, where, max_opcodes)
        if image.complete:
            return report
        unread = image.read_unfilled()
        if unread is None:
            break
        if not unread:
            return report
        _fetch(remote, image, [_ahead(image, a, b) for a, b in unread])
    _fetch(remote, image, [(0, size)])
    return _scan_data(image.map, size, policy, where, max_opcodes)


def _worth_it(remote: _Remote, image: Image, began: float) -> bool:
    """Whether ranged runs so far cost less time than fetching the rest would."""
    rate = remote.fetched / max(remote.seconds, 1e-6)
    rest = image.have.count(0) * _PAGE
    return time.monotonic() - began < rest / max(rate, 1.0)


def _ahead(image: Image, first: int, end: int) -> tuple[int, int]:
    """The byte range to fetch for pages `[first, end)` read unfetched, with read-ahead.

    Only the start of the run is fetched: the scan read on through zeros (a
    search for a signature, a walk that found no opcode), which real bytes
    may end sooner. A read that continues a filled run (a pickle walked on,
    a stream decompressed) fetches as much again as that run holds (so a
    file read in order takes a logarithmic number of runs); a read away from anything fetched (past an array the walk
    skipped, a member's local header) fetches one small block. A next run
    that reads further fetches more.
    """
    run = first - 1 - image.have.rfind(0, 0, first) if first else 0
    start = first * _PAGE
    return start, min(image.size, start + max(run * _PAGE, _ISOLATED))


def _changed(
    remote: _Remote, policy: Policy, where: str, why: str, report: FileReport | None
) -> FileReport:
    message = (
        f"the file changed while it was being read: {why}; the bytes read may come from "
        "different versions, so nothing about it is verified"
    )
    finding = structural(policy, "changed-during-scan", message, where, None)
    findings = (*(report.findings if report is not None else ()), finding)
    return FileReport(
        path=where,
        verdict=verdict_of(list(findings)),
        format=report.format if report is not None else "unknown",
        findings=findings,
        size=max(remote.size, 0),
        pickles=report.pickles if report is not None else 0,
        opcodes=report.opcodes if report is not None else 0,
        fetched=remote.fetched,
    )


# -- many files, directories ---------------------------------------------------------------


def _listing(
    url: str, exclude: Sequence[str], *, sniff_later: bool = False
) -> Iterator[Found | tuple[_Remote, bool]]:
    """A URL's files: itself, or everything under a directory-like URL, by `walk`'s rules.

    A file whose name says nothing is chosen by its first bytes: read here, or
    with `sniff_later` by the caller (yielded with True, to pass to `_not_a_model`).
    """
    try:
        remote, info = _open(url)
    except ScanInputError as exc:
        yield Found(url, "error", _strip(url, exc.diagnostics()))
        return
    if info.get("type") != "directory":
        yield remote, False
        return
    fs, root = remote.fs, remote.path.rstrip("/")
    try:
        found = _retrying(lambda: fs.find(root, detail=True))
    except Exception as exc:
        yield Found(url, "error", f"cannot list: {_reason(exc)}")
        return
    base = url.rstrip("/")
    for path, entry in sorted(found.items()):
        rel = path[len(root) :].lstrip("/")
        shown = f"{base}/{rel}"
        parts = rel.split("/")
        if any(p in _SKIP_DIRS for p in parts[:-1]) or entry.get("type") == "directory":
            continue
        if any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(parts[-1], p) for p in exclude):
            yield Found(shown, "skip")
            continue
        size = entry.get("size")
        child = _Remote(fs, path, shown, size if isinstance(size, int) else -1, _identity(entry))
        unnamed = os.path.splitext(parts[-1])[1].lower() not in MODEL_SUFFIXES
        if unnamed and not sniff_later:
            if _not_a_model(child):
                yield Found(shown, "skip")
                continue
            unnamed = False
        yield child, unnamed


def _not_a_model(remote: _Remote) -> bool:
    """A listed file whose name says nothing, and whose first bytes are no model's."""
    try:
        head = remote.read([(0, min(_HEAD, remote.size))])[0] if remote.size > 0 else b""
    except Exception:
        return False  # let the scan report why it cannot be read
    return sniff(head, remote.size) is None


def _strip(url: str, text: str) -> str:
    prefix = f"{url}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def scan_urls(
    urls: Sequence[str],
    policy: Policy,
    *,
    max_opcodes: int = DEFAULT_MAX_OPCODES,
    concurrency: int = CONCURRENCY,
    exclude: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
) -> ScanReport:
    """Scan remote files and directory-like URLs; `concurrency` files are read at once.

    Every file's problem is that file's: an error in `ScanReport.errors`, or a
    verdict (`changed-during-scan`); the batch always ends.
    """
    skipped: list[str] = []
    errors: dict[str, str] = {}
    todo: list[tuple[_Remote, bool]] = []
    workers = max(1, concurrency)
    with ThreadPoolExecutor(workers) as pool:
        # Each URL's first request (and a directory's listing) runs concurrently too.
        for found in pool.map(lambda url: list(_listing(url, exclude, sniff_later=True)), urls):
            for item in found:
                if isinstance(item, Found):
                    if item.kind == "skip":
                        skipped.append(item.path)
                    else:
                        errors[item.path] = item.reason or "cannot read"
                else:
                    todo.append(item)
    reports: list[FileReport] = []

    def one(item: tuple[_Remote, bool]) -> FileReport | tuple[str, str] | str:
        remote, sniffed = item
        try:
            if sniffed and _not_a_model(remote):
                return remote.url  # skipped, as a local walk skips it
            return _scan_remote(remote, policy, max_opcodes, remote.url)
        except ScanInputError as exc:
            return remote.url, _strip(remote.url, exc.diagnostics())
        except Exception as exc:  # one file's failure never ends the batch
            return remote.url, f"cannot read: {_reason(exc)}"

    with ThreadPoolExecutor(workers) as pool:
        for done, result in enumerate(pool.map(one, todo), 1):
            if isinstance(result, FileReport):
                reports.append(result)
            elif isinstance(result, str):
                skipped.append(result)
            else:
                errors[result[0]] = result[1]
            if progress is not None:
                progress(done, len(todo))
    reports.sort(key=lambda r: r.path)
    return ScanReport(
        files=tuple(reports),
        skipped=tuple(sorted(skipped)),
        errors=dict(sorted(errors.items())),
    )


def combine(first: ScanReport, second: ScanReport) -> ScanReport:
    """Two batches' results as one report, sorted by path."""
    return ScanReport(
        files=tuple(sorted((*first.files, *second.files), key=lambda r: r.path)),
        skipped=tuple(sorted((*first.skipped, *second.skipped))),
        errors=dict(sorted({**first.errors, **second.errors}.items())),
        skip_reasons=dict(sorted({**first.skip_reasons, **second.skip_reasons}.items())),
    )
