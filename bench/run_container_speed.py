"""Container scan speed and memory: a big PyTorch state dict and a big joblib RandomForest.

    python bench/run_container_speed.py                   # 500 MB state dict, ~310 MB forest
    python bench/run_container_speed.py --quick           # 50 MB / small forest, seconds
    python bench/run_container_speed.py --json out.json   # also write the numbers

Each measurement runs in a fresh subprocess on the same file (already in the page
cache: the file was just written), reporting wall time and peak RSS of that child.
The scan maps the file and parses only the pickles, so its time and memory should
not grow with the tensor/array bytes, while SHA-256 and the loaders read all of them.
Results go to bench/CONTAINERS.md by hand; read ratios, not seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

MIB = 1024 * 1024

_CHILD = r"""
import json, sys, time
kind, path = sys.argv[1], sys.argv[2]

def hwm():
    # VmHWM, not ru_maxrss: the latter keeps the high-water mark of the forked parent.
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0

if kind == "scan":
    import safeload
    from safeload.scan import default_policy
    default_policy()  # rules and allow packs: loaded once per process, not per file
    base = hwm()
    t = time.perf_counter()
    report = safeload.scan_file(path)
    dt = time.perf_counter() - t
    extra = {"verdict": report.verdict.value, "format": report.format, "pickles": report.pickles}
elif kind == "sha256":
    import hashlib
    base = hwm()
    t = time.perf_counter()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    dt = time.perf_counter() - t
    extra = {}
elif kind == "torch":
    import torch
    base = hwm()
    t = time.perf_counter()
    torch.load(path, weights_only=True)
    dt = time.perf_counter() - t
    extra = {}
elif kind == "joblib":
    import joblib, sklearn.ensemble
    base = hwm()
    t = time.perf_counter()
    joblib.load(path)
    dt = time.perf_counter() - t
    extra = {}
peak = hwm()
print(json.dumps({"seconds": dt, "peak_rss_mib": peak / 1024, "rss_growth_mib": (peak - base) / 1024, **extra}))
"""


def measure(kind: str, path: Path, repeat: int) -> dict[str, float | str]:
    """Best of `repeat` fresh child processes."""
    best: dict[str, float | str] | None = None
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, kind, str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        if best is None or result["seconds"] < best["seconds"]:
            best = result
    assert best is not None
    return best


def make_state_dict(path: Path, megabytes: int) -> None:
    import torch

    torch.manual_seed(0)
    per = 4 * MIB  # 1M float32 per tensor
    layers = {}
    for i in range(max(1, megabytes * MIB // per)):
        layers[f"layer{i}.weight"] = torch.randn(1024, 1024)
    torch.save(layers, path)


def make_forest(path: Path, samples: int, trees: int) -> None:
    import joblib
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    x = rng.random((samples, 8), dtype=np.float32)
    y = rng.integers(0, 2, samples)
    model = RandomForestClassifier(n_estimators=trees, random_state=0, n_jobs=2).fit(x, y)
    joblib.dump(model, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small files (a smoke run)")
    parser.add_argument("--torch-mb", type=int, default=500)
    parser.add_argument("--forest-samples", type=int, default=400_000)
    parser.add_argument("--forest-trees", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    if args.quick:
        args.torch_mb, args.forest_samples, args.forest_trees, args.repeat = 40, 20_000, 3, 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pt = Path(tmp) / "state_dict.pt"
        make_state_dict(pt, args.torch_mb)
        jb = Path(tmp) / "forest.joblib"
        make_forest(jb, args.forest_samples, args.forest_trees)
        for path, loader in ((pt, "torch"), (jb, "joblib")):
            size = os.path.getsize(path)
            scan = measure("scan", path, args.repeat)
            sha = measure("sha256", path, args.repeat)
            load = measure(loader, path, args.repeat)
            rows.append(
                {
                    "file": path.name,
                    "size_mib": round(size / MIB, 1),
                    "scan": scan,
                    "sha256": sha,
                    "load": load,
                    "loader": loader,
                    "sha256_over_scan": float(sha["seconds"]) / float(scan["seconds"]),
                    "load_over_scan": float(load["seconds"]) / float(scan["seconds"]),
                }
            )
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cpus")
    header = (
        "| file | size MiB | format | verdict | scan s | scan RSS growth MiB | scan peak RSS MiB "
        "| sha256 s | sha256/scan | load s | load/scan | load peak RSS MiB |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for r in rows:
        scan, sha, load = r["scan"], r["sha256"], r["load"]
        print(
            f"| {r['file']} | {r['size_mib']} | {scan['format']} | {scan['verdict']} | "
            f"{float(scan['seconds']):.3f} | {float(scan['rss_growth_mib']):.0f} | "
            f"{float(scan['peak_rss_mib']):.0f} | "
            f"{float(sha['seconds']):.3f} | {float(r['sha256_over_scan']):.1f}x | "
            f"{float(load['seconds']):.3f} ({r['loader']}) | {float(r['load_over_scan']):.1f}x | "
            f"{float(load['peak_rss_mib']):.0f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
