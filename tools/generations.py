"""Library generations: what older releases of the libraries pickle.

    python -m tools.generations names [GEN ...]     # refresh tools/generation_names/GEN.json
    python -m tools.generations fixtures [GEN ...]  # refresh tests/fixtures/generations/GEN/
                                                    # (`current`, `torch`: made with this venv)
    python -m tools.generations fixtures --boosting [GEN ...]
                                                    # only their xgboost/lightgbm files
    python -m tools.generations share [GEN ...] [--packs DIR]
                                                    # share of fixture files scanned safe

Real users load models saved months or years ago, so the allow packs are
generated from several generations of the libraries, not only the pinned
ones. Each generation below is a set of releases that were current together,
installed from PyPI into a virtualenv of its own (created here, outside the
repository, under the user cache directory, with a Python those wheels
exist for).

`names` runs tools/generation_enumerate.py with that virtualenv's Python: it
builds the objects listed in its docstring with the old libraries and writes
their pickles (every protocol) and joblib files. Those bytes are then walked
here with safeload's own walker, exactly as tools/gen_allow_packs.py walks
today's corpus: no name is imported or unpickled to be discovered. The result,
every global with its effective uses, call shapes and a few of the objects
that hold it, is committed as tools/generation_names/GEN.json, so the pack
generator (and its regeneration test) can merge the generations without the
virtualenvs.

`fixtures` runs tools/make_generation_fixtures.py with each virtualenv to save
the cross-release fixture corpus under tests/fixtures/generations/GEN/ (other
objects, data and writers than the enumeration: see that script).

The current generation is the development venv itself (the pinned releases):
tools/gen_allow_packs.py walks its corpus (tools/corpus.py) live, and `names
current` records the same enumeration as the older generations get, with this
venv's Python, as tools/generation_names/current.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `tools` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
NAMES = REPO / "tools" / "generation_names"
FIXTURES = REPO / "tests" / "fixtures" / "generations"
ENUMERATE = REPO / "tools" / "generation_enumerate.py"
MAKE_FIXTURES = REPO / "tools" / "make_generation_fixtures.py"
#: Labels of the objects kept per name in the JSON files (enough to find them).
MAX_LABELS = 3


@dataclass(frozen=True)
class Generation:
    """Releases that were current together, and a Python their wheels exist for."""

    name: str
    python: str
    pins: tuple[str, ...]

    def venv(self) -> Path:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return base / "safeload-generations" / self.name


GENERATIONS = (
    Generation(
        "2022",
        "3.9",
        (
            "numpy==1.21.6",
            "scipy==1.7.3",
            "pandas==1.3.5",
            "scikit-learn==1.0.2",
            "joblib==1.1.1",
            "xgboost==1.6.2",
            "lightgbm==3.3.2",
            "python-dateutil==2.8.2",
            "pytz==2022.1",
        ),
    ),
    Generation(
        "2023",
        "3.10",
        (
            "numpy==1.24.4",
            "scipy==1.10.1",
            "pandas==2.0.3",
            "scikit-learn==1.3.2",
            "joblib==1.3.2",
            "xgboost==1.7.6",
            "lightgbm==4.1.0",
            "python-dateutil==2.8.2",
            "pytz==2023.3",
        ),
    ),
    Generation(
        "2024",
        "3.12",
        (
            "numpy==2.0.2",
            "scipy==1.14.1",
            "pandas==2.2.3",
            "scikit-learn==1.5.2",
            "joblib==1.4.2",
            "xgboost==2.1.3",
            "lightgbm==4.5.0",
            "python-dateutil==2.9.0.post0",
            "pytz==2024.2",
        ),
    ),
)
BY_NAME = {g.name: g for g in GENERATIONS}


def _python(version: str) -> str:
    """An interpreter of `version` (pythonX.Y on PATH, or pyenv's)."""
    found = shutil.which(f"python{version}")
    if found is None:
        raise SystemExit(f"python{version} is not installed (pyenv install {version})")
    return found


def ensure_venv(gen: Generation) -> Path:
    """The generation's virtualenv, created and filled with its pins if needed;
    returns its Python."""
    venv = gen.venv()
    python = venv / "bin" / "python"
    marker = venv / ".pins"
    wanted = " ".join(gen.pins)
    if python.exists() and marker.exists() and marker.read_text().strip() == wanted:
        return python
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([_python(gen.python), "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--only-binary", ":all:", *gen.pins],
        check=True,
    )
    marker.write_text(wanted + "\n")
    return python


def _run(python: Path, script: Path, out: Path, *flags: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    # run outside the checkout so that the venv never imports the repo's packages
    command = [str(python), str(script), *flags, str(out)]
    subprocess.run(command, check=True, env=env, cwd=out.parent)


# -- names -------------------------------------------------------------------------


def walk_dump(folder: Path) -> dict[str, object]:
    """The names record of one enumeration output folder (see `names`)."""
    from tools.gen_allow_packs import Seen, walked

    manifest = json.loads((folder / "manifest.json").read_text())
    seen: dict[str, Seen] = {}
    refused: dict[str, str] = {}
    for rel in manifest["files"]:
        label = rel.rsplit(".", 1)[0]
        try:
            found = walked((folder / rel).read_bytes(), rel)
        except SystemExit as exc:  # the walker reports events: recorded, not merged
            refused[rel] = str(exc)[:300]
            continue
        for name, what in found.items():
            what.labels.add(label)
            seen.setdefault(name, Seen()).merge(what)
    names = {
        name: {
            "uses": sorted(what.uses),
            "shapes": sorted(what.shapes),
            "objects": sorted(what.labels)[:MAX_LABELS],
        }
        for name, what in sorted(seen.items())
    }
    return {
        "releases": manifest["releases"],
        "names": names,
        "not_built": manifest["skipped"],
        "walk_refused": refused,
    }


def current_pins() -> tuple[str, ...]:
    """This venv's releases of the enumerated libraries, as pins."""
    from tools.gen_allow_packs import versions

    found = versions()
    packages = [p.split("==")[0] for p in GENERATIONS[0].pins]
    return tuple(f"{p}=={found[p]}" for p in packages if p in found)


def refresh_names(gen: Generation | None) -> Path:
    """Enumerate one generation (None: this venv's, today's pinned releases)."""
    python = Path(sys.executable) if gen is None else ensure_venv(gen)
    name, pins = ("current", current_pins()) if gen is None else (gen.name, gen.pins)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "dump"
        _run(python, ENUMERATE, out)
        record = {"generation": name, "pins": list(pins), **walk_dump(out)}
    NAMES.mkdir(parents=True, exist_ok=True)
    path = NAMES / f"{name}.json"
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def load_names(path: Path) -> dict[str, object]:
    """One committed generation record (tools/generation_names/GEN.json)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not {"generation", "releases", "names"} <= set(data):
        raise SystemExit(f"{path.name}: not a generation record")
    return data


def recorded() -> list[dict[str, object]]:
    """Every committed generation record, oldest first."""
    return [load_names(p) for p in sorted(NAMES.glob("*.json"))]


# -- fixtures ----------------------------------------------------------------------


#: Fixture sets made with this (the development) venv: today's pinned releases,
#: and torch checkpoints (torch 2.13 is the only torch release installable here).
LOCAL_FIXTURES = {"current": [], "torch": ["--torch"]}


def refresh_local_fixtures(name: str) -> Path:
    """tests/fixtures/generations/NAME made with this venv's releases."""
    target = FIXTURES / name
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / name
        out.mkdir()
        command = [sys.executable, str(MAKE_FIXTURES), *LOCAL_FIXTURES[name], str(out)]
        subprocess.run(command, check=True, cwd=tmp)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(out, target)
    return target


def refresh_fixtures(gen: Generation) -> Path:
    python = ensure_venv(gen)
    target = FIXTURES / gen.name
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / gen.name
        _run(python, MAKE_FIXTURES, out)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(out, target)
    return target


def refresh_boosting(name: str) -> Path:
    """Only the xgboost and lightgbm files (boosting/) of one generation's fixtures,
    made with its releases (this venv's for `current`); its other files stay."""
    python = Path(sys.executable) if name in LOCAL_FIXTURES else ensure_venv(BY_NAME[name])
    target = FIXTURES / name
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / name
        shutil.copytree(target, out)
        if (out / "boosting").exists():
            shutil.rmtree(out / "boosting")
        _run(python, MAKE_FIXTURES, out, "--boosting")
        if (target / "boosting").exists():
            shutil.rmtree(target / "boosting")
        shutil.copytree(out / "boosting", target / "boosting")
        shutil.copy(out / "index.json", target / "index.json")
    return target / "boosting"


# -- shares ------------------------------------------------------------------------


def fixture_files(gen: str) -> list[Path]:
    """The fixture files of one generation (every file but its index)."""
    folder = FIXTURES / gen
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "index.json")


def packs_policy(folder: Path) -> object:
    """The default rules with the allow packs of `folder` (e.g. the packs of an
    earlier commit, to measure a share before a pack change)."""
    from safeload.policy import Policy, builtin_rules, parse_pack

    packs = [parse_pack(p.read_bytes(), p.name) for p in sorted(folder.glob("*.toml"))]
    return Policy(builtin_rules(), packs)


def share(gen: str, packs: Path | None = None) -> tuple[int, int, dict[str, list[str]]]:
    """(files scanned safe, files, not-safe file -> what its findings name);
    `packs`: a folder of allow packs to scan with instead of the built-in ones."""
    import safeload
    from safeload.policy import Policy

    policy = packs_policy(packs) if packs is not None else None
    assert policy is None or isinstance(policy, Policy)
    safe, misses = 0, {}
    files = fixture_files(gen)
    for path in files:
        report = safeload.scan_file(path, policy)
        if report.verdict is safeload.Verdict.SAFE:
            safe += 1
            continue
        misses[str(path.relative_to(FIXTURES / gen))] = sorted(
            {f"{f.rule} {f.global_name or f.rule_name}" for f in report.findings if f.verdict}
        )
    return safe, len(files), misses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("names", "fixtures", "share"))
    parser.add_argument("generations", nargs="*", help="default: all of them")
    parser.add_argument(
        "--packs", type=Path, help="share: scan with the allow packs of this folder instead"
    )
    parser.add_argument(
        "--boosting",
        action="store_true",
        help="fixtures: only the xgboost/lightgbm files (boosting/), the others stay",
    )
    args = parser.parse_args(argv)
    if args.what == "fixtures" and args.boosting:
        for name in args.generations or [*BY_NAME, "current"]:
            print(f"{name}: {refresh_boosting(name).relative_to(REPO)}")
        return 0
    if args.what == "share":
        names = args.generations or sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())
        for name in names:
            safe, total, misses = share(name, args.packs)
            print(f"{name}: {safe}/{total} safe ({100 * safe / max(total, 1):.0f}%)")
            for path, why in misses.items():
                print(f"  {path}: {', '.join(why)}")
        return 0
    local = list(LOCAL_FIXTURES) if args.what == "fixtures" else ["current"]
    for name in args.generations or [*BY_NAME, *local]:
        if name in local:
            made = refresh_local_fixtures(name) if args.what == "fixtures" else refresh_names(None)
            print(f"{name}: {made.relative_to(REPO)}")
            continue
        gen = BY_NAME[name]
        path = refresh_names(gen) if args.what == "names" else refresh_fixtures(gen)
        print(f"{gen.name}: {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
