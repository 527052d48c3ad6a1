"""Streaming decompression with a hard output limit.

Output is never produced unbounded: it goes to memory up to `SPOOL_IN_MEMORY`
bytes, then to an anonymous temporary file that is memory-mapped for the
scan, and decompression stops as soon as the caller's budget is spent.
"""

from __future__ import annotations

import bz2
import io
import lzma
import mmap
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import IO, Any

SPOOL_IN_MEMORY = 64 << 20
_CHUNK = 1 << 20

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


@dataclass
class Expanded:
    """Decompressed output: `data[0:size]` (bytes or a read-only mmap)."""

    data: Any
    size: int
    error: str | None
    """Why decompression stopped early (corrupt input), or None."""
    over_limit: bool
    trailing: int
    """Non-zero input bytes after the end of the compressed stream."""


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


def range_file(data: Any, start: int, end: int) -> IO[bytes]:
    """A buffered, seekable file object over a byte range (zero-copy)."""
    return io.BufferedReader(_Range(data, start, end), buffer_size=_CHUNK)


class _Spool:
    def __init__(self, stack: ExitStack):
        self._stack = stack
        self._buf = bytearray()
        self._file: IO[bytes] | None = None
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._file is None and len(self._buf) + len(chunk) <= SPOOL_IN_MEMORY:
            self._buf += chunk
            return
        if self._file is None:
            self._file = self._stack.enter_context(tempfile.TemporaryFile())
            self._file.write(self._buf)
            self._buf = bytearray()
        self._file.write(chunk)

    def result(self) -> Any:
        if self._file is None:
            return bytes(self._buf)
        self._file.flush()
        return self._stack.enter_context(mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ))


def _reader(kind: str, src: IO[bytes]) -> Any:
    if kind == "lz4":
        try:
            import lz4.frame
        except ImportError as exc:
            raise Unavailable("lz4 is not installed (pip install lz4)") from exc
        return lz4.frame.LZ4FrameFile(src, "rb")
    if kind == "zstd":
        try:
            import zstandard
        except ImportError as exc:
            raise Unavailable("zstandard is not installed (pip install zstandard)") from exc
        return zstandard.ZstdDecompressor().stream_reader(src, read_across_frames=True)
    raise ValueError(kind)  # pragma: no cover


_MAKERS: dict[str, Callable[[], Any]] = {
    "zlib": lambda: zlib.decompressobj(15),
    "deflate": lambda: zlib.decompressobj(-15),
    "gzip": lambda: zlib.decompressobj(31),
    "bz2": bz2.BZ2Decompressor,
    "xz": lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ),
    "lzma": lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE),
}
_MULTI = {"gzip": b"\x1f\x8b", "bz2": b"BZh", "xz": b"\xfd7zXZ\x00"}
"""Formats whose readers (GzipFile, BZ2File, LZMAFile) continue into a next stream."""


def _chunks_stdlib(kind: str, data: Any, start: int, end: int, rest: list[int]) -> Iterator[bytes]:
    """Decompress with the stdlib's incremental objects; output in bounded chunks.

    Output produced before an error is yielded first, so a truncated stream's
    beginning is still scanned.
    """
    is_zlib = kind in ("zlib", "deflate", "gzip")
    dec = _MAKERS[kind]()
    pos = start
    inp = b""
    while True:
        if is_zlib:
            if not inp:
                if pos >= end:
                    break
                inp = bytes(data[pos : min(end, pos + _CHUNK)])
                pos += len(inp)
            out = dec.decompress(inp, _CHUNK)
            inp = dec.unconsumed_tail
        elif dec.needs_input and not dec.eof:
            if pos >= end:
                break
            inp = bytes(data[pos : min(end, pos + _CHUNK)])
            pos += len(inp)
            out = dec.decompress(inp, _CHUNK)
        else:
            out = dec.decompress(b"", _CHUNK)
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
                        out = dec.decompress(inp, _CHUNK)
                        if out:
                            yield out
                    continue
            rest.append(len(tail) - tail.count(0) + _nonzero(data, pos, end))
            return
    raise EOFError("the compressed stream is truncated")


def _nonzero(data: Any, a: int, b: int) -> int:
    count = 0
    for i in range(a, b, _CHUNK):
        chunk = bytes(data[i : min(b, i + _CHUNK)])
        count += len(chunk) - chunk.count(0)
    return count


def expand(kind: str, data: Any, start: int, end: int, limit: int, stack: ExitStack) -> Expanded:
    """Decompress `data[start:end]` as `kind`, stopping after `limit` output bytes.

    Raises `Unavailable` when the decompressor is not installed.
    """
    spool = _Spool(stack)
    error: str | None = None
    over = False
    trailing = 0
    rest: list[int] = []
    chunks: Iterator[bytes]
    if kind in _MAKERS:
        chunks = _chunks_stdlib(kind, data, start, end, rest)
    else:
        src = range_file(data, start, end)
        reader = _reader(kind, src)
        stack.callback(reader.close)
        chunks = iter(_read_chunks(reader.read))
    try:
        for chunk in chunks:
            if spool.size + len(chunk) > limit:
                spool.write(chunk[: limit - spool.size])
                over = True
                break
            spool.write(chunk)
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError, RuntimeError) as exc:
        error = f"{kind} stream is corrupt: {exc}"
    except Exception as exc:  # third-party decompressors raise their own types
        error = f"{kind} stream is corrupt: {exc}"
    if rest:
        trailing = rest[0]
    return Expanded(spool.result(), spool.size, error, over, trailing)


def _read_chunks(read: Callable[[int], bytes]) -> Iterator[bytes]:
    while True:
        chunk = read(_CHUNK)
        if not chunk:
            return
        yield chunk
