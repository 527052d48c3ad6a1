"""How the unpickler turns a (module, name) pair into the object it imports,
and the ways a stream can use that object.

Mirrors `Unpickler.find_class` in CPython: the `_compat_pickle` mapping
applies while the *current* protocol is below 3 (with the default
`fix_imports=True`), and the name is walked as a dotted path.
"""

from __future__ import annotations

import _compat_pickle
import enum


class Use(enum.StrEnum):
    """How a stream uses a global it imports: the one vocabulary shared by the
    walker (`GRef.uses`), the policy (`Policy.decide`) and reports.

    Members are `str`s equal to their values, so they are what reports show.
    Declared in report order: the most telling use first.
    """

    CALLED = "called"
    """REDUCE, INST or OBJ: the object is called (a function runs, `__init__` runs)."""
    INSTANTIATED = "instantiated"
    """NEWOBJ/NEWOBJ_EX: `cls.__new__(cls, *args)` without `__init__`."""
    STATE = "state"
    """BUILD on an instance of it: `__setstate__` or attribute updates."""
    STATE_REWRITE = "state-rewrite"
    """BUILD on the imported object itself."""
    MUTATED = "mutated"
    """APPEND(S), SETITEM(S) or ADDITEMS into the imported object itself."""
    MUTATED_INSTANCE = "mutated-instance"
    """Items appended to or set on an instance it returned."""
    PERSISTENT_ID = "persistent-id"
    """Part of a persistent id handed to `persistent_load`."""
    GETATTR_BASE = "getattr-base"
    """The object a folded `getattr(<global>, '<name>')` reads from."""
    FOLDED = "folded"
    """`builtins.getattr` consumed by such a fold."""
    STORED = "stored"
    """Only placed in the result (e.g. a class or function kept as data)."""


_NAME_MAPPING: dict[tuple[str, str], tuple[str, str]] = dict(_compat_pickle.NAME_MAPPING)
_IMPORT_MAPPING: dict[str, str] = dict(_compat_pickle.IMPORT_MAPPING)

MODULE_ALIASES: dict[str, str] = {"_loss": "sklearn._loss._loss"}
"""Module names a library registers in `sys.modules` at import, mapped to the module
they stand for at every protocol. scikit-learn 1.5-1.8 (meson-built wheels) compiled
sklearn._loss._loss under the name `_loss`, registered it so, and pickled its loss
classes and unpickle helpers as `_loss.<name>`. `import _loss` reaches that module
only after scikit-learn registered it; otherwise it searches sys.path for a top-level
module of that name. The walk judges, and the guarded loader imports, the module the
alias stands for, never a top-level `_loss`."""


def map_name(module: str, name: str, proto: int) -> tuple[str, str]:
    """The (module, name) `find_class` really imports at protocol `proto` (with the
    `MODULE_ALIASES` a library registers resolved to their module)."""
    if proto < 3:
        mapped = _NAME_MAPPING.get((module, name))
        if mapped is not None:
            return mapped
        module = _IMPORT_MAPPING.get(module, module)
    return MODULE_ALIASES.get(module, module), name


def canonical(module: str, qualname: str) -> str:
    """One unambiguous spelling: `mod.name`, or `mod:dotted.qualname`.

    A dotted qualname is reached *through* the module by attribute access, so
    `pathlib:os.system` is `os.system` reached through `pathlib` and is never
    covered by allowing anything in `pathlib`.
    """
    if "." in qualname:
        return f"{module}:{qualname}"
    return f"{module}.{qualname}"


def parse_canonical(text: str) -> tuple[str, str]:
    """Inverse of `canonical`: `a.b.c` is module `a.b`, name `c`; `a:b.c` is explicit."""
    text = text.strip()
    if ":" in text:
        module, _, qualname = text.partition(":")
    else:
        module, _, qualname = text.rpartition(".")
    if not module or not qualname or ":" in qualname:
        raise ValueError(f"not a global name: {text!r} (use module.name or module:qual.name)")
    return module, qualname
