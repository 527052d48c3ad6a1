"""Write the seed corpora of every harness from the test suite's builders.

    python fuzz/make_seeds.py [OUT]      (default: fuzz/seeds)

OUT/<harness>/ receives one file per seed: the benign and damaged containers
of tests/test_containers_fuzz.py, the hostile corpus of
tests/hostile_containers.py, real pickles of every protocol (numpy, pandas,
scikit-learn, joblib, PyTorch), signature files and statements made by
safeload's signer (single file, directory, shards; HMAC, Ed25519, ECDSA) and
PEM and HMAC key files, and the guarded loader's benign files
(tests/test_fuzz_loader.py). Container, signature, key and loader seeds start
with the byte that picks their reader (see each target's docstring).
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from _harness import ROOT

MAX_SEED = 256 * 1024
"""Bigger files slow every mutation down and add nothing a small one lacks."""


def _pickles() -> Iterator[tuple[str, bytes]]:
    import collections
    import datetime
    import decimal

    import joblib
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    values = {
        "builtins": {
            "a": [1, 2.5, "x", b"y", None, True],
            "t": (1, (2,)),
            "s": {3},
            "f": frozenset(),
        },
        "big": [2**70, -(2**200), 1e300, "é" * 3, bytearray(b"ab")],
        "shared": (lambda x: [x, x, {"k": x}])([1, 2]),
        "stdlib": [collections.OrderedDict(a=1), decimal.Decimal("1.5"), datetime.date(2020, 1, 2)],
        "numpy": [
            np.arange(6).reshape(2, 3),
            np.float32(1.5),
            np.dtype([("a", "<i4"), ("b", "<f8")]),
        ],
        "pandas": pd.DataFrame({"x": [1, 2], "y": ["a", "b"]}),
    }
    X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    y = np.array([0, 1, 1, 0])
    values["tree"] = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, y)
    values["logreg"] = LogisticRegression().fit(X, y)
    for name, value in values.items():
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            yield f"{name}-p{protocol}", pickle.dumps(value, protocol=protocol)
    for name in ("tree", "numpy"):
        for compress in (0, 3):
            buf = io.BytesIO()
            joblib.dump(values[name], buf, compress=compress)
            yield f"joblib-{name}-{compress}", buf.getvalue()


def scan_seeds(work: Path) -> Iterator[tuple[str, bytes]]:
    sys.path.insert(0, str(ROOT))
    from tests import hostile_containers, test_cli
    from tests.test_containers_fuzz import SEEDS

    yield from SEEDS.items()
    yield from _pickles()
    yield "cli-system", test_cli.SYSTEM
    yield "cli-unknown", test_cli.UNKNOWN
    yield "cli-truncated", test_cli.TRUNCATED
    for name, path in hostile_containers.write_corpus(work / "hostile").items():
        yield f"hostile-{name}", path.read_bytes()


def container_seeds(scan: list[tuple[str, bytes]]) -> Iterator[tuple[str, bytes]]:
    """Each scan seed behind the selector byte of the readers its bytes reach."""
    from safeload._formats import Compression, Format, container_kind
    from safeload._formats import torch as torch_fmt

    reader = {Format.ZIP: 0, Format.NPY: 1, Format.SAFETENSORS: 2, Format.TAR: 3}
    for name, data in scan:
        kind = container_kind(data[:1024], len(data))
        picks = {6}
        if isinstance(kind, Compression):
            picks.add(4)
        elif kind in reader:
            picks.add(reader[kind])
        if data[-22:].find(b"PK\x05\x06") >= 0:
            picks.add(0)
        if torch_fmt.is_legacy_stacked(data, 0, len(data)):
            picks.add(5)
        for pick in sorted(picks):
            yield f"{pick}-{name}", bytes([pick]) + data


def signature_seeds(work: Path) -> Iterator[tuple[str, bytes]]:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    from safeload.sign import EcdsaSigner, Ed25519Signer, HmacKey, HmacSigner, _dsse, sign

    signers = {
        "hmac": HmacSigner(HmacKey("fuzz", bytes(range(32)))),
        "ed25519": Ed25519Signer(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32))),
        "ecdsa": EcdsaSigner(ec.generate_private_key(ec.SECP256R1())),
    }
    model = work / "model.pt"
    model.write_bytes(b"model bytes")
    folder = work / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"layers": 3}')
    (folder / "sub" / "w.bin").write_bytes(bytes(300))
    for name, signer in signers.items():
        for target in (model, folder):
            sig = sign(target, signer, signature=work / f"{target.name}-{name}.sig")
            raw = sig.read_bytes()
            payload = _dsse.parse(raw, "seed").payload
            yield f"0-{target.name}-{name}", b"\x00" + raw
            yield f"2-{target.name}-{name}", b"\x02" + raw
            yield f"1-{target.name}-{name}", b"\x01" + payload
            yield f"3-{target.name}-{name}", b"\x03" + payload
    yield "3-shards", b"\x03" + _shards({".": b"model bytes"}, "model.pt", 4)
    yield "1-shards-dir", b"\x01" + _shards({"a": bytes(10), "b/c": b"xyz"}, "model", 4)


def _shards(files: dict[str, bytes], subject: str, shard_size: int) -> bytes:
    """A model-signing "shards" statement (safeload verifies them, model-signing writes them)."""
    from safeload.sign import _statement

    resources = []
    for name, data in sorted(files.items()):
        for start in range(0, len(data), shard_size):
            chunk = data[start : start + shard_size]
            resources.append(
                {
                    "name": f"{name}:{start}:{start + len(chunk)}",
                    "algorithm": f"sha256-sharded-{shard_size}",
                    "digest": hashlib.sha256(chunk).hexdigest(),
                }
            )
    statement = json.loads(_statement.build(subject, {}, ()))
    statement["predicate"]["serialization"].update(method="shards", shard_size=shard_size)
    statement["predicate"]["resources"] = resources
    statement["subject"][0]["digest"]["sha256"] = _statement.root_digest(
        r["digest"] for r in resources
    )
    return json.dumps(statement).encode()


def key_seeds(work: Path) -> Iterator[tuple[str, bytes]]:
    from safeload.sign import generate_key

    for kind in ("ed25519", "ecdsa-p256", "hmac"):
        info = generate_key(kind, work / f"{kind}.key")  # type: ignore[arg-type]
        paths = [info.private] + ([info.public] if info.public else [])
        for path in paths:
            for pick in (0, 2):
                yield f"{pick}-{path.name}", bytes([pick]) + path.read_bytes()
    yield (
        "1-env",
        b"\x01" + b"team:" + b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU=" + b", old:AAAA",
    )
    yield "1-env-json", b'\x01{"type": "hmac-sha256", "kid": "k", "secret": "AAAA"}'


def load_seeds() -> Iterator[tuple[str, bytes]]:
    """The guarded loader's seeds (tests/test_fuzz_loader.py), behind their plain loader's byte."""
    sys.path.insert(0, str(ROOT))
    from tests.test_fuzz_loader import KINDS, SEEDS

    for name, (kind, data) in SEEDS.items():
        yield name, bytes([KINDS.index(kind)]) + data


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        scan = [(n, d) for n, d in scan_seeds(work) if len(d) <= MAX_SEED]
        (work / "sig").mkdir()
        (work / "keys").mkdir()
        corpora = {
            "fuzz_scan": scan,
            "fuzz_containers": list(container_seeds(scan)),
            "fuzz_signature": list(signature_seeds(work / "sig")),
            "fuzz_keys": list(key_seeds(work / "keys")),
            "fuzz_load": list(load_seeds()),
        }
    for harness, seeds in corpora.items():
        folder = out / harness
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in seeds:
            (folder / name).write_bytes(data)
        print(f"{harness}: {len(seeds)} seeds in {folder}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "seeds")
