"""Cryptographic signatures for model files and directories (OpenSSF model-signing format).

>>> from safeload.sign import sign, verify, load_signer, TrustStore  # doctest: +SKIP
>>> sign("model.joblib", load_signer("team.key"))                        # doctest: +SKIP
>>> verify("model.joblib", TrustStore.load(keys=["team.key.pub"]))        # doctest: +SKIP

A signature is a detached sidecar, `<artifact>.sig` (for a directory `DIR`,
`DIR.sig` beside it). Its payload is the model-signing in-toto statement
(one SHA-256 per file) inside a DSSE envelope:

* **ECDSA P-256** and **Ed25519** in the OpenSSF "key" bundle shape. ECDSA
  signatures verify with `model_signing verify key`; Ed25519 ones only with
  safeload (model-signing 1.1.1 cannot verify Ed25519).
* **HMAC-SHA256** in a bare DSSE envelope with `keyid: "hmac-sha256:<kid>"`,
  safeload-only, for a single team or CI: whoever can verify can also sign.

`verify` raises a `SignatureError` subclass for every failure and never
returns False.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from ..errors import (
    DigestMismatchError,
    InvalidSignatureError,
    KeyFileError,
    MalformedSignatureError,
    MissingFileError,
    MissingSignatureError,
    SigningError,
    SubjectMismatchError,
    UnknownKeyError,
    UnsignedFileError,
    UnsupportedSignatureError,
)
from . import _dsse, _statement
from ._keys import (
    HMAC_KEYID_PREFIX,
    HMAC_TAG_BYTES,
    EcdsaSigner,
    Ed25519Signer,
    HmacKey,
    HmacSigner,
    KeyInfo,
    KeyType,
    PublicKey,
    Signer,
    TrustStore,
    generate_key,
    hmac_keys_from_env,
    load_signer,
)

__all__ = [
    "DigestMismatchError",
    "EcdsaSigner",
    "Ed25519Signer",
    "HmacKey",
    "HmacSigner",
    "InvalidSignatureError",
    "KeyFileError",
    "KeyInfo",
    "KeyType",
    "MalformedSignatureError",
    "MissingFileError",
    "MissingSignatureError",
    "PublicKey",
    "SignatureError",
    "Signer",
    "SigningError",
    "SubjectMismatchError",
    "TrustStore",
    "UnknownKeyError",
    "UnsignedFileError",
    "UnsupportedSignatureError",
    "Verified",
    "envelope_for_file",
    "generate_key",
    "hmac_keys_from_env",
    "load_signer",
    "sign",
    "signature_path",
    "verify",
]

MAX_SIGNATURE_FILE = 64 << 20
"""A larger signature file is refused as malformed (a manifest of ~400k files fits)."""


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
    """`{name: hex digest}` of each verified file (empty for shard manifests). A loader
    that reads a file into memory can hash those bytes and compare, so the bytes it
    loads are the bytes that were verified even if the file changes afterwards."""

    def check_bytes(self, data: bytes, name: str = ".") -> None:
        """Raise `DigestMismatchError` unless `data` is the signed content of file `name`
        (`"."` for a single-file model): use it on the bytes actually loaded."""
        want = self.digests.get(name)
        if want is None:
            raise MissingFileError(f"{name!r} has no whole-file digest in {self.signature}")
        hasher = hashlib.new(self.hash_type)
        hasher.update(data)
        if not hmac.compare_digest(hasher.hexdigest(), want):
            shown = self.path if name == "." else f"{self.path}/{name}"
            raise DigestMismatchError(
                f"{shown} changed after it was verified; do not load it, verify again"
            )


def signature_path(path: str | os.PathLike[str]) -> Path:
    """The default sidecar: `<artifact>.sig`, or `DIR.sig` beside a directory."""
    path = Path(path)
    if path.name in ("", ".", ".."):
        path = path.resolve()
    return path.with_name(f"{path.name}.sig")


def _signers(signer: Signer | Sequence[Signer]) -> list[Signer]:
    signers = [signer] if isinstance(signer, Signer) else list(signer)
    if not signers or not all(isinstance(s, Signer) for s in signers):
        raise TypeError("signer must be a Signer (see load_signer) or a sequence of them")
    # A bundle carries one key hint, for signature 0: public-key signers go first.
    return sorted(signers, key=lambda s: not s.bundle)


def _envelope(payload: bytes, signers: list[Signer]) -> bytes:
    data = _dsse.pae(_dsse.PAYLOAD_TYPE, payload)
    signatures = []
    for index, signer in enumerate(signers):
        keyid = signer.keyid if index == 0 or not signer.bundle else signer.key_id
        signatures.append(_dsse.Signature(signer.sign(data), keyid))
    first = signers[0]
    return _dsse.encode(
        payload, signatures, bundle=first.bundle, key_hint=first.key_id if first.bundle else None
    )


def _inside(child: Path, root: Path) -> str | None:
    """`child` relative to directory `root` as POSIX text, or None when outside."""
    try:
        return child.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None


def _subject(path: Path) -> str:
    return path.name if path.name not in ("", ".", "..") else path.resolve().name


def _atomic_write(target: Path, data: bytes, *, durable: bool = True) -> None:
    temp = _temp_name(target)
    try:
        with open(temp, "xb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _temp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")


# -- sign ---------------------------------------------------------------------------


def sign(
    path: str | os.PathLike[str],
    signer: Signer | Sequence[Signer],
    *,
    signature: str | os.PathLike[str] | None = None,
    ignore_paths: Iterable[str] = (),
    workers: int | None = None,
) -> Path:
    """Sign a model file or directory; returns the signature path.

    Directory files are hashed in parallel (`workers` threads, default one
    per core). Git files at the root and a signature inside the directory are
    not signed; `ignore_paths` (exact relative paths) adds more, and the list
    is recorded in the signature. Several signers give several signatures.
    """
    path = Path(path)
    signers = _signers(signer)
    sig_path = Path(signature) if signature is not None else signature_path(path)
    ignores = list(ignore_paths)
    if path.is_dir():
        inner = _inside(sig_path, path)
        if inner is not None:
            ignores.append(inner)
    try:
        model = _statement.list_files(path, ignores)
    except _statement.LayoutError as exc:
        raise SigningError(
            f"cannot sign {path}: {exc.name} is a {exc.kind}; replace it with a regular file "
            "or list it in ignore_paths"
        ) from None
    names = list(model.files)
    digests = _statement.digest_files([(model.files[n], 0, None) for n in names], workers=workers)
    payload = _statement.build(_subject(path), dict(zip(names, digests, strict=True)), ignores)
    _atomic_write(sig_path, _envelope(payload, signers))
    return sig_path


def envelope_for_file(subject: str, sha256_hex: str, signer: Signer | Sequence[Signer]) -> bytes:
    """The signature file for one file whose SHA-256 the caller computed while writing it.

    `safeload.dump` hashes as it serializes, so it signs without reading the
    file back.
    """
    payload = _statement.build(subject, {".": sha256_hex}, ())
    return _envelope(payload, _signers(signer))


# -- verify -------------------------------------------------------------------------


def _read_signature(sig_path: Path, model: Path) -> bytes:
    try:
        with open(sig_path, "rb") as handle:
            data = handle.read(MAX_SIGNATURE_FILE + 1)
    except FileNotFoundError:
        raise MissingSignatureError(
            f"{model} is not signed: {sig_path} does not exist; refuse it, or sign it with "
            "`safeload sign` (give --signature if the signature is elsewhere)"
        ) from None
    if len(data) > MAX_SIGNATURE_FILE:
        raise MalformedSignatureError(f"{sig_path} is larger than {MAX_SIGNATURE_FILE} bytes")
    if not data.strip():
        raise MalformedSignatureError(f"{sig_path} is empty; sign the model again")
    return data


def _authenticate(envelope: _dsse.Envelope, trust: TrustStore, where: str) -> tuple[str, str]:
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
    where = str(sig_path)
    envelope = _dsse.parse(_read_signature(sig_path, path), where)
    algorithm, key_id = _authenticate(envelope, trust, where)
    statement = _statement.parse(envelope.payload, where)
    ignores = [*ignore_paths, *statement.ignore_paths]
    if path.is_dir():
        inner = _inside(sig_path, path)
        if inner is not None:
            ignores.append(inner)
    try:
        model = _statement.list_files(path, ignores, ignore_git=False)
    except _statement.LayoutError as exc:
        raise UnsignedFileError(
            f"{path}: {exc.name} is a {exc.kind}, which a signed model may not contain; remove it"
        ) from None
    files, unsigned, digests = _statement.check(
        model, statement, where=where, ignore_unsigned=ignore_unsigned, workers=workers
    )
    return Verified(
        path,
        sig_path,
        algorithm,
        key_id,
        statement.subject,
        statement.root_digest,
        files,
        unsigned,
        statement.hash_type,
        MappingProxyType(digests),
    )
