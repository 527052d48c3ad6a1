"""`safeload scan` on huge sparse files: time and pages touched.

    python bench/run_huge_files.py                 # 20 GiB files
    python bench/run_huge_files.py --size-gib 2    # smaller, if the disk refuses sparse files

Each file is a few real bytes in front of a hole made with `truncate` (no disk space
used): all zeros, a pickle then zeros, a gzip stream then zeros, a zstd frame header
then zeros. Every scan runs in a fresh process (`safeload scan FILE`), measured by
`_measure.run_child`: wall and CPU time, and peak RSS, which for a memory-mapped file
is the pages the scan touched. A scan that read the whole file would touch its size.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any

from _measure import run_child

GIB = 1 << 30
MIB = 1 << 20

HEADS: dict[str, bytes] = {
    "zeros": b"",
    "pickle + zeros": pickle.dumps({"a": [1, 2, 3]}, protocol=4),
    "gzip + zeros": gzip.compress(pickle.dumps({"a": [1, 2, 3]}, protocol=4)),
    "zstd header + zeros": b"\x28\xb5\x2f\xfd",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size-gib", type=float, default=20.0, help="file size (default 20 GiB)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per scan")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    p.add_argument("--workdir", type=Path, help="where the sparse files go (default: a temp dir)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    size = int(opts.size_gib * GIB)
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=opts.workdir) as tmp:
        for name, head in HEADS.items():
            path = Path(tmp) / "huge.bin"
            with open(path, "wb") as handle:
                handle.write(head)
                handle.truncate(size)
            on_disk = os.stat(path).st_blocks * 512
            if on_disk > 64 * MIB:
                print("this filesystem does not keep files sparse; use --workdir", file=sys.stderr)
                return 2
            result = run_child(
                [sys.executable, "-m", "safeload", "scan", str(path)], timeout=opts.timeout
            )
            first = result.stdout.splitlines()[0] if result.stdout else result.stderr[:200]
            rows[name] = {
                "status": result.status,
                "seconds": result.seconds,
                "cpu_seconds": result.cpu_seconds,
                "peak_rss": result.peak_rss,
                "verdict": first.split(": ", 1)[-1],
            }
            path.unlink()
    print(f"`safeload scan` of {opts.size_gib:g} GiB sparse files\n")
    print("| file | wall | CPU | peak RSS | verdict |")
    print("|---|---:|---:|---:|---|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['seconds']:.2f} s | {row['cpu_seconds']:.2f} s | "
            f"{row['peak_rss'] / MIB:.0f} MiB | {row['verdict']} |"
        )
    if opts.json is not None:
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        report = {"size_bytes": size, "files": rows}
        opts.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
