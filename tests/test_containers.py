"""Containers: real files from the real libraries scan safe; hostile variants do not.

Every hostile file is also loaded by the real loader in a subprocess (cwd =
tmp_path) to prove its payload runs: the payload only creates a canary file.
The builders are shared with the guarded loader's tests (`tests/hostile_containers.py`).
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import pickle
import re
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import torch

import safeload
import safeload._formats as formats
from safeload import Verdict
from tests.hostile_containers import CANARY, OPENERS, Evil, payload, torchscript_setstate
from tests.hostile_containers import evil_torch_zip as _evil_torch_zip
from tests.hostile_containers import legacy_tar as _legacy_tar
from tests.hostile_containers import npy_bytes as _npy_bytes
from tests.hostile_containers import stacked_pickles as _stacked_pickles
from tests.hostile_containers import state_dict as _state_dict
from tests.hostile_containers import tar_member as _tar_member
from tests.hostile_containers import zip_of as _zip_of
from tests.picklebuild import glob, proto, reduce, sbu, stop, tuple2


def scan(path: Path) -> safeload.FileReport:
    return safeload.scan_file(path, location=path.name)


def bad(report: safeload.FileReport) -> list[tuple[str, str]]:
    """(rule_name, location) of every finding that makes the file not safe."""
    return [(f.rule_name, f.location) for f in report.findings if f.verdict is not None]


def assert_payload_found(report: safeload.FileReport, location: str) -> None:
    assert report.verdict is Verdict.DANGEROUS, report.findings
    hits = [f for f in report.findings if f.global_name in OPENERS]
    assert [f.rule_name for f in hits if f.location == location] == ["file-system-access"], hits


_SERVER = """
import json, os, sys
import joblib, numpy, pandas, torch  # imported once; every proof runs in a fork
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(job["cwd"])
            exec(job["code"], {})
        except BaseException:
            pass
        os._exit(0)
    os.waitpid(pid, 0)
    print("done", flush=True)
"""
_server: list[subprocess.Popen[str]] = []


def runs_payload(tmp_path: Path, code: str) -> bool:
    """Run `code` (which loads a file by its name) in a fresh child with cwd = tmp_path.

    The child is forked from a helper process that imported the loaders once,
    so a proof costs milliseconds instead of a torch import.
    """
    canary = tmp_path / CANARY
    if canary.exists():
        canary.unlink()
    if not _server or _server[0].poll() is not None:
        _server[:] = [
            subprocess.Popen(
                [sys.executable, "-c", _SERVER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        ]
    proc = _server[0]
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps({"cwd": str(tmp_path), "code": code}) + "\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "done"
    return canary.exists()


# -- PyTorch -------------------------------------------------------------------------


def test_torch_zip_benign(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(_state_dict(), path)
    report = scan(path)
    assert report.verdict is Verdict.SAFE, report.findings
    assert report.format == "pytorch-zip"
    assert report.pickles == 1


def test_torch_zip_module_with_optimizer_state(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": 3}, path)
    report = scan(path)
    assert report.verdict is Verdict.SAFE, report.findings


def test_torch_legacy_stacked_benign(tmp_path: Path) -> None:
    path = tmp_path / "legacy.pt"
    torch.save(_state_dict(), path, _use_new_zipfile_serialization=False)
    report = scan(path)
    assert report.format == "pytorch-legacy"
    assert report.pickles == 5
    assert [f for f in report.findings if f.verdict is Verdict.INVALID] == []


def test_torch_legacy_stacked_benign_is_safe(tmp_path: Path) -> None:
    path = tmp_path / "legacy.pt"
    torch.save(_state_dict(), path, _use_new_zipfile_serialization=False)
    assert scan(path).verdict is Verdict.SAFE


def test_torch_zip_payload(tmp_path: Path) -> None:
    path, _ = _evil_torch_zip(tmp_path)
    assert_payload_found(scan(path), "evil.pt:evil/data.pkl")
    assert runs_payload(tmp_path, "import torch; torch.load('evil.pt', weights_only=False)")


def _patch_member(raw: bytes, member: str, patch) -> bytes:  # type: ignore[no-untyped-def]
    """Apply `patch(buf, central_offset, local_offset)` for one member, on real zip bytes."""
    buf = bytearray(raw)
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        info = zf.getinfo(member)
    # this member's central entry, found by its name
    pos = raw.find(b"PK\x01\x02")
    while pos >= 0:
        nlen = struct.unpack_from("<H", raw, pos + 28)[0]
        if raw[pos + 46 : pos + 46 + nlen] == member.encode():
            break
        pos = raw.find(b"PK\x01\x02", pos + 4)
    assert pos >= 0
    patch(buf, pos, info.header_offset)
    return bytes(buf)


def test_torch_zip_bad_crc(tmp_path: Path) -> None:
    path, raw = _evil_torch_zip(tmp_path)

    def break_crc(buf: bytearray, cd: int, local: int) -> None:
        for off in (cd + 16, local + 14):
            buf[off] ^= 0xFF

    path.write_bytes(_patch_member(raw, "evil/data.pkl", break_crc))
    with zipfile.ZipFile(path) as zf, pytest.raises(zipfile.BadZipFile):
        zf.read("evil/data.pkl")
    assert_payload_found(scan(path), "evil.pt:evil/data.pkl")
    assert runs_payload(tmp_path, "import torch; torch.load('evil.pt', weights_only=False)")


@pytest.mark.parametrize(
    ("bit", "torch_loads"),
    [(0x0008, True), (0x0006, True), (0x0001, False), (0x0040, False), (0x2000, False)],
    ids=["data-descriptor", "deflate-options", "encrypted", "strong-encryption", "masked-dir"],
)
def test_torch_zip_flag_bits(tmp_path: Path, bit: int, torch_loads: bool) -> None:
    """Flag bits never stop the scan; torch ignores most of them (not the encryption ones)."""
    path, raw = _evil_torch_zip(tmp_path)

    def set_flag(buf: bytearray, cd: int, local: int) -> None:
        for off in (cd + 8, local + 6):
            struct.pack_into("<H", buf, off, struct.unpack_from("<H", buf, off)[0] | bit)

    path.write_bytes(_patch_member(raw, "evil/data.pkl", set_flag))
    report = scan(path)
    assert_payload_found(report, "evil.pt:evil/data.pkl")
    notes = [f.location for f in report.findings if f.rule_name == "zip-reader-disagreement"]
    # 0x2000 makes torch's reader refuse the whole archive (corrupt-container), the
    # encryption flags one member.
    expected = {0x0001: ["evil.pt:evil/data.pkl"], 0x0040: ["evil.pt:evil/data.pkl"]}
    assert notes == expected.get(bit, [])
    if bit == 0x2000:
        assert ("corrupt-container", "evil.pt") in bad(report)
    code = "import torch; torch.load('evil.pt', weights_only=False)"
    assert runs_payload(tmp_path, code) is torch_loads


def test_torch_zip_renamed_local_header(tmp_path: Path) -> None:
    path, raw = _evil_torch_zip(tmp_path)

    def rename(buf: bytearray, cd: int, local: int) -> None:
        buf[local + 30 : local + 30 + len(b"evil/data.pkl")] = b"evil/data.pkX"

    path.write_bytes(_patch_member(raw, "evil/data.pkl", rename))
    with zipfile.ZipFile(path) as zf, pytest.raises(zipfile.BadZipFile):
        zf.read("evil/data.pkl")
    report = scan(path)
    assert_payload_found(report, "evil.pt:evil/data.pkl")
    note = next(f for f in report.findings if f.rule_name == "zip-reader-disagreement")
    assert note.location == "evil.pt:evil/data.pkl"
    assert "'evil/data.pkX'" in note.message
    assert runs_payload(tmp_path, "import torch; torch.load('evil.pt', weights_only=False)")


def test_torch_zip_prefix_is_first_entry_folder(tmp_path: Path) -> None:
    """Torch loads `<first folder>/data.pkl`; a payload there is found whatever the folder."""
    path = tmp_path / "m.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("anything/data.pkl", payload())
        zf.writestr("anything/version", "3\n")
        zf.writestr("anything/data/0", b"\x80\x02" + bytes(30))  # tensor bytes, not a pickle
    report = scan(path)
    assert report.format == "pytorch-zip"
    assert_payload_found(report, "m.pt:anything/data.pkl")
    assert not any("data/0" in f.location for f in report.findings)


def test_torch_zip_extra_pickle_member_is_scanned(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    torch.save(_state_dict(), path)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("m/extra/hook", payload())
    assert_payload_found(scan(path), "m.pt:m/extra/hook")


def test_torch_legacy_payload_in_object_pickle(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.ones(2), "x": Evil()}, path, _use_new_zipfile_serialization=False)
    report = scan(path)
    assert_payload_found(report, "evil.pt")
    start4 = _stacked_pickles(path.read_bytes())[3][0]
    hit = next(f for f in report.findings if f.global_name in OPENERS)
    assert hit.offset is not None and hit.offset > start4
    assert runs_payload(tmp_path, "import torch; torch.load('evil.pt', weights_only=False)")


@pytest.mark.parametrize("index", [1, 2, 4])
def test_torch_legacy_payload_in_any_pickle(tmp_path: Path, index: int) -> None:
    path = tmp_path / "evil.pt"
    torch.save(_state_dict(), path, _use_new_zipfile_serialization=False)
    raw = path.read_bytes()
    a, b = _stacked_pickles(raw)[index]
    path.write_bytes(raw[:a] + payload() + raw[b:])
    assert_payload_found(scan(path), "evil.pt")
    assert runs_payload(tmp_path, "import torch; torch.load('evil.pt', weights_only=False)")


def test_torch_legacy_raw_storage_bytes_are_not_walked(tmp_path: Path) -> None:
    """Storage bytes that look like a pickle are data: torch never unpickles them."""
    path = tmp_path / "legacy.pt"
    t = torch.frombuffer(bytearray(payload() + bytes(7)), dtype=torch.uint8).clone()
    torch.save({"t": t}, path, _use_new_zipfile_serialization=False)
    report = scan(path)
    assert not any(f.global_name in OPENERS for f in report.findings)
    assert report.pickles == 5


def test_torch_legacy_tar_payload(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        _tar_member(tf, "sys_info", pickle.dumps({"protocol_version": 1001}, protocol=2))
        _tar_member(tf, "storages", pickle.dumps(0, protocol=2) + pickle.dumps([], protocol=2))
        _tar_member(tf, "tensors", pickle.dumps(0, protocol=2))
        _tar_member(tf, "pickle", payload())
    report = scan(path)
    assert report.format == "pytorch-tar"
    assert_payload_found(report, "old.pt:pickle")
    assert runs_payload(tmp_path, "import torch; torch.load('old.pt', weights_only=False)")


def test_torch_legacy_tar_is_parsed_exactly(tmp_path: Path) -> None:
    class Ids(pickle.Pickler):
        def persistent_id(self, obj: object) -> str | None:
            return "1" if obj == "TENSOR" else None

    buf = io.BytesIO()
    Ids(buf, protocol=2).dump({"w": "TENSOR"})
    path = tmp_path / "old.pt"
    _legacy_tar(path, pickle.dumps([], protocol=2), buf.getvalue())
    report = scan(path)
    assert report.format == "pytorch-tar"
    assert [f for f in report.findings if f.verdict in (Verdict.INVALID, Verdict.DANGEROUS)] == []
    assert report.pickles == 7
    # torch reads it back (the canary here only marks success)
    code = (
        "import torch\n"
        "if torch.load('old.pt', weights_only=False)['w'].tolist() == [1.5, 2.5]:\n"
        f"    open({CANARY!r}, 'w')"
    )
    assert runs_payload(tmp_path, code)


def test_torch_legacy_tar_payload_after_storage_bytes(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    _legacy_tar(path, payload(), pickle.dumps({}, protocol=2))
    assert_payload_found(scan(path), "old.pt:storages")
    assert runs_payload(tmp_path, "import torch; torch.load('old.pt', weights_only=False)")


# -- numpy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "array",
    [np.arange(12.0).reshape(3, 4), np.array(["a", "bc"]), np.zeros(3, dtype="<M8[ns]"),
     np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8", (2,))]), np.array([True])],
    ids=["float", "str", "datetime", "structured", "bool"],
)  # fmt: skip
def test_npy_numeric_is_data(tmp_path: Path, array: np.ndarray) -> None:
    path = tmp_path / "a.npy"
    np.save(path, array)
    report = scan(path)
    assert (report.verdict, report.format, report.pickles) == (Verdict.SAFE, "npy", 0)


def test_npy_object_benign(tmp_path: Path) -> None:
    path = tmp_path / "o.npy"
    np.save(path, np.array([1, "x", None, 2.5], dtype=object))
    report = scan(path)
    assert (report.verdict, report.format, report.pickles) == (Verdict.SAFE, "npy-object", 1)


def test_npy_object_payload(tmp_path: Path) -> None:
    path = tmp_path / "o.npy"
    np.save(path, np.array([1, Evil()], dtype=object))
    assert_payload_found(scan(path), "o.npy")
    assert runs_payload(tmp_path, "import numpy as np; np.load('o.npy', allow_pickle=True)")


def test_npy_long_header_payload(tmp_path: Path) -> None:
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header = header + " " * (20_000 - len(header)) + "\n"
    path = tmp_path / "long.npy"
    path.write_bytes(_npy_bytes(header, payload()))
    assert_payload_found(scan(path), "long.npy")
    assert runs_payload(tmp_path, "import numpy as np; np.load('long.npy', allow_pickle=True)")


def test_npy_structured_object_field_payload(tmp_path: Path) -> None:
    header = "{'descr': [('a', '<i8'), ('b', '|O')], 'fortran_order': False, 'shape': (1,), }\n"
    path = tmp_path / "s.npy"
    path.write_bytes(_npy_bytes(header, payload(), version=1))
    assert_payload_found(scan(path), "s.npy")
    assert runs_payload(tmp_path, "import numpy as np; np.load('s.npy', allow_pickle=True)")


def test_npy_v3_and_unknown_dtype(tmp_path: Path) -> None:
    path = tmp_path / "v3.npy"
    path.write_bytes(
        _npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (1,)}\n", bytes(8), 3)
    )
    assert scan(path).verdict is Verdict.SAFE
    path.write_bytes(_npy_bytes("{'descr': 'weird', 'fortran_order': False, 'shape': (1,)}\n", b""))
    assert ("corrupt-container", "v3.npy") in bad(scan(path))


def test_npz_benign(tmp_path: Path) -> None:
    path = tmp_path / "z.npz"
    np.savez(path, a=np.arange(3), b=np.ones((2, 2)))
    report = scan(path)
    assert (report.verdict, report.format) == (Verdict.SAFE, "npz")
    path = tmp_path / "zc.npz"
    np.savez_compressed(path, a=np.arange(300), o=np.array([{"k": 1}], dtype=object))
    report = scan(path)
    assert (report.verdict, report.format, report.pickles) == (Verdict.SAFE, "npz", 1)


def test_npz_member_whatever_its_name(tmp_path: Path) -> None:
    buf = io.BytesIO()
    np.save(buf, np.array([Evil()], dtype=object))
    path = tmp_path / "z.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok.npy", _npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': ()}\n", bytes(8)))  # fmt: skip
        zf.writestr("weights.bin", buf.getvalue())
    assert_payload_found(scan(path), "z.npz:weights.bin")
    code = "import numpy as np; np.load('z.npz', allow_pickle=True)['weights.bin']"
    assert runs_payload(tmp_path, code)


# -- joblib --------------------------------------------------------------------------


def _estimator_like() -> dict[str, object]:
    return {
        "before": np.arange(1000, dtype=np.float64),
        "objs": np.array([1, "a", None], dtype=object),
        "meta": {"n": 3, "names": ["a", "b"]},
        "after": np.ones((20, 3), dtype=np.float32),
        "ints": np.arange(7, dtype=np.int16),
    }


COMPRESSORS = ["zlib", "gzip", "bz2", "xz", "lzma", "lz4"]


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_joblib_uncompressed_protocols(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "m.joblib"
    joblib.dump(_estimator_like(), path, protocol=protocol)
    report = scan(path)
    assert (report.verdict, report.format) == (Verdict.SAFE, "joblib"), report.findings


@pytest.mark.parametrize("compressor", COMPRESSORS)
def test_joblib_compressed(tmp_path: Path, compressor: str) -> None:
    path = tmp_path / "m.joblib"
    joblib.dump(_estimator_like(), path, compress=(compressor, 3))
    report = scan(path)
    assert report.verdict is Verdict.SAFE, report.findings
    assert report.format == f"joblib+{compressor}"


def test_joblib_sklearn_model(tmp_path: Path) -> None:
    from sklearn.ensemble import RandomForestClassifier

    x = np.random.default_rng(0).random((60, 4))
    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, x[:, 0] > 0.5)
    path = tmp_path / "rf.joblib"
    joblib.dump(model, path)
    report = scan(path)
    assert report.verdict is Verdict.SAFE, report.findings


@pytest.mark.parametrize("compressor", [None, "zlib", "gzip"])
def test_joblib_payload_after_first_array(tmp_path: Path, compressor: str | None) -> None:
    path = tmp_path / "evil.joblib"
    joblib.dump([np.arange(100.0), Evil()], path, compress=(compressor, 3) if compressor else 0)
    assert_payload_found(scan(path), "evil.joblib")
    assert runs_payload(tmp_path, "import joblib; joblib.load('evil.joblib')")


def test_joblib_payload_in_object_array(tmp_path: Path) -> None:
    path = tmp_path / "evil.joblib"
    joblib.dump({"a": np.arange(10), "o": np.array([1, Evil()], dtype=object)}, path)
    assert_payload_found(scan(path), "evil.joblib")
    assert runs_payload(tmp_path, "import joblib; joblib.load('evil.joblib')")


def test_joblib_lz4_missing_is_invalid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.joblib"
    joblib.dump({"a": 1}, path, compress=("lz4", 3))
    monkeypatch.setitem(sys.modules, "lz4", None)
    monkeypatch.setitem(sys.modules, "lz4.frame", None)
    report = scan(path)
    assert report.verdict is Verdict.INVALID
    assert bad(report) == [("unsupported-container", "m.joblib")]


def test_joblib_legacy_zf_format(tmp_path: Path) -> None:
    from joblib.numpy_pickle_compat import write_zfile

    path = tmp_path / "old.pkl"
    with open(path, "wb") as fh:
        write_zfile(fh, payload())
    report = scan(path)
    # A Z-file's pickle is judged like any other: here, by its payload.
    assert report.verdict is Verdict.DANGEROUS
    assert "joblib-legacy-format" not in {f.rule_name for f in report.findings}
    assert_payload_found(report, "old.pkl")
    assert runs_payload(tmp_path, "import joblib; joblib.load('old.pkl')")


def test_joblib_ndarray_wrapper_is_dangerous(tmp_path: Path) -> None:
    path = tmp_path / "old.pkl"
    body = (
        proto(2)
        + glob("joblib.numpy_pickle_compat", "NDArrayWrapper")
        + b")\x81"  # EMPTY_TUPLE NEWOBJ
        + stop()
    )
    path.write_bytes(body)
    report = scan(path)
    assert report.verdict is Verdict.DANGEROUS
    assert any(
        f.global_name == "joblib.numpy_pickle_compat.NDArrayWrapper" for f in report.findings
    )


# -- pandas and compressed pickles ----------------------------------------------------


PANDAS_COMPRESSIONS = {
    None: "pickle", "gzip": "pickle+gzip", "bz2": "pickle+bz2", "xz": "pickle+xz",
    "zstd": "pickle+zstd", "zip": "zip", "tar": "tar",
}  # fmt: skip


@pytest.mark.parametrize("compression", list(PANDAS_COMPRESSIONS))
def test_pandas_to_pickle(tmp_path: Path, compression: str | None) -> None:
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": [0.5, 1.5]})
    path = tmp_path / "df.pkl"
    df.to_pickle(path, compression=compression)
    report = scan(path)
    assert report.verdict is Verdict.SAFE, report.findings
    assert report.format == PANDAS_COMPRESSIONS[compression]


@pytest.mark.parametrize(
    ("compression", "writer"),
    [("gzip", gzip.compress), ("bz2", bz2.compress), ("xz", lzma.compress)],
)
def test_compressed_pickle_payload(tmp_path: Path, compression: str, writer) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "evil.pkl"
    path.write_bytes(writer(payload()))
    assert_payload_found(scan(path), "evil.pkl")
    code = f"import pandas as pd; pd.read_pickle('evil.pkl', compression={compression!r})"
    assert runs_payload(tmp_path, code)


def test_tar_wrapped_payload(tmp_path: Path) -> None:
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tf:
        _tar_member(tf, "frame.pkl", payload())
    assert_payload_found(scan(path), "evil.tar:frame.pkl")
    code = "import pandas as pd; pd.read_pickle('evil.tar', compression='tar')"
    assert runs_payload(tmp_path, code)


def test_tar_gz_wrapped_payload(tmp_path: Path) -> None:
    path = tmp_path / "evil.tgz"
    with tarfile.open(path, "w:gz") as tf:
        _tar_member(tf, "readme.txt", b"hello\n")
        _tar_member(tf, "frame.pkl", payload())
    report = scan(path)
    assert report.format == "tar.gz"
    assert_payload_found(report, "evil.tgz:frame.pkl")
    assert ("unscanned-member", "evil.tgz:readme.txt") in [
        (f.rule_name, f.location) for f in report.findings
    ]


def test_nested_zip_payload(tmp_path: Path) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model.pkl", payload())
    path = tmp_path / "bundle.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("inner.zip", inner.getvalue())
    assert_payload_found(scan(path), "bundle.zip:inner.zip:model.pkl")
    code = (
        "import io, zipfile, pandas as pd\n"
        "inner = zipfile.ZipFile('bundle.zip').read('inner.zip')\n"
        "open('inner.zip', 'wb').write(inner)\n"
        "pd.read_pickle('inner.zip', compression='zip')"
    )
    assert runs_payload(tmp_path, code)


def test_nested_torch_archive_in_zip(tmp_path: Path) -> None:
    _, raw = _evil_torch_zip(tmp_path, "model.pt")
    path = tmp_path / "bundle.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("inner/model.pt", raw)
    assert_payload_found(scan(path), "bundle.zip:inner/model.pt:model/data.pkl")


def test_nesting_depth_limit(tmp_path: Path) -> None:
    blob = payload()
    for _ in range(formats.MAX_DEPTH + 2):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("x.zip", blob)
        blob = buf.getvalue()
    path = tmp_path / "deep.zip"
    path.write_bytes(blob)
    report = scan(path)
    assert report.verdict is Verdict.INVALID
    assert any(f.rule_name == "resource-limit" for f in report.findings)


def test_decompression_bomb_is_invalid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formats.containers, "MAX_EXPANDED", 1 << 20)
    body = pickle.dumps(bytes(16 << 20), protocol=4)
    path = tmp_path / "bomb.pkl.gz"
    path.write_bytes(gzip.compress(body, 1))
    report = scan(path)
    assert report.verdict is Verdict.INVALID
    assert ("decompression-limit", "bomb.pkl.gz") in bad(report)


def test_corrupt_gzip_still_reports_what_it_read(tmp_path: Path) -> None:
    raw = gzip.compress(payload() + bytes(1000))
    path = tmp_path / "cut.pkl.gz"
    path.write_bytes(raw[: len(raw) - 12])
    report = scan(path)
    assert_payload_found(report, "cut.pkl.gz")
    assert ("corrupt-container", "cut.pkl.gz") in bad(report)


# -- polyglots ------------------------------------------------------------------------


def test_pickle_zip_polyglot(tmp_path: Path) -> None:
    benign = tmp_path / "benign.pt"
    torch.save(_state_dict(), benign)
    path = tmp_path / "poly.pt"
    path.write_bytes(payload() + benign.read_bytes())
    report = scan(path)
    assert report.format.startswith("pickle+")
    assert ("polyglot-file", "poly.pt") in bad(report)
    assert_payload_found(report, "poly.pt")
    with zipfile.ZipFile(path) as zf:  # zip tools take the other reading
        assert "benign/data.pkl" in zf.namelist()
    assert runs_payload(tmp_path, "import pickle; pickle.load(open('poly.pt', 'rb'))")


def test_zip_tail_payload_is_scanned_too(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("m.pkl", payload())
    path = tmp_path / "poly.pkl"
    path.write_bytes(pickle.dumps({"ok": 1}, protocol=2) + buf.getvalue())
    report = scan(path)
    assert ("polyglot-file", "poly.pkl") in bad(report)
    assert_payload_found(report, "poly.pkl:m.pkl")


def test_tar_whose_first_name_is_a_pickle(tmp_path: Path) -> None:
    path = tmp_path / "t.tar"
    name = "cbuiltins\nopen\n(Vcanary\nVw\ntR."
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tf:
        _tar_member(tf, name, b"data")
    report = scan(path)
    assert ("polyglot-file", "t.tar") in bad(report)
    assert any(f.global_name in OPENERS and f.location == "t.tar" for f in report.findings)
    assert runs_payload(tmp_path, "import pickle; pickle.load(open('t.tar', 'rb'))")


# -- code-free formats ----------------------------------------------------------------


def _safetensors(tensors: dict[str, np.ndarray]) -> bytes:
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    body = b""
    for name, arr in tensors.items():
        raw = arr.tobytes()
        dtype = {"float32": "F32", "int64": "I64"}[str(arr.dtype)]
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [len(body), len(body) + len(raw)]}  # fmt: skip
        body += raw
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def test_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    raw = _safetensors({"w": np.ones((3, 2), np.float32), "i": np.arange(4)})
    path.write_bytes(raw)
    report = scan(path)
    assert (report.verdict, report.format, report.findings) == (Verdict.SAFE, "safetensors", ())
    path.write_bytes(raw[:-4])
    report = scan(path)
    assert ("corrupt-container", "m.safetensors") in bad(report)


def test_safetensors_header_starting_like_a_proto_opcode(tmp_path: Path) -> None:
    """A 384-byte header starts with 80 01: a safetensors file, not a pickle."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    header += b" " * (384 - len(header))
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", 384) + header + bytes(4))
    assert path.read_bytes()[:2] == b"\x80\x01"
    report = scan(path)
    assert (report.verdict, report.format) == (Verdict.SAFE, "safetensors")


def test_lfs_pointer(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(
        b"version https://git-lfs.github.com/spec/v1\n"
        b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
        b"size 12345\n"
    )
    report = scan(path)
    assert report.format == "lfs-pointer"
    assert report.verdict is Verdict.UNKNOWN
    assert [f.rule_name for f in report.findings] == ["lfs-pointer"]
    assert "not scanned: Git LFS pointer" in report.findings[0].message


def test_seven_zip_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "m.7z"
    path.write_bytes(b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(40))
    report = scan(path)
    assert (report.verdict, bad(report)) == (
        Verdict.INVALID,
        [("unsupported-container", "m.7z")],
    )


def test_zip_member_uncompressed_text_is_noted_not_failed(tmp_path: Path) -> None:
    buf = io.BytesIO()
    df = pd.DataFrame({"a": [1]})
    df.to_pickle(buf)
    path = tmp_path / "bundle.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("README.md", "# model\n")
        zf.writestr("df.pkl", buf.getvalue())
    report = scan(path)
    assert report.verdict is Verdict.SAFE, report.findings
    assert [f.rule_name for f in report.findings] == ["unscanned-member"]


def test_corrupt_zip_directory(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    torch.save(_state_dict(), path)
    raw = bytearray(path.read_bytes())
    # Every reader reads the directory where the ZIP64 end record says (torch
    # writes one into every archive), whatever the classic record says: break
    # the directory itself.
    first = raw.find(b"PK\x01\x02")
    raw[first : first + 4] = b"XXXX"
    path.write_bytes(bytes(raw))
    report = scan(path)
    assert report.verdict is Verdict.INVALID
    assert {rule for rule, _ in bad(report)} == {"corrupt-container"}


def test_in_memory_scan_uses_the_same_dispatch(tmp_path: Path) -> None:
    buf = io.BytesIO()
    torch.save({"x": Evil()}, buf)
    report = safeload.scan_bytes(buf.getvalue(), location="mem.pt")
    assert report.format == "pytorch-zip"
    assert_payload_found(report, "mem.pt:archive/data.pkl")


def test_one_unreadable_member_does_not_hide_the_others(tmp_path: Path) -> None:
    path = tmp_path / "b.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("first.pkl", pickle.dumps([1, 2], protocol=2))
        zf.writestr("second.pkl", payload())
    raw = bytearray(path.read_bytes())
    raw[0:4] = b"XK\x03\x04"  # first member's local header signature
    path.write_bytes(b"\x00" + bytes(raw[1:]))
    report = scan(path)
    assert ("corrupt-container", "b.zip:first.pkl") in bad(report)
    assert_payload_found(report, "b.zip:second.pkl")


def test_stored_member_sizes_disagree(tmp_path: Path) -> None:
    path, raw = _evil_torch_zip(tmp_path)

    def grow(buf: bytearray, cd: int, local: int) -> None:
        struct.pack_into("<I", buf, cd + 24, struct.unpack_from("<I", buf, cd + 24)[0] + 5)

    path.write_bytes(_patch_member(raw, "evil/data.pkl", grow))
    report = scan(path)
    assert ("corrupt-container", "evil.pt:evil/data.pkl") in bad(report)
    assert any(f.global_name in OPENERS for f in report.findings)


def test_member_pickle_without_proto_is_scanned(tmp_path: Path) -> None:
    """A pickle need not start with PROTO: a member starting with any opcode is tried."""
    body = sbu("builtins") + sbu("open") + b"\x93" + sbu(CANARY) + sbu("w") + tuple2() + reduce()
    path = tmp_path / "df.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("df.pkl", body + stop())
    report = scan(path)
    assert_payload_found(report, "df.zip:df.pkl")
    assert runs_payload(
        tmp_path, "import pandas as pd; pd.read_pickle('df.zip', compression='zip')"
    )


def test_text_members_that_start_like_opcodes_are_not_pickles(tmp_path: Path) -> None:
    path = tmp_path / "bundle.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("LICENSE", "MIT License\n\nCopyright (c) ...\n")
        zf.writestr("INFO", "Introduction: a model\n")
        zf.writestr("weights.npy", _npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}\n", bytes(8)))  # fmt: skip
    report = scan(path)
    assert report.verdict is Verdict.SAFE, report.findings
    assert [f.location for f in report.findings] == ["bundle.zip:INFO", "bundle.zip:LICENSE"]


def test_zip64_member(tmp_path: Path) -> None:
    path = tmp_path / "z.zip"
    with zipfile.ZipFile(path, "w") as zf, zf.open("m.pkl", "w", force_zip64=True) as fh:
        fh.write(payload())
    assert_payload_found(scan(path), "z.zip:m.pkl")


def test_deflated_torch_archive(tmp_path: Path) -> None:
    """torch writes stored members; a re-zipped, deflated archive is read the same way."""
    _, raw = _evil_torch_zip(tmp_path)
    path = tmp_path / "re.pt"
    with (
        zipfile.ZipFile(io.BytesIO(raw)) as src,
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    report = scan(path)
    assert report.format == "pytorch-zip"
    assert_payload_found(report, "re.pt:evil/data.pkl")


@pytest.mark.parametrize(("mode", "fmt"), [("w:bz2", "tar.bz2"), ("w:xz", "tar.xz")])
def test_compressed_tar_formats(tmp_path: Path, mode: str, fmt: str) -> None:
    path = tmp_path / "a.tar"
    with tarfile.open(path, mode) as tf:  # type: ignore[call-overload]
        _tar_member(tf, "m.pkl", pickle.dumps({"a": 1}, protocol=4))
    report = scan(path)
    assert (report.verdict, report.format) == (Verdict.SAFE, fmt)


def test_big_compressed_numeric_npz_member_is_not_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the head of a numeric member is decompressed: its numbers need no parsing."""
    monkeypatch.setattr(formats.containers, "MAX_EXPANDED", 3 << 20)
    path = tmp_path / "big.npz"
    noise = np.random.default_rng(0).random(1 << 20)  # 8 MiB of float64
    np.savez_compressed(path, a=noise, b=noise[:10])
    report = scan(path)
    assert (report.verdict, report.format, report.findings) == (Verdict.SAFE, "npz", ())
    # an object member of the same size is expanded in full, and so hits the limit
    objs = np.empty(1 << 19, dtype=object)
    objs[:] = [float(x) for x in noise[: 1 << 19]]
    np.savez_compressed(path, o=objs)
    assert ("decompression-limit", "big.npz:o.npy") in bad(scan(path))


def test_overlapping_members_are_flagged(tmp_path: Path) -> None:
    """Two central entries pointing at one local header: the overlap is reported."""
    path = tmp_path / "o.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.pkl", pickle.dumps([1], protocol=2))
        zf.writestr("b.pkl", pickle.dumps([2], protocol=2))
    raw = bytearray(path.read_bytes())
    second = raw.find(b"PK\x01\x02", raw.find(b"PK\x01\x02") + 4)
    struct.pack_into("<I", raw, second + 42, 0)  # b.pkl's local header offset -> a.pkl's
    path.write_bytes(bytes(raw))
    report = scan(path)
    assert ("corrupt-container", "o.zip") in bad(report)


def test_torchscript_archive_is_one_finding_and_never_safe(tmp_path: Path) -> None:
    path = tmp_path / "ts.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(3, 2)), path)
    report = scan(path)
    assert report.format == "torchscript"
    assert report.verdict is Verdict.UNKNOWN
    assert [(f.rule_name, f.location) for f in report.findings] == [
        ("torchscript-archive", "ts.pt")
    ]


def test_torchscript_setstate_writes_a_file_yet_names_only_torch(tmp_path: Path) -> None:
    path = tmp_path / "ts.pt"
    torchscript_setstate(path)
    assert not (tmp_path / CANARY).exists()
    assert runs_payload(tmp_path, f"import torch; torch.load({str(path)!r}, weights_only=False)")
    report = scan(path)
    assert report.verdict is not Verdict.SAFE
    assert [f.rule for f in report.findings] == ["SL404"]


def test_tar_member_name_that_reads_as_a_harmless_pickle(tmp_path: Path) -> None:
    """`N.txt` decodes as NONE, STOP: a pickle that imports nothing is no second reading."""
    path = tmp_path / "t.tar"
    with tarfile.open(path, "w") as tf:
        _tar_member(tf, "N.txt", b"notes\n")
    report = scan(path)
    assert (report.verdict, report.format) == (Verdict.SAFE, "tar"), report.findings


def test_zstd_missing_is_invalid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "df.pkl.zst"
    pd.DataFrame({"a": [1]}).to_pickle(path, compression="zstd")
    assert scan(path).verdict is Verdict.SAFE
    monkeypatch.setitem(sys.modules, "zstandard", None)
    report = scan(path)
    assert (report.verdict, bad(report)) == (
        Verdict.INVALID,
        [("unsupported-container", "df.pkl.zst")],
    )


def test_pickle_zip_polyglot_with_bytes_after_the_zip(tmp_path: Path) -> None:
    """zipfile still finds the archive when bytes follow it, and so does pandas' zip reading."""
    path = tmp_path / "poly.zip"
    raw = pickle.dumps({"ok": 1}, protocol=2) + _zip_of("m.pkl", payload()) + b"junk" * 10
    path.write_bytes(raw)
    report = scan(path)
    assert ("polyglot-file", "poly.zip") in bad(report)
    assert_payload_found(report, "poly.zip:m.pkl")
    assert runs_payload(
        tmp_path, "import pandas as pd; pd.read_pickle('poly.zip', compression='zip')"
    )


def test_zip_held_as_bytes_inside_a_pickle_is_no_polyglot(tmp_path: Path) -> None:
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps({"vocab": _zip_of("vocab.txt", b"a\\nb\\n")}, protocol=4))
    report = scan(path)
    assert (report.verdict, report.format) == (Verdict.SAFE, "pickle"), report.findings
    # what zipfile-based readers would see is still scanned
    path.write_bytes(pickle.dumps({"vocab": _zip_of("v.pkl", payload())}, protocol=4))
    assert_payload_found(scan(path), "m.pkl:v.pkl")


def test_torch_legacy_storage_key_that_does_not_decode_is_a_verdict() -> None:
    """Found by test_containers_fuzz: a non-UTF-8 storage key crashed the storage check."""
    buf = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buf, _use_new_zipfile_serialization=False)
    raw = buf.getvalue()
    key = re.compile(rb"X(.)\x00\x00\x00").search(raw, raw.index(b"ctorch\nFloatStorage\n"))
    assert key is not None
    size = key.group(1)[0]
    bad = raw[: key.end()] + b"\xff" * size + raw[key.end() + size :]
    report = safeload.scan_bytes(bad)
    assert report.verdict is Verdict.INVALID
    assert "truncated-pickle" in {f.rule_name for f in report.findings}
