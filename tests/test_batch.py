"""Directory discovery (extensions + content sniffing) and parallel batch scans."""

from __future__ import annotations

import bz2
import collections
import gzip
import io
import json
import lzma
import os
import pickle
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import joblib
import numpy as np
import pytest

import safeload
from safeload import Policy, Verdict
from safeload.scan._batch import MODEL_SUFFIXES, discover, scan_paths, sniff

# os.system('id') at protocol 0: GLOBAL, MARK, STRING, TUPLE, REDUCE, STOP.
HOSTILE = b"cos\nsystem\n(S'id'\ntR."

TEXTS = {
    "readme": b"Nothing to see here.\nJust words.\n",
    "name-line": b"Name: foo\nVersion: 1\n",
    "json": b'{"weights": [1, 2, 3]}\n',
    "python": b"import os\nprint(os.getcwd())\n",
    "csv": b"a,b,c\n1,2,3\n",
    "long-text": b"Lorem ipsum dolor sit amet. " * 40,
    "empty": b"",
}


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.default()


def real_containers() -> dict[str, bytes]:
    """Each container kind, written by the real library."""
    payload = pickle.dumps({"w": [1.0, 2.0]})
    out: dict[str, bytes] = {}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
    out["zip"] = buf.getvalue()
    out["gzip"] = gzip.compress(payload)
    out["bz2"] = bz2.compress(payload)
    out["xz"] = lzma.compress(payload)
    out["lzma"] = lzma.compress(payload, format=lzma.FORMAT_ALONE)
    out["zlib"] = zlib.compress(payload)
    buf = io.BytesIO()
    np.save(buf, np.arange(4))
    out["npy"] = buf.getvalue()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("data.pkl")
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    out["tar"] = buf.getvalue()
    for kind in ("zlib", "lz4"):
        buf = io.BytesIO()
        joblib.dump({"w": 1}, buf, compress=(kind, 3))
        out[f"joblib-{kind}"] = buf.getvalue()
    lz4_frame = pytest.importorskip("lz4.frame")
    out["lz4"] = lz4_frame.compress(payload)
    zstandard = pytest.importorskip("zstandard")
    out["zstd"] = zstandard.ZstdCompressor().compress(payload)
    # safetensors as the spec lays it out: u64 header length, JSON header, tensor bytes.
    header = json.dumps({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}}).encode()
    out["safetensors"] = struct.pack("<Q", len(header)) + header + bytes(12)
    return out


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_sniff_finds_pickles_of_every_protocol(protocol: int) -> None:
    for obj in (
        {"a": [1, 2.5, "x"]},
        collections.OrderedDict(b=(1, None, True)),
        [b"\x00" * 600, "long" * 200],
    ):
        data = pickle.dumps(obj, protocol=protocol)
        assert sniff(data) == "pickle", (protocol, obj, data[:40])


def test_sniff_finds_hostile_protocol_0() -> None:
    assert sniff(HOSTILE) == "pickle"


def test_sniff_finds_streams_without_proto() -> None:
    # CPython runs binary opcodes without a PROTO header: builtins.len('ab').
    headless = b"\x8c\x08builtins\x8c\x03len\x93\x8c\x02ab\x85R."
    assert pickle.loads(headless) == 2
    assert sniff(headless) == "pickle"
    # A long string first (POPped), then the payload.
    padding = b"V" + b"x" * 30000 + b"\n0"  # UNICODE, POP
    assert pickle.loads(padding + b"cos\ngetcwd\n)R.") == os.getcwd()  # CPython runs it
    assert sniff(padding + HOSTILE) == "pickle"
    # Cut from a longer file, the head still decodes up to where it ends.
    long_stream = pickle.dumps([f"item {i}" for i in range(20000)], protocol=0)
    assert len(long_stream) > 65536
    assert sniff(long_stream[:65536]) == "pickle"


def test_sniff_rejects_text_that_starts_like_opcodes() -> None:
    listing = b"(a) the first item\n(b) the second item\n" * 2000
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 300
    for data in (listing, png, b"Noted: nothing to see.\n" * 4000):
        assert sniff(data[:65536]) is None, data[:20]


def test_sniff_finds_containers() -> None:
    kinds = {name: sniff(data) for name, data in real_containers().items()}
    assert kinds == {
        "zip": "zip",
        "gzip": "gzip",
        "bz2": "bz2",
        "xz": "xz",
        "lzma": "lzma",
        "zlib": "zlib",
        "npy": "npy",
        "tar": "tar",
        "joblib-zlib": "zlib",
        "joblib-lz4": "lz4",
        "safetensors": "safetensors",
        "lz4": "lz4",
        "zstd": "zstd",
    }
    assert sniff(b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(24)) == "7z"
    # A Git LFS pointer stands in for any kind of file: only its name can say "model".
    pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\nsize 9\n"
    assert sniff(pointer) is None


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_sniff_ignores_text(name: str) -> None:
    assert sniff(TEXTS[name]) is None


def make_tree(root: Path) -> None:
    (root / "models" / "nested").mkdir(parents=True)
    (root / ".git" / "objects").mkdir(parents=True)
    (root / "models" / "ok.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    (root / "models" / "weights").write_bytes(pickle.dumps({"w": 1.5}, protocol=2))
    (root / "models" / "nested" / "legacy").write_bytes(pickle.dumps({"w": 1.5}, protocol=0))
    (root / "models" / "nested" / "evil.bin").write_bytes(HOSTILE)
    (root / "models" / "nested" / "blob.DAT").write_bytes(b"\x00\x01\x02")  # by extension
    (root / "models" / "archive").write_bytes(real_containers()["zip"])
    (root / ".git" / "objects" / "x.pkl").write_bytes(HOSTILE)
    for name, data in TEXTS.items():
        (root / "models" / f"{name}.txt").write_bytes(data)


def test_discover_chooses_by_extension_and_content(tmp_path: Path) -> None:
    make_tree(tmp_path)
    files, skipped, errors = discover([tmp_path])
    rel = sorted(p.relative_to(tmp_path).as_posix() for p in files)
    assert rel == [
        "models/archive",
        "models/nested/blob.DAT",
        "models/nested/evil.bin",
        "models/nested/legacy",
        "models/ok.pkl",
        "models/weights",
    ]
    assert sorted(Path(s).name for s in skipped) == sorted(f"{n}.txt" for n in TEXTS)
    assert errors == {}


def test_named_files_are_always_scanned(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_bytes(TEXTS["readme"])
    files, skipped, errors = discover([notes, notes, tmp_path / "missing.pkl"])
    assert files == [notes]
    assert skipped == []
    assert errors == {str(tmp_path / "missing.pkl"): "no such file or directory"}


def test_discover_does_not_loop_on_symlinked_directories(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "m.pkl").write_bytes(pickle.dumps(1))
    (tmp_path / "a" / "loop").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "a" / "dangling.pkl").symlink_to(tmp_path / "nowhere")
    files, skipped, _errors = discover([tmp_path])
    assert files == [tmp_path / "a" / "m.pkl"]
    # the symlinked directory is listed as skipped (issue 10), never walked
    assert sorted(skipped) == [str(tmp_path / "a" / "dangling.pkl"), str(tmp_path / "a" / "loop")]


def test_file_given_twice_is_scanned_once(tmp_path: Path, policy: Policy) -> None:
    (tmp_path / "m.pkl").write_bytes(HOSTILE)
    report = scan_paths([tmp_path, tmp_path / "m.pkl"], policy, jobs=1)
    assert [f.path for f in report.files] == [str(tmp_path / "m.pkl")]


def test_scan_paths_verdicts_skips_and_order(tmp_path: Path, policy: Policy) -> None:
    make_tree(tmp_path)
    report = scan_paths([tmp_path], policy, jobs=1)
    verdicts = {Path(f.path).relative_to(tmp_path).as_posix(): f.verdict for f in report.files}
    assert verdicts["models/ok.pkl"] is Verdict.SAFE
    assert verdicts["models/weights"] is Verdict.SAFE
    assert verdicts["models/nested/legacy"] is Verdict.SAFE
    assert verdicts["models/nested/evil.bin"] is Verdict.DANGEROUS
    # chosen by its extension; no opcode at offset 0, so no loader unpickles it
    assert verdicts["models/nested/blob.DAT"] is Verdict.NOT_A_PICKLE
    assert [f.path for f in report.files] == sorted(f.path for f in report.files)
    assert report.summary()["skipped"] == len(TEXTS)
    assert report.verdict is Verdict.DANGEROUS


def test_parallel_matches_serial_and_reports_progress(tmp_path: Path, policy: Policy) -> None:
    for i in range(30):
        data = HOSTILE if i % 7 == 0 else pickle.dumps({"layer": i, "w": [i * 0.5] * i})
        (tmp_path / f"m{i:02d}.pkl").write_bytes(data)
    seen: list[tuple[int, int]] = []
    parallel = scan_paths([tmp_path], policy, jobs=2, progress=lambda d, t: seen.append((d, t)))
    serial = scan_paths([tmp_path], policy, jobs=1)
    assert parallel == serial
    assert seen == [(i, 30) for i in range(1, 31)]
    assert sum(f.verdict is Verdict.DANGEROUS for f in parallel.files) == 5


def test_parallel_scan_keeps_user_policy(tmp_path: Path) -> None:
    for i in range(10):
        (tmp_path / f"m{i}.pkl").write_bytes(HOSTILE if i == 3 else b"\x80\x02cmylib\nThing\n)R.")
    strict = scan_paths([tmp_path], Policy.default(), jobs=2)
    allowed = scan_paths([tmp_path], Policy.build(allow=["mylib.Thing"]), jobs=2)
    assert {f.verdict for f in strict.files} == {Verdict.UNKNOWN, Verdict.DANGEROUS}
    assert sorted(f.verdict.value for f in allowed.files) == ["dangerous"] + ["safe"] * 9


def test_public_scan_walks_directories(tmp_path: Path) -> None:
    make_tree(tmp_path)
    report = safeload.scan(tmp_path)
    assert len(report.files) == 6
    assert len(report.skipped) == len(TEXTS)


def test_exclude_patterns_apply_to_walks_only(tmp_path: Path, policy: Policy) -> None:
    make_tree(tmp_path)
    evil = tmp_path / "models" / "nested" / "evil.bin"
    files, skipped, _ = discover([tmp_path], exclude=["models/nested/*"], exclude_base=tmp_path)
    assert evil not in files
    assert str(evil) in skipped
    files, _, _ = discover([evil], exclude=["models/nested/*"], exclude_base=tmp_path)
    assert files == [evil]
    files, _, _ = discover([tmp_path], exclude=["*.bin"], exclude_base=tmp_path)
    assert evil not in files


def test_model_suffixes_are_lowercase_dotted() -> None:
    assert all(s.startswith(".") and s == s.lower() for s in MODEL_SUFFIXES)
    assert {".pkl", ".pt", ".joblib", ".npy", ".npz", ".zip", ".7z"} <= MODEL_SUFFIXES


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read every directory")
def test_unreadable_directory_is_an_error(tmp_path: Path) -> None:  # pragma: no cover
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        _files, _skipped, errors = discover([tmp_path])
    finally:
        locked.chmod(0o755)
    assert str(locked) in errors


def test_named_fifo_is_an_error_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "model.pkl"
    os.mkfifo(fifo)
    files, skipped, errors = discover([fifo, tmp_path])
    assert files == []
    assert errors == {str(fifo): "not a regular file"}
    assert skipped == [str(fifo)]  # met again in the walk: skipped, never opened


def test_safetensors_are_checked_in_walks(tmp_path: Path, policy: Policy) -> None:
    (tmp_path / "model.safetensors").write_bytes(real_containers()["safetensors"])
    (tmp_path / "weights").write_bytes(real_containers()["safetensors"])  # found by content
    report = scan_paths([tmp_path], policy, jobs=1)
    assert [(Path(f.path).name, f.format, f.verdict) for f in report.files] == [
        ("model.safetensors", "safetensors", Verdict.SAFE),
        ("weights", "safetensors", Verdict.SAFE),
    ]


def test_headerless_pickle_member_of_a_zip_is_scanned(tmp_path: Path) -> None:
    headless = b"\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R."  # os.system('id'), no PROTO
    assert sniff(headless) == "pickle"  # what a directory walk would pick up
    path = tmp_path / "bundle.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model.pkl", headless)
    assert safeload.scan(path).files[0].verdict is Verdict.DANGEROUS
