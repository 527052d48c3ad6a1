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
import stat
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cryptography import x509
from cryptography.exceptions import InternalError, InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import KeyFileError
from . import _json
from ._certs import load_certificates
from ._ed25519 import key_problem

if TYPE_CHECKING:
    from ._sigstore import SigstoreTrust

__all__ = [
    "EcdsaSigner",
    "Ed25519Signer",
    "HmacKey",
    "HmacSigner",
    "KeyInfo",
    "KeyType",
    "KeyWarning",
    "PublicKey",
    "Signer",
    "TrustStore",
    "certify",
    "generate_key",
    "hmac_keys_from_env",
    "load_ca_certificates",
    "load_signer",
    "read_key_file",
]

KeyType = Literal["ed25519", "ecdsa-p256", "hmac"]
KEY_TYPES: tuple[KeyType, ...] = ("ed25519", "ecdsa-p256", "hmac")
RECOMMENDED_KEY_TYPE: KeyType = "ecdsa-p256"
"""What `safeload keygen` makes when no `--type` is given, the type docs/signing.md
recommends: its signatures verify with safeload and with `model_signing verify key`
(model-signing 1.1.1 verifies EC keys only; Ed25519 ones verify with safeload only)."""
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


class KeyWarning(UserWarning):
    """A key that works but is handled unsafely: a private key others can read, a
    private key given where a public one belongs."""


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
        if isinstance(self.key, ed25519.Ed25519PublicKey):
            raw = self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            problem = key_problem(raw)
            if problem is not None:
                raise KeyFileError(
                    f"{self.source}: the Ed25519 public key {raw.hex()[:16]}... {problem}; "
                    "no real signer has such a key, refuse it"
                )
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
    certificates: tuple[bytes, ...] = ()
    """DER certificates (leaf first) that vouch for the key: the signature file is then a
    model-signing "certificate" bundle (see `certify`)."""

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
    return read_bounded(path, "key file")


def read_bounded(path: Path, what: str) -> bytes:
    """A small trust file (a key, a CA, a Sigstore trusted root): a regular file of at
    most `MAX_KEY_FILE` bytes, never a FIFO waited on; `KeyFileError` otherwise."""
    try:
        # Non-blocking, so that a FIFO is refused instead of waited on.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"{path} is not a regular file, so it is no {what}")
        if info.st_size > MAX_KEY_FILE:
            raise KeyFileError(f"{path} is too large to be a {what}")
        os.set_blocking(fd, True)
        try:
            data = handle.read(MAX_KEY_FILE + 1)
        except OSError as exc:
            raise KeyFileError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_KEY_FILE:
        raise KeyFileError(f"{path} is too large to be a {what}")
    return data


def _hmac_from_json(text: str, where: str) -> HmacKey:
    try:
        doc = _json.loads(text, _json.KEY_LIMITS)
    except _json.JsonError as exc:
        raise KeyFileError(
            f"{where} is neither a PEM key nor an HMAC key (JSON that {exc})"
        ) from None
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


_PEM_BEGIN = b"-----BEGIN "


def read_key_file(
    path: Path, *, password: bytes | None = None
) -> AsymmetricPrivate | PublicKey | HmacKey:
    """Load a private PEM key (encrypted PKCS#8 with `password`), a public PEM key or an
    HMAC key file. A file holding several PEM blocks is refused: only one would be used."""
    data = _read(path)
    where = str(path)
    if _PEM_BEGIN in data:
        blocks = data.count(_PEM_BEGIN)
        if blocks != 1:
            raise KeyFileError(
                f"{where} holds {blocks} PEM blocks; put one key in each file (a trust "
                "directory holds any number of them)"
            )
        if b"PRIVATE KEY-----" in data:
            encrypted = b"ENCRYPTED PRIVATE KEY-----" in data
            if encrypted and password is None:
                raise KeyFileError(
                    f"{where} is an encrypted private key; give its password "
                    "(--password-env VAR, or type it when asked)"
                )
            try:
                private = serialization.load_pem_private_key(
                    data, password=password if encrypted else None
                )
            except (ValueError, TypeError, UnsupportedAlgorithm, InternalError) as exc:
                hint = " (wrong password?)" if encrypted else ""
                raise KeyFileError(f"{where}: unreadable private key{hint} ({exc})") from None
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


def is_encrypted(path: Path) -> bool:
    """True when `path` is an encrypted PKCS#8 private key (it needs a password)."""
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in _read(Path(path))


def exposure(path: Path) -> str | None:
    """Why private key file `path` is exposed (group or world can read or write it), or None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_IMODE(mode) & 0o077:
        return (
            f"private key {path} is accessible by others (mode {stat.S_IMODE(mode):04o}); "
            f"anyone who can read it can sign: chmod 600 {path}"
        )
    return None


def load_signer(path: Path, *, password: bytes | None = None) -> Signer:
    """A signer from a private key file; the file says which algorithm.

    Warns (`KeyWarning`) when group or others may read the file, as ssh does.
    An encrypted PKCS#8 key needs `password`.
    """
    key = read_key_file(Path(path), password=password)
    if isinstance(key, PublicKey):
        raise KeyFileError(f"{path} is a public key; signing needs the private key")
    problem = exposure(Path(path))
    if problem is not None:
        warnings.warn(problem, KeyWarning, stacklevel=2)
    if isinstance(key, HmacKey):
        return HmacSigner(key)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return Ed25519Signer(key)
    return EcdsaSigner(key)


def certify(signer: Signer, certificate: Path, chain: Iterable[Path] = ()) -> Signer:
    """`signer` with its certificate (PEM, the key's own) and intermediates (PEM files):
    it then writes model-signing "certificate" bundles, verified against a CA."""
    if not isinstance(signer, EcdsaSigner | Ed25519Signer):
        raise KeyFileError("only ECDSA and Ed25519 keys can have certificates")
    leaf, *rest = load_certificates(Path(certificate), _read(Path(certificate)))
    if rest:
        raise KeyFileError(
            f"{certificate} holds {len(rest) + 1} certificates; give the signing certificate "
            "alone, and the others as the chain"
        )
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    mine = signer.public_key.public_bytes(serialization.Encoding.DER, spki)
    if leaf.public_key().public_bytes(serialization.Encoding.DER, spki) != mine:
        raise KeyFileError(f"{certificate} certifies another key than the signing key")
    intermediates = [c for p in chain for c in load_certificates(Path(p), _read(Path(p)))]
    signer.certificates = tuple(
        c.public_bytes(serialization.Encoding.DER) for c in (leaf, *intermediates)
    )
    return signer


def load_ca_certificates(paths: Iterable[Path]) -> list[x509.Certificate]:
    """Trusted CA certificates from PEM files (each may hold several)."""
    found: list[x509.Certificate] = []
    for path in paths:
        found += load_certificates(Path(path), _read(Path(path)))
    for certificate in found:
        try:
            constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.value.ca:
            raise KeyFileError(
                f"{certificate.subject.rfc4514_string()!r} is no CA certificate (BasicConstraints "
                "ca=true); trust the CA that issued the signer's certificate"
            )
    return found


def hmac_keys_from_env(variable: str, environ: Mapping[str, str] | None = None) -> list[HmacKey]:
    """HMAC keys from an environment variable, oldest first."""
    value = (os.environ if environ is None else environ).get(variable)
    where = f"${variable}"
    if not value or not value.strip():
        raise KeyFileError(f"environment variable {variable} is not set or empty")
    if value.lstrip().startswith("{"):
        return [_hmac_from_json(value, where)]
    keys: list[HmacKey] = []
    for entry in re.split(r"[\s,]+", value.strip()):
        kid, sep, secret = entry.partition(":")
        if not sep:
            raise KeyFileError(
                f"{where}: expected 'kid:base64secret' entries, got {entry[:12]!r}..."
            )
        if any(k.kid == kid for k in keys):
            raise KeyFileError(
                f"{where} names key id {kid!r} twice; every key id must be unique "
                "(which secret would it mean?)"
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
        ca_certificates: Iterable[x509.Certificate] = (),
        sigstore: SigstoreTrust | None = None,
    ) -> None:
        self._cas = list(ca_certificates)
        self._sigstore = sigstore
        self._public: dict[str, PublicKey] = {}
        for key in public_keys:
            entry = key if isinstance(key, PublicKey) else PublicKey(key)
            self._public[entry.hint] = entry
        items = (
            [HmacKey(k, v) for k, v in hmac_keys.items()]
            if isinstance(hmac_keys, Mapping)
            else list(hmac_keys)
        )
        self._hmac: dict[str, HmacKey] = {}
        for item in items:
            known = self._hmac.get(item.kid)
            if known is not None and not hmac.compare_digest(known.secret, item.secret):
                raise KeyFileError(
                    f"two different HMAC secrets are named {item.kid!r}; every key id "
                    "must name one secret"
                )
            self._hmac[item.kid] = item
        if not self._public and not self._hmac and not self._cas and sigstore is None:
            raise KeyFileError(
                "the trust store is empty; give a public key, HMAC key, CA certificate or "
                "Sigstore trusted root (--key, --trust-dir, --hmac-key-env, --ca-cert, "
                "--sigstore-root), an empty store never trusts anything"
            )

    @classmethod
    def load(
        cls,
        keys: Iterable[Path] = (),
        trust_dir: Path | None = None,
        hmac_env: str | None = None,
        environ: Mapping[str, str] | None = None,
        ca_certs: Iterable[Path] = (),
        sigstore: SigstoreTrust | None = None,
    ) -> TrustStore:
        """Public keys (or HMAC key files) from files, `*.pub`/`*.pem` public keys from a
        directory, HMAC keys from an environment variable.

        A trust directory holds public keys only: a private key or an HMAC secret
        there is refused (whoever can read the directory could sign). A private key
        given in `keys` is used for its public half, with a `KeyWarning`.
        """
        public: list[PublicKey] = []
        secret: list[HmacKey] = []
        paths = [Path(k) for k in keys]
        given_count = len(paths)
        if trust_dir is not None:
            if not Path(trust_dir).is_dir():
                raise KeyFileError(f"trust directory {trust_dir} does not exist")
            paths += sorted(
                p for p in Path(trust_dir).iterdir() if p.suffix in (".pub", ".pem") and p.is_file()
            )
        for index, path in enumerate(paths):
            in_dir = index >= given_count
            key = read_key_file(path)
            if in_dir and not isinstance(key, PublicKey):
                what = "an HMAC secret" if isinstance(key, HmacKey) else "a private key"
                raise KeyFileError(
                    f"{path} is {what}; a trust directory holds public keys only (whoever "
                    f"can read {trust_dir} could sign with it): move it out"
                )
            if isinstance(key, HmacKey):
                secret.append(key)
            elif isinstance(key, PublicKey):
                public.append(key)
            else:
                warnings.warn(
                    f"{path} is a private key; only its public half is trusted. Give the "
                    "public key (.pub) to verifiers, and keep the private key where only "
                    "the signer can read it",
                    KeyWarning,
                    stacklevel=2,
                )
                public.append(PublicKey(key.public_key(), str(path)))
        if hmac_env is not None:
            secret += hmac_keys_from_env(hmac_env, environ)
        return cls(public, secret, load_ca_certificates(ca_certs), sigstore)

    def public_key(self, hint: str) -> PublicKey | None:
        """The trusted public key with this hint, if any."""
        return self._public.get(hint)

    def public_keys(self) -> list[PublicKey]:
        """Every trusted public key."""
        return list(self._public.values())

    def ca_certificates(self) -> list[x509.Certificate]:
        """The trusted CA certificates (for certificate bundles)."""
        return list(self._cas)

    def sigstore(self) -> SigstoreTrust | None:
        """The Sigstore trusted root and expected signer (for Sigstore bundles), if any."""
        return self._sigstore

    def hmac_key(self, kid: str) -> HmacKey | None:
        """The trusted HMAC key with this kid, if any."""
        return self._hmac.get(kid)

    def key_ids(self) -> list[str]:
        """Short names of every trusted key, for messages."""
        return (
            [f"{k.algorithm}:{h[:16]}" for h, k in self._public.items()]
            + [k.keyid for k in self._hmac.values()]
            + [f"CA {c.subject.rfc4514_string()!r}" for c in self._cas]
            + ([self._sigstore.key_id] if self._sigstore is not None else [])
        )


# -- keygen -------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyInfo:
    """What `generate_key` wrote."""

    type: KeyType
    private: Path
    public: Path | None
    key_id: str


def _write(path: Path, data: bytes, mode: int, overwrite: bool) -> None:
    # O_NOFOLLOW: --force must replace a key file, never write through a link at
    # that name into whatever it points to (and chmod that to 0600).
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    flags |= 0 if overwrite else os.O_EXCL
    if os.path.islink(path):
        raise KeyFileError(f"{path} is a symbolic link; refusing to write a key through it")
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise KeyFileError(f"{path} exists; choose another path or pass --force") from None
    except OSError as exc:
        raise KeyFileError(f"cannot write {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "wb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
            raise KeyFileError(
                f"{path} is not a plain file (a device, FIFO or a file with other hard "
                "links); refusing to overwrite it"
            )
        os.set_blocking(fd, True)
        if hasattr(os, "fchmod"):  # an existing file keeps its mode otherwise
            os.fchmod(fd, mode)
        os.ftruncate(fd, 0)
        handle.write(data)


def generate_key(
    kind: KeyType,
    out: Path,
    *,
    kid: str | None = None,
    overwrite: bool = False,
    password: bytes | None = None,
) -> KeyInfo:
    """Write a new private key to `out` (mode 0600) and, for Ed25519/ECDSA, `out.pub`.

    With `password`, the private key is encrypted PKCS#8. Symbolic links,
    hard-linked files and special files at either path are refused, with
    `overwrite` too.
    """
    out = Path(out)
    if kind == "hmac":
        if password is not None:
            raise KeyFileError("HMAC key files are not encrypted; protect them by file mode")
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
    for target in (out, public_path):
        if os.path.islink(target):
            raise KeyFileError(f"{target} is a symbolic link; refusing to write a key through it")
    if not overwrite and public_path.exists():
        raise KeyFileError(f"{public_path} exists; choose another path or pass --force")
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write(out, pem, 0o600, overwrite)
    _write(public_path, public_pem, 0o644, overwrite)
    return KeyInfo(kind, out, public_path, key_hint(private.public_key()))
