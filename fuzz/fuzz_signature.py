"""atheris harness for `fuzz_targets/signature.py` (what it checks is said there).

python fuzz/fuzz_signature.py CORPUS_DIR SEED_DIR -runs=N -max_total_time=S
"""

from __future__ import annotations

from _harness import instrumented, main

one = instrumented("signature")

if __name__ == "__main__":
    main(one)
