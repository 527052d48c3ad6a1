"""PyTorch checkpoints, loaded the way `torch.load` loads them, through the policy.

torch's own loader runs its pickles through a `pickle_module` it wraps with
shortcuts that never reach `find_class` (any name containing "Storage"
becomes a dtype holder), so the guarded loader does torch's part itself, for
each format `torch.load` reads (`torch/serialization.py`: `_load` and
`_legacy_load`):

- **zip** (`torch.save` since 1.6): `data.pkl`, whose storage ids name
  archive members; a storage is a view of its member's bytes in the
  guarded loader's private buffer (as `torch.load(mmap=True)` views the
  file), so the data is held once, not copied a second time;
- **legacy stacked** (`_use_new_zipfile_serialization=False`): five pickles
  (magic number, protocol version, sys_info, the object, the storage keys),
  then for each key an 8-byte element count and the raw little-endian
  elements; the object's storage ids allocate storages that are filled
  after the keys are read, as torch fills them;
- **legacy tar** (torch < 0.4): members `storages` (storage records, each
  followed by its raw elements, then the storage views), `tensors` (tensor
  records, each followed by its raw shape) and `pickle`, whose persistent
  ids are the keys of those storages and tensors.

Every pickle is exactly the bytes the scan walked, loaded by the restricted
unpickler with the plan of that walk; every persistent id is validated
before it is used; in the legacy formats, raw storage bytes are copied
once from the held buffer into each storage, through torch's own `_set_from_file` (which also decodes
byte order on a big-endian host), and only after their extent has been
checked against the end of the file or member. Tensors are rebuilt by
torch's own allowlisted `_rebuild_*` functions (tar: `Tensor.set_`, as torch
does), so they equal what `torch.load` returns.
"""

from __future__ import annotations

import re
import struct
import sys
import tarfile
from collections.abc import Callable
from typing import Any

from .._formats import Located, Reading, ReadingKind, zipread
from .._formats.compress import range_file
from .._formats.torch import MAGIC_NUMBER, archive_prefix, is_torchscript
from ..errors import UnsafeFileError, UnsupportedFormatError
from ..policy import Policy
from ..report import Finding
from ._open import HeldBuffer
from ._unpickler import (
    ImportGuard,
    ImportPlan,
    RestrictedUnpickler,
    _pid_text,
    check_torch_storage_pid,
)

__all__ = ["load_torch_legacy", "load_torch_tar", "load_torch_zip"]

_PROTOCOL_VERSION = 1001
# torch.save aligns every record's data to 64 bytes (caffe2's kFieldAlignment);
# a storage is viewed in place only at such an offset, never misaligned.
_ALIGNMENT = 64
"""The only legacy protocol version `torch.load` accepts."""
_LEGACY_PICKLES = 5
_TAR_MEMBERS = ("storages", "tensors", "pickle")
"""The members torch's tar reader extracts (it never reads `sys_info`)."""
_TAR_KEY = re.compile(r"[0-9]{1,30}")
"""A tar persistent id: the decimal key torch's reader passes to `int()`."""


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise UnsupportedFormatError(
            "loading a PyTorch file needs torch (a CPU build is enough: "
            "pip install torch --index-url https://download.pytorch.org/whl/cpu)"
        ) from None
    return torch


def _bad(location: str, message: str) -> UnsupportedFormatError:
    return UnsupportedFormatError(f"{location}: {message}")


def _refuse(
    policy: Policy, rule_name: str, location: str, message: str, offset: int | None = None
) -> UnsafeFileError:
    """A refusal of the file's structure, reported as the scan reports the same rule."""
    rule = policy.rule(rule_name)
    finding = Finding(
        rule=rule.id,
        rule_name=rule.name,
        severity=rule.severity,
        verdict=rule.verdict,
        message=message,
        location=location,
        offset=offset,
        fix=rule.fix,
    )
    text = f"{location}: refused to load: {message} ({rule.id} {rule.name}). Fix: {rule.fix}"
    return UnsafeFileError(text, path=location, findings=[finding])


def _storage_dtype(torch: Any, storage_type: object) -> Any:
    """The dtype a storage type in a storage id stands for, or None.

    torch's reader turns the pickled name into a dtype holder; here the
    name was imported (allowed by the policy), so the class must be one of
    torch's storage classes. `_dtype` is read rather than `dtype`, whose
    first access in a process warns that typed storages are deprecated
    (torch.load never reads it, so it never warns).
    """
    if storage_type is torch.UntypedStorage:
        return torch.uint8
    if isinstance(storage_type, type) and issubclass(storage_type, torch.storage._LegacyStorage):
        dtype = getattr(storage_type, "_dtype", None)
        if isinstance(dtype, torch.dtype):
            return dtype
    return None


def _pid_checker(torch: Any, length: int) -> Callable[[object, ImportGuard], None]:
    """`check_torch_storage_pid`, then the id's length for this format and its storage type."""

    def check(pid: object, guard: ImportGuard) -> None:
        check_torch_storage_pid(pid, guard)
        assert type(pid) is tuple  # checked above
        if len(pid) != length:
            raise guard.refuse(
                "persistent-id",
                f"a storage id of {len(pid)} items where this format writes {length}",
                None,
            )
        if _storage_dtype(torch, pid[1]) is None:
            raise guard.refuse(
                "persistent-id",
                f"{getattr(pid[1], '__qualname__', type(pid[1]).__name__)} is not a storage type",
                None,
            )
        if pid[4] < 0:
            raise guard.refuse("persistent-id", f"storage of {pid[4]} elements", None)

    return check


def _is_module_id(pid: object) -> bool:
    """A full-module id's shape: `('module', ...)` (the types are checked first: an
    object's own __eq__ could run)."""
    return type(pid) is tuple and len(pid) == 4 and type(pid[0]) is str and pid[0] == "module"


def _legacy_pid_checker(torch: Any) -> Callable[[object, ImportGuard], None]:
    """A storage id of the legacy format, or a full-module id as the scan accepts it.

    `('module', cls, source_file, source)`, which legacy `torch.save(model)`
    writes for each `nn.Module` class: torch's `persistent_load` returns `cls`.
    Accepted only when `cls` is an object this pickle's guard imported and
    `Policy.decide` allows it as the walk saw it used (the decision
    `find_class` made), and both texts are a str or None: the scan's
    `torch_module_class`. torch compares the saved source with the installed
    one and warns when they differ; the source is never run, and here never read.
    """
    storage = _pid_checker(torch, 6)

    def check(pid: object, guard: ImportGuard) -> None:
        if not _is_module_id(pid):
            storage(pid, guard)
            return
        assert type(pid) is tuple  # checked above
        _tag, cls, source_file, source = pid
        names = set(guard.imported_as(cls))
        imports = [c for c in guard.plan.calls if (c.module, c.qualname) in names]
        if not imports:
            raise guard.refuse(
                "persistent-id",
                f"the class {_pid_text(cls)} of a module id is not a global this pickle imported",
                None,
            )
        for call in imports:
            decision = guard.policy.decide(call.module, call.qualname, call.uses, call.shapes)
            if not decision.allowed:
                raise guard.refusal(decision, call.offset, call.raw)
        if not all(t is None or type(t) is str for t in (source_file, source)):
            raise guard.refuse(
                "persistent-id", "a module id whose source file or source is not text", None
            )

    return check


def _validate_sparse(torch: Any) -> None:
    """torch's own check of the sparse tensors this load rebuilt, always run.

    `torch.load` runs it only while `torch.sparse.check_sparse_tensor_invariants`
    is enabled (off by default), and otherwise returns sparse tensors whose indices
    leave their values or their shape: using one (`to_dense()`) reads and writes
    out of bounds, a heap corruption. The guarded loader refuses them.
    """
    with torch.sparse.check_sparse_tensor_invariants(enable=True):
        torch._utils._validate_loaded_sparse_tensors()


def _fixed_empty(torch: Any, device: Any) -> Any:
    """An empty storage no tensor can grow (a storage slice is not resizable).

    A resizable one would be grown by a tensor that claims more of it, with
    uninitialized memory: what torch's legacy loader hands out for an empty
    storage referenced twice. A meta storage holds no memory and cannot be sliced.
    """
    storage = torch.UntypedStorage(0, device=device)
    return storage if storage.device.type == "meta" else storage[0:0]


def _typed(torch: Any, storage: Any, dtype: Any) -> Any:
    return torch.storage.TypedStorage(wrap_storage=storage, dtype=dtype, _internal=True)


class _Window:
    """A file over the held buffer up to `end`.

    torch's `_set_from_file` reads a storage from it with `readinto`, which
    copies the bytes straight from the buffer into the storage: the one copy.
    """

    def __init__(self, view: memoryview, end: int) -> None:
        self._view = view
        self._end = end
        self.pos = 0

    def seek(self, pos: int) -> None:
        self.pos = pos

    def readinto(self, buf: Any) -> int:
        n = max(0, min(len(buf), self._end - self.pos))
        buf[:n] = self._view[self.pos : self.pos + n]
        self.pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        stop = self._end if size < 0 else min(self._end, self.pos + size)
        chunk = bytes(self._view[self.pos : stop])
        self.pos += len(chunk)
        return chunk


def _fill(storage: Any, window: _Window, pos: int, element_size: int) -> int:
    """Read one raw storage (count, then elements) at `pos` into `storage`; the end offset."""
    window.seek(pos)
    storage._set_from_file(window, None, False, element_size)
    return window.pos


# -- zip ----------------------------------------------------------------------------


def load_torch_zip(located: Located, data: Any, policy: Policy, map_location: Any = None) -> Any:
    """The object `torch.load(weights_only=False)` returns, with every global judged."""
    torch = _torch()
    from torch.serialization import _get_restore_location, _serialization_tls

    location = located.location
    try:
        archive = zipread.read_views(data, 0, located.size).torch
    except zipread.ZipError as exc:
        raise _bad(location, f"not a zip archive: {exc}") from None
    if archive is None:
        raise _bad(location, "torch's zip reader cannot open this archive")
    prefix = archive_prefix(archive)
    record = _records(archive)
    if prefix is None or record("data.pkl") is None:
        raise _bad(location, "a PyTorch archive without data.pkl")
    if is_torchscript(archive):  # torch: "constants.pkl" in get_all_records(), exact
        raise _bad(
            location,
            "a TorchScript archive: torch.jit.load runs the archive's own code, which no "
            "policy can judge; it is never loaded",
        )
    where = f"{location}:{prefix}/data.pkl"
    reading = next(
        (r for r in located.readings if r.location == where and r.kind is ReadingKind.TORCH),
        None,
    )
    if reading is None or len(reading.analysis.pickles) != 1:
        raise _bad(location, "data.pkl is not one pickle stream")
    swap = False
    order = record("byteorder")
    if order is not None:
        text = bytes(data[order.data_offset : order.data_end])
        if text not in (b"little", b"big"):
            raise _bad(location, f"unknown byte order {text!r}")
        swap = text.decode() != sys.byteorder

    restore_location = _get_restore_location(map_location)  # type: ignore[no-untyped-call]
    loaded: dict[str, Any] = {}
    alias = isinstance(data, HeldBuffer)

    def persistent_load(pid: Any) -> Any:
        # The check has accepted its shape, types and storage type.
        storage_type, key, device, numel = pid[1:5]
        if key in loaded:
            return loaded[key]
        dtype = _storage_dtype(torch, storage_type)
        nbytes = numel * torch._utils._element_size(dtype)
        member = record(f"data/{key}")
        # torch's get_storage_from_record refuses a record of any other size
        # ("record size ... does not match expected size"), longer ones too, and
        # one its reader cannot extract (a local header pointing past the file).
        if (
            member is None
            or member.error is not None
            or member.method != 0
            or member.size != nbytes
        ):
            raise UnsafeFileError(
                f"{where}: storage {key!r} ({nbytes} bytes) is missing from the archive, "
                "unreadable, or its record has another size; torch.load refuses it, the "
                "file is corrupt",
                path=where,
            )
        # Every storage is fixed-size, as torch's record storages are: a tensor that
        # needs more than its storage holds fails ("Trying to resize storage that is
        # not resizable") instead of growing it with uninitialized memory.
        if not nbytes:
            storage = _fixed_empty(torch, "cpu")
        elif alias and not swap and member.data_offset % _ALIGNMENT == 0:
            # A view of the held bytes, as torch.load(mmap=True) views the file:
            # one copy of the data in all. (Swapping bytes would write into the
            # buffer a signature check may still be hashing, so it copies.)
            storage = torch.frombuffer(
                data, dtype=torch.uint8, count=nbytes, offset=member.data_offset
            ).untyped_storage()
        else:
            copy = bytearray(memoryview(data)[member.data_offset : member.data_offset + nbytes])
            storage = torch.frombuffer(copy, dtype=torch.uint8).untyped_storage()
        if swap:
            storage.byteswap(dtype)
        typed = _typed(torch, restore_location(storage, device), dtype)
        # As torch: an empty storage is not shared, each id gets its own.
        if typed._data_ptr() != 0:
            loaded[key] = typed
        return typed

    plan = ImportPlan.from_walk(reading.analysis.pickles[0], reading.data)
    unpickler = RestrictedUnpickler(
        reading.data,
        plan,
        policy,
        location=where,
        persistent_load=persistent_load,
        check_pid=_pid_checker(torch, 5),
        encoding="utf-8",
    )
    # torch's rebuild functions read the map location from here (tensors whose
    # storage device and rebuild device differ).
    _serialization_tls.map_location = map_location
    try:
        result = unpickler.load()
    finally:
        _serialization_tls.map_location = None
    _validate_sparse(torch)
    return result


def _records(archive: zipread.Archive) -> Callable[[str], zipread.Member | None]:
    """The entry torch's reader returns for a record name (`<prefix>/<name>`, found by
    miniz's case-insensitive search; several candidates are a divergence the scan notes)."""
    by_key: dict[bytes, list[zipread.Member]] = {}
    for m in archive.members:
        by_key.setdefault(m.raw_name.lower(), []).append(m)

    def record(name: str) -> zipread.Member | None:
        query = zipread.torch_query(archive, name)
        found = by_key.get(query.lower(), []) if query else []
        if len(found) > 1 and query:
            return zipread.torch_pick(archive, query)
        return found[0] if found else None

    return record


# -- legacy stacked pickles -------------------------------------------------------------


def _legacy_readings(located: Located) -> list[Reading]:
    """The locator's walks of the five pickles, back to back from offset 0."""
    readings = [r for r in located.readings if r.location == located.location]
    pos = 0
    for r in readings:
        if len(r.analysis.pickles) != 1 or r.analysis.pickles[0].start != pos:
            break
        pos = r.analysis.pickles[0].end
    else:
        if len(readings) == _LEGACY_PICKLES:
            return readings
    raise _bad(located.location, "not the five pickles of a legacy PyTorch file")


def load_torch_legacy(located: Located, data: Any, policy: Policy, map_location: Any = None) -> Any:
    """`torch.load` of a `_use_new_zipfile_serialization=False` file, with every global judged."""
    torch = _torch()
    from torch.serialization import _get_restore_location

    location = located.location
    size = located.size
    readings = _legacy_readings(located)
    restore_location = _get_restore_location(map_location)  # type: ignore[no-untyped-call]

    def unpickle(index: int, **kwargs: Any) -> Any:
        walk = readings[index].analysis.pickles[0]
        return RestrictedUnpickler(
            readings[index].data,
            ImportPlan.from_walk(walk, readings[index].data),
            policy,
            location=location,
            encoding="utf-8",
            **kwargs,
        ).load()

    magic = unpickle(0)
    if type(magic) is not int or magic != MAGIC_NUMBER:
        raise _bad(location, "invalid magic number")
    version = unpickle(1)
    if type(version) is not int or version != _PROTOCOL_VERSION:
        raise _bad(location, f"legacy protocol version {version!r} (torch reads only 1001)")
    # sys_info is read and ignored, as torch does: the raw storages are
    # little-endian whatever the writer's byte order was (torch converted them).
    unpickle(2)

    raw_start = readings[-1].analysis.pickles[0].end
    room = size - raw_start
    claimed = 0
    objects: dict[str, Any] = {}
    roots: list[str] = []

    def persistent_load(pid: Any) -> Any:
        nonlocal claimed
        if _is_module_id(pid):
            return pid[1]  # the class the check accepted, as torch returns it
        # The check has accepted its shape, types, storage type and numel.
        _tag, storage_type, root_key, device, numel, view_metadata = pid
        dtype = _storage_dtype(torch, storage_type)
        element_size = torch._utils._element_size(dtype)
        if root_key not in objects:
            nbytes = numel * element_size
            # Every storage is filled from the file after the keys (8 bytes
            # of count each): one that cannot fit is refused before it is
            # allocated, so no file makes the loader allocate more than it holds.
            if claimed + 8 + nbytes > room:
                raise _refuse(
                    policy,
                    "truncated-pickle",
                    location,
                    f"storage {root_key!r} needs {nbytes} bytes, more than the "
                    f"{room - claimed} the file has left for it",
                )
            claimed += 8 + nbytes
            storage = torch.UntypedStorage(nbytes)
            storage._torch_load_uninitialized = True
            typed = _typed(torch, restore_location(storage, device), dtype)
            objects[root_key] = typed
            roots.append(root_key)
        else:
            typed = objects[root_key]
            if typed._data_ptr() == 0:
                # As torch: an empty storage referenced again is a new one (fixed-size here).
                typed = _typed(torch, _fixed_empty(torch, typed._untyped_storage.device), dtype)
        if view_metadata is None:
            return typed
        view_key, offset, view_size = view_metadata
        if view_key not in objects:
            start, length = offset * element_size, view_size * element_size
            # torch would clip a view that leaves its storage; here it is refused.
            if offset < 0 or view_size < 0 or start + length > typed._untyped_storage.nbytes():
                raise _refuse(
                    policy,
                    "corrupt-container",
                    location,
                    f"storage view {view_key!r} ({view_size} elements at {offset}) leaves "
                    f"storage {root_key!r}",
                )
            objects[view_key] = _typed(torch, typed._untyped_storage[start : start + length], dtype)
        return objects[view_key]

    result = unpickle(3, persistent_load=persistent_load, check_pid=_legacy_pid_checker(torch))
    keys = unpickle(4)
    if type(keys) is not list or any(type(k) is not str for k in keys):
        raise _refuse(policy, "corrupt-container", location, "the storage keys are not strings")
    listed = set(keys)
    missing = [k for k in roots if k not in listed]
    if missing:
        # torch would hand out these storages uninitialized.
        raise _refuse(
            policy,
            "corrupt-container",
            location,
            f"storage {missing[0]!r} has no bytes in the file",
        )
    pos = raw_start
    with memoryview(data) as view:
        window = _Window(view, size)
        for key in keys:
            typed = objects.get(key)
            if typed is None:
                raise _refuse(
                    policy, "corrupt-container", location, f"storage key {key!r} is not a storage"
                )
            element_size = torch._utils._element_size(typed.dtype)
            storage = typed._untyped_storage
            numel = struct.unpack_from("<q", data, pos)[0] if pos + 8 <= size else -1
            nbytes = numel * element_size
            if numel < 0 or pos + 8 + nbytes > size:
                raise _refuse(
                    policy,
                    "truncated-pickle",
                    location,
                    f"storage {key!r} is cut short in the file",
                    pos,
                )
            if nbytes != storage.nbytes():
                raise _refuse(
                    policy,
                    "corrupt-container",
                    location,
                    f"storage {key!r} has {numel} elements in the file and "
                    f"{storage.nbytes() // element_size} in its storage id",
                    pos,
                )
            pos = _fill(storage, window, pos, element_size)
    _validate_sparse(torch)
    return result


# -- legacy tar -------------------------------------------------------------------------


def _tar_members(data: Any, size: int, location: str, policy: Policy) -> dict[str, tuple[int, int]]:
    """The byte ranges of the members torch's reader extracts, found as it finds them.

    `tarfile.getmember` takes the *last* member of a name, of any type; a
    link would be followed to other bytes (or out of the archive), so only a
    regular member is loaded.
    """
    found: dict[str, tuple[int, int]] = {}
    try:
        with tarfile.open(
            fileobj=range_file(data, 0, size), mode="r:", format=tarfile.PAX_FORMAT
        ) as tar:
            for name in _TAR_MEMBERS:
                info = tar.getmember(name)
                if not info.isreg() or info.issparse():
                    raise _refuse(
                        policy,
                        "unsupported-container",
                        f"{location}:{name}",
                        "the member torch would extract is not a regular file (a link or "
                        "a sparse file): its bytes are not the ones scanned",
                    )
                start = info.offset_data
                if start + info.size > size:
                    raise _refuse(
                        policy, "truncated-pickle", f"{location}:{name}", "the member is cut short"
                    )
                found[name] = (start, start + info.size)
    except (tarfile.TarError, KeyError) as exc:
        raise _bad(location, f"not a legacy PyTorch tar archive: {exc}") from None
    return found


def _check_tar_pid(pid: object, guard: ImportGuard) -> None:
    """A tar persistent id: the key of a storage or tensor (torch passes it to `int()`).

    torch's reader also returns the class of a `(class, source file, source)`
    id; those are refused, as the scan refuses them.
    """
    if (type(pid) is str and _TAR_KEY.fullmatch(pid)) or type(pid) is int:
        return
    raise guard.refuse(
        "persistent-id",
        f"persistent id of type {type(pid).__name__} is not a storage or tensor key",
        None,
    )


def load_torch_tar(located: Located, data: Any, policy: Policy, map_location: Any = None) -> Any:
    """`torch.load` of a torch < 0.4 tar file, with every global judged.

    torch itself refuses these with `weights_only=True`; its
    `weights_only=False` reading is followed.
    """
    torch = _torch()
    from torch.serialization import _get_restore_location

    location = located.location
    size = located.size
    members = _tar_members(data, size, location, policy)
    walked = {
        (r.location, r.analysis.pickles[0].start): r for r in located.readings if r.analysis.pickles
    }
    restore_location = _get_restore_location(map_location)  # type: ignore[no-untyped-call]

    def unpickle(name: str, pos: int, **kwargs: Any) -> tuple[Any, int]:
        where = f"{location}:{name}"
        reading = walked.get((where, pos))
        if reading is None:
            raise _refuse(
                policy,
                "scan-load-mismatch",
                where,
                "torch reads a pickle here that the scan did not walk",
                pos - members[name][0],
            )
        walk = reading.analysis.pickles[0]
        obj = RestrictedUnpickler(
            reading.data,
            ImportPlan.from_walk(walk, reading.data),
            policy,
            location=where,
            encoding="utf-8",
            **kwargs,
        ).load()
        return obj, walk.end

    def corrupt(name: str, message: str, pos: int | None = None) -> UnsafeFileError:
        offset = None if pos is None else pos - members[name][0]
        return _refuse(policy, "corrupt-container", f"{location}:{name}", message, offset)

    def count(name: str, pos: int) -> tuple[int, int]:
        value, pos = unpickle(name, pos)
        if type(value) is not int or value < 0:
            raise corrupt(name, "expected a count", pos)
        return value, pos

    objects: dict[object, Any] = {}
    with memoryview(data) as view:
        start, end = members["storages"]
        window = _Window(view, end)
        n, pos = count("storages", start)
        for _ in range(n):
            record, pos = unpickle("storages", pos)
            if type(record) is not tuple or len(record) != 3:
                raise corrupt("storages", "a storage record is not (key, location, type)", pos)
            key, device, storage_type = record
            dtype = _storage_dtype(torch, storage_type)
            if type(key) not in (int, str) or type(device) is not str or dtype is None:
                raise corrupt("storages", f"storage record {key!r} is malformed", pos)
            element_size = torch._utils._element_size(dtype)
            numel = struct.unpack_from("<q", data, pos)[0] if pos + 8 <= end else -1
            nbytes = numel * element_size
            if numel < 0 or pos + 8 + nbytes > end:
                raise _refuse(
                    policy,
                    "truncated-pickle",
                    f"{location}:storages",
                    f"storage {key!r} is cut short",
                    pos - start,
                )
            storage = torch.UntypedStorage(nbytes)
            pos = _fill(storage, window, pos, element_size)
            # Filled, then fixed-size: a tensor the pickles rebuild on it cannot grow it
            # (torch's tar reader would, with uninitialized memory).
            storage = storage[0:nbytes]
            objects[key] = _typed(torch, restore_location(storage, device), dtype)
        views, pos = unpickle("storages", pos)
        if type(views) is not list:
            raise corrupt("storages", "the storage views are not a list")
        for item in views:
            if type(item) is not tuple or len(item) != 4:
                raise corrupt("storages", "a storage view is not (key, root, offset, size)")
            target, root_key, offset, numel = item
            root = objects.get(root_key) if type(root_key) in (int, str) else None
            if (
                type(target) not in (int, str)
                or type(offset) is not int
                or type(numel) is not int
                or not isinstance(root, torch.storage.TypedStorage)
            ):
                raise corrupt("storages", f"storage view {target!r} is malformed")
            element_size = torch._utils._element_size(root.dtype)
            begin, length = offset * element_size, numel * element_size
            if offset < 0 or numel < 0 or begin + length > root._untyped_storage.nbytes():
                raise corrupt("storages", f"storage view {target!r} leaves its storage")
            objects[target] = _typed(
                torch, root._untyped_storage[begin : begin + length], root.dtype
            )

        start, end = members["tensors"]
        n, pos = count("tensors", start)
        for _ in range(n):
            record, pos = unpickle("tensors", pos)
            if type(record) is not tuple or len(record) != 3:
                raise corrupt("tensors", "a tensor record is not (key, storage, type)", pos)
            key, storage_id, _original_type = record
            storage = objects.get(storage_id) if type(storage_id) in (int, str) else None
            if type(key) not in (int, str) or not isinstance(storage, torch.storage.TypedStorage):
                raise corrupt("tensors", f"tensor record {key!r} names no storage", pos)
            ndim = struct.unpack_from("<i", data, pos)[0] if pos + 8 <= end else -1
            after = pos + 8 + 16 * ndim + 8
            if ndim < 0 or after > end:
                raise corrupt("tensors", f"tensor {key!r} is cut short", pos)
            shape = struct.unpack_from(f"<{ndim}q", data, pos + 8)
            stride = struct.unpack_from(f"<{ndim}q", data, pos + 8 + 8 * ndim)
            (storage_offset,) = struct.unpack_from("<q", data, after - 8)
            if not _fits(shape, stride, storage_offset, storage._size()):
                raise corrupt("tensors", f"tensor {key!r} leaves its storage", pos)
            pos = after
            objects[key] = torch.empty((0,), dtype=storage.dtype).set_(
                storage._untyped_storage, storage_offset, shape, stride
            )

    def persistent_load(pid: Any) -> Any:
        found = objects.get(int(pid))
        if found is None:
            raise corrupt("pickle", f"persistent id {pid!r} is no storage or tensor key")
        return found

    result, _end = unpickle(
        "pickle", members["pickle"][0], persistent_load=persistent_load, check_pid=_check_tar_pid
    )
    # torch's tar reader skips this; a sparse tensor is checked before it is used.
    _validate_sparse(torch)
    return result


def _fits(shape: tuple[int, ...], stride: tuple[int, ...], offset: int, numel: int) -> bool:
    """A tensor of this shape, stride and offset stays inside a storage of `numel` elements."""
    if offset < 0 or any(s < 0 for s in shape) or any(s < 0 for s in stride):
        return False
    if 0 in shape:
        return offset <= numel
    last = offset + sum((n - 1) * s for n, s in zip(shape, stride, strict=True))
    return last < numel
