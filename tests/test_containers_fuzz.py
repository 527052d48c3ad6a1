"""Damaged containers never crash the scanner: every input gets a verdict."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import safeload
from safeload import Verdict


def _seeds() -> dict[str, bytes]:
    import torch

    body = pickle.dumps({"a": [1, 2.5, "x"], "b": (None, True)}, protocol=4)
    seeds: dict[str, bytes] = {}
    buf = io.BytesIO()
    torch.save({"w": torch.ones(3)}, buf)
    seeds["torch"] = buf.getvalue()
    buf = io.BytesIO()
    torch.save({"w": torch.ones(3)}, buf, _use_new_zipfile_serialization=False)
    seeds["torch-legacy"] = buf.getvalue()
    buf = io.BytesIO()
    np.savez_compressed(buf, a=np.arange(5), o=np.array([{}], dtype=object))
    seeds["npz"] = buf.getvalue()
    buf = io.BytesIO()
    np.save(buf, np.array([1, "x"], dtype=object))
    seeds["npy"] = buf.getvalue()
    seeds["gzip"] = gzip.compress(body)
    seeds["bz2"] = bz2.compress(body)
    seeds["xz"] = lzma.compress(body)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("m.pkl")
        info.size = len(body)
        tf.addfile(info, io.BytesIO(body))
    seeds["tar"] = buf.getvalue()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("m.pkl", body)
        zf.writestr("in.zip", seeds["npz"])
    seeds["zip"] = buf.getvalue()
    header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    seeds["safetensors"] = len(header).to_bytes(8, "little") + header + bytes(4)
    return seeds


SEEDS = _seeds()


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    raw = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 6))):
        what = draw(st.sampled_from(["flip", "cut", "zero", "grow"]))
        at = draw(st.integers(0, max(0, len(raw) - 1)))
        if what == "flip" and raw:
            raw[at] = draw(st.integers(0, 255))
        elif what == "cut":
            del raw[at:]
        elif what == "zero":
            raw[at : at + draw(st.integers(1, 64))] = bytes(64)[: len(raw[at : at + 64])]
        else:
            raw[at:at] = draw(st.binary(max_size=32))
    return bytes(raw)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged())
def test_damaged_container_gets_a_verdict(data: bytes) -> None:
    report = safeload.scan_bytes(data, location="f")
    assert isinstance(report.verdict, Verdict)
    assert report.format


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_a_truncated_container_is_never_safe(name: str) -> None:
    raw = SEEDS[name]
    # a tar's members end long before its zero padding; only cuts into them count
    end = 1024 if name == "tar" else len(raw)
    step = max(1, end // 97)
    for cut in range(0, end, step):
        report = safeload.scan_bytes(raw[:cut], location="f")
        assert report.verdict is not Verdict.SAFE, (cut, report.findings)
    assert safeload.scan_bytes(raw, location="f").verdict in (Verdict.SAFE, Verdict.UNKNOWN)
