"""Zip archives, read exactly the way each loader's reader reads them.

Two readers open the zip files safeload meets, and on hostile bytes they do
not agree:

- torch's `PyTorchStreamReader` (caffe2/serialize/inline_container.cc over
  its bundled miniz 3.0.2), for `torch.load`: `read_torch`;
- Python's `zipfile`, for `numpy.load` (`.npz`), `pandas.read_pickle` (`.zip`)
  and any other tool: `read_zipfile`.

Each returns an `Archive` whose members are the entries that reader lists,
with the byte range it reads for each. The locator scans the members of both
and reports where they disagree (which end record, which central directory,
which entries, which bytes for a name). Nothing is extracted here: members
are offset ranges of the underlying buffer.

Where the two differ (all checked against the real readers by
tests/test_zip_differential.py):

- the end record: `zipfile` takes the last 22 bytes when they are an end
  record with no comment, else the last signature in the tail, and fails
  when fewer than 22 bytes follow it; miniz takes the last signature that
  has 22 bytes after it;
- ZIP64: both use the ZIP64 end record whenever a locator sits right before
  the end record, and then every value comes from it. `zipfile` reads the
  record right before the locator (it ignores the locator's offset); miniz
  reads it where the locator points. Where that record would start before
  the file, `zipfile` fails on a file but reads a BytesIO from offset 0
  (`Archive.refusal`: read by the scan, never loaded);
- where the directory is: `zipfile` puts it `size` bytes before the end
  record (less the ZIP64 records) and shifts every offset by the difference
  to what the record says (`concat`: data prepended to a zip); miniz trusts
  the offsets as they are;
- how many entries: `zipfile` reads entries until the directory's size is
  used up; miniz reads the declared count and ignores the rest;
- names: `zipfile` decodes them (UTF-8 with flag 0x800, else cp437), cuts
  them at a NUL, and a later entry of a name hides an earlier one; miniz
  finds a name by a case-insensitive binary search over the raw bytes, and
  torch's query is a C string (cut at a NUL);
- a member's bytes: both read the local header only for the data offset
  (its name and extra lengths). `zipfile` refuses a member whose local name
  differs from the central one, or that is encrypted, patched or strongly
  encrypted; miniz ignores the local name and refuses the same flags. A
  stored member is `min(compressed, size)` bytes for `zipfile`, `size` bytes
  for miniz (which refuses the archive when they differ and the method and
  time fields are zero).
"""

from __future__ import annotations

import itertools
import struct
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

_EOCD = b"PK\x05\x06"
_EOCD64 = b"PK\x06\x06"
_LOC64 = b"PK\x06\x07"
_CDH = b"PK\x01\x02"
_LFH = b"PK\x03\x04"
_EOCD_SIZE = 22
_CDH_SIZE = 46
_LFH_SIZE = 30
_EOCD64_SIZE = 56
_LOC64_SIZE = 20
_MAX_COMMENT = 0xFFFF
_U32 = 0xFFFFFFFF
MAX_MEMBERS = 200_000

_eocd = struct.Struct("<4sHHHHIIH")
_cdh = struct.Struct("<4sBBBBHHHHIIIHHHHHII")
_lfh = struct.Struct("<4sHHHHHIIIHH")
_eocd64 = struct.Struct("<4sQHHIIQQQQ")
_loc64 = struct.Struct("<4sIQI")

_FLAG_ENCRYPTED = 0x0001
_FLAG_PATCHED = 0x0020
_FLAG_STRONG = 0x0040
_FLAG_UTF8 = 0x0800
_FLAG_MASKED = 0x2000
_MAX_EXTRACT_VERSION = 63
"""`zipfile` refuses to open an archive with an entry needing a later version."""
_MINIZ_MAX_NAME = 512
"""torch lists record names through a buffer of this many bytes."""

TORCH = "torch"
ZIPFILE = "zipfile"
READERS = {
    TORCH: "torch's zip reader (torch.load)",
    ZIPFILE: "Python's zipfile (numpy.load, pandas.read_pickle)",
}


EXTRACTS_NOTHING = "torch's reader extracts nothing for it (a directory, or no stored bytes)"
"""miniz returns such an entry's buffer untouched: torch hands out `size` bytes of
uninitialized memory (which may hold bytes the process read before)."""


class ZipError(Exception):
    """The archive's structure cannot be read."""


@dataclass(frozen=True)
class Member:
    """One central-directory entry, as one reader reads it."""

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
    """Why this reader cannot read this member's bytes (the others may still be fine)."""
    raw_name: bytes = b""
    """The name's bytes as stored in the central directory."""
    read_size: int = 0
    """Bytes this reader reads from `data_offset`: for a stored member the
    reader's own choice of the two sizes, else the compressed size."""
    reader: str = ZIPFILE
    refused: bool = False
    """The bytes are there, but this reader will not read them (a flag, a name)."""
    crc: int | None = None
    """The central directory's CRC-32 of the uncompressed bytes (zipfile's reading)."""

    @property
    def data_end(self) -> int:
        """End of the member's stored bytes."""
        return self.data_offset + self.compressed_size

    @property
    def selection(self) -> tuple[int, int, int, int]:
        """What decides the bytes this reader returns: method, offset, length, size."""
        if not self.read_size:
            return (self.method, 0, 0, self.size)
        return (self.method, self.data_offset, self.read_size, self.size)


@dataclass(frozen=True)
class Archive:
    """A readable zip, as one reader reads it: its members in central-directory order."""

    members: tuple[Member, ...]
    eocd_offset: int
    shift: int
    """Bytes in front of the archive that its offsets do not count (0 for a normal zip)."""
    reader: str = ZIPFILE
    cd_offset: int = 0
    """Where this reader reads the central directory."""
    refusal: str | None = None
    """Why `zipfile` refuses this archive when handed it one way (from a file, or as
    bytes in memory) although it reads it so the other way: read, never loaded."""

    def by_name(self) -> dict[str, Member]:
        """`zipfile`'s NameToInfo: a later entry of a name hides an earlier one."""
        return {m.name: m for m in self.members}


def _rfind(data: Any, sub: bytes, lo: int, hi: int) -> int:
    if hasattr(data, "rfind"):
        return int(data.rfind(sub, lo, hi))
    i = bytes(data[lo:hi]).rfind(sub)
    return i + lo if i >= 0 else -1


def _at(data: Any, pos: int, n: int) -> bytes:
    return bytes(data[pos : pos + n])


# -- Python's zipfile (Lib/zipfile.py: _EndRecData, _EndRecData64, _RealGetContents) --------


def find_eocd(data: Any, start: int, end: int) -> int | None:
    """Where `zipfile` finds the end-of-central-directory record, if it does."""
    if end - start < _EOCD_SIZE:
        return None
    last = end - _EOCD_SIZE
    if _at(data, last, 4) == _EOCD and _at(data, end - 2, 2) == b"\0\0":
        return last
    lo = max(end - (1 << 16) - _EOCD_SIZE, start)
    i = _rfind(data, _EOCD, lo, end)
    if i < 0 or i + _EOCD_SIZE > end:
        return None
    return i


def _zipfile_name(raw: bytes, flags: int) -> str:
    """`ZipFile._RealGetContents` then `ZipInfo.__init__`: decoded, cut at a NUL."""
    return _zipfile_decode(raw, flags).split("\0", 1)[0]


def _zipfile_decode(raw: bytes, flags: int) -> str:
    return raw.decode("utf-8") if flags & _FLAG_UTF8 else raw.decode("cp437")


def read_zipfile(data: Any, start: int, end: int) -> Archive:
    """The archive as `zipfile.ZipFile` reads `data[start:end]` (raises `ZipError`)."""
    eocd = find_eocd(data, start, end)
    if eocd is None:
        raise ZipError("no end-of-central-directory record")
    fields = _eocd.unpack_from(data, eocd)
    cd_size, cd_offset = fields[5], fields[6]
    concat = eocd - start - cd_size - cd_offset
    loc = eocd - _LOC64_SIZE
    refusal = None
    # `_EndRecData64` seeks back from the end to each ZIP64 record. Where one
    # would start before the file, a file's seek fails (OSError: for the
    # locator, the end record is used alone; for the ZIP64 end record,
    # BadZipFile), while a BytesIO clamps the seek to offset 0 and reads there.
    # The archive is read as the more lenient of the two reads it (so the scan
    # covers it); `refusal` says why the other refuses it (so no loader loads it).
    if loc < start:
        if _at(data, start, 4) == _LOC64:
            _sig, disk, _rec, disks = _loc64.unpack_from(data, start)
            if disk != 0 or disks > 1:
                refusal = "zipfile refuses it from memory: a ZIP64 locator at offset 0"
    elif _at(data, loc, 4) == _LOC64:
        _sig, disk, _rec, disks = _loc64.unpack_from(data, loc)
        if disk != 0 or disks > 1:
            raise ZipError("a ZIP64 locator names several disks")
        rec = loc - _EOCD64_SIZE
        if rec < start:
            refusal = "zipfile refuses it from a file: the ZIP64 end record would start before it"
            rec = start  # where a BytesIO reads it
        if rec + _EOCD64_SIZE <= end and _at(data, rec, 4) == _EOCD64:
            f64 = _eocd64.unpack_from(data, rec)
            cd_size, cd_offset = f64[8], f64[9]
            concat = eocd - start - cd_size - cd_offset - _EOCD64_SIZE - _LOC64_SIZE
    cd_pos = cd_offset + concat
    if cd_pos < 0:
        raise ZipError("bad offset for the central directory")
    cd = _at(data, start + cd_pos, max(0, min(cd_size, end - start - cd_pos)))
    # zipfile reads the directory as a stream: each read may come up short at
    # its end, but the loop counts the declared lengths against its size.
    fpos = total = 0
    members: list[Member] = []
    while total < cd_size:
        if fpos + _CDH_SIZE > len(cd):
            raise ZipError("central directory truncated")
        f = _cdh.unpack_from(cd, fpos)
        if f[0] != _CDH:
            raise ZipError(f"bad central directory entry {len(members)}")
        extract_version, flags, method = f[3], f[5], f[6]
        csize, usize = f[10], f[11]
        nlen, xlen, clen, lho = f[12], f[13], f[14], f[18]
        fpos += _CDH_SIZE
        raw = cd[fpos : fpos + nlen]
        extra = cd[fpos + len(raw) : fpos + len(raw) + xlen]
        fpos = min(fpos + nlen + xlen + clen, len(cd))
        total += _CDH_SIZE + nlen + xlen + clen
        try:
            orig = _zipfile_decode(raw, flags)
        except UnicodeDecodeError as exc:
            raise ZipError(f"entry name is not UTF-8: {exc}") from None
        if extract_version > _MAX_EXTRACT_VERSION:
            raise ZipError(f"an entry needs zip version {extract_version / 10:.1f}")
        usize, csize, lho = _zipfile_extra(extra, usize, csize, lho)
        if len(members) >= MAX_MEMBERS:
            raise ZipError(f"more than {MAX_MEMBERS} members")
        members.append(
            _zipfile_member(
                data, start, end, len(members), orig, raw, flags, method, csize, usize,
                lho + concat, crc=f[9],
            )
        )  # fmt: skip
    return Archive(tuple(members), eocd, concat, ZIPFILE, start + cd_pos, refusal)


def _zipfile_extra(extra: bytes, usize: int, csize: int, lho: int) -> tuple[int, int, int]:
    """`ZipInfo._decodeExtra`: every ZIP64 field in turn, for the saturated values."""
    while len(extra) >= 4:
        tag, ln = struct.unpack_from("<HH", extra)
        if ln + 4 > len(extra):
            raise ZipError(f"corrupt extra field {tag:04x}")
        if tag == 1:
            body = extra[4 : ln + 4]
            try:
                if usize in (0xFFFF_FFFF_FFFF_FFFF, _U32):
                    (usize,) = struct.unpack("<Q", body[:8])
                    body = body[8:]
                if csize == _U32:
                    (csize,) = struct.unpack("<Q", body[:8])
                    body = body[8:]
                if lho == _U32:
                    (lho,) = struct.unpack("<Q", body[:8])
            except struct.error:
                raise ZipError("corrupt ZIP64 extra field") from None
        extra = extra[ln + 4 :]
    return usize, csize, lho


def _zipfile_member(
    data: Any,
    start: int,
    end: int,
    index: int,
    orig: str,
    raw: bytes,
    flags: int,
    method: int,
    csize: int,
    usize: int,
    rel_header: int,
    *,
    crc: int,
) -> Member:
    """`ZipFile.open` of this entry: what it refuses, and where its bytes are."""
    name = orig.split("\0", 1)[0]
    hdr = start + rel_header
    error = None
    refused = False
    local_name = name
    data_offset = hdr
    read_size = min(csize, usize) if method == 0 else csize
    if rel_header < 0 or hdr + _LFH_SIZE > end:
        error = "truncated local header"
    else:
        lf = _lfh.unpack_from(data, hdr)
        lnlen, lxlen = lf[9], lf[10]
        data_offset = hdr + _LFH_SIZE + lnlen + lxlen
        try:
            local_name = _zipfile_decode(
                _at(data, hdr + _LFH_SIZE, min(lnlen, end - hdr - _LFH_SIZE)), lf[2]
            )
        except UnicodeDecodeError:
            local_name = repr(_at(data, hdr + _LFH_SIZE, min(lnlen, end - hdr - _LFH_SIZE)))
        refused = lf[0] == _LFH and data_offset + read_size <= end
        if lf[0] != _LFH:
            error = "bad local header signature"
        elif flags & _FLAG_PATCHED:
            error = "zipfile refuses compressed patched data (flag 0x20)"
        elif flags & _FLAG_STRONG:
            error = "zipfile refuses strong encryption (flag 0x40)"
        elif local_name != orig:
            error = f"zipfile refuses it: its local header names it {local_name!r}"
        elif flags & _FLAG_ENCRYPTED:
            error = "zipfile refuses it: encrypted (flag 0x1), no password"
        elif data_offset + read_size > end:
            error = "data runs past the end of the file"
        refused = refused and error is not None
    return Member(
        name, index, method, flags, csize, usize, hdr, data_offset, local_name, error, raw,
        read_size, ZIPFILE, refused, crc,
    )  # fmt: skip


# -- torch's reader (miniz 3.0.2: mz_zip_reader_read_central_dir, _file_stat_internal,
#    _extract_to_mem; inline_container.cc: PyTorchStreamReader::init, getRecord) -------------


def _miniz_eocd(data: Any, start: int, end: int) -> int | None:
    """`mz_zip_reader_locate_header_sig`: the last signature with a whole record after it."""
    size = end - start
    if size < _EOCD_SIZE:
        return None
    cur = max(size - 4096, 0)
    while True:
        n = min(4096, size - cur)
        hi = start + cur + n
        while True:
            i = _rfind(data, _EOCD, start + cur, hi)
            if i < 0:
                break
            if end - i >= _EOCD_SIZE:
                return i
            hi = i + 3
        if cur == 0 or size - cur >= _MAX_COMMENT + _EOCD_SIZE:
            return None
        cur = max(cur - (4096 - 3), 0)


def read_torch(data: Any, start: int, end: int) -> Archive:
    """The archive as torch's `PyTorchStreamReader` reads `data[start:end]` (raises `ZipError`)."""
    size = end - start
    eocd = _miniz_eocd(data, start, end)
    if eocd is None:
        raise ZipError("torch's reader finds no end-of-central-directory record")
    f = _eocd.unpack_from(data, eocd)
    disk, cd_disk, on_disk, total, cd_size, cd_offset = f[1], f[2], f[3], f[4], f[5], f[6]
    rel = eocd - start
    if rel >= _LOC64_SIZE + _EOCD64_SIZE and _at(data, eocd - _LOC64_SIZE, 4) == _LOC64:
        _sig, _d, rec, disks = _loc64.unpack_from(data, eocd - _LOC64_SIZE)
        if rec > size - _EOCD64_SIZE:
            raise ZipError("the ZIP64 locator points past the end of the file")
        if _at(data, start + rec, 4) == _EOCD64:
            f64 = _eocd64.unpack_from(data, start + rec)
            rec_size, disk, cd_disk, on_disk, total, cd_size, cd_offset = (
                f64[1], f64[4], f64[5], f64[6], f64[7], f64[8], f64[9]
            )  # fmt: skip
            if rec_size < _EOCD64_SIZE - 12:
                raise ZipError("ZIP64 end record too short")
            if disks != 1:
                raise ZipError("ZIP64 locator: not one disk")
            if total > _U32 or on_disk > _U32 or cd_size > _U32:
                raise ZipError("ZIP64 end record: too many entries or too large a directory")
    if total != on_disk or (disk | cd_disk and (disk != 1 or cd_disk != 1)):
        raise ZipError("multi-disk archive")
    if cd_size < total * _CDH_SIZE or cd_offset + cd_size > size:
        raise ZipError("the central directory is not where the end record says")
    if total > MAX_MEMBERS:
        raise ZipError(f"{total} members (more than {MAX_MEMBERS})")
    cd = _at(data, start + cd_offset, cd_size) if total else b""
    pos = 0
    members = []
    for index in range(total):
        left = cd_size - pos
        if left < _CDH_SIZE or cd[pos : pos + 4] != _CDH:
            raise ZipError(f"bad central directory entry {index}")
        c = _cdh.unpack_from(cd, pos)
        flags, method, csize, usize = c[5], c[6], c[10], c[11]
        nlen, xlen, clen, disk_index, lho = c[12], c[13], c[14], c[15], c[18]
        extra = cd[pos + _CDH_SIZE + nlen : pos + _CDH_SIZE + nlen + xlen]
        _miniz_init_checks(c, extra, cd[pos + 10 : pos + 14], disk, size)
        if disk_index == 0xFFFF or (disk_index != disk and disk_index != 1):
            raise ZipError("multi-disk archive")
        if flags & _FLAG_MASKED:
            raise ZipError("masked local headers (flag 0x2000)")
        if _CDH_SIZE + nlen + xlen + clen > left:
            raise ZipError("central directory truncated")
        raw = cd[pos + _CDH_SIZE : pos + _CDH_SIZE + nlen]
        member = _torch_member(
            data, start, end, index, raw, flags, method, csize, usize, lho, extra, c[17]
        )
        members.append(member)
        pos += _CDH_SIZE + nlen + xlen + clen
    return Archive(tuple(members), eocd, 0, TORCH, start + cd_offset)


def _miniz_init_checks(
    c: tuple[Any, ...], extra: bytes, method32: bytes, disk: int, size: int
) -> None:
    """The per-entry checks of `mz_zip_reader_read_central_dir` (any failure: no archive)."""
    csize, usize, lho = c[10], c[11], c[18]
    if extra and max(csize, usize, lho) == _U32:
        left, i = len(extra), 0
        found = False
        while left:
            if left < 4:
                raise ZipError("corrupt extra field")
            tag, ln = struct.unpack_from("<HH", extra, i)
            if ln + 4 > left:
                raise ZipError("corrupt extra field")
            if tag == 1:
                found = True
                break
            i += 4 + ln
            left -= 4 + ln
        if found and left >= 4:
            # miniz bounds these reads by what is left of the whole extra
            # field, not by the ZIP64 field's own size.
            left -= 4
            i += 4
            for which in ("u", "c", "o"):
                value = {"u": usize, "c": csize, "o": lho}[which]
                if value == _U32 and left >= 8:
                    (new,) = struct.unpack_from("<Q", extra, i)
                    left -= 8
                    i += 8
                    if which == "u":
                        usize = new
                    elif which == "c":
                        csize = new
                    else:
                        lho = new
    if csize != _U32 and usize != _U32:
        if (method32 == bytes(4) and usize != csize) or (usize and not csize):
            raise ZipError("an entry's sizes contradict each other")
    if csize != _U32 and lho + _LFH_SIZE + csize > size:
        raise ZipError("an entry's data runs past the end of the file")


def _miniz_stat_extra(extra: bytes, usize: int, csize: int, lho: int) -> tuple[int, int, int]:
    """`mz_zip_file_stat_internal`: the first ZIP64 field, bounded by its own size."""
    if max(csize, usize, lho) != _U32:
        return usize, csize, lho
    i, left = 0, len(extra)
    while left:
        if left < 4:
            raise ZipError("corrupt extra field")
        tag, ln = struct.unpack_from("<HH", extra, i)
        if ln + 4 > left:
            raise ZipError("corrupt extra field")
        if tag == 1:
            body = extra[i + 4 : i + 4 + ln]
            vals = []
            for saturated in (usize == _U32, csize == _U32, lho == _U32):
                if saturated:
                    if len(body) < 8:
                        raise ZipError("corrupt ZIP64 extra field")
                    vals.append(struct.unpack_from("<Q", body)[0])
                    body = body[8:]
                else:
                    vals.append(None)
            usize = usize if vals[0] is None else vals[0]
            csize = csize if vals[1] is None else vals[1]
            lho = lho if vals[2] is None else vals[2]
            break
        i += 4 + ln
        left -= 4 + ln
    return usize, csize, lho


def _torch_member(
    data: Any,
    start: int,
    end: int,
    index: int,
    raw: bytes,
    flags: int,
    method: int,
    csize: int,
    usize: int,
    lho: int,
    extra: bytes,
    ext_attr: int,
) -> Member:
    """`getRecord` of this entry: what `mz_zip_reader_extract_to_mem` refuses, and the bytes."""
    name = raw.decode("utf-8", "replace") if flags & _FLAG_UTF8 else raw.decode("cp437")
    error = None
    try:
        usize, csize, lho = _miniz_stat_extra(extra, usize, csize, lho)
    except ZipError as exc:
        error = str(exc)
    hdr = start + lho
    data_offset = hdr
    local_name = name
    read_size = usize if method == 0 else csize
    header_ok = hdr + _LFH_SIZE <= end and _at(data, hdr, 4) == _LFH
    if header_ok:
        lf = _lfh.unpack_from(data, hdr)
        local_name = _at(data, hdr + _LFH_SIZE, lf[9]).decode("cp437")
        data_offset = hdr + _LFH_SIZE + lf[9] + lf[10]
    in_file = header_ok and data_offset + max(csize, read_size) <= end
    refused = False
    if error is not None:
        pass
    elif flags & (_FLAG_ENCRYPTED | _FLAG_STRONG | _FLAG_PATCHED):
        # Refused when torch stats the record, before any size is looked at.
        error = "torch's reader refuses encrypted or patched entries"
        refused = in_file
    elif not usize and not csize:
        read_size = 0  # extracted as empty, the local header unread
    elif raw.endswith(b"/") or ext_attr & 0x10 or not csize:
        error = EXTRACTS_NOTHING
    elif method not in (0, 8):
        error = f"torch's reader does not support compression method {method}"
    elif not header_ok:
        error = "bad local header"
    elif not in_file:
        error = "data runs past the end of the file"
    return Member(
        name, index, method, flags, csize, usize, hdr, data_offset, local_name, error, raw,
        read_size, TORCH, refused,
    )  # fmt: skip


def torch_query(archive: Archive, record: str) -> bytes | None:
    """The name torch looks up for `record` (`<first entry's folder>/record`), as a C string."""
    if not archive.members:
        return None
    first = archive.members[0].raw_name[: _MINIZ_MAX_NAME - 1]
    if b"/" not in first:
        return None
    query = first.split(b"/", 1)[0] + b"/" + record.encode()
    return query.split(b"\0", 1)[0]


def torch_lookup(archive: Archive, query: bytes) -> list[Member]:
    """The entries miniz's case-insensitive binary search may return for `query`.

    Names are unique but for ASCII case in any real archive, and then that is
    the one entry. When several entries match, the one the search lands on
    depends on the order miniz's heap sort leaves them in: that order is
    computed as miniz computes it (`torch_pick`), for archives of up to
    `_EXACT_SORT` entries, and the picked entry comes first; every candidate
    is returned either way.
    """
    key = _ascii_lower(query)
    found = [m for m in archive.members if _ascii_lower(m.raw_name) == key]
    if len(found) > 1 and len(archive.members) <= _EXACT_SORT:
        pick = torch_pick(archive, query)
        found.sort(key=lambda m: m is not pick)
    return found


_EXACT_SORT = 5_000
"""Entries up to which `torch_lookup` orders candidates by miniz's own sort."""


def _miniz_less(a: bytes, b: bytes) -> bool:
    """`mz_zip_reader_filename_less`."""
    la, lb = _ascii_lower(a), _ascii_lower(b)
    n = min(len(la), len(lb))
    for x, y in zip(la[:n], lb[:n], strict=True):
        if x != y:
            return x < y
    return len(la) < len(lb)


def _miniz_sorted(names: list[bytes]) -> list[int]:
    """`mz_zip_reader_sort_central_dir_offsets_by_filename`: miniz's heap sort, step by step
    (it is not stable, so the order of names equal but for case is its own)."""
    size = len(names)
    idx = list(range(size))
    if size <= 1:
        return idx

    def sift(root: int, end: int) -> None:
        while True:
            child = root * 2 + 1
            if child >= end:
                return
            if child + 1 < end and _miniz_less(names[idx[child]], names[idx[child + 1]]):
                child += 1
            if not _miniz_less(names[idx[root]], names[idx[child]]):
                return
            idx[root], idx[child] = idx[child], idx[root]
            root = child

    for start in range((size - 2) >> 1, -1, -1):
        sift(start, size)
    for end in range(size - 1, 0, -1):
        idx[end], idx[0] = idx[0], idx[end]
        sift(0, end)
    return idx


def torch_pick(archive: Archive, query: bytes, order: list[int] | None = None) -> Member | None:
    """`mz_zip_locate_file_binary_search`: the entry torch's reader returns for `query`
    (`order`: the archive's `_miniz_sorted` order, when already computed)."""
    names = [m.raw_name for m in archive.members]
    order = _miniz_sorted(names) if order is None else order
    key = _ascii_lower(query)
    lo, hi = 0, len(order) - 1
    while lo <= hi:
        mid = lo + ((hi - lo) >> 1)
        name = _ascii_lower(names[order[mid]])
        n = min(len(name), len(key))
        diff = next((x - y for x, y in zip(name[:n], key[:n], strict=True) if x != y), None)
        comp = len(name) - len(key) if diff is None else diff
        if comp == 0:
            return archive.members[order[mid]]
        if comp < 0:
            lo = mid + 1
        else:
            hi = mid - 1
    return None


def _ascii_lower(raw: bytes) -> bytes:
    return raw.lower()  # bytes.lower touches A-Z only, as MZ_TOLOWER


# -- both -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Views:
    """The archive as each reader reads it (None: that reader cannot open it)."""

    zipfile: Archive | None
    torch: Archive | None
    zipfile_error: str | None = None
    torch_error: str | None = None

    @property
    def archives(self) -> tuple[Archive, ...]:
        """The readers' archives, torch's first."""
        return tuple(a for a in (self.torch, self.zipfile) if a is not None)

    @property
    def members(self) -> tuple[Member, ...]:
        """Every member of every reader's archive."""
        return tuple(m for a in self.archives for m in a.members)


def read_views(data: Any, start: int, end: int, *, torch: bool = True) -> Views:
    """Each reader's archive (raises `ZipError` when none can open it).

    `torch=False` leaves torch's reader out: `torch.load` reads a file as a zip
    only when it starts with a local header.
    """
    errors: dict[str, str | None] = {TORCH: None, ZIPFILE: None}
    found: dict[str, Archive | None] = {TORCH: None, ZIPFILE: None}
    readers = (
        ((ZIPFILE, read_zipfile), (TORCH, read_torch)) if torch else ((ZIPFILE, read_zipfile),)
    )
    for reader, read in readers:
        try:
            found[reader] = read(data, start, end)
        except (ZipError, ValueError, IndexError, struct.error) as exc:
            errors[reader] = str(exc) or type(exc).__name__
    if found[TORCH] is None and found[ZIPFILE] is None:
        raise ZipError(str(errors[ZIPFILE]))
    return Views(found[ZIPFILE], found[TORCH], errors[ZIPFILE], errors[TORCH])


def read_archive(data: Any, start: int, end: int) -> Archive:
    """The archive as `zipfile` reads it, or as torch does when `zipfile` cannot (raises `ZipError`).

    When both read it, the locator has checked that they agree on every
    member of a file it calls safe.
    """
    views = read_views(data, start, end)
    archive = views.zipfile or views.torch
    assert archive is not None
    return archive


def _span(m: Member) -> str:
    if m.error is not None and m.read_size:
        return f"entry at {m.header_offset} (unreadable: {m.error})"
    return f"bytes {m.data_offset}..{m.data_offset + m.read_size}" + (
        f" deflated to {m.size}" if m.method == 8 else ""
    )


def merged(views: Views) -> tuple[Archive, list[tuple[Member, str]]]:
    """Every distinct member any reader reads, for the scan, and why some are read anyway.

    A member is one reader's selection of bytes for a name; the same entry
    read the same way by both readers is one member. A member every reader
    refuses (an encryption flag, say) is still scanned when its bytes can be
    found: another tool may read it. torch finds a record by a
    case-insensitive search, so the entry it loads as `<prefix>/data.pkl`
    is also listed under that name.
    """
    order: dict[tuple[bytes, tuple[int, int, int, int]], list[Member]] = {}
    for m in views.members:
        order.setdefault((m.raw_name, m.selection), []).append(m)
    members: list[Member] = []
    notes: list[tuple[Member, str]] = []
    for group in order.values():
        readable = [m for m in group if m.error is None]
        if readable:
            members.append(readable[0])
            refused = [m for m in group if m.reader == ZIPFILE and m.error is not None]
            if refused and readable[0].reader == TORCH:
                notes.append(
                    (readable[0], f"{refused[0].error}; it was read as torch's reader does")
                )
        elif all(m.refused for m in group):
            members.append(replace(group[0], error=None))
            why = "; ".join(dict.fromkeys(str(m.error) for m in group))
            notes.append((group[0], f"{why}; its bytes were scanned anyway"))
        else:
            members.append(group[0])
    if views.torch is not None:
        query = torch_query(views.torch, "data.pkl") or b""
        for m in torch_lookup(views.torch, query) if query else []:
            if m.raw_name != query and m.error is None:
                members.append(replace(m, name=query.decode("cp437"), raw_name=query))
    base = views.torch or views.zipfile
    assert base is not None
    return replace(base, members=tuple(members)), notes


def divergences(views: Views) -> list[tuple[str, int | None]]:
    """Where the readers select different bytes: (message, offset) per disagreement."""
    found: list[tuple[str, int | None]] = []
    z, t = views.zipfile, views.torch
    if z is not None and t is not None:
        zs = Counter((m.raw_name, m.selection) for m in z.members)
        ts = Counter((m.raw_name, m.selection) for m in t.members)
        in_order = [(m.raw_name, m.selection) for m in t.members] == [
            (m.raw_name, m.selection) for m in z.members
        ]
        if not in_order:
            only_t = [m for m in t.members if (m.raw_name, m.selection) not in zs]
            only_z = [m for m in z.members if (m.raw_name, m.selection) not in ts]
            # torch takes the archive's folder from the first entry: the order matters too.
            parts = ["they list the same entries in another order"] if zs == ts else []
            if only_t:
                parts.append(f"only {READERS[TORCH]} reads " + _names(only_t))
            if only_z:
                parts.append(f"only {READERS[ZIPFILE]} reads " + _names(only_z))
            found.append(
                (
                    f"{READERS[TORCH]} reads {len(t.members)} entries from the central directory "
                    f"at {t.cd_offset} (end record at {t.eocd_offset}), {READERS[ZIPFILE]} "
                    f"{len(z.members)} from the one at {z.cd_offset} (end record at "
                    f"{z.eocd_offset}): {'; '.join(parts)}. A loader would read bytes "
                    "the other reader never shows",
                    t.cd_offset,
                )
            )
    for m in t.members if t is not None else ():
        if m.error == EXTRACTS_NOTHING and m.size:
            found.append(
                (
                    f"{READERS[TORCH]} extracts nothing for {m.name!r} (a directory flag, or "
                    f"no stored bytes) and hands out {m.size} bytes of uninitialized memory "
                    "for it: what torch would unpickle is not in the file",
                    m.header_offset,
                )
            )
    if z is not None:
        by_name: dict[str, list[Member]] = {}
        for m in z.members:
            by_name.setdefault(m.name, []).append(m)
        for name, group in by_name.items():
            if len({m.selection for m in group}) > 1:
                found.append(
                    (
                        f"{len(group)} entries are named {name!r}: numpy.load and "
                        f"pandas.read_pickle read the last ({_span(group[-1])}), other tools "
                        f"the first ({_span(group[0])})",
                        group[-1].header_offset,
                    )
                )
    if (
        t is not None
        and torch_query(t, "data.pkl")
        and torch_lookup(t, torch_query(t, "data.pkl") or b"")
    ):
        groups: dict[bytes, list[Member]] = {}
        for m in t.members:
            groups.setdefault(_ascii_lower(m.raw_name), []).append(m)
        ambiguous = [(k, g) for k, g in groups.items() if len({m.selection for m in g}) > 1]
        exact = bool(ambiguous) and len(t.members) <= _EXACT_SORT
        order = _miniz_sorted([m.raw_name for m in t.members]) if exact else None
        for key, group in ambiguous[:5]:
            picked = torch_pick(t, key, order) if order is not None else None
            which = (
                f"it loads {picked.name!r} ({_span(picked)}), by the order its heap sort "
                "leaves them in"
                if picked is not None
                else "which one it loads depends on the order its sort leaves them in"
            )
            found.append(
                (
                    f"{READERS[TORCH]} cannot tell {len(group)} entries apart "
                    f"({', '.join(repr(m.name) for m in group[:4])}): it finds a record by a "
                    f"case-insensitive search for {key.decode('cp437')!r}, and {which}; "
                    "other readers may read another",
                    group[0].header_offset,
                )
            )
    return found


def _names(members: list[Member]) -> str:
    shown = ", ".join(f"{m.name!r} ({_span(m)})" for m in members[:5])
    return shown + (f" and {len(members) - 5} more" if len(members) > 5 else "")


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
