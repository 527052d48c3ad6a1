"""tar archives (plain; compressed ones arrive here already expanded), read by `tarfile`.

Every loader that opens a tar (torch's legacy loader, `pandas.read_pickle`) uses
Python's `tarfile`, so the archive is read by `tarfile` itself, in this very
interpreter: its numeric forms (octal with spaces or NULs, base-256), GNU long
names and links, PAX headers overriding path and size, and what it does with a
bad header after the first one (stop reading) are then the loaders' by
construction, not a model of them. Members are offset ranges of the buffer
(`TarInfo.offset_data`, `TarInfo.size`), never copies.
"""

from __future__ import annotations

import tarfile
from typing import Any

from .compress import capped_file
from .containers import Ctx, scan_blob
from .readings import Format

MAX_MEMBERS = 100_000

_ENCODING = tarfile.ENCODING
"""What `tarfile.open` decodes names with when the loader passes no encoding."""


def looks_like(head: bytes) -> bool:
    """`tarfile.open(mode="r:")` accepts this first header (torch tries exactly that).

    The header is parsed by `tarfile.TarInfo.frombuf`, the function `tarfile`
    parses it with: checksums and numbers in every form it accepts count.
    """
    try:
        tarfile.TarInfo.frombuf(head[:512], _ENCODING, "surrogateescape")
    except (tarfile.HeaderError, ValueError):
        return False
    return True


def _kind(info: tarfile.TarInfo) -> str:
    if info.islnk():
        return "hard link"
    if info.issym():
        return "symbolic link"
    if info.isdir():
        return "directory"
    return "special file"


def scan_tar(ctx: Ctx, data: Any, start: int, end: int, location: str, depth: int) -> Format:
    """Scan every regular member; torch's legacy tar layout gets its own reading."""
    from . import torch as torch_fmt

    members: dict[str, tuple[int, int]] = {}
    order: list[tuple[str, int, int]] = []
    last: dict[str, tarfile.TarInfo] = {}
    try:
        # The reads are capped at what the range holds: tarfile reads a GNU or PAX
        # record of the length its header claims, in one call.
        with tarfile.open(fileobj=capped_file(data, start, end), mode="r:") as tf:
            for info in tf:
                last[info.name] = info  # whatever its type: tarfile.getmember takes the last
                if len(last) > MAX_MEMBERS or len(order) >= MAX_MEMBERS:
                    ctx.add("resource-limit", f"more than {MAX_MEMBERS} tar members", location)
                    break
                if info.issparse():
                    # tarfile extracts a sparse member by its map; it is no byte range.
                    ctx.add(
                        "unsupported-container",
                        f"sparse tar member {info.name!r}; cannot be verified",
                        location,
                    )
                    continue
                if not info.isreg():
                    continue
                s = start + info.offset_data
                e = s + info.size
                if e > end:
                    # tarfile's extraction fails on it; what a loader did with the
                    # bytes before the cut cannot be told.
                    ctx.add("corrupt-container", f"tar member {info.name!r} is truncated",
                            location, info.offset)  # fmt: skip
                    e = end
                order.append((info.name, s, e))
                members[info.name] = (s, e)  # the last wins, as in tarfile.getmember (torch)
    except tarfile.TarError as exc:
        ctx.add("corrupt-container", f"tar archive cannot be read: {exc}", location, 0)
    for name in sorted(torch_fmt.LEGACY_TAR_MEMBERS & set(last)):
        info = last[name]
        if info.isreg() and not info.issparse():
            continue
        # torch extracts the last member of this name: a link makes it read
        # another member's bytes, or a file from the disk, not this one's.
        ctx.add(
            "unsupported-container",
            f"tar member {name!r}, which torch's legacy loader reads, is a {_kind(info)}"
            + (f" to {info.linkname!r}" if info.issym() or info.islnk() else "")
            + "; cannot be verified",
            location,
            info.offset,
        )
        members.pop(name, None)
    legacy = torch_fmt.is_legacy_tar(set(last))
    if legacy:
        torch_fmt.scan_legacy_tar(ctx, data, members, location, depth)
    # Every member is also scanned as what it is: pandas.read_pickle unpickles the
    # one file of an archive, and a legacy archive's other members are no concern
    # of torch's but still files someone may read.
    legacy_read = torch_fmt.LEGACY_TAR_MEMBERS if legacy else frozenset()
    for name, s, e in order:
        if name in legacy_read and members.get(name) == (s, e):
            continue  # read above, as torch reads it
        scan_blob(ctx, data, f"{location}:{name}", depth + 1, s, e, member=True)
    return Format.PYTORCH_TAR if legacy else Format.TAR
