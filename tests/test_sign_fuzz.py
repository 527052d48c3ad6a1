"""Property: every malformed signature, statement or key file fails as safeload's own error.

Hypothesis mutates real signature files (an ECDSA bundle and an HMAC envelope
made in the test run), signed statements (signed by a trusted key, so the
statement parser and `check_bytes` see them), and PEM key files, byte by byte
and value by value, with the inputs that crashed before: huge integers and
floats, non-standard constants, deep nesting, duplicate keys, control
characters. Verification must end as a `SignatureError` subclass (or succeed),
key loading as a `KeyFileError` (or succeed), and the CLI must answer with a
verdict (0 or 1), never a traceback or the error code of a crash.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safeload._cli.sign import add_parsers, run
from safeload.errors import KeyFileError, SignatureError
from safeload.sign import (
    EcdsaSigner,
    HmacKey,
    HmacSigner,
    TrustStore,
    _signing,
    _statement,
    authenticate,
)
from safeload.sign._keys import read_key_file

MODEL = b"\x80\x05K\x01."
HMAC = HmacKey("fuzz", os.urandom(32))
ECDSA = ec.generate_private_key(ec.SECP256R1())
TRUST = TrustStore([ECDSA.public_key()], [HMAC])
SIGNERS = (EcdsaSigner(ECDSA), HmacSigner(HMAC))
STATEMENT = _statement.build(
    "model.bin", {".": __import__("hashlib").sha256(MODEL).hexdigest()}, ()
)
ENVELOPES = (
    *(_signing._envelope(STATEMENT, [s]) for s in SIGNERS),
    _signing._envelope(STATEMENT, list(SIGNERS)),
)
RAW_TOKENS = (
    "9" * 5000,
    "-" + "9" * 400,
    "1e999",
    "-1e400",
    "1.5",
    "NaN",
    "Infinity",
    "[" * 40 + "]" * 40,
    '"\\u0000\\u001b[2K\\r"',
    '"\\ud800"',
    "{}",
    "[]",
    "null",
    "true",
    '""',
    '"!!"',
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[head] = _replace(node[head], rest, value)
    return copy


@st.composite
def mutated_json(draw: st.DrawFn, original: bytes) -> bytes:
    """`original` (JSON) with a few changes: values replaced, raw tokens, duplicate keys,
    bytes inserted, deleted or flipped."""
    data = original
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["value", "raw", "duplicate", "bytes", "payload"]))
        try:
            document = json.loads(data)
        except ValueError:
            kind = "bytes"
        if kind in ("value", "raw"):
            paths = _paths(document)
            path = draw(st.sampled_from(paths))
            marker = "\u2063MARK\u2063"
            value = draw(json_values) if kind == "value" else marker
            text = json.dumps(_replace(document, path, value))
            if kind == "raw":
                text = text.replace(json.dumps(marker), draw(st.sampled_from(RAW_TOKENS)))
            data = text.encode()
        elif kind == "duplicate":
            text = data.decode("utf-8", "replace")
            keys = [
                k
                for k in ('"payload":', '"keyid":', '"sig":', '"name":', '"digest":', '"hint":')
                if k in text
            ]
            if keys:
                key = draw(st.sampled_from(keys))
                data = text.replace(
                    key, f"{key} {draw(st.sampled_from(RAW_TOKENS))}, {key}", 1
                ).encode()
        elif kind == "payload" and isinstance(document, dict):
            # A mutated statement inside an envelope that is otherwise intact.
            envelope = document.get("dsseEnvelope", document)
            if isinstance(envelope, dict) and isinstance(envelope.get("payload"), str):
                inner = draw(mutated_json(STATEMENT))
                envelope["payload"] = base64.b64encode(inner).decode()
                data = json.dumps(document).encode()
        else:
            position = draw(st.integers(0, max(len(data) - 1, 0)))
            action = draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
            if action == "flip" and data:
                data = (
                    data[:position]
                    + bytes([data[position] ^ draw(st.integers(1, 255))])
                    + data[position + 1 :]
                )
            elif action == "insert":
                data = data[:position] + draw(st.binary(min_size=1, max_size=8)) + data[position:]
            elif action == "delete":
                data = data[:position] + data[position + draw(st.integers(1, 16)) :]
            else:
                data = data[:position]
    return data


def _only_signature_errors(signature: bytes) -> None:
    try:
        auth = authenticate(signature, TRUST, where="fuzz.sig")
    except SignatureError:
        return
    for name in (".", "model.bin", "other.bin", "dir/model.bin"):
        try:
            auth.check_bytes(MODEL, name)
        except SignatureError:
            pass


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.sampled_from(ENVELOPES).flatmap(mutated_json))
def test_mutated_signature_files(signature: bytes) -> None:
    _only_signature_errors(signature)


@FUZZ
@given(st.sampled_from(SIGNERS), mutated_json(STATEMENT))
def test_mutated_statements_signed_by_a_trusted_key(signer: Any, statement: bytes) -> None:
    _only_signature_errors(_signing._envelope(statement, [signer]))


def _pems() -> list[bytes]:
    keys = [ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate()]
    pems = []
    for key in keys:
        pems.append(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        pems.append(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    pems.append(HMAC.to_json().encode())
    return pems


PEMS = _pems()


@st.composite
def mutated_pem(draw: st.DrawFn) -> bytes:
    pem = draw(st.sampled_from(PEMS))
    if pem.startswith(b"-----BEGIN") and draw(st.booleans()):
        # Change the DER inside, so the ASN.1 and key parsers see it.
        lines = pem.splitlines()
        der = bytearray(base64.b64decode(b"".join(lines[1:-1])))
        for _ in range(draw(st.integers(1, 4))):
            position = draw(st.integers(0, len(der) - 1))
            der[position] = draw(st.integers(0, 255))
        if draw(st.booleans()):
            der = der[: draw(st.integers(0, len(der)))]
        body = base64.encodebytes(bytes(der))
        return lines[0] + b"\n" + body + lines[-1] + b"\n"
    return draw(mutated_json(pem)) if not pem.startswith(b"-----") else _byte_mutation(draw, pem)


def _byte_mutation(draw: st.DrawFn, data: bytes) -> bytes:
    position = draw(st.integers(0, len(data) - 1))
    return (
        data[:position] + draw(st.binary(max_size=4)) + data[position + draw(st.integers(0, 4)) :]
    )


@FUZZ
@given(mutated_pem())
def test_mutated_key_files(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.key"
        path.write_bytes(data)
        path.chmod(0o600)
        try:
            read_key_file(path)
        except KeyFileError:
            pass


def _cli(*argv: str | Path) -> int:
    parser = argparse.ArgumentParser(prog="safeload")
    add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args([str(a) for a in argv])
    return run(args, io.StringIO(), io.StringIO())


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("cli")
    (folder / "model.bin").write_bytes(MODEL)
    key = folder / "team.pub"
    key.write_bytes(
        ECDSA.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return folder / "model.bin", key


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated_json(ENVELOPES[0]))
def test_the_cli_answers_a_verdict(cli_model: tuple[Path, Path], signature: bytes) -> None:
    model, key = cli_model
    model.with_name("model.bin.sig").write_bytes(signature)
    assert _cli("verify", model, "--key", key) in (0, 1)
