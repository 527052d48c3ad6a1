"""The guarded loader under mutation: the plain loader's object, or a SafeloadError.

Real benign files (pickles of every protocol, joblib dumps plain and
compressed, .npy numeric and object arrays, .npz, PyTorch zip and legacy
state dicts) are damaged at random (byte flips, cuts, inserts, boundary
integers over length fields, splices) and handed to the target
fuzz/fuzz_targets/load.py in a child process per batch, in a scratch
directory, under an address-space limit: `safeload.loads` (unsigned,
warnings suppressed) must raise `SafeloadError` or return an object equal,
bit for bit, to what the plain loader returns on the same bytes. Any other
exception is a defect, and so is a child that dies (a crash of the process).
The seed is in every failure message (SAFELOAD_FUZZ_SEED=N replays it;
SAFELOAD_FUZZ_SEED=random draws new cases).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("pickle", "joblib", "npy", "npz", "torch")
BATCHES = 2
CASES = 150
"""Mutated cases per batch; each batch is one child process."""
MEMORY = 4 << 30
DEFAULT_SEED = 20261130
"""The same cases on every run, so that CI is repeatable; SAFELOAD_FUZZ_SEED=random
(or a number) explores others."""


def seeds() -> dict[str, tuple[str, bytes]]:
    """name -> (plain loader, bytes)."""
    import collections

    import joblib
    import numpy as np
    import torch

    out: dict[str, tuple[str, bytes]] = {}
    value = {
        "a": [1, 2.5, "x", b"y", None, True, 2**70, -0.0],
        "t": (1, (2, "z")),
        "s": {3, 4},
        "o": collections.OrderedDict(k=1),
        "n": np.arange(6, dtype=np.float32).reshape(2, 3),
    }
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        out[f"pickle-p{protocol}"] = ("pickle", pickle.dumps(value, protocol=protocol))
    arrays = {"w": np.linspace(0, 1, 7), "i": np.arange(5), "o": np.array([{"k": 1}], dtype=object)}
    for compress in (0, 3):
        buf = io.BytesIO()
        joblib.dump(arrays, buf, compress=compress)
        out[f"joblib-{compress}"] = ("joblib", buf.getvalue())
    for name, array in (("f8", np.arange(5.0)), ("object", np.array([1, "x", None], dtype=object))):
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=True)
        out[f"npy-{name}"] = ("npy", buf.getvalue())
    buf = io.BytesIO()
    np.savez(buf, a=np.arange(3), b=np.eye(2))
    out["npz"] = ("npz", buf.getvalue())
    state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3), "i": torch.arange(4)}
    buf = io.BytesIO()
    torch.save(state, buf)
    out["torch-zip"] = ("torch", buf.getvalue())
    buf = io.BytesIO()
    torch.save(state, buf, _use_new_zipfile_serialization=False)
    out["torch-legacy"] = ("torch", buf.getvalue())
    return out


SEEDS = seeds()
_BOUNDARY = (
    struct.pack("<Q", 2**64 - 1),
    struct.pack("<q", -1),
    struct.pack("<I", 2**31),
    struct.pack("<H", 0xFFFF),
    b"\x00\x00\x00\x00",
)


def mutate(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(max(1, len(data)))
        what = rng.choice(("flip", "flip", "cut", "insert", "boundary", "splice", "erase"))
        if what == "flip" and data:
            data[at] ^= 1 << rng.randrange(8)
        elif what == "cut":
            del data[at:]
        elif what == "insert":
            data[at:at] = rng.randbytes(rng.randint(1, 8))
        elif what == "boundary":
            value = rng.choice(_BOUNDARY)
            data[at : at + len(value)] = value
        elif what == "erase":
            del data[at : at + rng.randint(1, 16)]
        else:
            other = rng.choice([b for _, b in SEEDS.values()])
            start = rng.randrange(len(other))
            data[at : at + rng.randint(1, 64)] = other[start : start + rng.randint(1, 64)]
    return bytes(data)


CHILD = textwrap.dedent(
    """
    import json, resource, sys, traceback
    sys.path.insert(0, sys.argv[1])
    import joblib, numpy, torch  # the plain loaders, before the memory limit
    from fuzz_targets.load import one
    cases, results, memory = sys.argv[2], sys.argv[3], int(sys.argv[4])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    with open(cases) as f:
        items = json.load(f)
    with open(results, "w") as out:
        for index, item in enumerate(items):
            out.write(json.dumps({"start": index}) + "\\n")
            out.flush()
            raw = bytes([item["kind"]]) + bytes.fromhex(item["data"])
            try:
                one(raw)
            except BaseException as exc:
                text = "".join(traceback.format_exception_only(type(exc), exc))[-600:]
                out.write(json.dumps({"defect": index, "error": text}) + "\\n")
            else:
                out.write(json.dumps({"done": index}) + "\\n")
            out.flush()
    """
)


def run_batch(
    tmp_path: Path, items: list[dict[str, object]]
) -> tuple[int, list[dict[str, object]]]:
    cases = tmp_path / "cases.json"
    results = tmp_path / "results.jsonl"
    cases.write_text(json.dumps(items))
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT / "fuzz"), str(cases), str(results), str(MEMORY)],
        cwd=scratch,
        capture_output=True,
        timeout=600,
        check=False,
    )
    lines = (
        [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    )
    if done.returncode != 0 and not lines:
        pytest.fail(f"the child failed before any case: {done.stderr.decode()[-2000:]}")
    return done.returncode, lines


def item(name: str, data: bytes) -> dict[str, object]:
    kind, _ = SEEDS[name]
    return {"name": name, "kind": KINDS.index(kind), "data": data.hex()}


def test_every_seed_loads_equal_to_its_plain_loader(tmp_path: Path) -> None:
    import warnings

    import safeload

    for _kind, data in SEEDS.values():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            safeload.loads(data, require_signature=False)  # accepted: the target compares
    code, lines = run_batch(tmp_path, [item(name, data) for name, (_k, data) in SEEDS.items()])
    assert code == 0
    assert [line for line in lines if "defect" in line] == []
    assert sum("done" in line for line in lines) == len(SEEDS)


def test_the_target_reports_a_different_object(tmp_path: Path) -> None:
    """It can fail: a plain pickle loader fed other bytes than safeload disagrees."""
    sys.path.insert(0, str(ROOT / "fuzz"))
    from fuzz_targets import load

    assert load.difference({"a": 0.0}, {"a": -0.0}) is not None
    assert load.difference([1, (2,)], [1, [2]]) is not None
    import numpy as np

    assert load.difference(np.arange(3.0), np.arange(3.0) * 1.0) is None
    assert load.difference(np.arange(3.0), np.array([0.0, 1.0, 2.0000001])) is not None
    assert load.difference({"a": 1, "b": 2}, {"b": 2, "a": 1}) is not None


def test_bytes_two_plain_loaders_read_differently_are_agreement(tmp_path: Path) -> None:
    """A legacy PyTorch file given to the pickle, joblib and numpy loaders: they return its
    first pickle (torch's magic number), `safeload.loads` the checkpoint `torch.load`
    returns, which is agreement (the loader fuzzer's joblib-dict-vs-int and
    npy-object-dict-vs-int were this file with another first byte)."""
    _kind, data = SEEDS["torch-legacy"]
    assert pickle.loads(data) == 0x1950A86A20F9469CFC6C
    items = [{"name": k, "kind": KINDS.index(k), "data": data.hex()} for k in KINDS]
    code, lines = run_batch(tmp_path, items)
    assert code == 0
    assert [line for line in lines if "defect" in line] == []
    assert sum("done" in line for line in lines) == len(KINDS)


def test_the_target_reports_an_object_no_plain_loader_returns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same file, with safeload.loads made to return what neither loader returns."""
    import warnings

    sys.path.insert(0, str(ROOT / "fuzz"))
    from fuzz_targets import load

    import safeload

    _kind, data = SEEDS["torch-legacy"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = safeload.loads(data, require_signature=False)
    got["w"] = got["w"] + 1
    monkeypatch.setattr(safeload, "loads", lambda *args, **kwargs: got)
    for kind in ("pickle", "torch"):
        with pytest.raises(AssertionError, match="no other plain loader returns the same"):
            load.one(bytes([KINDS.index(kind)]) + data)


def test_kept_loader_regressions(tmp_path: Path) -> None:
    """tests/fuzz_regressions/load/: inputs this test found a defect with, replayed."""
    kept = sorted((ROOT / "tests" / "fuzz_regressions" / "load").iterdir())
    assert kept
    items: list[dict[str, object]] = []
    for path in kept:
        raw = path.read_bytes()
        items.append({"name": path.name, "kind": raw[0], "data": raw[1:].hex()})
    code, lines = run_batch(tmp_path, items)
    assert code == 0
    assert [line for line in lines if "defect" in line] == []
    assert sum("done" in line for line in lines) == len(kept)


KNOWN = ROOT / "tests" / "fuzz_known" / "load"
"""Inputs of open defects (git keeps no empty folder: none open, no folder)."""


@pytest.mark.xfail(strict=True, reason="tests/fuzz_known/README.md: defects not fixed yet")
@pytest.mark.parametrize(
    "path", sorted(KNOWN.iterdir()) if KNOWN.is_dir() else [], ids=lambda p: p.name
)
def test_known_loader_defects(tmp_path: Path, path: Path) -> None:
    raw = path.read_bytes()
    code, lines = run_batch(tmp_path, [{"name": path.name, "kind": raw[0], "data": raw[1:].hex()}])
    assert code == 0
    assert [line for line in lines if "defect" in line] == []


@pytest.mark.parametrize("batch", range(BATCHES))
def test_mutated_files_load_equal_or_are_refused(tmp_path: Path, batch: int) -> None:
    chosen = os.environ.get("SAFELOAD_FUZZ_SEED", str(DEFAULT_SEED))
    seed = (time.time_ns() % 2**32 if chosen == "random" else int(chosen)) + batch
    rng = random.Random(seed)
    names = sorted(SEEDS)
    items = []
    for _ in range(CASES):
        name = rng.choice(names)
        items.append(item(name, mutate(rng, SEEDS[name][1])))
    code, lines = run_batch(tmp_path, items)
    defects = [line for line in lines if "defect" in line]
    started = [line["start"] for line in lines if "start" in line]
    kept = tmp_path / "failing"
    for line in defects:
        index = int(line["defect"])  # type: ignore[call-overload]
        kept.mkdir(exist_ok=True)
        (kept / f"{index}-{items[index]['name']}").write_bytes(
            bytes([items[index]["kind"]]) + bytes.fromhex(str(items[index]["data"]))  # type: ignore[list-item]
        )
    assert not defects, (
        f"seed {seed}: {len(defects)} defects, first {defects[0]} (inputs in {kept})"
    )
    if code != 0:
        last = started[-1] if started else None
        pytest.fail(
            f"seed {seed}: the child died (exit {code}) at case {last} "
            f"({items[last]['name'] if last is not None else '?'})"
        )
    assert len(started) == CASES
