"""Batch scans on a Dask LocalCluster against the local parallel scan, and files/hour by format.

    python bench/run_dask.py --json bench/.work/dask.json   # 2,000 files, 2 workers, best of 3
    python bench/run_dask.py --quick                        # 200 files, one run, seconds

Part 1, the same generated tree (tests/hubtree.py: real numpy, scikit-learn and joblib
files, byte-built hostile pickles, zips), scanned by:

* `safeload scan --jobs N --quiet TREE`: the local parallel scan (worker processes);
* `scan_paths([TREE], jobs=N)` in this process: the same scan without the CLI's start-up;
* `safeload scan --engine dask --jobs N --jsonl OUT TREE`: the CLI starting its own
  LocalCluster of N one-thread worker processes (start-up and shutdown included);
* `safeload.scan_many(TREE, client=...)` on a LocalCluster already running (N workers,
  warmed by one run): the steady state of a long run on a cluster that stays up.

Part 2, one worker core: `safeload.scan_file(path)` in this process (best of K, warm) on
one typical file per format, as files per hour per core (3600 s / time per file).

Runs are interleaved; the load average is recorded before and after (machines are shared).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))  # the tree builder shared with the tests

MIB = 1024 * 1024
TIMES = "\N{MULTIPLICATION SIGN}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--files", type=int, help="model files in the tree (default 2000; --quick 200)")
    p.add_argument("--workers", type=int, default=2, help="worker processes / --jobs (default 2)")
    p.add_argument("--repeat", type=int, help="best of K runs (default 3; --quick 1)")
    p.add_argument("--quick", action="store_true", help="small tree, small files, one run")
    p.add_argument("--no-formats", action="store_true", help="skip part 2 (files/hour by format)")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    p.add_argument("--workdir", type=Path, help="where the files go (default: a temporary dir)")
    args = p.parse_args(argv)
    args.files = args.files or (200 if args.quick else 2000)
    args.repeat = args.repeat or (1 if args.quick else 3)
    return args


def _timed(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):  # 1: the tree holds hostile files
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-500:]}")
    return elapsed


def cluster_runs(tree: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Part 1: the three ways to scan the tree, interleaved, best of `repeat`."""
    import dask
    from distributed import Client, LocalCluster

    import safeload
    from safeload.scan import default_policy
    from safeload.scan._batch import discover, scan_paths

    files, _skipped, _errors = discover([tree])
    size = sum(f.stat().st_size for f in files)
    safeload_cli = [sys.executable, "-m", "safeload", "scan"]
    local = [*safeload_cli, "--quiet", "--jobs", str(args.workers), str(tree)]
    out = work / "cli.jsonl"
    engine = [
        *safeload_cli, "--engine", "dask", "--quiet", "--jobs", str(args.workers),
        "--jsonl", str(out), str(tree),
    ]  # fmt: skip
    with dask.config.set({"distributed.scheduler.allowed-failures": 3}):
        cluster = LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        )
    client = Client(cluster)
    try:
        warm = work / "warm.jsonl"
        safeload.scan_many([tree], jsonl=warm, client=client)  # workers import safeload once
        times: dict[str, list[float]] = {"local": [], "paths": [], "engine": [], "steady": []}
        for _ in range(args.repeat):
            times["local"].append(_timed(local))
            start = time.perf_counter()
            scan_paths([tree], default_policy(), jobs=args.workers)
            times["paths"].append(time.perf_counter() - start)
            times["engine"].append(_timed(engine))
            start = time.perf_counter()
            summary = safeload.scan_many([tree], jsonl=warm, client=client)
            times["steady"].append(time.perf_counter() - start)
            assert summary.files == len(files), (summary.files, len(files))
    finally:
        client.close()
        cluster.close()
    lines = out.read_text().count("\n")
    assert lines == len(files), (lines, len(files))
    best = {k: min(v) for k, v in times.items()}
    return {
        "files": len(files),
        "bytes": size,
        "workers": args.workers,
        "seconds": times,
        "best": best,
        "files_per_s": {k: len(files) / v for k, v in best.items()},
        "local_over": {k: best["local"] / v for k, v in best.items()},
    }


# -- part 2: one core, by format ---------------------------------------------------------


def _format_files(folder: Path, quick: bool) -> dict[str, tuple[str, Path]]:
    """One typical file per format: label -> (description, path)."""
    import joblib
    import numpy as np
    import pandas as pd
    import torch
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    made: dict[str, tuple[str, Path]] = {}

    x = rng.normal(size=(500, 20))
    y = (x[:, 0] > 0).astype(int)
    path = folder / "logreg.pkl"
    path.write_bytes(pickle.dumps(LogisticRegression().fit(x, y)))
    made["sklearn-small"] = ("scikit-learn LogisticRegression, pickle", path)

    trees = 10 if quick else 100
    forest = RandomForestClassifier(n_estimators=trees, random_state=0).fit(
        rng.normal(size=(2000, 20)), rng.integers(0, 2, 2000)
    )
    path = folder / "forest.joblib"
    joblib.dump(forest, path)
    made["sklearn-forest"] = (f"RandomForestClassifier ({trees} trees), joblib", path)

    rows = 10_000 if quick else 200_000
    frame = pd.DataFrame(
        {"a": rng.normal(size=rows), "b": rng.integers(0, 100, rows), "c": ["x"] * rows}
    )
    path = folder / "frame.pkl"
    frame.to_pickle(path)
    made["pandas"] = (f"pandas DataFrame ({rows} rows, float, int, str), pickle", path)

    mb = 8 if quick else 256
    path = folder / "array.npy"
    np.save(path, np.zeros(mb * MIB // 4, dtype=np.float32))
    made["npy"] = (f"numpy .npy, {mb} MiB float32", path)

    tensors = 8 if quick else 200
    per = (mb * MIB // 4) // tensors
    state = {f"layer{i}.weight": torch.zeros(per) for i in range(tensors)}
    path = folder / "state.pt"
    torch.save(state, path)
    made["torch"] = (f"PyTorch zip state dict, {tensors} tensors, {mb} MiB", path)

    entries = 20_000 if quick else 200_000
    path = folder / "dict.pkl"
    path.write_bytes(pickle.dumps({f"key{i}": i for i in range(entries)}, protocol=4))
    made["dict"] = (f"dict of {entries} str -> int (opcode-dense), pickle", path)
    return made


BIG_FILES = {
    "state_dict500mib.pt": "PyTorch zip state dict, 125 tensors, 500 MiB (run_load_speed.py)",
    "forest300x30000.joblib": "RandomForestClassifier (300 trees), joblib (run_load_speed.py)",
    "dict2000000_p4.pkl": "dict of 2,000,000 str -> int, pickle (run_scan_speed.py)",
}
"""bench/.work/ files of the other benchmarks, measured too when present."""


def _best(call: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def per_format(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Part 2: in-process scan_file time per file, as files per hour on one core."""
    import safeload
    from safeload.scan import default_policy

    made = _format_files(work / "formats", args.quick)
    # The large files of the speed benchmarks, when an earlier run left them.
    for name, what in BIG_FILES.items():
        if (HERE / ".work" / name).exists() and not args.quick:
            made[name] = (what, HERE / ".work" / name)
    policy = default_policy()  # the built-in policy, loaded once
    results: dict[str, Any] = {}
    for label, (what, path) in made.items():
        report = safeload.scan_file(path, policy)
        seconds = _best(lambda p=path: safeload.scan_file(p, policy), max(3, args.repeat))
        results[label] = {
            "what": what,
            "bytes": path.stat().st_size,
            "verdict": report.verdict.value,
            "seconds": seconds,
            "files_per_hour": 3600 / seconds,
        }
    return results


def render(result: dict[str, Any]) -> str:
    lines = [
        f"run {result['when']} on {result['machine']}, safeload {result['commit']}, "
        f"load average {result['load_before']:.2f} before and {result['load_after']:.2f} after",
        "",
    ]
    c = result.get("cluster")
    if c:
        lines += [
            f"tree: {c['files']} files, {c['bytes'] / MIB:.1f} MiB; {c['workers']} workers; "
            f"best of {len(c['seconds']['local'])}",
            "",
            "| how | seconds | files/s | local ÷ this |",
            "|---|---:|---:|---:|",
        ]
        names = {
            "local": f"`safeload scan --jobs {c['workers']}`",
            "paths": f"`scan_paths(jobs={c['workers']})` in-process (no CLI start-up)",
            "engine": f"`safeload scan --engine dask --jobs {c['workers']}` (own LocalCluster)",
            "steady": "`scan_many(client=...)` on a running LocalCluster",
        }
        for key, name in names.items():
            lines.append(
                f"| {name} | {c['best'][key]:.2f} | {c['files_per_s'][key]:.0f} "
                f"| {c['local_over'][key]:.2f}{TIMES} |"
            )
        lines.append("")
    f = result.get("formats")
    if f:
        lines += ["| format | size | scan_file seconds | files/hour/core | verdict |"]
        lines += ["|---|---:|---:|---:|---|"]
        for row in f.values():
            lines.append(
                f"| {row['what']} | {row['bytes'] / MIB:.2f} MiB | {row['seconds']:.4f} "
                f"| {row['files_per_hour']:,.0f} | {row['verdict']} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from hubtree import build_tree

    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    result: dict[str, Any] = {
        "when": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "commit": commit or "?",
        "load_before": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory(prefix="safeload-dask-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        tree = work / "hub"
        if not tree.exists():
            build_tree(tree, args.files)
        result["cluster"] = cluster_runs(tree, work, args)
        if not args.no_formats:
            result["formats"] = per_format(work, args)
    result["load_after"] = os.getloadavg()[0]
    sys.stdout.write(render(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
