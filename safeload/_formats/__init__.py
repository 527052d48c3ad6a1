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

from .._machine.walker import DEFAULT_MAX_OPCODES, internal_error_message
from .containers import (
    DEFAULT_MAX_EXPANSION,
    EXPANSION_FLOOR,
    MAX_DEPTH,
    MAX_EXPANDED,
    Ctx,
    container_kind,
    scan_blob,
)
from .readings import Compressed, Compression, Format, Located, Note, Reading, ReadingKind, Shape

__all__ = [
    "DEFAULT_MAX_EXPANSION",
    "EXPANSION_FLOOR",
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
    max_expansion: float | None = None,
    stream: bool = False,
) -> Iterator[Located]:
    """Every reading of `data[0:size]`.

    A context manager: decompressed members live in buffers that the readings
    point into; on exit they are released and given back to the process's
    decompression budget. `max_expansion` is the decompressed bytes the file may
    produce per byte of file (default `DEFAULT_MAX_EXPANSION`). `stream` (a scan
    that loads nothing): the raw array bytes a walk skips inside a compressed stream
    are not held, and `Located.expanded` does not list that stream.
    """
    size = len(data) if size is None else size
    ratio = DEFAULT_MAX_EXPANSION if max_expansion is None else max_expansion
    with ExitStack() as stack:
        ctx = Ctx(
            max_opcodes=max_opcodes, stack=stack, size=size, max_expansion=ratio, stream=stream
        )
        try:
            shape = scan_blob(ctx, data, location, 0, 0, size)
        except Exception as exc:  # the last resort: a bug is a verdict, not a crash
            # The readings and notes found before it are kept; the rest of the
            # file was not located, so it cannot be verified.
            ctx.add("internal-error", internal_error_message(exc), location)
            shape = _shape_after_error(ctx, data, size)
        yield Located(location, size, shape, ctx.readings, ctx.notes, ctx.expanded)


def _shape_after_error(ctx: Ctx, data: Any, size: int) -> Shape:
    """What a file whose locating failed was read as, as far as its first bytes say."""
    kind = container_kind(bytes(data[: min(size, 1024)]), size)
    if isinstance(kind, Format):
        return Shape((kind,))
    if kind is not None:
        return Shape((Compressed(kind, Shape(())),))
    return Shape((Format.PICKLE if ctx.readings else Format.DATA,))
