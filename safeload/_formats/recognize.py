"""What a file that is no pickle is, recognized by its content (never its name).

Only for the report: whether a file is `not-a-pickle` is decided by what the
loaders would do with it (the walker's inert failure, and no container
reading), and this module only names the format for the user. It reads a
bounded head of the file (and a few 8-byte probes for HDF5's superblock), so
its cost does not grow with the file.
"""

from __future__ import annotations

import re
from typing import Any

from .readings import Format
from .safetensors import looks_like as _safetensors_like

__all__ = ["DESCRIPTIONS", "recognize"]

_HEAD = 1 << 16
"""Bytes of the file read to recognize it."""

DESCRIPTIONS: dict[Format, str] = {
    Format.JSON: "JSON text",
    Format.UBJSON: "UBJSON (binary JSON, e.g. an XGBoost .ubj model)",
    Format.PROTOBUF: "a protobuf message (e.g. a SentencePiece tokenizer.model)",
    Format.ONNX: "an ONNX model (protobuf)",
    Format.GGUF: "a GGUF model",
    Format.HDF5: "HDF5 (e.g. a Keras .h5 model)",
    Format.SAFETENSORS: "safetensors",
    Format.PNG: "a PNG image",
    Format.JPEG: "a JPEG image",
    Format.GIF: "a GIF image",
    Format.WEBP: "a WebP image",
    Format.TEXT: "plain text",
    Format.EMPTY: "an empty file",
    Format.DATA: "data in no format safeload recognizes",
}
"""How each recognized format is named in messages."""

_MAGIC: tuple[tuple[bytes, Format], ...] = (
    (b"GGUF", Format.GGUF),
    (b"\x89PNG\r\n\x1a\n", Format.PNG),
    (b"\xff\xd8\xff", Format.JPEG),
    (b"GIF87a", Format.GIF),
    (b"GIF89a", Format.GIF),
)
_HDF5 = b"\x89HDF\r\n\x1a\n"
_HDF5_PROBES = 12
"""HDF5's superblock sits at 0, 512, 1024, 2048, ... (after a user block): probed
up to 1 MiB."""

_NOT_TEXT = re.compile("[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")
"""Control characters plain text does not hold (tabs, line breaks, form feeds and
the ANSI escape it may)."""

_JSON_AFTER_OBJECT = frozenset(b'"}')
_JSON_VALUE_START = frozenset(b'"{[]-0123456789tfn')
_UBJSON_LENGTHS = {ord("i"): 1, ord("U"): 1, ord("I"): 2, ord("l"): 4, ord("L"): 8}
_UBJSON_ARRAY_START = frozenset(b"ZNTFiUIlLdDCSH[{$#]")

# ONNX ModelProto fields (onnx.proto3) and their wire types: 1 ir_version,
# 2-4 producer name/version and domain, 5 model_version, 6 doc_string,
# 7 graph, 8 opset_import, 14 metadata_props, 20 training_info, 25 functions.
_ONNX_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2}
_PROTOBUF_MIN_FIELDS = 2


def recognize(data: Any, start: int, end: int) -> Format:
    """The format `data[start:end]` holds, or `Format.DATA` when none is recognized."""
    size = end - start
    if size <= 0:
        return Format.EMPTY
    head = bytes(data[start : start + min(size, _HEAD)])
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Format.WEBP
    if _is_hdf5(data, start, end):
        return Format.HDF5
    if _safetensors_like(head, size):
        return Format.SAFETENSORS
    text = _text(head, complete=size <= _HEAD)
    if text is not None:
        return Format.JSON if _is_json(text) else Format.TEXT
    if _is_ubjson(head):
        return Format.UBJSON
    fields = _protobuf_fields(head, size)
    if fields is not None:
        return Format.ONNX if _is_onnx(fields) else Format.PROTOBUF
    return Format.DATA


def _is_hdf5(data: Any, start: int, end: int) -> bool:
    at = 0
    for _ in range(_HDF5_PROBES):
        if start + at + len(_HDF5) > end:
            return False
        if bytes(data[start + at : start + at + len(_HDF5)]) == _HDF5:
            return True
        at = 512 if at == 0 else at * 2
    return False


def _text(head: bytes, *, complete: bool) -> str | None:
    """The head as text: UTF-8 (a sequence cut by the head's end aside) without
    NULs or control bytes other than tabs and line breaks; else None."""
    body = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Only a multi-byte sequence cut off by the end of the head is forgiven.
        if complete or exc.start < len(body) - 3 or exc.reason != "unexpected end of data":
            return None
        text = body[: exc.start].decode("utf-8")
    if _NOT_TEXT.search(text):
        return None
    return text


def _is_json(text: str) -> bool:
    """Text that opens as a JSON object or array does (what configs, tokenizers and
    XGBoost's .json models are)."""
    stripped = text.lstrip()
    if not stripped or stripped[0] not in "{[":
        return False
    rest = stripped[1:].lstrip()
    if not rest:
        return True
    allowed = _JSON_AFTER_OBJECT if stripped[0] == "{" else _JSON_VALUE_START
    return ord(rest[0]) in allowed


def _is_ubjson(head: bytes) -> bool:
    """A UBJSON object whose first key is length-prefixed UTF-8 (XGBoost's .ubj), or
    a UBJSON array opening with a type marker (asked only of bytes that are no text)."""
    if len(head) < 2:
        return False
    if head[0] == ord("["):
        return head[1] in _UBJSON_ARRAY_START
    if head[0] != ord("{"):
        return False
    if head[1] in b"$#}":
        return True
    width = _UBJSON_LENGTHS.get(head[1])
    if width is None or len(head) < 2 + width:
        return False
    n = int.from_bytes(head[2 : 2 + width], "big", signed=head[1] != ord("U"))
    key = head[2 + width : 2 + width + n]
    if not 0 < n <= 1024 or len(key) < min(n, len(head) - 2 - width):
        return False
    try:
        return key.decode("utf-8").isprintable()
    except UnicodeDecodeError:
        return False


def _varint(head: bytes, pos: int) -> tuple[int, int] | None:
    value = shift = 0
    for i in range(pos, min(pos + 10, len(head))):
        value |= (head[i] & 0x7F) << shift
        if not head[i] & 0x80:
            return value, i + 1
        shift += 7
    return None


def _protobuf_fields(head: bytes, size: int) -> list[tuple[int, int]] | None:
    """The (field number, wire type) pairs the head parses as, when it parses as a
    protobuf message of at least two fields (or one that runs past the head);
    else None. Groups (wire types 3 and 4) are deprecated and rejected."""
    fields: list[tuple[int, int]] = []
    pos = 0
    while pos < len(head) and len(fields) < 64:
        tag = _varint(head, pos)
        if tag is None:
            return None
        key, pos = tag
        number, wire = key >> 3, key & 7
        if number < 1 or number > (1 << 29) - 1 or wire not in (0, 1, 2, 5):
            return None
        fields.append((number, wire))
        if wire == 0:
            value = _varint(head, pos)
            if value is None:
                return None
            pos = value[1]
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            length = _varint(head, pos)
            if length is None:
                return None
            n, pos = length
            if pos + n > size:
                return None
            pos += n
        if pos > len(head):
            # The field runs past the head: what was read parsed, and fits the file.
            return fields if pos <= size else None
    return fields if len(fields) >= _PROTOBUF_MIN_FIELDS else None


def _is_onnx(fields: list[tuple[int, int]]) -> bool:
    return (
        fields[0] == (1, 0)
        and any(number in (7, 8) for number, _ in fields)
        and all(_ONNX_FIELDS.get(number) == wire for number, wire in fields)
    )
