"""A zip after prepended bytes: zipfile finds it, numpy.load and torch.load do not.

Found by the loader fuzzer (tests/fuzz_regressions/load/prefixed-npz-*): the guarded
loader returned the archive's arrays for bytes `numpy.load` refuses.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch

import safeload
from safeload.errors import UnsupportedFormatError


def _npz() -> bytes:
    out = io.BytesIO()
    np.savez(out, a=np.arange(4))
    return out.getvalue()


def _checkpoint() -> bytes:
    out = io.BytesIO()
    torch.save({"w": torch.arange(3)}, out)
    return out.getvalue()


@pytest.mark.parametrize("prefix", [b"\x03", b"#!", b"\xff" * 64])
def test_an_npz_after_prepended_bytes_is_refused_as_numpy_refuses_it(prefix: bytes) -> None:
    data = prefix + _npz()
    assert zipfile.is_zipfile(io.BytesIO(data))  # zipfile still finds the archive
    with pytest.raises(Exception):  # noqa: B017 - numpy's own errors vary by prefix
        np.load(io.BytesIO(data), allow_pickle=True)
    with pytest.raises(UnsupportedFormatError, match="offset 0"):
        safeload.loads(data, require_signature=False)


def test_the_same_npz_from_offset_0_loads() -> None:
    got = safeload.loads(_npz(), require_signature=False)
    assert np.array_equal(got["a"], np.arange(4))


def test_a_checkpoint_after_prepended_bytes_is_refused_as_torch_refuses_it() -> None:
    data = b"\x03" + _checkpoint()
    with pytest.raises(Exception):  # noqa: B017 - torch's legacy reader fails on it
        torch.load(io.BytesIO(data), weights_only=False)
    with pytest.raises(safeload.SafeloadError):
        safeload.loads(data, require_signature=False)
