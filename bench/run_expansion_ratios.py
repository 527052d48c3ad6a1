"""Expansion ratios of real compressed model files: what `--max-expansion` must allow.

Writes real objects with the real writers (`joblib.dump(compress=...)` with every
compressor joblib has, `DataFrame.to_pickle` / `pandas.to_pickle` with every
compression pandas infers from a name, tar archives included), then scans each
file and reports the decompressed size over the file size. Objects: a fitted
RandomForest and LogisticRegression, a mixed DataFrame, random float arrays, and
arrays full of zeros (the most compressible thing a real file holds).

    python bench/run_expansion_ratios.py           # the table in bench/CONTAINERS.md
    python bench/run_expansion_ratios.py --quick   # small objects
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from safeload._formats import locate

JOBLIB = ["zlib", "gzip", "bz2", "lzma", "xz", "lz4"]
PANDAS = {"gz": "gzip", "bz2": "bz2", "xz": "xz", "zst": "zstd", "tar.gz": "tar", "tar.bz2": "tar",
          "tar.xz": "tar"}  # fmt: skip


def objects(quick: bool) -> dict[str, Any]:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    n = 2_000 if quick else 20_000
    x, y = make_classification(n_samples=n, n_features=20, random_state=0)
    rng = np.random.default_rng(0)
    zeros = 1 << (20 if quick else 24)  # float64 elements: 8 MiB or 128 MiB
    return {
        "random forest": RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y),
        "logistic regression": LogisticRegression(max_iter=500).fit(x, y),
        "mixed frame": pd.DataFrame(
            {
                "a": rng.normal(size=n),
                "b": rng.integers(0, 10, n),
                "c": [f"s{i % 97}" for i in range(n)],
            }
        ),
        "random floats": rng.normal(size=n * 20),
        f"zeros ({zeros * 8 >> 20} MiB)": np.zeros(zeros),
        f"zeros frame ({zeros * 8 >> 20} MiB)": pd.DataFrame({"z": np.zeros(zeros)}),
    }


def expanded(path: Path) -> tuple[int, float]:
    """Bytes the locator decompressed for the file, and the seconds it took."""
    data = path.read_bytes()
    start = time.perf_counter()
    with locate(data, str(path), max_expansion=1e12) as located:
        total = sum(len(b) for b in located.expanded.values())
    return total, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for label, obj in objects(args.quick).items():
            for comp in JOBLIB:
                if comp == "lz4" and importlib.util.find_spec("lz4") is None:
                    continue
                path = folder / f"obj.{comp}.joblib"
                joblib.dump(obj, path, compress=(comp, 3))
                rows.append(("joblib", comp, label, path))
            if isinstance(obj, pd.DataFrame | np.ndarray):
                for ext, comp in PANDAS.items():
                    if comp == "zstd" and importlib.util.find_spec("zstandard") is None:
                        continue
                    path = folder / f"obj.pkl.{ext}"
                    pd.to_pickle(obj, path)
                    rows.append(("pandas", ext, label, path))
            results = []
            for writer, comp, what, path in rows:
                size = path.stat().st_size
                out, seconds = expanded(path)
                results.append(
                    {
                        "writer": writer,
                        "compression": comp,
                        "object": what,
                        "file bytes": size,
                        "expanded bytes": out,
                        "ratio": round(out / size, 1),
                        "scan s": round(seconds, 3),
                    }
                )
            rows.clear()
            for r in results:
                print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
