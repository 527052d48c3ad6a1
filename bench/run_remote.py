"""Remote scans over HTTP: bytes fetched for big files, and concurrency against latency.

    python bench/run_remote.py                 # 300-tree forest, 500 MiB state dict, 200 files
    python bench/run_remote.py --quick         # small files, seconds (smoke test)

Files are served by tests/rangeserver.py on 127.0.0.1 (Range, ETag, If-Match; it counts
the body bytes it sends). Two measurements:

* **Bytes fetched ÷ file size** for the speed benchmarks' large files (made as
  bench/run_load_speed.py makes them, reused from bench/.work/): a `RandomForestClassifier`
  saved by `joblib.dump` and a state dict of 4 MiB float32 tensors saved by `torch.save`.
  Each is scanned by `safeload.scan(url)`; the verdict must equal the local scan's. The
  forest is also scanned with ranged reads to the end (`COST_AWARE` off, a high round
  limit), to show what a file with hundreds of arrays costs in runs.
* **Latency**: `--files` small model files (torch, joblib, pickle), every request delayed
  by `--latency` seconds, scanned with `scan_urls(..., concurrency=16)` against
  `concurrency=1`.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import run_load_speed as speed  # noqa: E402
from _measure import fill_sizes  # noqa: E402

from tests.rangeserver import Served, serving  # noqa: E402

MIB = 1024 * 1024
TIMES = "\N{MULTIPLICATION SIGN}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small files, for smoke tests")
    p.add_argument("--forest-trees", type=int, help="trees (default 300; 3 --quick)")
    p.add_argument("--forest-samples", type=int, help="rows (default 30,000; 500 --quick)")
    p.add_argument("--torch-mb", type=int, help="state dict MiB (default 500; 8 --quick)")
    p.add_argument("--files", type=int, help="small files for the latency run (default 200)")
    p.add_argument("--latency", type=float, default=0.05, help="seconds per request (0.05)")
    p.add_argument("--concurrency", type=int, default=16, help="fetches at once (16)")
    p.add_argument("--rounds", type=int, default=1000, help="round limit of the second forest run")
    p.add_argument("--workdir", type=Path, help="where the files go (default bench/.work)")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = p.parse_args(argv)
    defaults = {
        "forest_trees": (300, 3),
        "forest_samples": (30_000, 500),
        "torch_mb": (500, 8),
        "files": (200, 20),
    }
    fill_sizes(args, defaults)
    return args


def _scan_remote(url: str, served: Served, rounds: int | None = None) -> dict[str, Any]:
    from safeload.scan import _remote, default_policy

    served.reset()
    saved = _remote.MAX_ROUNDS, _remote.COST_AWARE
    if rounds is not None:  # ranged reads to the end, however many runs they take
        _remote.MAX_ROUNDS, _remote.COST_AWARE = rounds, False
    try:
        start = time.perf_counter()
        report = _remote.scan_target(url, default_policy())
        seconds = time.perf_counter() - start
    finally:
        _remote.MAX_ROUNDS, _remote.COST_AWARE = saved
    (file,) = report.files
    return {
        "verdict": file.verdict.value,
        "size": file.size,
        "fetched": file.fetched,
        "served": served.body_bytes,
        "requests": served.requests,
        "ratio": (file.fetched or 0) / file.size,
        "seconds": seconds,
        "max_rounds": rounds or saved[0],
        "cost_aware": rounds is None and saved[1],
    }


def measure_big(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Bytes fetched ÷ size for the forest and the state dict."""
    import safeload

    forest = work / f"forest{args.forest_trees}x{args.forest_samples}.joblib"
    speed._make(forest, "forest", args.forest_samples, args.forest_trees)
    tensors = work / f"state_dict{args.torch_mb}.pt"
    speed._make(tensors, "state_dict", args.torch_mb)
    served = Served(files={"/forest.joblib": forest, "/state_dict.pt": tensors})
    out: dict[str, Any] = {}
    with serving(served) as base:
        for name, served_as, path, rounds in (
            ("torch", "state_dict.pt", tensors, None),
            ("forest", "forest.joblib", forest, None),
            ("forest_more_rounds", "forest.joblib", forest, args.rounds),
        ):
            row = _scan_remote(f"{base}/{served_as}", served, rounds)
            row["local_verdict"] = safeload.scan_file(path).verdict.value
            out[name] = row
    return out


def _small_files(directory: Path, count: int) -> list[Path]:
    import joblib
    import numpy as np
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        kind = i % 3
        if kind == 0:
            path = directory / f"m{i}.pt"
            if not path.exists():
                torch.save({"w": torch.full((64, 64), float(i)), "b": torch.zeros(64)}, path)
        elif kind == 1:
            path = directory / f"m{i}.joblib"
            if not path.exists():
                joblib.dump({"coef": np.full(2000, i, dtype=np.float64), "n": i}, path)
        else:
            path = directory / f"m{i}.pkl"
            if not path.exists():
                path.write_bytes(pickle.dumps({"weights": list(range(i, i + 500))}, protocol=4))
        paths.append(path)
    return paths


def measure_latency(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """`scan_urls` of many small files, concurrent and one by one, with a delay per request."""
    from safeload.scan import _remote, default_policy

    paths = _small_files(work / "remote_small", args.files)
    served = Served(files={f"/{p.name}": p for p in paths}, latency=args.latency)
    out: dict[str, Any] = {"files": len(paths), "latency": args.latency}
    with serving(served) as base:
        urls = [f"{base}/{p.name}" for p in paths]
        for label, concurrency in (("concurrent", args.concurrency), ("serial", 1)):
            served.reset()
            start = time.perf_counter()
            report = _remote.scan_urls(urls, default_policy(), concurrency=concurrency)
            seconds = time.perf_counter() - start
            assert not report.errors and len(report.files) == len(paths), report.errors
            out[label] = {
                "concurrency": concurrency,
                "seconds": seconds,
                "requests": served.requests,
                "served": served.body_bytes,
                "verdicts": report.summary(),
            }
    out["speedup"] = out["serial"]["seconds"] / out["concurrent"]["seconds"]
    return out


def to_markdown(result: dict[str, Any]) -> str:
    """The tables for bench/README.md."""
    lines = [
        "| file | size | fetched | fetched ÷ size | requests | seconds | verdict (local) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, row in result["big"].items():
        label = {"torch": "state dict (`torch.save`)", "forest": "forest (`joblib.dump`)"}.get(
            name, f"forest, ranged to the end (up to {row['max_rounds']} runs)"
        )
        lines.append(
            f"| {label} | {row['size'] / MIB:,.1f} MiB | {row['fetched']:,} B | "
            f"{100 * row['ratio']:.3f}% | {row['requests']} | {row['seconds']:.2f} | "
            f"{row['verdict']} ({row['local_verdict']}) |"
        )
    lat = result["latency"]
    lines += [
        "",
        f"{lat['files']} small files, {1000 * lat['latency']:.0f} ms per request:",
        "",
        "| fetches at once | seconds | requests | files/s |",
        "|---:|---:|---:|---:|",
    ]
    for key in ("concurrent", "serial"):
        row = lat[key]
        lines.append(
            f"| {row['concurrency']} | {row['seconds']:.2f} | {row['requests']} | "
            f"{lat['files'] / row['seconds']:.1f} |"
        )
    lines.append(f"\nserial ÷ concurrent: {lat['speedup']:.1f}{TIMES}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.workdir or HERE / ".work"
    work.mkdir(parents=True, exist_ok=True)
    result = {"big": measure_big(args, work), "latency": measure_latency(args, work)}
    sys.stdout.write(to_markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
