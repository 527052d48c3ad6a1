"""PyTorch files: the zip format, the legacy stacked-pickle format, the legacy tar format."""

from __future__ import annotations

import pickle
import struct
from typing import Any

from .._machine.opcodes import starts_with_proto
from .._machine.walker import PickleWalk, StreamAnalysis, walk_one
from . import numpy as npy
from . import zipread
from .containers import Ctx, add_reading, member_bytes, pickle_if_real, scan_blob, scan_pickle
from .readings import Format

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_MAGIC_PICKLES = tuple(pickle.dumps(MAGIC_NUMBER, protocol=p) for p in range(6))
_LEGACY_PICKLES = 5
"""magic number, protocol version, sys_info, the object, storage keys."""
_OBJECT = 3
"""Index of the pickle torch loads with its storage `persistent_load`."""


# -- zip ----------------------------------------------------------------------------


def archive_prefix(archive: zipread.Archive) -> str | None:
    """The folder of the first entry, as torch's reader takes it."""
    if not archive.members:
        return None
    first = archive.members[0].name
    return first.split("/", 1)[0] if "/" in first else None


def is_torch_zip(archive: zipread.Archive) -> bool:
    """`<prefix>/data.pkl` (or TorchScript's `<prefix>/constants.pkl`) is present."""
    prefix = archive_prefix(archive)
    if prefix is None:
        return False
    names = {m.name for m in archive.members}
    return f"{prefix}/data.pkl" in names or f"{prefix}/constants.pkl" in names


def is_torchscript(archive: zipread.Archive) -> bool:
    """torch's own test (`_is_torchscript_zip`): a `constants.pkl` record."""
    prefix = archive_prefix(archive)
    return prefix is not None and any(m.name == f"{prefix}/constants.pkl" for m in archive.members)


def scan_zip(ctx: Ctx, data: Any, archive: zipread.Archive, location: str, depth: int) -> Format:
    """Scan the pickles of a `torch.save` archive; tensor bytes stay unread.

    A TorchScript archive is one note: `torch.jit.load` resolves its pickles'
    names through the archive's own code, so Python's rules for names say
    nothing about what loading it runs.
    """
    prefix = archive_prefix(archive) or ""
    if is_torchscript(archive):
        code = sum(1 for m in archive.members if m.name.startswith(f"{prefix}/code/"))
        ctx.add(
            "torchscript-archive",
            f"TorchScript archive ({code} code files under {prefix}/code/): torch.load runs it "
            "with torch.jit.load, which executes the archive's own code (including "
            "__setstate__) while loading",
            location,
            0,
        )
        return Format.TORCHSCRIPT
    outside = next((m for m in archive.members if not m.name.startswith(f"{prefix}/")), None)
    if outside is not None:
        # torch's reader refuses the whole archive (it checks every name at open).
        ctx.add(
            "corrupt-container",
            f"torch.load refuses this archive: member {outside.name!r} is not in the folder "
            f"{prefix}/ of its first member",
            location,
            outside.header_offset,
        )
    undecodable = next((m for m in archive.members if not _utf8(m.raw_name)), None)
    if undecodable is not None:
        # torch.load lists every record (`get_all_records`) as UTF-8 and fails.
        ctx.add(
            "corrupt-container",
            f"torch.load refuses this archive: the name of member {undecodable.name!r} is not "
            "UTF-8",
            location,
            undecodable.header_offset,
        )
    refusal = _record_refusal(ctx, data, archive, location)
    if refusal is not None:
        ctx.add("corrupt-container", f"torch.load refuses this archive: {refusal[0]}", location,
                refusal[1])  # fmt: skip
    for m in archive.members:
        where = f"{location}:{m.name}"
        rel = m.name[len(prefix) + 1 :] if m.name.startswith(f"{prefix}/") else m.name
        if m.name.endswith(".debug_pkl"):
            # TorchScript source-range tables: only torch.jit.load's C++
            # unpickler reads them, and it resolves TorchScript's own types,
            # never Python globals.
            continue
        is_pickle = m.name.endswith(".pkl")
        if rel.startswith("data/") and not is_pickle:
            # Raw tensor bytes: never unpickled. np.load of the archive would
            # read a member that starts like an .npy file, so those are scanned.
            if bytes(data[m.data_offset : m.data_offset + 6]) == npy.MAGIC and m.method == 0:
                scan_blob(ctx, data, where, depth + 1, m.data_offset, m.data_end, member=True)
            continue
        if not is_pickle and m.method == 0:
            if not starts_with_proto(data, m.data_offset, m.data_end):
                continue
        content = member_bytes(ctx, data, m, location)
        if content is None:
            continue
        buf, s, e = content
        if is_pickle:
            scan_pickle(ctx, buf, s, e, where, torch=True)
        elif starts_with_proto(buf, s, e):
            pickle_if_real(ctx, buf, s, e, where)
    return Format.PYTORCH_ZIP


#: The format versions torch's reader reads (caffe2/serialize/versions.h:
#: kMinSupportedFileFormatVersion, kMaxSupportedFileFormatVersion).
MIN_VERSION, MAX_VERSION = 1, 10
_C_SPACE = b" \t\n\v\f\r"


def _record_refusal(
    ctx: Ctx, data: Any, archive: zipread.Archive, location: str
) -> tuple[str, int] | None:
    """Why `torch.load` refuses the archive's text records, and where (or None).

    torch's reader parses the `version` record (`.data/version` when there is
    one) when it opens the archive, and `_load` reads `data.pkl`, `.format_version`,
    `byteorder`, `.storage_alignment` and `.data/serialization_id`, each by a
    case-insensitive lookup (a missing optional one is skipped). miniz checks
    no CRC-32. A record whose bytes cannot be read is noted by `member_bytes`.
    """
    if not any(m.reader == zipread.TORCH for m in archive.members):
        return None  # torch's reader cannot open it at all (noted by the caller)
    version = _record(archive, ".data/version") or _record(archive, "version")
    if version is None:
        return "it has no version record", 0
    for member in (
        version,
        *(
            _record(archive, r)
            for r in ("data.pkl", ".format_version", "byteorder", ".storage_alignment",
                      ".data/serialization_id")
        ),
    ):  # fmt: skip
        if member is None:
            continue
        if member.refused:
            # Encrypted or patched: every reader refuses it (its bytes are scanned anyway).
            return f"record {member.name!r} is flagged encrypted or patched", member.header_offset
        if member.name.lower().endswith("/data.pkl"):
            continue  # its bytes are the pickle, read (and noted) by the scan below
        content = member_bytes(ctx, data, member, location)
        if content is None:
            return None  # noted already
        buf, s, e = content
        why = _text_record_refusal(member.name.rsplit("/", 1)[-1], bytes(buf[s:e]))
        if why is not None:
            return f"record {member.name!r} {why}", member.header_offset
    return None


def _record(archive: zipread.Archive, record: str) -> zipread.Member | None:
    """The entry torch's reader returns for `record`, as it looks it up."""
    query = zipread.torch_query(archive, record)
    found = zipread.torch_lookup(archive, query) if query else []
    return next((m for m in found if m.reader == zipread.TORCH), None)


def _text_record_refusal(record: str, text: bytes) -> str | None:
    """Why torch refuses this content of a text record (`record` as named in the archive:
    its case does not matter to torch), or None."""
    record = record.lower()
    if record == "version":
        # `caffe2::stoull`: strtoull of the C string (leading C spaces, a sign,
        # decimal digits; a minus negates modulo 2**64), compared as an int64.
        digits = text.split(b"\0", 1)[0].lstrip(_C_SPACE)
        sign = -1 if digits[:1] == b"-" else 1
        digits = digits[1:] if digits[:1] in (b"-", b"+") else digits
        n = len(digits) - len(digits.lstrip(b"0123456789"))
        if not n:
            return "is not a number (the archive's format version)"
        significant = digits[:n].lstrip(b"0") or b"0"
        if len(significant) > 20 or int(significant) >= 1 << 64:
            return "is a format version out of range"
        value = (sign * int(significant)) % (1 << 64)
        value -= (1 << 64) if value >= 1 << 63 else 0
        if not MIN_VERSION <= value <= MAX_VERSION:
            return f"gives format version {value}; torch reads {MIN_VERSION} to {MAX_VERSION}"
    elif record == "byteorder" and text not in (b"little", b"big"):
        return "is not 'little' or 'big'"
    elif record == ".storage_alignment":
        try:
            int(text)  # torch's own reading of it
        except ValueError:
            return "is not an integer (the storage alignment)"
    elif record == "serialization_id" and not _utf8(text):
        return "is not UTF-8 (torch returns it as a str)"
    return None


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# -- legacy stacked pickles -----------------------------------------------------------


def is_legacy_stacked(data: Any, start: int, end: int) -> bool:
    """The stream starts with torch's pickled magic number."""
    head = bytes(data[start : start + 64])
    return any(head.startswith(m) for m in _MAGIC_PICKLES)


def scan_legacy_stacked(ctx: Ctx, data: Any, start: int, end: int, location: str) -> Format:
    """Walk exactly the pickles `torch.load` reads; the raw storage bytes after them are not."""
    walks: list[PickleWalk] = []
    pos = start
    for _ in range(_LEGACY_PICKLES):
        if pos >= end:
            ctx.add(
                "truncated-pickle",
                f"legacy PyTorch file ends after {len(walks)} of its {_LEGACY_PICKLES} pickles",
                location,
                pos - start,
            )
            break
        # The object pickle is read with torch's legacy persistent_load, which
        # also resolves full-module ids (`torch.save(model)`) to their class.
        left = ctx.opcodes_left - sum(w.opcodes for w in walks)
        walk = walk_one(data, pos, end, left, module_pids=len(walks) == _OBJECT)
        walks.append(walk)
        if not walk.complete:
            break
        pos = walk.end
    for i, walk in enumerate(walks):
        add_reading(
            ctx, StreamAnalysis([walk], end=walk.end), data, start, location, torch=i == _OBJECT
        )
    if len(walks) == _LEGACY_PICKLES and all(w.complete for w in walks):
        _check_storages(ctx, data, walks, end, start, location)
    return Format.PYTORCH_LEGACY


#: Bytes per element of the storage types torch's legacy format names.
_ELEMENT_SIZE = {
    "DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2,
    "LongStorage": 8, "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1,
    "ByteStorage": 1, "BoolStorage": 1, "ComplexDoubleStorage": 16,
    "ComplexFloatStorage": 8, "QInt8Storage": 1, "QUInt8Storage": 1,
    "QInt32Storage": 4, "QUInt4x2Storage": 1, "QUInt2x4Storage": 1,
}  # fmt: skip


def _check_storages(
    ctx: Ctx, data: Any, walks: list[PickleWalk], end: int, start: int, location: str
) -> None:
    """The raw storages after the five pickles must all be there.

    `torch.load` reads, for each key of the storage-keys pickle in order, an
    8-byte element count and then that many elements; a file cut inside them
    fails to load, so it is not called safe.  The bytes themselves are never
    parsed as pickles (torch never unpickles them).
    """
    from .._machine.walker import Tup, const_value, is_str_const

    sizes: dict[str, int] = {}
    for _offset, pid in walks[_OBJECT].persids:
        if type(pid) is Tup and pid.items is not None and pid.n >= 3:
            storage_type, key = pid.items[1], pid.items[2]
            name = getattr(storage_type, "name", "")
            if is_str_const(data, key) and name in _ELEMENT_SIZE:
                try:
                    sizes[str(const_value(data, key))] = _ELEMENT_SIZE[name]
                except (UnicodeDecodeError, ValueError):
                    # torch.load cannot decode this key either: no storage
                    # is found for it, and the check below says so.
                    continue
    keys = _string_list(data, walks[-1].start, walks[-1].end)
    pos = walks[-1].end
    for key in keys or []:
        elsize = sizes.get(key)
        if elsize is None or pos + 8 > end:
            break
        count = struct.unpack_from("<q", data, pos)[0]
        if count < 0:
            break  # torch refuses a count that is not its storage's size
        pos += 8 + count * elsize
    else:
        if keys is not None and pos <= end:
            return
    ctx.add(
        "truncated-pickle",
        "the raw tensor storages after the legacy PyTorch pickles are missing or cut short",
        location,
        min(pos, end) - start,
    )


def _string_list(data: Any, a: int, b: int) -> list[str] | None:
    """The storage-keys pickle's list of strings (a plain, already walked stream)."""
    import pickletools

    try:
        ops = list(pickletools.genops(bytes(data[a:b])))
    except (ValueError, UnicodeDecodeError):
        return None
    return [arg for op, arg, _pos in ops if isinstance(arg, str) and "UNICODE" in op.name]


# -- legacy tar -------------------------------------------------------------------------


LEGACY_TAR_MEMBERS = frozenset({"sys_info", "pickle", "storages", "tensors"})
"""The members torch < 0.4 wrote (torch's loader never reads `sys_info`)."""


def is_legacy_tar(names: set[str]) -> bool:
    """torch's `legacy_load` reads this archive: it has a `storages` member.

    `legacy_load` opens any tar, extracts `storages` first and unpickles it
    (a missing one is a KeyError, which ends the load before any pickle),
    then `tensors`, then `pickle`. What torch wrote besides (`sys_info`) is
    never read, so it decides nothing.
    """
    return "storages" in names


class _Stop(Exception):
    pass


def scan_legacy_tar(
    ctx: Ctx, data: Any, members: dict[str, tuple[int, int]], location: str, depth: int
) -> Format:
    """Every pickle torch's legacy loader reads, in its order: all of `storages` (a
    count, then a record and raw bytes per storage, then the views), all of `tensors`,
    then `pickle`. A member that is missing is no reading (torch stops there)."""
    if "sys_info" in members:
        s, e = members["sys_info"]  # torch ignores it; what else would read it is a pickle
        scan_pickle(ctx, data, s, e, f"{location}:sys_info")
    if "pickle" in members:
        s, e = members["pickle"]
        scan_pickle(ctx, data, s, e, f"{location}:pickle", torch=True)
    if "storages" not in members:
        return Format.PYTORCH_TAR
    s, e = members["storages"]
    where = f"{location}:storages"
    try:
        count, pos = _int_pickle(ctx, data, s, e, where, s)
        for _ in range(count):
            walk, pos = _pickle(ctx, data, pos, e, where, s)
            types = [g.name for g in walk.globals if g.module == "torch"]
            size = _ELEMENT_SIZE.get(types[-1]) if types else None
            if size is None:
                ctx.add("malformed-pickle", "storage record names no known storage type",
                        where, walk.start - s)  # fmt: skip
                raise _Stop
            (numel,) = struct.unpack_from("<q", data, pos) if pos + 8 <= e else (-1,)
            if numel < 0 or pos + 8 + numel * size > e:
                ctx.add("truncated-pickle", "storage bytes run past the member", where, pos - s)
                raise _Stop
            pos += 8 + numel * size
        _pickle(ctx, data, pos, e, where, s)  # storage views
    except _Stop:
        pass
    if "tensors" not in members:
        return Format.PYTORCH_TAR
    s, e = members["tensors"]
    where = f"{location}:tensors"
    try:
        count, pos = _int_pickle(ctx, data, s, e, where, s)
        for _ in range(count):
            _walk, pos = _pickle(ctx, data, pos, e, where, s)
            if pos + 8 > e:
                raise _Stop
            (ndim,) = struct.unpack_from("<i", data, pos)
            pos += 8 + 16 * max(ndim, 0) + 8
            if ndim < 0 or pos > e:
                ctx.add("truncated-pickle", "tensor record runs past the member", where, pos - s)
                raise _Stop
    except _Stop:
        pass
    return Format.PYTORCH_TAR


def _pickle(
    ctx: Ctx, data: Any, pos: int, end: int, where: str, base: int
) -> tuple[PickleWalk, int]:
    walk = walk_one(data, pos, end, ctx.opcodes_left)
    add_reading(ctx, StreamAnalysis([walk], end=walk.end), data, base, where)
    if not walk.complete:
        raise _Stop
    return walk, walk.end


def _int_pickle(ctx: Ctx, data: Any, pos: int, end: int, where: str, base: int) -> tuple[int, int]:
    _walk, after = _pickle(ctx, data, pos, end, where, base)
    value = _small_int(bytes(data[pos:after]))
    if value is None or value < 0:
        ctx.add("malformed-pickle", "expected a pickled count", where, pos - base)
        raise _Stop
    return value, after


def _small_int(raw: bytes) -> int | None:
    """The int a tiny pickle (`[PROTO] int STOP`) holds, or None."""
    i = 2 if raw[:1] == b"\x80" else 0
    if raw[i : i + 1] == b"\x95":  # FRAME
        i += 9
    op, body = raw[i : i + 1], raw[i + 1 : -1]
    if not raw.endswith(b"."):
        return None
    if op == b"K" and len(body) == 1:
        return body[0]
    if op == b"M" and len(body) == 2:
        return int.from_bytes(body, "little")
    if op == b"J" and len(body) == 4:
        return int.from_bytes(body, "little", signed=True)
    if op == b"\x8a" and len(body) >= 1 and body[0] == len(body) - 1:
        return int.from_bytes(body[1:], "little", signed=True)
    if op in (b"I", b"L") and body.endswith(b"\n"):
        text = body[:-1].rstrip(b"L")
        return int(text) if text.isdigit() else None
    return None
