"""Open a file once and hold its bytes in private memory.

The guarded loader verifies, scans and unpickles one buffer. It is filled
here from one open file descriptor: `O_NOFOLLOW` (a symlink is refused,
not followed), `fstat` must say regular file (a FIFO would block, a device
never ends), and the bytes are copied into anonymous memory. A shared or
private file mapping would not do: pages not yet touched still show a file
rewritten after the check. Nothing is reopened by path afterwards.
"""

from __future__ import annotations

import errno
import io
import mmap
import os
import stat
import threading
from concurrent.futures import CancelledError
from pathlib import Path, PurePosixPath

from ..errors import LoadInputError

__all__ = [
    "HeldBuffer",
    "PrivateFile",
    "open_private",
    "open_private_in",
    "read_private",
    "read_private_in",
]

_FILL_CHUNK = 8 << 20
"""Bytes read between two reports to a waiting signature check."""


class HeldBuffer(mmap.mmap):
    """The guarded loader's private copy of a file: anonymous, writable memory.

    Writable and page-aligned so that loaded arrays and tensors can be views
    of it (`numpy.frombuffer`, `torch.frombuffer`) instead of second copies:
    one copy of the file, as the plain loaders make. Nothing writes to it
    while a load runs (a signature check may be hashing it); afterwards it
    belongs to the arrays that view it, and lives as long as one of them.
    It is never closed by safeload, so handing out views of it is safe.
    """


_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
# Non-blocking, so that opening a FIFO returns at once (and fstat refuses it)
# instead of waiting for a writer.
_FILE_FLAGS = _FLAGS | getattr(os, "O_NONBLOCK", 0)
_DIR_FLAGS = _FLAGS | getattr(os, "O_DIRECTORY", 0)


def _refusal(path: object, exc: OSError) -> LoadInputError:
    if exc.errno == errno.ELOOP:
        return LoadInputError(
            f"{path}: is a symbolic link; the guarded loader opens only regular files "
            "(pass the link's target if you trust it)"
        )
    if exc.errno == errno.ENOENT:
        return LoadInputError(f"{path}: no such file")
    return LoadInputError(f"{path}: cannot open: {exc.strerror or exc}")


class PrivateFile:
    """A regular file opened once, whose bytes `fill()` reads into private memory.

    The buffer exists (sized by `fstat`) before it is filled, so a signature
    check can hash it while it is read: `wait(pos)` returns once its first
    `pos` bytes are in and final. Reading and hashing both release the GIL, so
    a signed load costs about what the slower of the two costs, not their sum.
    """

    def __init__(self, fd: int, shown: object) -> None:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = (
                "a FIFO"
                if stat.S_ISFIFO(info.st_mode)
                else "a device"
                if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
                else "a directory"
                if stat.S_ISDIR(info.st_mode)
                else "not a regular file"
            )
            raise LoadInputError(f"{shown}: is {kind}; the guarded loader reads only regular files")
        os.set_blocking(fd, True)
        self._shown = shown
        self._raw: io.FileIO | None = os.fdopen(os.dup(fd), "rb", buffering=0)
        self._cond = threading.Condition()
        self._failed = False
        self.size = info.st_size
        self.buffer: HeldBuffer | bytes
        if self.size == 0:
            # Empty, or a file whose size fstat does not know (procfs): read now.
            with self._raw:
                self.buffer = self._raw.readall()
            self._raw = None
            self._filled = len(self.buffer)
        else:
            # MAP_PRIVATE: a MAP_SHARED anonymous map (mmap's default) would be
            # written through by a forked child.
            self.buffer = HeldBuffer(-1, self.size, flags=mmap.MAP_PRIVATE)
            self._filled = 0

    def fill(self) -> HeldBuffer | bytes:
        """Read the whole file into `buffer` (once); refused if its size changes meanwhile."""
        raw, self._raw = self._raw, None
        if raw is None:
            return self.buffer
        got = 0
        more = b""
        try:
            with raw, memoryview(self.buffer) as view:
                while got < self.size:
                    n = raw.readinto(view[got : min(self.size, got + _FILL_CHUNK)])
                    if not n:
                        break
                    got += n
                    with self._cond:
                        self._filled = got
                        self._cond.notify_all()
                if got == self.size:
                    more = raw.read(1)
        except BaseException:
            self._fail()
            raise
        if got == self.size and not more:
            return self.buffer
        self._fail()
        # What was read is one snapshot of the file only if it is read again whole,
        # and the length fstat gave is stale.
        raise LoadInputError(
            f"{self._shown}: changed size while it was being read ({self.size} bytes by "
            f"fstat, {got + len(more)}{'+' if more else ''} read); load it again once it "
            "is written"
        )

    def _fail(self) -> None:
        with self._cond:
            self._failed = True
            self._cond.notify_all()

    def wait(self, pos: int) -> None:
        """Return once bytes [0, pos) are in; raise if the file could not be read."""
        with self._cond:
            while self._filled < pos and not self._failed:
                self._cond.wait()
            if self._filled < pos:
                raise CancelledError(f"{self._shown} could not be read whole")


def open_private(path: str | os.PathLike[str]) -> PrivateFile:
    """Regular file `path`, opened once; its bytes are read by `fill()`."""
    try:
        fd = os.open(path, _FILE_FLAGS)
    except OSError as exc:
        raise _refusal(path, exc) from None
    try:
        return PrivateFile(fd, path)
    finally:
        os.close(fd)


def read_private(path: str | os.PathLike[str]) -> HeldBuffer | bytes:
    """The bytes of regular file `path`, read once through one descriptor."""
    return open_private(path).fill()


def _is_symlink(part: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(part, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def read_private_in(root: Path, name: str) -> HeldBuffer | bytes:
    """The bytes of file `name` (a POSIX path) inside directory `root`."""
    return open_private_in(root, name).fill()


def open_private_in(root: Path, name: str) -> PrivateFile:
    """File `name` (a POSIX path) inside directory `root`, opened once (see `PrivateFile`).

    Every component is opened relative to the directory handle above it with
    `O_NOFOLLOW`, so a symlink swapped into the path is refused, not followed.
    """
    parts = PurePosixPath(name).parts
    if not parts or any(p in ("", ".", "..") for p in parts) or name.startswith("/"):
        raise LoadInputError(f"{root}: {name!r} is not a path inside the signed directory")
    try:
        fd = os.open(root, _DIR_FLAGS)
    except OSError as exc:
        raise _refusal(root, exc) from None
    try:
        for part in parts[:-1]:
            try:
                inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if _is_symlink(part, fd):  # O_NOFOLLOW | O_DIRECTORY says ENOTDIR
                    raise LoadInputError(
                        f"{root / name}: {part!r} on its path is a symbolic link; a file in a "
                        "signed directory is opened only through the directories signed"
                    ) from None
                raise _refusal(root / name, exc) from None
            os.close(fd)
            fd = inner
        try:
            file_fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=fd)
        except OSError as exc:
            raise _refusal(root / name, exc) from None
        try:
            return PrivateFile(file_fd, root / name)
        finally:
            os.close(file_fd)
    finally:
        os.close(fd)
