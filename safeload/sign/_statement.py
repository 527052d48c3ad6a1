"""The OpenSSF model-signing statement: listing, hashing and checking model files.

The signed payload is an in-toto Statement v1 with predicate type
`https://model_signing/signature/v1.0`. Its predicate lists one resource per
file (`"files"` method) or per fixed-size shard of a file (`"shards"`, read
only), each with a hex digest; the subject digest is SHA-256 over the
concatenated raw resource digests *in the order listed*. Quirks of
model-signing 1.1.1 that are handled on purpose: a single file is named `"."`
(the spec says its basename; both are accepted), resources may come in
path-component order instead of code-point order, and `shard_size` may be a
JSON float.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

from ..errors import (
    DigestMismatchError,
    MalformedSignatureError,
    MissingFileError,
    SubjectMismatchError,
    UnsignedFileError,
    UnsupportedSignatureError,
)
from . import _json

__all__ = [
    "GIT_PATHS",
    "LayoutError",
    "ModelFiles",
    "Ranges",
    "Resource",
    "Statement",
    "build",
    "check",
    "digest_files",
    "is_ignored",
    "list_files",
    "parse",
    "shard_ranges",
    "shown_names",
]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
GIT_PATHS = (".git", ".gitattributes", ".github", ".gitignore")
"""Ignored at the model root with `ignore_git=True` (model-signing ignores them by default)."""
SIGNED_AT = "signed_at"
"""The subject annotation holding the signing time (RFC 3339, UTC, whole seconds)."""
ALLOW_UNSAFE = "safeload_allow_unsafe"
"""The subject annotation `safeload sign --allow-unsafe` writes: the scan results it
signed over ("name: verdict (rule IDs)", one per file that did not scan safe). A
signature vouches for who made the bytes, never that they are safe; this says the
signer knew they were not. Absent from every other signature (and older ones)."""
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")

HASHES: dict[str, Callable[[], Any]] = {"sha256": hashlib.sha256, "blake2b": hashlib.blake2b}
"""Resource hash types safeload can check (model-signing's BLAKE3 needs the blake3 package)."""

_BUFFER = 1 << 20
_HEX = re.compile(r"[0-9a-f]+")
_SHARD = re.compile(r"(.+):(0|[1-9][0-9]*):([1-9][0-9]*)", re.DOTALL)
_LIST_SHOWN = 5


class LayoutError(ValueError):
    """A directory entry that cannot be part of a signed model (link, device, FIFO)."""

    def __init__(self, name: str, kind: str) -> None:
        super().__init__(f"{name} is a {kind}")
        self.name = name
        self.kind = kind


# -- listing ------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFiles:
    """The files of a model: `{resource name: path}`; a single file is named `"."`."""

    root: Path
    single: bool
    files: dict[str, Path]
    ignored: tuple[str, ...] = ()
    """Entries present but left out by the ignore list (a directory as `name/`)."""


def normalize_ignores(paths: Iterable[str]) -> frozenset[str]:
    """Ignore entries as clean relative POSIX paths (`./a/` -> `a`)."""
    clean = set()
    for raw in paths:
        text = str(PurePosixPath(str(raw).replace(os.sep, "/")))
        while text.startswith("./"):
            text = text[2:]
        if text and text != ".":
            clean.add(text)
    return frozenset(clean)


def _ignored(name: str, ignores: frozenset[str]) -> bool:
    if name in ignores:
        return True
    parts = name.split("/")
    return any("/".join(parts[:i]) in ignores for i in range(1, len(parts)))


def list_files(path: Path, ignore: Iterable[str] = (), *, ignore_git: bool = False) -> ModelFiles:
    """List a model's regular files; links and special files raise `LayoutError`.

    `ignore` holds exact relative paths (a directory ignores what it holds);
    with `ignore_git`, `GIT_PATHS` are ignored at the root too. (A verifier
    passes False and relies on the ignore list recorded in the signature.)
    Every entry left out is listed in `ModelFiles.ignored`: nothing is skipped
    silently.
    """
    if not path.is_dir():
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file or directory")
        return ModelFiles(path, True, {".": path})
    ignores = normalize_ignores((*(GIT_PATHS if ignore_git else ()), *ignore))
    files: dict[str, Path] = {}
    ignored: list[str] = []

    def walk(folder: Path, prefix: str) -> None:
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                name = prefix + entry.name
                if _ignored(name, ignores):
                    directory = entry.is_dir(follow_symlinks=False)
                    ignored.append(name + "/" if directory else name)
                    continue
                if entry.is_symlink():
                    raise LayoutError(name, "symbolic link")
                if entry.is_dir(follow_symlinks=False):
                    walk(Path(entry.path), name + "/")
                elif entry.is_file(follow_symlinks=False):
                    files[name] = Path(entry.path)
                else:
                    raise LayoutError(name, "special file (device, FIFO or socket)")

    walk(path, "")
    return ModelFiles(path, False, files, tuple(ignored))


# -- hashing ------------------------------------------------------------------------


def digest_file(
    path: Path, hash_type: str = "sha256", start: int = 0, end: int | None = None
) -> str:
    """Hex digest of a file (or of bytes `start:end`), at hashlib speed."""
    with open(path, "rb", buffering=0) as handle:
        if start == 0 and end is None:
            return hashlib.file_digest(handle, HASHES[hash_type]).hexdigest()
        hasher = HASHES[hash_type]()
        handle.seek(start)
        left = (end if end is not None else os.fstat(handle.fileno()).st_size) - start
        buffer = bytearray(min(_BUFFER, max(left, 0)))
        view = memoryview(buffer)
        while left > 0:
            got = handle.readinto(view[: min(left, _BUFFER)])
            if not got:
                break  # the file shrank; the digest will not match
            hasher.update(view[:got])
            left -= got
        return str(hasher.hexdigest())


def digest_files(
    jobs: Sequence[tuple[Path, int, int | None]],
    hash_type: str = "sha256",
    workers: int | None = None,
) -> list[str]:
    """Digest several files or ranges, in parallel threads (hashlib releases the GIL)."""
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(jobs) <= 1:
        return [digest_file(p, hash_type, s, e) for p, s, e in jobs]
    with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        return list(pool.map(lambda job: digest_file(job[0], hash_type, job[1], job[2]), jobs))


# -- statement ----------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """One listed file (or shard `path:start:end`) and its hex digest."""

    name: str
    algorithm: str
    digest: str


Ranges = Mapping[tuple[int, int | None], str]
"""`{(start, end): hex digest}` of one file; a whole file is the single range `(0, None)`."""


@dataclass(frozen=True)
class Statement:
    """A parsed model-signing statement."""

    subject: str
    root_digest: str
    method: str
    """`"files"` (one digest per file) or `"shards"` (one per `shard_size` bytes of a file)."""
    hash_type: str
    ignore_paths: tuple[str, ...]
    resources: tuple[Resource, ...]
    shard_size: int | None = None
    signed_at: datetime | None = None
    """When it was signed (a subject annotation safeload writes; None in other tools' ones)."""
    files: Mapping[str, Ranges] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )
    """`{file name: ranges}`: the resources grouped by file (shard suffixes removed)."""
    allow_unsafe: str | None = None
    """What the signer's scan found, signed anyway with `--allow-unsafe` (`ALLOW_UNSAFE`)."""


def root_digest(digests: Iterable[str]) -> str:
    """SHA-256 over the concatenated raw digests, in the given order."""
    hasher = hashlib.sha256()
    for digest in digests:
        hasher.update(bytes.fromhex(digest))
    return hasher.hexdigest()


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC text, whole seconds, as the `signed_at` annotation holds it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build(
    subject: str,
    resources: dict[str, str],
    ignore_paths: Iterable[str],
    signed_at: datetime | None = None,
    allow_unsafe: str | None = None,
) -> bytes:
    """The statement bytes for SHA-256 file resources, in code-point order.

    `ignore_paths` is recorded as given (normalized): what was left out is
    part of what is signed. The signing time (default: now) is a subject
    annotation, which in-toto resource descriptors allow and model-signing
    ignores; so is `allow_unsafe`, the scan results signed over (`ALLOW_UNSAFE`).
    """
    names = sorted(resources)
    when = format_time(signed_at if signed_at is not None else datetime.now(UTC))
    annotations = {SIGNED_AT: when}
    if allow_unsafe is not None:
        annotations[ALLOW_UNSAFE] = allow_unsafe
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [
            {
                "name": subject,
                "digest": {"sha256": root_digest(resources[n] for n in names)},
                "annotations": annotations,
            }
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": {
                "method": "files",
                "hash_type": "sha256",
                "allow_symlinks": False,
                "ignore_paths": sorted(normalize_ignores(ignore_paths)),
            },
            "resources": [
                {"name": n, "algorithm": "sha256", "digest": resources[n]} for n in names
            ],
        },
    }
    return json.dumps(statement, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def parse(payload: bytes, where: str) -> Statement:
    """Validate signed statement bytes; raises `MalformedSignatureError`."""

    def bad(problem: str) -> MalformedSignatureError:
        return MalformedSignatureError(f"{where}: the signed statement {problem}")

    try:
        doc = _json.loads(payload, _json.STATEMENT_LIMITS)
    except _json.JsonError as exc:
        raise bad(str(exc)) from None
    if not isinstance(doc, dict) or doc.get("_type") != STATEMENT_TYPE:
        raise bad(f"is not an in-toto Statement v1 (_type {STATEMENT_TYPE!r})")
    if doc.get("predicateType") != PREDICATE_TYPE:
        raise UnsupportedSignatureError(
            f"{where}: predicate type {doc.get('predicateType')!r} is not {PREDICATE_TYPE!r} "
            "(legacy model-signing formats are not supported; sign the model again)"
        )
    subjects = doc.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict):
        raise bad("must have exactly one subject")
    subject_name = subjects[0].get("name")
    digest = subjects[0].get("digest")
    root = digest.get("sha256") if isinstance(digest, dict) else None
    if not isinstance(subject_name, str) or not _is_hex(root, 64):
        raise bad("has no subject name and sha256 digest")
    signed_at = _signed_at(subjects[0].get("annotations"), bad)
    allow_unsafe = _allow_unsafe(subjects[0].get("annotations"), bad)
    predicate = doc.get("predicate")
    serialization = predicate.get("serialization") if isinstance(predicate, dict) else None
    if not isinstance(predicate, dict) or not isinstance(serialization, dict):
        raise bad("has no predicate.serialization")
    method = serialization.get("method")
    hash_type = serialization.get("hash_type")
    if method not in ("files", "shards"):
        raise bad(f"uses unknown serialization method {method!r}")
    if not isinstance(hash_type, str) or hash_type not in HASHES:
        raise UnsupportedSignatureError(
            f"{where}: resources are hashed with {hash_type!r}; safeload checks "
            f"{', '.join(sorted(HASHES))} (use model_signing to verify this one)"
        )
    ignore_paths = serialization.get("ignore_paths", [])
    if not isinstance(ignore_paths, list) or not all(isinstance(p, str) for p in ignore_paths):
        raise bad("has a malformed ignore_paths list")
    shard_size = None
    expected_algorithm = str(hash_type)
    if method == "shards":
        size = serialization.get("shard_size")
        if isinstance(size, bool) or not isinstance(size, int | float) or size != int(size):
            raise bad(f"has a non-integer shard_size {size!r}")
        shard_size = int(size)
        if shard_size < 1:
            raise bad(f"has shard_size {shard_size}")
        expected_algorithm = f"{hash_type}-sharded-{shard_size}"
    raw_resources = predicate.get("resources")
    if not isinstance(raw_resources, list):
        raise bad("has no resources list")
    if not raw_resources:
        # Nothing to compare: with unsigned files accepted it would vouch for any directory.
        raise bad("lists no files; a signature must cover at least one")
    digest_length = HASHES[str(hash_type)]().digest_size * 2
    resources = []
    seen = set()
    for item in raw_resources:
        if not isinstance(item, dict):
            raise bad("has a resource that is not an object")
        name, algorithm, value = item.get("name"), item.get("algorithm"), item.get("digest")
        if not isinstance(name, str) or not name or name in seen:
            raise bad(f"has a missing or duplicate resource name {name!r}")
        if algorithm != expected_algorithm:
            raise bad(f"resource {name!r} uses {algorithm!r}, expected {expected_algorithm!r}")
        if not _is_hex(value, digest_length):
            raise bad(f"resource {name!r} has a malformed digest")
        seen.add(name)
        resources.append(Resource(name, algorithm, str(value)))
    if root_digest(r.digest for r in resources) != root:
        raise bad("is inconsistent: its subject digest does not match its resources")
    return Statement(
        subject_name,
        root,
        method,
        hash_type,
        tuple(ignore_paths),
        tuple(resources),
        shard_size,
        signed_at,
        _file_ranges(method, resources, where),
        allow_unsafe,
    )


def _allow_unsafe(annotations: object, bad: Callable[[str], MalformedSignatureError]) -> str | None:
    if not isinstance(annotations, dict):
        return None  # `_signed_at` refuses anything but an object or no annotations
    text = annotations.get(ALLOW_UNSAFE)
    if text is not None and not isinstance(text, str):
        raise bad(f"has a {ALLOW_UNSAFE} annotation that is not text")
    return text


def _signed_at(
    annotations: object, bad: Callable[[str], MalformedSignatureError]
) -> datetime | None:
    if annotations is None:
        return None
    if not isinstance(annotations, dict):
        raise bad("has subject annotations that are not an object")
    text = annotations.get(SIGNED_AT)
    if text is None:
        return None
    if not isinstance(text, str) or not _TIME.fullmatch(text):
        raise bad(f"has a malformed {SIGNED_AT} time {str(text)[:40]!r}")
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise bad(f"has an impossible {SIGNED_AT} time {text!r}") from None


def _is_hex(value: object, length: int) -> bool:
    return isinstance(value, str) and len(value) == length and bool(_HEX.fullmatch(value))


# -- checking -----------------------------------------------------------------------


def is_ignored(name: str, ignore_paths: Iterable[str]) -> bool:
    """True when a statement's ignore list covers relative path `name`."""
    return _ignored(name, normalize_ignores(ignore_paths))


def shown_names(items: Iterable[str]) -> str:
    """Names for a message: the first few, in order, and how many more."""
    ordered = sorted(items)
    shown = ", ".join(repr(n) for n in ordered[:_LIST_SHOWN])
    more = len(ordered) - _LIST_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def _file_ranges(method: str, resources: Iterable[Resource], where: str) -> Mapping[str, Ranges]:
    files: dict[str, dict[tuple[int, int | None], str]] = {}
    for resource in resources:
        if method == "files":
            files[resource.name] = {(0, None): resource.digest}
            continue
        # Decimal offsets exactly as model-signing writes them: int() would also take
        # "+1", " 1", "1_0" or other scripts' digits, so two names could share a range.
        match = _SHARD.fullmatch(resource.name)
        if match is None:
            raise MalformedSignatureError(
                f"{where}: shard resource {resource.name!r} is not 'path:start:end'"
            )
        name, start, end = match[1], int(match[2]), int(match[3])
        if start >= end:
            raise MalformedSignatureError(f"{where}: shard resource {resource.name!r} is empty")
        files.setdefault(name, {})[(start, end)] = resource.digest
    return MappingProxyType({n: MappingProxyType(r) for n, r in files.items()})


def shard_ranges(size: int, shard_size: int) -> list[tuple[int, int | None]]:
    """The `(start, end)` shards model-signing cuts a file of `size` bytes into."""
    return [(start, min(start + shard_size, size)) for start in range(0, size, shard_size)]


def check(
    model: ModelFiles,
    statement: Statement,
    *,
    where: str,
    ignore_unsigned: bool = False,
    workers: int | None = None,
) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, str]]:
    """Compare a model on disk with a verified statement.

    Returns `(verified file names, unsigned file names, {name: whole-file digest})`
    (the digests are empty for shard manifests); raises
    `MissingFileError`, `UnsignedFileError`, `DigestMismatchError` or
    `SubjectMismatchError`. Names are compared before anything is hashed.
    """
    listed: Mapping[str, Ranges] = statement.files
    actual = dict(model.files)
    target = model.root.name or model.root.resolve().name
    if model.single:
        names = set(listed)
        if names in ({"."}, {target}, {statement.subject}):
            listed = {".": next(iter(listed.values()))}
        elif len(names) == 1 and "/" not in next(iter(names)):
            raise SubjectMismatchError(
                f"{where} was made for {next(iter(names))!r}, not {target!r}; "
                "use the signature that belongs to this file"
            )
        else:
            raise MissingFileError(
                f"{where} lists {len(names)} files of a model directory ({shown_names(names)}), "
                f"but {model.root} is a single file; verify the directory instead"
            )
    elif "." in listed or any(n.startswith(".:") for n in listed):
        raise SubjectMismatchError(
            f"{where} was made for the single file {statement.subject!r}, but {model.root} "
            "is a directory; verify that file instead"
        )
    missing = set(listed) - set(actual)
    if missing:
        raise MissingFileError(
            f"{model.root}: {len(missing)} signed file(s) are missing: {shown_names(missing)}; "
            "restore them, or sign the model again if they were removed on purpose"
        )
    unsigned = set(actual) - set(listed)
    if statement.method == "shards":  # model-signing lists no shards for an empty file
        unsigned = {n for n in unsigned if actual[n].stat().st_size > 0}
    if unsigned and not ignore_unsigned:
        raise UnsignedFileError(
            f"{model.root}: {len(unsigned)} file(s) are not covered by {where}: "
            f"{shown_names(unsigned)}; remove them or sign the model again "
            "(or pass --ignore-unsigned-files if they are never loaded)"
        )
    jobs: list[tuple[Path, int, int | None]] = []
    expected: list[tuple[str, str]] = []
    changed: set[str] = set()
    for name, ranges in listed.items():
        if statement.shard_size is not None:
            size = actual[name].stat().st_size
            if sorted(ranges, key=lambda r: r[0]) != shard_ranges(size, statement.shard_size):
                changed.add(name)
                continue
        for (start, end), digest in ranges.items():
            jobs.append((actual[name], start, end))
            expected.append((name, digest))
    digests = digest_files(jobs, statement.hash_type, workers)
    changed.update(name for (name, want), got in zip(expected, digests, strict=True) if want != got)
    if changed:
        if model.single and statement.subject not in (target, "."):
            raise SubjectMismatchError(
                f"{model.root}: content does not match {where}, which was made for "
                f"{statement.subject!r}; use the signature that belongs to this file"
            )
        if model.single:
            raise DigestMismatchError(
                f"{model.root} changed since it was signed ({where}); do not load it, "
                "get the original file or sign it again"
            )
        raise DigestMismatchError(
            f"{model.root}: {len(changed)} file(s) changed since signing: {shown_names(changed)}; "
            "do not load them, get the original files or sign the model again"
        )
    whole = {n: r[(0, None)] for n, r in listed.items() if statement.method == "files"}
    return tuple(sorted(listed)), tuple(sorted(set(actual) - set(listed))), whole
