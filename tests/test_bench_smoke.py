"""Smoke test for bench/run_scan_speed.py: it runs and reports. No timing is asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent / "bench" / "run_scan_speed.py"
ENTRIES = 2_000


def _run(tmp_path: Path, *flags: str) -> tuple[str, dict[str, Any]]:
    out = tmp_path / "bench.json"
    quick = ["--quick", "--entries", str(ENTRIES), "--protocol", "4"]
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            *quick,
            "--workdir",
            str(tmp_path / "work"),
            "--json",
            str(out),
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, json.loads(out.read_text(encoding="utf-8"))


def test_quick_run_without_peers_reports_every_measurement(tmp_path: Path) -> None:
    markdown, report = _run(tmp_path, "--no-peers")
    (run,) = report["runs"]
    assert run["protocol"] == 4
    assert run["file_bytes"] == (tmp_path / "work" / "dict2000_p4.pkl").stat().st_size
    inproc, e2e = run["in_process"], run["end_to_end"]
    assert set(inproc) == {"loads", "sha256", "scan_bytes", "scan_file"}
    assert set(e2e) == {"load", "safeload"}
    for row in [*inproc.values(), *e2e.values()]:
        assert row["status"] == "ok", row
        assert row["seconds"] > 0
    for op in ("scan_bytes", "scan_file"):
        # Each entry is at least a key, a MEMOIZE and a value opcode.
        assert inproc[op]["verdict"] == "safe"
        assert inproc[op]["opcodes"] >= 3 * ENTRIES
        assert inproc[op]["rss_peak"] >= inproc[op]["rss_before"] > 0
    assert e2e["safeload"]["returncode"] == 0
    assert run["loaded_bytes"] > 0
    assert run["ratios"]["scan_file_over_loads"] > 0
    for label in ("`pickle.loads(data)`", "`safeload.scan_file(path)`", "`safeload scan FILE`"):
        assert label in markdown
    assert "| in process | seconds |" in markdown
    assert "picklescan" not in markdown


def test_peer_that_cannot_run_is_recorded_not_fatal(tmp_path: Path) -> None:
    # Venvs whose install stamp is present but whose scripts are missing.
    venvs = tmp_path / "venvs"
    stamps = {"picklescan": "picklescan==1.0.5", "fickling": "fickling==0.1.12\ntyping_extensions"}
    for name, wanted in stamps.items():
        (venvs / name).mkdir(parents=True)
        (venvs / name / ".installed").write_text(wanted, encoding="utf-8")
    markdown, report = _run(tmp_path, "--venvs", str(venvs))
    e2e = report["runs"][0]["end_to_end"]
    for name in stamps:
        assert e2e[name]["status"] == "error"
        assert "cannot start" in e2e[name]["detail"]
        assert f"`{name}" in markdown
