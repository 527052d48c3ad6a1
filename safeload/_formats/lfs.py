"""Git LFS pointer files: a few lines of text standing in for the real file."""

from __future__ import annotations

import re

_POINTER = re.compile(
    rb"version https://git-lfs\.github\.com/spec/v1\n(?:[a-z0-9.-]+ [^\n]*\n){1,8}\Z"
)
MAX_POINTER = 1024


def is_pointer(head: bytes, size: int) -> bool:
    """True for a Git LFS pointer (the spec caps them at 1024 bytes)."""
    return size <= MAX_POINTER and _POINTER.match(head) is not None


def describe(head: bytes) -> str:
    """`oid sha256:... size N` from the pointer, for the message."""
    fields = dict(
        line.split(" ", 1) for line in head.decode("utf-8", "replace").splitlines() if " " in line
    )
    oid = fields.get("oid", "?")
    size = fields.get("size", "?")
    return f"{oid}, {size} bytes"
