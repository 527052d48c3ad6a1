"""`safeload check-signatures FILE...`: the `safeload-verify` pre-commit hook.

Every file given must carry a valid signature (`FILE.sig`) from a key the
repository trusts: `trust = [...]` under `[tool.safeload]` lists public key
files and trust directories (relative to pyproject.toml), and `--key` /
`--trust-dir` add more. Output is for hooks: one line per file that fails,
saying why, then one summary line. "Verified" means signed by a trusted key
and unchanged since; it never means "safe to load" (that is `safeload scan`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import (
    DigestMismatchError,
    InvalidSignatureError,
    MalformedSignatureError,
    MissingFileError,
    MissingSignatureError,
    SignatureError,
    SubjectMismatchError,
    UnknownKeyError,
    UnsignedFileError,
    UnsupportedSignatureError,
)
from ..policy import UserConfig
from .render.text import plural

__all__ = ["add_parser"]

EXIT_OK = 0
EXIT_NOT_VERIFIED = 1
EXIT_ERROR = 2

_REASONS: tuple[tuple[type[SignatureError], str], ...] = (
    (MissingSignatureError, "no signature"),
    (MalformedSignatureError, "malformed signature"),
    (UnsupportedSignatureError, "unsupported signature"),
    (UnknownKeyError, "signed by a key the repository does not trust"),
    (InvalidSignatureError, "invalid signature"),
    (SubjectMismatchError, "signature of another file"),
    (DigestMismatchError, "changed since it was signed"),
    (MissingFileError, "a signed file is missing"),
    (UnsignedFileError, "holds files the signature does not list"),
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `check-signatures` on the `safeload` command."""
    parser = subparsers.add_parser(
        "check-signatures",
        help="check that model files are signed by trusted keys (the safeload-verify hook)",
        description="Each FILE must have a valid signature (FILE.sig) from a key the repository "
        "trusts: trust = [key files or directories] under [tool.safeload], plus --key and "
        "--trust-dir. Prints only the files that fail, then one summary line. A valid "
        "signature says who signed the file and that it is unchanged, not that it is safe "
        "to load: scan it too.",
        epilog="exit codes: 0 every file verified, 1 a file is not, 2 usage, configuration "
        "or I/O error",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="FILE", help="model file")
    parser.add_argument(
        "--key",
        action="append",
        default=[],
        type=Path,
        metavar="KEY",
        help="also trust this public key (PEM) or HMAC key file; repeatable",
    )
    parser.add_argument(
        "--trust-dir", type=Path, metavar="DIR", help="also trust the public keys in DIR"
    )
    parser.add_argument(
        "--no-config", action="store_true", help="ignore [tool.safeload] in pyproject.toml"
    )
    parser.set_defaults(handler=run)


def _trust_sources(args: argparse.Namespace) -> tuple[list[Path], Path | None]:
    config = None if args.no_config else UserConfig.find(Path.cwd())
    keys = list(args.key)
    dirs = [args.trust_dir] if args.trust_dir else []
    for entry in config.trust if config else ():
        (dirs if entry.is_dir() else keys).append(entry)
    if len(dirs) > 1:
        raise SystemExit(
            f"safeload: error: one trust directory at most (got {', '.join(map(str, dirs))}); "
            "list the other keys one by one"
        )
    return keys, dirs[0] if dirs else None


def run(args: argparse.Namespace) -> int:
    """Verify every file; print failures and one summary line."""
    from ..sign import TrustStore, verify

    try:
        keys, trust_dir = _trust_sources(args)
    except SystemExit as exc:
        print(exc.code, file=sys.stderr)
        return EXIT_ERROR
    if not keys and trust_dir is None:
        print(
            'safeload: error: no trusted keys: add trust = ["keys/team.pub"] under '
            "[tool.safeload] in pyproject.toml, or give --key",
            file=sys.stderr,
        )
        return EXIT_ERROR
    trust = TrustStore.load(keys=keys, trust_dir=trust_dir)
    failed = errors = 0
    for path in args.paths:
        try:
            verify(path, trust)
        except SignatureError as exc:
            failed += 1
            reason = next((text for kind, text in _REASONS if isinstance(exc, kind)), "failed")
            print(f"{path}: NOT VERIFIED ({reason}): {exc}")
        except OSError as exc:
            errors += 1
            print(f"{path}: ERROR: {exc.strerror or exc}")
    verified = len(args.paths) - failed - errors
    print(
        f"signatures: {plural(len(args.paths), 'file')}: {verified} verified, "
        f"{failed} not verified, {plural(errors, 'error')}"
    )
    if errors:
        return EXIT_ERROR
    return EXIT_NOT_VERIFIED if failed else EXIT_OK
