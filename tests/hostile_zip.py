"""Zip archives built byte by byte, for the places where zip readers disagree.

`Entry` is one member; `local`, `central`, `end_record`, `zip64_record` and
`zip64_locator` write the structures of the zip format exactly as told,
including values no zip writer would ever write (a count smaller than the
directory, a locator that points elsewhere, two directories). `HOSTILE` lists
one archive per divergence between torch's reader (miniz) and Python's
`zipfile`, each with the loader that reads its payload: `tests/test_zip_readers.py`
proves the payload fires under that loader and that safeload refuses it.
"""

from __future__ import annotations

import io
import pickle
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tests.hostile_containers import evil_npy_bytes, payload

LOCAL = b"PK\x03\x04"
CENTRAL = b"PK\x01\x02"
END = b"PK\x05\x06"
END64 = b"PK\x06\x06"
LOCATOR64 = b"PK\x06\x07"


@dataclass
class Entry:
    """One member: `data` is written as is (already deflated when `method` is 8)."""

    name: bytes
    data: bytes
    method: int = 0
    size: int | None = None
    """The uncompressed size (default: `len(data)`)."""
    crc: int | None = None
    """Default: the CRC-32 of `data` (of the stored bytes: right for method 0)."""
    flags: int = 0
    local_name: bytes | None = None
    """The local header's name (default: `name`)."""
    time: int = 0
    extra: bytes = b""
    external_attr: int = 0

    def __post_init__(self) -> None:
        if self.size is None:
            self.size = len(self.data)
        if self.crc is None:
            self.crc = zlib.crc32(self.data)


def deflated(name: bytes, body: bytes) -> Entry:
    """A deflated member holding `body`."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return Entry(name, c.compress(body) + c.flush(), method=8, size=len(body), crc=zlib.crc32(body))


def local(e: Entry) -> bytes:
    """Local header, name and data."""
    name = e.name if e.local_name is None else e.local_name
    head = struct.pack(
        "<4sHHHHHIIIHH", LOCAL, 20, e.flags, e.method, e.time, 0, e.crc, len(e.data), e.size,
        len(name), 0,
    )  # fmt: skip
    return head + name + e.data


def central(e: Entry, offset: int) -> bytes:
    """Central directory header of `e`, whose local header is at `offset`."""
    head = struct.pack(
        "<4sHHHHHHIIIHHHHHII", CENTRAL, 20, 20, e.flags, e.method, e.time, 0, e.crc,
        len(e.data), e.size, len(e.name), len(e.extra), 0, 0, 0, e.external_attr, offset,
    )  # fmt: skip
    return head + e.name + e.extra


def end_record(count: int, size: int, offset: int, comment: bytes = b"") -> bytes:
    """The classic end-of-central-directory record."""
    return struct.pack("<4sHHHHIIH", END, 0, 0, count, count, size, offset, len(comment)) + comment


def zip64_record(count: int, size: int, offset: int) -> bytes:
    """The ZIP64 end-of-central-directory record (56 bytes)."""
    return struct.pack("<4sQHHIIQQQQ", END64, 44, 45, 45, 0, 0, count, count, size, offset)


def zip64_locator(record_offset: int) -> bytes:
    """The ZIP64 locator: where the ZIP64 end record is, one disk."""
    return struct.pack("<4sIQI", LOCATOR64, 0, record_offset, 1)


@dataclass
class Layout:
    """Members written from `base` on: their local bytes and their central directory."""

    locals: bytes
    directory: bytes
    count: int


def layout(entries: list[Entry], base: int = 0) -> Layout:
    """Local headers from offset `base`, and the central directory that lists them."""
    out, cd = b"", b""
    for e in entries:
        cd += central(e, base + len(out))
        out += local(e)
    return Layout(out, cd, len(entries))


def simple(entries: list[Entry]) -> bytes:
    """A plain, well-formed archive."""
    lay = layout(entries)
    return lay.locals + lay.directory + end_record(lay.count, len(lay.directory), len(lay.locals))


# -- what each loader reads ----------------------------------------------------------------


def _benign_pickle() -> bytes:
    return pickle.dumps({"ok": 1}, protocol=2)


def _numeric_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.arange(4.0))
    return buf.getvalue()


@dataclass(frozen=True)
class Kind:
    """A loader, the members it needs, and the member that holds its pickle."""

    name: str
    suffix: str
    code: str
    """Runs the real loader on `path` (as tests/loadrun.py's plain jobs do)."""
    member: bytes
    evil: Callable[[], bytes]
    benign: Callable[[], bytes]
    others: tuple[tuple[bytes, bytes], ...] = ()

    def entries(self, body: bytes, member: bytes | None = None) -> list[Entry]:
        """The archive's members, with `body` as the pickle-holding one."""
        return [Entry(member or self.member, body)] + [Entry(n, d) for n, d in self.others]


TORCH = Kind(
    "torch",
    ".pt",
    "import torch; torch.load(path, weights_only=False)",
    b"archive/data.pkl",
    payload,
    _benign_pickle,
    ((b"archive/version", b"3\n"), (b"archive/byteorder", b"little")),
)
NUMPY = Kind(
    "numpy",
    ".npz",
    "import numpy as np\nz = np.load(path, allow_pickle=True)\n[z[k] for k in z.files]",
    b"arr_0.npy",
    evil_npy_bytes,
    _numeric_npy,
)
PANDAS = Kind(
    "pandas",
    ".zip",
    "import pandas as pd; pd.read_pickle(path, compression='zip')",
    b"frame.pkl",
    payload,
    _benign_pickle,
)
KINDS = {k.name: k for k in (TORCH, NUMPY, PANDAS)}


# -- one archive per divergence ---------------------------------------------------------------


def zip64_decoy(kind: Kind) -> bytes:
    """The classic end record names a benign directory, the ZIP64 end record the hostile one.

    Both torch's reader and `zipfile` take every value from the ZIP64 record
    whenever a locator precedes the end record; a reader that uses it only
    when the classic fields are saturated reads the benign directory.
    """
    good = layout(kind.entries(kind.benign()))
    bad = layout(kind.entries(kind.evil()), len(good.locals))
    body = good.locals + bad.locals
    good_cd = len(body)
    bad_cd = good_cd + len(good.directory)
    record = bad_cd + len(bad.directory)
    return (
        body
        + good.directory
        + bad.directory
        + zip64_record(bad.count, len(bad.directory), bad_cd)
        + zip64_locator(record)
        + end_record(good.count, len(good.directory), good_cd)
    )


def count_below_directory(kind: Kind) -> bytes:
    """The end record counts one entry; the directory's size holds a second, hostile one.

    `zipfile` reads entries until the size is used up (numpy sees both
    arrays); torch's reader reads the count.
    """
    entries = [Entry(b"ok.npy", kind.benign()), Entry(kind.member, kind.evil())]
    lay = layout(entries)
    return lay.locals + lay.directory + end_record(1, len(lay.directory), len(lay.locals))


def concat_shift(kind: Kind) -> bytes:
    """A benign archive with no end record, then a hostile archive whose offsets count from its
    own start.

    `zipfile` finds the directory `size` bytes before the end record and
    shifts every offset by the bytes in front (the hostile archive); torch's
    reader takes the offsets as they are, and there it finds the benign
    directory, which has the same size.
    """
    evil = kind.evil()
    good = layout(kind.entries(bytes(len(evil))))  # same sizes: zeros, read by nobody's loader
    bad = layout(kind.entries(evil))
    assert len(good.locals) == len(bad.locals) and len(good.directory) == len(bad.directory)
    front = good.locals + good.directory
    return (
        front
        + bad.locals
        + bad.directory
        + end_record(bad.count, len(bad.directory), len(bad.locals))
    )


def locator_elsewhere(kind: Kind) -> bytes:
    """The ZIP64 locator points at one ZIP64 end record; another sits right before it.

    torch's reader reads the record the locator points at (the hostile
    directory); `zipfile` reads the one right before the locator (benign).
    """
    good = layout(kind.entries(kind.benign()))
    bad = layout(kind.entries(kind.evil()), len(good.locals))
    body = good.locals + bad.locals
    # The benign directory comes last, right before the record zipfile reads,
    # so that zipfile's shift is zero.
    bad_cd = len(body)
    far = bad_cd + len(bad.directory)
    good_cd = far + 56
    return (
        body
        + bad.directory
        + zip64_record(bad.count, len(bad.directory), bad_cd)
        + good.directory
        + zip64_record(good.count, len(good.directory), good_cd)
        + zip64_locator(far)
        + end_record(good.count, len(good.directory), good_cd)
    )


def duplicate_name(kind: Kind) -> bytes:
    """Two entries of one name: `zipfile` (numpy, pandas) reads the last, a scanner that keeps
    the first reads the benign one."""
    return simple([Entry(kind.member, kind.benign()), Entry(kind.member, kind.evil())])


def name_cut_at_nul(kind: Kind) -> bytes:
    """`zipfile` cuts a name at a NUL: `arr_0.npy\\0x` is `arr_0.npy`, and the later one wins."""
    return simple([Entry(kind.member, kind.benign()), Entry(kind.member + b"\0x", kind.evil())])


def case_insensitive_name(kind: Kind) -> bytes:
    """torch finds `archive/data.pkl` by a case-insensitive search: `archive/Data.pkl` holds a
    protocol-0 payload (no PROTO opcode), and there is no `data.pkl` at all."""
    body = b"cbuiltins\nopen\n(Vcanary\nVw\ntR."
    return simple(kind.entries(body, b"archive/Data.pkl"))


def stored_sizes_differ(kind: Kind) -> bytes:
    """A stored member whose central sizes differ: `zipfile` reads the smaller (a benign pickle
    cut before its STOP), torch's reader the uncompressed size, which runs on into a POP and the
    payload. A non-zero time field keeps miniz from refusing the archive (it checks the method
    and time fields as one 32-bit value)."""
    good = kind.benign()[:-1]
    body = good + b"0" + kind.evil()[2:]  # POP the benign object; the payload without PROTO
    entries = [Entry(kind.member, body, time=1)] + [Entry(n, d) for n, d in kind.others]
    raw = bytearray(simple(entries))
    struct.pack_into("<I", raw, raw.find(CENTRAL) + 20, len(good))  # its compressed size
    return bytes(raw)


def directory_flag(kind: Kind) -> bytes:
    """`data.pkl` holds a benign pickle but its central entry carries the DOS directory
    attribute: miniz extracts nothing into the buffer torch allocated, and torch unpickles
    uninitialized memory instead of the file's bytes."""
    entries = kind.entries(kind.benign())
    entries[0].external_attr = 0x10
    return simple(entries)


@dataclass(frozen=True)
class Hostile:
    """One byte-built archive and the loader that reads its payload."""

    name: str
    kind: Kind
    build: Callable[[Kind], bytes]
    divergence: bool = True
    """safeload reports the readers' disagreement (zip-reader-divergence)."""
    notes: tuple[str, ...] = field(default_factory=tuple)


HOSTILE: tuple[Hostile, ...] = (
    *(Hostile(f"zip64-decoy-{k.name}", k, zip64_decoy, divergence=False) for k in KINDS.values()),
    Hostile("count-below-directory-numpy", NUMPY, count_below_directory),
    Hostile("concat-shift-numpy", NUMPY, concat_shift),
    Hostile("concat-shift-pandas", PANDAS, concat_shift),
    Hostile("locator-elsewhere-torch", TORCH, locator_elsewhere),
    Hostile("duplicate-name-numpy", NUMPY, duplicate_name),
    Hostile("name-cut-at-nul-numpy", NUMPY, name_cut_at_nul),
    Hostile("case-insensitive-name-torch", TORCH, case_insensitive_name, divergence=False),
    Hostile("stored-sizes-differ-torch", TORCH, stored_sizes_differ),
)
