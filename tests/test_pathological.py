"""Pathological inputs: every scan finishes fast, in bounded memory, and fails closed.

Each sample is written to `tmp_path` and scanned in a subprocess that runs
under `RLIMIT_AS` = 512 MiB and a timeout, so a scanner that pre-allocated a
declared length, grew a dense memo to a declared index, parsed a 5000-digit
number or recursed into a deep structure would die there instead of passing.

Inputs that are only *declared* to be huge (lengths, memo indices, digits)
must not be safe.  Inputs that are really large but cheap for CPython's own
loader (100k-deep nesting, a 2**60-leaf shared DAG) must stay `safe`: flagging
them would be a false positive.  A second subprocess loads those benign
samples with `pickle.loads` under the same limit to document that claim, and
one huge-memo sample to document that the C loader is the one that blows up.
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from picklebuild import (
    append,
    binbytes,
    binbytes8,
    binget,
    binstring,
    binunicode,
    binunicode8,
    bytearray8,
    empty_list,
    frame,
    get,
    int_,
    long4,
    long_,
    long_binput,
    mark,
    memoize,
    none,
    pop,
    proto,
    put,
    sbu,
    stop,
    tuple2,
    tuple_,
)

import safeload
from safeload import Verdict

LIMIT_MIB = 512
MAX_SECONDS = 10.0  # per sample, generous for slow CI machines; typical is milliseconds

_SCANNER = """
import json, resource, sys, time
limit = int(sys.argv[1]) * 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import safeload
out = {}
for path in sys.argv[2:]:
    t0 = time.perf_counter()
    report = safeload.scan_file(path)
    out[path] = {
        "verdict": report.verdict.value,
        "rules": sorted({f.rule for f in report.findings}),
        "seconds": time.perf_counter() - t0,
    }
# VmHWM is reset by exec; ru_maxrss can carry the forking parent's peak.
with open("/proc/self/status") as status:
    out["maxrss_kib"] = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:"))
print(json.dumps(out))
"""

_LOADER = """
import pickle, resource, sys, time
limit = int(sys.argv[1]) * 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
data = open(sys.argv[2], "rb").read()
t0 = time.perf_counter()
try:
    pickle.loads(data)
    print("ok", time.perf_counter() - t0)
except MemoryError:
    print("MemoryError", time.perf_counter() - t0)
"""


def scan_in_subprocess(samples: dict[str, bytes], folder: Path) -> dict[str, dict[str, object]]:
    """Scan every sample under the memory limit; {name: {verdict, rules, seconds}}."""
    paths = {}
    for name, data in samples.items():
        path = folder / f"{name}.pkl"
        path.write_bytes(data)
        paths[str(path)] = name
    done = subprocess.run(
        [sys.executable, "-I", "-c", _SCANNER, str(LIMIT_MIB), *paths],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    raw = json.loads(done.stdout)
    assert raw.pop("maxrss_kib") < LIMIT_MIB * 1024
    return {paths[path]: result for path, result in raw.items()}


def load_in_subprocess(data: bytes, folder: Path, name: str) -> tuple[str, float]:
    """Load with `pickle.loads` under the memory limit: ('ok' | 'MemoryError', seconds)."""
    path = folder / f"{name}.load.pkl"
    path.write_bytes(data)
    done = subprocess.run(
        [sys.executable, "-I", "-c", _LOADER, str(LIMIT_MIB), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    status, seconds = done.stdout.split()
    return status, float(seconds)


# -- declared-huge inputs: not safe, cheap ------------------------------------------------

G = 1 << 30
DIGITS = "7" * 5000

NOT_SAFE: dict[str, tuple[bytes, set[str]]] = {
    # declared lengths far beyond the bytes that follow
    "binbytes-4g": (proto(3) + binbytes(b"xy", declared=0xFFFFFFF0) + stop(), {"SL302"}),
    "binbytes8-1t": (proto(4) + binbytes8(b"xy", declared=1 << 40) + stop(), {"SL302"}),
    "binbytes8-max": (proto(4) + binbytes8(b"", declared=(1 << 64) - 1) + stop(), {"SL302"}),
    "binunicode-4g": (proto(2) + binunicode("ab", declared=0xFFFFFFFF) + stop(), {"SL302"}),
    "binunicode8-1t": (proto(4) + binunicode8("ab", declared=1 << 40) + stop(), {"SL302"}),
    "bytearray8-1t": (proto(5) + bytearray8(b"ab", declared=1 << 40) + stop(), {"SL302"}),
    "long4-2g": (proto(2) + long4(b"\x01", declared=0x7FFFFFFF) + stop(), {"SL302"}),
    "long4-negative": (proto(2) + long4(b"\x01", declared=-5) + stop(), {"SL301"}),
    "binstring-2g": (proto(1) + binstring(b"ab", declared=0x7FFFFFFF) + stop(), {"SL302"}),
    "binstring-negative": (proto(1) + binstring(b"ab", declared=-1) + stop(), {"SL301"}),
    "frame-1t": (proto(4) + frame(1 << 40) + none() + stop(), {"SL302"}),
    "frame-max": (proto(4) + frame((1 << 64) - 1) + none() + stop(), {"SL302"}),
    # memo indices that make the C unpickler's dense memo allocate gigabytes (SL303),
    # plus the missing STOP / memo miss that follows
    "long-binput-7ffffff0-no-stop": (
        proto(2) + none() + long_binput(0x7FFFFFF0),
        {"SL302", "SL303"},
    ),
    "put-20-digits-then-miss": (
        none() + put("99999999999999999999") + pop() + get("99999999999999999998") + stop(),
        {"SL301", "SL303"},
    ),
    "replace-text-form": (b"]replace.", {"SL302", "SL303"}),
    # text integers too long for int() (sys.int_info.default_max_str_digits = 4300)
    # Refused at the first opcode, or after only constants: every loader fails
    # before building anything, so they are not-a-pickle (SL305), not broken pickles.
    "long-5000-digits": (long_(DIGITS + "L") + stop(), {"SL305"}),
    "put-5000-digits": (none() + put(DIGITS) + stop(), {"SL305"}),
    "get-5000-digits": (none() + put(0) + get(DIGITS) + stop(), {"SL305"}),
    # nothing that is a pickle
    "empty": (b"", {"SL305"}),
    "one-zero": (b"\x00", {"SL305"}),
    # a stream that opens with PROTO declares a pickle: cut short, it is truncated
    "no-stop": (proto(4) + none(), {"SL302"}),
    "mark-only": (mark(), {"SL305"}),
}


LONG_DECIMAL_INTS = {
    "int-5000-digits": int_(DIGITS) + stop(),
    "int-1m-digits": int_("1" * 1_000_000) + stop(),
    "int-octal-30-digits": int_("0" + "7" * 30) + stop(),
}


def test_long_decimal_ints_fail_in_cpython(tmp_path: Path) -> None:
    """strtol overflows, and int() refuses more than 4300 decimal digits."""
    for name, data in LONG_DECIMAL_INTS.items():
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(data)
        code = "import pickle, sys\ntry:\n pickle.loads(open(sys.argv[1], 'rb').read())\nexcept ValueError:\n print('ValueError')"
        done = subprocess.run(
            [sys.executable, "-I", "-c", code, str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert done.stdout.strip() == "ValueError", name


@pytest.mark.parametrize("name", sorted(LONG_DECIMAL_INTS))
def test_long_decimal_ints_are_not_safe(name: str, tmp_path: Path) -> None:
    """Lines CPython refuses are refused, fast and in bounded memory: as the first
    opcode, before anything is built, which makes the stream no pickle at all."""
    results = scan_in_subprocess({name: LONG_DECIMAL_INTS[name]}, tmp_path)
    assert results[name]["verdict"] == "not-a-pickle"
    assert results[name]["rules"] == ["SL305"]
    assert results[name]["seconds"] < MAX_SECONDS  # type: ignore[operator]


def _random_bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


RANDOM = {
    f"random-{seed}-{size}": _random_bytes(seed, size)
    for seed in range(6)
    for size in (1, 64, 1 << 20)
}


def test_declared_huge_inputs_are_not_safe_and_cheap(tmp_path: Path) -> None:
    results = scan_in_subprocess({k: v[0] for k, v in NOT_SAFE.items()}, tmp_path)
    for name, (_, rules) in NOT_SAFE.items():
        got = results[name]
        assert got["verdict"] != "safe", name
        found = set(got["rules"])  # type: ignore[call-overload]
        # exactly these rules, plus SL401 for a global name cut short by EOF
        assert rules <= found <= rules | {"SL401"}, (name, got)
        assert got["seconds"] < MAX_SECONDS, (name, got)  # type: ignore[operator]


def test_random_bytes_are_not_safe(tmp_path: Path) -> None:
    results = scan_in_subprocess(RANDOM, tmp_path)
    for name, got in results.items():
        assert got["verdict"] != "safe", name
        assert got["seconds"] < MAX_SECONDS, (name, got)  # type: ignore[operator]


def test_huge_memo_index_is_a_memory_bomb_for_cpython_not_for_safeload(tmp_path: Path) -> None:
    """F1: the C loader's dense memo blows past the limit; the scan stays small and fast."""
    data = proto(2) + none() + long_binput(0x7FFFFFF0) + stop()
    status, _ = load_in_subprocess(data, tmp_path, "memo")
    assert status == "MemoryError"
    results = scan_in_subprocess({"memo": data}, tmp_path)
    assert results["memo"]["seconds"] < MAX_SECONDS  # type: ignore[operator]


HUGE_MEMO = {
    "long-binput-7ffffff0": proto(2) + none() + long_binput(0x7FFFFFF0) + stop(),
    "long-binput-200m": proto(2) + none() + long_binput(200_000_000) + stop(),
    "put-20-digits": none() + put("99999999999999999999") + stop(),
    "put-2-62": none() + put(2**62) + stop(),
}


@pytest.mark.parametrize("name", sorted(HUGE_MEMO))
def test_huge_memo_index_is_not_safe(name: str) -> None:
    """No pickler writes such indices; CPython 3.11's dense memo would need gigabytes."""
    report = safeload.scan_bytes(HUGE_MEMO[name])
    assert report.verdict is Verdict.INVALID
    assert [f.rule for f in report.findings] == ["SL303"]


# -- really large but benign: safe, cheap for safeload and for CPython -----------------------

DEPTH = 100_000


def deep_lists(depth: int = DEPTH) -> bytes:
    """[[[...]]] nested `depth` deep: push every list, then APPEND each into the one below."""
    return proto(4) + empty_list() * (depth + 1) + append() * depth + stop()


def deep_tuples(depth: int = DEPTH) -> bytes:
    """((...,),) nested `depth` deep with MARK ... TUPLE."""
    return proto(2) + mark() * depth + none() + tuple_() * depth + stop()


def deep_memo_tuples(depth: int = DEPTH) -> bytes:
    """Nested tuples built through the memo: each level memoised, fetched, wrapped."""
    body = bytearray(proto(4) + none() + memoize())
    for i in range(depth):
        body += binget(i) if i < 256 else b"j" + struct.pack("<I", i)
        body += none() + tuple2() + memoize()
        body += pop() if i + 1 < depth else b""
    body = body[:-1] if body.endswith(pop()) else body
    return bytes(body + stop())


def shared_dag(levels: int = 60) -> bytes:
    """A tuple DAG with 2**levels leaves: t = (t, t) repeated, via DUP."""
    return proto(4) + sbu("leaf") + (b"2" + tuple2()) * levels + stop()


def shared_memo_dag(levels: int = 60) -> bytes:
    """The same DAG through the memo (the billion-laughs variant): get i, get i, TUPLE2, put."""
    body = bytearray(proto(4) + sbu("leaf") + memoize() + pop())
    for i in range(levels):
        body += binget(i) + binget(i) + tuple2() + memoize() + pop()
    body += binget(levels) + stop()
    return bytes(body)


BENIGN_BIG = {
    "deep-lists-100k": deep_lists(),
    "deep-tuples-100k": deep_tuples(),
    "deep-memo-tuples-100k": deep_memo_tuples(),
    "dag-2-60": shared_dag(),
    "memo-dag-2-60": shared_memo_dag(),
}


def test_benign_deep_and_shared_inputs_stay_safe(tmp_path: Path) -> None:
    results = scan_in_subprocess(BENIGN_BIG, tmp_path)
    for name, got in results.items():
        assert got["verdict"] == "safe", (name, got)
        assert got["rules"] == [], (name, got)
        assert got["seconds"] < MAX_SECONDS, (name, got)  # type: ignore[operator]


@pytest.mark.parametrize("name", sorted(BENIGN_BIG))
def test_benign_big_inputs_are_cheap_for_cpython(name: str, tmp_path: Path) -> None:
    """The claim behind keeping them safe: CPython loads them quickly in bounded memory."""
    status, seconds = load_in_subprocess(BENIGN_BIG[name], tmp_path, name)
    assert status == "ok"
    assert seconds < MAX_SECONDS


def test_deep_structures_have_the_claimed_shape() -> None:
    """The samples are what they say: really 100k deep, really 2**60 leaves."""
    import pickle

    value = pickle.loads(deep_lists(1000))
    depth = 0
    while value:
        (value,) = value
        depth += 1
    assert depth == 1000
    nested = pickle.loads(deep_tuples(1000))
    depth = 0
    while isinstance(nested, tuple):
        (nested,) = nested
        depth += 1
    assert depth == 1000 and nested is None
    memo_nested = pickle.loads(deep_memo_tuples(300))
    depth = 0
    while isinstance(memo_nested, tuple):
        memo_nested = memo_nested[0]
        depth += 1
    assert depth == 300
    for dag in (pickle.loads(shared_dag()), pickle.loads(shared_memo_dag())):
        levels = 0
        while isinstance(dag, tuple):
            assert dag[0] is dag[1]
            dag = dag[0]
            levels += 1
        assert levels == 60 and dag == "leaf"


# -- the opcode budget -----------------------------------------------------------------------


def test_opcode_budget_fails_closed() -> None:
    data = deep_lists(10_000)
    assert safeload.scan_bytes(data).safe
    report = safeload.scan_bytes(data, max_opcodes=5_000)
    assert report.verdict is Verdict.INVALID
    assert [f.rule for f in report.findings] == ["SL303"]


def test_opcode_budget_counts_every_pickle_of_a_stream() -> None:
    one = proto(2) + none() + pop() * 0 + stop()
    data = one * 1000  # 3 opcodes each
    assert safeload.scan_bytes(data, max_opcodes=3000).safe
    report = safeload.scan_bytes(data, max_opcodes=2000)
    assert report.verdict is Verdict.INVALID
    assert "SL303" in {f.rule for f in report.findings}
