"""tar archives (plain; compressed ones arrive here already expanded), walked member by member."""

from __future__ import annotations

import tarfile
from typing import Any

from .compress import range_file
from .containers import Ctx, scan_blob
from .readings import Format

MAX_MEMBERS = 100_000


def looks_like(head: bytes) -> bool:
    """A first 512-byte header whose checksum is right (what `tarfile` checks)."""
    if len(head) < 512 or head[:1] == b"\x00":
        return False
    field = head[148:156].split(b"\x00", 1)[0].strip()
    try:
        stored = int(field, 8)
    except ValueError:
        return False
    block = head[:148] + b"        " + head[156:512]
    unsigned = sum(block)
    signed = sum(b - 256 if b > 127 else b for b in block)
    return stored in (unsigned, signed)


def scan_tar(ctx: Ctx, data: Any, start: int, end: int, location: str, depth: int) -> Format:
    """Scan every regular member; torch's legacy tar layout gets its own reading."""
    from . import torch as torch_fmt

    members: dict[str, tuple[int, int]] = {}
    order: list[tuple[str, int, int]] = []
    last: dict[str, tarfile.TarInfo] = {}
    try:
        with tarfile.open(fileobj=range_file(data, start, end), mode="r:") as tf:
            for info in tf:
                last[info.name] = info  # whatever its type: tarfile.getmember takes the last
                if len(order) >= MAX_MEMBERS:
                    ctx.add("resource-limit", f"more than {MAX_MEMBERS} tar members", location)
                    break
                if info.issparse():
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
                    ctx.add("corrupt-container", f"tar member {info.name!r} is truncated",
                            location)  # fmt: skip
                    e = end
                order.append((info.name, s, e))
                members[info.name] = (s, e)  # the last wins, as in tarfile.getmember (torch)
    except tarfile.TarError as exc:
        ctx.add("corrupt-container", f"tar archive cannot be read: {exc}", location, 0)
    for name in sorted(torch_fmt.LEGACY_TAR_MEMBERS & set(last)):
        info = last[name]
        if not info.isreg():
            # torch extracts the last member of this name: a link makes it read
            # another member's bytes, or a file from the disk, not this one's.
            ctx.add(
                "unsupported-container",
                f"tar member {name!r}, which torch's legacy loader reads, is a "
                f"{'hard link' if info.islnk() else 'symbolic link' if info.issym() else 'special file'}"
                f" to {info.linkname!r}; cannot be verified",
                location,
            )
            members.pop(name, None)
    if torch_fmt.is_legacy_tar(set(members)):
        return torch_fmt.scan_legacy_tar(ctx, data, members, location, depth)
    for name, s, e in order:
        scan_blob(ctx, data, f"{location}:{name}", depth + 1, s, e, member=True)
    return Format.TAR
