"""safetensors: an 8-byte header length, a JSON header, raw tensor bytes. No code."""

from __future__ import annotations

import json
import struct
from typing import Any

MAX_HEADER = 100_000_000  # the safetensors library's own limit
_USIZE_MAX = 2**64 - 1
_DTYPES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8,
    "F4": 1, "F6_E2M3": 1, "F6_E3M2": 1,
}  # fmt: skip


def looks_like(head: bytes, size: int) -> bool:
    """An 8-byte length that fits the file, followed by `{`."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    n: int = struct.unpack_from("<Q", head, 0)[0]
    return 2 <= n <= min(MAX_HEADER, size - 8)


def validate(data: Any, start: int, end: int) -> str | None:
    """None when the header and offsets are consistent, else what is wrong."""
    (n,) = struct.unpack_from("<Q", data, start)
    if n > MAX_HEADER or start + 8 + n > end:
        return "header length runs past the end of the file"
    try:
        header = json.loads(bytes(data[start + 8 : start + 8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return f"header is not JSON: {exc}"
    if not isinstance(header, dict):
        return "header is not a JSON object"
    body = end - (start + 8 + n)
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in info.items()
            ):
                return "__metadata__ must map strings to strings"
            continue
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            return f"tensor {name!r}: entry must have exactly dtype, shape, data_offsets"
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in _DTYPES:
            return f"tensor {name!r}: unknown dtype {dtype!r}"
        if not isinstance(shape, list) or not all(type(x) is int and x >= 0 for x in shape):
            return f"tensor {name!r}: bad shape"
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(type(x) is int for x in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= body
        ):
            return f"tensor {name!r}: data offsets outside the data section"
        # The safetensors library multiplies in usize with overflow checks and
        # refuses the file at the first overflow; so does this, which also keeps
        # the product small (thousands of 4000-digit sizes took minutes).
        numel = 1
        for x in shape:
            numel *= x
            if numel > _USIZE_MAX:
                return f"tensor {name!r}: shape overflows"
        bits = numel * _DTYPES[dtype] * 8
        if dtype in ("F4",):
            bits //= 2
        elif dtype.startswith("F6"):
            bits = bits * 6 // 8
        if (bits + 7) // 8 != offsets[1] - offsets[0]:
            return f"tensor {name!r}: shape and dtype do not match its byte range"
        spans.append((offsets[0], offsets[1]))
    spans.sort()
    pos = 0
    for a, b in spans:
        if a != pos:
            return "tensor byte ranges overlap or leave gaps"
        pos = b
    if pos != body:
        return f"{body - pos} bytes after the last tensor"
    return None
