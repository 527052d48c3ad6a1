"""Zip archives where torch's reader and Python's zipfile disagree (issue 9, zip half).

Every archive of `tests/hostile_zip.HOSTILE` is built byte by byte and proven
under the loader it targets (torch.load(weights_only=False), numpy.load(
allow_pickle=True), pandas.read_pickle(compression="zip")), in a forked child
in a temporary folder: the payload creates a `canary` file there. Then
`safeload scan` must not call it safe (the payload is found where the loader
reads it) and `safeload.load` must refuse it without the canary appearing.
Real files from torch.save, np.savez and DataFrame.to_pickle stay safe, and
both reader models agree on them.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import safeload
from safeload import Verdict
from safeload._formats import zipread
from tests import hostile_zip as hz
from tests.hostile_containers import OPENERS, state_dict
from tests.loadrun import canary_in, run_jobs

_BY_NAME = {h.name: h for h in hz.HOSTILE}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each hostile archive on disk, loaded by its plain loader and by safeload.load."""
    base = tmp_path_factory.mktemp("zip-readers")
    jobs = []
    for h in hz.HOSTILE:
        folder = base / h.name
        folder.mkdir()
        path = folder / f"f{h.kind.suffix}"
        path.write_bytes(h.build(h.kind))
        jobs.append({"kind": "plain", "path": path, "cwd": folder / "plain", "code": h.kind.code})
        jobs.append({"kind": "safeload", "path": path, "cwd": folder / "guarded"})
    # torch.load of an archive whose data.pkl carries the directory attribute (see below)
    flagged = base / "directory-flag"
    flagged.mkdir()
    (flagged / "d.pt").write_bytes(hz.directory_flag(hz.TORCH))
    code = "import torch\nassert torch.load(path, weights_only=False) != {'ok': 1}, 'file bytes'"
    jobs.append({"kind": "plain", "path": flagged / "d.pt", "cwd": flagged / "run", "code": code})
    results = run_jobs(jobs)
    out: dict[str, Any] = {"directory-flag": results[-1]}
    for i, h in enumerate(hz.HOSTILE):
        plain, guarded = jobs[2 * i], jobs[2 * i + 1]
        out[h.name] = {
            "path": Path(plain["path"]),
            "plain_canary": canary_in(plain["cwd"]),
            "plain": results[2 * i],
            "guarded_canary": canary_in(guarded["cwd"]),
            "guarded": results[2 * i + 1],
        }
    return out


@pytest.mark.parametrize("name", sorted(_BY_NAME))
def test_payload_fires_under_the_real_loader(loaded: dict[str, Any], name: str) -> None:
    run = loaded[name]
    assert run["plain_canary"], run["plain"]


@pytest.mark.parametrize("name", sorted(_BY_NAME))
def test_scan_finds_the_payload(loaded: dict[str, Any], name: str) -> None:
    hostile = _BY_NAME[name]
    path = loaded[name]["path"]
    report = safeload.scan_file(path, location=path.name)
    assert report.verdict is Verdict.DANGEROUS, report.findings
    hits = [f for f in report.findings if f.global_name in OPENERS]
    assert hits, report.findings
    divergence = [f for f in report.findings if f.rule_name == "zip-reader-divergence"]
    assert bool(divergence) is hostile.divergence, report.findings
    for f in divergence:
        assert f.rule == "SL311"
        assert "torch" in f.message or "numpy.load" in f.message, f.message


@pytest.mark.parametrize("name", sorted(_BY_NAME))
def test_guarded_load_refuses(loaded: dict[str, Any], name: str) -> None:
    run = loaded[name]
    assert run["guarded"]["outcome"] == "raised", run["guarded"]
    assert run["guarded"]["safeload_error"], run["guarded"]
    assert not run["guarded_canary"]


def test_divergence_names_both_readings(tmp_path: Path) -> None:
    raw = hz.concat_shift(hz.PANDAS)
    report = safeload.scan_bytes(raw, location="c.zip")
    (finding,) = [f for f in report.findings if f.rule_name == "zip-reader-divergence"]
    assert "torch's zip reader" in finding.message
    assert "Python's zipfile" in finding.message
    views = zipread.read_views(raw, 0, len(raw))
    assert views.torch is not None and views.zipfile is not None
    # the two directories, and each reader's bytes for the one member
    assert f"at {views.torch.cd_offset}" in finding.message
    assert f"at {views.zipfile.cd_offset}" in finding.message
    assert views.torch.cd_offset != views.zipfile.cd_offset


def test_torch_reads_the_case_insensitive_match_as_data_pkl() -> None:
    raw = hz.case_insensitive_name(hz.TORCH)
    report = safeload.scan_bytes(raw, location="c.pt")
    assert report.format == "pytorch-zip"
    hits = [f.location for f in report.findings if f.global_name in OPENERS]
    assert "c.pt:archive/data.pkl" in hits


def test_torch_unpickles_uninitialized_memory_for_a_directory_entry(
    loaded: dict[str, Any],
) -> None:
    """With the directory attribute on data.pkl, torch.load unpickles memory the file never
    held (the file's own data.pkl is a benign dict, which zipfile returns): not safe, since
    what torch reads cannot be scanned."""
    raw = hz.directory_flag(hz.TORCH)
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        assert pickle.loads(zf.read("archive/data.pkl")) == {"ok": 1}
    # Whatever the garbage does (usually an invalid opcode), it is not the file's dict.
    assert loaded["directory-flag"].get("type") != "AssertionError", loaded["directory-flag"]
    report = safeload.scan_bytes(raw, location="d.pt")
    assert report.verdict is Verdict.DANGEROUS
    (finding,) = [f for f in report.findings if f.rule_name == "zip-reader-divergence"]
    assert "uninitialized memory" in finding.message


# -- the models against the real zipfile, on the hostile archives ----------------------------


@pytest.mark.parametrize("name", sorted(_BY_NAME))
def test_zipfile_model_matches_zipfile(name: str) -> None:
    hostile = _BY_NAME[name]
    raw = hostile.build(hostile.kind)
    model = zipread.read_zipfile(raw, 0, len(raw))
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        assert [m.name for m in model.members] == zf.namelist()
        mine = model.by_name()
        for info in zf.infolist():
            assert mine[info.filename].data_offset is not None
        for name_, member in mine.items():
            with zf.open(name_) as handle:
                handle._expected_crc = None  # type: ignore[attr-defined]
                real = handle.read()
            assert raw[member.data_offset : member.data_offset + member.read_size] == real


# -- benign controls ------------------------------------------------------------------------


def _torch_zip() -> bytes:
    buf = io.BytesIO()
    torch.save(state_dict(), buf)
    return buf.getvalue()


def _npz(compressed: bool) -> bytes:
    buf = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    save(buf, a=np.arange(10), A=np.ones((2, 3)), o=np.array([1, "x", None], dtype=object))
    return buf.getvalue()


def _pandas_zip(tmp_path: Path) -> bytes:
    path = tmp_path / "frame.pkl.zip"
    pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}).to_pickle(path)
    return path.read_bytes()


@pytest.mark.parametrize("which", ["torch", "npz", "npz-compressed", "pandas"])
def test_real_archives_stay_safe_and_readers_agree(tmp_path: Path, which: str) -> None:
    raw = {
        "torch": _torch_zip,
        "npz": lambda: _npz(False),
        "npz-compressed": lambda: _npz(True),
        "pandas": lambda: _pandas_zip(tmp_path),
    }[which]()
    report = safeload.scan_bytes(raw, location=which)
    assert report.verdict is Verdict.SAFE, report.findings
    assert not [f for f in report.findings if f.rule_name.startswith("zip-reader")]
    views = zipread.read_views(raw, 0, len(raw))
    assert views.torch is not None and views.zipfile is not None
    assert [(m.raw_name, m.selection) for m in views.torch.members] == [
        (m.raw_name, m.selection) for m in views.zipfile.members
    ]
    assert zipread.divergences(views) == []


# -- the loaders that read with zipfile load only zipfile's reading (issue 15) --------------


def _savez(compressed: bool = False) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, a=np.arange(19), b=np.arange(20))
    return buf.getvalue()


def _gap_before_end_record(raw: bytes, gap: bytes = b"\0" * 49) -> bytes:
    """`gap` between the central directory and the end record: zipfile takes it for bytes
    prepended to the archive (`concat`) and reads its directory `len(gap)` bytes too far on;
    torch's reader (miniz) trusts the offsets and reads the real directory."""
    eocd = raw.rindex(hz.END)
    return raw[:eocd] + gap + raw[eocd:]


def _central(raw: bytes, index: int = 0) -> int:
    pos = -1
    for _ in range(index + 1):
        pos = raw.index(hz.CENTRAL, pos + 1)
    return pos


def _npz_load(raw: bytes) -> Any:
    from safeload.load._numpy import load_npz

    def unpickle(data: Any, start: int, end: int, location: str) -> Any:
        raise AssertionError("no member of these archives holds a pickle")

    return load_npz(raw, 0, len(raw), "f.npz", unpickle)


def test_an_npz_only_torchs_reader_opens_is_not_loaded() -> None:
    """The fuzz input npz-bad-central-directory-magic (and persid-loaded-where-pickle-fails,
    the same archive under the pickle loader): safeload.loads returned the arrays of torch's
    reading, which numpy.load (zipfile: 'Bad magic number for central directory') refuses."""
    raw = _gap_before_end_record(_savez())
    assert [m.name for m in zipread.read_torch(raw, 0, len(raw)).members] == ["a.npy", "b.npy"]
    with pytest.raises(zipfile.BadZipFile, match="Bad magic number for central directory"):
        np.load(io.BytesIO(raw), allow_pickle=True)
    with pytest.raises(RuntimeError):  # torch.load: the entries are in no folder
        torch.load(io.BytesIO(raw), weights_only=False)
    with pytest.raises(safeload.UnsupportedFormatError, match="zipfile"):
        _npz_load(raw)
    with pytest.raises(safeload.SafeloadError):
        safeload.loads(raw, require_signature=False)
    # The scan still reads the archive as torch's reader does, and says zipfile cannot.
    report = safeload.scan_bytes(raw, location="f.npz")
    (note,) = [f for f in report.findings if f.rule_name == "zip-reader-disagreement"]
    assert "cannot open" in note.message and "central directory entry 0" in note.message
    assert not [f for f in report.findings if f.rule_name == "zip-reader-divergence"]


def test_a_pandas_zip_only_torchs_reader_opens_is_not_loaded(tmp_path: Path) -> None:
    raw = _gap_before_end_record(_pandas_zip(tmp_path))
    path = tmp_path / "gap.pkl.zip"
    path.write_bytes(raw)
    assert len(zipread.read_torch(raw, 0, len(raw)).members) == 1
    with pytest.raises(zipfile.BadZipFile):
        pd.read_pickle(path, compression="zip")
    with pytest.raises(safeload.SafeloadError):
        safeload.load(path, require_signature=False)


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "deflated"])
def test_a_member_is_cut_at_its_declared_size_as_zipfile_cuts_it(compressed: bool) -> None:
    """zipfile reads a member up to its declared size (a stored one: the smaller of its two
    sizes) and checks the CRC-32 of those bytes; the CRC here is the whole member's, so
    numpy.load refuses what the loader read whole and returned."""
    edit = bytearray(_savez(compressed))
    cd = _central(bytes(edit))
    (size,) = struct.unpack_from("<I", edit, cd + 24)
    struct.pack_into("<I", edit, cd + 24, size - 8)  # the last element is left out
    raw = bytes(edit)
    with pytest.raises((zipfile.BadZipFile, ValueError)):
        with np.load(io.BytesIO(raw)) as npz:
            npz["a"]
    with pytest.raises(safeload.UnsupportedFormatError, match="CRC-32"):
        _npz_load(raw)
    with pytest.raises(safeload.SafeloadError):
        safeload.loads(raw, require_signature=False)


def test_a_zip64_end_record_before_the_file_is_read_as_bytesio_reads_it(tmp_path: Path) -> None:
    """A locator whose ZIP64 end record would start before offset 0: zipfile fails on the
    file (its seek does), but reads bytes in memory from the classic end record alone (a
    BytesIO clamps the seek to 0 and finds no ZIP64 record there). The model raised, so the
    scan did not read the BytesIO reading; it reads it now, and no loader loads it."""
    raw = hz.zip64_locator(0) + hz.end_record(0, 0, 20)
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        assert zf.namelist() == []
    path = tmp_path / "e.zip"
    path.write_bytes(raw)
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(path)
    archive = zipread.read_zipfile(raw, 0, len(raw))
    assert archive.members == ()
    assert archive.refusal is not None and "from a file" in archive.refusal
    with pytest.raises(safeload.UnsupportedFormatError, match="from a file"):
        _npz_load(raw)
