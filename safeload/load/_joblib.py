"""joblib files, read the way `joblib.load` reads them, through the policy.

joblib's `NumpyUnpickler` (a pure-Python unpickler) replaces each
`NumpyArrayWrapper` by the array whose raw bytes follow it in the stream.
This subclass keeps that, and changes what joblib trusts:

- every global goes through the policy's `find_class`;
- EXT opcodes are refused (the pure-Python unpickler resolves a code it saw
  before from `copyreg._extension_cache`, without calling `find_class`);
- persistent ids are refused (no `persistent_load`);
- object arrays are unpickled by a nested unpickler of the same kind, not by
  whatever joblib's installed version does with them;
- the legacy `NDArrayWrapper`, which opens a companion file named in the
  pickle, is refused.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import IO, Any

from ..errors import UnsupportedFormatError

__all__ = ["load_joblib"]

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

    class GuardedNumpyUnpickler(base):  # type: ignore[misc]
        dispatch = base.dispatch.copy()

        def __init__(self, handle: IO[bytes], find_class: FindClass) -> None:
            super().__init__("", handle, ensure_native_byte_order=True)
            self._guarded_find_class = find_class

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
                # A nested pickle stream in the same file, read with the same rules.
                inner = GuardedNumpyUnpickler(self.file_handle, self._guarded_find_class)
                return inner.load()
            return wrapper.read(self, self.ensure_native_byte_order)

        dispatch[pickle.BUILD[0]] = load_build

    for op in (pickle.EXT1, pickle.EXT2, pickle.EXT4):
        GuardedNumpyUnpickler.dispatch[op[0]] = _refuse_ext
    return GuardedNumpyUnpickler


_cached: type[Any] | None = None


def load_joblib(handle: IO[bytes], find_class: FindClass) -> Any:
    """The object `joblib.load` would return for the stream in `handle` (no mmap)."""
    global _cached
    if _cached is None:
        _cached = _unpickler_class()
    return _cached(handle, find_class).load()
