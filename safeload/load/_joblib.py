"""joblib files, read the way `joblib.load` reads them, through the policy.

joblib's `NumpyUnpickler` (a pure-Python unpickler) replaces each
`NumpyArrayWrapper` by the array whose raw bytes follow it in the stream.
This subclass keeps that, and changes what joblib trusts:

- every global goes through the policy's `find_class`;
- EXT opcodes are refused (the pure-Python unpickler resolves a code it saw
  before from `copyreg._extension_cache`, without calling `find_class`);
- persistent ids are refused (no `persistent_load`);
- an object array is its nested stream, read as joblib reads it: by a plain
  pure-Python unpickler (a wrapper in it stays a wrapper, no array bytes are
  read for it), with the same `find_class`, and then made native byte order
  (which fails on anything without a dtype, as in joblib);
- the legacy `NDArrayWrapper`, which opens a companion file named in the
  pickle, is refused.

And one thing it does differently for speed: when the stream lies in the
guarded loader's own writable buffer, a numeric array is a view of its
bytes there instead of a copy (joblib copies it from the file through a
256 KiB buffer). The buffer then lives as long as such an array does.
"""

from __future__ import annotations

import io
import math
import pickle
from collections.abc import Callable
from typing import IO, Any

from ..errors import UnsupportedFormatError

__all__ = ["HeldCursor", "load_joblib"]

FindClass = Callable[[str, str], Any]
"""The `find_class` of an `ImportGuard`: the walk of these bytes predicts every call."""


def _refuse_ext(self: Any) -> None:
    raise pickle.UnpicklingError(
        "EXT opcodes are refused: they resolve names through the process-wide copyreg "
        "registry, outside the policy"
    )


def _unpickler_class() -> type[Any]:
    try:
        from joblib import numpy_pickle  # type: ignore[import-untyped,unused-ignore]
    except ImportError:  # pragma: no cover - joblib is a dependency of the ml extra
        raise UnsupportedFormatError(
            "loading a joblib file needs joblib: pip install joblib"
        ) from None

    base: type[Any] = numpy_pickle.NumpyUnpickler
    wrapper_type = numpy_pickle.NumpyArrayWrapper
    legacy_type = numpy_pickle.NDArrayWrapper

    native = numpy_pickle._ensure_native_byte_order

    class GuardedNumpyUnpickler(base):  # type: ignore[misc]
        dispatch = base.dispatch.copy()

        def __init__(
            self,
            handle: IO[bytes] | HeldCursor,
            find_class: FindClass,
            buffer: Any = None,
            start: int = 0,
        ) -> None:
            super().__init__("", handle, ensure_native_byte_order=True)
            self._guarded_find_class = find_class
            self._buffer = buffer
            self._start = start
            if buffer is not None:
                # Also built for a nested stream in mid-file: keep the position.
                here = handle.tell()
                self._end = handle.seek(0, io.SEEK_END)
                handle.seek(here)

        def find_class(self, module: str, name: str) -> Any:
            return self._guarded_find_class(module, name)

        def persistent_load(self, pid: Any) -> Any:
            raise pickle.UnpicklingError("persistent ids are refused: joblib files have none")

        def load_build(self) -> None:
            pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]
            top = self.stack[-1]
            if isinstance(top, legacy_type):
                raise pickle.UnpicklingError(
                    "a legacy joblib NDArrayWrapper opens a companion file named in the "
                    "pickle; it is refused"
                )
            if isinstance(top, wrapper_type):
                self.stack.pop()
                self.stack.append(self._read_wrapper(top))

        def _read_wrapper(self, wrapper: Any) -> Any:
            if wrapper.dtype.hasobject:
                # `read_array`: a nested pickle stream in the same file, read by a
                # fresh `pickle._Unpickler` (no wrapper replaced in it) whose
                # `find_class` is this one's; its object is made native order
                # whatever it is, then `read` rebuilds a subclass around it.
                inner = GuardedPlainUnpickler(self.file_handle, self._guarded_find_class)
                array = native(inner.load())
                return self._subclass(wrapper, array)
            if self._buffer is None or wrapper.dtype.itemsize == 0:
                return wrapper.read(self, self.ensure_native_byte_order)
            return self._view_array(wrapper)

        def _subclass(self, wrapper: Any, array: Any) -> Any:
            """The end of `NumpyArrayWrapper.read`: another ndarray subclass is rebuilt
            around the data."""
            if hasattr(array, "__array_prepare__") and wrapper.subclass not in (
                self.np.ndarray,
                self.np.memmap,
            ):
                new_array = numpy_pickle._reconstruct(wrapper.subclass, (0,), "b")
                return new_array.__array_prepare__(array)
            return array

        def _view_array(self, wrapper: Any) -> Any:
            """`NumpyArrayWrapper.read` (no mmap), as a view of the held bytes."""
            handle = self.file_handle
            if wrapper.safe_get_numpy_array_alignment_bytes() is not None:
                padding = int.from_bytes(handle.read(1), byteorder="little")
                if padding:
                    handle.read(padding)
            dims = [int(n) for n in wrapper.shape]
            if any(n < 0 for n in dims):
                raise pickle.UnpicklingError(f"negative dimensions in array shape {dims}")
            size = math.prod(dims) * wrapper.dtype.itemsize
            at = handle.tell()
            if at + size > self._end or handle.seek(size, io.SEEK_CUR) != at + size:
                raise pickle.UnpicklingError(
                    f"EOF: reading array data, expected {size} bytes at offset {at}"
                )
            array = self.np.frombuffer(
                self._buffer, dtype=wrapper.dtype, count=math.prod(dims), offset=self._start + at
            )
            if wrapper.order == "F":
                array = array.reshape(wrapper.shape[::-1]).transpose()
            else:
                array = array.reshape(wrapper.shape)
            return self._subclass(wrapper, native(array))

        dispatch[pickle.BUILD[0]] = load_build

    class GuardedPlainUnpickler(pickle._Unpickler):
        """joblib's nested unpickler of an object array, with the guard's `find_class`."""

        dispatch = pickle._Unpickler.dispatch.copy()

        def __init__(self, handle: IO[bytes] | HeldCursor, find_class: FindClass) -> None:
            super().__init__(handle)
            self._guarded_find_class = find_class

        def find_class(self, module: str, name: str) -> Any:
            return self._guarded_find_class(module, name)

        def persistent_load(self, pid: Any) -> Any:
            raise pickle.UnpicklingError("persistent ids are refused: joblib files have none")

    for cls in (GuardedNumpyUnpickler, GuardedPlainUnpickler):
        for op in (pickle.EXT1, pickle.EXT2, pickle.EXT4):
            cls.dispatch[op[0]] = _refuse_ext
    return GuardedNumpyUnpickler


class HeldCursor:
    """A read-only file over `data[start:end]` that copies only what is read.

    joblib's unpickler is pure Python and wants `bytes` from `read`. Unlike a
    buffered reader, seeking past an array that is viewed in place costs
    nothing: no buffer is refilled from the new position.
    """

    __slots__ = ("_data", "_end", "_pos", "_start", "_view")

    def __init__(self, data: Any, start: int, end: int) -> None:
        self._data = data
        self._view = memoryview(data)
        self._start = self._pos = start
        self._end = end

    def read(self, size: int | None = -1, /) -> bytes:
        start = self._pos
        stop = self._end if size is None or size < 0 else min(self._end, start + size)
        self._pos = max(start, stop)
        return bytes(self._view[start:stop])

    def readinto(self, buffer: Any, /) -> int:
        with memoryview(buffer) as target, target.cast("B") as flat:
            n = max(0, min(len(flat), self._end - self._pos))
            flat[:n] = self._view[self._pos : self._pos + n]
            self._pos += n
            return n

    def readline(self, size: int | None = -1, /) -> bytes:
        stop = self._end if size is None or size < 0 else min(self._end, self._pos + size)
        newline = self._data.find(b"\n", self._pos, stop)
        return self.read((newline + 1 if newline >= 0 else stop) - self._pos)

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        base = {io.SEEK_SET: self._start, io.SEEK_CUR: self._pos, io.SEEK_END: self._end}[whence]
        if base + offset < self._start:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos - self._start

    def tell(self) -> int:
        return self._pos - self._start

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


_cached: type[Any] | None = None


def load_joblib(
    handle: IO[bytes] | HeldCursor, find_class: FindClass, buffer: Any = None, start: int = 0
) -> Any:
    """The object `joblib.load` would return for the stream in `handle` (no mmap).

    With `buffer`, the writable buffer that `handle` reads from position
    `start` on, numeric arrays are views of it.
    """
    global _cached
    if _cached is None:
        _cached = _unpickler_class()
    return _cached(handle, find_class, buffer, start).load()
