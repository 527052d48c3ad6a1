"""`safeload scan` starts light: no signing, no loader, no ML library, no TOML parsing.

Speed itself is measured by bench/run_startup.py; here only what decides it is
checked: which modules a scan imports, and that the built-in rules and packs come
from rules/parsed.json exactly as tomllib would parse them.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import safeload
from safeload import policy
from tools import compile_rules

ROOT = Path(__file__).resolve().parent.parent

HEAVY = ("cryptography", "safeload.sign", "safeload.load", "numpy", "torch", "pandas", "sklearn")

_MODULES_AT_EXIT = """
import json, runpy, sys
sys.argv = ["safeload", *sys.argv[1:]]
code = 0
try:
    runpy.run_module("safeload", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def _modules_after(*args: str, cwd: Path) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", _MODULES_AT_EXIT, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )
    last = done.stderr.strip().splitlines()[-1]
    result = json.loads(last)
    return result["code"], result["modules"]


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


@pytest.mark.parametrize(
    "obj", [{"a": 1, "b": [1.5, "x"]}, __import__("collections").OrderedDict(a=1)]
)
def test_scan_imports_nothing_heavy(tmp_path: Path, obj: object) -> None:
    tiny = tmp_path / "tiny.pkl"
    tiny.write_bytes(pickle.dumps(obj, protocol=4))
    code, modules = _modules_after("scan", str(tiny), cwd=tmp_path)
    assert code == 0
    assert "safeload.scan._core" in modules  # the wrapper saw a real scan
    assert _heavy(modules) == []
    # The built-in policy came from rules/parsed.json: no TOML was parsed.
    assert "tomllib" not in modules
    # One file is scanned in this process: the worker pool is never imported.
    assert "multiprocessing" not in modules


def test_the_check_sees_heavy_imports(tmp_path: Path) -> None:
    """The wrapper can fail: `verify` imports signing (and cryptography)."""
    code, modules = _modules_after("verify", str(tmp_path / "none.pkl"), cwd=tmp_path)
    assert code != 0
    assert "cryptography" in _heavy(modules) and "safeload.sign" in _heavy(modules)


def test_public_names_resolve_and_keep_their_meaning() -> None:
    """The lazy package root hands out the same objects, and `scan`, `load` and `sign`
    stay the functions after their subpackages are imported (a fresh process)."""
    code = (
        "import safeload, safeload.load._torch, safeload.sign._keys, safeload.scan._batch\n"
        "import inspect\n"
        "assert all(getattr(safeload, n) is not None for n in safeload.__all__)\n"
        "for n in ('scan', 'load', 'sign'):\n"
        "    assert inspect.isfunction(getattr(safeload, n)), n\n"
        "from safeload.load import load\n"
        "from safeload.sign import sign\n"
        "from safeload.scan import scan\n"
        "assert safeload.load is load and safeload.sign is sign and safeload.scan is scan\n"
        "assert set(safeload.__all__) <= set(dir(safeload))\n"
        "assert safeload.policy.Policy is safeload.Policy\n"  # submodules as attributes
        "assert safeload.report.Verdict and safeload._formats.locate\n"
        "assert not hasattr(safeload, 'no_such_module')\n"
        "print(safeload.scan(b'\\x80\\x04K\\x01.').files[0].verdict.value)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "safe"
    with pytest.raises(AttributeError):
        _ = safeload.no_such_name


def test_parsed_rules_are_up_to_date() -> None:
    """rules/parsed.json is what tools/compile_rules.py writes from the TOML files now."""
    shipped = (ROOT / "rules" / "parsed.json").read_text(encoding="utf-8").strip()
    assert shipped == compile_rules.text(), (
        "rules/parsed.json is out of date: run python tools/compile_rules.py"
    )


def test_parsed_rules_give_the_same_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy, "_builtin_rules_cache", None)
    monkeypatch.setattr(policy, "_builtin_packs_cache", None)
    monkeypatch.setattr(policy, "_parsed", None)
    fast = (policy.builtin_rules(), policy.builtin_packs())
    assert policy._parsed == {}  # every entry was used
    monkeypatch.setattr(policy, "_builtin_rules_cache", None)
    monkeypatch.setattr(policy, "_builtin_packs_cache", None)
    slow = (policy.builtin_rules(), policy.builtin_packs())  # nothing left: tomllib
    assert fast == slow


def test_other_bytes_are_parsed_from_the_toml(monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry is used only for the bytes it was made from: an edited file is parsed."""
    monkeypatch.setattr(policy, "_parsed", None)
    raw = (ROOT / "rules" / "allow" / "xgboost.toml").read_bytes()
    edited = raw.replace(b'name = "xgboost"', b'name = "xgboost-edited"')
    assert edited != raw
    assert policy._precompiled(edited) is None
    (pack,) = [policy.parse_pack(edited, "edited.toml")]
    assert pack.name == "xgboost-edited"
    assert policy._precompiled(raw) is not None  # the shipped bytes are found, once
    assert policy._precompiled(raw) is None


def test_startup_bench_runs_and_reports(tmp_path: Path) -> None:
    """bench/run_startup.py runs and reports (no timing is asserted)."""
    out = tmp_path / "startup.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run_startup.py"),
            "--repeat",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    assert set(report["commands"]) == {
        "python -c pass",
        "safeload scan tiny.pkl",
        "safeload scan ordered.pkl",
    }
    assert all(row["cpu_seconds"] > 0 for row in report["commands"].values())
    assert report["heavy_imported"] == []
    assert report["import_time"]["modules"] > 0
    assert "| `safeload scan tiny.pkl` |" in done.stdout
