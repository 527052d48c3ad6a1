"""`guard()`: route existing `pickle`/`joblib`/`numpy`/`pandas`/`torch` loads through
the guarded loader, without editing their call sites.

>>> with safeload.guard(trust=trust):  # doctest: +SKIP
...     model = joblib.load("model.joblib")   # verified, scanned, restricted

`guard().install()` does it for the whole process (until `uninstall()`).
The patch replaces the module attributes `pickle.load`, `pickle.loads`,
`joblib.load`, `numpy.load`, `pandas.read_pickle` and `torch.load` (and the
aliases `pandas.io.pickle.read_pickle`, `joblib.numpy_pickle.load`), so it
covers code that calls them through their modules. A reference taken before
the patch (`from pickle import loads` at import time) is not covered, nor is
`pickle.Unpickler` used directly: install the guard first thing in the
process. Installing imports those of the libraries that are installed (so
that their attributes can be replaced). The patch is process-wide while
active, so `with guard()` in one thread also guards the others.
"""

from __future__ import annotations

import importlib
import io
import os
import sys
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from .._machine.walker import DEFAULT_MAX_OPCODES, walk_one
from ..errors import MissingSignatureError, UnsupportedFormatError
from ..policy import Policy
from ..sign import TrustStore, locate_signature
from ._guarded import load, loads

__all__ = ["Guard", "guard"]

_lock = threading.RLock()
_active: list[Guard] = []
_originals: dict[tuple[str, str], Any] = {}

#: (module, attribute) pairs the guard replaces, when the module is importable.
_TARGETS = (
    ("pickle", "load"),
    ("pickle", "loads"),
    ("joblib", "load"),
    ("joblib.numpy_pickle", "load"),
    ("numpy", "load"),
    ("pandas", "read_pickle"),
    ("pandas.io.pickle", "read_pickle"),
    ("torch", "load"),
)


class Guard:
    """Settings for guarded loads made through the patched functions."""

    def __init__(
        self,
        *,
        trust: TrustStore | None = None,
        policy: Policy | None = None,
        allow: Iterable[str] = (),
        require_signature: bool = True,
    ) -> None:
        if require_signature and trust is None:
            raise TypeError(
                "guard() verifies signatures: pass trust=TrustStore.load(...), "
                "or require_signature=False"
            )
        self.trust = trust
        self.policy = policy
        self.allow = tuple(allow)
        self.require_signature = require_signature
        self._installed = False

    # -- the guarded replacements -------------------------------------------------------

    def _options(self) -> dict[str, Any]:
        return {
            "trust": self.trust,
            "policy": self.policy,
            "allow": self.allow,
            "require_signature": self.require_signature,
        }

    def load_path(self, path: str | os.PathLike[str], map_location: Any = None) -> Any:
        """What every patched loader does with a file name."""
        return load(path, map_location=map_location, **self._options())

    def load_file(self, handle: Any, map_location: Any = None, *, one_pickle: bool = False) -> Any:
        """A patched loader given an open file: its bytes from the current position.

        The signature is the one `load` would use for the file the handle names;
        bytes with no file name (`pickle.loads`, `io.BytesIO`) have none, so a
        guard that requires signatures refuses them with `MissingSignatureError`.
        With `one_pickle` (`pickle.load`), the handle is left after the pickle
        it read, and at the end of the file `EOFError` is raised, as `pickle.load`
        does: loops over a file of several pickles read each in turn (every
        load scans all that follows, and refuses the file if any of it is unsafe).
        """
        name = getattr(handle, "name", None)
        seekable = getattr(handle, "seekable", None)
        start = handle.tell() if one_pickle and seekable is not None and seekable() else None
        data = handle.read()
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError("a guarded load needs a binary file")
        if one_pickle and not data:
            raise EOFError("Ran out of input")
        location = name if isinstance(name, str) else "<file>"
        signature: str | os.PathLike[str] | None = None
        member, subject = ".", None
        if self.require_signature:
            if not isinstance(name, str) or not os.path.lexists(name):
                raise MissingSignatureError(
                    f"{location}: bytes that are not read from a named file carry no "
                    "signature; a guard with require_signature=True refuses them (verify "
                    "them with safeload.loads(data, signature=..., trust=...))"
                )
            signature, root, member = locate_signature(name)
            subject = root.name  # the signed name must be the file's (or its directory's)
        obj = loads(
            data, signature=signature, name=member, location=location,
            map_location=map_location, subject=subject, **self._options(),
        )  # fmt: skip
        if start is not None:
            handle.seek(start + walk_one(data, 0, len(data), DEFAULT_MAX_OPCODES).end)
        return obj

    def load_any(self, source: Any, map_location: Any = None) -> Any:
        if isinstance(source, str | os.PathLike):
            return self.load_path(source, map_location)
        if hasattr(source, "read"):
            return self.load_file(source, map_location)
        raise TypeError(f"cannot load from {type(source).__name__}")

    # -- installing ------------------------------------------------------------------

    def install(self) -> Guard:
        """Patch the loaders for the whole process; returns self."""
        with _lock:
            if self._installed:
                return self
            if not _active:
                _patch()
            _active.append(self)
            self._installed = True
        return self

    def uninstall(self) -> None:
        """Undo `install()` (the last guard installed restores the originals)."""
        with _lock:
            if not self._installed:
                return
            _active.remove(self)
            self._installed = False
            if not _active:
                _unpatch()

    def __enter__(self) -> Guard:
        return self.install()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.uninstall()


def guard(
    *,
    trust: TrustStore | None = None,
    policy: Policy | None = None,
    allow: Iterable[str] = (),
    require_signature: bool = True,
) -> Guard:
    """A guard for `with` blocks, or `.install()` for the whole process."""
    return Guard(trust=trust, policy=policy, allow=allow, require_signature=require_signature)


def _current() -> Guard:
    with _lock:
        if not _active:  # pragma: no cover - the patch is removed with the last guard
            raise RuntimeError("no safeload guard is active")
        return _active[-1]


# -- the replacement functions -------------------------------------------------------------


def _pickle_load(file: Any, *args: Any, **kwargs: Any) -> Any:
    return _current().load_file(file, one_pickle=True)


def _pickle_loads(data: Any, /, *args: Any, **kwargs: Any) -> Any:
    return _current().load_file(io.BytesIO(bytes(data)))


def _joblib_load(filename: Any, mmap_mode: Any = None, *args: Any, **kwargs: Any) -> Any:
    if mmap_mode is not None:
        raise UnsupportedFormatError(
            "joblib.load(mmap_mode=...) maps the file itself, after any check: the guarded "
            "loader reads it into memory instead; drop mmap_mode"
        )
    return _current().load_any(filename)


def _numpy_load(file: Any, mmap_mode: Any = None, *args: Any, **kwargs: Any) -> Any:
    if mmap_mode is not None:
        raise UnsupportedFormatError(
            "numpy.load(mmap_mode=...) maps the file itself, after any check: the guarded "
            "loader reads it into memory instead; drop mmap_mode"
        )
    return _current().load_any(file)


def _pandas_read_pickle(filepath_or_buffer: Any, *args: Any, **kwargs: Any) -> Any:
    return _current().load_any(filepath_or_buffer)


def _torch_load(f: Any, map_location: Any = None, *args: Any, **kwargs: Any) -> Any:
    return _current().load_any(f, map_location)


_REPLACEMENTS: dict[tuple[str, str], Callable[..., Any]] = {
    ("pickle", "load"): _pickle_load,
    ("pickle", "loads"): _pickle_loads,
    ("joblib", "load"): _joblib_load,
    ("joblib.numpy_pickle", "load"): _joblib_load,
    ("numpy", "load"): _numpy_load,
    ("pandas", "read_pickle"): _pandas_read_pickle,
    ("pandas.io.pickle", "read_pickle"): _pandas_read_pickle,
    ("torch", "load"): _torch_load,
}


def _patch() -> None:
    for module_name, attr in _TARGETS:
        module = sys.modules.get(module_name)
        if module is None:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
        _originals[(module_name, attr)] = getattr(module, attr)
        setattr(module, attr, _REPLACEMENTS[(module_name, attr)])


def _unpatch() -> None:
    for (module_name, attr), original in _originals.items():
        setattr(sys.modules[module_name], attr, original)
    _originals.clear()
