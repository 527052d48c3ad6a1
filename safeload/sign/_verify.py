"""Verification in three steps: read the signature file, authenticate the envelope, then
compare the signed digests with files on disk (`verify`) or with bytes the caller holds
(`Authenticated.check_bytes`)."""

from __future__ import annotations

import hmac
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from ..errors import (
    DigestMismatchError,
    InvalidSignatureError,
    MalformedSignatureError,
    MissingFileError,
    MissingSignatureError,
    SubjectMismatchError,
    UnexpectedVersionError,
    UnknownKeyError,
    UnsignedFileError,
    UnsupportedSignatureError,
)
from . import _dsse, _statement
from ._bytes import Expected, Filled, PendingCheck
from ._certs import verify_chain
from ._keys import HMAC_KEYID_PREFIX, HMAC_TAG_BYTES, PublicKey, TrustStore
from ._paths import inside, signature_path, subject_name
from ._sigstore import verify_bundle
from ._statement import Resource, Statement

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "MAX_SIGNATURE_FILE",
    "Authenticated",
    "Verified",
    "authenticate",
    "read_signature",
    "verify",
]

MAX_SIGNATURE_FILE = 8 << 20
"""A larger signature file is refused as malformed, before it is read (a manifest of
about 45,000 files fits)."""


def read_signature(
    path: str | os.PathLike[str], *, model: str | os.PathLike[str] | None = None
) -> bytes:
    """The bytes of signature file `path`, at most `MAX_SIGNATURE_FILE` of them.

    Raises `MissingSignatureError` if it does not exist (naming `model`, the
    artifact it should sign, when given) and `MalformedSignatureError` if it
    is empty, too large, or not a regular file (a FIFO is never waited on).
    """
    try:
        # Non-blocking, so that a FIFO is refused below instead of waiting for a writer.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        what = f"{model} is not signed: " if model is not None else ""
        raise MissingSignatureError(
            f"{what}{path} does not exist; refuse it, or sign it with "
            "`safeload sign` (give --signature if the signature is elsewhere)"
        ) from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise MalformedSignatureError(
                f"{path} is not a regular file (a directory, FIFO or device); a signature "
                "file is read only when it is one"
            )
        if info.st_size > MAX_SIGNATURE_FILE:
            raise MalformedSignatureError(
                f"{path} is {info.st_size} bytes, larger than a signature file may be "
                f"({MAX_SIGNATURE_FILE}); it is not read"
            )
        os.set_blocking(fd, True)
        data = handle.read(MAX_SIGNATURE_FILE + 1)
    if len(data) > MAX_SIGNATURE_FILE:
        raise MalformedSignatureError(f"{path} is larger than {MAX_SIGNATURE_FILE} bytes")
    if not data.strip():
        raise MalformedSignatureError(f"{path} is empty; sign the model again")
    return data


@dataclass(frozen=True)
class _Trusted:
    algorithm: str
    key_id: str
    untrusted: tuple[str, ...]
    certificate: str | None
    logged_at: datetime | None = None


def _sigstore_signed(
    signature: bytes, envelope: _dsse.Envelope, trust: TrustStore, where: str
) -> _Trusted:
    """A Sigstore bundle, verified as a whole against the trust store's Sigstore root and
    expected signer, and by nothing else (no raw key, no CA of the store)."""
    sigstore = trust.sigstore()
    if sigstore is None:
        raise UnsupportedSignatureError(
            f"{where} is a Sigstore (keyless) bundle, and no Sigstore trust is given: verify "
            "it against the Sigstore trusted root with the signer's identity and OIDC issuer "
            "(--sigstore-root ROOT --identity ID --issuer URL; `model_signing verify sigstore` "
            "takes them as --trust_config, --identity, --identity_provider)"
        )
    result = verify_bundle(signature, sigstore, where)
    if result.payload != envelope.payload:  # two parsers of one file must agree
        raise MalformedSignatureError(
            f"{where}: the Sigstore bundle's payload reads differently to two parsers; "
            "it is malformed, do not trust the model"
        )
    described = (
        f"Sigstore identity {result.identity!r}, issuer {result.issuer!r}, "
        f"log index {result.log_index}"
    )
    return _Trusted(result.algorithm, result.fingerprint, (), described, result.logged_at)


def _certified(envelope: _dsse.Envelope, trust: TrustStore, where: str) -> tuple[PublicKey, str]:
    """The key of a certificate bundle's leaf and its subject, once its chain verified:
    signature 0 of such a bundle is verified with this key and nothing else."""
    certified = verify_chain(envelope.certificates, trust.ca_certificates(), where)
    return (
        PublicKey(certified.key, f"{where}: certificate {certified.subject!r}"),
        certified.subject,
    )


def _trusted_signature(envelope: _dsse.Envelope, trust: TrustStore, where: str) -> _Trusted:
    """The algorithm, key id and untrusted key ids of an envelope a trusted key signed.

    Every signature is looked at, whatever its position: one that a trusted key
    should verify (its key is trusted, or it names no key) and does not verify
    refuses the whole envelope, so a bogus signature can never sit beside a good
    one. Signatures by keys outside the trust store cannot be checked: they do
    not count and are reported. At least one trusted signature must verify.
    """
    data = envelope.pae()
    unknown: list[str] = []
    failed: list[str] = []
    good: list[tuple[str, str]] = []
    certificate: str | None = None
    for index, signature in enumerate(envelope.signatures):
        if index == 0 and envelope.certificates:
            leaf, subject = _certified(envelope, trust, where)
            if leaf.verify(signature.sig, data):
                good.append((leaf.algorithm, leaf.hint))
                certificate = subject
            else:
                failed.append(f"the certified {leaf.algorithm} key {leaf.hint[:16]}")
            continue
        if signature.keyid.startswith(HMAC_KEYID_PREFIX):
            kid = signature.keyid.removeprefix(HMAC_KEYID_PREFIX)
            if len(signature.sig) != HMAC_TAG_BYTES:
                raise MalformedSignatureError(
                    f"{where}: the HMAC tag of key {kid!r} is {len(signature.sig)} bytes, "
                    f"expected {HMAC_TAG_BYTES}; the signature file is corrupt, sign again"
                )
            key = trust.hmac_key(kid)
            if key is None:
                unknown.append(signature.keyid)
            elif hmac.compare_digest(key.tag(data), signature.sig):
                good.append(("hmac-sha256", kid))
            else:
                failed.append(repr(signature.keyid))
            continue
        hint = envelope.key_hint if index == 0 and envelope.bundle else signature.keyid or None
        candidates: list[PublicKey]
        if hint is None:  # unnamed: any trusted public key may try
            candidates = trust.public_keys()
        else:
            found = trust.public_key(hint)
            candidates = [found] if found is not None else []
            if found is None:
                unknown.append(f"public key {hint[:16]!r}")
                continue
        verified = next((k for k in candidates if k.verify(signature.sig, data)), None)
        if verified is not None:
            good.append((verified.algorithm, verified.hint))
        elif hint is None:
            failed.append(f"signature {index} (it names no key; no trusted key verifies it)")
        else:
            failed.append(f"{candidates[0].algorithm} key {hint[:16]}")
    if failed:
        raise InvalidSignatureError(
            f"{where}: the signature by {', '.join(failed)} does not match its payload; "
            "the signature file was altered or made with another key; do not trust the model"
        )
    if not good:
        raise UnknownKeyError(
            f"{where} was signed by {', '.join(unknown)}, which is not trusted "
            f"(trusted: {', '.join(trust.key_ids())}); add the signer's public key or HMAC "
            "key if you trust it"
        )
    return _Trusted(good[0][0], good[0][1], tuple(unknown), certificate)


def authenticate(
    signature: bytes,
    trust: TrustStore,
    *,
    where: str | os.PathLike[str],
    subject: str | None = None,
) -> Authenticated:
    """Authenticate signature-file bytes against the trust store; no model file is read.

    `where` names the signature in messages (its path). With `subject`, the
    name recorded when it was signed must be that name (the guarded loader
    passes the file's or the signed directory's name), else
    `SubjectMismatchError`. Returns the signed statement as an
    `Authenticated` record, whose `check_bytes` then compares bytes the
    caller holds with it. Raises `MalformedSignatureError`,
    `UnsupportedSignatureError`, `UnknownKeyError` or `InvalidSignatureError`.
    """
    if not isinstance(trust, TrustStore):
        raise TypeError("trust must be a TrustStore")
    where = os.fspath(where)
    envelope = _dsse.parse(signature, where)
    trusted = (
        _sigstore_signed(signature, envelope, trust, where)
        if envelope.sigstore
        else _trusted_signature(envelope, trust, where)
    )
    # Parsed only once a trusted key vouches for the bytes.
    statement = _statement.parse(envelope.payload, where)
    authenticated = Authenticated(
        trusted.algorithm,
        trusted.key_id,
        statement,
        where,
        trusted.untrusted,
        trusted.certificate,
        trusted.logged_at,
    )
    if subject is not None:
        authenticated.check_subject(subject)
    return authenticated


@dataclass(frozen=True)
class Authenticated:
    """A signature a trusted key verified: its statement, not yet compared with any file."""

    algorithm: str
    """`ecdsa-p256`, `ed25519`, `hmac-sha256` (or `ecdsa-p384`/`-p521` for model-signing keys)."""
    key_id: str
    """The public key's hint (SHA-256 of its PEM) or the HMAC key's kid."""
    statement: Statement
    """The signed model-signing statement."""
    where: str
    """The signature's name in messages, usually its path."""
    untrusted: tuple[str, ...] = ()
    """Key ids of other signatures in the envelope, by keys outside the trust store:
    not checked, and not counted."""
    certificate: str | None = None
    """The signing certificate's subject, for a certificate bundle (its chain verified up
    to a trusted CA); `key_id` is then the hint of the certified key. For a Sigstore
    bundle, the verified identity, issuer and log index; `key_id` is then the SHA-256
    of the Fulcio certificate."""
    logged_at: datetime | None = None
    """For a Sigstore bundle, when the transparency log integrated it (verified)."""

    @property
    def signed_at(self) -> datetime | None:
        """When it was signed: the verified log time of a Sigstore bundle, else what the
        statement says (safeload records it; model-signing does not)."""
        return self.logged_at if self.logged_at is not None else self.statement.signed_at

    def check_subject(self, name: str) -> None:
        """Raise `SubjectMismatchError` unless the signed subject is `name`.

        The subject is the file's or directory's name when it was signed: a
        signed file copied under another name, or beside another directory,
        does not verify as that other name.
        """
        if self.statement.subject != name:
            raise SubjectMismatchError(
                f"{self.where} was signed for {self.statement.subject!r}, not {name!r}; "
                "use the signature that belongs to this file, or, if it was renamed on "
                f"purpose, check it as --subject {self.statement.subject!r} (subject=...)"
            )

    def check_version(
        self, *, expect_digest: str | None = None, signed_after: datetime | None = None
    ) -> None:
        """Raise `UnexpectedVersionError` unless this is the pinned version.

        `expect_digest` is the subject digest (`sha256:<hex>` or `<hex>`, as
        `safeload verify` prints it; for a single file its own SHA-256 is
        accepted too); `signed_after` an aware datetime the signing time must
        not precede (a signature that records no time fails it). Together they
        stop an older, validly signed version from being put back.
        """
        if expect_digest is not None:
            want = expect_digest.strip().lower().removeprefix("sha256:")
            own = [self.root_digest]
            if self.method == "files" and len(self.statement.files) == 1:
                own += [r[(0, None)] for r in self.statement.files.values()]
            if not any(hmac.compare_digest(want, d) for d in own):
                raise UnexpectedVersionError(
                    f"{self.where} signs digest sha256:{self.root_digest}, not the expected "
                    f"{expect_digest.strip()[:80]!r}; it is another version, do not load it"
                )
        if signed_after is not None:
            if signed_after.tzinfo is None:
                raise TypeError("signed_after must be an aware datetime (give a time zone)")
            when = self.signed_at
            if when is None or when < signed_after:
                said = (
                    "records no signing time"
                    if when is None
                    else f"was signed {when:%Y-%m-%dT%H:%M:%SZ}"
                )
                raise UnexpectedVersionError(
                    f"{self.where} {said}, before the minimum {signed_after:%Y-%m-%dT%H:%M:%S%z}; "
                    "it is an older version, do not load it"
                )

    @property
    def subject(self) -> str:
        """The artifact name recorded when it was signed."""
        return self.statement.subject

    @property
    def root_digest(self) -> str:
        return self.statement.root_digest

    @property
    def hash_type(self) -> str:
        return self.statement.hash_type

    @property
    def method(self) -> str:
        """`"files"` (one digest per file) or `"shards"` (one per `shard_size` bytes)."""
        return self.statement.method

    @property
    def shard_size(self) -> int | None:
        return self.statement.shard_size

    @property
    def ignore_paths(self) -> tuple[str, ...]:
        return self.statement.ignore_paths

    @property
    def resources(self) -> tuple[Resource, ...]:
        return self.statement.resources

    @property
    def files(self) -> tuple[str, ...]:
        """The signed file names (`"."` for a single file), without shard suffixes."""
        return tuple(sorted(self.statement.files))

    def check_bytes(self, data: Buffer, name: str = ".") -> None:
        """Return if `data` is the signed content of file `name`, else raise.

        `name` is `"."` for a single-file signature (the file's own name is
        accepted too, and then a signature made for another file raises
        `SubjectMismatchError`), or the POSIX path of a file relative to a signed
        directory, exactly as `locate_signature` gives it. For a shard manifest
        the shards must tile exactly `len(data)` and each must match.
        Raises `DigestMismatchError` (or `SubjectMismatchError`), or
        `MissingFileError` when the statement does not list `name`.
        `data` may be any contiguous buffer; it is hashed in place, not copied.
        """
        self._expected(name).check_now(data)

    def start_check(
        self, data: Buffer, name: str = ".", filled: Filled | None = None
    ) -> PendingCheck:
        """Like `check_bytes`, but hashing in a background thread while the caller parses.

        Errors known without hashing (`name` not signed, a length the shards
        cannot tile) are raised at once; the rest come from `result()`, which
        returns None only for the signed bytes. `data` must not change until
        then, except that with `filled` it may still be arriving: each part is
        hashed once `filled.wait` says it is in (a file read into `data` while
        it is hashed).
        """
        return self._expected(name).start(data, name, filled)

    def _expected(self, name: str) -> Expected:
        statement, where = self.statement, self.where
        files = statement.files
        single = set(files) in ({"."}, {statement.subject})
        target: str | None = None
        if name == ".":
            if not single:
                raise MissingFileError(
                    f"{where} lists {len(files)} files of a model directory "
                    f"({_statement.shown_names(files)}), not a single file; "
                    "check each file by its path inside the directory"
                )
            key = next(iter(files))
        elif single:
            key = next(iter(files))
            if "/" in name:
                raise SubjectMismatchError(
                    f"{where} was made for the single file {statement.subject!r}, not for "
                    f"{name!r} inside a directory; use the signature that belongs to this file"
                )
            self.check_subject(name)  # the file's own name: it must be the signed one
            target = name
        elif name in files:
            key = name
        else:
            ignored = _statement.is_ignored(name, statement.ignore_paths)
            raise MissingFileError(
                f"{where} does not list {name!r}"
                + (" (its ignore list excludes it)" if ignored else "")
                + ": it is not part of the signed model; do not load it"
            )

        def mismatch() -> DigestMismatchError:
            if target is not None and statement.subject not in (target, "."):
                return SubjectMismatchError(
                    f"{target}: content does not match {where}, which was made for "
                    f"{statement.subject!r}; use the signature that belongs to this file"
                )
            shown = name if name != "." else statement.subject
            return DigestMismatchError(
                f"{shown} changed since it was signed ({where}); do not load it, "
                "get the original file or sign it again"
            )

        return Expected(files[key], statement.hash_type, statement.shard_size, mismatch)


@dataclass(frozen=True)
class Verified:
    """A successful verification."""

    path: Path
    signature: Path
    algorithm: str
    """`ecdsa-p256`, `ed25519`, `hmac-sha256` (or `ecdsa-p384`/`-p521` for model-signing keys)."""
    key_id: str
    """The public key's hint (SHA-256 of its PEM) or the HMAC key's kid."""
    subject: str
    """The artifact name recorded when it was signed."""
    root_digest: str
    files: tuple[str, ...]
    """Verified resource names (`"."` for a single file)."""
    unsigned: tuple[str, ...] = ()
    """Files present but not signed (only with `ignore_unsigned=True`): never load them."""
    hash_type: str = "sha256"
    digests: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """`{name: hex digest}` of each verified file (empty for shard manifests)."""
    authenticated: Authenticated | None = field(default=None, repr=False, compare=False)
    """The authenticated signature `verify` checked the files against."""
    ignored: tuple[str, ...] = ()
    """Entries present but left out by the ignore list (signed, or given to `verify`),
    a directory as `name/`: not verified, never load them."""
    signed_at: datetime | None = None
    """When it was signed, if the statement says."""
    untrusted: tuple[str, ...] = ()
    """Key ids of other signatures in the envelope by untrusted keys (not checked)."""
    certificate: str | None = None
    """The signing certificate's subject, for a certificate bundle."""

    def check_bytes(self, data: Buffer, name: str = ".") -> None:
        """Raise `DigestMismatchError` unless `data` is the signed content of verified file
        `name` (`"."` for a single-file model): use it on the bytes actually loaded, so they
        are the bytes that were verified even if the file changed afterwards. Works for
        shard manifests too. `MissingFileError` if `name` was not verified."""
        self._expected(name).check_now(data)

    def start_check(
        self, data: Buffer, name: str = ".", filled: Filled | None = None
    ) -> PendingCheck:
        """`check_bytes` in a background thread; see `Authenticated.start_check`."""
        return self._expected(name).start(data, name, filled)

    def _expected(self, name: str) -> Expected:
        if name not in self.files:
            state = "is not signed" if name in self.unsigned else "was not verified"
            raise MissingFileError(
                f"{name!r} {state} ({self.signature} does not list it for {self.path}); "
                "never load it"
            )
        shown = self.path if name == "." else f"{self.path}/{name}"

        def mismatch() -> DigestMismatchError:
            return DigestMismatchError(
                f"{shown} changed after it was verified; do not load it, verify again"
            )

        if self.authenticated is None:  # a record built by hand: whole-file digests only
            if name not in self.digests:
                raise MissingFileError(f"{name!r} has no whole-file digest in {self.signature}")
            return Expected({(0, None): self.digests[name]}, self.hash_type, None, mismatch)
        statement = self.authenticated.statement
        # A single file is "." here but may be listed under its own name (the spec's form).
        key = name if name in statement.files else next(iter(statement.files))
        return Expected(statement.files[key], statement.hash_type, statement.shard_size, mismatch)


def verify(
    path: str | os.PathLike[str],
    trust: TrustStore,
    *,
    signature: str | os.PathLike[str] | None = None,
    ignore_unsigned: bool = False,
    ignore_paths: Iterable[str] = (),
    workers: int | None = None,
    subject: str | None = None,
    any_name: bool = False,
    expect_digest: str | None = None,
    signed_after: datetime | None = None,
) -> Verified:
    """Check a model file or directory against its signature and the trust store.

    The name recorded when it was signed must be `path`'s own name, or
    `subject` when given; `any_name=True` skips that check. `expect_digest`
    and `signed_after` pin a version (see `Authenticated.check_version`).

    Raises `MissingSignatureError`, `MalformedSignatureError`,
    `UnsupportedSignatureError`, `UnknownKeyError`, `InvalidSignatureError`,
    `UnexpectedVersionError`, `MissingFileError`, `UnsignedFileError`,
    `DigestMismatchError` (or its `SubjectMismatchError`); `FileNotFoundError`
    if `path` does not exist. Files present but unsigned fail unless
    `ignore_unsigned`; they are then reported in `Verified.unsigned` and must
    not be loaded. Entries left out by an ignore list are in `Verified.ignored`.
    """
    return verify_reporting(
        path,
        trust,
        [],
        signature=signature,
        ignore_unsigned=ignore_unsigned,
        ignore_paths=ignore_paths,
        workers=workers,
        subject=subject,
        any_name=any_name,
        expect_digest=expect_digest,
        signed_after=signed_after,
    )


def verify_reporting(
    path: str | os.PathLike[str],
    trust: TrustStore,
    seen: list[Authenticated],
    *,
    signature: str | os.PathLike[str] | None = None,
    ignore_unsigned: bool = False,
    ignore_paths: Iterable[str] = (),
    workers: int | None = None,
    subject: str | None = None,
    any_name: bool = False,
    expect_digest: str | None = None,
    signed_after: datetime | None = None,
) -> Verified:
    """`verify`, appending the authenticated signature to `seen` as soon as a trusted key
    vouched for it: a report of a later failure (another name, a changed file) can then
    say what was signed, by whom and when, from the very bytes that were checked."""
    if subject is not None and any_name:
        raise TypeError("give subject= or any_name=True, not both")
    if not isinstance(trust, TrustStore):
        raise TypeError("trust must be a TrustStore")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    sig_path = Path(signature) if signature is not None else signature_path(path)
    expected_name = None if any_name else subject if subject is not None else subject_name(path)
    authenticated = authenticate(read_signature(sig_path, model=path), trust, where=sig_path)
    seen.append(authenticated)
    if expected_name is not None:
        authenticated.check_subject(expected_name)
    authenticated.check_version(expect_digest=expect_digest, signed_after=signed_after)
    statement = authenticated.statement
    ignores = [*ignore_paths, *statement.ignore_paths]
    if path.is_dir():
        inner = inside(sig_path, path)
        if inner is not None:
            ignores.append(inner)
    try:
        model = _statement.list_files(path, ignores, ignore_git=False)
    except _statement.LayoutError as exc:
        raise UnsignedFileError(
            f"{path}: {exc.name} is a {exc.kind}, which a signed model may not contain; remove it"
        ) from None
    files, unsigned, digests = _statement.check(
        model,
        statement,
        where=authenticated.where,
        ignore_unsigned=ignore_unsigned,
        workers=workers,
    )
    return Verified(
        path,
        sig_path,
        authenticated.algorithm,
        authenticated.key_id,
        statement.subject,
        statement.root_digest,
        files,
        unsigned,
        statement.hash_type,
        MappingProxyType(digests),
        authenticated,
        model.ignored,
        authenticated.signed_at,
        authenticated.untrusted,
        authenticated.certificate,
    )
