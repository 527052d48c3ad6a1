"""Zip members compressed with bzip2 (method 12) or lzma (method 14).

Python's `zipfile`, which `numpy.load` and `pandas.read_pickle` read through,
decompresses both; torch's miniz reader only stored and deflated members. A
real `np.savez` archive rewritten with `zipfile.ZIP_BZIP2` / `ZIP_LZMA` and a
pickled object array holding a payload is proven under
`numpy.load(allow_pickle=True)` in a forked child (the payload creates a
canary); `safeload scan` must find the payload and `safeload.load` refuse it.
Benign rewritten archives scan safe, as their deflated originals do; a method
no reader of safeload decompresses stays not safe; the expansion limit and
lzma's dictionary bound hold.
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import safeload
from safeload import Verdict
from safeload._formats import zipread
from tests.hostile_containers import OPENERS, Evil
from tests.loadrun import canary_in, run_jobs

METHODS = {"bzip2": zipfile.ZIP_BZIP2, "lzma": zipfile.ZIP_LZMA}
NUMPY_LOAD = (
    "import numpy as np\n"
    "with np.load(path, allow_pickle=True) as npz:\n"
    "    [npz[k] for k in npz.files]\n"
)

pytestmark = pytest.mark.filterwarnings("ignore::safeload.UnsignedLoadWarning")


def rewritten(raw: bytes, method: int) -> bytes:
    """The zip `raw` with every member recompressed with `method` (names, order kept)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw)) as src, zipfile.ZipFile(out, "w", method) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info), compress_type=method)
    return out.getvalue()


def savez(**arrays: Any) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def hostile_npz() -> bytes:
    return savez(weights=np.arange(10.0), extra=np.array([1, Evil()], dtype=object))


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    base = tmp_path_factory.mktemp("zip-methods")
    jobs = []
    for name, method in METHODS.items():
        folder = base / name
        folder.mkdir()
        path = folder / "model.npz"
        path.write_bytes(rewritten(hostile_npz(), method))
        jobs.append({"kind": "plain", "path": path, "cwd": folder / "plain", "code": NUMPY_LOAD})
        jobs.append({"kind": "safeload", "path": path, "cwd": folder / "guarded"})
    results = run_jobs(jobs, preload=("numpy",))
    out: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(METHODS):
        plain, guarded = jobs[2 * i], jobs[2 * i + 1]
        out[name] = {
            "path": Path(plain["path"]),
            "plain": results[2 * i],
            "plain_canary": canary_in(plain["cwd"]),
            "guarded": results[2 * i + 1],
            "guarded_canary": canary_in(guarded["cwd"]),
        }
    return out


@pytest.mark.parametrize("name", list(METHODS))
def test_the_members_really_use_the_method(loaded: dict[str, dict[str, Any]], name: str) -> None:
    raw = loaded[name]["path"].read_bytes()
    archive = zipread.read_archive(raw, 0, len(raw))
    assert {m.method for m in archive.members} == {METHODS[name]}


@pytest.mark.parametrize("name", list(METHODS))
def test_payload_fires_under_numpy_load(loaded: dict[str, dict[str, Any]], name: str) -> None:
    assert loaded[name]["plain_canary"], loaded[name]["plain"]


@pytest.mark.parametrize("name", list(METHODS))
def test_scan_finds_the_payload_in_the_member(loaded: dict[str, dict[str, Any]], name: str) -> None:
    path = loaded[name]["path"]
    report = safeload.scan_file(path, location="model.npz")
    assert report.verdict is Verdict.DANGEROUS, report.findings
    hits = [f for f in report.findings if f.global_name in OPENERS]
    assert [f.location for f in hits] == ["model.npz:extra.npy"], report.findings
    # the member was read, not merely refused as an unknown method
    assert not [f for f in report.findings if f.rule_name == "unsupported-container"]


@pytest.mark.parametrize("name", list(METHODS))
def test_guarded_load_refuses(loaded: dict[str, dict[str, Any]], name: str) -> None:
    run = loaded[name]
    assert run["guarded"]["outcome"] == "raised", run["guarded"]
    assert run["guarded"]["unsafe"], run["guarded"]
    assert not run["guarded_canary"]


@pytest.mark.parametrize("name", list(METHODS))
def test_benign_archives_scan_like_deflated_ones(name: str) -> None:
    rng = np.random.default_rng(0)
    arrays: dict[str, Any] = {
        "small": np.arange(100, dtype=np.int32),
        # over the 1 MiB of a big member's head that a scan expands first
        "big": rng.normal(size=300_000),
        "labels": np.array(["a", "bc"]),
    }
    deflated = io.BytesIO()
    np.savez_compressed(deflated, **arrays)
    reference = safeload.scan_bytes(deflated.getvalue(), location="m.npz")
    assert reference.verdict is Verdict.SAFE, reference.findings
    report = safeload.scan_bytes(rewritten(savez(**arrays), METHODS[name]), location="m.npz")
    assert report.verdict is Verdict.SAFE, report.findings
    assert report.format == reference.format == "npz"


@pytest.mark.parametrize("name", list(METHODS))
def test_benign_pickle_member_loads_like_numpy(name: str) -> None:
    raw = rewritten(savez(obj=np.array([{"a": 1}, 2.5], dtype=object)), METHODS[name])
    assert safeload.scan_bytes(raw, location="m.npz").verdict is Verdict.SAFE
    loaded = safeload.loads(raw, require_signature=False)
    with np.load(io.BytesIO(raw), allow_pickle=True) as npz:
        expected = npz["obj"]
    assert list(loaded["obj"]) == list(expected)


def test_a_method_no_reader_of_safeload_decompresses_is_not_safe() -> None:
    # Method 93 (Zstandard): zipfile of Python 3.14 reads it, so a loader may.
    raw = bytearray(rewritten(hostile_npz(), zipfile.ZIP_STORED))
    for at in _header_offsets(bytes(raw)):
        struct.pack_into("<H", raw, at, 93)
    report = safeload.scan_bytes(bytes(raw), location="m.npz")
    assert report.verdict is not Verdict.SAFE
    unsupported = [f for f in report.findings if f.rule_name == "unsupported-container"]
    assert unsupported and all("method 93" in f.message for f in unsupported), report.findings


def _header_offsets(raw: bytes) -> list[int]:
    """Where each local and central header's method field is."""
    spots = []
    for sig, field in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = raw.find(sig)
        while at >= 0:
            spots.append(at + field)
            at = raw.find(sig, at + 4)
    return spots


@pytest.mark.parametrize("name", list(METHODS))
def test_a_member_bomb_is_cut_at_the_expansion_limit(name: str) -> None:
    # 64 MiB of zeros in a member of a few KB: past the 16 MiB any small file may produce
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", METHODS[name]) as zf:
        zf.writestr("a.npy", bytes(64 << 20))
    raw = out.getvalue()
    assert len(raw) < 64 << 10
    report = safeload.scan_bytes(raw, location="bomb.npz")
    assert report.verdict is not Verdict.SAFE
    cut = [f for f in report.findings if f.rule == "SL310"]
    assert cut and cut[0].location == "bomb.npz:a.npy", report.findings


def test_an_lzma_member_asking_for_a_huge_dictionary_is_not_read() -> None:
    raw = bytearray(rewritten(hostile_npz(), zipfile.ZIP_LZMA))
    archive = zipread.read_archive(bytes(raw), 0, len(raw))
    for m in archive.members:
        # 2-byte version, 2-byte length (5), then lc/lp/pb and the dictionary size
        assert raw[m.data_offset + 2 : m.data_offset + 4] == b"\x05\x00"
        struct.pack_into("<I", raw, m.data_offset + 5, 0xFFFF_0000)
    report = safeload.scan_bytes(bytes(raw), location="m.npz")
    assert report.verdict is not Verdict.SAFE
    corrupt = [f for f in report.findings if f.rule_name == "corrupt-container"]
    assert corrupt and "dictionary" in corrupt[0].message, report.findings


def test_torch_load_refuses_a_bzip2_member_and_so_does_safeload(tmp_path: Path) -> None:
    buf = io.BytesIO()
    torch.save({"w": torch.arange(4.0)}, buf)
    raw = rewritten(buf.getvalue(), zipfile.ZIP_BZIP2)
    path = tmp_path / "m.pt"
    path.write_bytes(raw)
    with pytest.raises(RuntimeError):
        torch.load(path, weights_only=False)
    report = safeload.scan_file(path, location="m.pt")
    assert report.verdict is not Verdict.SAFE, report.findings
    with pytest.raises(safeload.SafeloadError):
        safeload.load(path, require_signature=False)


@pytest.mark.parametrize("name", list(METHODS))
def test_benign_archives_load_like_numpy_load(name: str) -> None:
    # a big numeric member (the scan reads only its head) and a small one
    arrays = {"big": np.random.default_rng(0).normal(size=300_000), "small": np.arange(3)}
    raw = rewritten(savez(**arrays), METHODS[name])
    loaded = safeload.loads(raw, require_signature=False)
    with np.load(io.BytesIO(raw)) as npz:
        for key, value in arrays.items():
            assert np.array_equal(loaded[key], npz[key])
            assert np.array_equal(loaded[key], value)
