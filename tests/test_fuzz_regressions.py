"""Every input the fuzzers found a defect with goes through its fuzz target again.

tests/fuzz_regressions/<target>/<name> is replayed through
fuzz/fuzz_targets/<target>.py, whose `one` raises on the defect it checks
for (an exception other than the code's own error type, an internal-error
finding). Harness timeouts were 30 s or more; each input must now finish well
inside a generous bound.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASES_DIR = Path(__file__).resolve().parent / "fuzz_regressions"
IN_A_CHILD = {"load"}
"""Targets that run real loaders: replayed in a child process by their own test
(tests/test_fuzz_loader.py)."""
CASES = sorted(
    (folder.name, path)
    for folder in CASES_DIR.iterdir()
    if folder.is_dir() and folder.name not in IN_A_CHILD
    for path in folder.iterdir()
    if path.is_file()
)
BOUND = 10.0
"""Seconds one input may take (the timeouts it replaces took 30 s to 74 s)."""


def target(name: str) -> Any:
    fuzz = str(ROOT / "fuzz")
    if fuzz not in sys.path:
        sys.path.insert(0, fuzz)
    return importlib.import_module(f"fuzz_targets.{name}")


def test_every_folder_names_a_fuzz_target() -> None:
    for folder in CASES_DIR.iterdir():
        if folder.is_dir():
            assert (ROOT / "fuzz" / "fuzz_targets" / f"{folder.name}.py").is_file(), folder


def test_there_are_regressions() -> None:
    assert len(CASES) >= 5


@pytest.mark.parametrize(("name", "path"), CASES, ids=[f"{n}/{p.name}" for n, p in CASES])
def test_fuzz_regression(name: str, path: Path) -> None:
    one = target(name).one
    started = time.monotonic()
    one(path.read_bytes())
    assert time.monotonic() - started < BOUND
