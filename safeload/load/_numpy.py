""".npy and .npz files, read the way `numpy.load(allow_pickle=True)` reads them.

Numeric arrays are read by numpy itself with `allow_pickle=False`; an array
whose dtype holds objects (also inside a structured dtype) is a pickle after
the header, and goes through the restricted unpickler. An `.npz` archive is
read with the locator's own zip reader, so its members are the bytes the scan
judged.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from typing import Any

from .._formats import compress, zipread
from .._formats import numpy as npy
from ..errors import UnsupportedFormatError

__all__ = ["NpzArrays", "load_npy", "load_npz", "member_content", "read_zipfile_archive"]

Unpickle = Callable[[Any, int, int, str], Any]
"""`unpickle(data, start, end, location)`: the restricted unpickler over a range."""

_MEMBER_LIMIT = 1 << 40
"""Decompression limit per member: the scan already bounded the archive's total."""
_NPY_MAGIC = b"\x93NUMPY"


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:  # pragma: no cover - numpy comes with the ml extra
        raise UnsupportedFormatError("loading an .npy/.npz file needs numpy") from None
    return numpy


def load_npy(data: Any, start: int, end: int, location: str, unpickle: Unpickle) -> Any:
    """The array in `data[start:end]`, as `np.load` returns it."""
    try:
        header = npy.read_header(data, start, end)
    except npy.NpyError as exc:
        raise UnsupportedFormatError(f"{location}: .npy header cannot be read: {exc}") from None
    if header.has_object:
        # numpy returns whatever the pickle holds, without reshaping it.
        return unpickle(data, header.data_offset, end, location)
    numpy = _numpy()
    handle = compress.range_file(data, start, end)
    return numpy.lib.format.read_array(handle, allow_pickle=False)


class NpzArrays(Mapping[str, Any]):
    """The arrays of an `.npz` file, keyed like `numpy.lib.npyio.NpzFile`.

    `files` lists the array names (`.npy` stripped); `arrays["x"]` and
    `arrays["x.npy"]` are the same array. Members that are not `.npy` files
    (by their bytes, not their names) are returned as bytes, as numpy does. Everything is loaded up front: the
    bytes were verified and scanned as a whole. Like `NpzFile`, it is a
    context manager (closing it releases nothing: nothing stays open).
    """

    def __init__(self, members: dict[str, Any]) -> None:
        self._members = members
        self.files = [n[: -len(".npy")] if n.endswith(".npy") else n for n in members]

    def __getitem__(self, key: str) -> Any:
        if key in self._members:
            return self._members[key]
        if f"{key}.npy" in self._members:
            return self._members[f"{key}.npy"]
        raise KeyError(f"{key} is not a file in the archive")

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return f"NpzArrays(files={self.files!r})"

    def __enter__(self) -> NpzArrays:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release; `NpzFile.close` closes the zip file it keeps open."""


def member_content(
    data: Any,
    member: zipread.Member,
    location: str,
    stack: ExitStack,
    expanded: Mapping[str, Any],
) -> tuple[Any, int, int]:
    """The bytes `zipfile` returns for `member` (of its own reading of the archive).

    As `ZipExtFile`: a stored member is `min(compressed, size)` bytes, a
    compressed one its expansion cut at the declared size, and either is
    refused when those bytes do not match the central directory's CRC-32
    (BadZipFile). `expanded` holds what the scan decompressed, by location:
    a member the scan read whole is not decompressed a second time.
    """
    if member.error is not None:
        raise UnsupportedFormatError(f"{location}: zip member cannot be read: {member.error}")
    if member.method == 0:
        buf, s, e = data, member.data_offset, member.data_offset + member.read_size
    elif location in expanded:
        buf = expanded[location]
        s, e = 0, min(len(buf), member.size)
    else:
        kind = compress.ZIP_METHODS.get(member.method)
        if kind is None:
            raise UnsupportedFormatError(
                f"{location}: zip member uses compression method {member.method}"
            )
        out = compress.expand(
            kind, data, member.data_offset, member.data_end, _MEMBER_LIMIT, stack,
            want=member.size,
        )  # fmt: skip
        if out.error is not None:
            raise UnsupportedFormatError(f"{location}: {out.error}")
        buf, s, e = out.data, 0, out.size
    # zipfile checks the CRC-32 once a read reaches the member's end, which
    # numpy.load's reading of a whole member does; a member with bytes past
    # what its loader reads is refused here although zipfile might not check it.
    if member.crc is not None and zlib.crc32(memoryview(buf)[s:e]) != member.crc:
        raise UnsupportedFormatError(
            f"{location}: the member's bytes do not match its CRC-32; numpy.load and "
            "pandas.read_pickle refuse it (zipfile: Bad CRC-32)"
        )
    return buf, s, e


def read_zipfile_archive(data: Any, start: int, end: int, location: str) -> zipread.Archive:
    """The archive as `zipfile` (numpy.load, pandas.read_pickle) reads it, and only so.

    torch's reader may read an archive zipfile refuses (the scan reads both):
    such a file is no .npz or pandas zip to the loaders that read those.
    """
    try:
        archive = zipread.read_zipfile(data, start, end)
    except (zipread.ZipError, ValueError, IndexError, struct.error) as exc:
        problem: str | None = str(exc)
    else:
        problem = archive.refusal
    if problem is not None:
        raise UnsupportedFormatError(
            f"{location}: Python's zipfile (numpy.load, pandas.read_pickle) cannot open this "
            f"zip archive: {problem}"
        )
    return archive


def load_npz(
    data: Any,
    start: int,
    end: int,
    location: str,
    unpickle: Unpickle,
    expanded: Mapping[str, Any] | None = None,
) -> NpzArrays:
    """Every member of the `.npz` archive in `data[start:end]`.

    `expanded` is what the scan decompressed, by location (`Located.expanded`):
    a deflated member the scan read whole (every member that holds a pickle)
    is loaded from those bytes, not decompressed a second time. Members the
    scan read only the head of (big numeric arrays: no pickle, nothing to
    judge past the header) are decompressed here, within the same bound.
    """
    expanded = expanded or {}
    archive = read_zipfile_archive(data, start, end, location)
    members: dict[str, Any] = {}
    for member in archive.members:
        where = f"{location}:{member.name}"
        # An expanded member may be spooled to a temporary mapping; the array
        # read from it is a copy, so the mapping goes as soon as it is read.
        with ExitStack() as stack:
            buf, s, e = member_content(data, member, where, stack, expanded)
            # As numpy's NpzFile: a member is an array when it starts with the
            # .npy magic, whatever its name.
            if bytes(buf[s : min(s + len(_NPY_MAGIC), e)]) == _NPY_MAGIC:
                members[member.name] = load_npy(buf, s, e, where, unpickle)
            else:
                members[member.name] = bytes(buf[s:e])
    return NpzArrays(members)
