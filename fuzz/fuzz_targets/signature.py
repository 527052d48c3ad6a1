"""Fuzz target: signature files and signed statements fail only as `SignatureError`s.

The first byte picks the parser, the rest is its input:

0. `_dsse.parse`, the envelope or bundle (JSON, base64);
1. `_statement.parse`, the in-toto statement a signature vouches for;
2. `authenticate` against a trust store of one HMAC key and one Ed25519 key;
3. the input as a statement signed by the trusted HMAC key: authenticated, then
   checked against a file (`Authenticated.check_bytes`), which reaches every
   use of the statement's names, digests and shard ranges.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ed25519

from safeload.errors import SignatureError
from safeload.sign import HmacKey, HmacSigner, TrustStore, _dsse, _signing, _statement, authenticate

HMAC = HmacKey("fuzz", bytes(range(32)))
TRUST = TrustStore([ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key()], [HMAC])
SIGNER = HmacSigner(HMAC)
MODEL = b"model bytes"


def _signed(payload: bytes) -> bytes:
    return _signing._envelope(payload, [SIGNER])


def one(raw: bytes) -> None:
    if not raw:
        return
    which, data = raw[0] % 4, raw[1:]
    try:
        if which == 0:
            _dsse.parse(data, "fuzz.sig")
        elif which == 1:
            _statement.parse(data, "fuzz.sig")
        elif which == 2:
            authenticate(data, TRUST, where="fuzz.sig")
        else:
            auth = authenticate(_signed(data), TRUST, where="fuzz.sig")
            for name in (".", "model.pt", "dir/model.pt"):
                try:
                    auth.check_bytes(MODEL, name)
                except SignatureError:
                    continue
    except SignatureError:
        return
