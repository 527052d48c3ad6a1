"""PyTorch zip checkpoints, loaded the way `torch.load` loads them, through the policy.

torch's own loader runs its pickle through a `pickle_module` it wraps with
shortcuts that never reach `find_class` (any name containing "Storage"
becomes a dtype holder), so the guarded loader does torch's part itself:
`data.pkl` (the bytes the scan walked) goes through the restricted
unpickler, and each storage persistent id, once `check_torch_storage_pid`
accepts it, becomes a storage copied from the archive member the locator's
zip reader found for it. Tensors are then rebuilt by torch's own allowlisted
`_rebuild_*` functions, so they equal what `torch.load` returns.
"""

from __future__ import annotations

import sys
from typing import Any

from .._formats import Located, ReadingKind, zipread
from .._formats.torch import archive_prefix
from ..errors import UnsafeFileError, UnsupportedFormatError
from ..policy import Policy
from ._unpickler import ImportPlan, RestrictedUnpickler, check_torch_storage_pid

__all__ = ["load_torch_zip"]


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


def load_torch_zip(located: Located, data: Any, policy: Policy, map_location: Any = None) -> Any:
    """The object `torch.load(weights_only=False)` returns, with every global judged."""
    torch = _torch()
    from torch.serialization import _get_restore_location, _serialization_tls

    location = located.location
    archive = zipread.read_archive(data, 0, located.size)
    prefix = archive_prefix(archive)
    members = {m.name: m for m in archive.members}
    if prefix is None or f"{prefix}/data.pkl" not in members:
        raise _bad(location, "a PyTorch archive without data.pkl")
    if f"{prefix}/constants.pkl" in members:
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
    order = members.get(f"{prefix}/byteorder")
    if order is not None:
        text = bytes(data[order.data_offset : order.data_end])
        if text not in (b"little", b"big"):
            raise _bad(location, f"unknown byte order {text!r}")
        swap = text.decode() != sys.byteorder

    restore_location = _get_restore_location(map_location)  # type: ignore[no-untyped-call]
    loaded: dict[str, Any] = {}

    def persistent_load(pid: Any) -> Any:
        # check_torch_storage_pid has checked its shape and types.
        storage_type, key, device, numel = pid[1:5]
        dtype = torch.uint8 if storage_type is torch.UntypedStorage else storage_type.dtype
        if key in loaded:
            return loaded[key]
        nbytes = numel * torch._utils._element_size(dtype)
        member = members.get(f"{prefix}/data/{key}")
        if member is None or member.method != 0 or member.size < nbytes or numel < 0:
            raise UnsafeFileError(
                f"{where}: storage {key!r} ({nbytes} bytes) is missing or cut short in the "
                "archive; the file is corrupt",
                path=where,
            )
        if nbytes:
            view = memoryview(data)[member.data_offset : member.data_offset + nbytes]
            storage = torch.UntypedStorage.from_buffer(view, dtype=torch.uint8)
        else:
            storage = torch.UntypedStorage(0)
        if swap:
            storage.byteswap(dtype)
        typed = torch.storage.TypedStorage(
            wrap_storage=restore_location(storage, device), dtype=dtype, _internal=True
        )
        loaded[key] = typed
        return typed

    plan = ImportPlan.from_walk(reading.analysis.pickles[0])
    unpickler = RestrictedUnpickler(
        reading.data,
        plan,
        policy,
        location=where,
        persistent_load=persistent_load,
        check_pid=check_torch_storage_pid,
        encoding="utf-8",
    )
    # torch's rebuild functions read the map location from here (tensors whose
    # storage device and rebuild device differ).
    _serialization_tls.map_location = map_location
    try:
        result = unpickler.load()
    finally:
        _serialization_tls.map_location = None
    torch._utils._validate_loaded_sparse_tensors()
    return result
