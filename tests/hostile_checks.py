"""Byte-built files that name only allowlisted globals and attack through values.

Shared by tests/test_checks.py (what the named checks refuse) and
tests/test_load_bounds.py (what the load-cost budget refuses).
"""

from __future__ import annotations

import struct

from picklebuild import appends as appends_
from picklebuild import (
    binget,
    binint,
    binint1,
    binput,
    empty_dict,
    empty_list,
    glob,
    long1,
    long4,
    mark,
    newfalse,
    newtrue,
    none,
    proto,
    reduce,
    sbu,
    setitems,
    short_binbytes,
    stop,
    tuple2,
    tuple_,
)
from picklebuild import build as build_

MULTIARRAY = "numpy._core.multiarray"
NUMERIC = "numpy._core.numeric"


def call(module: str, name: str, *args: bytes) -> bytes:
    """`module.name(*args)`."""
    return glob(module, name) + mark() + b"".join(args) + tuple_() + reduce()


def integer(n: int) -> bytes:
    """Any int, as LONG1 (or LONG4 when it needs more than 255 bytes)."""
    body = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return long1(body) if len(body) < 256 else long4(body)


def shape(*dims: int) -> bytes:
    return mark() + b"".join(integer(d) for d in dims) + tuple_()


def dtype(typestr: str, state: list[bytes]) -> bytes:
    """`numpy.dtype(typestr, False, True)` (a copy, as numpy pickles it) given `state`."""
    return (
        call("numpy", "dtype", sbu(typestr), newfalse(), newtrue())
        + mark()
        + b"".join(state)
        + tuple_()
        + build_()
    )


def simple_state(order: str, flags: int, elsize: int = -1, alignment: int = -1) -> list[bytes]:
    return [binint1(3), sbu(order), none(), none(), none(), binint(elsize), binint(alignment),
            binint1(flags)]  # fmt: skip


def f8() -> bytes:
    return dtype("f8", simple_state("<", 0))


def i8() -> bytes:
    return dtype("i8", simple_state("<", 0))


def o8(flags: int = 0x3F) -> bytes:
    """An object dtype; `flags=0` is the forgery: its items are not reference-counted."""
    return dtype("O8", simple_state("|", flags))


def structured(fields: list[tuple[str, bytes, int]], itemsize: int, flags: int) -> bytes:
    """A structured dtype: `fields` are (name, dtype, offset)."""
    entries = empty_dict() + mark()
    for name, sub, offset in fields:
        entries += sbu(name) + sub + integer(offset) + tuple2()
    entries += setitems()
    names = mark() + b"".join(sbu(n) for n, _, _ in fields) + tuple_()
    return dtype(
        f"V{itemsize}",
        [binint1(3), sbu("|"), none(), names, entries, binint(itemsize), binint1(1),
         binint1(flags)],
    )  # fmt: skip


def pointer(address: int = 0x10) -> bytes:
    return short_binbytes(struct.pack("<Q", address))


def frombuffer(raw: bytes, dt: bytes, count: int = 1) -> bytes:
    """`numpy._core.numeric._frombuffer(raw, dtype, (count,), 'C')` (protocol-5 arrays)."""
    return call(NUMERIC, "_frombuffer", raw, dt, shape(count), sbu("C"))


def reconstructed(dt: bytes, data: bytes, count: int = 1) -> bytes:
    """`_reconstruct(ndarray, (0,), b'b')` given `(1, (count,), dt, False, data)`."""
    return (
        call(MULTIARRAY, "_reconstruct", glob("numpy", "ndarray"), shape(0), short_binbytes(b"b"))
        + mark()
        + binint1(1)
        + shape(count)
        + dt
        + newfalse()
        + data
        + tuple_()
        + build_()
    )


def pickle_of(body: bytes) -> bytes:
    return proto(2) + body + stop()


# -- numpy dtype states ---------------------------------------------------------------------


def scalar_forged_object() -> bytes:
    """`multiarray.scalar(<object dtype, flags 0>, b'<address>')`: numpy reads the bytes as
    an object pointer and takes a reference to it, during the load."""
    return pickle_of(call(MULTIARRAY, "scalar", o8(flags=0), pointer(0x10)))


def frombuffer_forged_object_then_ufunc() -> bytes:
    """An object array forged from raw bytes, its pointer dereferenced by `numpy.add`."""
    array = frombuffer(pointer(0x4141414141), o8(flags=0)) + binput(0)
    return pickle_of(glob("numpy", "add") + mark() + array + binget(0) + tuple_() + reduce())


def newobj_forged_object() -> bytes:
    """The forged dtype built by `copyreg.__newobj__(numpy.dtype, 'O8', False, True)`."""
    dt = call(
        "copyreg", "__newobj__", glob("numpy", "dtype"), sbu("O8"), newfalse(), newtrue()
    ) + mark() + b"".join(simple_state("|", 0)) + tuple_() + build_()  # fmt: skip
    return pickle_of(call(MULTIARRAY, "scalar", dt, pointer(0x10)))


def hidden_object_field(sink: str = "frombuffer") -> bytes:
    """A structured dtype whose object field its flags hide (0x10, not 0x1b): its
    raw bytes become an object pointer that reading the field dereferences."""
    dt = structured([("o", o8(), 0)], 8, 0x10)
    if sink == "frombuffer":
        return pickle_of(frombuffer(pointer(0x10), dt))
    return pickle_of(reconstructed(dt, pointer(0x10)))


def field_outside_item() -> bytes:
    """A field 2**40 bytes past its 8-byte item: reading it reads far outside the array."""
    return pickle_of(frombuffer(pointer(1), structured([("a", f8(), 1 << 40)], 8, 0x10)))


def overlapping_object_field() -> bytes:
    """An int field on an object field's bytes: filling the int overwrites the pointer,
    which numpy then releases."""
    dt = structured([("o", o8(), 0), ("i", i8(), 0)], 8, 0x1B)
    rows = empty_list() + mark() + none() + binint1(16) + tuple2() + appends_()
    return pickle_of(reconstructed(dt, rows))


def float_counted_as_objects() -> bytes:
    """A float64 dtype with object flags: numpy releases its floats as pointers."""
    dt = dtype("f8", simple_state("<", 0x3F))
    rows = empty_list() + mark() + b"G" + struct.pack(">d", 1e-300) + appends_()
    return pickle_of(reconstructed(dt, rows))


# -- numpy.random's pickle constructors -------------------------------------------------------


def generator_ctor_calls(ctor: tuple[str, str], argument: bytes, name: str) -> bytes:
    """`numpy.random._pickle.<name>(argument, ctor)`: numpy calls `ctor(argument)`."""
    return pickle_of(call("numpy.random._pickle", name, argument, glob(*ctor)))


# -- numbers from text ------------------------------------------------------------------------


def fraction_of(text: str) -> bytes:
    return pickle_of(call("fractions", "Fraction", sbu(text)))


def fraction_of_decimal(text: str) -> bytes:
    """`Fraction(Decimal(text))`: as_integer_ratio computes 10**exponent."""
    return pickle_of(call("fractions", "Fraction", call("decimal", "Decimal", sbu(text))))


def decimal_of_int(digits: int) -> bytes:
    """`Decimal(<an int of `digits` decimal digits>)`: a quadratic conversion."""
    return pickle_of(call("decimal", "Decimal", integer(10**digits - 1)))


# -- load cost --------------------------------------------------------------------------------


def range_of(*bounds: int) -> bytes:
    return (
        glob("builtins", "range")
        + mark()
        + b"".join(integer(b) for b in bounds)
        + tuple_()
        + reduce()
    )


def consumed(module: str, name: str, iterable: bytes, *rest: bytes) -> bytes:
    return pickle_of(call(module, name, iterable, *rest))
