"""atheris harness for `fuzz_targets/load.py` (what it checks is said there).

    python fuzz/fuzz_load.py CORPUS_DIR SEED_DIR -runs=N -max_total_time=S

Run it in a scratch directory: the plain loaders run on every file safeload
accepted.
"""

from __future__ import annotations

import joblib  # noqa: F401 - the plain loaders, imported once and not instrumented
import numpy  # noqa: F401
import torch  # noqa: F401
from _harness import instrumented, main

one = instrumented("load")

if __name__ == "__main__":
    main(one)
