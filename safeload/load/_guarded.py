"""`load` and `loads`: verify, scan and unpickle one buffer, in that order of trust.

1. The file is opened once and read into private memory (`_open`).
2. Its signature is authenticated, and the digest of the buffer is computed
   on a second thread while the next steps parse (hashlib releases the GIL).
3. The locator finds every reading of the buffer and the scan judges them;
   anything but `safe` is refused with every finding at once.
4. The same readings are deserialized by the restricted unpickler, whose
   `find_class` asks the same `Policy.decide`; there is no fallback.
5. The object is returned only once the digest matched.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .._formats import Compressed, Format, Located, Reading, locate
from .._formats.compress import range_file
from .._machine.walker import analyze
from ..errors import (
    LoadInputError,
    SafeloadError,
    SignatureError,
    UnsafeFileError,
    UnsupportedFormatError,
)
from ..policy import Policy
from ..report import Finding, Verdict
from ..scan._judge import judge, verdict_of
from ..sign import (
    Authenticated,
    PendingCheck,
    TrustStore,
    authenticate,
    locate_signature,
    read_signature,
)
from ._allowed import effective_policy
from ._archives import is_pandas_archive, load_pandas_archive
from ._joblib import HeldCursor, load_joblib
from ._numpy import load_npy, load_npz
from ._open import HeldBuffer, PrivateFile, open_private, open_private_in
from ._unpickler import ImportGuard, ImportPlan, RestrictedUnpickler
from ._validators import LoadChecks, load_checks

__all__ = ["UnsignedLoadWarning", "load", "loads"]


class UnsignedLoadWarning(UserWarning):
    """A file was loaded without verifying a signature (`require_signature=False`)."""


def load(
    path: str | os.PathLike[str],
    *,
    trust: TrustStore | None = None,
    policy: Policy | None = None,
    allow: Iterable[str] = (),
    require_signature: bool = True,
    signature: str | os.PathLike[str] | None = None,
    map_location: Any = None,
) -> Any:
    """Load a pickle, joblib, numpy, pandas or PyTorch file, or raise without running it.

    The file must carry a signature from a key in `trust` (`PATH.sig`, or the
    signature of a signed directory holding it, or `signature`), and every
    global it names must be allowed by `policy` (default: the built-in packs
    plus the `[tool.safeload]` table of the project's pyproject.toml, found from
    the working directory) plus `allow` and any `allowed_globals` block.
    `require_signature=False` skips the signature, with an `UnsignedLoadWarning`.

    Raises `UnsafeFileError` (with `.findings`), a `SignatureError` subclass,
    `UnsupportedFormatError`, `LoadInputError` or `PolicyError`.
    """
    path = Path(path)
    judged = effective_policy(policy, allow)
    if not require_signature and trust is None and signature is None:
        warnings.warn(
            f"loading {path} without verifying its signature (require_signature=False)",
            UnsignedLoadWarning,
            stacklevel=2,
        )
        return _load_buffer(open_private(path), str(path), judged, None, ".", map_location)
    if trust is None:
        raise TypeError(
            f"cannot verify {path}: pass trust=TrustStore.load(...) with the signers' keys, "
            "or require_signature=False to load it unverified"
        )
    if signature is not None:
        sig_path, root, name = Path(signature), path, "."
    else:
        try:
            sig_path, root, name = locate_signature(path)
        except FileNotFoundError:
            raise LoadInputError(f"{path}: no such file") from None
    auth = authenticate(read_signature(sig_path, model=path), trust, where=sig_path)
    data = open_private(path) if name == "." else open_private_in(root, name)
    # The signed subject must name what is loaded (the file, or its signed directory),
    # as `verify` checks by default: a signed file copied under another name is refused.
    auth.check_subject(root.name)
    if name == "." and auth.files == (".",):
        # Checked under its own name: bytes signed for another file are then a
        # SubjectMismatchError, as verify() reports them, not "changed since signed".
        name = path.name
    return _load_buffer(data, str(path), judged, auth, name, map_location)


def loads(
    data: bytes | bytearray | memoryview,
    *,
    trust: TrustStore | None = None,
    policy: Policy | None = None,
    allow: Iterable[str] = (),
    require_signature: bool = True,
    signature: bytes | str | os.PathLike[str] | None = None,
    name: str = ".",
    map_location: Any = None,
    location: str = "<bytes>",
    subject: str | None = None,
) -> Any:
    """`load` for bytes already in memory; `signature` is the signature file's bytes or path,
    and `name` the file's name in a directory signature (`"."` for a single file).
    `subject`, when given, is the name the signature must record (the file's, or the
    signed directory's)."""
    judged = effective_policy(policy, allow)
    buffer = bytes(data)
    if not require_signature and signature is None:
        warnings.warn(
            f"loading {location} without verifying a signature (require_signature=False)",
            UnsignedLoadWarning,
            stacklevel=2,
        )
        return _load_buffer(buffer, location, judged, None, name, map_location)
    if trust is None or signature is None:
        raise TypeError(
            "loads() verifies a signature: pass signature=... and trust=TrustStore.load(...), "
            "or require_signature=False"
        )
    if isinstance(signature, bytes):
        raw, where = signature, f"{location}.sig"
    else:
        raw, where = read_signature(signature), os.fspath(signature)
    auth = authenticate(raw, trust, where=where, subject=subject)
    return _load_buffer(buffer, location, judged, auth, name, map_location)


def _load_buffer(
    source: PrivateFile | bytes,
    location: str,
    policy: Policy,
    auth: Authenticated | None,
    name: str,
    map_location: Any,
) -> Any:
    # A file is hashed while it is read into memory (`PrivateFile.wait`), then parsed.
    private: PrivateFile | None = None
    data: HeldBuffer | bytes
    if isinstance(source, PrivateFile):
        private, data = source, source.buffer
    else:
        data = source
    pending: PendingCheck | None = (
        auth.start_check(data, name, private) if auth is not None else None
    )
    try:
        if private is not None:
            private.fill()
        with locate(data, location, max_expansion=policy.max_expansion) as located:
            findings = judge(located, policy)
            verdict = verdict_of(findings)
            if verdict is Verdict.NOT_A_PICKLE:
                raise _not_a_pickle(location, located, findings)
            if verdict is not Verdict.SAFE:
                raise _unsafe(location, findings)
            obj = _deserialize_checked(located, data, policy, map_location)
        if pending is not None:
            pending.result()
    except SafeloadError as exc:
        if pending is not None:
            if not isinstance(exc, SignatureError):
                # Refused by the scan, the unpickler or the format: if the bytes are not
                # the signed ones, that is the news.
                _signature_first(pending)
            pending.cancel()
        raise
    except BaseException:
        if pending is not None:
            pending.cancel()
        raise
    return obj


def _signature_first(pending: PendingCheck | None) -> None:
    """A tampered file is reported as tampered, not only as unsafe."""
    if pending is not None:
        try:
            pending.result()
        except SignatureError:
            raise
        except Exception:
            pass


def _not_a_pickle(
    location: str, located: Located, findings: list[Finding]
) -> UnsupportedFormatError:
    """A file no loader unpickles (SL305): there is nothing to load, and nothing ran."""
    first = next(f for f in findings if f.verdict is Verdict.NOT_A_PICKLE)
    return UnsupportedFormatError(
        f"{location}: refused to load: {first.message} [{first.rule} {first.rule_name}; "
        f"read as {located.shape}]. Fix: {first.fix}"
    )


def _unsafe(location: str, findings: list[Finding]) -> UnsafeFileError:
    bad = [f for f in findings if f.verdict is not None and f.verdict is not Verdict.SAFE]
    verdict = verdict_of(findings).value
    unknown = sorted(
        {f.global_name for f in bad if f.rule_name == "unknown-global" and f.global_name}
    )
    only_unknown = bool(unknown) and len(unknown) == len({f.global_name for f in bad})
    lines = [f"{location}: refused to load: the scan says {verdict} ({len(bad)} findings):"]
    for f in bad:
        at = f"@{f.offset}" if f.offset is not None else ""
        what = f"{f.global_name} " if f.global_name else ""
        lines.append(f"  {f.location}{at}: {what}[{f.rule} {f.rule_name}] {f.message}")
        # Allowing an unknown global is no fix for a file that is refused for more.
        if f.fix and (only_unknown or f.rule_name != "unknown-global"):
            lines.append(f"      fix: {f.fix}")
    if only_unknown:
        names = ", ".join(repr(n) for n in unknown)
        lines.append(
            "  only globals on no allow pack were found; if you trust the code that defines them:"
        )
        lines.append(f"      safeload.load(..., allow=[{names}])")
        lines.append(f"      with safeload.allowed_globals([{names}]): ...")
        lines.append(f"      [tool.safeload] allow = [{names}]  (pyproject.toml)")
    return UnsafeFileError("\n".join(lines), path=location, findings=findings)


# -- deserializing the readings ---------------------------------------------------------


def _deserialize_checked(
    located: Located, data: HeldBuffer | bytes, policy: Policy, map_location: Any
) -> Any:
    # The named checks' real side: stand-ins check arguments and record what they
    # build while loading; `finish` verifies those and the loaded objects.
    session = LoadChecks.for_readings(
        ((r.data, r.analysis) for r in located.readings), located.location
    )
    try:
        with load_checks(session):
            obj = _deserialize(located, data, policy, map_location)
    except SafeloadError:
        raise
    except Exception as exc:
        # The bytes passed every check and the loader still failed on them (a
        # corrupt stream, a state a constructor rejects): a refusal, never a crash.
        raise UnsupportedFormatError(
            f"{located.location}: cannot be deserialized: {type(exc).__name__}: {exc}"
        ) from exc
    imported = {(g.module, g.name) for r in located.readings for g in r.analysis.globals}
    session.finish(obj, imported)
    return obj


def _top_reading(located: Located) -> Reading:
    for reading in located.readings:
        if reading.location == located.location and reading.analysis.pickles:
            return reading
    raise UnsupportedFormatError(f"{located.location}: no pickle stream to load")


def _unpickle_reading(reading: Reading, policy: Policy) -> Any:
    """The first pickle of a reading, as `pickle.load` reads it."""
    plan = ImportPlan.from_walk(reading.analysis.pickles[0], reading.data)
    return RestrictedUnpickler(reading.data, plan, policy, location=reading.location).load()


def _unpickler_for(policy: Policy) -> Any:
    def unpickle(data: Any, start: int, end: int, location: str) -> Any:
        analysis = analyze(data, start, end)
        if not analysis.pickles:
            raise UnsupportedFormatError(f"{location}: no pickle stream to load")
        plan = ImportPlan.from_walk(analysis.pickles[0], data)
        return RestrictedUnpickler(data, plan, policy, location=location).load()

    return unpickle


def _load_joblib_reading(reading: Reading, policy: Policy) -> Any:
    """joblib's reading: raw array bytes follow each wrapper, as the walk followed them."""
    plan = ImportPlan.from_walk(reading.analysis.pickles[0], reading.data)
    guard = ImportGuard(plan, policy, location=reading.location)
    if plan.refusal is not None:
        rule_name, offset, message = plan.refusal
        raise guard.refuse(rule_name, message, offset)
    if plan.persistent_ids:
        raise guard.refuse("persistent-id", "joblib files have no persistent ids",
                           plan.persistent_ids[0])  # fmt: skip
    if isinstance(reading.data, HeldBuffer):
        handle: Any = HeldCursor(reading.data, plan.start, plan.end)
        obj = load_joblib(handle, guard.find_class, reading.data, plan.start)
    else:
        handle = range_file(reading.data, plan.start, plan.end)
        obj = load_joblib(handle, guard.find_class)
    if not guard.finished or handle.tell() != plan.end - plan.start:
        raise guard.mismatch(
            f"the load asked for {guard.calls_made} of {len(plan.calls)} predicted globals "
            f"and read {handle.tell()} of {plan.end - plan.start} bytes",
            plan.end,
        )
    return guard.hand_back(obj)


# numpy.load opens a zip only when the file starts with a local header or an empty
# archive's end record, torch.load only with a local header; zipfile (pandas) also
# finds an archive after prepended bytes, but such a file is no .npz nor checkpoint.
_NPZ_STARTS = (b"PK\x03\x04", b"PK\x05\x06")


def _require_zip_start(
    data: HeldBuffer | bytes, location: str, starts: tuple[bytes, ...], loader: str
) -> None:
    if bytes(data[0:4]) not in starts:
        raise UnsupportedFormatError(
            f"{location}: the zip archive does not start at offset 0 (bytes are prepended): "
            f"{loader} does not open it, it reads an archive only from the file's first byte; "
            "re-create the file with its library's own save function"
        )


def _deserialize(
    located: Located, data: HeldBuffer | bytes, policy: Policy, map_location: Any
) -> Any:
    shape = located.shape
    location = located.location
    single = shape.single
    inner = shape.innermost().single
    if inner in (Format.PICKLE, Format.JOBLIB) and not isinstance(inner, Compressed):
        reading = _top_reading(located)
        if inner is Format.JOBLIB:
            return _load_joblib_reading(reading, policy)
        return _unpickle_reading(reading, policy)
    if single in (Format.NPY, Format.NPY_OBJECT):
        return load_npy(data, 0, located.size, location, _unpickler_for(policy))
    if single is Format.NPZ:
        _require_zip_start(data, location, _NPZ_STARTS, "numpy.load")
        return load_npz(data, 0, located.size, location, _unpickler_for(policy), located.expanded)
    if single is Format.PYTORCH_ZIP:
        _require_zip_start(data, location, _NPZ_STARTS[:1], "torch.load")
        from ._torch import load_torch_zip

        return load_torch_zip(located, data, policy, map_location)
    if single is Format.PYTORCH_LEGACY:
        from ._torch import load_torch_legacy

        return load_torch_legacy(located, data, policy, map_location)
    if single is Format.PYTORCH_TAR:
        from ._torch import load_torch_tar

        return load_torch_tar(located, data, policy, map_location)
    if single is Format.SAFETENSORS:
        from ._safetensors import load_safetensors

        # The safetensors library parses `bytes` only (and copies every tensor out).
        return load_safetensors(bytes(data), location)
    if is_pandas_archive(shape):
        # pandas.read_pickle(compression="zip" | "tar"): the archive's one file.
        return load_pandas_archive(
            data,
            located.size,
            shape,
            location,
            _unpickler_for(policy),
            located.expanded,
        )
    raise UnsupportedFormatError(
        f"{location}: the guarded loader does not load {shape} files "
        "(pickle, joblib, numpy .npy/.npz, pandas pickles, PyTorch and safetensors are loaded)"
    )
