"""The subprocess side of the differential oracle (tests/test_oracle.py).

Reads one JSON request per line on stdin (a list of base64 pickle streams) and
answers one JSON line per request on stdout: for every stream, the globals
CPython's own C unpickler asked for, in order.

Nothing named in a stream is ever imported or run: `find_class` only records
the raw `(module, name)` it receives and returns a fresh inert stub class, and
`persistent_load` returns a stub instance.  Every method the unpickler may call
on a stub (`__call__`, `__new__`, `__setstate__`, `append`, `extend`,
`__setitem__`, `add`, ...) does nothing and returns another stub, so REDUCE,
NEWOBJ, BUILD, APPEND(S), SETITEM(S) and ADDITEMS all go through without
touching anything real.  The process runs under `RLIMIT_AS` (1 GiB by
default, `argv[1]` in MiB), so streams that make the C unpickler allocate
gigabytes (huge memo indices, declared lengths) end in `MemoryError` here.

Name mapping.  The C unpickler applies `_compat_pickle` *inside*
`Unpickler.find_class`, so an override sees the raw names as written.  The C
unpickler does not expose its current protocol, so each stream is also run
through the pure-Python `pickle._Unpickler` (same protocol rules; `self.proto`
is readable in `find_class`) to learn the protocol in effect at each request.
The test uses those protocols only when both unpicklers asked for the same
raw names in the same order.

Streams are loaded the way a loader that reads every pickle does: a fresh
`Unpickler` per pickle over one file object, `load()` until EOF or the first
error (`pickle.load` in a loop).
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import resource
import sys
from typing import Any

assert pickle.Unpickler.__module__ == "_pickle", "the C unpickler is required"


class _StubBase:
    """An inert object: every operation the unpickler may perform is a no-op."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _StubBase:
        return object.__new__(_Stub)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _StubBase:
        return object.__new__(_Stub)

    def __setstate__(self, state: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        for _ in items:
            pass

    def add(self, item: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def __reduce__(self) -> Any:
        return (_Stub, ())


class _Stub(_StubBase):
    pass


def _stub_class(module: str, name: str) -> type:
    # A fresh class per request, so BUILD on one (setattr on the class) cannot
    # leak into another.
    return type("Stub", (_StubBase,), {"__module__": "oracle_stub"})


class _Recording(pickle.Unpickler):
    def __init__(self, fh: Any, names: list[list[Any]], persids: list[int]):
        super().__init__(fh)
        self._names = names
        self._persids = persids

    def find_class(self, module: str, name: str) -> Any:
        self._names.append([module, name])
        return _stub_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        self._persids.append(1)
        return object.__new__(_Stub)


class _PyRecording(pickle._Unpickler):  # type: ignore[name-defined,misc]
    def __init__(self, fh: Any, names: list[list[Any]]):
        super().__init__(fh)
        self._names = names

    def find_class(self, module: str, name: str) -> Any:
        self._names.append([module, name, self.proto])
        return _stub_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        return object.__new__(_Stub)


def _run(cls: Any, data: bytes, *args: Any) -> tuple[int, str | None]:
    """Load every pickle in `data` with a fresh unpickler each; (pickles, error)."""
    fh = io.BytesIO(data)
    count = 0
    while True:
        if fh.tell() >= len(data):
            return count, None
        try:
            cls(fh, *args).load()
        except EOFError:
            return count, "EOFError"
        except MemoryError:
            return count, "MemoryError"
        except RecursionError:
            return count, "RecursionError"
        except Exception as exc:  # any unpickling failure ends the loop, like a loader would
            return count, type(exc).__name__
        count += 1


def examine(data: bytes) -> dict[str, Any]:
    """What the C unpickler (and, for protocols, the Python one) asked for."""
    names: list[list[Any]] = []
    persids: list[int] = []
    pickles, error = _run(_Recording, data, names, persids)
    py_names: list[list[Any]] = []
    _, py_error = _run(_PyRecording, data, py_names)
    return {
        "names": names,
        "persids": len(persids),
        "pickles": pickles,
        "error": error,
        "py_names": py_names,
        "py_error": py_error,
    }


def main() -> None:
    limit_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    limit = limit_mib * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.setrecursionlimit(10_000)
    out = sys.stdout
    for line in sys.stdin:
        streams = json.loads(line)
        results = [examine(base64.b64decode(s)) for s in streams]
        out.write(json.dumps(results) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
