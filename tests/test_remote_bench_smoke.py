"""Smoke test for bench/run_remote.py: it runs and reports. No timing is asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "run_remote.py"


def test_quick_run_reports_fetched_bytes_and_both_latency_runs(tmp_path: Path) -> None:
    out = tmp_path / "remote.json"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--quick",
            "--files",
            "6",
            "--latency",
            "0.01",
            "--workdir",
            str(tmp_path / "work"),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    for row in result["big"].values():
        assert row["verdict"] == row["local_verdict"] == "safe"
        assert 0 < row["fetched"] <= row["size"]
        assert row["fetched"] == row["served"]
    assert result["big"]["torch"]["ratio"] < 0.5
    latency = result["latency"]
    assert latency["concurrent"]["verdicts"]["safe"] == latency["serial"]["verdicts"]["safe"] == 6
    assert "fetched" in done.stdout and "fetches at once" in done.stdout
