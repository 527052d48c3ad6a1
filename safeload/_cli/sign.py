"""The `keygen`, `sign` and `verify` subcommands, wired into `safeload._cli`.

`add_parsers(subparsers)` registers them; each sets `handler=run`, and
`run(args)` returns the exit code: 0 verified (or done), 1 not verified
(missing, malformed, unknown or wrong key, file changed, added or removed),
2 usage or I/O error. Like `_cli`, this is terminal-facing code: the library
modules it calls never print.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from ..errors import (
    DigestMismatchError,
    InvalidSignatureError,
    MalformedSignatureError,
    MissingFileError,
    MissingSignatureError,
    SafeloadError,
    SignatureError,
    SubjectMismatchError,
    UnknownKeyError,
    UnsignedFileError,
    UnsupportedSignatureError,
)
from ..sign import sign, verify
from ..sign._keys import KEY_TYPES, HmacSigner, Signer, TrustStore, generate_key, hmac_keys_from_env
from ..sign._keys import load_signer as _load_signer

__all__ = ["add_parsers", "run"]

EXIT_OK = 0
EXIT_NOT_VERIFIED = 1
EXIT_ERROR = 2

_REASONS: tuple[tuple[type[SignatureError], str], ...] = (
    (MissingSignatureError, "missing signature"),
    (MalformedSignatureError, "malformed signature"),
    (UnsupportedSignatureError, "unsupported signature"),
    (UnknownKeyError, "unknown key"),
    (InvalidSignatureError, "invalid signature"),
    (SubjectMismatchError, "signature of another artifact"),
    (DigestMismatchError, "digest mismatch"),
    (MissingFileError, "file removed"),
    (UnsignedFileError, "unsigned file"),
)


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `keygen`, `sign` and `verify` to the `safeload` command's subparsers."""
    keygen = subparsers.add_parser(
        "keygen",
        help="create a signing key",
        description="Write a new private key to PATH (mode 0600). Ed25519 and ECDSA P-256 keys "
        "are PKCS#8 PEM with the public key (SubjectPublicKeyInfo PEM) in PATH.pub; an HMAC key "
        "is a 32-byte random secret with its key id, as JSON.",
    )
    keygen.add_argument("--type", required=True, choices=KEY_TYPES, help="key type")
    keygen.add_argument("--out", required=True, type=Path, metavar="PATH", help="private key file")
    keygen.add_argument("--kid", metavar="NAME", help="HMAC key id (default: date + random)")
    keygen.add_argument("--force", action="store_true", help="overwrite existing key files")
    keygen.set_defaults(handler=run, sign_command="keygen")

    signer = subparsers.add_parser(
        "sign",
        help="sign a model file or directory",
        description="Write PATH.sig (OpenSSF model-signing format): one SHA-256 per file, signed "
        "with the key. ECDSA P-256 signatures also verify with `model_signing verify key`; "
        "Ed25519 and HMAC ones only with safeload.",
        epilog="exit codes: 0 signed, 2 usage or I/O error",
    )
    signer.add_argument("path", type=Path, metavar="PATH", help="model file or directory")
    signer.add_argument(
        "--key",
        action="append",
        default=[],
        type=Path,
        metavar="KEY",
        help="private key file (Ed25519, ECDSA or HMAC; the file says which); repeatable",
    )
    signer.add_argument(
        "--hmac-key-env",
        metavar="VAR",
        help="sign with the newest (last) HMAC key in environment variable VAR",
    )
    _common(signer)
    signer.set_defaults(handler=run, sign_command="sign")

    verifier = subparsers.add_parser(
        "verify",
        help="verify a signed model file or directory",
        description="Check PATH against PATH.sig: the signature must come from a trusted key and "
        "every file must match, none missing and none added. Also accepts `model_signing sign "
        "key` bundles.",
        epilog="exit codes: 0 verified, 1 not verified, 2 usage or I/O error",
    )
    verifier.add_argument("path", type=Path, metavar="PATH", help="model file or directory")
    verifier.add_argument(
        "--key",
        action="append",
        default=[],
        type=Path,
        metavar="KEY",
        help="trusted public key (PEM) or HMAC key file; repeatable",
    )
    verifier.add_argument(
        "--trust-dir", type=Path, metavar="DIR", help="trust the *.pub and *.pem public keys in DIR"
    )
    verifier.add_argument(
        "--hmac-key-env", metavar="VAR", help="trust the HMAC keys in environment variable VAR"
    )
    verifier.add_argument(
        "--ignore-unsigned-files",
        action="store_true",
        help="accept files the signature does not list (they are reported, never verified)",
    )
    _common(verifier)
    verifier.set_defaults(handler=run, sign_command="verify")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--signature",
        type=Path,
        metavar="SIG",
        help="signature file (default: PATH.sig beside the file or directory)",
    )
    parser.add_argument(
        "--ignore-paths",
        action="extend",
        nargs="+",
        default=[],
        metavar="P",
        help="relative paths inside a model directory to leave out (exact paths; a directory "
        "leaves out everything below it)",
    )


def run(
    args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run `keygen`, `sign` or `verify` as parsed by `add_parsers`; returns the exit code."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        if args.sign_command == "keygen":
            return _keygen(args, out)
        if args.sign_command == "sign":
            return _sign(args, out, err)
        return _verify(args, out, err)
    except SignatureError as exc:
        reason = next((text for kind, text in _REASONS if isinstance(exc, kind)), "failed")
        print(f"safeload: not verified ({reason}): {exc}", file=err)
        return EXIT_NOT_VERIFIED
    except SafeloadError as exc:
        print(f"safeload: error: {exc.diagnostics()}", file=err)
        return EXIT_ERROR
    except OSError as exc:
        print(f"safeload: error: {exc}", file=err)
        return EXIT_ERROR


def _keygen(args: argparse.Namespace, out: TextIO) -> int:
    info = generate_key(args.type, args.out, kid=args.kid, overwrite=args.force)
    print(f"wrote private key {info.private} (mode 0600, keep it secret)", file=out)
    if info.public is not None:
        print(f"wrote public key {info.public}", file=out)
    print(f"key id: {info.key_id}", file=out)
    return EXIT_OK


def _sign(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    signers: list[Signer] = [_load_signer(path) for path in args.key]
    if args.hmac_key_env:
        signers.append(HmacSigner(hmac_keys_from_env(args.hmac_key_env)[-1]))
    if not signers:
        print("safeload: error: give a signing key with --key or --hmac-key-env", file=err)
        return EXIT_ERROR
    written = sign(args.path, signers, signature=args.signature, ignore_paths=args.ignore_paths)
    keys = ", ".join(f"{s.algorithm} key {s.key_id[:16]}" for s in signers)
    print(f"signed {args.path} with {keys}: wrote {written}", file=out)
    return EXIT_OK


def _verify(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    trust = TrustStore.load(keys=args.key, trust_dir=args.trust_dir, hmac_env=args.hmac_key_env)
    result = verify(
        args.path,
        trust,
        signature=args.signature,
        ignore_unsigned=args.ignore_unsigned_files,
        ignore_paths=args.ignore_paths,
    )
    count = len(result.files)
    print(
        f"verified {result.path}: {count} file{'s' if count != 1 else ''}, "
        f"{result.algorithm} key {result.key_id[:16]}, signature {result.signature}",
        file=out,
    )
    if result.unsigned:
        print(
            f"safeload: warning: {len(result.unsigned)} unsigned file(s) were not verified, "
            f"never load them: {', '.join(result.unsigned)}",
            file=err,
        )
    return EXIT_OK
