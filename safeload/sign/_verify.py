"""Verification in three steps: read the signature file, authenticate the envelope, then
compare the signed digests with files on disk (`verify`) or with bytes the caller holds
(`Authenticated.check_bytes`)."""

from __future__ import annotations

import hmac
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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
    UnknownKeyError,
    UnsignedFileError,
)
from . import _dsse, _statement
from ._bytes import Expected, PendingCheck
from ._keys import HMAC_KEYID_PREFIX, HMAC_TAG_BYTES, PublicKey, TrustStore
from ._paths import inside, signature_path
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

MAX_SIGNATURE_FILE = 64 << 20
"""A larger signature file is refused as malformed (a manifest of ~400k files fits)."""


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
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise MalformedSignatureError(
                f"{path} is not a regular file (a directory, FIFO or device); a signature "
                "file is read only when it is one"
            )
        os.set_blocking(fd, True)
        data = handle.read(MAX_SIGNATURE_FILE + 1)
    if len(data) > MAX_SIGNATURE_FILE:
        raise MalformedSignatureError(f"{path} is larger than {MAX_SIGNATURE_FILE} bytes")
    if not data.strip():
        raise MalformedSignatureError(f"{path} is empty; sign the model again")
    return data


def _trusted_signature(envelope: _dsse.Envelope, trust: TrustStore, where: str) -> tuple[str, str]:
    """`(algorithm, key id)` of the first signature a trusted key verifies."""
    data = envelope.pae()
    unknown: list[str] = []
    failed: list[str] = []
    for index, signature in enumerate(envelope.signatures):
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
                return "hmac-sha256", kid
            else:
                failed.append(signature.keyid)
            continue
        hint = envelope.key_hint if index == 0 and envelope.bundle else signature.keyid or None
        candidates: list[PublicKey]
        if hint is None:  # unnamed: any trusted public key may try
            candidates = trust.public_keys()
        else:
            found = trust.public_key(hint)
            candidates = [found] if found is not None else []
        if not candidates:
            unknown.append(f"public key {hint[:16]}" if hint else "an unnamed public key")
        for public in candidates:
            if public.verify(signature.sig, data):
                return public.algorithm, public.hint
            failed.append(f"{public.algorithm} key {public.hint[:16]}")
    if failed:
        raise InvalidSignatureError(
            f"{where}: the signature by {', '.join(failed)} does not match its payload; "
            "the signature file was altered or made with another key; do not trust the model"
        )
    raise UnknownKeyError(
        f"{where} was signed by {', '.join(unknown)}, which is not trusted "
        f"(trusted: {', '.join(trust.key_ids())}); add the signer's public key or HMAC key "
        "if you trust it"
    )


def authenticate(
    signature: bytes, trust: TrustStore, *, where: str | os.PathLike[str]
) -> Authenticated:
    """Authenticate signature-file bytes against the trust store; no model file is read.

    `where` names the signature in messages (its path). Returns the signed
    statement as an `Authenticated` record, whose `check_bytes` then compares
    bytes the caller holds with it. Raises `MalformedSignatureError`,
    `UnsupportedSignatureError`, `UnknownKeyError` or `InvalidSignatureError`.
    """
    if not isinstance(trust, TrustStore):
        raise TypeError("trust must be a TrustStore")
    where = os.fspath(where)
    envelope = _dsse.parse(signature, where)
    algorithm, key_id = _trusted_signature(envelope, trust, where)
    # Parsed only once a trusted key vouches for the bytes.
    statement = _statement.parse(envelope.payload, where)
    return Authenticated(algorithm, key_id, statement, where)


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

    def start_check(self, data: Buffer, name: str = ".") -> PendingCheck:
        """Like `check_bytes`, but hashing in a background thread while the caller parses.

        Errors known without hashing (`name` not signed, a length the shards
        cannot tile) are raised at once; the rest come from `result()`, which
        returns None only for the signed bytes. `data` must not change until
        then.
        """
        return self._expected(name).start(data, name)

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
            if key not in (".", name):
                raise SubjectMismatchError(
                    f"{where} was made for {key!r}, not {name!r}; "
                    "use the signature that belongs to this file"
                )
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

    def check_bytes(self, data: Buffer, name: str = ".") -> None:
        """Raise `DigestMismatchError` unless `data` is the signed content of verified file
        `name` (`"."` for a single-file model): use it on the bytes actually loaded, so they
        are the bytes that were verified even if the file changed afterwards. Works for
        shard manifests too. `MissingFileError` if `name` was not verified."""
        self._expected(name).check_now(data)

    def start_check(self, data: Buffer, name: str = ".") -> PendingCheck:
        """`check_bytes` in a background thread; see `Authenticated.start_check`."""
        return self._expected(name).start(data, name)

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
) -> Verified:
    """Check a model file or directory against its signature and the trust store.

    Raises `MissingSignatureError`, `MalformedSignatureError`,
    `UnsupportedSignatureError`, `UnknownKeyError`, `InvalidSignatureError`,
    `MissingFileError`, `UnsignedFileError`, `DigestMismatchError` (or its
    `SubjectMismatchError`); `FileNotFoundError` if `path` does not exist.
    Files present but unsigned fail unless `ignore_unsigned`; they are then
    reported in `Verified.unsigned` and must not be loaded.
    """
    if not isinstance(trust, TrustStore):
        raise TypeError("trust must be a TrustStore")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    sig_path = Path(signature) if signature is not None else signature_path(path)
    authenticated = authenticate(read_signature(sig_path, model=path), trust, where=sig_path)
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
    )
