"""pandas' zip and tar pickles: an archive of exactly one file, read as a pickle.

`pandas.read_pickle(compression="zip")` (and `"tar"`, also when pandas infers
them from the file name) unpickles the one file of the archive and refuses an
archive of more or fewer files; a tar may be gzip-, bz2- or xz-compressed, as
`tarfile`'s "r:*" mode reads it. A compressed tar is read from the bytes the scan
decompressed (never decompressed a second time, under another limit); the
member's bytes are found in it again and go through the restricted unpickler.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from typing import Any

from .._formats import Compressed, Compression, Format, Shape, compress
from ..errors import UnsupportedFormatError
from ._numpy import member_content, read_zipfile_archive

__all__ = ["is_pandas_archive", "load_pandas_archive"]

Unpickle = Callable[[Any, int, int, str], Any]
"""`unpickle(data, start, end, location)`: the restricted unpickler over a range."""

_TAR_COMPRESSIONS = (Compression.GZIP, Compression.BZ2, Compression.XZ)
"""What `tarfile.open(mode="r:*")` (pandas' tar reading) decompresses."""


def _tar_compression(shape: Shape) -> Compression | bool | None:
    """None for a plain tar, the compression of a compressed one, False for no tar."""
    single = shape.single
    if single is Format.TAR:
        return None
    if (
        isinstance(single, Compressed)
        and single.compression in _TAR_COMPRESSIONS
        and single.inner.single is Format.TAR
    ):
        return single.compression
    return False


def is_pandas_archive(shape: Shape) -> bool:
    """A zip, or a (compressed) tar: what pandas reads with compression="zip"/"tar"."""
    return shape.single is Format.ZIP or _tar_compression(shape) is not False


def _one(names: list[str], kind: str, location: str) -> None:
    if len(names) != 1:
        raise UnsupportedFormatError(
            f"{location}: a {kind} archive of {len(names)} entries; pandas.read_pickle reads "
            "an archive of exactly one file, and the guarded loader loads nothing else from "
            "archives"
        )


def load_pandas_archive(
    data: Any,
    size: int,
    shape: Shape,
    location: str,
    unpickle: Unpickle,
    expanded: Mapping[str, Any] | None = None,
) -> Any:
    """The object `pandas.read_pickle(compression="zip" | "tar")` returns for `data[:size]`.

    `expanded` is what the scan decompressed, by location (`Located.expanded`): a
    compressed tar, a deflated zip member.
    """
    expanded = expanded or {}
    with ExitStack() as stack:
        if shape.single is Format.ZIP:
            # pandas opens the archive with zipfile: torch's reading is not pandas'.
            archive = read_zipfile_archive(data, 0, size, location)
            _one([m.name for m in archive.members], "zip", location)
            member = archive.members[0]
            where = f"{location}:{member.name}"
            buf, start, end = member_content(data, member, where, stack, expanded)
            return unpickle(buf, start, end, where)
        kind = _tar_compression(shape)
        buf, start, end = data, 0, size
        if isinstance(kind, Compression):
            if location not in expanded:
                raise UnsupportedFormatError(
                    f"{location}: the scan kept no decompressed bytes of this {kind.value} tar"
                )
            buf = expanded[location]
            start, end = 0, len(buf)
        with tarfile.open(fileobj=compress.capped_file(buf, start, end), mode="r:") as tf:
            infos = tf.getmembers()
        _one([info.name for info in infos], "tar", location)
        info = infos[0]
        where = f"{location}:{info.name}"
        if not info.isreg():
            raise UnsupportedFormatError(f"{where}: the archive's one entry is not a file")
        first = start + info.offset_data
        if first + info.size > end:
            raise UnsupportedFormatError(f"{where}: the tar member is cut short")
        return unpickle(buf, first, first + info.size, where)
