"""`.npy` headers, read statically (numpy is never imported).

`np.load` reads the header as a Python literal, and when the dtype holds
objects (`O`, also inside a structured dtype) the array body is a pickle.
Anything else is raw numbers, reported as data.
"""

from __future__ import annotations

import ast
import io
import re
import struct
import tokenize
from dataclasses import dataclass
from typing import Any

MAGIC = b"\x93NUMPY"
#: Headers longer than this are refused (numpy's own default is 10 000, but
#: `allow_pickle=True` lifts numpy's limit, so a longer one is still read).
MAX_HEADER = 16 << 20

_NUMERIC = re.compile(
    r"[<>|=]?(?:b1|\?|[iu][1248]|[fc](?:2|4|8|10|12|16|32)|[SUVa]\d*|[Mm]8(?:\[\d*\w+\])?"
    r"|bool|int(?:8|16|32|64)?|uint(?:8|16|32|64)?|float(?:16|32|64|128)?"
    r"|complex(?:64|128|256)?|bytes|str|void|datetime64(?:\[\d*\w+\])?|timedelta64(?:\[\d*\w+\])?"
    r"|[bBhHiIlLqQpPefdgFDG])"
)
_OBJECT = re.compile(r"[<>|=]?(?:O\d*|object\d*)")


class NpyError(Exception):
    """The header cannot be read."""


@dataclass(frozen=True)
class NpyHeader:
    """What `np.load` learns from the header."""

    version: tuple[int, int]
    descr: object
    shape: tuple[int, ...]
    data_offset: int
    has_object: bool
    header_len: int


def read_header(data: Any, start: int, end: int) -> NpyHeader:
    """Parse the header at `start` (raises `NpyError`)."""
    if end - start < 10 or bytes(data[start : start + 6]) != MAGIC:
        raise NpyError("not an .npy file")
    major, minor = data[start + 6], data[start + 7]
    if minor != 0:  # numpy reads (1, 0), (2, 0) and (3, 0) only (format._check_version)
        raise NpyError(f"unsupported format version {major}.{minor}")
    if major == 1:
        (hlen,) = struct.unpack_from("<H", data, start + 8)
        pos = start + 10
    elif major in (2, 3):
        if end - start < 12:
            raise NpyError("truncated header")
        (hlen,) = struct.unpack_from("<I", data, start + 8)
        pos = start + 12
    else:
        raise NpyError(f"unsupported format version {major}.{minor}")
    if hlen > MAX_HEADER:
        raise NpyError(f"header of {hlen} bytes (limit {MAX_HEADER})")
    if pos + hlen > end:
        raise NpyError("header runs past the end of the file")
    raw = bytes(data[pos : pos + hlen])
    encoding = "utf-8" if major == 3 else "latin1"
    try:
        text = raw.decode(encoding)
        try:
            value = ast.literal_eval(text)
        except SyntaxError:
            if major > 2:
                raise
            # Python 2 wrote longs as `2L`; numpy drops the `L` after a number
            # token and parses again (`_filter_header`), so it still reads them.
            value = ast.literal_eval(_without_long_suffixes(text))
    except (
        UnicodeDecodeError,
        ValueError,
        SyntaxError,
        MemoryError,
        RecursionError,
        tokenize.TokenError,
        IndentationError,
    ) as exc:
        raise NpyError(f"header is not a Python literal: {type(exc).__name__}") from exc
    if not isinstance(value, dict) or set(value) != {"descr", "fortran_order", "shape"}:
        raise NpyError("header keys are not descr, fortran_order, shape")
    shape = value["shape"]
    if not isinstance(shape, tuple) or not all(type(x) is int and x >= 0 for x in shape):
        raise NpyError(f"bad shape {shape!r}")
    if not isinstance(value["fortran_order"], bool):
        raise NpyError("bad fortran_order")
    return NpyHeader(
        (major, minor), value["descr"], shape, pos + hlen, _has_object(value["descr"], 0), hlen
    )


def _without_long_suffixes(text: str) -> str:
    """numpy's `_filter_header`: the `L` name right after a number token goes.

    A character the tokenizer cannot read (an ERRORTOKEN: a backtick, `$`, an
    unterminated string) stays in numpy's filtered text, which then fails to
    parse, so the header is refused there. Reading on is what costs: after
    a run of spaces the tokenizer gives each space its own error token and
    rescans the rest of the run, quadratic in its length (10 KB of spaces
    took 74 s).
    """
    tokens = []
    after_number = False
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.ERRORTOKEN:
            raise SyntaxError(f"unreadable character {token.string!r} in the header")
        if not (after_number and token.type == tokenize.NAME and token.string == "L"):
            tokens.append(token)
        after_number = token.type == tokenize.NUMBER
    return tokenize.untokenize(tokens)


def _has_object(descr: object, depth: int) -> bool:
    """Mirror `numpy.lib.format.descr_to_dtype`: True if the dtype holds objects.

    A descr this cannot classify raises `NpyError` (fail closed).
    """
    if depth > 64:
        raise NpyError("dtype nested too deeply")
    if isinstance(descr, str):
        if _OBJECT.fullmatch(descr):
            return True
        if _NUMERIC.fullmatch(descr):
            return False
        raise NpyError(f"unrecognised dtype {descr!r}")
    if isinstance(descr, tuple):
        if len(descr) != 2:
            raise NpyError(f"unrecognised dtype {descr!r}")
        return _has_object(descr[0], depth + 1)
    if isinstance(descr, list):
        found = False
        for field in descr:
            if not isinstance(field, tuple) or len(field) not in (2, 3):
                raise NpyError(f"bad structured dtype field {field!r}")
            found = _has_object(field[1], depth + 1) or found
        return found
    raise NpyError(f"unrecognised dtype {descr!r}")
