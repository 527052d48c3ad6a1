"""The package layout: scan, sign and load are rooms over shared pieces, imports point down."""

from __future__ import annotations

import ast
from pathlib import Path

import safeload

PACKAGE = Path(safeload.__file__).parent

#: What each part of the package may import (besides itself). Everything not
#: listed is below it; the CLI alone sees everything.
ALLOWED: dict[str, frozenset[str]] = {
    "_cli": frozenset(
        {
            "",
            "scan",
            "sign",
            "load",
            "_checks",
            "_formats",
            "_machine",
            "policy",
            "report",
            "errors",
            "_names",
        }
    ),
    "load": frozenset(
        {"scan", "sign", "_checks", "_formats", "_machine", "policy", "report", "errors", "_names"}
    ),
    "scan": frozenset({"_checks", "_formats", "_machine", "policy", "report", "errors", "_names"}),
    "sign": frozenset({"errors"}),
    "_checks": frozenset({"_machine", "_names", "errors"}),
    "_formats": frozenset({"_machine", "_names", "errors"}),
    "_machine": frozenset({"_names"}),
    "policy": frozenset({"_checks", "_names", "errors", "report"}),
    "report": frozenset(),
    "errors": frozenset({"report"}),  # UnsafeFileError carries findings
    "_names": frozenset(),
    "__main__": frozenset({"_cli"}),
}


def part_of(module: str) -> str:
    """`safeload.scan._judge` -> `scan`; `safeload` itself -> ``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, tuple[str, bool]]:
    """`{module name: (source, is a package)}` for every module of the package."""
    return {
        module_name(p): (p.read_text(encoding="utf-8"), p.name == "__init__.py")
        for p in sorted(PACKAGE.rglob("*.py"))
    }


def imports_of(name: str, source: str, is_package: bool) -> set[str]:
    """Every safeload module imported anywhere in the source (lazy imports included)."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "safeload")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] != "safeload":
                continue
            if node.module is None or target == "safeload":
                # `from . import x` / `from .. import x`: x may be a submodule.
                found.update(f"{target}.{a.name}" for a in node.names)
            else:
                found.add(target)
    return found


def violations(modules: dict[str, tuple[str, bool]]) -> list[str]:
    bad = []
    for name, (source, is_package) in modules.items():
        here = part_of(name)
        if here == "":
            continue  # the package root re-exports the public API
        for target in sorted(imports_of(name, source, is_package)):
            there = part_of(target)
            if there in ("__version__", ""):
                there = ""
            if there == here:
                continue
            if there not in ALLOWED[here]:
                bad.append(f"{name} imports {target}")
    return bad


def test_every_part_is_in_the_table() -> None:
    assert {part_of(name) for name in sources()} - {""} == set(ALLOWED)


def test_imports_point_down_only() -> None:
    assert violations(sources()) == []


def test_the_checker_sees_upward_imports() -> None:
    # The check must be able to fail: the locator judging names, signing scanning.
    modules = sources()
    modules["safeload._formats.probe"] = ("from ..policy import Policy\n", False)
    modules["safeload.sign.probe"] = ("def f():\n    from ..scan import scan\n", False)
    modules["safeload.scan.probe"] = ("from safeload.load import dump\n", False)
    assert violations(modules) == [
        "safeload._formats.probe imports safeload.policy",
        "safeload.sign.probe imports safeload.scan",
        "safeload.scan.probe imports safeload.load",
    ]
