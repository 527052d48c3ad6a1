"""The locator: find every pickle a loader would deserialize, and only those bytes.

`scan_blob` sniffs *every* reading of a byte range (a zip at offset 0, a
pickle at offset 0, a zip at the tail, ...) and records each one; a range
with two readings is a polyglot. Formats are decided by the bytes, never by
a file name. Stored archive members are offset ranges of the file (its mmap),
never copies; compressed ones are expanded with a hard output limit.

Nothing here judges a name: the walk of each stream goes into a `Reading`,
and container problems into `Note`s, for the scanner to judge and the
guarded loader to deserialize.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from .._machine.opcodes import OPCODE_BYTES, starts_with_proto
from .._machine.walker import Event, StreamAnalysis, analyze, walk_one
from . import compress, lfs, safetensors, zipread
from . import numpy as npy
from .readings import Compressed, Compression, Format, Note, Reading, ReadingKind, Shape
from .recognize import DESCRIPTIONS, recognize

__all__ = [
    "DEFAULT_MAX_EXPANSION",
    "EXPANSION_FLOOR",
    "MAX_DEPTH",
    "MAX_EXPANDED",
    "Ctx",
    "container_kind",
    "expansion_limit",
    "scan_blob",
]

MAX_DEPTH = 8
"""Containers nested deeper than this are not opened (`resource-limit`)."""
MAX_EXPANDED = compress.BUDGET
"""Total bytes all decompression in one file may produce, whatever its size."""
DEFAULT_MAX_EXPANSION = 1100.0
"""Decompressed bytes one file may produce per byte of file (`--max-expansion`).

Above the 1032 a deflate stream can reach, so no single zlib/gzip (or lz4, about
255) stream ever passes it. Real models measured in bench/CONTAINERS.md expand 1
to 7.4 times; arrays of zeros reach 229 under joblib's zlib, 243 under lz4, 1028
under pandas' gzip, 6600-7000 under xz and lzma, 28000-32000 under zstd and
120000-500000 under bz2: the last three pass the limit once they expand beyond
`EXPANSION_FLOOR`. A 6.8 KB bz2 bomb is cut after 16 MiB."""
EXPANSION_FLOOR = 16 << 20
"""Decompressed bytes any file may produce, however small."""


def expansion_limit(size: int, max_expansion: float) -> int:
    """What decompression in a file of `size` bytes may produce in total."""
    return min(MAX_EXPANDED, max(EXPANSION_FLOOR, int(max_expansion * size)))


HEAD = 1024
_PEEK = 1 << 20
"""Bytes of a big deflated member expanded first, to see whether the rest is needed."""
_PARSE_ERRORS = (ValueError, IndexError, KeyError, OSError, EOFError, struct.error, RecursionError)

_ANY_OPCODE = OPCODE_BYTES - {ord("P")}
"""Bytes a pickle can start with (PERSID `P` excluded: without a `persistent_load`
it fails at once, and every zip starts with it)."""


@dataclass
class Ctx:
    """State shared by every container and member of one located file."""

    max_opcodes: int
    stack: ExitStack
    max_depth: int = MAX_DEPTH
    size: int = 0
    """The file's size: its decompression limit is a multiple of it."""
    max_expansion: float = DEFAULT_MAX_EXPANSION
    expand_left: int = -1
    """Decompressed bytes the file may still produce (-1: derived from `size`)."""
    readings: list[Reading] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    expanded: dict[str, Any] = field(default_factory=dict)
    plain_readers: bool = True
    """False inside a stream only joblib decompresses (zlib, lz4): no plain
    `pickle.load` (pandas included) reads what is inside it."""
    """Decompressed buffers by the location of their compressed range (the guarded
    loader reads these, never decompressing again)."""
    opcodes: int = 0
    expand_limit: int = field(init=False, default=0)
    stream: bool = False
    """Scan only (nothing is loaded from these readings): a compressed pickle stream
    is walked as it decompresses and the raw array bytes the walk skips are not
    held (`_spooled`); `expanded` then has no entry for it."""

    def __post_init__(self) -> None:
        if self.expand_left < 0:
            self.expand_left = expansion_limit(self.size, self.max_expansion)
        self.expand_limit = self.expand_left

    def add(self, rule_name: str, message: str, location: str, offset: int | None = None) -> None:
        """Record a container-level finding."""
        self.notes.append(Note(rule_name, message, location, offset))

    @property
    def opcodes_left(self) -> int:
        """Opcode budget left for this file (at least 1, so a spent budget is reported)."""
        return max(1, self.max_opcodes - self.opcodes)


def add_reading(
    ctx: Ctx,
    analysis: StreamAnalysis,
    data: Any,
    base: int,
    location: str,
    *,
    torch: bool = False,
) -> None:
    """Record a walked stream; its offsets are reported relative to `base`."""
    ctx.opcodes += analysis.opcodes
    kind = ReadingKind.TORCH if torch else ReadingKind.PICKLE
    start = analysis.pickles[0].start if analysis.pickles else base
    ctx.readings.append(Reading(kind, location, data, start, analysis.end, analysis, base))


def _format_of(analysis: StreamAnalysis) -> Format:
    for g in analysis.globals:
        if g.module == "joblib" or g.module.startswith("joblib."):
            return Format.JOBLIB
    return Format.PICKLE


def scan_pickle(
    ctx: Ctx,
    data: Any,
    start: int,
    end: int,
    location: str,
    *,
    torch: bool = False,
    inert: list[Event] | None = None,
) -> Format | None:
    """The reading of `pickle.load` / `joblib.load` (and torch's legacy stacked format).

    With `inert`, a stream no unpickler builds anything from (`StreamAnalysis.inert`)
    is no reading: why it fails goes into `inert`, its opcodes are counted, and
    None is returned.
    """
    from . import torch as torch_fmt

    if torch_fmt.is_legacy_stacked(data, start, end):
        return torch_fmt.scan_legacy_stacked(ctx, data, start, end, location)
    analysis = analyze(
        data, start, end, max_opcodes=ctx.opcodes_left, plain_reading=ctx.plain_readers
    )
    if inert is not None and analysis.inert is not None:
        ctx.opcodes += analysis.opcodes
        inert.append(analysis.inert)
        return None
    add_reading(ctx, analysis, data, start, location, torch=torch)
    return _format_of(analysis)


def pickle_if_real(ctx: Ctx, data: Any, start: int, end: int, location: str) -> Format | None:
    """A second reading as a pickle: counted only if the pickle at `start` imports something.

    Bytes that merely decode as a harmless pickle (a tar member named `N.txt`
    reads as NONE, STOP) import nothing, so they are no second reading.
    """
    from . import torch as torch_fmt

    if torch_fmt.is_legacy_stacked(data, start, end):
        return torch_fmt.scan_legacy_stacked(ctx, data, start, end, location)
    # Only the pickle at `start` counts: a loader fails at its first bad opcode
    # and never reaches pickles found further on (so random bytes cost one
    # short walk, not a search through the whole range).
    if not walk_one(data, start, end, ctx.opcodes_left).globals:
        return None
    analysis = analyze(data, start, end, max_opcodes=ctx.opcodes_left)
    add_reading(ctx, analysis, data, start, location)
    return _format_of(analysis)


def container_kind(head: bytes, size: int) -> Format | Compression | None:
    """The container the first bytes announce, or None."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return Format.ZIP
    if head.startswith(npy.MAGIC):
        return Format.NPY
    if head.startswith(b"ZF0x"):
        return Format.JOBLIB_ZF
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return Format.SEVEN_ZIP
    kind = compress.compression_of(head)
    if kind is not None:
        return Compression(kind)
    from . import tar

    if tar.looks_like(head):
        return Format.TAR
    if lfs.is_pointer(head, size):
        return Format.LFS_POINTER
    if safetensors.looks_like(head, size):
        return Format.SAFETENSORS
    return None


def scan_blob(
    ctx: Ctx,
    data: Any,
    location: str,
    depth: int,
    start: int = 0,
    end: int | None = None,
    *,
    member: bool = False,
) -> Shape:
    """Locate every reading of `data[start:end]`; returns what the range was read as.

    `member` marks an archive member: bytes no loader deserializes are then
    noted and skipped instead of being reported as a broken pickle.
    """
    end = len(data) if end is None else end
    if depth > ctx.max_depth:
        ctx.add(
            "resource-limit",
            f"containers nested more than {ctx.max_depth} deep; this one was not opened",
            location,
        )
        return Shape((Format.NESTED,))
    size = end - start
    if size <= 0:
        if not member:
            # pickle.load raises EOFError before anything else; no loader reads more.
            what = "the file is empty" if depth == 0 else "the decompressed stream is empty"
            ctx.add(
                "not-a-pickle",
                f"not a pickle in any format: {what}; every loader fails on it at once "
                "(pickle.load: EOFError)",
                location,
                0,
            )
        return Shape((Format.EMPTY,))
    head = bytes(data[start : start + min(size, HEAD)])
    kind = container_kind(head, size)
    formats: list[Format | Compressed] = []
    if kind is not None:
        try:
            formats.append(_HANDLERS[kind](ctx, data, start, end, location, depth, head))
        except _PARSE_ERRORS as exc:
            # A parser met bytes it did not expect: unverifiable, never a crash.
            ctx.add("corrupt-container", f"{kind.value} cannot be read: {exc}", location)
            formats.append(kind if isinstance(kind, Format) else Compressed(kind, _UNREAD))
    if kind is not Format.TAR and kind is not None and _tar_reading(head):
        # torch.load tries tarfile before anything else, and pandas' tar reading
        # tries a plain tar before any compression: a first block that is also a
        # valid tar header (a name that starts with b"PK\x03\x04" or a gzip magic)
        # is a second reading.
        formats.append(_tar(ctx, data, start, end, location, depth, head))
    found = _tail_zip(data, start, end, exact=kind is not None) if kind is not Format.ZIP else None
    tail = found[0] if found else None
    zip_begin = min((m.header_offset for m in tail.members), default=end) if tail else end
    # `zipfile` (pandas' zip reading) also finds a zip that a pickle merely holds
    # as a bytes value; its members are scanned, but that is no second reading
    # of the file, so no polyglot finding.
    embedded = False
    if found is not None and not found[1] and kind is None:
        first = walk_one(data, start, end, ctx.opcodes_left)
        embedded = first.complete and first.end > zip_begin
    # A pickle reading stops where an appended zip begins: loaders that read on
    # fail at its first local header (`PK`: PERSID without a persistent_load),
    # and the zip's own members are scanned as members below.
    pickle_end = zip_begin if not embedded and start < zip_begin < end else end
    inert: list[Event] = []
    if kind is None and (not member or starts_with_proto(head)):
        # pickle.load's reading, unless every unpickler fails on it before
        # building anything (`inert`): then the file may be no pickle at all.
        read = scan_pickle(ctx, data, start, pickle_end, location, inert=inert)
        if read is not None:
            formats.append(read)
    elif head[0] in _ANY_OPCODE:
        # Bytes that merely start with an opcode (a pickle need not start with
        # PROTO): a reading only if a pickle completes or imports something.
        second = pickle_if_real(ctx, data, start, pickle_end, location)
        if second is not None:
            formats.append(second)
    if tail is not None:
        try:
            zip_format = _scan_zip_archive(ctx, data, tail, location, depth)
        except _PARSE_ERRORS as exc:
            ctx.add("corrupt-container", f"zip cannot be read: {exc}", location)
            zip_format = Format.ZIP
        if not embedded:
            formats.append(zip_format)
    if len(formats) >= 2:
        ctx.add(
            "polyglot-file",
            f"the bytes read both as {Shape(tuple(formats[:1]))} and as "
            f"{' and '.join(str(Shape((f,))) for f in formats[1:])}: "
            "loaders disagree on what this file is",
            location,
            0,
        )
    if not formats and inert:
        return Shape((_not_a_pickle(ctx, data, start, end, location, depth, inert[0]),))
    if not formats:
        ctx.add(
            "unscanned-member",
            "neither a pickle nor a container any loader deserializes; not scanned",
            location,
        )
        return Shape((Format.DATA,))
    return Shape(tuple(formats))


def _not_a_pickle(
    ctx: Ctx, data: Any, start: int, end: int, location: str, depth: int, fail: Event
) -> Format:
    """SL305: no loader builds anything from these bytes and no container reading
    holds a pickle; the note names the format recognized by content."""
    found = recognize(data, start, end)
    where = "" if depth == 0 else " (of the decompressed bytes)"
    ctx.add(
        "not-a-pickle",
        f"not a pickle in any format: {DESCRIPTIONS[found]}; every loader (pickle, joblib, "
        f"numpy, pandas, torch) fails on it before importing, calling or building anything: "
        f"{fail.message}{where}",
        location,
        fail.offset if depth == 0 else None,
    )
    return found


def _tail_zip(data: Any, start: int, end: int, *, exact: bool) -> tuple[zipread.Views, bool] | None:
    """A zip archive found from the end, as `zipfile` finds one, and whether it ends at `end`.

    With `exact`, only an end record (and comment) that ends exactly at `end`
    counts: inside other containers a lenient search would find the archives
    they merely hold.
    """
    eocd = zipread.find_eocd(data, start, end)
    if eocd is None:
        return None
    (clen,) = memoryview(bytes(data[eocd + 20 : eocd + 22])).cast("H")
    at_end = eocd + 22 + clen == end
    if exact and not at_end:
        return None
    try:
        # torch.load reads a file as a zip only when it starts with one.
        views = zipread.read_views(data, start, end, torch=False)
    except (zipread.ZipError, ValueError, IndexError, struct.error):
        return None
    return (views, at_end) if views.members else None


# -- handlers ---------------------------------------------------------------------

Handler = Callable[[Ctx, Any, int, int, str, int, bytes], Format | Compressed]


def _zip(
    ctx: Ctx, data: Any, start: int, end: int, location: str, depth: int, head: bytes
) -> Format:
    try:
        views = zipread.read_views(data, start, end, torch=head.startswith(b"PK\x03\x04"))
    except (zipread.ZipError, ValueError, IndexError, struct.error) as exc:
        ctx.add("corrupt-container", f"zip archive cannot be read: {exc}", location, 0)
        return Format.ZIP
    return _scan_zip_archive(ctx, data, views, location, depth)


def _scan_zip_archive(
    ctx: Ctx, data: Any, views: zipread.Views, location: str, depth: int
) -> Format:
    """Every member any reader reads (`zipread.merged`), and where the readers disagree."""
    from . import torch as torch_fmt

    for read in views.archives:
        pair = zipread.overlapping(read)
        if pair is not None:
            ctx.add(
                "corrupt-container",
                f"zip members {pair[0].name!r} and {pair[1].name!r} share bytes (a zip bomb "
                "construction)",
                location,
                pair[1].header_offset,
            )
            break
    for message, offset in zipread.divergences(views):
        ctx.add("zip-reader-divergence", message, location, offset)
    archive, refusals = zipread.merged(views)
    for m, why in refusals:
        ctx.add("zip-reader-disagreement", why, f"{location}:{m.name}")
    zipfile_refuses = views.zipfile_error if views.zipfile is None else views.zipfile.refusal
    if views.torch is not None and zipfile_refuses is not None:
        # Not a divergence (SL311): no zipfile reading shows other bytes than torch's.
        ctx.add(
            "zip-reader-disagreement",
            f"{zipread.READERS[zipread.ZIPFILE]} cannot open this archive ({zipfile_refuses}): "
            "numpy.load and pandas.read_pickle fail on it; its entries were scanned as "
            "torch's zip reader reads them",
            location,
            0,
        )
    if views.torch is None and views.zipfile is not None and views.torch_error is not None:
        if torch_fmt.is_torch_zip(views.zipfile):
            ctx.add(
                "corrupt-container",
                f"torch's zip reader cannot open this PyTorch archive ({views.torch_error}): "
                "torch.load fails on it (its members were scanned as Python's zipfile reads "
                "them)",
                location,
                0,
            )
    if torch_fmt.is_torch_zip(archive):
        for m in views.torch.members if views.torch is not None else ():
            if (
                m.error is not None
                and m.method not in (0, 8)
                and m.error.endswith(f"compression method {m.method}")
            ):
                # miniz inflates stored and deflated entries only: zipfile reads
                # a bzip2 or lzma entry, torch.load fails on it.
                ctx.add(
                    "corrupt-container",
                    f"torch's zip reader cannot read {m.name!r} (compression method "
                    f"{m.method}): torch.load fails on this PyTorch archive (the member was "
                    "scanned as Python's zipfile reads it)",
                    f"{location}:{m.name}",
                    m.header_offset,
                )
        return torch_fmt.scan_zip(ctx, data, archive, location, depth)
    kinds = set()
    for m in archive.members:
        if m.name.endswith("/") and m.size == 0:
            continue
        content = member_bytes(ctx, data, m, location)
        if content is None:
            continue
        buf, s, e = content
        kinds.add(scan_blob(ctx, buf, f"{location}:{m.name}", depth + 1, s, e, member=True))
    return Format.NPZ if kinds and kinds <= _NPY_SHAPES else Format.ZIP


def member_bytes(
    ctx: Ctx, data: Any, m: zipread.Member, location: str
) -> tuple[Any, int, int] | None:
    """A member's bytes: a range of `data` when stored, else expanded (bounded)."""
    where = f"{location}:{m.name}"
    if m.error is not None:
        ctx.add("corrupt-container", f"zip member cannot be read: {m.error}", where)
        return None
    if m.method == 0:
        if m.size != m.compressed_size:
            # torch's reader refuses such an archive; other readers take either size.
            ctx.add(
                "corrupt-container",
                f"stored zip member sizes disagree ({m.compressed_size} vs {m.size})",
                where,
            )
            return (
                data,
                m.data_offset,
                min(len(data), m.data_offset + max(m.size, m.compressed_size)),
            )
        return data, m.data_offset, m.data_end
    kind = compress.ZIP_METHODS.get(m.method)
    if kind is None:
        ctx.add(
            "unsupported-container",
            f"zip member uses compression method {m.method}; cannot be verified",
            where,
        )
        return None
    # bzip2 and lzma members end where zipfile stops reading them: at their
    # declared size (an lzma stream need not carry an end marker).
    want = None if m.method == 8 else m.size
    if m.size > _PEEK:
        peek = _numeric_npy_head(ctx, data, m, kind)
        if peek is not None:
            return peek
    return expand_into(ctx, kind, data, m.data_offset, m.data_end, where, want=want)


def _numeric_npy_head(
    ctx: Ctx, data: Any, m: zipread.Member, kind: str
) -> tuple[Any, int, int] | None:
    """The decompressed head of a big numeric `.npy` member: all a scan needs of it.

    `np.savez_compressed` archives hold mostly numbers; their bytes need no
    parsing, so only the head is expanded to read the header.
    """
    try:
        out = compress.expand(kind, data, m.data_offset, m.data_end, _PEEK, ctx.stack)
    except compress.Unavailable:  # pragma: no cover - zlib is always there
        return None
    if out.error is not None or not bytes(out.data[:6]) == npy.MAGIC:
        return None
    try:
        header = npy.read_header(out.data, 0, out.size)
    except npy.NpyError:
        return None
    if header.has_object:
        return None
    return out.data, 0, out.size


def expand_into(
    ctx: Ctx,
    kind: str,
    data: Any,
    start: int,
    end: int,
    location: str,
    *,
    want: int | None = None,
) -> tuple[Any, int, int] | None:
    """Decompress a range within the file's budget, recording why it stopped early."""
    try:
        out = compress.expand(kind, data, start, end, ctx.expand_left, ctx.stack, want=want)
    except compress.Unavailable as exc:
        ctx.add("unsupported-container", f"{kind}-compressed; cannot be verified: {exc}", location)
        return None
    ctx.expanded[location] = out.data
    return _expanded(ctx, kind, out, location)


def _expanded(ctx: Ctx, kind: str, out: compress.Expanded, location: str) -> tuple[Any, int, int]:
    """Count a decompressed stream against the file's limit and note why it ended."""
    ctx.expand_left -= out.size
    if out.stopped == "limit":
        ctx.add(
            "decompression-limit",
            f"decompression stopped after {ctx.expand_limit} bytes: the limit for this "
            f"{ctx.size}-byte file ({ctx.max_expansion:g} times its size, at least "
            f"{compress.size_text(EXPANSION_FLOOR)}, at most {compress.size_text(MAX_EXPANDED)}), "
            f"and the {kind} stream goes on (a decompression bomb?); the rest was not analyzed",
            location,
        )
    elif out.stopped == "budget":
        ctx.add(
            "decompression-limit",
            f"decompression stopped after {out.size} bytes: the files being read at once "
            f"already hold the {compress.size_text(compress.budget().total)} all decompression "
            "may hold "
            "(scan fewer files in parallel, e.g. --jobs 1); the rest was not analyzed",
            location,
        )
    if out.error is not None:
        ctx.add("corrupt-container", out.error, location)
    elif out.trailing:
        ctx.add(
            "trailing-data",
            f"{out.trailing} bytes after the end of the {kind} stream",
            location,
        )
    return out.data, 0, out.size


def _compressed(
    ctx: Ctx, data: Any, start: int, end: int, location: str, depth: int, head: bytes
) -> Compressed:
    kind = compress.compression_of(head)
    assert kind is not None  # the handler is chosen by this very magic
    content = _spooled(ctx, kind, data, start, end, location) if ctx.stream else None
    if content is None:
        content = expand_into(ctx, kind, data, start, end, location)
    if content is None:
        return Compressed(Compression(kind), _UNREAD)
    buf, s, e = content
    # pandas.read_pickle decompresses gzip, bz2, xz and zstd before a plain
    # pickle.load; zlib and lz4 streams are read by joblib alone.
    outer, ctx.plain_readers = ctx.plain_readers, ctx.plain_readers and kind not in _JOBLIB_ONLY
    try:
        inner = scan_blob(ctx, buf, location, depth + 1, s, e)
    finally:
        ctx.plain_readers = outer
    return Compressed(Compression(kind), inner)


def _spooled(
    ctx: Ctx, kind: str, data: Any, start: int, end: int, location: str
) -> tuple[Any, int, int] | None:
    """A compressed pickle stream, decompressed while its first pickle is walked.

    The walk (`walk_one`, the same walk the scan then makes) tells the spool
    which raw joblib arrays it skips; their bytes are decompressed, counted
    against the limit and dropped. The stream is then read as any expanded
    stream is (`scan_blob`) from the same map, where the dropped ranges read as
    zeros: every reading of a plain pickle stream skips them the same way
    (the walk decides the ranges from the bytes before them alone), the first
    and last bytes of the stream, which container sniffing reads, are kept,
    and a stream that turns out to be anything else, or to end inside a
    dropped range, is expanded again whole from the same held bytes. None:
    the caller expands it whole (as for the loader, which reads arrays).
    """
    plain = ctx.plain_readers and kind not in _JOBLIB_ONLY
    try:
        spool = compress.Spool(kind, data, start, end, ctx.expand_left, ctx.stack, plain=plain)
    except (OSError, ValueError, OverflowError, AttributeError, compress.Unavailable):
        # No map of that size here (an address-space limit, strict overcommit, a
        # platform without anonymous private maps): expand as the loader does.
        return None
    buf = spool.buf
    soft = buf.spool_more(HEAD, 0)
    head = bytes(buf[: min(spool.size, HEAD)])
    if starts_with_proto(head) and not _tar_reading(head):
        try:
            walk_one(buf, 0, soft, ctx.opcodes_left)
        except compress.Abandon:  # pragma: no cover - the walk's last resort catches it
            pass
    out = spool.finish()
    if out is None:
        return None
    head = bytes(out.data[: min(out.size, HEAD)])
    if spool.released and (container_kind(head, out.size) is not None or _tar_reading(head)):
        spool.close()
        return None
    return _expanded(ctx, kind, out, location)


_JOBLIB_ONLY = frozenset({"zlib", "lz4"})
"""Compressions no loader but joblib undoes (pandas infers gzip, bz2, xz, zstd, zip, tar)."""


def _npy(
    ctx: Ctx, data: Any, start: int, end: int, location: str, depth: int, head: bytes
) -> Format:
    try:
        header = npy.read_header(data, start, end)
    except npy.NpyError as exc:
        ctx.add("corrupt-container", f".npy header cannot be read: {exc}", location, 0)
        return Format.NPY
    if not header.has_object:
        return Format.NPY
    # np.load(allow_pickle=True) unpickles the array body.
    scan_pickle(ctx, data, header.data_offset, end, location)
    return Format.NPY_OBJECT


def _joblib_zf(
    ctx: Ctx, data: Any, start: int, end: int, location: str, depth: int, head: bytes
) -> Format:
    """A joblib <= 0.9 "Z-file": the main pickle of a legacy dump, or a raw array buffer.

    Laid out as `read_zfile` reads it: "ZF", the length in hex padded to 19
    characters, one optional space (joblib 0.8.x wrote it), then a zlib
    stream. The main file is a pickle and is judged like any other: its
    wrappers that open companion files are globals a deny rule names. A
    companion `.z` file holds raw array bytes that `read_zfile` hands to
    `ndarray.__setstate__`: no loader unpickles it.
    """
    body = start + 21
    if body < end and data[body] == ord(" "):
        body += 1
    content = expand_into(ctx, "zlib", data, body, end, location)
    if content is None:
        return Format.JOBLIB_ZF
    buf, s, e = content
    inert: list[Event] = []
    scan_pickle(ctx, buf, s, e, location, inert=inert)
    if inert:
        ctx.add(
            "not-a-pickle",
            "a joblib Z-file holding raw array bytes (the companion of a legacy joblib dump): "
            f"joblib.load fails on them before building anything ({inert[0].message})",
            location,
            0,
        )
    return Format.JOBLIB_ZF


def _seven_zip(
    ctx: Ctx, data: Any, start: int, end: int, location: str, depth: int, head: bytes
) -> Format:
    ctx.add("unsupported-container", "7z archive: unsupported container; cannot be verified",
            location, 0)  # fmt: skip
    return Format.SEVEN_ZIP


def _tar_reading(head: bytes) -> bool:
    from . import tar

    return tar.looks_like(head)


def _tar(
    ctx: Ctx, data: Any, start: int, end: int, location: str, depth: int, head: bytes
) -> Format:
    from . import tar

    return tar.scan_tar(ctx, data, start, end, location, depth)


def _lfs(
    ctx: Ctx, data: Any, start: int, end: int, location: str, depth: int, head: bytes
) -> Format:
    ctx.add(
        "lfs-pointer",
        f"not scanned: Git LFS pointer ({lfs.describe(head)}); fetch the real file "
        "(git lfs pull) and scan it",
        location,
        0,
    )
    return Format.LFS_POINTER


def _safetensors(
    ctx: Ctx, data: Any, start: int, end: int, location: str, depth: int, head: bytes
) -> Format:
    problem = safetensors.validate(data, start, end)
    if problem is not None:
        ctx.add("corrupt-container", f"safetensors file is invalid: {problem}", location, 0)
    return Format.SAFETENSORS


_NPY_SHAPES = frozenset({Shape((Format.NPY,)), Shape((Format.NPY_OBJECT,))})
_UNREAD = Shape(())
"""The inner shape of a compressed stream that could not be expanded."""

_HANDLERS: dict[Format | Compression, Handler] = {
    Format.ZIP: _zip,
    Format.NPY: _npy,
    Format.JOBLIB_ZF: _joblib_zf,
    Format.SEVEN_ZIP: _seven_zip,
    Format.TAR: _tar,
    Format.LFS_POINTER: _lfs,
    Format.SAFETENSORS: _safetensors,
    **{kind: _compressed for kind in Compression if kind is not Compression.DEFLATE},
}
