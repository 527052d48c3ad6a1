"""The `keygen`, `sign` and `verify` subcommands, wired into `safeload._cli`.

`add_parsers(subparsers)` registers them; each sets `handler=run`, and
`run(args)` returns the exit code: 0 verified (or done), 1 not verified
(missing, malformed, unknown or wrong key, file changed, added or removed,
another name or version), 2 usage, I/O or internal error. An unexpected
exception is reported as an internal error (2), never as a verdict. Like
`_cli`, this is terminal-facing code: the library modules it calls never
print. Every string that comes from a file (names, key ids, messages quoting
them) is escaped before it reaches the terminal.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..errors import (
    DigestMismatchError,
    InvalidSignatureError,
    KeyFileError,
    MalformedSignatureError,
    MissingFileError,
    MissingSignatureError,
    SafeloadError,
    SignatureError,
    SigstoreIdentityError,
    SubjectMismatchError,
    TransparencyLogError,
    UnexpectedVersionError,
    UnknownKeyError,
    UnsignedFileError,
    UnsupportedSignatureError,
    UntrustedCertificateError,
)

if TYPE_CHECKING:
    from ..sign import Authenticated, Signer, TrustStore, Verified

# The signing machinery (and `cryptography`) is imported by the commands that
# use it, not with the CLI: `safeload scan` never loads it.

__all__ = ["add_parsers", "escape", "run"]

EXIT_OK = 0
EXIT_NOT_VERIFIED = 1
EXIT_ERROR = 2

_REASONS: tuple[tuple[type[SignatureError], str, str], ...] = (
    (MissingSignatureError, "missing-signature", "missing signature"),
    (MalformedSignatureError, "malformed-signature", "malformed signature"),
    (UnsupportedSignatureError, "unsupported-signature", "unsupported signature"),
    (SigstoreIdentityError, "identity-mismatch", "another signer identity or issuer"),
    (UntrustedCertificateError, "untrusted-certificate", "untrusted signing certificate"),
    (UnknownKeyError, "unknown-key", "unknown key"),
    (TransparencyLogError, "transparency-log", "not proven in the transparency log"),
    (InvalidSignatureError, "invalid-signature", "invalid signature"),
    (SubjectMismatchError, "subject-mismatch", "signature of another artifact"),
    (UnexpectedVersionError, "unexpected-version", "not the pinned version"),
    (DigestMismatchError, "digest-mismatch", "digest mismatch"),
    (MissingFileError, "missing-file", "file removed"),
    (UnsignedFileError, "unsigned-file", "unsigned file"),
)
"""Each failure's reason tag (JSON) and words (text); the first matching class wins."""


def escape(text: str) -> str:
    """`text` with every character a terminal could act on shown as an escape.

    Control characters (ESC, CR, backspace, ...), bidirectional overrides and
    other invisible format characters come from file names, key ids and
    signed subjects; printed raw they could redraw a "verified" line.
    """
    if text.isprintable():
        return text
    shown = []
    for char in text:
        if char.isprintable():
            shown.append(char)
        else:
            code = ord(char)
            shown.append(
                f"\\x{code:02x}"
                if code < 0x100
                else f"\\u{code:04x}"
                if code < 0x10000
                else f"\\U{code:08x}"
            )
    return "".join(shown)


def _say(stream: TextIO, text: str) -> None:
    print(escape(text), file=stream)


class _KeyTypes:
    """`safeload.sign`'s key types for argparse's `choices`, looked up only when a
    `keygen` command line is checked or its help shown."""

    @staticmethod
    def _types() -> tuple[str, ...]:
        from ..sign._keys import KEY_TYPES

        return KEY_TYPES

    def __contains__(self, value: object) -> bool:
        return value in self._types()

    def __iter__(self) -> Iterator[str]:
        return iter(self._types())


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `keygen`, `sign` and `verify` to the `safeload` command's subparsers."""
    keygen = subparsers.add_parser(
        "keygen",
        help="create a signing key",
        description="Write a new private key to PATH (mode 0600). Ed25519 and ECDSA P-256 keys "
        "are PKCS#8 PEM with the public key (SubjectPublicKeyInfo PEM) in PATH.pub; an HMAC key "
        "is a 32-byte random secret with its key id, as JSON. A symbolic link at PATH is refused.",
    )
    keygen.add_argument(
        "--type",
        choices=_KeyTypes(),  # a lazy container, not a list
        metavar="TYPE",
        help="key type: %(choices)s (default: the recommended one, ecdsa-p256)",
    )
    keygen.add_argument("--out", required=True, type=Path, metavar="PATH", help="private key file")
    keygen.add_argument("--kid", metavar="NAME", help="HMAC key id (default: date + random)")
    keygen.add_argument("--force", action="store_true", help="overwrite existing key files")
    _password(keygen, "encrypt the private key with the password in environment variable VAR")
    keygen.set_defaults(handler=run, sign_command="keygen")

    signer = subparsers.add_parser(
        "sign",
        help="sign a model file or directory",
        description="Write PATH.sig (OpenSSF model-signing format): one SHA-256 per file, signed "
        "with the key, with the signing time. Every file is scanned first: one whose scan is "
        "not safe (or not-a-pickle) is refused unless --allow-unsafe, which the signature then "
        "records. ECDSA P-256 signatures also verify with `model_signing verify key`; Ed25519 "
        "and HMAC ones only with safeload.",
        epilog="exit codes: 0 signed, 1 refused (a file's scan is not safe), 2 usage or I/O error",
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
    signer.add_argument(
        "--ignore-git-paths",
        action="store_true",
        help="leave .git, .github, .gitattributes and .gitignore at the root of a directory out "
        "of the signature (recorded in it); by default every file is signed",
    )
    signer.add_argument(
        "--certificate",
        type=Path,
        metavar="PEM",
        help="the signing key's certificate: write a model-signing certificate bundle "
        "(one --key, ECDSA or Ed25519)",
    )
    signer.add_argument(
        "--certificate-chain",
        action="append",
        default=[],
        type=Path,
        metavar="PEM",
        help="intermediate certificates to put in the bundle; repeatable",
    )
    signer.add_argument(
        "--allow-unsafe",
        action="store_true",
        help="sign even though a file's scan is not safe; the scan results are recorded in the "
        "signed statement, and verify shows them",
    )
    _password(signer, "the password of an encrypted private key is in environment variable VAR")
    _common(signer, "signature file to write (default: PATH.sig beside the file or directory)")
    signer.set_defaults(handler=run, sign_command="sign")

    verifier = subparsers.add_parser(
        "verify",
        help="verify a signed model file or directory",
        description="Check PATH against PATH.sig: the signature must come from a trusted key, "
        "name PATH (its signed subject), and every file must match, none missing and none "
        "added. Also accepts `model_signing sign key` and `certificate` bundles, and "
        "`sigstore` ones offline (--sigstore-root, --identity, --issuer).",
        epilog="exit codes: 0 verified, 1 not verified, 2 usage, I/O or internal error",
    )
    verifier.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="model files or directories"
    )
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
        "--ca-cert",
        action="append",
        default=[],
        type=Path,
        metavar="PEM",
        help="trust certificate bundles whose chain leads to a CA certificate in PEM; repeatable",
    )
    sigstore = verifier.add_argument_group(
        "Sigstore bundles",
        "verify `model_signing sign sigstore` bundles offline, against a trusted root; the "
        "signer's identity and OIDC issuer must both match exactly",
    )
    sigstore.add_argument(
        "--sigstore-root",
        type=Path,
        metavar="JSON",
        help="Sigstore trusted_root.json (or a client trust config holding one)",
    )
    sigstore.add_argument(
        "--identity", metavar="ID", help="expected signer: the certificate's email or URI"
    )
    sigstore.add_argument(
        "--issuer", metavar="URL", help="expected OIDC issuer of the signer's identity"
    )
    verifier.add_argument(
        "--ignore-unsigned-files",
        action="store_true",
        help="accept files the signature does not list (they are reported, never verified)",
    )
    names = verifier.add_mutually_exclusive_group()
    names.add_argument(
        "--subject",
        metavar="NAME",
        help="the name the signature must record (default: PATH's own name)",
    )
    names.add_argument(
        "--any-name",
        action="store_true",
        help="accept a signature recorded under any name (a renamed file)",
    )
    verifier.add_argument(
        "--expect-digest",
        metavar="DIGEST",
        help="the signed digest must be this one (sha256:HEX, as verify prints it): pins a version",
    )
    verifier.add_argument(
        "--signed-after",
        type=_time,
        metavar="TIME",
        help="refuse signatures made before TIME (ISO 8601, e.g. 2026-11-30T12:00:00Z) or "
        "recording no time: stops an older signed version from being put back",
    )
    verifier.add_argument(
        "--format", choices=("text", "json"), default="text", help="output format"
    )
    _common(verifier, "signature file (default: PATH.sig beside the file or directory)")
    verifier.set_defaults(handler=run, sign_command="verify")


def _password(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--password-env", metavar="VAR", help=text)


def _time(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _common(parser: argparse.ArgumentParser, signature_help: str) -> None:
    parser.add_argument("--signature", type=Path, metavar="SIG", help=signature_help)
    # One path per flag, repeatable (as model_signing's --ignore_paths): a flag
    # taking several would swallow the PATH after it.
    parser.add_argument(
        "--ignore-path",
        "--ignore-paths",
        dest="ignore_paths",
        action="append",
        default=[],
        metavar="P",
        help="a relative path inside a model directory to leave out (exact; a directory "
        "leaves out everything below it); repeatable",
    )


def _reason(exc: SignatureError) -> tuple[str, str]:
    return next(
        ((tag, words) for kind, tag, words in _REASONS if isinstance(exc, kind)),
        ("not-verified", "failed"),
    )


def run(
    args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run `keygen`, `sign` or `verify` as parsed by `add_parsers`; returns the exit code."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        if args.sign_command == "keygen":
            return _keygen(args, out, err)
        if args.sign_command == "sign":
            return _sign(args, out, err)
        return _verify(args, out, err)
    except SignatureError as exc:
        _say(err, f"safeload: not verified ({_reason(exc)[1]}): {exc}")
        return EXIT_NOT_VERIFIED
    except SafeloadError as exc:
        _say(err, f"safeload: error: {exc.diagnostics()}")
        return EXIT_ERROR
    except OSError as exc:
        _say(err, f"safeload: error: {exc}")
        return EXIT_ERROR
    except Exception as exc:  # a bug: never reported as a verdict
        _say(err, f"safeload: internal error ({type(exc).__name__}: {exc}); please report it")
        return EXIT_ERROR


@contextmanager
def _warnings_to(err: TextIO) -> Iterator[None]:
    """Key warnings raised by the library, printed as the CLI's warnings."""
    from ..sign import KeyWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", KeyWarning)
        yield
    for item in caught:
        if issubclass(item.category, KeyWarning):
            _say(err, f"safeload: warning: {item.message}")
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)


def _password_of(args: argparse.Namespace, path: Path | None, err: TextIO) -> bytes | None:
    from ..sign._keys import is_encrypted

    variable: str | None = args.password_env
    if variable is not None:
        value = os.environ.get(variable)
        if not value:
            raise KeyFileError(f"environment variable {variable} is not set or empty")
        return value.encode("utf-8")
    if path is not None and is_encrypted(path):
        if not sys.stdin.isatty():
            raise KeyFileError(
                f"{path} is an encrypted private key; give its password with --password-env VAR"
            )
        return getpass.getpass(f"password for {escape(str(path))}: ", stream=err).encode("utf-8")
    return None


def _keygen(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..sign import generate_key
    from ..sign._keys import RECOMMENDED_KEY_TYPE

    password = _password_of(args, None, err)
    kind = args.type if args.type is not None else RECOMMENDED_KEY_TYPE
    info = generate_key(kind, args.out, kid=args.kid, overwrite=args.force, password=password)
    encrypted = ", encrypted" if password else ""
    _say(out, f"wrote private key {info.private} (mode 0600{encrypted}, keep it secret)")
    if info.public is not None:
        _say(out, f"wrote public key {info.public}")
    _say(out, f"key id: {info.key_id}")
    return EXIT_OK


def _sign(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..sign import HmacSigner, certify, hmac_keys_from_env, sign
    from ..sign import load_signer as _load_signer

    signers: list[Signer] = []
    with _warnings_to(err):
        for path in args.key:
            signers.append(_load_signer(path, password=_password_of(args, path, err)))
    if args.hmac_key_env:
        signers.append(HmacSigner(hmac_keys_from_env(args.hmac_key_env)[-1]))
    if not signers:
        _say(err, "safeload: error: give a signing key with --key or --hmac-key-env")
        return EXIT_ERROR
    if args.certificate is not None:
        if len(args.key) != 1:
            _say(err, "safeload: error: --certificate certifies one --key; give exactly one")
            return EXIT_ERROR
        certify(signers[0], args.certificate, args.certificate_chain)
    elif args.certificate_chain:
        _say(err, "safeload: error: --certificate-chain needs --certificate")
        return EXIT_ERROR
    if args.signature is not None:
        for key in args.key:
            if _same_file(args.signature, key) or _same_file(args.signature, _pub(key)):
                _say(err, f"safeload: error: --signature {args.signature} is a key file; refusing")
                return EXIT_ERROR
    unsafe = _not_safe(args)
    if unsafe and not args.allow_unsafe:
        _say(
            err,
            f"safeload: refused to sign {args.path}: a signature says who made a file, and "
            f"these do not scan safe: {'; '.join(unsafe)}. Run `safeload scan` to see why; "
            "--allow-unsafe signs anyway and records this in the signature",
        )
        return EXIT_NOT_VERIFIED
    written = sign(
        args.path,
        signers,
        signature=args.signature,
        ignore_paths=args.ignore_paths,
        ignore_git=args.ignore_git_paths,
        allow_unsafe="; ".join(unsafe) if unsafe else None,
    )
    keys = ", ".join(f"{s.algorithm} key {s.key_id[:16]}" for s in signers)
    _say(out, f"signed {args.path} with {keys}: wrote {written}")
    if unsafe:
        _say(
            err,
            f"safeload: warning: signed with --allow-unsafe over: {'; '.join(unsafe)} "
            "(recorded in the signature)",
        )
    return EXIT_OK


def _not_safe(args: argparse.Namespace) -> list[str]:
    """`name: verdict (rule IDs)` for each file to be signed whose scan is neither safe nor
    not-a-pickle (files no loader would unpickle, such as a directory's config.json).
    The policy is the project's (`[tool.safeload]` above the working directory), as
    `safeload scan` run there uses it."""
    from ..policy import Policy, UserConfig
    from ..report import Verdict
    from ..scan import scan_file
    from ..sign._statement import list_files

    policy = Policy.build(config=UserConfig.find(Path.cwd()))
    path = Path(args.path)
    model = list_files(path, args.ignore_paths, ignore_git=args.ignore_git_paths)
    found = []
    for name, file in model.files.items():
        report = scan_file(file, policy)
        if report.verdict in (Verdict.SAFE, Verdict.NOT_A_PICKLE):
            continue
        rules = sorted({f.rule for f in report.findings if f.verdict is not None})
        shown = path.name if name == "." else name
        found.append(f"{shown}: {report.verdict.value} ({', '.join(rules) or 'no rule'})")
    return found


def _pub(path: Path) -> Path:
    return path.with_name(path.name + ".pub")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _verify(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..sign import SigstoreTrust, TrustStore

    if args.signature is not None and len(args.paths) > 1:
        _say(err, "safeload: error: --signature names the signature of one PATH; give one PATH")
        return EXIT_ERROR
    given = [args.sigstore_root is not None, args.identity is not None, args.issuer is not None]
    if any(given) and not all(given):
        _say(err, "safeload: error: --sigstore-root, --identity and --issuer go together")
        return EXIT_ERROR
    sigstore = (
        SigstoreTrust.load(args.sigstore_root, identity=args.identity, issuer=args.issuer)
        if args.sigstore_root is not None
        else None
    )
    with _warnings_to(err):
        trust = TrustStore.load(
            keys=args.key,
            trust_dir=args.trust_dir,
            hmac_env=args.hmac_key_env,
            ca_certs=args.ca_cert,
            sigstore=sigstore,
        )
    results = [_verify_one(path, trust, args) for path in args.paths]
    if args.format == "json":
        document = {"results": [entry for entry, _ in results]}
        print(json.dumps(document, indent=2), file=out)  # ensure_ascii: nothing raw
    else:
        for entry, outcome in results:
            _report_text(entry, outcome, out, err)
    codes = [code for _, (code, _) in results]
    return max(codes)


_Outcome = tuple[int, "Verified | None"]


def _verify_one(
    path: Path, trust: TrustStore, args: argparse.Namespace
) -> tuple[dict[str, Any], _Outcome]:
    from ..sign._verify import verify_reporting

    entry: dict[str, Any] = {"path": str(path)}
    seen: list[Authenticated] = []
    try:
        result = verify_reporting(
            path,
            trust,
            seen,
            signature=args.signature,
            ignore_unsigned=args.ignore_unsigned_files,
            ignore_paths=args.ignore_paths,
            subject=args.subject,
            any_name=args.any_name,
            expect_digest=args.expect_digest,
            signed_after=args.signed_after,
        )
    except SignatureError as exc:
        tag, words = _reason(exc)
        entry.update(verdict="not verified", reason=tag, reason_text=words, message=str(exc))
        if seen:  # authenticated, then refused: say what was signed
            entry.update(_signed(seen[0]))
        return entry, (EXIT_NOT_VERIFIED, None)
    except (SafeloadError, OSError) as exc:
        message = exc.diagnostics() if isinstance(exc, SafeloadError) else str(exc)
        entry.update(verdict="error", reason="error", message=message)
        return entry, (EXIT_ERROR, None)
    except Exception as exc:  # a bug: never reported as a verdict
        entry.update(
            verdict="error",
            reason="internal-error",
            message=f"internal error ({type(exc).__name__}: {exc}); please report it",
        )
        return entry, (EXIT_ERROR, None)
    entry.update(verdict="verified", reason="verified")
    if result.authenticated is not None:
        entry.update(_signed(result.authenticated))
    statement = result.authenticated.statement if result.authenticated is not None else None
    entry.update(
        allow_unsafe=statement.allow_unsafe if statement is not None else None,
        signature=str(result.signature),
        files=[{"name": n, "digest": result.digests.get(n)} for n in result.files],
        unsigned=list(result.unsigned),
        ignored=list(result.ignored),
    )
    return entry, (EXIT_OK, result)


def _signed(auth: Authenticated) -> dict[str, Any]:
    """What an authenticated signature says: the JSON fields of a result."""
    from ..sign._statement import format_time

    return {
        "subject": auth.subject,
        "digest": f"sha256:{auth.root_digest}",
        "algorithm": auth.algorithm,
        "key_id": auth.key_id,
        "signed_at": format_time(auth.signed_at) if auth.signed_at is not None else None,
        "hash_type": auth.hash_type,
        "untrusted_signatures": list(auth.untrusted),
        "certificate": auth.certificate,
        "signature": auth.where,
    }


def _report_text(entry: dict[str, Any], outcome: _Outcome, out: TextIO, err: TextIO) -> None:
    from ..sign._statement import format_time

    code, result = outcome
    if result is None:
        if code == EXIT_NOT_VERIFIED:
            _say(err, f"safeload: not verified ({entry['reason_text']}): {entry['message']}")
        else:
            _say(err, f"safeload: error: {entry['message']}")
        return
    count = len(result.files)
    when = (
        format_time(result.signed_at) if result.signed_at is not None else "at an unrecorded time"
    )
    certified = f" (certificate {result.certificate!r})" if result.certificate else ""
    _say(
        out,
        f"signature valid: {result.path}: subject {result.subject!r}, {count} file"
        f"{'s' if count != 1 else ''}, sha256:{result.root_digest}, {result.algorithm} key "
        f"{result.key_id[:16]}{certified}, signed {when}, signature {result.signature}",
    )
    # Who signed it, unchanged since: not whether loading it is safe.
    _say(out, f"  not a safety verdict: `safeload scan {result.path}` judges what loading runs")
    statement = result.authenticated.statement if result.authenticated is not None else None
    if statement is not None and statement.allow_unsafe is not None:
        _say(
            err,
            "safeload: warning: signed with --allow-unsafe over these scan results: "
            f"{statement.allow_unsafe}",
        )
    if result.unsigned:
        _say(
            err,
            f"safeload: warning: {len(result.unsigned)} unsigned file(s) were not verified, "
            f"never load them: {', '.join(result.unsigned)}",
        )
    if result.ignored:
        _say(
            err,
            f"safeload: warning: {len(result.ignored)} path(s) are left out by the ignore list "
            f"and were not verified, never load them: {', '.join(result.ignored)}",
        )
    if result.untrusted:
        _say(
            err,
            f"safeload: note: {len(result.untrusted)} other signature(s) by untrusted keys were "
            f"not checked: {', '.join(result.untrusted)}",
        )
