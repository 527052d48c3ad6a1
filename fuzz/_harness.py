"""What every harness shares: atheris start-up and the repository on `sys.path`.

A harness module defines `one(data: bytes) -> None` that raises only when it
found a defect; `main(one)` hands it to libFuzzer with the command line.
Run a harness directly (`python fuzz/fuzz_scan.py CORPUS_DIR -runs=N`); see
fuzz/README.md.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def instrumented(target: str) -> Callable[[bytes], None]:
    """`fuzz_targets.<target>.one`, with every module of safeload instrumented.

    safeload imports most of itself on first use (`safeload.loads`, the scan's
    checks, the readers of each format), and atheris only instruments a module
    imported inside `instrument_imports`: a module first imported later gives
    libFuzzer no coverage to steer by. The loader harness ran that way, blind
    (64-78 edges, against about 3,000 for the scan), until every module was
    imported here first.
    """
    import importlib
    import pkgutil

    import atheris

    with atheris.instrument_imports(include=["safeload", "fuzz_targets"]):
        import safeload

        for info in pkgutil.walk_packages(safeload.__path__, "safeload."):
            if info.name.endswith(".__main__"):
                continue  # importing it runs the command line
            try:
                importlib.import_module(info.name)
            except ImportError:
                pass  # a module of an extra that is not installed (dask, fsspec, sigstore)
        module = importlib.import_module(f"fuzz_targets.{target}")
    one: Callable[[bytes], None] = module.one
    return one


def main(one: Callable[[bytes], None]) -> None:
    """Run `one` under libFuzzer (coverage-guided), arguments from the command line."""
    import atheris

    atheris.Setup(sys.argv, one)
    atheris.Fuzz()
