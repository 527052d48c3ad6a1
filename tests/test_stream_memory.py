"""Compressed joblib streams are scanned as they decompress, without holding the arrays.

`safeload scan` walks the first pickle of a compressed stream while it is being
decompressed (`compress.Spool`); the raw array bytes the walk skips are counted
against the expansion limit and dropped. These tests check that the scan
still sees everything a loader reads: the same findings as a scan of the whole
expansion, for benign dumps of every compressor, for a payload placed after a
large array (proven under `joblib.load` in a forked child with a canary), for
streams cut inside an array and for arrays a plain `pickle.load` reads as
opcodes; that the guarded loader still reads the whole expansion; and that a
scan's peak memory no longer grows with the arrays.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

import safeload
from safeload import Policy, Verdict
from safeload._formats import compress, locate
from safeload.scan._judge import judge
from tests.hostile_containers import OPENERS, Evil
from tests.loadrun import canary_in, run_jobs

pytestmark = pytest.mark.filterwarnings("ignore::safeload.UnsignedLoadWarning")

COMPRESSORS = ["zlib", "gzip", "bz2", "lzma", "xz", "lz4"]
MiB = 1 << 20


def dump(obj: object, compressor: str) -> bytes:
    buf = io.BytesIO()
    joblib.dump(obj, buf, compress=(compressor, 3))
    return buf.getvalue()


def big(mib: int = 8) -> np.ndarray:
    """A float array compressible enough to write fast, past the spool's window."""
    rng = np.random.default_rng(0)
    return rng.integers(-128, 128, (mib * MiB) // 8).astype(np.float64)


@pytest.fixture
def spools(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[compress.Spool]]:
    """Every spool the scans of a test make."""
    made: list[compress.Spool] = []
    init = compress.Spool.__init__

    def record(self: compress.Spool, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(compress.Spool, "__init__", record)
    yield made


def both_ways(raw: bytes, location: str = "m.joblib") -> tuple[list[Any], list[Any], str, str]:
    """Findings and shape of a streamed scan and of a scan of the whole expansion."""
    policy = Policy.default()
    out = []
    for stream in (True, False):
        with locate(raw, location, stream=stream) as located:
            findings = judge(located, policy)
            out.append((sorted(map(_key, findings)), str(located.shape)))
            if not stream:
                assert located.expanded, "the whole expansion is kept without streaming"
    return out[0][0], out[1][0], out[0][1], out[1][1]


def _key(f: Any) -> tuple[Any, ...]:
    return (f.rule, f.location, f.offset, f.global_name, f.message)


@pytest.mark.parametrize("compressor", COMPRESSORS)
def test_benign_dumps_scan_the_same_and_drop_the_arrays(
    compressor: str, spools: list[compress.Spool]
) -> None:
    if compressor == "lz4":
        pytest.importorskip("lz4")
    obj = {"w": big(), "b": np.arange(5), "names": ["a", "b"], "nested": {"x": big(2)}}
    raw = dump(obj, compressor)
    streamed, whole, shape, whole_shape = both_ways(raw)
    assert streamed == whole == []
    assert shape == whole_shape == f"joblib+{compressor}"
    (spool,) = spools
    # both big arrays, less the kept head and tail and page rounding
    assert spool.released >= 9 * MiB, spool.released
    assert safeload.scan_bytes(raw, location="m.joblib").verdict is Verdict.SAFE


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """A payload pickled after a large array, in zlib and gzip dumps, run by joblib.load."""
    base = tmp_path_factory.mktemp("stream-hostile")
    jobs = []
    for compressor in ("zlib", "gzip"):
        folder = base / compressor
        folder.mkdir()
        path = folder / "model.joblib"
        path.write_bytes(dump({"weights": big(16), "hook": Evil()}, compressor))
        code = "import joblib\njoblib.load(path)\n"
        jobs.append({"kind": "plain", "path": path, "cwd": folder / "plain", "code": code})
        jobs.append({"kind": "safeload", "path": path, "cwd": folder / "guarded"})
    results = run_jobs(jobs, preload=("joblib", "numpy"))
    out: dict[str, dict[str, Any]] = {}
    for i, compressor in enumerate(("zlib", "gzip")):
        plain, guarded = jobs[2 * i], jobs[2 * i + 1]
        out[compressor] = {
            "path": Path(plain["path"]),
            "plain": results[2 * i],
            "plain_canary": canary_in(plain["cwd"]),
            "guarded": results[2 * i + 1],
            "guarded_canary": canary_in(guarded["cwd"]),
        }
    return out


@pytest.mark.parametrize("compressor", ["zlib", "gzip"])
def test_payload_after_a_large_array_fires_and_is_found(
    hostile: dict[str, dict[str, Any]], compressor: str, spools: list[compress.Spool]
) -> None:
    run = hostile[compressor]
    assert run["plain_canary"], run["plain"]
    raw = run["path"].read_bytes()
    report = safeload.scan_bytes(raw, location="model.joblib")
    assert report.verdict is Verdict.DANGEROUS, report.findings
    hits = [f for f in report.findings if f.global_name in OPENERS]
    assert hits, report.findings
    # the array before it was skipped and its bytes dropped
    assert spools and spools[0].released >= 15 * MiB, [s.released for s in spools]
    # the payload lies past the dropped bytes
    assert hits[0].offset is not None and hits[0].offset > 16 * MiB
    streamed, whole, _, _ = both_ways(raw)
    assert streamed == whole
    assert run["guarded"]["outcome"] == "raised" and run["guarded"]["unsafe"], run["guarded"]
    assert not run["guarded_canary"]


def test_a_stream_cut_inside_a_dropped_array_is_expanded_again_whole(
    spools: list[compress.Spool],
) -> None:
    whole = zlib.decompress(dump({"w": big(8), "tail": [1, 2]}, "zlib"))
    cut = zlib.compress(whole[: 6 * MiB], 3)  # ends inside the array
    streamed, full, _, _ = both_ways(cut)
    assert streamed == full
    assert {f[0] for f in streamed} & {"SL302"}, streamed  # truncated: never safe
    spool = spools[0]
    assert spool.released  # it had dropped bytes, then gave the stream up
    assert spool.buf.closed


def unpadded_dump(array: np.ndarray) -> bytes:
    """A joblib stream (uncompressed) whose array has no padding byte before it, as
    joblib < 1.2 wrote it (the rewrite of tests/test_joblib_stream.py)."""
    buf = io.BytesIO()
    joblib.dump(array, buf, protocol=4)
    data = buf.getvalue()
    i = data.index(b"K\x10ub")  # numpy_array_alignment_bytes=16, BUILD, then padding
    pad = data[i + 4]
    assert data[i + 5 : i + 5 + pad] == b"\xff" * pad
    unpadded = data[:i] + b"Nub" + data[i + 5 + pad :]  # alignment None: no padding byte
    frame = struct.unpack("<Q", unpadded[3:11])[0] - 1
    return unpadded[:3] + struct.pack("<Q", frame) + unpadded[11:]


PAYLOAD = b"cos\nsystem\n(S'touch canary'\ntR."


@pytest.mark.parametrize("compressor", ["gzip", "zlib"])
def test_a_large_unpadded_array_is_kept_where_a_plain_load_reads_it(
    compressor: str, spools: list[compress.Spool]
) -> None:
    # A plain pickle.load (pandas.read_pickle of a .gz) runs the array bytes of
    # an unpadded array as opcodes: under gzip they must stay in memory and be
    # walked; under zlib only joblib reads them, as data.
    array = np.frombuffer(PAYLOAD + bytes(4 * MiB), dtype=np.uint8).copy()
    stream = unpadded_dump(array)
    raw = gzip.compress(stream) if compressor == "gzip" else zlib.compress(stream)
    streamed, whole, _, _ = both_ways(raw)
    assert streamed == whole
    rules = {f[0] for f in streamed}
    if compressor == "gzip":
        assert {"SL101", "SL207"} <= rules, streamed
        assert spools[0].released == 0
    else:
        assert streamed == [], streamed
        assert spools[0].released >= 3 * MiB


@pytest.mark.parametrize("compressor", ["gzip", "zlib"])
def test_a_padding_byte_that_is_an_opcode_keeps_the_array_where_a_plain_load_reads_it(
    compressor: str, spools: list[compress.Spool]
) -> None:
    # joblib skips as many padding bytes as the length byte says, whatever its
    # value; a plain pickle.load stops at it only when it is no opcode. Here it
    # is NONE (78 padding bytes): a plain reading goes on into the array bytes.
    buf = io.BytesIO()
    joblib.dump(big(4), buf, protocol=4)
    data = buf.getvalue()
    i = data.index(b"K\x10ub") + 4
    pad = data[i]
    stream = data[:i] + b"N" + b"\xff" * ord("N") + data[i + 1 + pad :]
    assert np.array_equal(joblib.load(io.BytesIO(stream)), big(4))
    raw = gzip.compress(stream) if compressor == "gzip" else zlib.compress(stream)
    streamed, whole, _, _ = both_ways(raw)
    assert streamed == whole == []
    if compressor == "gzip":
        assert spools[0].released == 0
    else:
        assert spools[0].released >= 3 * MiB


def test_the_guarded_loader_reads_the_whole_expansion() -> None:
    obj = {"w": big(8), "b": np.arange(3)}
    raw = dump(obj, "zlib")
    with locate(raw, "m.joblib") as located:
        (buf,) = located.expanded.values()
        assert bytes(buf) == zlib.decompress(raw)  # the loader's bytes: every one of them
    with locate(raw, "m.joblib", stream=True) as located:
        assert not located.expanded  # a streamed scan keeps nothing a loader could read
    loaded = safeload.loads(raw, require_signature=False)
    assert np.array_equal(loaded["w"], obj["w"]) and np.array_equal(loaded["b"], obj["b"])


# The child's own peak RSS: the high-water mark is reset first (a child started with
# vfork inherits its parent's into ru_maxrss), then read from /proc/self/status.
START = """
import sys
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
"""
END = """
with open("/proc/self/status") as f:
    print([int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:")][0])
"""
PEAK = (
    START
    + """
from safeload.scan import scan_file
report = scan_file(sys.argv[1])
assert report.verdict.value == "safe", report.findings
"""
    + END
)
WHOLE = (
    START
    + """
from safeload._formats import locate
data = open(sys.argv[1], "rb").read()
with locate(data, "m", stream=False) as located:
    pass
"""
    + END
)


def _peak(code: str, path: Path) -> int:
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split()[-1])


def test_scan_memory_does_not_grow_with_the_arrays(tmp_path: Path) -> None:
    array = 192 * MiB
    path = tmp_path / "big.joblib"
    path.write_bytes(dump(big(array // MiB), "zlib"))
    small = tmp_path / "small.joblib"
    small.write_bytes(dump(big(1), "zlib"))
    baseline = _peak(PEAK, small)
    streamed = _peak(PEAK, path)
    whole = _peak(WHOLE, path)
    size = path.stat().st_size
    # what the scan holds: the file itself (mapped and read) and a few MiB of window
    assert streamed < baseline + size + 48 * MiB, (streamed, baseline, size)
    # the whole expansion (what the loader reads) holds the array too
    assert whole > baseline + array, (whole, baseline)


def test_the_memory_bench_runs_and_reports() -> None:
    """bench/run_stream_memory.py on a small array (no memory is asserted here)."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, str(root / "bench" / "run_stream_memory.py"), "--mib", "4", "--only",
         "zlib"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert row["compressor"] == "zlib" and row["scan exit"] == 0, row
    assert row["peak RSS MiB"] > 0 and "1 safe" in row["verdict"], row


def test_a_padding_byte_that_is_an_opcode_is_read_as_one_by_plain_loaders(
    tmp_path: Path,
) -> None:
    # joblib skips `length` padding bytes whatever the length byte is; a plain
    # pickle.load (pandas.read_pickle undoes gzip first) reads a length byte
    # that is an opcode as one: GLOBAL, with the padding as its arguments.
    buf = io.BytesIO()
    joblib.dump(np.arange(64.0), buf, protocol=4)
    data = buf.getvalue()
    i = data.index(b"K\x10ub") + 4
    body = b"os\nsystem\n(S'touch canary'\ntR."
    padding = body + b"\xff" * (ord("c") - len(body))
    stream = data[:i] + b"c" + padding + data[i + 1 + data[i] :]
    assert np.array_equal(joblib.load(io.BytesIO(stream)), np.arange(64.0))
    gz = tmp_path / "m.pkl.gz"
    gz.write_bytes(gzip.compress(stream))
    plain = tmp_path / "m.pkl"
    plain.write_bytes(stream)
    jobs = [
        {"kind": "plain", "path": gz, "cwd": tmp_path / "pandas",
         "code": "import pandas as pd\npd.read_pickle(path)\n"},
        {"kind": "plain", "path": plain, "cwd": tmp_path / "pickle",
         "code": "import pickle\npickle.load(open(path, 'rb'))\n"},
        {"kind": "safeload", "path": gz, "cwd": tmp_path / "guarded"},
    ]  # fmt: skip
    results = run_jobs(jobs, preload=("joblib", "numpy", "pandas"))
    assert canary_in(tmp_path / "pandas"), results[0]
    assert canary_in(tmp_path / "pickle"), results[1]
    assert results[2]["outcome"] == "raised" and not canary_in(tmp_path / "guarded")
    for path in (gz, plain):
        report = safeload.scan_file(path)
        rules = {f.rule for f in report.findings}
        assert report.verdict is Verdict.DANGEROUS and {"SL101", "SL207"} <= rules, report
    # inside zlib only joblib reads the stream: the padding is padding
    report = safeload.scan_bytes(zlib.compress(stream), location="m.joblib")
    assert report.verdict is Verdict.SAFE, report.findings


def test_streamed_and_whole_scans_agree_on_mutated_dumps(spools: list[compress.Spool]) -> None:
    """Bytes changed in the pickle around the arrays (shapes, dtypes, opcodes, the
    stream cut short): whatever the walk makes of them, a streamed scan reports
    what a scan of the whole expansion reports."""
    import random

    rng = np.random.default_rng(0)
    obj = {
        "w": big(3),
        "meta": ["a", 1, 2.5],
        "o": np.array([1, "x"], dtype=object),
        "v": rng.integers(0, 5, (2 * MiB) // 8).astype(np.float64),
    }
    buf = io.BytesIO()
    joblib.dump(obj, buf, protocol=4)
    base = buf.getvalue()
    spots = [*range(1500), *range(len(base) - 1500, len(base))]
    chance = random.Random(1)
    for _ in range(12):
        data = bytearray(base)
        for _ in range(chance.randint(1, 3)):
            data[chance.choice(spots)] = chance.randrange(256)
        if chance.random() < 0.3:
            data = data[: chance.randrange(len(data))]
        raw = chance.choice([zlib.compress, gzip.compress])(bytes(data))
        streamed, whole, shape, whole_shape = both_ways(raw)
        assert (streamed, shape) == (whole, whole_shape)
    assert any(s.released for s in spools)


def test_without_a_map_the_stream_is_expanded_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    # An address-space limit or strict overcommit can refuse the map: the scan
    # then expands the stream whole, as it did before, with the same findings.
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError(12, "Cannot allocate memory")

    raw = payload_dump()
    before = safeload.scan_bytes(raw, location="m.joblib")
    monkeypatch.setattr(compress, "Sparse", refuse)
    after = safeload.scan_bytes(raw, location="m.joblib")
    assert after.verdict is before.verdict is Verdict.DANGEROUS
    assert sorted(map(_key, after.findings)) == sorted(map(_key, before.findings))


def payload_dump() -> bytes:
    return dump({"weights": big(2), "hook": Evil()}, "zlib")
