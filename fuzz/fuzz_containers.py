"""atheris harness for `fuzz_targets/containers.py` (what it checks is said there).

python fuzz/fuzz_containers.py CORPUS_DIR SEED_DIR -runs=N -max_total_time=S
"""

from __future__ import annotations

import atheris
from _harness import main

with atheris.instrument_imports(include=["safeload", "fuzz_targets"]):
    from fuzz_targets.containers import one

if __name__ == "__main__":
    main(one)
