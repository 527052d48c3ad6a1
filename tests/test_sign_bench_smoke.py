"""Smoke test for bench/run_sign_speed.py: it runs and reports. No timing is asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "run_sign_speed.py"


def test_quick_run_reports_every_measurement(tmp_path: Path) -> None:
    pytest.importorskip("joblib")
    pytest.importorskip("numpy")
    out = tmp_path / "sign.json"
    work = tmp_path / "work"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--quick",
            "--file-mib",
            "2",
            "--dir-files",
            "4",
            "--dir-file-mib",
            "1",
            "--dump-mib",
            "1",
            "--workdir",
            str(work),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["file"]["bytes"] == 2 * 1024 * 1024
    assert report["directory"]["files"] == 4
    assert report["directory"]["cores"] >= 1
    assert report["dump"]["array_bytes"] == 1024 * 1024
    timings = [
        report["file"]["sha256_seconds"],
        report["file"]["sign_seconds"],
        report["file"]["verify_seconds"],
        report["directory"]["sign_parallel_seconds"],
        report["dump"]["dump_seconds"],
        report["dump"]["joblib_dump_seconds"],
    ]
    assert all(t > 0 for t in timings)
    for heading in ("One 2 MiB file", "A directory of 4 files", "`dump()` of a 1 MiB array"):
        assert heading in done.stdout
    assert "`safeload.verify`" in done.stdout
    # The benchmark cleans up after itself, keeping only its key.
    assert sorted(p.name for p in work.iterdir()) == ["bench.key", "bench.key.pub"]
