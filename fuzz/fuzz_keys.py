"""atheris harness for `fuzz_targets/keys.py` (what it checks is said there).

python fuzz/fuzz_keys.py CORPUS_DIR SEED_DIR -runs=N -max_total_time=S
"""

from __future__ import annotations

from _harness import instrumented, main

one = instrumented("keys")

if __name__ == "__main__":
    main(one)
