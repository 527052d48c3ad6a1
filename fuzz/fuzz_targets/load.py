"""Fuzz target: the guarded loader returns what the plain loader returns, or refuses.

The first byte picks the plain loader the bytes were written for (pickle,
joblib, npy, npz, PyTorch), the rest is the file. `safeload.loads` (unsigned,
warnings suppressed) must either raise a `SafeloadError` or return an object
equal to what the plain loader returns on the same bytes: same types, same
values bit for bit (floats and array bytes compared exactly), same keys in
the same order. safeload picks the loader by content, as a user picks the
library for a file, so when that plain loader refuses the bytes or returns
another object, some other plain loader must return safeload's object: a
mutation may turn one format into another, and one file may be read by two
loaders (a legacy PyTorch file is a stack of pickles: `pickle.load` returns
the first, torch's magic number, `torch.load` the checkpoint; pandas reads a pickle in a zip or tar of one file). Any other
exception from `safeload.loads`, or an object no plain loader returns, is a
defect.

The plain loader only ever runs on bytes safeload accepted, and the test
suite runs this target in a child process (tests/test_fuzz_loader.py).
"""

from __future__ import annotations

import io
import pickle
import struct
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import safeload
from safeload.errors import SafeloadError

KINDS = ("pickle", "joblib", "npy", "npz", "torch")


def _plain_pickle(data: bytes) -> Any:
    return pickle.loads(data)


def _plain_joblib(data: bytes) -> Any:
    import joblib

    return joblib.load(io.BytesIO(data))


def _plain_numpy(data: bytes) -> Any:
    import numpy as np

    loaded = np.load(io.BytesIO(data), allow_pickle=True)
    if hasattr(loaded, "files"):
        with loaded:
            return {name: loaded[name] for name in loaded.files}
    return loaded


def _plain_torch(data: bytes) -> Any:
    import torch

    # No map_location, as `safeload.loads` is called: a storage tagged "meta" stays on meta.
    return torch.load(io.BytesIO(data), weights_only=False)


def _plain_pandas(compression: str) -> Callable[[bytes], Any]:
    def load(data: bytes) -> Any:
        import pandas as pd

        return pd.read_pickle(io.BytesIO(data), compression=compression)

    return load


PLAIN: dict[str, Callable[[bytes], Any]] = {
    "pickle": _plain_pickle,
    "joblib": _plain_joblib,
    "npy": _plain_numpy,
    "npz": _plain_numpy,
    "torch": _plain_torch,
    # No first byte picks these: a pickle in a zip or tar of one file is read by
    # pandas alone, and safeload loads it as pandas does.
    "pandas-zip": _plain_pandas("zip"),
    "pandas-tar": _plain_pandas("tar"),
}


def one(raw: bytes) -> None:
    if not raw:
        return
    kind, data = KINDS[raw[0] % len(KINDS)], raw[1:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            got = safeload.loads(data, require_signature=False, location="fuzz")
        except SafeloadError:
            return
        if hasattr(got, "files") and isinstance(got, Mapping):
            got = {name: got[name] for name in got.files}
        try:
            expected = PLAIN[kind](data)
        except Exception as exc:
            # safeload picks the loader by content, as a user picks the library for a
            # file: a mutation may turn one format into another (a joblib zlib stream
            # from an .npz seed). Then some other plain loader must return the same.
            if _another_loader_agrees(kind, data, got):
                return
            raise AssertionError(
                f"safeload.loads returned {type(got).__name__}, but the {kind} loader raised "
                f"{type(exc).__name__}: {str(exc)[:200]}, and no other plain loader returns "
                "the same object"
            ) from exc
    problem = difference(got, expected)
    # Bytes two loaders read differently (a legacy PyTorch file, whose first pickle
    # is all pickle.load reads): the object of the loader safeload chose by content.
    if problem is not None and not _another_loader_agrees(kind, data, got):
        raise AssertionError(
            f"safeload.loads and the {kind} loader disagree: {problem}, and no other "
            "plain loader returns the same object"
        )


def _another_loader_agrees(kind: str, data: bytes, got: Any) -> bool:
    for other in sorted({"pickle", "joblib", "npy", "torch", "pandas-zip", "pandas-tar"} - {kind}):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected = PLAIN[other](data)
        except Exception:
            continue
        if hasattr(got, "files") and isinstance(got, Mapping):
            got = {name: got[name] for name in got.files}
        if difference(got, expected) is None:
            return True
    return False


_COMPARING: set[tuple[int, int]] = set()
"""Pairs being compared further up: an object that holds itself (an nn.Module among its
own submodules) is compared once."""


def difference(a: Any, b: Any, where: str = "object") -> str | None:
    """Where `a` and `b` differ (types, values bit for bit, order), or None."""
    pair = (id(a), id(b))
    if pair in _COMPARING:
        return None
    _COMPARING.add(pair)
    try:
        return _difference(a, b, where)
    finally:
        _COMPARING.discard(pair)


def _difference(a: Any, b: Any, where: str) -> str | None:
    if type(a) is not type(b):
        return f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, float):
        return None if struct.pack("<d", a) == struct.pack("<d", b) else f"{where}: {a!r} vs {b!r}"
    if isinstance(a, dict):
        if len(a) != len(b):
            return f"{where}: {len(a)} keys vs {len(b)}"
        # Item by item, keys compared as values are (a key may be a module or a tensor).
        for i, ((ka, va), (kb, vb)) in enumerate(zip(a.items(), b.items(), strict=True)):
            found = difference(ka, kb, f"{where} key {i}") or difference(
                va, vb, f"{where}[{_show(ka)}]"
            )
            if found:
                return found
        return None
    if isinstance(a, list | tuple):
        if len(a) != len(b):
            return f"{where}: length {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = difference(x, y, f"{where}[{i}]")
            if found:
                return found
        return None
    module = type(a).__module__
    if module.startswith("numpy"):
        return _numpy_difference(a, b, where)
    if module.startswith("torch"):
        return _torch_difference(a, b, where)
    return _object_difference(a, b, where)


def _object_difference(a: Any, b: Any, where: str) -> str | None:
    state = not isinstance(a, type) and hasattr(a, "__dict__")
    if state and type(a).__eq__ is object.__eq__:
        # No value equality (`==` is identity, an nn.Module): the state the loader
        # set is the object.
        return difference(vars(a), vars(b), f"{where}.__dict__")
    try:
        equal = bool(a == b)
    except Exception as exc:
        if state:
            # An __eq__ over a state that holds tensors or arrays (argparse.Namespace
            # compares its __dict__s) raises: that state is compared instead.
            return difference(vars(a), vars(b), f"{where}.__dict__")
        return f"{where}: cannot compare ({type(exc).__name__})"
    return None if equal else f"{where}: {_show(a)} vs {_show(b)}"


def _show(x: Any) -> str:
    try:
        return f"{x!r:.80}"
    except Exception:  # the repr of a half-built object (an nn.Module missing a field)
        return f"<{type(x).__name__}>"


def _numpy_difference(a: Any, b: Any, where: str) -> str | None:
    import numpy as np

    if isinstance(a, np.ndarray | np.generic):
        if a.dtype != b.dtype or a.shape != b.shape:
            return f"{where}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        if a.dtype.hasobject:
            return difference(np.asarray(a).ravel().tolist(), np.asarray(b).ravel().tolist(), where)
        if a.dtype.names is not None:
            # Field by field: the bytes no field covers are unspecified (joblib fills
            # an np.empty array by assignment, which copies the fields only).
            for name in a.dtype.names:
                found = _numpy_difference(a[name], b[name], f"{where}[{name!r}]")
                if found:
                    return found
            return None
        return None if a.tobytes() == b.tobytes() else f"{where}: array bytes differ"
    return None if a == b else f"{where}: {a!r:.80} vs {b!r:.80}"


def _torch_difference(a: Any, b: Any, where: str) -> str | None:
    import torch

    if not isinstance(a, torch.Tensor):
        return _object_difference(a, b, where)
    kind = (type(a), a.dtype, a.layout, a.device, a.is_quantized, a.is_nested, a.requires_grad)
    if kind != (type(b), b.dtype, b.layout, b.device, b.is_quantized, b.is_nested, b.requires_grad):
        return f"{where}: {kind} vs {(type(b), b.dtype, b.layout, b.device, b.requires_grad)}"
    if a.is_nested:
        return difference(list(a.unbind()), list(b.unbind()), where)
    if a.shape != b.shape:
        return f"{where}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
    if a.layout == torch.strided and (a.stride(), a.storage_offset()) != (
        b.stride(),
        b.storage_offset(),
    ):
        return f"{where}: strides {a.stride()} at {a.storage_offset()} vs {b.stride()} at {b.storage_offset()}"
    if a.numel() == 0 or a.device.type == "meta":
        return None  # no bytes
    if a.layout != torch.strided:
        return _torch_difference(a.to_dense(), b.to_dense(), f"{where} (dense)")
    if a.is_quantized:
        return difference(_quantization(a), _quantization(b), where)
    # A copy in a fresh buffer: the tensor's own strides may allow no byte view
    # (a size-1 dimension keeps any stride).
    left = torch.empty(a.numel(), dtype=a.dtype).copy_(a.detach().reshape(-1))
    right = torch.empty(b.numel(), dtype=b.dtype).copy_(b.detach().reshape(-1))
    same = torch.equal(left.view(torch.uint8), right.view(torch.uint8))
    return None if same else f"{where}: tensor bytes differ"


def _quantization(t: Any) -> tuple[Any, ...]:
    """A quantized tensor's scheme, parameters and integer values."""
    import torch

    scheme = t.qscheme()
    if scheme in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        params: tuple[Any, ...] = (t.q_scale(), t.q_zero_point())
    else:
        params = (t.q_per_channel_scales(), t.q_per_channel_zero_points(), t.q_per_channel_axis())
    return (str(scheme), *params, t.int_repr())
