"""Huge files cost a bounded read: trailing bytes, padding and degenerate streams.

A sparse 20 GB file costs nothing on disk, yet a scan that reads it whole takes
minutes and maps all of it into memory (an all-zero file took 44 s and 14.5 GB of
pages to say "unknown opcode at 0"). Each scan here runs in a subprocess that
reports its own peak RSS; before the bounds, every one of them read the whole file.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import safeload
from safeload._machine.walker import TAIL_READ
from tests.hostile_containers import payload
from tests.loadrun import canary_in, run_jobs

HUGE = 20 << 30
MAX_RSS = 300 << 20
"""A scan reading 20 GB maps gigabytes; a bounded one stays near the interpreter's size."""
MAX_SECONDS = 60.0
"""Generous for a busy machine (the scan alone, in its process): a full read of 20 GB
took 44 s idle, and 2 GB 17 s here; the peak RSS is what tells a full read apart."""

_SCAN = """
import json, sys, time
import safeload

def peak():
    with open("/proc/self/status") as status:
        return next(int(x.split()[1]) * 1024 for x in status if x.startswith("VmHWM:"))

# A child started with vfork inherits its parent's high-water mark (a pytest worker's,
# after many tests): reset it to this process's RSS before the scan.
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")
start = time.perf_counter()
report = safeload.scan_file(sys.argv[1])
print(json.dumps({
    "seconds": time.perf_counter() - start,
    "maxrss": peak(),
    "verdict": report.verdict.value,
    "findings": [[f.rule_name, f.message] for f in report.findings],
}))
"""


@pytest.fixture
def sparse(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "huge.bin"
    yield path
    path.unlink(missing_ok=True)


def _make_sparse(path: Path, head: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(head)
        try:
            handle.truncate(HUGE)
        except OSError as exc:
            pytest.skip(f"cannot make a {HUGE}-byte sparse file here: {exc}")
    if os.stat(path).st_blocks * 512 > 64 << 20:
        path.unlink()
        pytest.skip("this filesystem does not keep files sparse")


def _scan(path: Path) -> dict[str, object]:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc/self/clear_refs to measure the scan's own peak RSS")
    done = subprocess.run(
        [sys.executable, "-c", _SCAN, str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def _findings(result: dict[str, object]) -> list[tuple[str, str]]:
    found = result["findings"]
    assert isinstance(found, list)
    return [(str(rule), str(message)) for rule, message in found]


def _bounded(result: dict[str, object]) -> None:
    assert isinstance(result["seconds"], float) and result["seconds"] < MAX_SECONDS, result
    assert isinstance(result["maxrss"], int) and result["maxrss"] < MAX_RSS, result


def test_all_zero_file(sparse: Path) -> None:
    _make_sparse(sparse, b"")
    result = _scan(sparse)
    _bounded(result)
    assert result["verdict"] == "not-a-pickle"
    assert any("unknown opcode 0x00" in m for _r, m in _findings(result))


def test_pickle_then_zeros(sparse: Path) -> None:
    """Zero padding is read up to TAIL_READ bytes: no unpickler reads past a zero byte."""
    _make_sparse(sparse, pickle.dumps({"a": [1, 2]}, protocol=4))
    result = _scan(sparse)
    _bounded(result)
    assert result["verdict"] == "safe"
    ((rule, message),) = _findings(result)
    assert rule == "zero-padding" and f"the first {TAIL_READ} were read" in message


def test_compressed_stream_then_zeros(sparse: Path) -> None:
    """After a compressed stream, what is past TAIL_READ is not read: trailing data."""
    _make_sparse(sparse, gzip.compress(pickle.dumps([1, 2, 3], protocol=4)))
    result = _scan(sparse)
    _bounded(result)
    assert result["verdict"] == "invalid"
    assert any(rule == "trailing-data" for rule, _m in _findings(result))


def test_zstd_header_then_zeros(sparse: Path) -> None:
    """zstd reads zero bytes as empty raw blocks: a stream that reads on without output
    is cut once it has read twice its output plus INPUT_SLACK."""
    pytest.importorskip("zstandard")
    _make_sparse(sparse, b"\x28\xb5\x2f\xfd")
    result = _scan(sparse)
    _bounded(result)
    assert result["verdict"] == "invalid"


def test_a_real_zstd_stream_is_not_cut(tmp_path: Path) -> None:
    zstandard = pytest.importorskip("zstandard")
    data = pickle.dumps({"w": os.urandom(3 << 20), "b": bytes(5 << 20)}, protocol=5)
    path = tmp_path / "model.pkl.zst"
    path.write_bytes(zstandard.ZstdCompressor(level=3).compress(data))
    report = safeload.scan_file(path)
    assert report.verdict.value == "safe", report.findings


def test_real_padding_is_still_reported(tmp_path: Path) -> None:
    path = tmp_path / "padded.pkl"
    body = pickle.dumps({"a": 1}, protocol=4)
    path.write_bytes(body + bytes(64 << 10))
    report = safeload.scan_file(path)
    assert report.verdict.value == "safe"
    (finding,) = report.findings
    assert finding.rule_name == "zero-padding" and finding.offset == len(body)
    assert finding.message == f"{64 << 10} zero bytes after the last pickle"


def test_a_payload_after_short_padding_is_still_found(tmp_path: Path) -> None:
    """Within the bound, bytes after padding are still read (and a pickle there found)."""
    path = tmp_path / "padded.pkl"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=4) + bytes(1 << 20) + b"junk" + payload())
    report = safeload.scan_file(path)
    assert report.verdict.value == "dangerous"
    assert {"trailing-data"} <= {f.rule_name for f in report.findings}


def test_bytes_past_the_bound_are_what_no_loader_reads(tmp_path: Path) -> None:
    """A payload after more than TAIL_READ zero bytes is not read by the scan, nor by any
    reader: pickle.load stops at the first pickle, a loop of pickle.load at the first zero
    byte, and numpy, joblib, pandas and torch read it no further."""
    path = tmp_path / "padded.pkl"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=4) + bytes(TAIL_READ + 1) + payload())
    report = safeload.scan_file(path)
    assert report.verdict.value == "safe"
    loop = "import pickle\nwith open(path, 'rb') as f:\n    while True:\n        pickle.load(f)\n"
    loaders = {
        "pickle-loop": loop,
        "joblib": "import joblib; joblib.load(path)",
        "pandas": "import pandas; pandas.read_pickle(path)",
        "numpy": "import numpy; numpy.load(path, allow_pickle=True)",
        "torch": "import torch; torch.load(path, weights_only=False)",
    }
    folders = {name: tmp_path / name for name in loaders}
    jobs: list[dict[str, Any]] = [
        {"kind": "plain", "path": path, "cwd": folders[name], "code": code}
        for name, code in loaders.items()
    ]
    results = run_jobs(jobs)
    for name, result in zip(loaders, results, strict=True):
        assert not canary_in(folders[name]), (name, result)


def test_huge_files_bench_runs_and_reports(tmp_path: Path) -> None:
    """bench/run_huge_files.py runs and reports (no timing is asserted)."""
    bench = Path(__file__).resolve().parent.parent / "bench" / "run_huge_files.py"
    out = tmp_path / "huge.json"
    done = subprocess.run(
        [
            sys.executable,
            str(bench),
            "--size-gib",
            "1",
            "--json",
            str(out),
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode == 2 and "sparse" in done.stderr:
        pytest.skip("this filesystem does not keep files sparse")
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["size_bytes"] == 1 << 30
    assert set(report["files"]) == {
        "zeros",
        "pickle + zeros",
        "gzip + zeros",
        "zstd header + zeros",
    }
    for row in report["files"].values():
        assert row["status"] == "ok" and row["peak_rss"] > 0


@pytest.mark.parametrize("kind", ["zstd", "lz4"])
def test_metered_readers_read_real_streams_whole(kind: str) -> None:
    """The input allowance follows the output: a real stream reads whole, in any steps
    (to the end at once too), and only one that reads on without output is cut."""
    from safeload._formats import compress

    data = os.urandom(3 << 20) + bytes(20 << 20)
    if kind == "zstd":
        zstandard = pytest.importorskip("zstandard")
        packed = zstandard.ZstdCompressor().compress(data)
        degenerate = b"\x28\xb5\x2f\xfd" + bytes(50 << 20)
    else:
        lz4_frame = pytest.importorskip("lz4.frame")
        packed = lz4_frame.compress(data)
        degenerate = b""
    whole = compress._reader(kind, compress.range_file(packed, 0, len(packed)))
    assert whole.read() == data and whole.read(-1) == b""
    steps = compress._reader(kind, compress.range_file(packed, 0, len(packed)))
    assert b"".join(iter(lambda: steps.read(1 << 16), b"")) == data
    if degenerate:
        cut = compress._reader(kind, compress.range_file(degenerate, 0, len(degenerate)))
        with pytest.raises(ValueError, match="not a stream a compressor wrote"):
            cut.read(1 << 16)
