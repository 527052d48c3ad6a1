"""Which Ed25519 public keys may be trusted: canonical encodings of prime-order points.

OpenSSL (through `cryptography`) verifies with any 32 bytes as a key. A key
of small order (the identity, the points of order 2, 4 and 8, the all-zero
encoding) lets the signature `R = identity, S = 0` verify a share of all
messages, the identity key every message: whoever can write a signature file
then signs for it. A key with a small-order component, or one encoded with a
coordinate of p or more, is no key that `Ed25519PrivateKey` ever produces
(those are multiples of the base point, encoded canonically), so refusing
them costs nothing genuine. Checked once, when a key is loaded: RFC 8032
point decoding, then `[L]A` must be the identity and `A` must not be.
"""

from __future__ import annotations

__all__ = ["key_problem"]

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
"""The order of the base point (the prime subgroup)."""
_D = -121665 * pow(121666, -1, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)

_Point = tuple[int, int, int, int]
"""Extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, xy = T/Z."""
_IDENTITY: _Point = (0, 1, 1, 0)


def _add(a: _Point, b: _Point) -> _Point:
    # RFC 8032 section 5.1.4, complete for a = -1 twisted Edwards curves.
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    e1 = (y1 - x1) * (y2 - x2) % _P
    e2 = (y1 + x1) * (y2 + x2) % _P
    c = 2 * t1 * t2 * _D % _P
    dd = 2 * z1 * z2 % _P
    e, f, g, h = e2 - e1, dd - c, dd + c, e2 + e1
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def _multiply(scalar: int, point: _Point) -> _Point:
    result = _IDENTITY
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _is_identity(point: _Point) -> bool:
    x, y, z, _ = point
    return x % _P == 0 and (y - z) % _P == 0


def key_problem(raw: bytes) -> str | None:
    """Why 32-byte Ed25519 public key `raw` must not be trusted, or None."""
    if len(raw) != 32:
        return f"is {len(raw)} bytes, not 32"
    value = int.from_bytes(raw, "little")
    sign, y = value >> 255, value & ((1 << 255) - 1)
    if y >= _P:
        return "is not canonically encoded (its y coordinate is not below p)"
    x2 = (y * y - 1) * pow(_D * y * y + 1, -1, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return "is not a point of the curve"
    if x == 0 and sign:
        return "is not canonically encoded (negative zero x coordinate)"
    if x & 1 != sign:
        x = _P - x
    point: _Point = (x, y, 1, x * y % _P)
    if _is_identity(point):
        return "is the identity point (it verifies forged signatures)"
    if not _is_identity(_multiply(_L, point)):
        order = next((n for n in (2, 4, 8) if _is_identity(_multiply(n, point))), None)
        if order is not None:
            return f"is a point of small order {order} (it verifies forged signatures)"
        return "is not in the prime-order subgroup (it has a small-order component)"
    return None
