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


def main(one: Callable[[bytes], None]) -> None:
    """Run `one` under libFuzzer (coverage-guided), arguments from the command line."""
    import atheris

    atheris.Setup(sys.argv, one)
    atheris.Fuzz()
