"""Fuzz target: key files and key variables fail only as `KeyFileError`s.

The first byte picks the loader, the rest is its input:

0. `read_key_file` (PEM private or public key, or an HMAC key as JSON), the
   file's bytes handed in directly;
1. `hmac_keys_from_env` (`kid:base64` entries or JSON) on the input as text;
2. a public key read from the input, then `PublicKey.verify` of a fixed
   signature (a malformed signature is False, never an exception).
"""

from __future__ import annotations

from pathlib import Path

from safeload.errors import KeyFileError
from safeload.sign import PublicKey, _keys

_REAL_READ = _keys._read


def _key_file(data: bytes) -> object:
    """`read_key_file` on `data`: its `_read` hands the input over instead of a file
    written per case (the size limit is kept), and is restored at once."""

    def read(path: Path) -> bytes:
        if len(data) > _keys.MAX_KEY_FILE:
            raise KeyFileError(f"{path} is too large to be a key file")
        return data

    _keys._read = read
    try:
        return _keys.read_key_file(Path("fuzz.key"))
    finally:
        _keys._read = _REAL_READ


def one(raw: bytes) -> None:
    if not raw:
        return
    which, data = raw[0] % 3, raw[1:]
    try:
        if which == 1:
            _keys.hmac_keys_from_env("K", {"K": data.decode("utf-8", "surrogateescape")})
            return
        key = _key_file(data)
        if which == 2 and isinstance(key, PublicKey):
            key.verify(data[-64:], data)
    except KeyFileError:
        return
