"""Streaming decompression into memory, bounded twice.

Output is produced 1 MiB at a time and kept in memory (never in a temporary
file): the scan walks it and the guarded loader deserializes the very same
buffer. Decompression stops as soon as the caller's limit for the file (a
ratio to its size, see `containers`) is passed, or when the process-wide
`Budget` of bytes held at once is spent: the workers of one `scan --jobs`
share that budget through a counter in shared memory, so N workers never
hold N times the cap.
"""

from __future__ import annotations

import bz2
import io
import lzma
import mmap
import os
import struct
import sys
import threading
import zlib
from collections.abc import Callable, Generator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import IO, Any

from .._machine.walker import TAIL_READ

_CHUNK = 1 << 20
BUDGET = 8 << 30
"""Decompressed bytes all files being scanned or loaded may hold at once (per process,
or per `scan --jobs` run: its workers share one budget)."""
AS_BYTES = 64 << 20
"""Output up to this size is handed out as `bytes` (what the unpickler reads fastest);
bigger output stays in its `bytearray`, so that it is never held twice."""
LZMA_MEMLIMIT = 256 << 20
"""What an xz/lzma header may make the decompressor allocate (xz -9 needs 65 MiB)."""

#: Magic prefixes, as joblib and pandas recognise them.
MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"]\x00\x00", "lzma"),
    (b"\x04\x22\x4d\x18", "lz4"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)


def compression_of(head: bytes) -> str | None:
    """The compressor whose magic starts `head` (zlib: joblib's `x` prefix)."""
    for magic, kind in MAGICS:
        if head.startswith(magic):
            return kind
    if len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0:
        return "zlib"
    return None


class Unavailable(Exception):
    """The decompressor is an optional dependency that is not installed."""


class Budget:
    """Decompressed bytes held at once, by this process or by every worker of a scan.

    Bytes are taken chunk by chunk and given back when the buffer holding them
    is released. The count lives in slots, one (pid, bytes held) pair per
    process drawing on the budget: a worker killed while it held bytes (the
    time limit, the out-of-memory killer) stops counting once it is gone,
    instead of leaking its bytes out of the budget for the rest of the run.
    """

    def __init__(self, total: int, slots: Any, lock: Any) -> None:
        self.total = total
        self._slots = slots
        """`[pid, held, pid, held, ...]`: a list, or a `multiprocessing.Array("q")`."""
        self._lock = lock
        self._pid = os.getpid()
        with lock:
            self._slot = self._claim()

    def _claim(self) -> int:
        free = None
        for i in range(0, len(self._slots), 2):
            pid = self._slots[i]
            if pid == self._pid:
                return i
            if free is None and (pid == 0 or not _alive(pid)):
                free = i
        if free is None:
            # More processes than slots (workers replaced faster than the dead are
            # reaped): this one gets a budget of its own rather than none.
            self._slots, self._lock = [self._pid, 0], threading.Lock()
            return 0
        self._slots[free] = self._pid
        self._slots[free + 1] = 0
        return free

    @classmethod
    def local(cls, total: int | None = None) -> Budget:
        """A budget for this process alone (default: `BUDGET` bytes)."""
        return cls(BUDGET if total is None else total, [0, 0], threading.Lock())

    @classmethod
    def shared(cls, total: int | None = None, *, processes: int = 64) -> Budget:
        """A budget for `processes` worker processes at a time, in shared memory; hand
        `handle` to each worker's initializer (`use_budget`)."""
        import multiprocessing

        slots = multiprocessing.Array("q", 2 * (processes + 1))
        return cls(BUDGET if total is None else total, slots, slots.get_lock())

    @property
    def handle(self) -> tuple[int, Any]:
        """What a worker needs to draw on this budget (see `use_budget`)."""
        return self.total, self._slots

    @property
    def left(self) -> int:
        """Bytes not held now by any living process."""
        with self._lock:
            return self.total - self._held()

    def _held(self) -> int:
        held = 0
        for i in range(0, len(self._slots), 2):
            amount = self._slots[i + 1]
            if amount and (i == self._slot or _alive(self._slots[i])):
                held += amount
        return held

    def take(self, n: int) -> bool:
        """Hold `n` more bytes, if that many are left."""
        with self._lock:
            if self._held() + n > self.total:
                return False
            self._slots[self._slot + 1] += n
            return True

    def give(self, n: int) -> None:
        """Release `n` bytes taken before."""
        with self._lock:
            self._slots[self._slot + 1] -= n


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_budget = Budget.local()


def budget() -> Budget:
    """The budget decompression in this process draws from."""
    return _budget


def size_text(n: int) -> str:
    """`n` bytes in the largest binary unit that divides it (8 GiB, 16 MiB)."""
    for shift, unit in ((30, "GiB"), (20, "MiB"), (10, "KiB")):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"


def use_budget(handle: tuple[int, Any]) -> None:
    """Draw on a `Budget.shared()` (its `handle`): a scan worker's initializer."""
    global _budget
    total, slots = handle
    _budget = Budget(total, slots, slots.get_lock())


@dataclass
class Expanded:
    """Decompressed output: `data[0:size]` (bytes, or a bytearray no one writes to)."""

    data: Any
    size: int
    error: str | None
    """Why decompression stopped early (corrupt input), or None."""
    stopped: str | None
    """"limit" (the caller's limit was passed) or "budget" (the bytes held at once by
    every file being read ran out), or None: the output was cut there."""
    trailing: int
    """Non-zero input bytes after the end of the compressed stream."""

    @property
    def over_limit(self) -> bool:
        """Decompression was cut short by a limit."""
        return self.stopped is not None


class _Range(io.RawIOBase):
    """A read-only file over `data[start:end]` without copying it."""

    def __init__(self, data: Any, start: int, end: int):
        super().__init__()
        self._data = data
        self._pos = start
        self._start = start
        self._end = end

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos - self._start

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: self._start, 1: self._pos, 2: self._end}[whence]
        self._pos = min(max(self._start, base + offset), self._end)
        return self._pos - self._start

    def readinto(self, buf: Any) -> int:
        n = min(len(buf), self._end - self._pos)
        if n <= 0:
            return 0
        # Copied once, from a view: slicing `bytes` or an mmap would copy twice.
        with memoryview(self._data) as view, view[self._pos : self._pos + n] as part:
            buf[:n] = part
        self._pos += n
        return n


class _CappedRange(_Range):
    """`_Range` whose `read(n)` allocates only what is left, however large `n` is.

    `io.BufferedReader.read(n)` and `RawIOBase.read(n)` allocate `n` bytes first:
    a tar header claiming a 2**40-byte PAX record made that a MemoryError (and a
    few GiB an allocation) before a byte was read.
    """

    def read(self, size: int | None = -1) -> bytes:
        left = self._end - self._pos
        n = left if size is None or size < 0 else min(size, left)
        if n <= 0:
            return b""
        with memoryview(self._data) as view, view[self._pos : self._pos + n] as part:
            chunk = bytes(part)
        self._pos += n
        return chunk


def capped_file(data: Any, start: int, end: int) -> IO[bytes]:
    """An unbuffered, seekable file over a byte range whose reads never allocate more
    than the range holds (for readers that trust a length field, such as tarfile)."""
    return _CappedRange(data, start, end)  # type: ignore[return-value]


def range_file(data: Any, start: int, end: int) -> IO[bytes]:
    """A buffered, seekable file object over a byte range (zero-copy)."""
    return io.BufferedReader(_Range(data, start, end), buffer_size=_CHUNK)


def _reader(kind: str, src: IO[bytes]) -> Any:
    metered = _Metered(src)
    if kind == "lz4":
        try:
            import lz4.frame
        except ImportError as exc:
            raise Unavailable("lz4 is not installed (pip install lz4)") from exc
        return _Counted(lz4.frame.LZ4FrameFile(metered, "rb"), metered)
    if kind == "zstd":
        try:
            import zstandard
        except ImportError as exc:
            raise Unavailable("zstandard is not installed (pip install zstandard)") from exc
        file: IO[bytes] = metered  # type: ignore[assignment]  # the file methods readers call
        reader = zstandard.ZstdDecompressor().stream_reader(file, read_across_frames=True)
        return _Counted(reader, metered)
    raise ValueError(kind)  # pragma: no cover


INPUT_SLACK = 1 << 20
"""Compressed bytes a stream may read beyond twice what it has output (`_Metered`)."""


class _Metered:
    """The compressed input of an lz4 or zstd reader, which must keep making output.

    A compressor's output is at most a little longer than its input, so a stream
    that has read more than twice its output plus `INPUT_SLACK` is none a compressor
    wrote: zstd reads zero bytes as empty raw blocks, so a zstd frame header in
    front of a 20 GB sparse file read all of it (minutes, and its pages in memory)
    to output nothing. Such a stream ends there as corrupt. (Skippable frames of
    that size are refused the same way; no ML library writes them.)
    """

    def __init__(self, src: Any) -> None:
        self._src = src
        self.consumed = 0
        self.allowed = INPUT_SLACK

    def _take(self, got: int) -> int:
        self.consumed += got
        if self.consumed > self.allowed:
            raise ValueError(
                f"{self.consumed} compressed bytes read for less than half as many out: "
                "not a stream a compressor wrote"
            )
        return got

    def read(self, size: int = -1) -> bytes:
        left = self.allowed - self.consumed + 1
        chunk: bytes = self._src.read(left if size is None or size < 0 else min(size, left))
        self._take(len(chunk))
        return chunk

    def readinto(self, buf: Any) -> int:
        with memoryview(buf) as view, view.cast("B") as flat:
            got = self._src.readinto(flat[: self.allowed - self.consumed + 1])
        return self._take(got or 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._src, name)


class _Counted:
    """A decompressing reader whose output raises its input's allowance (`_Metered`)."""

    def __init__(self, reader: Any, metered: _Metered) -> None:
        self._reader = reader
        self._metered = metered
        self._out = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:  # to the end, in steps the allowance can follow
            parts = []
            while part := self.read(_CHUNK):
                parts.append(part)
            return b"".join(parts)
        # The call may output up to `size` bytes: allowed for before it reads.
        metered = self._metered
        metered.allowed = max(metered.allowed, 2 * (self._out + size) + INPUT_SLACK)
        chunk: bytes = self._reader.read(size)
        self._out += len(chunk)
        return chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


_MAKERS: dict[str, Callable[[], Any]] = {
    "zlib": lambda: zlib.decompressobj(15),
    "deflate": lambda: zlib.decompressobj(-15),
    "gzip": lambda: zlib.decompressobj(31),
    "bz2": bz2.BZ2Decompressor,
    "xz": lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=LZMA_MEMLIMIT),
    # joblib and pandas read it with LZMAFile's FORMAT_AUTO, whose .lzma decoder is picky
    # (a dictionary size other than 2**n or 2**n + 2**(n-1) is refused; FORMAT_ALONE takes it).
    "lzma": lambda: lzma.LZMADecompressor(lzma.FORMAT_AUTO, memlimit=LZMA_MEMLIMIT),
    # Zip members (methods 12 and 14), as `zipfile` reads them: one stream each.
    "zip-bzip2": bz2.BZ2Decompressor,
}
ZIP_METHODS = {8: "deflate", 12: "zip-bzip2", 14: "zip-lzma"}
"""Zip compression methods `zipfile` (numpy.load, pandas) decompresses, by kind."""
_MULTI = {"gzip": b"\x1f\x8b", "bz2": b"BZh", "xz": b"\xfd7zXZ\x00"}
"""Formats whose readers (GzipFile, BZ2File, LZMAFile) continue into a next stream."""


def _chunks_stdlib(
    kind: str,
    data: Any,
    start: int,
    end: int,
    rest: list[int],
    room: Callable[[], int],
    make: Callable[[], Any] | None = None,
) -> Generator[bytes, None, None]:
    """Decompress with the stdlib's incremental objects; output in chunks of at most
    `room()` bytes, asked before each step (so a limit is never overshot by a chunk).

    Output produced before an error is yielded first, so a truncated stream's
    beginning is still scanned.
    """
    is_zlib = kind in ("zlib", "deflate", "gzip")
    dec = (make or _MAKERS[kind])()
    pos = start
    inp = b""
    while True:
        if is_zlib:
            if not inp:
                if pos >= end:
                    break
                inp = bytes(data[pos : min(end, pos + _CHUNK)])
                pos += len(inp)
            out = dec.decompress(inp, room())
            inp = dec.unconsumed_tail
        elif dec.needs_input and not dec.eof:
            if pos >= end:
                break
            inp = bytes(data[pos : min(end, pos + _CHUNK)])
            pos += len(inp)
            out = dec.decompress(inp, room())
        else:
            out = dec.decompress(b"", room())
        if out:
            yield out
        if dec.eof:
            tail = dec.unused_data + (dec.unconsumed_tail if is_zlib else b"")
            if kind in _MULTI and (tail or pos < end):
                more = tail + bytes(data[pos : min(end, pos + 8)])
                if more.startswith(_MULTI[kind]):
                    dec = _MAKERS[kind]()
                    inp = tail
                    if not is_zlib:
                        # feed the tail at the next needs_input turn
                        out = dec.decompress(inp, room())
                        if out:
                            yield out
                    continue
            rest.append(len(tail) - tail.count(0) + _nonzero(data, pos, end))
            return
    raise EOFError("the compressed stream is truncated")


def _zip_lzma(data: Any, start: int, end: int) -> tuple[Callable[[], Any], int]:
    """The raw LZMA decoder of a zip member (method 14) and where its stream starts.

    As `zipfile.LZMADecompressor`: a 2-byte version, a 2-byte length, that many
    bytes of LZMA1 properties, then the raw stream. A raw decoder takes no
    memory limit, so the dictionary the properties ask for is bounded here.
    """
    if end - start < 4:
        raise ValueError("the lzma zip member's header is truncated")
    (psize,) = struct.unpack("<H", bytes(data[start + 2 : start + 4]))
    if end - start <= 4 + psize:
        raise ValueError("the lzma zip member's properties are truncated")
    props = bytes(data[start + 4 : start + 4 + psize])
    decode = lzma._decode_filter_properties  # type: ignore[attr-defined]  # as zipfile
    filt = decode(lzma.FILTER_LZMA1, props)
    if filt.get("dict_size", 0) > LZMA_MEMLIMIT:
        raise ValueError(
            f"the lzma zip member asks for a {filt['dict_size']}-byte dictionary, more than "
            f"the {size_text(LZMA_MEMLIMIT)} allowed"
        )
    return (lambda: lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[filt])), start + 4 + psize


def _nonzero(data: Any, a: int, b: int) -> int:
    """The bytes of `data[a:b]` that are not zero padding.

    Only the first `TAIL_READ` bytes are read: a tail beyond them (a compressed
    stream in front of a sparse 20 GB file) counts whole, unread, so a stream
    followed by more than that is trailing data, never read to its end.
    """
    stop = min(b, a + TAIL_READ)
    count = b - stop
    for i in range(a, stop, _CHUNK):
        chunk = bytes(data[i : min(stop, i + _CHUNK)])
        count += len(chunk) - chunk.count(0)
    return count


def expand(
    kind: str,
    data: Any,
    start: int,
    end: int,
    limit: int,
    stack: ExitStack,
    *,
    budget: Budget | None = None,
    want: int | None = None,
) -> Expanded:
    """Decompress `data[start:end]` as `kind` into memory, stopping once the output
    passes `limit` bytes or `budget` (default: this process's) runs out.

    `want` (zip members read as `zipfile` reads them): the output ends, complete,
    once it holds that many bytes (the member's declared size), whatever follows.

    The bytes held are given back to the budget when `stack` closes. Raises
    `Unavailable` when the decompressor is not installed.
    """
    held = budget or _budget
    out = bytearray()
    error: str | None = None
    stopped: str | None = None
    rest: list[int] = []

    def room() -> int:
        # One byte past the limit shows that the stream goes on beyond it.
        end_at = limit + 1 if want is None else min(limit + 1, want)
        return max(1, min(_CHUNK, end_at - len(out)))

    chunks: Generator[bytes, None, None]
    if want == 0:
        chunks = _no_chunks()
    elif kind == "zip-lzma":
        try:
            make, body = _zip_lzma(data, start, end)
        except (ValueError, lzma.LZMAError) as exc:
            return Expanded(b"", 0, f"{kind} stream is corrupt: {exc}", None, 0)
        chunks = _chunks_stdlib(kind, data, body, end, rest, room, make)
    elif kind in _MAKERS:
        chunks = _chunks_stdlib(kind, data, start, end, rest, room)
    else:
        reader = _reader(kind, range_file(data, start, end))
        stack.callback(reader.close)
        chunks = _read_chunks(reader.read, room)
    try:
        for chunk in chunks:
            if len(out) + len(chunk) > limit:
                chunk = chunk[: limit - len(out)]
                stopped = "limit"
            if not held.take(len(chunk)):
                stopped = "budget"
                break
            out += chunk
            if stopped is not None or (want is not None and len(out) >= want):
                break
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError, RuntimeError) as exc:
        error = f"{kind} stream is corrupt: {exc}"
    except Exception as exc:  # third-party decompressors raise their own types
        error = f"{kind} stream is corrupt: {exc}"
    finally:
        stack.callback(held.give, len(out))
        chunks.close()
    # A cut stream is only scanned (it is never loaded): no copy of it either.
    result: Any = bytes(out) if len(out) <= AS_BYTES and stopped is None else out
    return Expanded(result, len(out), error, stopped, rest[0] if rest else 0)


def _no_chunks() -> Generator[bytes, None, None]:
    yield from ()


def _read_chunks(
    read: Callable[[int], bytes], room: Callable[[], int]
) -> Generator[bytes, None, None]:
    while True:
        chunk = read(room())
        if not chunk:
            return
        yield chunk


# -- streaming: decompress while the first pickle is walked, dropping array bytes --------

MARGIN = 64 << 10
"""Bytes a spool holds past the end it gives the walk: every read of one opcode
starting before that end lies inside them (the longest fixed argument is 9 bytes)."""
KEEP_HEAD = 64 << 10
"""Bytes at the start of a stream never dropped (what container sniffing reads)."""
KEEP_TAIL = 128 << 10
"""Bytes before the decompressed end never dropped (where a zip end record is searched)."""
WALK_AHEAD = 4 << 20
"""Bytes kept (not skipped) after which the walk along a spool is abandoned unless
it skipped more than it kept: a stream of mostly opcodes is decompressed whole,
as `expand` does, and the scan walks it once more only this far (the walk along
the spool is a first walk of the same bytes)."""
_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000 if sys.platform.startswith("linux") else 0)


class Abandon(Exception):
    """The walk along a spool stops: from here on every byte is kept."""


class Sparse(mmap.mmap):
    """The decompressed stream at its own offsets, in an anonymous map; the pages of
    array bytes the walk skipped are given back to the system (they read as zeros).

    While `spool` is set, `spool_more(need, n, skip_from, plain_stops)` decompresses further (see
    `Spool.more`): the walker calls it where it would otherwise stop at the end.
    """

    spool: Spool | None = None

    def spool_more(
        self, need: int, n: int, skip_from: int | None = None, plain_stops: bool = True
    ) -> int:
        spool = self.spool
        if spool is None:
            return n  # decompressed: the walk's end stands
        return spool.more(need, skip_from, plain_stops)


class Spool:
    """Decompress `data[start:end]` into a `Sparse` map while a walk reads it.

    The walk is given an end (`more`'s result) with `MARGIN` valid bytes past it,
    and asks for more where it would stop there. Where it skips a raw array
    (`skip_from`), those bytes are decompressed, counted and dropped, except the
    first `KEEP_HEAD` and last `KEEP_TAIL` bytes of the stream. `finish` then
    decompresses the rest, all of it kept. Every produced byte counts against
    `limit` and the budget exactly as `expand` counts it.

    `plain`: a plain `pickle.load` also reads this stream (gzip, bz2, xz,
    zstd): an array without a padding byte that stops it is opcodes to it, so
    the walk is abandoned there (`Abandon`) and nothing after is dropped.
    """

    def __init__(
        self,
        kind: str,
        data: Any,
        start: int,
        end: int,
        limit: int,
        stack: ExitStack,
        *,
        plain: bool,
        budget: Budget | None = None,
    ) -> None:
        self.kind = kind
        self.limit = limit
        self.plain = plain
        self._held = budget or _budget
        self.buf = Sparse(
            -1, limit + _CHUNK, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _NORESERVE
        )
        self.buf.spool = self
        self.size = 0
        self.done = False
        self.error: str | None = None
        self.stopped: str | None = None
        self._rest: list[int] = []
        self._skips: list[tuple[int, int]] = []
        self._dropped = 0
        """Bytes below this offset were considered for dropping."""
        self.released = 0
        """Bytes given back to the system."""
        self.abandoned = False
        self._skip_end = 0
        self._skipped = 0
        taken: list[int] = [0]
        self._taken = taken
        stack.callback(lambda: self._held.give(taken[0]))

        def room() -> int:
            return max(1, min(_CHUNK, limit + 1 - self.size))

        chunks: Generator[bytes, None, None]
        if kind in _MAKERS:
            chunks = _chunks_stdlib(kind, data, start, end, self._rest, room)
        else:
            reader = _reader(kind, range_file(data, start, end))
            stack.callback(reader.close)
            chunks = _read_chunks(reader.read, room)
        self._chunks = chunks
        stack.callback(chunks.close)

    def _produce(self) -> bool:
        """One more chunk into the map; False once the stream is done or cut."""
        if self.done:
            return False
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self.done = True
            return False
        except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError, RuntimeError) as exc:
            self.error, self.done = f"{self.kind} stream is corrupt: {exc}", True
            return False
        except Exception as exc:  # third-party decompressors raise their own types
            self.error, self.done = f"{self.kind} stream is corrupt: {exc}", True
            return False
        if self.size + len(chunk) > self.limit:
            chunk = chunk[: self.limit - self.size]
            self.stopped = "limit"
        if not self._held.take(len(chunk)):
            self.stopped, self.done = "budget", True
            return False
        self._taken[0] += len(chunk)
        self.buf[self.size : self.size + len(chunk)] = chunk
        self.size += len(chunk)
        if self.stopped is not None:
            self.done = True
        self._release()
        return not self.done

    def _release(self) -> None:
        """Give back the whole pages of skipped ranges that no reader will look at."""
        page = mmap.PAGESIZE
        upto = self.size - KEEP_TAIL
        for a, b in self._skips:
            lo = max(a, KEEP_HEAD, self._dropped)
            hi = min(b, upto)
            lo = -(-lo // page) * page
            hi = hi // page * page
            if hi > lo:
                self.buf.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
                self.released += hi - lo
                self._dropped = hi
        while self._skips and self._skips[0][1] <= self._dropped:
            self._skips.pop(0)

    def more(self, need: int, skip_from: int | None = None, plain_stops: bool = True) -> int:
        """Decompress until `need + MARGIN` bytes are there or the stream ends; the end
        the walk may read to (past it, `MARGIN` bytes are still valid). With
        `skip_from`, the bytes `[skip_from, need)` are a raw array the walk skips;
        `plain_stops`: a plain `pickle.load` stops before it (at a padding byte that
        is no opcode), so it never reads them either."""
        if skip_from is not None and not self.abandoned:
            if self.plain and not plain_stops:
                self.abandon()
            elif need > skip_from:
                self._skips.append((skip_from, need))
                self._skip_end = max(self._skip_end, need)
                self._skipped += need - skip_from
        elif self.abandoned or self._opcodes_ahead():
            # Mostly opcodes so far: walking them twice would cost more than
            # holding them saves.
            self.abandon()
            raise Abandon()
        while self.size < need + MARGIN and self._produce():
            pass
        return self.size if self.done else self.size - MARGIN

    def _opcodes_ahead(self) -> bool:
        kept = self.size - self._skipped
        return kept > WALK_AHEAD and self._skipped < kept

    def close(self) -> None:
        """Give the map and its bytes back (the stream is expanded again instead)."""
        self._held.give(self._taken[0])
        self._taken[0] = 0
        self._chunks.close()
        try:
            self.buf.close()
        except BufferError:  # a view of it is still alive: the collector unmaps it
            pass

    def abandon(self) -> None:
        """Stop dropping: every byte produced from here on is kept."""
        self.abandoned = True
        self._skips.clear()

    def finish(self) -> Expanded | None:
        """Decompress the rest (all kept). None when a dropped range reaches past the
        stream's end (a truncated array): the caller expands the stream again, whole,
        so that whatever reads a cut stream reads every byte of it."""
        self.abandon()
        self.buf.spool = None
        while self._produce():
            pass
        if self.released and self._skip_end > self.size:
            self.close()
            return None
        rest = self._rest[0] if self._rest else 0
        if not self.size:
            self.close()
            return Expanded(b"", 0, self.error, self.stopped, rest)
        try:
            # The map ends where the stream does, as an expanded buffer would:
            # reads past it fail instead of returning zeros.
            self.buf.resize(self.size)
        except (OSError, ValueError, BufferError, SystemError):
            self.close()
            return None
        return Expanded(self.buf, self.size, self.error, self.stopped, rest)
