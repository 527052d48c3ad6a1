"""Stand-ins for scan_many's worker task, for tests/test_dask_scan.py.

Submitted by reference, so each Dask worker imports this module: it imports
nothing heavy (the test module would bring scikit-learn and dask's test
fixtures into every worker).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from safeload.scan import _dask


def killing_scan_batch(sources: list[str], run: str, max_opcodes: int) -> Any:
    """Stands in for the worker task: the file named `poison` kills its worker.

    Not at once: a worker that dies while its nanny is still starting it is
    never restarted, and this test is about files, not about nannies.
    """
    if any(Path(s).name == "poison.pkl" for s in sources):
        time.sleep(1.5)
        os._exit(1)
    return _dask._scan_batch(sources, run, max_opcodes)


def raising_scan_batch(sources: list[str], run: str, max_opcodes: int) -> Any:
    """Stands in for the worker task: a task holding `planted.pkl` raises."""
    if any(Path(s).name == "planted.pkl" for s in sources):
        raise RuntimeError("planted failure")
    return _dask._scan_batch(sources, run, max_opcodes)
