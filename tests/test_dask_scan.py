"""Batch scans on a Dask cluster (issue 13): `safeload.scan_many`, `scan --engine dask`.

A real dask.distributed LocalCluster (2 worker processes) scans a generated
tree of 2,000+ files: real numpy, scikit-learn and joblib files, byte-built
hostile pickles, zips holding either, and files that are not models. Every
JSON line must agree with a serial local scan of the same tree, also when a
worker is killed mid-run, when the client is killed mid-run and the run is
resumed, and when one file kills every worker that scans it.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import pytest
from dask_stand_ins import killing_scan_batch, raising_scan_batch
from distributed import Client, LocalCluster
from hubtree import build_tree, hostile
from rangeserver import Served, serving

from safeload._cli import main
from safeload._cli.batch import progress_bar
from safeload.errors import ScanInputError
from safeload.policy import Policy
from safeload.report import ScanReport, Verdict
from safeload.scan import _dask, default_policy, scan_many
from safeload.scan._batch import scan_paths
from safeload.scan._jsonl import read_lines

TREE_FILES = 2000
"""Model files in the shared tree (plus a few that are not models)."""

ALLOWED_FAILURES = 1
"""Worker deaths a task may see on the test cluster (fewer restarts to wait for)."""


# -- the tree ---------------------------------------------------------------------


def summary_of(
    lines: list[dict[str, Any]],
) -> dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """path -> (verdict, rule IDs, globals), from JSON lines; each path at most once."""
    paths = [line["path"] for line in lines]
    assert len(paths) == len(set(paths)), [p for p, n in Counter(paths).items() if n > 1][:5]
    return {
        line["path"]: (
            line["verdict"],
            tuple(sorted(f["rule"] for f in line["findings"])),
            tuple(sorted(str(f["global"]) for f in line["findings"])),
        )
        for line in lines
    }


def summary_of_report(
    report: ScanReport,
) -> dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]:
    return summary_of([f.to_json() for f in report.files])


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hub")
    build_tree(root, TREE_FILES)
    return root


@pytest.fixture(scope="module")
def serial(tree: Path) -> dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """The local serial scan the cluster's results must equal."""
    report = scan_paths([tree], default_policy(), jobs=1)
    assert len(report.files) == TREE_FILES and not report.errors
    verdicts = Counter(f.verdict.value for f in report.files)
    # The tree holds what it claims: every verdict but the benign one is there.
    assert {"safe", "dangerous", "unknown", "invalid"} <= set(verdicts), verdicts
    return summary_of_report(report)


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[LocalCluster, Client]]:
    with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}):
        local = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        )
    client = Client(local)
    yield local, client
    client.close()
    local.close()


def worker_pids(client: Client) -> dict[str, int]:
    pids: dict[str, int] = client.run(os.getpid)
    return pids


# -- the tests --------------------------------------------------------------------


def test_cluster_results_equal_a_serial_scan_file_for_file(
    tree: Path, serial: dict[str, Any], cluster: tuple[LocalCluster, Client], tmp_path: Path
) -> None:
    _local, client = cluster
    out = tmp_path / "results.jsonl"
    seen: list[_dask.BatchProgress] = []
    summary = scan_many([tree], jsonl=out, client=client, progress=seen.append)
    lines = list(read_lines(out))
    assert summary_of(lines) == serial
    assert summary.files == TREE_FILES and summary.skipped == 5 and summary.errors == 0
    assert sum(summary.verdicts.values()) == TREE_FILES
    # Each line carries what --resume compares: the size and mtime of the file scanned.
    first = lines[0]
    stat = os.stat(first["path"])
    assert (first["size"], first["mtime_ns"], first["etag"]) == (
        stat.st_size,
        stat.st_mtime_ns,
        None,
    )
    # Progress came as files finished, ending at every file and byte.
    assert len(seen) > 10
    assert [p.files_done for p in seen] == sorted(p.files_done for p in seen)
    assert seen[-1].files_done == TREE_FILES and seen[-1].walk_done
    assert seen[-1].bytes_done == sum(os.stat(p).st_size for p in serial)


def test_a_worker_killed_mid_run_loses_no_file_and_counts_none_twice(
    tree: Path, serial: dict[str, Any], cluster: tuple[LocalCluster, Client], tmp_path: Path
) -> None:
    _local, client = cluster
    before = worker_pids(client)
    killed: list[tuple[int, int]] = []

    def kill_one_worker(p: _dask.BatchProgress) -> None:
        if not killed and p.files_done >= TREE_FILES // 5:
            pid = sorted(before.values())[0]
            os.kill(pid, signal.SIGKILL)  # as the OOM killer would
            killed.append((pid, p.files_done))

    out = tmp_path / "results.jsonl"
    summary = scan_many([tree], jsonl=out, client=client, progress=kill_one_worker)
    assert killed and killed[0][1] < TREE_FILES // 2, "the worker was not killed mid-run"
    lines = list(read_lines(out))
    assert len(lines) == TREE_FILES
    assert summary_of(lines) == serial
    assert summary.files == TREE_FILES
    # The nanny replaced the worker: the killed process is gone.
    client.wait_for_workers(2, timeout=60)
    assert killed[0][0] not in worker_pids(client).values()


def test_resume_after_the_client_is_killed_finishes_with_one_line_per_file(
    tree: Path, serial: dict[str, Any], cluster: tuple[LocalCluster, Client], tmp_path: Path
) -> None:
    local, client = cluster
    out = tmp_path / "results.jsonl"
    command = [
        sys.executable, "-m", "safeload", "scan", "--engine", "dask", "--quiet",
        "--scheduler", local.scheduler_address, "--jsonl", str(out), str(tree),
    ]  # fmt: skip
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and run.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 300:
                break
            time.sleep(0.01)
        run.send_signal(signal.SIGKILL)  # the night's run dies mid-way
    finally:
        run.wait()
        assert run.stderr is not None
        errors = run.stderr.read().decode()
        run.stderr.close()
    assert run.returncode == -signal.SIGKILL, errors
    # As if the kill came in the middle of writing a line: cut the last one.
    data = out.read_bytes()
    assert data.endswith(b"\n")
    head, last = data[:-1].rsplit(b"\n", 1)
    out.write_bytes(head + b"\n" + last[: len(last) // 2])
    cut_path = json.loads(last)["path"]
    kept = [json.loads(line) for line in head.splitlines()]
    assert 300 <= len(kept) + 1 < TREE_FILES, "the run was not interrupted mid-way"

    summary = scan_many([tree], jsonl=out, client=client, resume=True)
    lines = list(read_lines(out))
    assert out.read_bytes().count(b"\n") == len(lines) == TREE_FILES
    assert summary_of(lines) == serial
    assert summary.resumed == len(kept)
    assert summary.files == TREE_FILES
    assert [line["path"] for line in lines[: len(kept)]] == [line["path"] for line in kept]
    assert cut_path not in {line["path"] for line in kept}


def test_resume_rescans_a_file_whose_size_or_mtime_changed(
    cluster: tuple[LocalCluster, Client], tmp_path: Path
) -> None:
    _local, client = cluster
    root = tmp_path / "models"
    build_tree(root, 30)
    out = tmp_path / "results.jsonl"
    scan_many([root], jsonl=out, client=client)
    changed = root / "part00" / "plain9.pkl"
    changed.write_bytes(hostile(0))  # replaced in place by a hostile file
    touched = root / "part00" / "scaler0.pkl"
    st = os.stat(touched)
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same bytes, new mtime

    summary = scan_many([root], jsonl=out, client=client, resume=True)
    assert summary.resumed == 28 and summary.files == 30
    lines = list(read_lines(out))
    assert len(lines) == 32
    latest = {line["path"]: line for line in lines}  # the last line of a path is current
    assert latest[str(changed)]["verdict"] == "dangerous"
    assert latest[str(touched)]["verdict"] == "safe"
    assert summary.verdicts[Verdict.DANGEROUS] == sum(
        1 for line in latest.values() if line["verdict"] == "dangerous"
    )

    # Lines judged by another policy are not trusted: all 30 files are judged again.
    allowing = Policy.build(allow=["vendor_pkg0.layers:Block"])
    again = scan_many([root], allowing, jsonl=out, client=client, resume=True)
    assert again.resumed == 0 and again.files == 30
    assert len(list(read_lines(out))) == 62


def _set_allowed_failures(dask_scheduler: Any, n: int) -> int:
    before: int = dask_scheduler.allowed_failures
    dask_scheduler.allowed_failures = n
    return before


def test_a_file_that_kills_every_worker_is_invalid_and_its_batch_is_still_scanned(
    cluster: tuple[LocalCluster, Client], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _local, client = cluster
    root = tmp_path / "models"
    build_tree(root, 20)
    (root / "poison.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    monkeypatch.setattr(_dask, "_scan_batch", killing_scan_batch)
    out = tmp_path / "results.jsonl"
    # One death per task is enough here (fewer restarts to wait for).
    before = client.run_on_scheduler(_set_allowed_failures, n=0)
    try:
        summary = scan_many([root], jsonl=out, client=client)
    finally:
        client.run_on_scheduler(_set_allowed_failures, n=before)
        client.wait_for_workers(2, timeout=60)
    lines = {line["path"]: line for line in read_lines(out)}
    assert len(lines) == 21 and summary.files == 21
    poison = lines[str(root / "poison.pkl")]
    assert poison["verdict"] == "invalid"
    assert [f["rule"] for f in poison["findings"]] == ["SL312"]
    assert "KilledWorker" in poison["findings"][0]["message"]
    # The files that shared its batch were retried alone and scanned.
    expected = summary_of_report(scan_paths([root], default_policy(), jobs=1))
    del expected[str(root / "poison.pkl")]
    del lines[str(root / "poison.pkl")]
    assert summary_of(list(lines.values())) == expected


def test_a_task_that_raises_costs_only_its_file(
    cluster: tuple[LocalCluster, Client], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _local, client = cluster
    root = tmp_path / "models"
    build_tree(root, 20)
    (root / "planted.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    monkeypatch.setattr(_dask, "_scan_batch", raising_scan_batch)
    out = tmp_path / "results.jsonl"
    summary = scan_many([root], jsonl=out, client=client)
    lines = {line["path"]: line for line in read_lines(out)}
    assert len(lines) == 21 == summary.files
    planted = lines.pop(str(root / "planted.pkl"))
    assert (planted["verdict"], [f["rule"] for f in planted["findings"]]) == ("invalid", ["SL312"])
    assert "RuntimeError: planted failure" in planted["findings"][0]["message"]
    expected = summary_of_report(scan_paths([root], default_policy(), jobs=1))
    del expected[str(root / "planted.pkl")]
    assert summary_of(list(lines.values())) == expected


def test_cli_engine_dask_exit_codes_and_results_file(
    cluster: tuple[LocalCluster, Client], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local, _client = cluster
    root = tmp_path / "models"
    build_tree(root, 30)
    out = tmp_path / "results.jsonl"
    common = ["scan", "--engine", "dask", "--scheduler", local.scheduler_address, "--jsonl"]
    assert main([*common, str(out), str(root)]) == 1  # hostile files: findings
    captured = capsys.readouterr()
    assert "\r" not in captured.err  # no progress bar when stderr is not a terminal
    assert "30 files in" in captured.err and f"results in {out}" in captured.err
    assert summary_of(list(read_lines(out))) == summary_of_report(
        scan_paths([root], default_policy(), jobs=1)
    )
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "model.pkl").write_bytes(pickle.dumps({"a": [1.0, 2.0]}))
    assert main([*common, str(tmp_path / "clean.jsonl"), str(clean)]) == 0
    # A path that does not exist is an error line and exit 2.
    missing = tmp_path / "missing.pkl"
    assert main([*common, str(tmp_path / "m.jsonl"), str(missing)]) == 2
    [line] = read_lines(tmp_path / "m.jsonl")
    assert line == {
        "path": str(missing),
        "error": "no such file or directory",
        "size": None,
        "mtime_ns": None,
        "etag": None,
    }
    assert f"{missing}: no such file or directory" in capsys.readouterr().err


def test_urls_are_scanned_on_the_workers_and_resumed_by_their_etag(
    cluster: tuple[LocalCluster, Client], tmp_path: Path
) -> None:
    _local, client = cluster
    root = tmp_path / "models"
    build_tree(root, 40)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    expected = {
        p.relative_to(root).as_posix(): v
        for p, v in zip(
            files,
            summary_of_report(scan_paths(files, default_policy(), jobs=1)).values(),
            strict=True,
        )
    }
    state = Served(files={f"/{p.relative_to(root).as_posix()}": p for p in files})
    out = tmp_path / "results.jsonl"
    with serving(state) as base:
        urls = [f"{base}/{p.relative_to(root).as_posix()}" for p in files]
        summary = scan_many(urls, jsonl=out, client=client)
        lines = list(read_lines(out))
        assert summary.files == len(files) == len(lines)
        got = {path[len(base) + 1 :]: v for path, v in summary_of(lines).items()}
        assert got == expected
        assert [line for line in lines if not (line["etag"] and line["size"])] == []
        served = state.body_bytes
        again = scan_many(urls, jsonl=out, client=client, resume=True)
        assert again.resumed == len(files) and len(list(read_lines(out))) == len(files)
        assert state.body_bytes == served  # nothing fetched again


def test_a_cluster_without_workers_stops_the_run_for_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "models"
    build_tree(root, 10)
    monkeypatch.setattr(_dask, "NO_WORKERS_TIMEOUT", 0.5)
    monkeypatch.setattr(_dask, "WORKER_CHECK_EVERY", 0.1)
    out = tmp_path / "results.jsonl"
    with (
        LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as empty,
        Client(empty) as client,
        pytest.raises(ScanInputError, match=r"no worker for 0 s.*--resume") as raised,
    ):
        scan_many([root], jsonl=out, client=client)
    assert str(out) in str(raised.value)
    assert list(read_lines(out)) == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--jsonl", "x.jsonl"], "go with --engine dask"),
        (["--engine", "dask"], "give --jsonl FILE"),
        (["--engine", "dask", "--jsonl", "x.jsonl", "--format", "json"], "--format json"),
        (["--engine", "dask", "--jsonl", "x.jsonl", "--explain"], "--explain"),
    ],
)
def test_cli_engine_dask_usage_errors(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", *extra, str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_scanning_never_imports_dask_unless_asked() -> None:
    code = (
        "import sys, safeload, safeload.scan\n"
        "from safeload._cli import main\n"
        "main(['scan', '--quiet', sys.argv[1]])\n"
        "assert 'dask' not in sys.modules and 'distributed' not in sys.modules, 'imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent / "picklebuild.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_without_dask_the_engine_says_how_to_install_it(tmp_path: Path) -> None:
    model = tmp_path / "model.pkl"
    model.write_bytes(pickle.dumps([1, 2]))
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('dask', 'distributed'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from safeload._cli import main\n"
        "sys.exit(main(['scan', '--engine', 'dask', '--jsonl', sys.argv[2], sys.argv[1]]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(model), str(tmp_path / "out.jsonl")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'safeload[dask]'" in done.stderr


def test_the_progress_line_shows_files_bytes_and_throughput() -> None:
    out = io.StringIO()
    draw = progress_bar(out)
    draw(_dask.BatchProgress(500, 2_500_000, 2000, 9_000_000, False, 100, 500_000, 2.0))
    draw(_dask.BatchProgress(2000, 9_000_000, 2000, 9_000_000, True, 100, 500_000, 5.0))
    first, last = out.getvalue().split("\r")[1:]
    # Until the walk ends the total is a lower bound; rates leave out resumed files.
    assert first.startswith("scanning 500/2000+ files, 2.5 MB | 200 files/s, 1.0 MB/s")
    assert last.startswith("scanning 2000/2000 files, 9.0 MB | 380 files/s, 1.7 MB/s")
    assert "100 resumed" in last
