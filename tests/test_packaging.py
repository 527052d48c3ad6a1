"""The wheel ships the rules as the `safeload.rules` package, and it works installed."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        timeout=600,
    )
    (built,) = out.glob("safeload-*.whl")
    return built


def test_wheel_contains_rules_and_every_allow_pack(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "safeload/rules/rules.toml" in names
    packs = {p.name for p in (ROOT / "rules" / "allow").glob("*.toml")}
    assert packs
    for pack in packs:
        assert f"safeload/rules/allow/{pack}" in names
    assert "safeload/py.typed" in names
    # Every module of the source tree is shipped (the package list is explicit).
    for source in (ROOT / "safeload").rglob("*.py"):
        rel = source.relative_to(ROOT).as_posix()
        assert rel in names, f"{rel} is missing from the wheel: add its package to pyproject.toml"


def test_installed_wheel_loads_its_policy(wheel: Path, tmp_path: Path) -> None:
    # Unpacked wheel on sys.path, outside the checkout: importlib.resources
    # must find the rules inside the package.
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = (
        f"import sys; sys.path.insert(0, {str(target)!r}); "
        "import safeload, safeload.policy as p; "
        f"assert safeload.__file__.startswith({str(target)!r}), safeload.__file__; "
        "pol = p.Policy.default(); "
        "print(len(pol.rules), len(pol.allowed))"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    n_rules, n_allowed = map(int, res.stdout.split())
    assert n_rules >= 20 and n_allowed > 0
