"""The documented long run: each harness until N cases or a time limit, crashes kept.

    python fuzz/long_run.py HARNESS [--runs N] [--max-time SECONDS] [--timeout S]

libFuzzer stops at the first crash; this runner keeps the crashing input
(fuzz/artifacts/HARNESS/), restarts from the grown corpus
(fuzz/corpus/HARNESS/, seeded from fuzz/seeds/HARNESS/ by make_seeds.py)
and goes on until the case count or the time is spent. It ends by printing
one JSON line: cases run, seconds, cases per second, restarts, artifacts.
Copy each artifact into tests/fuzz_regressions/<target>/ once its defect is
fixed (tests/test_fuzz_regressions.py replays them).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
_DONE = re.compile(rb"Done (\d+) runs in")
_STAT = re.compile(rb"^#(\d+)\s", re.MULTILINE)


def _cases(log: bytes) -> int:
    """Cases libFuzzer ran in one session: its summary line, else its last status line."""
    done = _DONE.findall(log)
    if done:
        return int(done[-1])
    stats = _STAT.findall(log)
    return int(stats[-1]) if stats else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("harness", choices=["scan", "containers", "signature", "keys", "load"])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--max-time", type=int, default=3600, help="seconds in all")
    parser.add_argument("--timeout", type=int, default=60, help="seconds one case may take")
    parser.add_argument("--rss-limit-mb", type=int, default=4096)
    args = parser.parse_args(argv)
    name = f"fuzz_{args.harness}"
    corpus = HERE / "corpus" / name
    seeds = HERE / "seeds" / name
    artifacts = HERE / "artifacts" / name
    logs = HERE / "logs"
    for folder in (corpus, artifacts, logs):
        folder.mkdir(parents=True, exist_ok=True)
    total = restarts = 0
    kills: list[int] = []
    began = time.monotonic()
    while total < args.runs:
        left = args.max_time - int(time.monotonic() - began)
        if left <= 0:
            break
        command = [
            sys.executable,
            str(HERE / f"{name}.py"),
            str(corpus),
            *([str(seeds)] if seeds.is_dir() else []),
            f"-runs={args.runs - total}",
            f"-max_total_time={left}",
            f"-timeout={args.timeout}",
            f"-rss_limit_mb={args.rss_limit_mb}",
            f"-artifact_prefix={artifacts}/",
            "-print_final_stats=1",
        ]
        done = subprocess.run(command, capture_output=True, check=False)
        log = done.stderr + done.stdout  # atheris prints a target's traceback on stdout
        (logs / f"{name}-{restarts}.log").write_bytes(log)
        ran = _cases(log)
        total += ran
        crashed = b"ERROR: libFuzzer" in log or b"Uncaught Python exception" in log
        if not crashed and done.returncode == 0:
            break  # it ended by its own limits
        if not crashed:
            # Killed from outside (the OOM killer, a signal): no input to keep.
            kills.append(done.returncode)
        restarts += 1
        if ran == 0 and restarts > 20:
            break  # it crashes before running anything: fix that first
    seconds = time.monotonic() - began
    print(
        json.dumps(
            {
                "harness": args.harness,
                "cases": total,
                "seconds": round(seconds, 1),
                "cases_per_second": round(total / seconds, 1) if seconds else 0.0,
                "restarts": restarts,
                "killed": kills,
                "artifacts": sorted(p.name for p in artifacts.iterdir()),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
