"""Generate the allow packs in rules/allow/ from the real libraries.

    python -m tools.gen_allow_packs [--out DIR]

Builds real benign objects (tools/corpus.py), pickles each at protocols 0-5
(PyTorch objects also through a real `torch.save`, estimators and frames
also through `joblib.dump`), and lists every global that safeload's own
walker reports for them, with how each is used: its effective uses (a
reconstructor's class argument counts as rebuilt, as the scanner counts it)
and the argument shapes of its calls. Nothing is imported or unpickled to
discover a name: the names and scopes are what the pickles really contain.
A few explicit enumerations add names even when no toy object produces them
(every estimator class of `all_estimators()`, every torch.nn layer class,
every torch dtype, numpy's `numpy.core` spelling of every `numpy._core`
name, pandas' defining-module spelling of its public classes); an alias gets
the scope of the name it aliases.

Every name must be covered by the reviewed gadget audit, tools/pack_audit.toml:
its reason is written next to the entry, and the audit may state the scope
outright (the corpus must stay inside it), leave out shapes that genuine
pickles write only next to a denied global, or remove the name. A name that
no audit entry covers stops the generator, so a library upgrade cannot add
an unaudited name.

Older library generations (tools/generations.py) are merged in from their
committed records, tools/generation_names/*.json: what the pickles of each
generation name, with uses and call shapes, from the same enumeration run with
those releases. Each entry lists the releases that wrote its spelling
(`seen_in`). An old spelling that today's releases resolve to the very object of
a current name (`alias_of`), or that tools/renamed_names.toml maps to its new
name (`renamed_to`, module aliases such as scikit-learn's `_loss`), joins that
name's group: it gets exactly its scope and audit. An old spelling whose new
name relies on a named check that does not list the old spelling is left out
(the check would not run on it). Torch names no installable torch pickles
come from torch's history (TORCH_HISTORY) and their audit entries.

Each name goes to the pack of its top-level module. A name that a deny rule
flags is dropped (and printed) unless it is on the reviewed EXCEPTIONS list.
The output is deterministic: the same library versions give byte-identical
files; tests/test_allow_packs.py regenerates and diffs them.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import json
import re
import runpy
import sys
import tomllib
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `tools` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from safeload._machine.shapes import call_shape, effective_uses, shape_text
from safeload._machine.walker import analyze
from safeload._names import Use, parse_canonical
from safeload.policy import SCOPED_USES, Policy, builtin_rules
from tools import corpus

GENERATED_BY = "tools/gen_allow_packs.py"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "rules" / "allow"
AUDIT = REPO / "tools" / "pack_audit.toml"
RENAMED = REPO / "tools" / "renamed_names.toml"

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
    # scikit-learn 1.5-1.8 pickle sklearn._loss._loss under its sys.modules alias
    "_loss": "scikit-learn",
}

#: Top-level module -> the distribution whose releases an entry's `seen_in`
#: names (any other module: the Python standard library).
DISTRIBUTIONS = {
    "numpy": "numpy",
    "scipy": "scipy",
    "sklearn": "scikit-learn",
    "_loss": "scikit-learn",
    "pandas": "pandas",
    "dateutil": "python-dateutil",
    "pytz": "pytz",
    "torch": "torch",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "joblib": "joblib",
}

#: Torch names no torch 2.13 object pickles but older torch releases wrote,
#: taken from torch's source history and its weights_only allowlist
#: (torch/_weights_only_unpickler.py), with where they come from. Their
#: audit entries state their scope. tools/torch_weights_only.toml explains
#: every difference between the torch pack and that allowlist.
TORCH_HISTORY: dict[str, str] = {
    "torch._utils._rebuild_tensor": "torch 0.4.0 (torch/_utils.py)",
    **{
        f"torch.{kind}Storage": "torch 1.x legacy storage types"
        for kind in ("QInt32", "QInt8", "QUInt2x4", "QUInt4x2")
    },
    **{
        f"torch.cuda.{kind}Storage": "torch < 1.6 legacy format of CUDA tensors"
        for kind in (
            "BFloat16",
            "Bool",
            "Byte",
            "Char",
            "ComplexDouble",
            "ComplexFloat",
            "Double",
            "Float",
            "Half",
            "Int",
            "Long",
            "Short",
        )
    },
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

#: What an old spelling's entry says before the audit of the name it became.
_DERIVED_TEXT = {
    "alias_of": "Another spelling of {target} (the very same object): ",
    "renamed_to": "Old spelling of {target} ({releases}): {why} ",
}

#: Reviewed names a broad deny-module rule catches although they are benign.
#: Each entry needs a reason; keep this list short.
EXCEPTIONS: dict[str, str] = {}

#: Names added by enumeration rather than observed in a pickle, with why.
#: Their scope comes from the name they alias (EXPLICIT_ALIASES) or from
#: their audit entry, which must then state it.
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

#: Enumerated names that are another spelling of an observed one.
EXPLICIT_ALIASES: dict[str, str] = {
    "pathlib._local.PurePosixPath": "pathlib.PurePosixPath",
    "pathlib._local.PureWindowsPath": "pathlib.PureWindowsPath",
}

_USE_ORDER = [u for u in Use if u in SCOPED_USES]
#: Uses a pattern entry of the audit may cover: rebuilt classes, storage
#: types and attribute bases. A called or stored-only name is a callable or a
#: value whose risk is its own, so it needs an audit entry naming it.
_PATTERN_USES = frozenset(
    {Use.INSTANTIATED, Use.STATE, Use.MUTATED_INSTANCE, Use.PERSISTENT_ID, Use.GETATTR_BASE}
)


def versions() -> dict[str, str]:
    """The versions of Python and every library the packs are generated from."""
    found = {"python": "{}.{}".format(*sys.version_info[:2])}
    for key, module in LIBRARIES:
        found[key] = str(importlib.import_module(module).__version__)
    return found


# -- what the corpus pickles contain -------------------------------------------


@dataclass
class Seen:
    """How the corpus pickles use one global."""

    uses: set[str] = field(default_factory=set)
    """Its effective scoped uses (`SCOPED_USES` values), over every pickle."""
    shapes: set[str] = field(default_factory=set)
    """The argument shapes (`shape_text`) of every call of it."""
    labels: set[str] = field(default_factory=set)
    """The corpus objects whose pickles contain it."""
    releases: set[str] = field(default_factory=set)
    """The releases whose pickles contain it (`scikit-learn 1.0.2`)."""

    def merge(self, other: Seen) -> None:
        self.uses |= other.uses
        self.shapes |= other.shapes
        self.labels |= other.labels
        self.releases |= other.releases


def distribution(name: str) -> str:
    """The distribution a global belongs to (`python` for the standard library)."""
    return DISTRIBUTIONS.get(name.split(":")[0].split(".")[0], "python")


def release_of(name: str, found_versions: Mapping[str, str]) -> str | None:
    """`<distribution> <version>` for a name seen with the given versions."""
    dist = distribution(name)
    version = found_versions.get(dist)
    if version is None:
        return None
    if dist == "python":
        version = ".".join(version.split(".")[:2])
    return f"{dist} {version}"


def walked(data: bytes, where: str) -> dict[str, Seen]:
    """Every resolved global of one pickle stream, with its uses and call shapes,
    computed as the scanner computes them (`safeload.scan._judge`)."""
    analysis = analyze(data)
    events = analysis.all_events
    if events:
        raise SystemExit(f"{where}: the walker reports {[(e.rule, e.message) for e in events]}")
    effective = effective_uses(analysis.globals)
    found: dict[str, Seen] = {}
    for ref in analysis.globals:
        if not ref.resolved:
            raise SystemExit(f"{where}: unresolved global {ref.canonical}")
        if ref.folded_away:
            # `builtins.getattr` used only as `getattr(<allowed global>, '<name>')`:
            # the walker folds it into the dotted name it reaches (listed below).
            continue
        seen = found.setdefault(ref.canonical, Seen())
        seen.uses |= {u for u in effective[id(ref)] if Use(u) in SCOPED_USES}
        seen.shapes |= {shape_text(call_shape(data, c)) for c in ref.calls if c.use == Use.CALLED}
    return found


def walked_globals(data: bytes, where: str) -> set[str]:
    """Every resolved global the walker reports for one pickle stream."""
    return set(walked(data, where))


def observed() -> dict[str, Seen]:
    """Observed global -> how the corpus pickles use it."""
    seen: dict[str, Seen] = {}

    def add(found: Mapping[str, Seen], label: str) -> None:
        for name, what in found.items():
            what.labels.add(label)
            seen.setdefault(name, Seen()).merge(what)

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
                add(walked(data, f"{group}/{label}/p{proto}"), f"{group}/{label}")
    for label, obj in corpus.torch_objects():
        for proto, data in corpus.pickles(obj):
            add(walked(data, f"torch/{label}/p{proto}"), f"torch/{label}")
        add(walked(corpus.torch_save_data_pkl(obj), f"torch/{label}/data.pkl"), f"torch/{label}")
    # Uncompressed joblib.dump files: the walker reads the raw array bytes
    # that follow each NumpyArrayWrapper the way joblib.load does.
    for label, obj in corpus.joblib_objects():
        data = corpus.joblib_dump_bytes(obj)
        add(walked(data, f"joblib/{label}"), f"joblib/{label}")
    for label, obj in torch_history_objects():
        data = corpus.torch_save_data_pkl(obj)
        add(walked(data, f"torch-history/{label}/data.pkl"), f"torch-history/{label}")
    current = versions()
    for name, what in seen.items():
        release = release_of(name, current)
        if release is not None:
            what.releases.add(release)
    for name, what in generation_seen().items():
        seen.setdefault(name, Seen()).merge(what)
    return seen


def torch_history_objects() -> list[tuple[str, object]]:
    """What torch.save writes for tensors the corpus lacks: dtypes without a
    legacy storage class (`_rebuild_tensor_v3`, `UntypedStorage`), meta tensors,
    and a training checkpoint holding numpy values and argparse options."""
    import argparse

    import numpy as np
    import torch

    return [
        ("tensor-uint16", torch.zeros(2, dtype=torch.uint16)),
        ("tensor-float8", torch.zeros(2, dtype=torch.float8_e4m3fn)),
        ("tensor-meta", torch.zeros(2, device="meta")),
        (
            "checkpoint-numpy-argparse",
            {
                "args": argparse.Namespace(lr=0.1, epochs=3, arch="resnet"),
                "best": np.float64(0.5),
                "history": np.arange(3.0),
                "state_dict": {"w": torch.ones(2)},
            },
        ),
    ]


def generation_seen() -> dict[str, Seen]:
    """Every name the committed older generations pickle (tools/generation_names)."""
    from tools import generations

    seen: dict[str, Seen] = {}
    for record in generations.recorded():
        gen = str(record["generation"])
        releases = record["releases"]
        assert isinstance(releases, dict)
        names = record["names"]
        assert isinstance(names, dict)
        for name, info in names.items():
            what = Seen(
                set(info["uses"]),
                set(info["shapes"]),
                {f"{gen}:{label}" for label in info["objects"]},
            )
            release = release_of(name, releases)
            if release is not None:
                what.releases.add(release)
            seen.setdefault(name, Seen()).merge(what)
    return seen


def enumerated() -> set[str]:
    """Names the issue asks for by enumeration, not observation."""
    import torch
    from sklearn.utils import all_estimators

    names = set(EXPLICIT) | set(TORCH_HISTORY)
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


# -- other spellings of the same object ------------------------------------------


def numpy_aliases(names: Iterable[str]) -> set[tuple[str, str]]:
    """(name, alias): numpy 1.x pickles name `numpy.core.*`, numpy 2 `numpy._core.*`."""
    pairs = set()
    for name in names:
        for old, new in (("numpy._core.", "numpy.core."), ("numpy.core.", "numpy._core.")):
            if name.startswith(old):
                pairs.add((name, new + name[len(old) :]))
    return pairs


def with_numpy_aliases(names: set[str]) -> set[str]:
    """`names` with both numpy spellings of every `numpy._core`/`numpy.core` name."""
    return set(names) | {alias for _, alias in numpy_aliases(names)}


def pandas_aliases(names: Iterable[str]) -> set[tuple[str, str]]:
    """(name, alias): pandas 3 renamed its public classes to `pandas.X`; pandas 2
    pickles them under their defining module (`pandas.core.frame.DataFrame`).

    The defining module is the one pandas module whose source has `class X`
    (or, for Cython classes, the one extension module that holds the object);
    that name resolves to the very same object, so it is exactly as safe.
    """
    pairs = set()
    for name in sorted(names):
        module, qualname = parse_canonical(name)
        if module not in ("pandas", "pandas.arrays") or "." in qualname:
            continue
        homes = _defining_modules(module, qualname)
        if len(homes) != 1:
            raise SystemExit(f"{name}: cannot tell its defining module ({homes})")
        pairs.add((name, f"{homes[0]}.{qualname}"))
    return pairs


def with_pandas_aliases(names: set[str]) -> set[str]:
    """`names` with the defining-module spelling of every public pandas class."""
    return set(names) | {alias for _, alias in pandas_aliases(names)}


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


def with_aliases(
    seen: Mapping[str, Seen], derived: Mapping[str, Derived] | None = None
) -> dict[str, Seen]:
    """Every observed or enumerated name, each with the union of what the corpus
    shows for it and for its other spellings (which name the same object), and
    the releases that wrote that very spelling. `derived`: old spellings of
    older generations (`derived_names`), which join the group of their target."""
    names = set(seen) | enumerated()
    pairs = set(numpy_aliases(names))
    pairs |= {(a, b) for a, b in EXPLICIT_ALIASES.items() if b in names}
    pairs |= {(a, d.target) for a, d in (derived or {}).items() if d.target in names}
    pairs |= pandas_aliases(names | {b for _, b in pairs})
    groups: dict[str, set[str]] = {n: {n} for n in names}
    for a, b in sorted(pairs):
        merged = groups.get(a, {a}) | groups.get(b, {b})
        for n in merged:
            groups[n] = merged
    out: dict[str, Seen] = {}
    for name, group in groups.items():
        out[name] = Seen()
        for n in sorted(group & set(seen)):
            out[name].merge(seen[n])
        # releases are those of this spelling, not of the others
        out[name].releases = set(seen[name].releases) if name in seen else set()
        if name in TORCH_HISTORY:
            out[name].releases.add(TORCH_HISTORY[name])
    return out


# -- older generations: renamed names and module aliases ----------------------------


@dataclass(frozen=True)
class Derived:
    """An old spelling that takes the scope and audit of the name it became."""

    kind: str
    """`alias_of` (resolves to the very same object) or `renamed_to`."""
    target: str
    releases: str = ""
    why: str = ""
    allowed: bool = True
    """False: recorded in the renamed table but not allowed (`allow = false`)."""


def load_renamed(path: Path = RENAMED) -> tuple[dict[str, Derived], dict[str, Derived]]:
    """(old name -> its `renamed_to`, alias module -> its target module) from
    tools/renamed_names.toml."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    if data.get("schema") != 1 or set(data) - {"schema", "renamed", "module-alias"}:
        raise SystemExit(f"{path.name}: expected `schema = 1`, [[renamed]] and [[module-alias]]")
    renamed: dict[str, Derived] = {}
    for raw in data.get("renamed", []):
        if set(raw) - {"old", "new", "each", "releases", "why"} or not raw.get("why"):
            raise SystemExit(f"{path.name}: {raw.get('old')}: keys old, new, each, releases, why")
        for item in raw.get("each", [""]):
            old, new = raw["old"].replace("{}", item), raw["new"].replace("{}", item)
            if old in renamed:
                raise SystemExit(f"{path.name}: {old} is renamed twice")
            renamed[old] = Derived("renamed_to", new, raw["releases"], " ".join(raw["why"].split()))
    modules: dict[str, Derived] = {}
    for raw in data.get("module-alias", []):
        if (
            not {"module", "target", "releases", "why"}
            <= set(raw)
            <= {
                "module",
                "target",
                "releases",
                "why",
                "allow",
            }
        ):
            raise SystemExit(f"{path.name}: module aliases have module, target, releases, why")
        modules[raw["module"]] = Derived(
            "alias_of",
            raw["target"],
            raw["releases"],
            " ".join(raw["why"].split()),
            bool(raw.get("allow", True)),
        )
    return renamed, modules


_MISSING = object()


def _resolve(name: str) -> object:
    """The object a name resolves to in the installed releases (`_MISSING` if none).
    The generator only resolves names its own corpus and generations recorded."""
    module, qualname = parse_canonical(name)
    try:
        obj: object = importlib.import_module(module)
    except Exception:
        return _MISSING
    for part in qualname.split("."):
        obj = getattr(obj, part, _MISSING)
        if obj is _MISSING:
            return _MISSING
    return obj if isinstance(obj, type) or callable(obj) else _MISSING


def same_object_aliases(old: Iterable[str], current: Iterable[str]) -> dict[str, Derived]:
    """Old spellings that today's releases resolve to the very object of a current
    name (numpy.core._multiarray_umath.add is numpy.add); the shortest current
    name is the target. Only classes and callables count (values may be shared)."""
    index: dict[int, str] = {}
    keep = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in sorted(current, key=lambda n: (len(n), n)):
            obj = _resolve(name)
            if obj is not _MISSING:
                keep.append(obj)
                index.setdefault(id(obj), name)
        out = {}
        for name in sorted(old):
            obj = _resolve(name)
            if obj is not _MISSING and id(obj) in index:
                out[name] = Derived("alias_of", index[id(obj)])
    return out


def current_names(seen: Mapping[str, Seen]) -> set[str]:
    """Names today's corpus or today's generation record pickles, or the
    enumerations list (not only older generations: labels `GEN:group/label`)."""
    names = {
        n
        for n, s in seen.items()
        if any(":" not in label or label.startswith("current:") for label in s.labels)
    }
    names |= enumerated()
    names |= {b for _, b in numpy_aliases(names)}
    names |= {a for a, b in EXPLICIT_ALIASES.items() if b in names}
    return names | {b for _, b in pandas_aliases(names)}


def derived_names(
    seen: Mapping[str, Seen],
    current: set[str],
    audited: Iterable[str] = (),
    renamed_path: Path = RENAMED,
) -> dict[str, Derived]:
    """Old spelling -> the name it became: the renamed table, module aliases and
    names today's releases resolve to the same object as a current name. A
    spelling the audit names exactly (`audited`) keeps its own reviewed scope."""
    old = set(seen) - current - set(audited)
    renamed, modules = load_renamed(renamed_path)
    out: dict[str, Derived] = {}
    for name, d in sorted(renamed.items()):
        if name not in old:
            raise SystemExit(
                f"{renamed_path.name}: no older generation pickles {name}: remove the entry"
            )
        out[name] = d
    for name in sorted(old - set(out)):
        for module, d in modules.items():
            if name.startswith(module + "."):
                out[name] = Derived(
                    d.kind,
                    d.target + name[len(module) :],
                    d.releases,
                    f"module alias: {d.why}",
                    d.allowed,
                )
    out.update(same_object_aliases(old - set(out), current))
    # numpy's other spelling (numpy.core / numpy._core) of an old spelling
    for a, b in sorted(numpy_aliases(out)):
        if b not in out and b not in current:
            out[b] = out[a]
    for name, d in out.items():
        if d.target not in seen and d.target not in current:
            raise SystemExit(f"{name}: its new name {d.target} is in no generation")
    return out


# -- the gadget audit --------------------------------------------------------------

_AUDIT_KEYS = {
    "names",
    "patterns",
    "audit",
    "use",
    "calls",
    "refuse-calls",
    "needs-check",
    "remove",
}


@dataclass(frozen=True)
class AuditEntry:
    """One reviewed entry of tools/pack_audit.toml."""

    where: str
    audit: str
    names: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    use: frozenset[str] | None = None
    """The scope's uses, stated by the reviewer (None: as the corpus uses it); the
    corpus must stay inside them. A rebuilt class is rebuilt and given state
    whether or not the corpus object happened to carry a `__dict__`."""
    calls: frozenset[str] | None = None
    """The scope's call shapes, stated by the reviewer (None: as the corpus calls it);
    genuine variants the corpus lacks may be listed, the corpus must stay inside."""
    refuse_calls: Mapping[str, str] = field(default_factory=dict)
    """Shapes genuine pickles write that the scope leaves out, with why."""
    needs_check: str = ""
    """What the scope cannot bound and a state or argument check must."""
    remove: str = ""
    """Why the name is never allowlisted."""


def load_audit(path: Path = AUDIT) -> list[AuditEntry]:
    """Parse and validate the audit file."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    if data.get("schema") != 1 or set(data) - {"schema", "entry"}:
        raise SystemExit(f"{path.name}: expected `schema = 1` and [[entry]] tables only")
    entries = []
    for i, raw in enumerate(data.get("entry", [])):
        first = (raw.get("names") or raw.get("patterns") or ["?"])[0]
        where = f"{path.name}: entry {i + 1} ({first})"
        unknown = set(raw) - _AUDIT_KEYS
        if unknown:
            raise SystemExit(f"{where}: unknown keys {sorted(unknown)}")
        names = tuple(raw.get("names", ()))
        patterns = tuple(raw.get("patterns", ()))
        if not names and not patterns:
            raise SystemExit(f"{where}: names or patterns are required")
        audit = raw.get("audit", "")
        if not isinstance(audit, str) or len(audit.split()) < 4:
            raise SystemExit(f"{where}: every entry says why in `audit` (a sentence)")
        use = raw.get("use")
        if use is not None:
            bad = set(use) - {u.value for u in _USE_ORDER}
            if bad:
                raise SystemExit(f"{where}: unknown uses {sorted(bad)}")
        calls = raw.get("calls")
        if calls is not None and (use is None or Use.CALLED not in use):
            raise SystemExit(f"{where}: `calls` needs `use` with 'called'")
        entry = AuditEntry(
            where=where,
            audit=" ".join(audit.split()),
            names=names,
            patterns=patterns,
            use=frozenset(use) if use is not None else None,
            calls=frozenset(calls) if calls is not None else None,
            refuse_calls=dict(raw.get("refuse-calls", {})),
            needs_check=" ".join(str(raw.get("needs-check", "")).split()),
            remove=" ".join(str(raw.get("remove", "")).split()),
        )
        if entry.remove and (entry.use is not None or entry.calls or entry.refuse_calls):
            raise SystemExit(f"{where}: a removed name has no scope")
        entries.append(entry)
    exact = [n for e in entries for n in e.names]
    if len(exact) != len(set(exact)):
        twice = sorted({n for n in exact if exact.count(n) > 1})
        raise SystemExit(f"{path.name}: names audited twice: {twice}")
    return entries


class Audit:
    """Finds the entry that covers a name: an exact name wins over a pattern, a
    longer pattern over a shorter one; two patterns of one length are ambiguous."""

    def __init__(self, entries: list[AuditEntry]):
        self.entries = entries
        self._exact = {n: e for e in entries for n in e.names}
        self._patterns = [(p, e) for e in entries for p in e.patterns]
        self.used: set[tuple[str, str]] = set()
        """(entry where, name or pattern) that covered some name."""

    def covering(self, name: str) -> tuple[AuditEntry, bool]:
        """The entry for `name`, and whether it names it exactly."""
        entry = self._exact.get(name)
        if entry is not None:
            self.used.add((entry.where, name))
            return entry, True
        hits = [(p, e) for p, e in self._patterns if fnmatch.fnmatchcase(name, p)]
        if not hits:
            raise SystemExit(
                f"{name}: no entry of tools/pack_audit.toml covers it; review it as a "
                "gadget (memory, code, files, resources) and add an entry"
            )
        hits.sort(key=lambda h: -len(h[0]))
        if len(hits) > 1 and len(hits[0][0]) == len(hits[1][0]):
            raise SystemExit(f"{name}: audit patterns {hits[0][0]!r} and {hits[1][0]!r} tie")
        pattern, entry = hits[0]
        self.used.add((entry.where, pattern))
        return entry, False

    def stale(self) -> list[str]:
        """Names and patterns that covered nothing (a name that no longer exists)."""
        out = []
        for e in self.entries:
            out += [f"{e.where}: {n}" for n in e.names if (e.where, n) not in self.used]
            out += [f"{e.where}: {p}" for p in e.patterns if (e.where, p) not in self.used]
        return out


@dataclass(frozen=True)
class PackEntry:
    """One allow entry of a generated pack."""

    name: str
    uses: tuple[str, ...]
    """Scoped uses in `Use` order; empty: stored only."""
    calls: tuple[str, ...]
    """Sorted call shapes; only when `called` is a use."""
    audit: str
    check: str | None = None
    seen_in: tuple[str, ...] = ()
    """The releases whose pickles use this spelling (`scikit-learn 1.0.2`)."""
    alias_of: str = ""
    """The name this spelling resolves to, when it is another spelling of it."""
    renamed_to: str = ""
    """The name an older release's spelling became."""


def _release_key(release: str) -> tuple[str, tuple[int | str, ...]]:
    dist, _, version = release.partition(" ")
    parts = re.split(r"[.+ ]", version)
    return dist, tuple(int(p) if p.isdigit() else p for p in parts if p)


def checks_by_global() -> dict[str, str]:
    """Global -> the slug of the named check (safeload/_checks) that applies to it."""
    try:
        from safeload._checks import APPLIES_TO
    except ImportError:  # a checkout from before the checks: entries name none
        return {}
    out: dict[str, str] = {}
    for slug, names in sorted(APPLIES_TO.items()):
        for name in names:
            if name in out:
                raise SystemExit(f"{name}: checks {out[name]} and {slug} both apply; name one")
            out[name] = slug
    return out


def scope(
    name: str, seen: Seen, audit: Audit, checks: Mapping[str, str] | None = None
) -> PackEntry | str:
    """The pack entry for `name`, or why the audit removes it. `checks`: global ->
    the slug of the check that applies to it (`checks_by_global`)."""
    entry, exact = audit.covering(name)
    if entry.remove:
        return entry.remove
    if not seen.labels and entry.use is None:
        raise SystemExit(f"{name}: no corpus pickle uses it; {entry.where} must state its `use`")
    kind = set(seen.uses) if seen.labels else set(entry.use or ())
    if not exact and not (kind and kind <= _PATTERN_USES):
        raise SystemExit(
            f"{name}: {'called' if Use.CALLED in kind else 'stored only'}, so an audit "
            f"entry must name it (not only the pattern of {entry.where})"
        )
    if entry.use is not None and seen.uses - entry.use:
        raise SystemExit(
            f"{name}: the corpus uses it as {sorted(seen.uses - entry.use)} ({_where(seen)}), "
            f"which {entry.where} does not accept: review that use"
        )
    uses = set(entry.use) if entry.use is not None else set(seen.uses)
    calls: set[str] = set()
    if Use.CALLED in uses:
        stale = set(entry.refuse_calls) - seen.shapes
        if stale:
            raise SystemExit(f"{name}: {entry.where} refuses shapes never seen: {sorted(stale)}")
        shapes = seen.shapes - set(entry.refuse_calls)
        if entry.calls is not None:
            if "*" not in entry.calls and not shapes <= entry.calls:
                raise SystemExit(
                    f"{name}: the corpus calls it with {sorted(shapes - entry.calls)} "
                    f"({_where(seen)}), which {entry.where} does not cover: review those"
                )
            calls = set(entry.calls)
        else:
            calls = shapes
        if "?" in calls:
            raise SystemExit(f"{name}: called with arguments of unknown kinds; audit its calls")
        if not calls:
            raise SystemExit(f"{name}: called, but with no shape: {entry.where} must list `calls`")
    elif entry.refuse_calls:
        raise SystemExit(f"{name}: {entry.where} refuses shapes of a name that is not called")
    check = (checks or {}).get(name)
    text = entry.audit
    if entry.needs_check:
        text += f" Named check {check}, which must ensure: " if check else " Needs a check: "
        text += entry.needs_check
    return PackEntry(
        name=name,
        uses=tuple(u.value for u in _USE_ORDER if u.value in uses),
        calls=tuple(sorted(calls)),
        audit=text,
        check=check,
    )


def _where(seen: Seen) -> str:
    return ", ".join(sorted(seen.labels)[:3]) or "no corpus object"


# -- packs -------------------------------------------------------------------------


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


def removals(entries: Iterable[AuditEntry] | None = None) -> dict[str, str]:
    """Exact names the audit removes, with why."""
    if entries is None:
        entries = load_audit()
    return {n: e.remove for e in entries if e.remove for n in e.names}


def split(
    names: Iterable[str], removed: Mapping[str, str] | None = None
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Pack name -> sorted globals, and the names dropped (-> why).

    A deny rule always wins over observation, except for the reviewed
    EXCEPTIONS: a pack never allows what the rules call dangerous. Names the
    audit removes (`removed`, by default the audit file's) are dropped too.
    """
    if removed is None:
        removed = removals()
    policy = deny_policy()
    packs: dict[str, set[str]] = {name: set() for name in DESCRIPTIONS}
    dropped: dict[str, str] = {}
    for name in sorted(set(names)):
        if name in removed:
            dropped[name] = f"removed by the audit: {removed[name]}"
            continue
        decision = policy.decide(*parse_canonical(name))
        if decision.denied and decision.rule is not None and name not in EXCEPTIONS:
            dropped[name] = f"deny rule {decision.rule.id} {decision.rule.name}"
            continue
        packs[pack_of(name)].add(name)
    return {pack: sorted(globs) for pack, globs in packs.items()}, dropped


def scoped(
    seen: Mapping[str, Seen],
    entries: list[AuditEntry],
    derived: Mapping[str, Derived] | None = None,
    old_only: Iterable[str] = (),
) -> tuple[dict[str, list[PackEntry]], dict[str, str]]:
    """Pack name -> its entries, and the names dropped (-> why), for every name
    in `seen` (observed, enumerated and aliases). `derived`: old spellings that
    take their target's scope and audit; `old_only`: names only older
    generations pickle, which a named check must cover where their audit needs
    one (a check that does not know the spelling would not run on it)."""
    audit = Audit(entries)
    checks = checks_by_global()
    derived = derived or {}
    old_only = set(old_only)
    packs, dropped = split(seen, removed={})
    out: dict[str, list[PackEntry]] = {}
    for pack, names in packs.items():
        out[pack] = []
        for name in names:
            if name in derived:
                result = _derived_entry(name, derived, seen, audit, checks)
            else:
                result = scope(name, seen[name], audit, checks)
                if (
                    isinstance(result, PackEntry)
                    and name in old_only
                    and "Needs a check" in result.audit
                ):
                    result = "its audit needs a check, and no named check covers this old spelling"
            if isinstance(result, str):
                dropped[name] = f"removed by the audit: {result}"
                continue
            seen_in = tuple(sorted(seen[name].releases, key=_release_key))
            out[pack].append(
                PackEntry(
                    result.name,
                    result.uses,
                    result.calls,
                    result.audit,
                    result.check,
                    seen_in,
                    result.alias_of,
                    result.renamed_to,
                )
            )
    stale = audit.stale()
    if stale:
        raise SystemExit("audit entries that cover no name (remove them):\n  " + "\n  ".join(stale))
    return out, dropped


def _derived_entry(
    name: str,
    derived: Mapping[str, Derived],
    seen: Mapping[str, Seen],
    audit: Audit,
    checks: Mapping[str, str],
) -> PackEntry | str:
    """The entry of an old spelling: its target's scope and audit, said to be so."""
    d = derived[name]
    if not d.allowed:
        return f"recorded as another spelling of {d.target} ({d.releases}), not allowed: {d.why}"
    if d.target in derived:
        raise SystemExit(f"{name}: renamed to {d.target}, which is itself an old spelling")
    base = scope(d.target, seen[d.target], audit, checks)
    if isinstance(base, str):
        return base
    check = checks.get(name)
    if base.check is not None and check != base.check:
        return f"the named check {base.check} of {d.target} does not cover this spelling"
    if base.check is None and "Needs a check" in base.audit:
        return f"the audit of {d.target} needs a check, and none covers this spelling"
    text = _DERIVED_TEXT[d.kind].format(target=d.target, releases=d.releases, why=d.why)
    if d.kind == "alias_of" and d.why:
        text = f"Another spelling of {d.target} ({d.releases}; {d.why}): "
    return PackEntry(
        name=name,
        uses=base.uses,
        calls=base.calls,
        audit=" ".join((text + base.audit).split()),
        check=check,
        alias_of=d.target if d.kind == "alias_of" else "",
        renamed_to=d.target if d.kind == "renamed_to" else "",
    )


def collect(audit_path: Path = AUDIT) -> dict[str, list[PackEntry]]:
    """Pack name -> scoped entries from the real libraries, after the deny check
    and the audit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = observed()
        current = current_names(raw)
        entries = load_audit(audit_path)
        derived = derived_names(raw, current, {n for e in entries for n in e.names})
        seen = with_aliases(raw, derived)
    old_only = set(seen) - current - set(derived)
    packs, dropped = scoped(seen, entries, derived, old_only)
    for name, why in sorted(dropped.items()):
        where = _where(seen[name]) if seen[name].labels else "enumerated"
        print(f"dropped {name}: {why} (seen in {where})", file=sys.stderr)
    return packs


def _toml_str(text: str) -> str:
    # A JSON string is a TOML basic string (same escapes), kept on one line.
    return json.dumps(text, ensure_ascii=False)


def render_entry(entry: PackEntry) -> str:
    """One allow entry as a TOML inline table."""
    parts = [f"name = {_toml_str(entry.name)}"]
    parts.append("use = [" + ", ".join(_toml_str(u) for u in entry.uses) + "]")
    if entry.calls:
        parts.append("calls = [" + ", ".join(_toml_str(c) for c in entry.calls) + "]")
    if entry.check:
        parts.append(f"check = {_toml_str(entry.check)}")
    if entry.alias_of:
        parts.append(f"alias_of = {_toml_str(entry.alias_of)}")
    if entry.renamed_to:
        parts.append(f"renamed_to = {_toml_str(entry.renamed_to)}")
    if entry.seen_in:
        parts.append("seen_in = [" + ", ".join(_toml_str(r) for r in entry.seen_in) + "]")
    parts.append(f"audit = {_toml_str(entry.audit)}")
    return "{ " + ", ".join(parts) + " }"


def render(pack: str, entries: list[PackEntry], found_versions: dict[str, str]) -> str:
    """One pack file's text (TOML, schema 2)."""
    vers = ", ".join(
        f'"{k}" = "{v}"' if "-" in k else f'{k} = "{v}"' for k, v in found_versions.items()
    )
    lines = [
        "# Generated by tools/gen_allow_packs.py from the real libraries and the",
        "# reviewed gadget audit (tools/pack_audit.toml); do not edit.",
        "# Regenerate with: python -m tools.gen_allow_packs",
        "#",
        "# Each entry's `use` is how genuine pickles use the name (an empty list:",
        "# stored only, never called or rebuilt); `calls` are the argument shapes",
        "# of its calls; `audit` says why it is safe within that scope; `seen_in`",
        "# the releases whose pickles use that spelling (older generations:",
        "# tools/generations.py); `alias_of` / `renamed_to` mark another or an",
        "# old spelling, which has the scope of the name it names.",
        "schema = 2",
        "",
        "[pack]",
        f'name = "{pack}"',
        f'description = "{DESCRIPTIONS[pack]}"',
        f'generated_by = "{GENERATED_BY}"',
        f"versions = {{ {vers} }}",
        "allow = [",
        *(f"    {render_entry(e)}," for e in sorted(entries, key=lambda e: e.name)),
        "]",
        "",
    ]
    return "\n".join(lines)


def write(out: Path, audit_path: Path = AUDIT) -> dict[str, Path]:
    """Generate every pack into `out`; returns pack name -> file."""
    found_versions = versions()
    packs = collect(audit_path)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for pack, entries in packs.items():
        if not entries:
            raise SystemExit(f"pack {pack} came out empty")
        path = out / f"{pack}.toml"
        path.write_text(render(pack, entries, found_versions), encoding="utf-8")
        files[pack] = path
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output folder (default: rules/allow)"
    )
    parser.add_argument(
        "--audit", type=Path, default=AUDIT, help="gadget audit (default: tools/pack_audit.toml)"
    )
    args = parser.parse_args(argv)
    for pack, path in write(args.out, args.audit).items():
        count = sum(1 for line in path.read_text().splitlines() if line.startswith("    { "))
        print(f"{pack}: {count} entries -> {path}")
    if args.out == DEFAULT_OUT:
        # The parsed copy the CLI starts from follows the packs (tools/compile_rules.py).
        runpy.run_path(str(Path(__file__).with_name("compile_rules.py")))["main"]()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
