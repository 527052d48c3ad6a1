"""Key files, signers and the trust store.

Asymmetric keys are standard PEM (PKCS#8 private, SubjectPublicKeyInfo public),
so `model_signing` and `openssl` read them too. An asymmetric key is named by
its *hint*: the SHA-256 of its PEM SubjectPublicKeyInfo text, as in the
model-signing bundle. An HMAC key file is JSON:

    {"type": "hmac-sha256", "kid": "2026-11", "secret": "<base64, 32 bytes>"}

and an HMAC key variable holds that JSON or `kid:base64secret` entries
separated by commas or whitespace, oldest first: the last one signs, any one
verifies. The HMAC key actually used is derived from the secret with HKDF, per
purpose, so a secret shared with another tool never yields safeload tags.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InternalError, InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import KeyFileError

__all__ = [
    "EcdsaSigner",
    "Ed25519Signer",
    "HmacKey",
    "HmacSigner",
    "KeyInfo",
    "KeyType",
    "PublicKey",
    "Signer",
    "TrustStore",
    "generate_key",
    "hmac_keys_from_env",
    "load_signer",
    "read_key_file",
]

KeyType = Literal["ed25519", "ecdsa-p256", "hmac"]
KEY_TYPES: tuple[KeyType, ...] = ("ed25519", "ecdsa-p256", "hmac")
HMAC_ALGORITHM = "hmac-sha256"
HMAC_KEYID_PREFIX = "hmac-sha256:"
HMAC_SECRET_BYTES = 32
HMAC_TAG_BYTES = 32
HKDF_INFO = b"safeload/dsse-hmac/v1"
MAX_KEY_FILE = 1 << 20
_KID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_CURVES: dict[str, tuple[str, hashes.HashAlgorithm]] = {
    "secp256r1": ("ecdsa-p256", hashes.SHA256()),
    "secp384r1": ("ecdsa-p384", hashes.SHA384()),
    "secp521r1": ("ecdsa-p521", hashes.SHA512()),
}

AsymmetricPublic = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
AsymmetricPrivate = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


def key_hint(public: AsymmetricPublic) -> str:
    """SHA-256 hex of the PEM SubjectPublicKeyInfo text (model-signing's `publicKey.hint`)."""
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(pem).hexdigest()


def _algorithm(key: AsymmetricPublic, where: str) -> tuple[str, hashes.HashAlgorithm | None]:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519", None
    if key.curve.name not in _CURVES:
        raise KeyFileError(f"{where}: EC curve {key.curve.name} is not supported (use P-256)")
    return _CURVES[key.curve.name]


# -- keys ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PublicKey:
    """A trusted Ed25519 or ECDSA public key."""

    key: AsymmetricPublic
    source: str = "<memory>"
    algorithm: str = field(init=False)
    hint: str = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
            raise KeyFileError(f"{self.source}: only Ed25519 and ECDSA public keys are supported")
        object.__setattr__(self, "algorithm", _algorithm(self.key, self.source)[0])
        object.__setattr__(self, "hint", key_hint(self.key))

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True when `signature` over `data` was made by this key."""
        try:
            if isinstance(self.key, ed25519.Ed25519PublicKey):
                self.key.verify(signature, data)
            else:
                digest = _algorithm(self.key, self.source)[1]
                assert digest is not None
                self.key.verify(signature, data, ec.ECDSA(digest))
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True, repr=False)
class HmacKey:
    """A named HMAC secret (at least 32 bytes). The repr never shows the secret."""

    kid: str
    secret: bytes

    def __post_init__(self) -> None:
        if not _KID.fullmatch(self.kid):
            raise KeyFileError(
                f"HMAC key id {self.kid!r} must be 1-64 letters, digits, '.', '_' or '-'"
            )
        if len(self.secret) < HMAC_SECRET_BYTES:
            raise KeyFileError(
                f"HMAC key {self.kid!r} is {len(self.secret)} bytes; use at least "
                f"{HMAC_SECRET_BYTES} random bytes (safeload keygen --type hmac)"
            )

    def __repr__(self) -> str:
        return f"HmacKey(kid={self.kid!r})"

    @property
    def keyid(self) -> str:
        """The DSSE `keyid` of signatures made with this key."""
        return HMAC_KEYID_PREFIX + self.kid

    def tag(self, data: bytes) -> bytes:
        """HMAC-SHA256 of `data` under the HKDF-derived signing key."""
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(
            self.secret
        )
        return hmac.digest(derived, data, "sha256")

    def to_json(self) -> str:
        """The key-file text (keep it secret)."""
        secret = base64.b64encode(self.secret).decode("ascii")
        return json.dumps({"type": HMAC_ALGORITHM, "kid": self.kid, "secret": secret}) + "\n"


# -- signers ------------------------------------------------------------------------


class Signer(ABC):
    """Something that signs DSSE pre-authentication bytes."""

    algorithm: str
    key_id: str
    """The hint (asymmetric) or kid (HMAC) that verifiers look the key up by."""

    @property
    @abstractmethod
    def bundle(self) -> bool:
        """True when signatures go in an OpenSSF bundle (public-key signers)."""

    @property
    def keyid(self) -> str:
        """The DSSE `keyid` field; empty for bundle signers, as model-signing writes."""
        return ""

    @abstractmethod
    def sign(self, data: bytes) -> bytes:
        """Sign `data` (the DSSE PAE bytes)."""


class Ed25519Signer(Signer):
    """Ed25519 in the OpenSSF bundle shape (safeload-only: model-signing 1.1.1 cannot verify it)."""

    algorithm = "ed25519"

    def __init__(self, private_key: ed25519.Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_hint(self.public_key)

    @property
    def bundle(self) -> bool:
        return True

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


class EcdsaSigner(Signer):
    """ECDSA (P-256 by default) in the OpenSSF bundle shape: model_signing verifies it."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        self.public_key = private_key.public_key()
        self.algorithm, digest = _algorithm(self.public_key, "key")
        assert digest is not None
        self._digest = digest
        self._key = private_key
        self.key_id = key_hint(self.public_key)

    @property
    def bundle(self) -> bool:
        return True

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data, ec.ECDSA(self._digest))


class HmacSigner(Signer):
    """HMAC-SHA256 in a bare DSSE envelope (safeload-only; anyone who can verify can sign)."""

    algorithm = HMAC_ALGORITHM

    def __init__(self, key: HmacKey) -> None:
        self._key = key
        self.key_id = key.kid

    @property
    def bundle(self) -> bool:
        return False

    @property
    def keyid(self) -> str:
        return self._key.keyid

    def sign(self, data: bytes) -> bytes:
        return self._key.tag(data)


# -- key files ----------------------------------------------------------------------


def _read(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_KEY_FILE:
        raise KeyFileError(f"{path} is too large to be a key file")
    return data


def _hmac_from_json(text: str, where: str) -> HmacKey:
    try:
        doc = json.loads(text)
    except ValueError:
        raise KeyFileError(f"{where} is neither a PEM key nor an HMAC key (JSON)") from None
    if not isinstance(doc, dict) or doc.get("type") != HMAC_ALGORITHM:
        raise KeyFileError(f"{where}: not a safeload HMAC key (expected type {HMAC_ALGORITHM!r})")
    kid, secret = doc.get("kid"), doc.get("secret")
    if not isinstance(kid, str) or not isinstance(secret, str):
        raise KeyFileError(f"{where}: HMAC key needs string fields 'kid' and 'secret'")
    return HmacKey(kid, _b64_secret(secret, where))


def _b64_secret(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error, or a character outside ASCII
        raise KeyFileError(f"{where}: the HMAC secret is not base64") from None


def read_key_file(path: Path) -> AsymmetricPrivate | PublicKey | HmacKey:
    """Load a private PEM key, a public PEM key or an HMAC key file."""
    data = _read(path)
    where = str(path)
    if b"-----BEGIN" in data:
        if b"PRIVATE KEY-----" in data:
            try:
                private = serialization.load_pem_private_key(data, password=None)
            except (ValueError, TypeError, UnsupportedAlgorithm, InternalError) as exc:
                raise KeyFileError(f"{where}: unreadable private key ({exc})") from None
            if not isinstance(private, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
                raise KeyFileError(f"{where}: only Ed25519 and ECDSA keys are supported")
            return private
        try:
            public = serialization.load_pem_public_key(data)
        except (ValueError, TypeError, UnsupportedAlgorithm, InternalError) as exc:
            raise KeyFileError(f"{where}: unreadable public key ({exc})") from None
        if not isinstance(public, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
            raise KeyFileError(f"{where}: only Ed25519 and ECDSA keys are supported")
        return PublicKey(public, where)
    return _hmac_from_json(data.decode("utf-8", "replace"), where)


def load_signer(path: Path) -> Signer:
    """A signer from a private key file; the file says which algorithm."""
    key = read_key_file(Path(path))
    if isinstance(key, HmacKey):
        return HmacSigner(key)
    if isinstance(key, PublicKey):
        raise KeyFileError(f"{path} is a public key; signing needs the private key")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return Ed25519Signer(key)
    return EcdsaSigner(key)


def hmac_keys_from_env(variable: str, environ: Mapping[str, str] | None = None) -> list[HmacKey]:
    """HMAC keys from an environment variable, oldest first."""
    value = (os.environ if environ is None else environ).get(variable)
    where = f"${variable}"
    if not value or not value.strip():
        raise KeyFileError(f"environment variable {variable} is not set or empty")
    if value.lstrip().startswith("{"):
        return [_hmac_from_json(value, where)]
    keys = []
    for entry in re.split(r"[\s,]+", value.strip()):
        kid, sep, secret = entry.partition(":")
        if not sep:
            raise KeyFileError(
                f"{where}: expected 'kid:base64secret' entries, got {entry[:12]!r}..."
            )
        keys.append(HmacKey(kid, _b64_secret(secret, where)))
    return keys


# -- trust store --------------------------------------------------------------------


class TrustStore:
    """The keys a verifier accepts, addressed by hint (public keys) or kid (HMAC).

    An empty trust store is an error: it never means "trust anything".
    """

    def __init__(
        self,
        public_keys: Iterable[PublicKey | AsymmetricPublic] = (),
        hmac_keys: Iterable[HmacKey] | Mapping[str, bytes] = (),
    ) -> None:
        self._public: dict[str, PublicKey] = {}
        for key in public_keys:
            entry = key if isinstance(key, PublicKey) else PublicKey(key)
            self._public[entry.hint] = entry
        items = (
            [HmacKey(k, v) for k, v in hmac_keys.items()]
            if isinstance(hmac_keys, Mapping)
            else list(hmac_keys)
        )
        self._hmac: dict[str, HmacKey] = {k.kid: k for k in items}
        if not self._public and not self._hmac:
            raise KeyFileError(
                "the trust store is empty; give a public key or HMAC key (--key, --trust-dir, "
                "--hmac-key-env), an empty store never trusts anything"
            )

    @classmethod
    def load(
        cls,
        keys: Iterable[Path] = (),
        trust_dir: Path | None = None,
        hmac_env: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> TrustStore:
        """Public keys (or HMAC key files) from files, `*.pub`/`*.pem` public keys from a
        directory, HMAC keys from an environment variable."""
        public: list[PublicKey] = []
        secret: list[HmacKey] = []
        paths = [Path(k) for k in keys]
        if trust_dir is not None:
            if not Path(trust_dir).is_dir():
                raise KeyFileError(f"trust directory {trust_dir} does not exist")
            paths += sorted(
                p for p in Path(trust_dir).iterdir() if p.suffix in (".pub", ".pem") and p.is_file()
            )
        for path in paths:
            key = read_key_file(path)
            if isinstance(key, HmacKey):
                secret.append(key)
            elif isinstance(key, PublicKey):
                public.append(key)
            elif trust_dir is not None and path.parent == Path(trust_dir):
                raise KeyFileError(f"{path} is a private key; keep only public keys in {trust_dir}")
            else:
                public.append(PublicKey(key.public_key(), str(path)))
        if hmac_env is not None:
            secret += hmac_keys_from_env(hmac_env, environ)
        return cls(public, secret)

    def public_key(self, hint: str) -> PublicKey | None:
        """The trusted public key with this hint, if any."""
        return self._public.get(hint)

    def public_keys(self) -> list[PublicKey]:
        """Every trusted public key."""
        return list(self._public.values())

    def hmac_key(self, kid: str) -> HmacKey | None:
        """The trusted HMAC key with this kid, if any."""
        return self._hmac.get(kid)

    def key_ids(self) -> list[str]:
        """Short names of every trusted key, for messages."""
        return [f"{k.algorithm}:{h[:16]}" for h, k in self._public.items()] + [
            k.keyid for k in self._hmac.values()
        ]


# -- keygen -------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyInfo:
    """What `generate_key` wrote."""

    type: KeyType
    private: Path
    public: Path | None
    key_id: str


def _write(path: Path, data: bytes, mode: int, overwrite: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise KeyFileError(f"{path} exists; choose another path or pass --force") from None
    except OSError as exc:
        raise KeyFileError(f"cannot write {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "wb") as handle:
        if hasattr(os, "fchmod"):  # an existing file keeps its mode on O_TRUNC
            os.fchmod(handle.fileno(), mode)
        handle.write(data)


def generate_key(
    kind: KeyType, out: Path, *, kid: str | None = None, overwrite: bool = False
) -> KeyInfo:
    """Write a new private key to `out` (mode 0600) and, for Ed25519/ECDSA, `out.pub`."""
    out = Path(out)
    if kind == "hmac":
        key = HmacKey(
            kid or time.strftime("%Y%m%d", time.gmtime()) + "-" + secrets.token_hex(3),
            secrets.token_bytes(HMAC_SECRET_BYTES),
        )
        _write(out, key.to_json().encode("ascii"), 0o600, overwrite)
        return KeyInfo(kind, out, None, key.keyid)
    if kid is not None:
        raise KeyFileError("--kid applies to HMAC keys; public keys are named by their hint")
    private: AsymmetricPrivate
    if kind == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    elif kind == "ecdsa-p256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        raise KeyFileError(f"unknown key type {kind!r}; choose one of {', '.join(KEY_TYPES)}")
    public_path = out.with_name(out.name + ".pub")
    if not overwrite and public_path.exists():
        raise KeyFileError(f"{public_path} exists; choose another path or pass --force")
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write(out, pem, 0o600, overwrite)
    _write(public_path, public_pem, 0o644, overwrite)
    return KeyInfo(kind, out, public_path, key_hint(private.public_key()))
