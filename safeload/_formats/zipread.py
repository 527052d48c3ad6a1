"""A lenient zip reader: what PyTorch's miniz-based reader accepts, not what `zipfile` does.

The central directory is authoritative; a local header is read only for the
offset of its member's data. CRCs, flag bits ("encrypted", data descriptor)
and a local name that differs from the central one are ignored, as torch
ignores them. Data prepended to the archive (a pickle in front of a zip) is
found the way `zipfile` finds it. Nothing is extracted here: members are
offset ranges of the underlying buffer.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass
from typing import Any

_EOCD = b"PK\x05\x06"
_EOCD64 = b"PK\x06\x06"
_LOC64 = b"PK\x06\x07"
_CDH = b"PK\x01\x02"
_LFH = b"PK\x03\x04"
_EOCD_SIZE = 22
_MAX_COMMENT = 0xFFFF
MAX_MEMBERS = 200_000

_eocd = struct.Struct("<4sHHHHIIH")
_cdh = struct.Struct("<4sHHHHHHIIIHHHHHII")
_lfh = struct.Struct("<4sHHHHHIIIHH")
_eocd64 = struct.Struct("<4sQHHIIQQQQ")
_loc64 = struct.Struct("<4sIQI")


class ZipError(Exception):
    """The archive's structure cannot be read."""


@dataclass(frozen=True)
class Member:
    """One central-directory entry."""

    name: str
    index: int
    method: int
    flags: int
    compressed_size: int
    size: int
    header_offset: int
    """Offset of the local header, in the underlying buffer."""
    data_offset: int
    """Offset of the member's (possibly compressed) bytes, in the underlying buffer."""
    local_name: str
    error: str | None = None
    """Why this member's bytes cannot be located (the others may still be fine)."""

    @property
    def data_end(self) -> int:
        """End of the member's stored bytes."""
        return self.data_offset + self.compressed_size


@dataclass(frozen=True)
class Archive:
    """A readable zip: its members in central-directory order."""

    members: tuple[Member, ...]
    eocd_offset: int
    shift: int
    """Bytes in front of the archive that its offsets do not count (0 for a normal zip)."""


def find_eocd(data: Any, start: int, end: int) -> int | None:
    """Offset of the last end-of-central-directory record in the file's tail, if any."""
    lo = max(start, end - _EOCD_SIZE - _MAX_COMMENT)
    pos = end
    while True:
        i = data.rfind(_EOCD, lo, pos) if hasattr(data, "rfind") else -1
        if i < 0:
            return None
        if i + _EOCD_SIZE <= end:
            return int(i)
        pos = i + 3


def read_archive(data: Any, start: int, end: int) -> Archive:
    """Parse the central directory of the zip ending at `end` (raises `ZipError`)."""
    eocd = find_eocd(data, start, end)
    if eocd is None:
        raise ZipError("no end-of-central-directory record")
    _sig, _disk, _cd_disk, _n_here, count, cd_size, cd_offset, _clen = _eocd.unpack_from(data, eocd)
    eocd_for_shift = eocd
    loc = eocd - _loc64.size
    if loc >= start and bytes(data[loc : loc + 4]) == _LOC64:
        # A ZIP64 locator: the ZIP64 record is the real end of the directory
        # (torch writes one into every archive).
        _s, _d, rec, _t = _loc64.unpack_from(data, loc)
        rec_pos = rec + start
        if rec_pos + _eocd64.size > loc or bytes(data[rec_pos : rec_pos + 4]) != _EOCD64:
            rec_pos = loc - _eocd64.size  # prepended data: the record sits just before
        if rec_pos >= start and bytes(data[rec_pos : rec_pos + 4]) == _EOCD64:
            fields = _eocd64.unpack_from(data, rec_pos)
            eocd_for_shift = rec_pos
            if count == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
                count, cd_size, cd_offset = fields[7], fields[8], fields[9]
        elif count == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
            raise ZipError("bad ZIP64 end-of-central-directory record")
    if count > MAX_MEMBERS:
        raise ZipError(f"{count} members (more than {MAX_MEMBERS})")
    # zipfile-style: an archive appended to other bytes keeps offsets relative
    # to its own start; detect that from where the directory really is.
    shift = start
    cd_pos = start + cd_offset
    if cd_pos + cd_size > eocd_for_shift or (count and bytes(data[cd_pos : cd_pos + 4]) != _CDH):
        shift = eocd_for_shift - cd_size - cd_offset
        cd_pos = shift + cd_offset
        if shift < start or (count and bytes(data[cd_pos : cd_pos + 4]) != _CDH):
            raise ZipError("the central directory is not where the end record says")
    members = []
    pos = cd_pos
    cd_end = cd_pos + cd_size
    for index in range(count):
        if pos + _cdh.size > cd_end:
            raise ZipError("central directory truncated")
        f = _cdh.unpack_from(data, pos)
        if f[0] != _CDH:
            raise ZipError(f"bad central directory entry {index}")
        flags, method, csize, usize = f[3], f[4], f[8], f[9]
        nlen, xlen, clen, lho = f[10], f[11], f[12], f[16]
        raw_name = bytes(data[pos + 46 : pos + 46 + nlen])
        extra = bytes(data[pos + 46 + nlen : pos + 46 + nlen + xlen])
        if 0xFFFFFFFF in (csize, usize, lho):
            usize, csize, lho = _zip64_extra(extra, usize, csize, lho)
        pos += 46 + nlen + xlen + clen
        if pos > cd_end:
            raise ZipError("central directory truncated")
        name = _decode(raw_name, flags)
        hdr = shift + lho
        error = None
        local_name = name
        data_offset = hdr
        if hdr + _lfh.size > end:
            error = "local header outside the file"
        else:
            lf = _lfh.unpack_from(data, hdr)
            if lf[0] != _LFH:
                error = "bad local header signature"
            else:
                lnlen, lxlen = lf[9], lf[10]
                local_name = _decode(bytes(data[hdr + 30 : hdr + 30 + lnlen]), lf[2])
                data_offset = hdr + 30 + lnlen + lxlen
                if data_offset + csize > end:
                    error = "data runs past the end of the file"
        members.append(
            Member(name, index, method, flags, csize, usize, hdr, data_offset, local_name, error)
        )
    return Archive(tuple(members), eocd, shift - start)


def overlapping(archive: Archive) -> tuple[Member, Member] | None:
    """Two members whose stored bytes overlap (how non-recursive zip bombs are built)."""
    spans = sorted(
        (m for m in archive.members if m.error is None and m.compressed_size),
        key=lambda m: m.header_offset,
    )
    for a, b in itertools.pairwise(spans):
        if b.header_offset < a.data_end:
            return a, b
    return None


def _zip64_extra(extra: bytes, usize: int, csize: int, lho: int) -> tuple[int, int, int]:
    i = 0
    while i + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, i)
        body = extra[i + 4 : i + 4 + size]
        if tag == 1:
            vals = [struct.unpack_from("<Q", body, k)[0] for k in range(0, len(body) - 7, 8)]
            it = iter(vals)
            if usize == 0xFFFFFFFF:
                usize = next(it, usize)
            if csize == 0xFFFFFFFF:
                csize = next(it, csize)
            if lho == 0xFFFFFFFF:
                lho = next(it, lho)
            break
        i += 4 + size
    return usize, csize, lho


def _decode(raw: bytes, flags: int) -> str:
    if flags & 0x800:
        return raw.decode("utf-8", "replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp437")
