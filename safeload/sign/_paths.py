"""Where signatures live: `<artifact>.sig`, `DIR.sig` beside a directory, and finding
the signature that covers a file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from ..errors import MissingSignatureError

__all__ = ["SignatureLocation", "inside", "locate_signature", "signature_path", "subject_name"]


def signature_path(path: str | os.PathLike[str]) -> Path:
    """The default sidecar: `<artifact>.sig`, or `DIR.sig` beside a directory."""
    path = Path(path)
    if path.name in ("", ".", ".."):
        path = path.resolve()
    return path.with_name(f"{path.name}.sig")


def inside(child: Path, root: Path) -> str | None:
    """`child` relative to directory `root` as POSIX text, or None when outside."""
    try:
        return child.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None


def subject_name(path: Path) -> str:
    """The artifact name recorded in a statement's subject."""
    return path.name if path.name not in ("", ".", "..") else path.resolve().name


class SignatureLocation(NamedTuple):
    """The signature that covers a file, found by `locate_signature`."""

    signature: Path
    """The signature file (absolute)."""
    root: Path
    """What it signs: the file itself, or the signed directory that holds it (absolute)."""
    name: str
    """The file's name in the statement: `"."` for a single file, else its POSIX
    path relative to `root`. Pass it to `check_bytes`."""


def _absolute(path: Path) -> Path:
    """`path` made absolute without resolving symbolic links, except before a `..`.

    `..` means the physical parent to the operating system, so the part up to
    the last `..` is resolved as `open()` would; collapsing it as text could
    name another file than the one the loader opens.
    """
    parts = path.parts
    if ".." not in parts:
        return path.absolute()
    last = len(parts) - 1 - parts[::-1].index("..")
    return Path(os.path.realpath(Path(*parts[: last + 1]))).joinpath(*parts[last + 1 :])


def locate_signature(path: str | os.PathLike[str]) -> SignatureLocation:
    """The signature covering file `path`: its own `PATH.sig`, else the nearest `DIR.sig`
    of a directory above it.

    1. `PATH.sig` beside the file, if anything exists under that name:
       `(PATH.sig, PATH, ".")`.
    2. Otherwise each directory above the file, nearest first: `DIR.sig` beside
       `DIR` gives `(DIR.sig, DIR, relative POSIX path of the file in DIR)`.
       The nearest one wins, and the search never goes further: if its
       statement does not list the file, `check_bytes` refuses the file
       rather than this function looking for another signature.
    3. The walk stops at a symbolic link (the file itself, or a directory
       between the file and a candidate `DIR`): a signed directory cannot
       contain links, so nothing above a link can cover the file, and a
       link is never followed to look beside its target. Links *above* the
       signed directory are fine.

    Raises `MissingSignatureError` when no signature is found and
    `FileNotFoundError` when `path` does not exist. A signature kept elsewhere
    (`sign(..., signature=...)`) is not found: give it explicitly. Nothing is
    authenticated here; the bytes are checked by `authenticate(...).check_bytes`.
    """
    given = Path(path)
    here = _absolute(given)
    if not os.path.lexists(here):
        raise FileNotFoundError(f"{given}: no such file or directory")
    own = signature_path(here)
    if os.path.lexists(own):
        return SignatureLocation(own, here, ".")
    parts: list[str] = []
    node = here
    stopped = ""
    while node.parent.name:  # nothing can sit beside the filesystem root
        if node.is_symlink():
            stopped = (
                f"; the search stopped at symbolic link {node}, which no signed directory "
                "may contain"
            )
            break
        parts.append(node.name)
        node = node.parent
        candidate = node.with_name(f"{node.name}.sig")
        if os.path.lexists(candidate):
            return SignatureLocation(candidate, node, "/".join(reversed(parts)))
    raise MissingSignatureError(
        f"{given} is not signed: neither {own.name} beside it nor DIR.sig beside any "
        f"directory above it exists{stopped}; refuse it, or sign it with `safeload sign` "
        "(give the signature explicitly if it is kept elsewhere)"
    )
