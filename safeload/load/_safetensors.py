"""safetensors files, loaded through the safetensors library (no pickle is involved)."""

from __future__ import annotations

from typing import Any

from ..errors import UnsupportedFormatError

__all__ = ["load_safetensors"]


def load_safetensors(data: bytes, location: str) -> dict[str, Any]:
    """`{name: tensor}`: torch tensors when torch is installed, else numpy arrays."""
    try:
        import safetensors  # noqa: F401
    except ImportError:
        raise UnsupportedFormatError(
            f"{location}: loading a safetensors file needs the safetensors package: "
            "pip install safetensors"
        ) from None
    try:
        from safetensors.torch import load as load_torch
    except ImportError:
        from safetensors.numpy import load as load_numpy

        return dict(load_numpy(data))
    return dict(load_torch(data))
