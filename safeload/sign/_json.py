"""Bounded, strict JSON for signature files, signed statements and HMAC key files.

Python's `json` builds every object before anything can look at it: a
signature file of `[{},{},...]` costs about 20 times its size in memory, a
deep nesting costs a `RecursionError`, and a 5000-digit integer a
`ValueError`. So the text is measured first, with regular expressions that
run at C speed and build nothing: nesting depth, containers, values and the
length of every number are checked against the caller's limits, and only
then is it parsed. The parse itself refuses duplicate keys (two parsers
taking different values from one signature is how signatures get bypassed),
`NaN`/`Infinity` and numbers that do not fit a float.

Every failure is a `JsonError` (a `ValueError`); callers turn it into their
own error type.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["ENVELOPE_LIMITS", "KEY_LIMITS", "STATEMENT_LIMITS", "JsonError", "Limits", "loads"]


class JsonError(ValueError):
    """Text that is not strict JSON, or exceeds a limit."""


@dataclass(frozen=True)
class Limits:
    """What one kind of JSON document may hold."""

    depth: int
    """Deepest nesting of objects and arrays."""
    containers: int
    """Objects and arrays in all."""
    values: int
    """Commas plus one: an upper bound on the members and elements."""
    number: int = 32
    """Longest number literal, in characters."""


ENVELOPE_LIMITS = Limits(depth=16, containers=512, values=4096)
"""A signature file: a bundle holds a few dozen values besides the one payload string."""
STATEMENT_LIMITS = Limits(depth=16, containers=1 << 18, values=1 << 20)
"""A signed statement: a few values per listed file."""
KEY_LIMITS = Limits(depth=4, containers=8, values=64)
"""An HMAC key file: one flat object."""

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_NUMBER = re.compile(r"[-+0-9.eE]+")


def _measure(text: str, limits: Limits) -> None:
    # Strings are cut out first, so brackets and commas inside them do not count.
    # Where this reading and the parser's could differ (an unterminated string,
    # a raw control character), the parser stops with an error at that point,
    # so it never builds more than was measured here.
    bare = _STRING.sub('""', text)
    containers = bare.count("{") + bare.count("[")
    if containers > limits.containers:
        raise JsonError(f"holds {containers} objects and arrays (at most {limits.containers})")
    values = bare.count(",") + 1
    if values > limits.values:
        raise JsonError(f"holds {values} values (at most {limits.values})")
    depth = deepest = 0
    for match in _BRACKET.finditer(bare):
        depth += 1 if match[0] in "[{" else -1
        if depth > deepest:
            deepest = depth
            if deepest > limits.depth:
                raise JsonError(f"is nested more than {limits.depth} levels deep")
    for match in _NUMBER.finditer(bare):
        if len(match[0]) > limits.number:
            raise JsonError(
                f"holds a number of {len(match[0])} characters (at most {limits.number})"
            )


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise JsonError(f"repeats the key {key[:64]!r} in one object")
            seen.add(key)
    return result


def _constant(name: str) -> None:
    raise JsonError(f"holds the non-standard constant {name}")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonError(f"holds the number {text[:16]}, which does not fit a float")
    return value


def loads(data: bytes | str, limits: Limits) -> Any:
    """Parse strict UTF-8 JSON within `limits`; raises `JsonError`."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonError(f"is not UTF-8 text (byte {exc.start})") from None
    else:
        text = data
    _measure(text, limits)
    try:
        return json.loads(
            text, object_pairs_hook=_object, parse_constant=_constant, parse_float=_float
        )
    except JsonError:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise JsonError(f"is not valid JSON ({exc or type(exc).__name__})") from None
