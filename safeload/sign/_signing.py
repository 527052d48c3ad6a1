"""Signing: hash the model, build the statement, write the signature file atomically."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import SignatureError, SigningError, UnsupportedSignatureError
from . import _dsse, _statement
from ._keys import Signer
from ._paths import inside, signature_path, subject_name
from ._verify import MAX_SIGNATURE_FILE

__all__ = ["envelope_for_file", "sign"]


def _signers(signer: Signer | Sequence[Signer]) -> list[Signer]:
    signers = [signer] if isinstance(signer, Signer) else list(signer)
    if not signers or not all(isinstance(s, Signer) for s in signers):
        raise TypeError("signer must be a Signer (see load_signer) or a sequence of them")
    if sum(1 for s in signers if s.certificates) > 1:
        raise TypeError("a bundle holds one certificate chain: certify one signer only")
    # A bundle carries one key hint or chain, for signature 0: public-key signers go
    # first, a certified one before them.
    return sorted(signers, key=lambda s: (not s.bundle, not s.certificates))


def _envelope(payload: bytes, signers: list[Signer]) -> bytes:
    data = _dsse.pae(_dsse.PAYLOAD_TYPE, payload)
    signatures = []
    for index, signer in enumerate(signers):
        keyid = signer.keyid if index == 0 or not signer.bundle else signer.key_id
        signatures.append(_dsse.Signature(signer.sign(data), keyid))
    first = signers[0]
    return _dsse.encode(
        payload,
        signatures,
        bundle=first.bundle,
        key_hint=first.key_id if first.bundle else None,
        certificates=first.certificates,
    )


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


def _check_target(sig_path: Path, model: _statement.ModelFiles) -> None:
    """Refuse a signature path that would overwrite anything but an old signature.

    `--signature` pointing at the model, at a file inside a signed directory
    (which would then be left out of the signature) or at a key file would
    destroy it; only a signature file may be replaced.
    """
    try:
        info = os.lstat(sig_path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        raise SigningError(
            f"{sig_path} exists and is not a regular file; refusing to write a signature there"
        )
    for file in model.files.values():
        if os.path.samestat(info, os.stat(file)):
            raise SigningError(
                f"{sig_path} is a file of the model being signed; give another --signature path"
            )
    with open(sig_path, "rb") as handle:
        head = handle.read(MAX_SIGNATURE_FILE + 1)
    try:
        _dsse.parse(head, str(sig_path))
        is_signature = len(head) <= MAX_SIGNATURE_FILE
    except UnsupportedSignatureError:  # a signature all the same (a certificate bundle)
        is_signature = True
    except SignatureError:
        is_signature = False
    if not is_signature:
        raise SigningError(
            f"{sig_path} exists and is not a signature file (a model file, a key?); refusing "
            "to overwrite it: give another --signature path, or remove it first"
        )


def sign(
    path: str | os.PathLike[str],
    signer: Signer | Sequence[Signer],
    *,
    signature: str | os.PathLike[str] | None = None,
    ignore_paths: Iterable[str] = (),
    ignore_git: bool = False,
    workers: int | None = None,
    allow_unsafe: str | None = None,
) -> Path:
    """Sign a model file or directory; returns the signature path.

    Directory files are hashed in parallel (`workers` threads, default one
    per core). Every regular file is signed, except a signature inside the
    directory and what `ignore_paths` (exact relative paths) and, with
    `ignore_git`, `.git`, `.github`, `.gitattributes` and `.gitignore` at the
    root name; that list is recorded in the signed statement. Several signers
    give several signatures. Refuses a model with no file, and a signature
    path holding anything but an old signature. `allow_unsafe` records in the
    statement the scan results the signer signed over (`safeload sign
    --allow-unsafe`: signing itself never scans).
    """
    path = Path(path)
    signers = _signers(signer)
    sig_path = Path(signature) if signature is not None else signature_path(path)
    ignores = list(ignore_paths)
    if ignore_git:
        ignores += _statement.GIT_PATHS
    if path.is_dir():
        inner = inside(sig_path, path)
        if inner is not None:
            ignores.append(inner)
    try:
        model = _statement.list_files(path, ignores)
    except _statement.LayoutError as exc:
        raise SigningError(
            f"cannot sign {path}: {exc.name} is a {exc.kind}; replace it with a regular file "
            "or list it in ignore_paths"
        ) from None
    if not model.files:
        raise SigningError(
            f"cannot sign {path}: it holds no file"
            + (f" besides ignored ones ({', '.join(model.ignored[:5])})" if model.ignored else "")
            + "; a signature of nothing would vouch for anything"
        )
    _check_target(sig_path, model)
    names = list(model.files)
    digests = _statement.digest_files([(model.files[n], 0, None) for n in names], workers=workers)
    payload = _statement.build(
        subject_name(path),
        dict(zip(names, digests, strict=True)),
        ignores,
        allow_unsafe=allow_unsafe,
    )
    _atomic_write(sig_path, _envelope(payload, signers))
    return sig_path


def envelope_for_file(subject: str, sha256_hex: str, signer: Signer | Sequence[Signer]) -> bytes:
    """The signature file for one file whose SHA-256 the caller computed while writing it.

    `safeload.dump` hashes as it serializes, so it signs without reading the
    file back.
    """
    payload = _statement.build(subject, {".": sha256_hex}, ())
    return _envelope(payload, _signers(signer))
