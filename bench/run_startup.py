"""Start-up of `safeload scan` on a tiny file, side by side with `python -c pass`.

    python bench/run_startup.py                 # best of 15, interleaved
    python bench/run_startup.py --repeat 3      # a smoke run

A pre-commit hook runs `safeload scan` once per batch of files, so its fixed cost is
what a commit waits for. Three measurements, each in fresh processes:

* wall and CPU time (best of K, interleaved) of `python -c pass`, of
  `python -m safeload scan tiny.pkl` for a pickle of a dict (no global, no allow pack
  consulted) and for a pickle of an `OrderedDict` (a global judged by the allow packs);
  the difference to `python -c pass` is what safeload adds;
* the modules the scan imported, from `sys.modules` at exit: none of the heavy ones
  (`cryptography`, safeload's signing and loading, numpy, torch, pandas, scikit-learn)
  may be among them;
* `python -X importtime`: safeload's own import time and the slowest modules it pulls in.

Machines are noisy, more so when shared: read the differences and the best runs.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _measure import run_child

HEAVY = ("cryptography", "safeload.sign", "safeload.load", "numpy", "torch", "pandas", "sklearn")
"""Modules (and their submodules) a scan must not import."""

TARGET_SECONDS = 0.1
"""The issue's bound on what `safeload scan` adds to a tiny file's run."""

_MODULES = (
    "import runpy, sys\n"
    "sys.argv = ['safeload', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('safeload', run_name='__main__', alter_sys=True)\n"
    "except SystemExit:\n"
    "    pass\n"
    "sys.stderr.write('\\nMODULES ' + ' '.join(sorted(sys.modules)) + '\\n')\n"
)
"""`python -m safeload ARGS`, then the names in `sys.modules` on stderr."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeat", type=int, default=15, help="best of K runs, interleaved")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    return p.parse_args(argv)


def imported(args: list[str]) -> list[str]:
    """The modules `python -m safeload ARGS` has in `sys.modules` when it exits."""
    done = subprocess.run(
        [sys.executable, "-c", _MODULES, *args], capture_output=True, text=True, check=False
    )
    line = next(x for x in done.stderr.splitlines() if x.startswith("MODULES "))
    return line.split()[1:]


def heavy(modules: list[str]) -> list[str]:
    """The modules of `HEAVY` (or below them) among `modules`."""
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


def import_times(args: list[str], top: int = 8) -> dict[str, Any]:
    """`-X importtime`: safeload's own cumulative import time and the slowest imports."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "safeload", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, self_us, cumulative_us, name = (x.strip() for x in line.replace("|", ":").split(":"))
        rows.append((name, int(self_us), int(cumulative_us)))
    own = sum(c for name, _s, c in rows if name in ("safeload", "safeload._cli"))
    slowest = sorted(rows, key=lambda r: -r[1])[:top]
    return {
        "safeload_seconds": own / 1e6,
        "modules": len(rows),
        "slowest_self": [{"module": n, "seconds": s / 1e6} for n, s, _c in slowest],
    }


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "tiny.pkl"
        plain.write_bytes(pickle.dumps({"a": 1, "b": [1.5, "x"]}, protocol=4))
        ordered = Path(tmp) / "ordered.pkl"
        ordered.write_bytes(pickle.dumps(collections.OrderedDict(a=1), protocol=4))
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "safeload scan tiny.pkl": [sys.executable, "-m", "safeload", "scan", str(plain)],
            "safeload scan ordered.pkl": [sys.executable, "-m", "safeload", "scan", str(ordered)],
        }
        # As an installed package starts: from bytecode. A source checkout run with
        # PYTHONDONTWRITEBYTECODE would compile every edited module in every run.
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        for cmd in commands.values():
            run_child(cmd, timeout=60)  # warm-up: writes the bytecode, fills the page cache
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(opts.repeat):
            for name, cmd in commands.items():
                result = run_child(cmd, timeout=60)
                if result.status != "ok":
                    print(f"{name}: {result.status}\n{result.stderr}", file=sys.stderr)
                    return 2
                runs[name].append((result.seconds, result.cpu_seconds))
        modules = imported(["scan", str(plain)])
        times = import_times(["scan", str(plain)])
    best = {name: (min(w for w, _ in r), min(c for _, c in r)) for name, r in runs.items()}
    base_wall, base_cpu = best["python -c pass"]
    report: dict[str, Any] = {
        "python": sys.version.split()[0],
        "repeat": opts.repeat,
        "commands": {
            name: {
                "wall_seconds": wall,
                "cpu_seconds": cpu,
                "added_wall_seconds": wall - base_wall,
                "added_cpu_seconds": cpu - base_cpu,
            }
            for name, (wall, cpu) in best.items()
        },
        "modules_imported": len(modules),
        "heavy_imported": heavy(modules),
        "import_time": times,
        "target_seconds": TARGET_SECONDS,
    }
    print(f"Start-up, best of {opts.repeat} (Python {report['python']})\n")
    print("| command | wall | CPU | added wall | added CPU |")
    print("|---|---:|---:|---:|---:|")
    for name, row in report["commands"].items():
        print(
            f"| `{name}` | {row['wall_seconds'] * 1000:.0f} ms | {row['cpu_seconds'] * 1000:.0f} ms"
            f" | {row['added_wall_seconds'] * 1000:+.0f} ms"
            f" | {row['added_cpu_seconds'] * 1000:+.0f} ms |"
        )
    print(
        f"\nsafeload scan imports {len(modules)} modules; heavy ones: "
        f"{', '.join(report['heavy_imported']) or 'none'}"
    )
    print(f"safeload's own import time: {times['safeload_seconds'] * 1000:.0f} ms; slowest:")
    for row in times["slowest_self"]:
        print(f"  {row['module']}: {row['seconds'] * 1000:.1f} ms")
    if opts.json is not None:
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        opts.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
