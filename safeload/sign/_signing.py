"""Signing: hash the model, build the statement, write the signature file atomically."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import SigningError
from . import _dsse, _statement
from ._keys import Signer
from ._paths import inside, signature_path, subject_name

__all__ = ["envelope_for_file", "sign"]


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
    names = list(model.files)
    digests = _statement.digest_files([(model.files[n], 0, None) for n in names], workers=workers)
    payload = _statement.build(subject_name(path), dict(zip(names, digests, strict=True)), ignores)
    _atomic_write(sig_path, _envelope(payload, signers))
    return sig_path


def envelope_for_file(subject: str, sha256_hex: str, signer: Signer | Sequence[Signer]) -> bytes:
    """The signature file for one file whose SHA-256 the caller computed while writing it.

    `safeload.dump` hashes as it serializes, so it signs without reading the
    file back.
    """
    payload = _statement.build(subject, {".": sha256_hex}, ())
    return _envelope(payload, _signers(signer))
