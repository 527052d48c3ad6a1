"""Mutation fuzzing in the normal suite: benign files, damaged at random, never crash a parser.

The inputs are real files (pickles of every protocol, joblib dumps, PyTorch
zip and legacy files, npy/npz, compressed and archived pickles, signature
files, PEM and HMAC keys) with byte flips, cuts, inserts, repeated bytes,
boundary integers written over length fields and splices from other seeds.
Each goes through the same fuzz target the atheris harnesses run
(fuzz/fuzz_targets/): a defect is any exception but the parser's own error,
and for the scanner also an internal-error finding (SL312), which is the
scanner's last-resort net and never an acceptable answer.
Bounded: 1,000 to 2,000 examples per target (under a minute in all on an idle machine).
"""

from __future__ import annotations

import importlib
import io
import pickle
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_containers_fuzz import SEEDS as CONTAINER_SEEDS

ROOT = Path(__file__).resolve().parent.parent


def target(name: str) -> Callable[[bytes], None]:
    fuzz = str(ROOT / "fuzz")
    if fuzz not in sys.path:
        sys.path.insert(0, fuzz)
    one: Callable[[bytes], None] = importlib.import_module(f"fuzz_targets.{name}").one
    return one


def _pickle_seeds() -> dict[str, bytes]:
    import collections
    import datetime

    import joblib
    import numpy as np

    value: Any = {
        "a": [1, 2.5, "x", b"y", None, True, 2**70],
        "t": (1, (2,)),
        "s": {3},
        "o": collections.OrderedDict(k=1),
        "d": datetime.date(2020, 1, 2),
        "n": np.arange(4),
    }
    out = {f"p{p}": pickle.dumps(value, protocol=p) for p in range(pickle.HIGHEST_PROTOCOL + 1)}
    for compress in (0, 3):
        buf = io.BytesIO()
        joblib.dump(
            {"w": np.arange(6.0), "o": np.array([{}], dtype=object)}, buf, compress=compress
        )
        out[f"joblib-{compress}"] = buf.getvalue()
    return out


SCAN_SEEDS = {**CONTAINER_SEEDS, **_pickle_seeds()}


def _sign_seeds() -> dict[str, bytes]:
    import hashlib
    import tempfile

    from cryptography.hazmat.primitives.asymmetric import ed25519

    from safeload.sign import Ed25519Signer, HmacKey, HmacSigner, _dsse, sign

    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model.pt"
        model.write_bytes(b"model bytes")
        folder = Path(tmp) / "model"
        folder.mkdir()
        (folder / "w.bin").write_bytes(bytes(40))
        signers = {
            "hmac": HmacSigner(HmacKey("fuzz", bytes(range(32)))),
            "ed25519": Ed25519Signer(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32))),
        }
        for name, signer in signers.items():
            for subject in (model, folder):
                raw = sign(subject, signer, signature=Path(tmp) / f"{subject.name}.{name}.sig")
                data = raw.read_bytes()
                out[f"sig-{subject.name}-{name}"] = data
                out[f"statement-{subject.name}-{name}"] = _dsse.parse(data, "seed").payload
    assert hashlib.sha256(b"").hexdigest()  # hashlib is what the statements name
    return out


def _key_seeds() -> dict[str, bytes]:
    import tempfile

    from safeload.sign import generate_key

    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("ed25519", "ecdsa-p256", "hmac"):
            info = generate_key(kind, Path(tmp) / f"{kind}.key")  # type: ignore[arg-type]
            out[f"{kind}-private"] = info.private.read_bytes()
            if info.public is not None:
                out[f"{kind}-public"] = info.public.read_bytes()
    out["env"] = b"team:" + b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU="
    return out


SIGN_SEEDS = _sign_seeds()
KEY_SEEDS = _key_seeds()

_BOUNDARY = [
    struct.pack("<Q", 2**64 - 1),
    struct.pack("<q", -1),
    struct.pack("<q", -(2**63)),
    struct.pack("<I", 2**32 - 1),
    struct.pack("<I", 2**31),
    struct.pack("<H", 0xFFFF),
    struct.pack("<Q", 2**63),
    b"\x00\x00\x00\x00",
    b"\x7f\xff\xff\xff",
]


def mutated(seeds: dict[str, bytes]) -> st.SearchStrategy[bytes]:
    names = sorted(seeds)

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        raw = bytearray(seeds[draw(st.sampled_from(names))])
        for _ in range(draw(st.integers(1, 8))):
            what = draw(
                st.sampled_from(["flip", "cut", "insert", "repeat", "boundary", "splice", "erase"])
            )
            at = draw(st.integers(0, max(0, len(raw) - 1)))
            if what == "flip" and raw:
                raw[at] ^= 1 << draw(st.integers(0, 7))
            elif what == "cut":
                del raw[at:]
            elif what == "insert":
                raw[at:at] = draw(st.binary(min_size=1, max_size=16))
            elif what == "repeat":
                raw[at:at] = bytes([draw(st.integers(0, 255))]) * draw(st.integers(1, 300))
            elif what == "boundary":
                value = draw(st.sampled_from(_BOUNDARY))
                raw[at : at + len(value)] = value
            elif what == "erase":
                del raw[at : at + draw(st.integers(1, 64))]
            else:
                other = seeds[draw(st.sampled_from(names))]
                start = draw(st.integers(0, max(0, len(other) - 1)))
                raw[at:] = other[start : start + draw(st.integers(1, 512))]
        return bytes(raw)

    return build()


def selector(choices: int, seeds: dict[str, bytes]) -> st.SearchStrategy[bytes]:
    """A mutated seed behind the byte that picks a target's parser."""
    return st.tuples(st.integers(0, choices - 1), mutated(seeds)).map(
        lambda pair: bytes([pair[0]]) + pair[1]
    )


def bounded(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))


@bounded(2000)
@given(mutated(SCAN_SEEDS))
def test_scan_bytes_gives_every_damaged_file_a_verdict(data: bytes) -> None:
    target("scan")(data)


@bounded(1200)
@given(selector(7, SCAN_SEEDS))
def test_container_readers_raise_only_their_own_errors(data: bytes) -> None:
    target("containers")(data)


@bounded(1200)
@given(selector(4, SIGN_SEEDS))
def test_signature_parsers_raise_only_signature_errors(data: bytes) -> None:
    target("signature")(data)


@bounded(1000)
@given(selector(3, KEY_SEEDS))
def test_key_loaders_raise_only_key_file_errors(data: bytes) -> None:
    target("keys")(data)


@pytest.mark.parametrize("name", sorted(SCAN_SEEDS))
def test_every_scan_seed_is_read_without_internal_error(name: str) -> None:
    target("scan")(SCAN_SEEDS[name])


def test_the_targets_catch_what_they_claim(monkeypatch: pytest.MonkeyPatch) -> None:
    """A target must be able to fail: on an internal-error finding, and on a foreign exception."""
    import base64

    from safeload.scan import _core
    from safeload.sign import _keys

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("planted")

    with monkeypatch.context() as patch:
        patch.setattr(_core, "judge", broken)
        with pytest.raises(AssertionError, match="internal error"):
            target("scan")(SCAN_SEEDS["p4"])
    with monkeypatch.context() as patch:
        # `_b64_secret` as it was before the fuzzer found a non-ASCII secret.
        patch.setattr(
            _keys, "_b64_secret", lambda text, where: base64.b64decode(text, validate=True)
        )
        with pytest.raises(ValueError, match="ASCII"):
            target("keys")(b"\x01team:\xc3\xa9" + b"A" * 40)
