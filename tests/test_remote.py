"""Remote scans: files read by URL in ranges, and only the bytes the scan reads are fetched.

A local HTTP server (tests/rangeserver.py) honours Range and If-Match and counts the
bytes it serves; an S3 store is moto's server, reached through s3fs with dummy keys.
Nothing here needs the network.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import torch

from safeload import scan
from safeload.report import Verdict
from safeload.scan import _remote, default_policy
from safeload.scan._batch import scan_paths
from tests.hostile_containers import Evil, evil_torch_zip, payload
from tests.loadrun import canary_in, run_jobs
from tests.rangeserver import Served, serving

MIB = 1 << 20


@pytest.fixture
def served() -> Iterator[tuple[Served, str]]:
    state = Served()
    with serving(state) as base:
        yield state, base


def _serve(state: Served, path: Path) -> str:
    state.files[f"/{path.name}"] = path
    return f"/{path.name}"


# -- a 2 GiB PyTorch state dict, on a sparse file ----------------------------------------


class _Records:
    """Stands in for torch's zip writer: keeps the records torch.save hands it."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | int]] = []

    def write_record(self, name: str, data: Any, size: int) -> None:
        if isinstance(data, bytes | str):
            self.records.append((name, data.encode() if isinstance(data, str) else data))
        else:
            self.records.append((name, size))  # a storage: only its size is kept

    def write_record_metadata(self, name: str, size: int) -> None:
        pass


def _crc_of_zeros(n: int) -> int:
    crc, block = 0, bytes(64 * MIB)
    while n:
        step = min(n, len(block))
        crc = zlib.crc32(block[:step] if step < len(block) else block, crc)
        n -= step
    return crc


def sparse_torch_zip(path: Path, elements: int) -> int:
    """A `torch.save` archive of `{"weight": <elements> float32, "bias": 16 float32}`.

    torch's own pickler writes data.pkl (through `torch.serialization._save`,
    handed a record keeper instead of the zip writer); the archive is laid out
    as torch lays it out (stored members, data aligned to 64 bytes), but the
    storages' zeros are holes of a sparse file. Returns data.pkl's size.
    """
    from torch import serialization

    records = _Records()
    state = {"weight": torch.empty(elements), "bias": torch.empty(16)}
    serialization._save(state, records, serialization.pickle, 2, False)
    records.records += [("version", b"3\n"), (".data/serialization_id", b"0" * 40)]
    prefix = path.stem
    central, pickle_size = [], 0
    with open(path, "wb") as fh:
        for name, data in records.records:
            full = f"{prefix}/{name}".encode()
            size = data if isinstance(data, int) else len(data)
            crc = _crc_of_zeros(size) if isinstance(data, int) else zlib.crc32(data)
            offset = fh.tell()
            pad = -(offset + 30 + len(full) + 4) % 64
            extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad
            fh.write(
                struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, size, size,
                            len(full), len(extra)) + full + extra
            )  # fmt: skip
            if isinstance(data, int):
                fh.seek(size, os.SEEK_CUR)
            else:
                fh.write(data)
            if name == "data.pkl":
                pickle_size = size
            central.append(
                struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, crc, size,
                            size, len(full), 0, 0, 0, 0, 0, offset) + full
            )  # fmt: skip
        start = fh.tell()
        for entry in central:
            fh.write(entry)
        cd_size = fh.tell() - start
        n = len(central)
        fh.write(struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, n, n, cd_size, start, 0))
    return pickle_size


def test_2gb_torch_state_dict_fetches_its_pickle_and_under_a_mebibyte(
    served: tuple[Served, str], tmp_path: Path
) -> None:
    state, base = served
    path = tmp_path / "big.pt"
    pickle_size = sparse_torch_zip(path, 2**29)
    size = path.stat().st_size
    assert size > 2 * 1024**3
    with zipfile.ZipFile(path) as zf:  # a well-formed archive, as Python's reader sees it
        assert zf.getinfo("big/data/0").file_size == 2**31
    local = scan(path).files[0]
    assert local.verdict is Verdict.SAFE and local.format == "pytorch-zip"
    report = scan(base + _serve(state, path)).files[0]
    assert (report.verdict, report.format, report.findings) == (
        local.verdict,
        local.format,
        local.findings,
    )
    assert report.size == size
    assert report.fetched == state.body_bytes
    assert report.fetched is not None and report.fetched <= MIB + pickle_size


# -- what is fetched, and that it is enough ------------------------------------------------


def test_joblib_with_big_arrays_fetches_a_small_fraction(
    served: tuple[Served, str], tmp_path: Path
) -> None:
    state, base = served
    path = tmp_path / "arrays.joblib"
    rng = np.random.default_rng(0)
    joblib.dump({"a": rng.random(2_000_000), "b": rng.random(1_000_000), "n": [1, 2]}, path)
    report = scan(base + _serve(state, path)).files[0]
    assert report.verdict is Verdict.SAFE and report.format == "joblib"
    assert report.fetched is not None and report.fetched < 0.02 * report.size
    assert report.fetched == state.body_bytes


def test_numeric_npy_fetches_its_header_and_the_tail_only(
    served: tuple[Served, str], tmp_path: Path
) -> None:
    """The tail is read by the locator's search for an appended zip (a polyglot)."""
    state, base = served
    path = tmp_path / "x.npy"
    np.save(path, np.arange(4_000_000, dtype=np.float64))
    report = scan(base + _serve(state, path)).files[0]
    assert report.verdict is Verdict.SAFE and report.format == "npy"
    assert report.fetched is not None and report.fetched <= 2 * (64 * 1024 + 4096)


def test_a_payload_behind_unfetched_bytes_is_fetched_and_found(
    served: tuple[Served, str], tmp_path: Path
) -> None:
    """The walk skips a 3 MB bytes value unread; what follows it was never prefetched."""
    state, base = served
    raw = payload()
    skipped = b"\x80\x04B" + struct.pack("<I", 3 * MIB) + bytes(3 * MIB) + b"0"
    path = tmp_path / "behind.pkl"
    path.write_bytes(skipped + raw[2:])  # PROTO, BINBYTES, POP, then the payload's opcodes
    local = scan(path).files[0]
    assert local.verdict is Verdict.DANGEROUS
    report = scan(base + _serve(state, path)).files[0]
    assert report.verdict is Verdict.DANGEROUS
    assert [f.rule for f in report.findings] == [f.rule for f in local.findings]
    assert report.fetched is not None and report.fetched < MIB


def test_a_compressed_stream_is_read_in_order_to_its_end(
    served: tuple[Served, str], tmp_path: Path
) -> None:
    """gzip cannot be ranged: the read-ahead doubles until the payload at the end is in."""
    import gzip
    import pickle

    state, base = served
    rng = np.random.default_rng(1)
    path = tmp_path / "model.pkl.gz"
    with gzip.open(path, "wb") as fh:
        pickle.dump([rng.bytes(3 * MIB), Evil()], fh, protocol=4)
    report = scan(base + _serve(state, path)).files[0]
    assert report.verdict is Verdict.DANGEROUS and report.format == scan(path).files[0].format
    assert report.fetched == path.stat().st_size


def test_an_empty_remote_file_gets_the_local_verdict(
    served: tuple[Served, str], tmp_path: Path
) -> None:
    state, base = served
    path = tmp_path / "empty.pkl"
    path.write_bytes(b"")
    local = scan(path).files[0]
    report = scan(base + _serve(state, path)).files[0]
    assert (report.verdict, report.findings[0].rule, report.fetched) == (
        local.verdict,
        local.findings[0].rule,
        0,
    )


def test_without_page_tracking_the_whole_file_is_read(
    served: tuple[Served, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, base = served
    monkeypatch.setattr(_remote, "_tracking", False)
    path = tmp_path / "arrays.joblib"
    joblib.dump({"a": np.zeros(500_000)}, path)
    report = scan(base + _serve(state, path)).files[0]
    assert report.verdict is Verdict.SAFE
    assert report.fetched == path.stat().st_size


def test_after_max_rounds_the_rest_is_read_whole(
    served: tuple[Served, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, base = served
    monkeypatch.setattr(_remote, "MAX_ROUNDS", 1)
    path = tmp_path / "arrays.joblib"
    joblib.dump([np.zeros(300_000), Evil(), np.zeros(300_000)], path)  # Evil mid-file
    report = scan(base + _serve(state, path)).files[0]
    assert report.verdict is Verdict.DANGEROUS
    assert report.fetched == path.stat().st_size


def test_a_server_that_ignores_range_still_gets_a_right_verdict(
    served: tuple[Served, str], tmp_path: Path
) -> None:
    state, base = served
    state.honour_range = False
    path = tmp_path / "mixed.joblib"
    joblib.dump([np.zeros(300_000), Evil(), np.zeros(300_000)], path)
    report = scan(base + _serve(state, path)).files[0]
    assert report.verdict is Verdict.DANGEROUS
    assert report.fetched is not None and report.fetched >= path.stat().st_size


def test_ranged_runs_stop_once_they_cost_more_than_the_rest_would() -> None:
    """At 1 MiB/s measured, the 10 MiB left take 10 s to fetch whole."""
    import time

    remote = _remote._Remote(None, "x", "x", 10 * MIB, (10 * MIB,), fetched=MIB, seconds=1.0)
    image = _remote.Image(10 * MIB)
    try:
        assert _remote._worth_it(remote, image, time.monotonic() - 2)
        assert not _remote._worth_it(remote, image, time.monotonic() - 20)
    finally:
        image.close()


def test_a_file_with_many_arrays_is_read_whole_when_rounds_cost_more(
    served: tuple[Served, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, base = served
    path = tmp_path / "many.joblib"
    joblib.dump([np.full(40_000, i, dtype=np.float64) for i in range(40)], path)
    url = base + _serve(state, path)
    monkeypatch.setattr(_remote, "MAX_ROUNDS", 1000)
    monkeypatch.setattr(_remote, "COST_AWARE", False)
    ranged = scan(url).files[0]
    assert ranged.verdict is Verdict.SAFE
    assert ranged.fetched is not None and ranged.fetched < 0.2 * ranged.size
    monkeypatch.setattr(_remote, "COST_AWARE", True)
    monkeypatch.setattr(_remote, "_worth_it", lambda *_args: False)
    whole = scan(url).files[0]
    assert whole.verdict is Verdict.SAFE and whole.fetched is not None
    assert whole.fetched >= whole.size


def test_page_tracking_works_here() -> None:
    """The mechanism the ranged reads rely on (Linux); elsewhere files are read whole."""
    if not sys.platform.startswith("linux"):
        pytest.skip("page tracking is Linux-only; other systems read remote files whole")
    assert _remote.tracking_available()


# -- hostile files -------------------------------------------------------------------------


def _hostile(directory: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, the plain loader's code that runs its payload)."""
    directory.mkdir()
    plain = directory / "evil.pkl"
    plain.write_bytes(payload())
    torch_path, _ = evil_torch_zip(directory)
    after = directory / "after_array.joblib"
    joblib.dump([np.arange(2_000_000.0), Evil()], after)
    obj = directory / "object.npy"
    np.save(obj, np.array([1, Evil()], dtype=object), allow_pickle=True)
    return {
        "pickle": (plain, "import pickle; pickle.load(open(path, 'rb'))"),
        "torch": (torch_path, "import torch; torch.load(path, weights_only=False)"),
        "joblib": (after, "import joblib; joblib.load(path)"),
        "npy": (obj, "import numpy; numpy.load(path, allow_pickle=True)"),
    }


def test_hostile_files_over_http_are_not_safe(served: tuple[Served, str], tmp_path: Path) -> None:
    state, base = served
    files = _hostile(tmp_path / "files")
    jobs = [
        {"kind": "plain", "path": path, "cwd": tmp_path / name, "code": code}
        for name, (path, code) in files.items()
    ]
    for job, result in zip(jobs, run_jobs(jobs), strict=True):
        assert canary_in(job["cwd"]), (job["path"], result)  # the payload is real
    urls = [base + _serve(state, path) for path, _code in files.values()]
    report = _remote.scan_urls(urls, default_policy())
    assert not report.errors
    assert {f.path: f.verdict for f in report.files} == dict.fromkeys(urls, Verdict.DANGEROUS)
    for f in report.files:
        assert f.fetched is not None and f.fetched <= f.size


# -- files that change, stores that refuse -------------------------------------------------


def _two_versions(directory: Path) -> tuple[Path, Path]:
    directory.mkdir()
    first, second = directory / "model.pt", directory / "model.v2.pt"
    torch.save({f"l{i}": torch.zeros(256, 256) for i in range(30)}, first)
    torch.save({f"l{i}": torch.zeros(256, 256) for i in range(31)}, second)
    return first, second


@pytest.mark.parametrize(("if_match", "shrinks"), [(True, False), (False, False), (False, True)])
def test_a_file_changed_mid_scan_is_never_safe(
    served: tuple[Served, str], tmp_path: Path, if_match: bool, shrinks: bool
) -> None:
    """The server swaps the file after the first ranged read: refused by If-Match (412), or
    seen by the identity check after the reads when the server ignores If-Match, or by a
    range past the new end (416) when the file shrank."""
    state, base = served
    first, second = _two_versions(tmp_path / "v")
    if shrinks:
        first, second = second, first
    assert scan(first).files[0].safe and scan(second).files[0].safe
    state.honour_if_match = if_match
    name = _serve(state, first)
    state.swap[name] = [second]
    report = _remote.scan_urls([base + name], default_policy())
    assert not report.errors, report.errors
    (file,) = report.files
    # Bytes of two versions may also read as a broken or diverging zip (dangerous, SL311).
    assert file.verdict in (Verdict.INVALID, Verdict.DANGEROUS)
    assert "SL313" in [f.rule for f in file.findings]


def test_404_403_and_throttling_are_per_file(served: tuple[Served, str], tmp_path: Path) -> None:
    state, base = served
    good = tmp_path / "good.pkl"
    good.write_bytes(b"\x80\x04K\x01.")
    throttled = tmp_path / "throttled.pkl"
    throttled.write_bytes(b"\x80\x04K\x02.")
    forbidden = tmp_path / "forbidden.pkl"
    forbidden.write_bytes(b"\x80\x04K\x03.")
    _serve(state, good)
    _serve(state, throttled)
    _serve(state, forbidden)
    state.status["/throttled.pkl"] = [429, 429, 429]
    state.status["/forbidden.pkl"] = [403] * 10
    names = ["good.pkl", "missing.pkl", "forbidden.pkl", "throttled.pkl"]
    report = _remote.scan_urls([f"{base}/{n}" for n in names], default_policy())
    assert {f.path: f.verdict for f in report.files} == {
        f"{base}/good.pkl": Verdict.SAFE,
        f"{base}/throttled.pkl": Verdict.SAFE,
    }
    assert report.errors[f"{base}/missing.pkl"].startswith("not found")
    assert report.errors[f"{base}/forbidden.pkl"].startswith("access denied")
    assert state.status["/throttled.pkl"] == []  # every 429 was met, then retried


def test_an_unreachable_host_is_that_files_error() -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/model.pt"
    report = _remote.scan_urls([url], default_policy())
    assert not report.files
    assert report.errors[url].startswith("cannot connect")


def test_single_url_that_cannot_be_read_raises(served: tuple[Served, str]) -> None:
    from safeload.errors import ScanInputError

    _state, base = served
    with pytest.raises(ScanInputError, match="not found"):
        scan(f"{base}/nothing-here.pt")


# -- directories ---------------------------------------------------------------------------


def _tree(root: Path) -> None:
    (root / "sub").mkdir(parents=True)
    (root / ".git").mkdir()
    torch.save({"w": torch.zeros(4)}, root / "model.pt")
    (root / "sub" / "weights").write_bytes(b"\x80\x04K\x01.")  # no suffix: sniffed
    (root / "sub" / "notes.txt").write_text("not a model\n")
    (root / "sub" / "evil.pkl").write_bytes(payload())
    (root / ".git" / "x.pkl").write_bytes(payload())


def test_a_file_url_directory_is_discovered_like_a_local_one(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    _tree(root)
    local = scan_paths([root], default_policy())
    remote = scan(root.as_uri() + "/")
    rel = {f.path[len(str(root)) :]: f.verdict for f in local.files}
    assert {f.path[len(root.as_uri()) :]: f.verdict for f in remote.files} == rel
    assert [p[len(root.as_uri()) :] for p in remote.skipped] == [
        p[len(str(root)) :] for p in local.skipped
    ]


# -- S3 (moto's server) ----------------------------------------------------------------------


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if os.environ.get("SAFELOAD_TEST_S3"):  # .ci/run's S3 venv: a missing moto is a failure
        import moto.server as moto_server
        import s3fs  # noqa: F401
    else:  # botocore needs python-dateutil < 3, so the main test venv has no moto
        moto_server = pytest.importorskip("moto.server")
        pytest.importorskip("s3fs")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }.items():
        monkeypatch.setenv(key, value)
    import fsspec

    monkeypatch.setitem(
        fsspec.config.conf, "s3", {"endpoint_url": endpoint, "skip_instance_cache": True}
    )
    try:
        yield endpoint
    finally:
        server.stop()


def test_s3_prefix_is_listed_and_read_in_ranges(s3: str, tmp_path: Path) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3, skip_instance_cache=True)
    fs.mkdir("models")
    model = tmp_path / "model.pt"
    torch.save({f"l{i}": torch.randn(256, 256) for i in range(20)}, model)
    fs.put_file(str(model), "models/team/model.pt")
    fs.pipe_file("models/team/evil.pkl", payload())
    fs.pipe_file("models/team/readme.md", b"# not a model\n")
    report = scan("s3://models/team/")
    assert not report.errors
    assert {f.path: f.verdict for f in report.files} == {
        "s3://models/team/evil.pkl": Verdict.DANGEROUS,
        "s3://models/team/model.pt": Verdict.SAFE,
    }
    assert report.skipped == ("s3://models/team/readme.md",)
    big = next(f for f in report.files if f.path.endswith(".pt"))
    assert big.fetched is not None and big.fetched < 0.1 * big.size


# -- the command line ----------------------------------------------------------------------


def test_cli_scans_urls_and_reports_fetched_bytes(
    served: tuple[Served, str], tmp_path: Path
) -> None:
    state, base = served
    path = tmp_path / "w.npy"
    np.save(path, np.zeros(1_000_000))
    url = base + _serve(state, path)
    done = subprocess.run(
        [sys.executable, "-m", "safeload", "scan", "--format", "json", url],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (entry,) = json.loads(done.stdout)["files"]
    assert entry["path"] == url and entry["verdict"] == "safe"
    assert 0 < entry["fetched"] < entry["size"]
    text = subprocess.run(
        [sys.executable, "-m", "safeload", "scan", url], capture_output=True, text=True, check=False
    )
    assert f"fetched {entry['fetched']:,} of {entry['size']:,} bytes" in text.stdout


def test_sarif_names_a_remote_file_by_its_url(served: tuple[Served, str], tmp_path: Path) -> None:
    state, base = served
    path = tmp_path / "evil.pkl"
    path.write_bytes(payload())
    url = base + _serve(state, path)
    done = subprocess.run(
        [sys.executable, "-m", "safeload", "scan", "--format", "sarif", url],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    (result, *_rest) = json.loads(done.stdout)["runs"][0]["results"]
    where = result["locations"][0]["physicalLocation"]["artifactLocation"]
    assert where == {"uri": url}


def test_no_fsspec_import_without_a_url() -> None:
    code = (
        "import sys, safeload; safeload.scan(b'\\x80\\x04K\\x01.'); print('fsspec' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
