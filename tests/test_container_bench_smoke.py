"""Smoke test for bench/run_container_speed.py: it runs on small real files and reports.

No timing is asserted (speed is measured by running the script itself, see
bench/CONTAINERS.md); this only keeps the script working.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "run_container_speed.py"


def test_quick_container_bench_reports_both_files(tmp_path: Path) -> None:
    out = tmp_path / "containers.json"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--quick",
            "--torch-mb",
            "2",
            "--forest-samples",
            "100",
            "--forest-trees",
            "2",
            "--repeat",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {row["file"]: row for row in json.loads(out.read_text(encoding="utf-8"))}
    assert set(rows) == {"state_dict.pt", "forest.joblib"}
    assert rows["state_dict.pt"]["scan"]["format"] == "pytorch-zip"
    assert rows["forest.joblib"]["scan"]["format"] == "joblib"
    for row in rows.values():
        assert row["scan"]["verdict"] == "safe"
        assert row["scan"]["seconds"] > 0 and row["sha256"]["seconds"] > 0
    assert "| state_dict.pt |" in done.stdout
