"""The locator: every reading a loader would deserialize from a file's bytes.

`locate(data)` sniffs the bytes (never the file name), opens every container
reading (zip, tar, npy/npz, joblib, compressed streams, PyTorch's formats)
and returns the pickle streams inside with their walks, plus notes on
container-level problems. It knows nothing of policy: the scanner judges
the readings, and the guarded loader deserializes the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from .._machine.walker import DEFAULT_MAX_OPCODES
from .containers import MAX_DEPTH, MAX_EXPANDED, Ctx, container_kind, scan_blob
from .readings import Compressed, Compression, Format, Located, Note, Reading, ReadingKind, Shape

__all__ = [
    "MAX_DEPTH",
    "MAX_EXPANDED",
    "Compressed",
    "Compression",
    "Format",
    "Located",
    "Note",
    "Reading",
    "ReadingKind",
    "Shape",
    "container_kind",
    "locate",
]


@contextmanager
def locate(
    data: Any,
    location: str = "<bytes>",
    *,
    size: int | None = None,
    max_opcodes: int = DEFAULT_MAX_OPCODES,
) -> Iterator[Located]:
    """Every reading of `data[0:size]`.

    A context manager: decompressed members may live in temporary mappings
    that the readings point into, released on exit.
    """
    size = len(data) if size is None else size
    with ExitStack() as stack:
        ctx = Ctx(max_opcodes=max_opcodes, stack=stack)
        shape = scan_blob(ctx, data, location, 0, 0, size)
        yield Located(location, size, shape, ctx.readings, ctx.notes)
