"""atheris harness for `fuzz_targets/scan.py` (what it checks is said there).

python fuzz/fuzz_scan.py CORPUS_DIR SEED_DIR -runs=N -max_total_time=S
"""

from __future__ import annotations

from _harness import instrumented, main

one = instrumented("scan")

if __name__ == "__main__":
    main(one)
