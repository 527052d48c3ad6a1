"""Peak memory of `safeload scan` on a big compressed joblib dump, one compressor at a time.

Writes one float64 array (default 500 MiB) with `joblib.dump(compress=(kind, 3))` for
every compressor joblib has (lz4 when installed), then runs `safeload scan FILE` in a
fresh child process per file and reports its peak RSS (`ru_maxrss`, see `_measure`),
wall and CPU time and exit code. The array holds small integers as floats (a
quantized weight matrix), compressible enough that writing the lzma and xz dumps
takes minutes rather than tens of minutes.

    python bench/run_stream_memory.py              # the table in bench/CONTAINERS.md
    python bench/run_stream_memory.py --mib 64     # a quick run
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import run_child

COMPRESSORS = ["zlib", "gzip", "bz2", "lzma", "xz", "lz4"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=500, help="array size in MiB")
    parser.add_argument("--only", nargs="*", help="compressors to run (default: all)")
    args = parser.parse_args(argv)
    kinds = args.only or COMPRESSORS
    if "lz4" in kinds and importlib.util.find_spec("lz4") is None:
        kinds = [k for k in kinds if k != "lz4"]
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            path = Path(tmp) / f"array.{kind}.joblib"
            rng = np.random.default_rng(0)
            array = rng.integers(-128, 128, (args.mib << 20) // 8).astype(np.float64)
            start = time.perf_counter()
            joblib.dump(array, path, compress=(kind, 3))
            written = time.perf_counter() - start
            del array
            result = run_child([sys.executable, "-m", "safeload", "scan", str(path)], timeout=3600)
            verdict = result.stdout.strip().splitlines()[-1:] if result.stdout else []
            print(
                json.dumps(
                    {
                        "compressor": kind,
                        "array MiB": args.mib,
                        "file MiB": round(path.stat().st_size / (1 << 20), 1),
                        "dump s": round(written, 1),
                        "scan exit": result.returncode,
                        "scan s": round(result.seconds, 2),
                        "scan cpu s": round(result.cpu_seconds, 2),
                        "peak RSS MiB": round(result.peak_rss / (1 << 20), 1),
                        "verdict": verdict[0] if verdict else result.stderr.strip()[-200:],
                    }
                ),
                flush=True,
            )
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
