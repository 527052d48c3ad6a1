"""The atheris harnesses instrument the code they fuzz.

atheris only instruments a module imported inside `instrument_imports`, and
safeload imports most of itself on first use: `safeload.loads` imports the
loader when first called. The loader harness imported only `safeload` and
`safeload.errors` inside the context, so libFuzzer saw none of the loader's
branches (64-78 edges where the scan harness saw about 3,000) and mutated
blind. These tests run each harness's import under a stand-in `atheris` that
records what was imported inside `instrument_imports` (atheris itself is not
a test dependency).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

_RECORD = textwrap.dedent(
    """
    import contextlib, json, sys, types

    inside = []

    @contextlib.contextmanager
    def instrument_imports(include=()):
        before = set(sys.modules)
        yield
        inside.extend(sorted(set(sys.modules) - before))

    sys.modules["atheris"] = types.SimpleNamespace(instrument_imports=instrument_imports)
    sys.path.insert(0, sys.argv[1])
    sys.argv = [sys.argv[2]]
    import runpy
    runpy.run_path(sys.argv[0], run_name="harness")
    print(json.dumps(inside))
    """
)

# The modules each target's code runs, which must be instrumented.
NEEDED = {
    "scan": ["safeload.scan._core", "safeload._machine.walker", "safeload._formats.containers"],
    "containers": ["safeload._formats.zipread", "safeload._formats.compress"],
    "signature": ["safeload.sign._dsse", "safeload.sign._statement"],
    "keys": ["safeload.sign._keys"],
    "load": [
        "safeload.load._guarded",
        "safeload.load._unpickler",
        "safeload.load._numpy",
        "safeload.load._torch",
        "safeload._machine.walker",
        "safeload.policy",
    ],
}


@pytest.mark.parametrize("harness", sorted(NEEDED))
def test_harness_instruments_the_modules_its_target_runs(harness: str, tmp_path: Path) -> None:
    if harness == "load":
        pytest.importorskip("torch")
    script = tmp_path / "record.py"
    script.write_text(_RECORD)
    fuzz = ROOT / "fuzz"
    done = subprocess.run(
        [sys.executable, str(script), str(fuzz), str(fuzz / f"fuzz_{harness}.py")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    inside = set(json.loads(done.stdout.strip().splitlines()[-1]))
    missing = [name for name in NEEDED[harness] if name not in inside]
    assert not missing, f"fuzz_{harness}.py leaves these uninstrumented: {missing}"
