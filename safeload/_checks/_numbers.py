"""Numbers parsed from text at load time: plain literals of bounded length only.

`fractions.Fraction('1e10000000')` computes 10**10**7 before it returns, and
`Fraction(Decimal('1e999999999'))` or `int(Decimal(...))` do the same through
`as_integer_ratio`. Genuine pickles write these numbers as `Fraction(22, 7)`,
`Decimal('3.14159')` and `complex(1.0, -2.0)`: short literals and constants.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ._base import Check, Problem, Site
from ._values import Values

__all__ = ["TEXT_NUMBER"]

#: Python's own limit on decimal digits converted to an int (`sys.int_max_str_digits`).
MAX_DIGITS = 4300
_MAX_DECIMAL_TEXT = 1 << 16
_MAX_INT_BYTES = 4096
_RATIONAL = re.compile(r"-?[0-9]{1,4300}(/[0-9]{1,4300})?")
_INTEGER = re.compile(r"\s*[+-]?[0-9]{1,4300}\s*")
_INTEGER_BASE = re.compile(r"\s*[+-]?(0[bBoOxX])?[0-9a-zA-Z]{1,4300}\s*")
_DECIMAL = re.compile(
    r"[+-]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,20})?|Infinity|Inf|s?NaN[0-9]{0,40})",
    re.IGNORECASE,
)
_FLOAT = re.compile(
    r"\s*[+-]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,20})?|inf(inity)?|nan)\s*",
    re.IGNORECASE,
)
_COMPLEX = re.compile(r"[\s()+\-0-9.eEjJ]{1,200}|[\s()+\-0-9.eEjJinfatyINFATY]{1,60}")

_FRACTION = ("fractions", "Fraction")
_DECIMAL_NAME = ("decimal", "Decimal")
_INT = ("builtins", "int")
_FLOAT_NAME = ("builtins", "float")
_COMPLEX_NAME = ("builtins", "complex")

#: (pattern, longest text) of each parser's text argument.
_TEXT: dict[tuple[str, str], tuple[re.Pattern[str], int]] = {
    _FRACTION: (_RATIONAL, 2 * MAX_DIGITS + 2),
    _DECIMAL_NAME: (_DECIMAL, _MAX_DECIMAL_TEXT),
    _INT: (_INTEGER, MAX_DIGITS + 64),
    _FLOAT_NAME: (_FLOAT, 1 << 12),
    _COMPLEX_NAME: (_COMPLEX, 1 << 8),
}
_MAX_ARGS = {_FRACTION: 2, _DECIMAL_NAME: 1, _INT: 2, _FLOAT_NAME: 1, _COMPLEX_NAME: 2}
_WHAT = {
    _FRACTION: "a plain rational (digits, or digits/digits)",
    _DECIMAL_NAME: "a plain decimal literal",
    _INT: "a plain integer",
    _FLOAT_NAME: "a plain float literal",
    _COMPLEX_NAME: "a plain complex literal",
}


def _text_problem(name: tuple[str, str], text: str, base: int | None = None) -> Problem:
    pattern, longest = _TEXT[name]
    if name == _INT and base not in (None, 10):
        pattern = _INTEGER_BASE
    shown = text if len(text) <= 40 else text[:37] + "..."
    if len(text) > longest or pattern.fullmatch(text) is None:
        return f"text {shown!r} is not {_WHAT[name]} of at most {longest} characters"
    return None


# -- symbolic --------------------------------------------------------------------------------


def _symbolic_arg(site: Site, item: object, index: int) -> Problem:
    values: Values = site.values
    name = site.name
    text = values.text(item)
    if text is None and type(values.const(item)) is bytes and name == _INT:
        text = values.const(item).decode("latin-1")
    if text is not None:
        if name == _COMPLEX_NAME and site.args is not None and len(site.args) > 1:
            return "complex() with two arguments takes numbers, not text"
        if name == _FRACTION and index == 1:
            return "a Fraction's denominator is a number, not text"
        base = None
        if name == _INT and index == 0 and site.args is not None and len(site.args) > 1:
            base = values.int_value(site.args[1])
        return _text_problem(name, text, base)
    if values.is_int(item):
        size = values.int_size(item)
        if size is None or size > _MAX_INT_BYTES:
            return f"an integer of {size} bytes"
        if name == _INT and index == 1:
            base = values.int_value(item)
            if base != 0 and not (base is not None and 2 <= base <= 36):
                return f"base {base} is not an int() base"
        return None
    if values.is_bool(item) or type(values.const(item)) is float:
        return None
    if name == _DECIMAL_NAME and index == 0 and type(values.const(item)) is bytes:
        return "Decimal() does not take bytes"
    return f"argument {index + 1} is not a number or text constant (something the pickle builds)"


def _number_symbolic(site: Site) -> Problem:
    if site.how.startswith("copyreg._reconstructor") and site.args is None:
        return None  # object.__new__ (or the base's __new__ on its state, checked apart)
    args = site.args
    if args is None:
        return "its arguments are not known one by one"
    if len(args) > _MAX_ARGS[site.name]:
        return f"{len(args)} arguments"
    for index, item in enumerate(args):
        problem = _symbolic_arg(site, item, index)
        if problem is not None:
            return problem
    return None


# -- real --------------------------------------------------------------------------------------


def _real(name: tuple[str, str]) -> Callable[[tuple[Any, ...]], Problem]:
    def check(args: tuple[Any, ...]) -> Problem:
        if len(args) > _MAX_ARGS[name]:
            return f"{len(args)} arguments"
        for index, value in enumerate(args):
            if type(value) is str:
                base = args[1] if name == _INT and len(args) > 1 and type(args[1]) is int else None
                if (name == _FRACTION and index == 1) or (name == _COMPLEX_NAME and len(args) > 1):
                    return "text where a number belongs"
                problem = _text_problem(name, value, base)
                if problem is not None:
                    return problem
            elif type(value) is int:
                if (value.bit_length() + 8) // 8 > _MAX_INT_BYTES:
                    return "an integer of more than 4096 bytes"
            elif type(value) is bytes and name == _INT and index == 0:
                problem = _text_problem(name, value.decode("latin-1"))
                if problem is not None:
                    return problem
            elif type(value) not in (float, bool):
                return f"argument {index + 1} is a {type(value).__name__}, not a number or text"
        return None

    return check


_NAMES = (_FRACTION, _DECIMAL_NAME, _INT, _FLOAT_NAME, _COMPLEX_NAME)
TEXT_NUMBER = Check(
    name="text-number",
    doc="numbers parsed at load (fractions.Fraction, decimal.Decimal, int, float, "
    "complex) get constants: plain literals of bounded length (no exponent in a "
    "Fraction) or numbers of at most 4096 bytes",
    names=frozenset(_NAMES),
    symbolic=_number_symbolic,
    arguments={name: _real(name) for name in _NAMES},
    what="number parsed from text",
)
