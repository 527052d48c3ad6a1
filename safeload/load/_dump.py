"""`dump()`: serialize and sign in one step, hashing while the bytes are written."""

from __future__ import annotations

import collections
import hashlib
import os
import pickle
import secrets
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from ..errors import SigningError
from ..sign import Signer, envelope_for_file, signature_path

__all__ = ["dump"]

_HASH_BACKLOG = 64 << 20
"""`dump()` lets the hashing thread fall at most this many bytes behind the writer."""

_COMPRESSOR_EXTENSIONS = {
    ".z": "zlib",
    ".gz": "gzip",
    ".bz2": "bz2",
    ".lzma": "lzma",
    ".xz": "xz",
    ".lz4": "lz4",
}


def _temp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")


def _subject(path: Path) -> str:
    return path.name if path.name not in ("", ".", "..") else path.resolve().name


class _HashingWriter:
    """A write-only file that hashes what passes through it in a second thread.

    hashlib and file writes both release the GIL, so hashing overlaps with
    serialization and I/O instead of adding to them, and the file is never
    read back.
    """

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._position = 0
        self._hash = hashlib.sha256()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._backlog = 0
        self._closed = False
        self._failure: BaseException | None = None
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="safeload-dump-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                with self._ready:
                    while not self._chunks and not self._closed:
                        self._ready.wait()
                    if not self._chunks:
                        return
                    chunk = self._chunks.popleft()
                self._hash.update(chunk)
                with self._ready:
                    self._backlog -= len(chunk)
                    self._ready.notify_all()
        except BaseException as exc:  # pragma: no cover - hashlib does not fail on bytes
            with self._ready:
                self._failure = exc
                self._ready.notify_all()

    def write(self, data: Any) -> int:
        chunk = data if type(data) is bytes else bytes(data)
        if not chunk:
            return 0
        self._raw.write(chunk)
        with self._ready:
            while self._backlog > _HASH_BACKLOG and self._failure is None:
                self._ready.wait()
            self._chunks.append(chunk)
            self._backlog += len(chunk)
            self._ready.notify_all()
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        self._raw.flush()

    def writable(self) -> bool:
        return True

    def finish(self) -> str:
        """Wait for the hashing thread; the hex SHA-256 of everything written."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        self._thread.join()
        if self._failure is not None:  # pragma: no cover
            raise self._failure
        return self._hash.hexdigest()


def _joblib_compress(path: Path, compress: Any) -> Any:
    """`compress` for a file object, as `joblib.dump` would pick it from `path`'s name."""
    if isinstance(compress, tuple):
        return compress
    if isinstance(compress, str):
        return (compress, None)
    level = None if compress is True else compress
    method = next((m for ext, m in _COMPRESSOR_EXTENSIONS.items() if path.name.endswith(ext)), None)
    if method is not None and level == 0:
        level = None
    if level == 0 or level is False:
        return 0
    return (method or "zlib", level)


def dump(
    obj: Any,
    path: str | os.PathLike[str],
    *,
    signer: Signer | Sequence[Signer],
    format: Literal["joblib", "pickle"] = "joblib",
    compress: Any = 0,
    protocol: int | None = None,
    durable: bool = False,
) -> Path:
    """Serialize `obj` to `path` and sign it, atomically; returns the signature path.

    The artifact and its signature are written to temporary files in the
    same directory and renamed into place, signature first, so a crash never
    leaves an unsigned or half-written artifact under `path` (an interrupted
    dump may leave a new signature next to the old artifact, which then fails
    verification). The hash is computed while writing. `compress` follows
    `joblib.dump` (including choosing the compressor from `path`'s
    extension); `format="pickle"` takes no compression. The renames make the
    dump atomic against a crash of the process; `durable=True` also fsyncs both
    files and the directory, so that a power loss cannot leave a half-written
    artifact either (joblib.dump itself never fsyncs, which is why it is not
    the default: it costs a disk flush per dump).
    """
    path = Path(path)
    if format not in ("joblib", "pickle"):
        raise ValueError(f"format must be 'joblib' or 'pickle', not {format!r}")
    if format == "pickle" and compress:
        raise ValueError("format='pickle' does not compress; use format='joblib'")
    dumper: Any = None
    if format == "joblib":
        try:
            import joblib  # type: ignore[import-untyped,unused-ignore]
        except ImportError:
            raise SigningError("format='joblib' needs joblib: pip install joblib") from None
        dumper = joblib.dump
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; dump() writes a single file")
    sig_path = signature_path(path)
    temp = _temp_name(path)
    sig_temp: Path | None = None
    try:
        with open(temp, "xb") as raw:
            writer = _HashingWriter(raw)
            try:
                if dumper is not None:
                    dumper(
                        obj, writer, compress=_joblib_compress(path, compress), protocol=protocol
                    )
                else:
                    pickle.dump(obj, writer, protocol=protocol)
            finally:
                digest = writer.finish()
            if durable:
                raw.flush()
                os.fsync(raw.fileno())
        envelope = envelope_for_file(_subject(path), digest, signer)
        sig_temp = _temp_name(sig_path)
        with open(sig_temp, "xb") as handle:
            handle.write(envelope)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(sig_temp, sig_path)
        os.replace(temp, path)
        if durable:
            _fsync_directory(path.parent)
    except BaseException:
        temp.unlink(missing_ok=True)
        if sig_temp is not None:
            sig_temp.unlink(missing_ok=True)
        raise
    return sig_path


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - not every platform opens directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
