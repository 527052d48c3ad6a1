"""How the unpickler turns a (module, name) pair into the object it imports.

Mirrors `Unpickler.find_class` in CPython: the `_compat_pickle` mapping
applies while the *current* protocol is below 3 (with the default
`fix_imports=True`), and the name is walked as a dotted path.
"""

from __future__ import annotations

import _compat_pickle

_NAME_MAPPING: dict[tuple[str, str], tuple[str, str]] = dict(_compat_pickle.NAME_MAPPING)
_IMPORT_MAPPING: dict[str, str] = dict(_compat_pickle.IMPORT_MAPPING)


def map_name(module: str, name: str, proto: int) -> tuple[str, str]:
    """The (module, name) `find_class` really imports at protocol `proto`."""
    if proto < 3:
        mapped = _NAME_MAPPING.get((module, name))
        if mapped is not None:
            return mapped
        return _IMPORT_MAPPING.get(module, module), name
    return module, name


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
