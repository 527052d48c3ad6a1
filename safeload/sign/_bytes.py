"""Comparing bytes held in memory with signed digests, optionally in a background thread.

A guarded loader reads a model file once into private memory and checks
*those bytes* against the signature while it parses them, so a file replaced
on disk between the check and the load is never loaded. hashlib releases the
GIL, so the hash really runs beside the parser.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..errors import DigestMismatchError
from ._statement import HASHES, Ranges, shard_ranges

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["CHUNK", "Expected", "Filled", "PendingCheck", "byte_view"]


class Filled(Protocol):
    """Bytes arriving in a buffer from its start, such as a file being read into it."""

    def wait(self, pos: int) -> None:
        """Return once bytes [0, pos) are in and final; raise if they never will be."""


CHUNK = 1 << 20
"""Fewest bytes per hash update. Slices of a memoryview, so a large buffer is
never copied, and a cancelled check stops within one chunk."""
MAX_CHUNK = 64 << 20
"""Most bytes per hash update (about 30 ms of SHA-256)."""


def _chunk(size: int) -> int:
    """Bytes per update for `size` bytes: about 16 updates, within the bounds.

    hashlib releases the GIL during an update, but the checking thread needs it
    back between two, and a parser that holds it (the C unpickler, torch copying
    storages) gives it up only every switch interval (5 ms): with 1 MiB updates
    the check would mostly wait, and finish only after the parse.
    """
    return min(MAX_CHUNK, max(CHUNK, size // 16))


def byte_view(data: Buffer) -> memoryview:
    """A flat byte view of `data` (bytes, bytearray, memoryview, mmap, ...); release it after."""
    view = memoryview(data)
    if not view.c_contiguous:
        view.release()
        raise TypeError("bytes to check must be one contiguous buffer")
    if view.ndim == 1 and view.format == "B":
        return view
    try:
        return view.cast("B")
    finally:
        view.release()


@dataclass(frozen=True)
class Expected:
    """What one file's bytes must be: its signed ranges and the error to raise otherwise."""

    ranges: Ranges
    hash_type: str
    shard_size: int | None
    mismatch: Callable[[], DigestMismatchError]

    def check_size(self, size: int) -> None:
        """Raise unless the ranges cover exactly `size` bytes (one whole file, or every
        shard of it, as model-signing cuts them): decided before anything is hashed."""
        if self.shard_size is None:
            covered = list(self.ranges) == [(0, None)]
        else:
            covered = sorted(self.ranges, key=lambda r: r[0]) == shard_ranges(size, self.shard_size)
        if not covered:
            raise self.mismatch()

    def check(
        self,
        view: memoryview,
        cancelled: threading.Event | None = None,
        filled: Filled | None = None,
    ) -> None:
        """Raise unless `view` is exactly the signed bytes (with `filled`: as they arrive)."""
        self.check_size(len(view))
        for (start, end), want in sorted(self.ranges.items(), key=lambda item: item[0][0]):
            stop = len(view) if end is None else end
            hasher = HASHES[self.hash_type]()
            chunk = _chunk(stop - start)
            for offset in range(start, stop, chunk):
                if cancelled is not None and cancelled.is_set():
                    raise CancelledError("the digest check was cancelled")
                upto = min(offset + chunk, stop)
                if filled is not None:
                    filled.wait(upto)
                hasher.update(view[offset:upto])
            if not hmac.compare_digest(hasher.hexdigest(), want):
                raise self.mismatch()

    def check_now(self, data: Buffer) -> None:
        """Check `data` in the calling thread."""
        view = byte_view(data)
        try:
            self.check(view)
        finally:
            view.release()

    def start(self, data: Buffer, name: str, filled: Filled | None = None) -> PendingCheck:
        """Check `data` in a new thread; a size that cannot match raises here, at once.

        With `filled`, `data` is still being written: each range is hashed once
        `filled.wait` says it is in, so hashing follows the read instead of
        waiting for its end.
        """
        view = byte_view(data)
        try:
            self.check_size(len(view))
        except BaseException:
            view.release()
            raise

        def work(cancelled: threading.Event) -> None:
            try:
                self.check(view, cancelled, filled)
            finally:
                view.release()  # a bytearray can be resized again, an mmap closed

        return PendingCheck(work, name)


class PendingCheck:
    """A digest check running in a background thread (see `Authenticated.start_check`).

    `result()` waits for it, then returns None or raises what the check found.
    Never deserialize the bytes before `result()` has returned.
    """

    def __init__(self, work: Callable[[threading.Event], None], name: str) -> None:
        self._cancelled = threading.Event()
        self._error: BaseException | None = None
        self._work: Callable[[threading.Event], None] | None = work
        # A daemon: a check whose caller gave up must not keep the interpreter alive.
        self._thread = threading.Thread(
            target=self._run, name=f"safeload-check:{name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        # Dropped here so the buffer is not kept alive by this object after the check.
        work, self._work = self._work, None
        if work is None:
            return
        try:
            work(self._cancelled)
        except BaseException as exc:  # handed to whoever calls result()
            self._error = exc

    def done(self) -> bool:
        """True once the check has finished, whatever its outcome."""
        return not self._thread.is_alive()

    def cancel(self) -> None:
        """Stop hashing within one chunk; `result()` then raises `CancelledError`."""
        self._cancelled.set()

    def result(self, timeout: float | None = None) -> None:
        """Wait for the check; None when the bytes are the signed bytes.

        Raises the check's `SignatureError` subclass (`DigestMismatchError` or
        its `SubjectMismatchError`), `CancelledError` after `cancel()`, or
        `TimeoutError` if it is still running after `timeout` seconds.
        """
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the digest check is still running after {timeout} s")
        if self._error is not None:
            raise self._error
