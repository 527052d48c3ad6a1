"""Line coverage of safeload/ reached by each harness's corpus (coverage.py).

    python fuzz/coverage_report.py [HARNESS ...]     (default: all)

Runs each target once over fuzz/seeds/<harness>/ and fuzz/corpus/<harness>/
(what `long_run.py` grew) under coverage.py, measuring the `safeload`
package only, and prints one JSON line per harness and one for their union:
inputs, lines covered, lines in safeload/, percent. The `load` target runs the
plain loaders on the files safeload accepts: run it in a scratch directory.
`import` measures what importing safeload alone runs (every harness's floor).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import warnings
from pathlib import Path

import coverage
from _harness import ROOT

HERE = Path(__file__).resolve().parent
HARNESSES = ("scan", "containers", "signature", "keys", "load")


def _inputs(name: str) -> list[Path]:
    files: list[Path] = []
    for kind in ("seeds", "corpus"):
        folder = HERE / kind / f"fuzz_{name}"
        if folder.is_dir():
            files += sorted(p for p in folder.iterdir() if p.is_file())
    return files


def measure(name: str) -> tuple[dict[str, set[int]], int, int]:
    """Executed lines per file, inputs run, inputs that raised (defects)."""
    cov = coverage.Coverage(source=["safeload"], data_file=None, branch=False)
    cov.start()
    try:
        failed = 0
        if name == "import":  # the baseline: what importing safeload runs
            importlib.import_module("safeload")
            inputs = []
        else:
            one = importlib.import_module(f"fuzz_targets.{name}").one
            inputs = _inputs(name)
        for path in inputs:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    one(path.read_bytes())
            except Exception:
                failed += 1
    finally:
        cov.stop()
    data = cov.get_data()
    lines = {f: set(data.lines(f) or ()) for f in data.measured_files()}
    return lines, len(inputs), failed


def statements() -> dict[str, set[int]]:
    """Every executable line of safeload/ (coverage.py's own count)."""
    cov = coverage.Coverage(source=["safeload"], data_file=None)
    out = {}
    for path in sorted((ROOT / "safeload").rglob("*.py")):
        _, executable, _, _, _ = cov.analysis2(str(path))
        out[str(path)] = set(executable)
    return out


def _child(name: str) -> None:
    """Measure one harness in this (fresh) process; print its lines as JSON."""
    sys.path.insert(0, str(HERE))
    lines, inputs, failed = measure(name)
    print(
        json.dumps(
            {
                "inputs": inputs,
                "raised": failed,
                "lines": {str(Path(f).resolve()): sorted(v) for f, v in lines.items()},
            }
        )
    )


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        _child(argv[1])
        return 0
    names = argv or list(HARNESSES)
    total = statements()
    all_lines = sum(len(v) for v in total.values())
    union: dict[str, set[int]] = {}
    for name in names:
        # A fresh interpreter per harness: the lines that run when safeload is
        # imported count for each, not only for the first.
        done = subprocess.run(
            [sys.executable, __file__, "--child", name], capture_output=True, check=True
        )
        result = json.loads(done.stdout.decode().strip().splitlines()[-1])
        covered = 0
        for path, executed in result["lines"].items():
            hit = set(executed) & total.get(path, set())
            covered += len(hit)
            union.setdefault(path, set()).update(hit)
        print(
            json.dumps(
                {
                    "harness": name,
                    "inputs": result["inputs"],
                    "raised": result["raised"],
                    "lines": covered,
                    "of": all_lines,
                    "percent": round(100 * covered / all_lines, 1),
                }
            ),
            flush=True,
        )
    covered = sum(len(v) for v in union.values())
    print(
        json.dumps(
            {
                "harness": "+".join(names),
                "lines": covered,
                "of": all_lines,
                "percent": round(100 * covered / all_lines, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
