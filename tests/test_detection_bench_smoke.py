"""bench/run_detection.py, safeload only: every hostile file flagged, every genuine one passed
under --fail-on dangerous, and the default flags only the class of your own (unknown)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_detection_bench_safeload_rows(tmp_path: Path) -> None:
    out = tmp_path / "detection.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run_detection.py"),
            "--only",
            "safeload,safeload --fail-on dangerous",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    for file, row in results["hostile"].items():
        assert row["safeload"]["outcome"] == "flagged", file
        assert row["safeload --fail-on dangerous"]["outcome"] == "flagged", file
    for file, row in results["genuine"].items():
        assert row["safeload --fail-on dangerous"]["outcome"] == "clean", file
        expected = "flagged" if file == "custom-class.pkl" else "clean"
        assert row["safeload"]["outcome"] == expected, file
    assert "| safeload | 14/14 | 0 | 6/7 | 1 | 0 |" in done.stdout
