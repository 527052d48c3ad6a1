"""Smoke test for bench/run_load_speed.py: it runs and reports. No timing is asserted here.

Only the dict case runs (a few seconds): the forest and state-dict cases go through the
same child and tables, with joblib or torch imported in the child, and take a minute.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "run_load_speed.py"
ENTRIES = 2_000


def test_quick_dict_run_reports_every_measurement(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    work = tmp_path / "work"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--quick",
            "--only",
            "dict",
            "--protocol",
            "4",
            "--entries",
            str(ENTRIES),
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
    (result,) = report["results"]
    assert result["kind"] == "dict" and result["protocol"] == 4
    assert result["file_bytes"] == (work / f"dict{ENTRIES}_p4.pkl").stat().st_size
    ops = result["ops"]
    assert set(ops) == {"plain", "sha256", "scan", "guarded", "signed"}
    for row in ops.values():
        assert row["status"] == "ok", row
        assert row["seconds"] > 0
        assert row["rss_peak"] >= row["rss_before"] > 0
    # Both loads returned the dict; the scan walked every entry and found it safe.
    assert ops["plain"]["type"] == ops["guarded"]["type"] == ops["signed"]["type"] == "dict"
    assert ops["scan"]["verdict"] == "safe" and ops["scan"]["opcodes"] >= 3 * ENTRIES
    ratios = result["ratios"]
    assert ratios["guarded_over_plain"] > 0 and ratios["signed_over_floor"] > 0
    assert "guarded_extra_peak_over_file" in ratios
    assert "| dict2000_p4.pkl |" in done.stdout
    assert "`safeload.load(path, require_signature=False)`" in done.stdout
    # The signature is removed again; the key is kept for the next run.
    assert not list(work.glob("*.sig"))
    assert (work / "load-bench.key.pub").is_file()
