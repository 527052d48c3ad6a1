"""Generate the allow packs in rules/allow/ from the real libraries.

    python -m tools.gen_allow_packs [--out DIR]

Builds real benign objects (tools/corpus.py), pickles each at protocols 0-5
(PyTorch objects also through a real `torch.save`), and lists every global
that safeload's own walker reports for them. Nothing is imported or unpickled
to discover a name: the names are what the pickles really contain. A few
explicit enumerations add names the issue asks for even when no toy object
produces them (every estimator class of `all_estimators()`, every torch.nn
layer class, numpy's `numpy.core` spelling of every `numpy._core` name).

Each name goes to the pack of its top-level module. A name that a deny rule
flags is dropped (and printed) unless it is on the reviewed EXCEPTIONS list.
The output is deterministic: the same library versions give byte-identical
files; tests/test_allow_packs.py regenerates and diffs them.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `tools` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from safeload._machine.walker import analyze
from safeload._names import parse_canonical
from safeload.policy import Policy, builtin_rules
from tools import corpus

GENERATED_BY = "tools/gen_allow_packs.py"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "rules" / "allow"

#: Top-level module -> pack. Modules of the Python standard library go to
#: `python-stdlib`; any other module stops the generator so that a new
#: dependency is reviewed before it is allowlisted.
ROUTES = {
    "numpy": "numpy",
    "scipy": "scipy",
    "sklearn": "scikit-learn",
    "pandas": "pandas",
    # pandas stores dateutil time zones of tz-aware data
    "dateutil": "pandas",
    "pytz": "pandas",
    "torch": "pytorch",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "joblib": "joblib",
}

DESCRIPTIONS = {
    "python-stdlib": "Python standard library data types (builtins, collections, datetime, "
    "decimal, fractions, uuid, pure paths, re patterns, zoneinfo, array, copyreg "
    "reconstructors) as they appear in real pickles",
    "numpy": "numpy arrays, dtypes, scalars, masked arrays, random generators and bit "
    "generators (numpy._core and numpy.core spellings)",
    "scipy": "scipy.sparse matrices and arrays of every format",
    "scikit-learn": "every estimator of sklearn.utils.all_estimators() and the internal "
    "types seen when fitted estimators are pickled",
    "pandas": "pandas Series, DataFrame, Index kinds, extension arrays, offsets and the "
    "time zones tz-aware data stores",
    "pytorch": "PyTorch tensors, storages, state dicts, optimizer states, checkpoints and "
    "whole modules built from torch.nn's own layers",
    "xgboost": "xgboost scikit-learn wrappers (XGBClassifier, XGBRegressor, ...)",
    "lightgbm": "lightgbm scikit-learn wrappers (LGBMClassifier, LGBMRegressor, ...)",
    "joblib": "joblib's array wrapper in joblib.dump files",
}

#: Library versions recorded in every pack: (key, importable module).
LIBRARIES = (
    ("numpy", "numpy"),
    ("scipy", "scipy"),
    ("pandas", "pandas"),
    ("scikit-learn", "sklearn"),
    ("joblib", "joblib"),
    ("torch", "torch"),
    ("xgboost", "xgboost"),
    ("lightgbm", "lightgbm"),
    ("python-dateutil", "dateutil"),
)

#: Reviewed names a broad deny-module rule catches although they are benign.
#: Each entry needs a reason; keep this list short.
EXCEPTIONS: dict[str, str] = {}

#: Names seen in benign pickles that are still never allowlisted, with why.
#: The files that contain them scan `unknown`; reported to the maintainers.
REFUSED: dict[str, str] = {
    # dateutil >= 2.9 pickles tz files as `_unpickle(tzfile, key, filename,
    # data)`; `tzfile(<str>)` itself opens and reads the named path.
    "dateutil.tz._tzfile.tzfile": "its constructor opens the file a string argument names",
}

#: Names added by enumeration rather than observed in a pickle, with why.
EXPLICIT: dict[str, str] = {
    # copyreg's reconstructors: `__newobj__`/`__newobj_ex__` are what
    # `__reduce_ex__(2+)` returns; the pickler writes them as NEWOBJ opcodes,
    # but hand-written `__reduce__` methods and other picklers name them.
    "copyreg.__newobj__": "copyreg reconstructor",
    "copyreg.__newobj_ex__": "copyreg reconstructor",
    # joblib.dump writes each array as this wrapper followed by the raw array
    # bytes. Found also by walking the prefix of a real joblib.dump below.
    "joblib.numpy_pickle.NumpyArrayWrapper": "joblib array wrapper",
    # A partial only binds a function to arguments: the function and every
    # global in its arguments are judged as globals of their own, and calling
    # the partial while unpickling is a computed call (SL205). scikit-learn's
    # HistGradientBoosting with categorical features stores
    # partial(check_array, ...).
    "functools.partial": "binds an allowed function to arguments",
    # Python 3.13 moved the pure path classes to pathlib._local.
    "pathlib._local.PurePosixPath": "pathlib pure paths, Python 3.13+",
    "pathlib._local.PureWindowsPath": "pathlib pure paths, Python 3.13+",
}


def versions() -> dict[str, str]:
    """The versions of Python and every library the packs are generated from."""
    found = {"python": "{}.{}".format(*sys.version_info[:2])}
    for key, module in LIBRARIES:
        found[key] = str(importlib.import_module(module).__version__)
    return found


def walked_globals(data: bytes, where: str, *, partial: bool = False) -> set[str]:
    """Every resolved global the walker reports for one pickle stream."""
    analysis = analyze(data)
    events = analysis.all_events
    if events and not partial:
        raise SystemExit(f"{where}: the walker reports {[(e.rule, e.message) for e in events]}")
    names = set()
    for ref in analysis.globals:
        if not ref.resolved:
            raise SystemExit(f"{where}: unresolved global {ref.canonical}")
        if ref.folded_away:
            # `builtins.getattr` used only as `getattr(<allowed global>, '<name>')`:
            # the walker folds it into the dotted name it reaches (listed below).
            continue
        names.add(ref.canonical)
    return names


def observed() -> dict[str, set[str]]:
    """Observed global -> labels of the objects whose pickles contain it."""
    seen: dict[str, set[str]] = {}

    def add(names: Iterable[str], label: str) -> None:
        for name in names:
            seen.setdefault(name, set()).add(label)

    groups = {group: build() for group, build in corpus.BUILDERS.items()}
    groups["sklearn"] = [
        (name, est) for name, est, err in corpus.sklearn_estimators() if err is None
    ]
    groups["sklearn-binary"] = [
        (name, est) for name, est, err in corpus.sklearn_binary_estimators() if err is None
    ]
    for group, objects in groups.items():
        for label, obj in objects:
            for proto, data in corpus.pickles(obj):
                add(walked_globals(data, f"{group}/{label}/p{proto}"), f"{group}/{label}")
    for label, obj in corpus.torch_objects():
        for proto, data in corpus.pickles(obj):
            add(walked_globals(data, f"torch/{label}/p{proto}"), f"torch/{label}")
        add(
            walked_globals(corpus.torch_save_data_pkl(obj), f"torch/{label}/data.pkl"),
            f"torch/{label}",
        )
    # Uncompressed joblib.dump files: the walker reads the raw array bytes
    # that follow each NumpyArrayWrapper the way joblib.load does.
    for label, obj in corpus.joblib_objects():
        data = corpus.joblib_dump_bytes(obj)
        add(walked_globals(data, f"joblib/{label}"), f"joblib/{label}")
    return seen


def enumerated() -> set[str]:
    """Names the issue asks for by enumeration, not observation."""
    import torch
    from sklearn.utils import all_estimators

    names = set(EXPLICIT)
    for _name, cls in all_estimators():
        names.add(f"{cls.__module__}.{cls.__qualname__}")
    for cls in corpus.torch_module_classes():
        names.add(f"{cls.__module__}.{cls.__qualname__}")
    # every torch dtype, spelled as torch pickles it: `torch.float32`, never
    # an alias such as `torch.float` (a dtype's __reduce__ returns its name)
    for name in dir(torch):
        dtype = getattr(torch, name)
        if isinstance(dtype, torch.dtype):
            names.add(f"torch.{dtype.__reduce__()}")
    return names


def with_numpy_aliases(names: set[str]) -> set[str]:
    """numpy 1.x pickles name `numpy.core.*`, numpy 2 `numpy._core.*`: list both."""
    out = set(names)
    for name in names:
        for old, new in (("numpy._core.", "numpy.core."), ("numpy.core.", "numpy._core.")):
            if name.startswith(old):
                out.add(new + name[len(old) :])
    return out


def with_pandas_aliases(names: set[str]) -> set[str]:
    """pandas 3 renamed its public classes to `pandas.X`; pandas 2 pickles them
    under their defining module (`pandas.core.frame.DataFrame`): list both.

    The defining module is the one pandas module whose source has `class X`
    (or, for Cython classes, the one extension module that holds the object);
    that name resolves to the very same object, so it is exactly as safe.
    """
    out = set(names)
    for name in sorted(names):
        module, qualname = parse_canonical(name)
        if module not in ("pandas", "pandas.arrays") or "." in qualname:
            continue
        homes = _defining_modules(module, qualname)
        if len(homes) != 1:
            raise SystemExit(f"{name}: cannot tell its defining module ({homes})")
        out.add(f"{homes[0]}.{qualname}")
    return out


def _defining_modules(module: str, qualname: str) -> list[str]:
    obj = getattr(importlib.import_module(module), qualname)
    holders = [
        m
        for m in sorted(sys.modules)
        if m.startswith(("pandas.core.", "pandas._libs."))
        and getattr(sys.modules[m], qualname, None) is obj
    ]
    found = []
    for m in holders:
        path = getattr(sys.modules[m], "__file__", None) or ""
        if path.endswith(".py"):
            source = Path(path).read_text(encoding="utf-8")
            if re.search(rf"^class {re.escape(qualname)}\b", source, re.MULTILINE):
                found.append(m)
    if found:
        return found
    # Cython: the extension module itself, not the ones that import from it
    return [
        m
        for m in holders
        if m.startswith("pandas._libs.")
        and not (getattr(sys.modules[m], "__file__", None) or "").endswith(".py")
        and m not in ("pandas._libs.lib", "pandas._libs.parsers")
    ]


def pack_of(name: str) -> str:
    """The pack a global belongs to, by its top-level module."""
    top = name.split(":")[0].split(".")[0]
    if top in ROUTES:
        return ROUTES[top]
    if top in sys.stdlib_module_names or top == "builtins":
        return "python-stdlib"
    raise SystemExit(f"{name}: module {top!r} belongs to no pack; add it to ROUTES after review")


def deny_policy() -> Policy:
    """The built-in deny rules (allow packs are not needed to ask them)."""
    return Policy(builtin_rules(), [], extra_allow=[("builtins", "object")])


def split(names: Iterable[str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Pack name -> sorted globals, and the names a deny rule dropped (-> rule).

    A deny rule always wins over observation, except for the reviewed
    EXCEPTIONS: a pack never allows what the rules call dangerous.
    """
    policy = deny_policy()
    packs: dict[str, set[str]] = {name: set() for name in DESCRIPTIONS}
    dropped: dict[str, str] = {}
    for name in sorted(set(names)):
        if name in REFUSED:
            dropped[name] = f"refused: {REFUSED[name]}"
            continue
        decision = policy.decide(*parse_canonical(name))
        if decision.denied and decision.rule is not None and name not in EXCEPTIONS:
            dropped[name] = f"deny rule {decision.rule.id} {decision.rule.name}"
            continue
        packs[pack_of(name)].add(name)
    return {pack: sorted(globs) for pack, globs in packs.items()}, dropped


def collect() -> dict[str, list[str]]:
    """Pack name -> sorted globals from the real libraries, after the deny check."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seen = observed()
        names = with_pandas_aliases(with_numpy_aliases(set(seen) | enumerated()))
    packs, dropped = split(names)
    for name, rule in dropped.items():
        where = ", ".join(sorted(seen.get(name, {"enumerated"}))[:3])
        print(f"dropped {name}: {rule} (seen in {where})", file=sys.stderr)
    return packs


def render(pack: str, globs: list[str], found_versions: dict[str, str]) -> str:
    """One pack file's text (TOML)."""
    vers = ", ".join(
        f'"{k}" = "{v}"' if "-" in k else f'{k} = "{v}"' for k, v in found_versions.items()
    )
    lines = [
        "# Generated by tools/gen_allow_packs.py from the real libraries; do not edit.",
        "# Regenerate with: python -m tools.gen_allow_packs",
        "schema = 1",
        "",
        "[pack]",
        f'name = "{pack}"',
        f'description = "{DESCRIPTIONS[pack]}"',
        f'generated_by = "{GENERATED_BY}"',
        f"versions = {{ {vers} }}",
        "globals = [",
        *(f'    "{g}",' for g in globs),
        "]",
        "",
    ]
    return "\n".join(lines)


def write(out: Path) -> dict[str, Path]:
    """Generate every pack into `out`; returns pack name -> file."""
    found_versions = versions()
    packs = collect()
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for pack, globs in packs.items():
        if not globs:
            raise SystemExit(f"pack {pack} came out empty")
        path = out / f"{pack}.toml"
        path.write_text(render(pack, globs, found_versions), encoding="utf-8")
        files[pack] = path
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output folder (default: rules/allow)"
    )
    args = parser.parse_args(argv)
    for pack, path in write(args.out).items():
        count = sum(1 for line in path.read_text().splitlines() if line.startswith('    "'))
        print(f"{pack}: {count} globals -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
