"""No input crashes the scanner: an internal error is a verdict, and a batch survives one file.

The last-resort nets (walker, locator, judge, scan) are proven by making the
code under them fail on purpose: the file is then `invalid` with SL312
internal-error naming the exception, and the findings made before it are
still there. Batches: one file's exception, a worker killed as the OOM
killer kills it, and a per-file time limit each cost a report for that
file alone; every other file, the hostile one included, is still reported.
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import signal
import zipfile
from pathlib import Path
from typing import Any

import pytest

import safeload
from safeload import Policy, Verdict
from safeload._cli import main
from safeload._formats import containers
from safeload._machine import walker
from safeload.errors import PolicyError, UnsafeFileError
from safeload.policy import UserConfig
from safeload.scan import _batch, _core, _judge, _workers
from safeload.scan._batch import scan_paths
from tests.picklebuild import glob, proto, reduce, sbu, stop, tuple1

# os.system('id'): SL101 at the global, then the REDUCE that calls it.
HOSTILE = proto(2) + glob("os", "system") + sbu("id") + tuple1() + reduce() + stop()
BENIGN = pickle.dumps(collections.OrderedDict(a=[1, 2.5]), protocol=2)


class Boom(RuntimeError):
    """The bug planted for a test."""


def boom(*_args: Any, **_kwargs: Any) -> Any:
    raise Boom("planted")


def rules(report: safeload.FileReport) -> list[str]:
    return [f.rule for f in report.findings]


def internal(report: safeload.FileReport) -> safeload.Finding:
    (finding,) = [f for f in report.findings if f.rule == "SL312"]
    assert finding.rule_name == "internal-error"
    assert finding.verdict is Verdict.INVALID
    return finding


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.default()


def test_the_inputs_scan_as_expected_without_a_planted_bug() -> None:
    assert safeload.scan_bytes(BENIGN).verdict is Verdict.SAFE
    assert rules(safeload.scan_bytes(HOSTILE)) == ["SL101"]


# -- the nets, one level at a time ---------------------------------------------------


def test_a_walker_error_is_internal_error_and_keeps_the_globals_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(walker, "_call", boom)  # REDUCE fails, after the GLOBAL
    report = safeload.scan_bytes(HOSTILE, location="f.pkl")
    assert "SL101" in rules(report)
    finding = internal(report)
    assert "Boom: planted" in finding.message
    assert finding.message.startswith("internal error while reading this file")
    assert report.verdict is Verdict.DANGEROUS


def test_a_walker_error_makes_a_benign_file_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(walker, "_call", boom)
    report = safeload.scan_bytes(BENIGN)
    internal(report)
    assert report.verdict is Verdict.INVALID


def test_a_locator_error_keeps_the_members_read_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.pkl", HOSTILE)
        zf.writestr("b.pkl", BENIGN)
    real = containers.member_bytes
    calls: list[str] = []

    def second_fails(ctx: Any, data: Any, m: Any, location: str) -> Any:
        calls.append(m.name)
        if len(calls) == 2:
            raise Boom("planted")
        return real(ctx, data, m, location)

    monkeypatch.setattr(containers, "member_bytes", second_fails)
    report = safeload.scan_bytes(buf.getvalue(), location="bundle.zip")
    assert calls == ["a.pkl", "b.pkl"]
    hostile = [f for f in report.findings if f.rule == "SL101"]
    assert [f.location for f in hostile] == ["bundle.zip:a.pkl"]
    finding = internal(report)
    assert finding.location == "bundle.zip"
    assert "Boom" in finding.message
    assert report.format == "zip"


def test_a_judge_error_keeps_the_reading_s_findings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_judge, "_persid_findings", boom)
    report = safeload.scan_bytes(HOSTILE)
    assert "SL101" in rules(report)
    internal(report)


def test_a_load_cost_error_keeps_every_other_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_judge, "estimate_load_cost", boom)
    report = safeload.scan_bytes(HOSTILE)
    assert "SL101" in rules(report)
    internal(report)


def test_an_error_outside_the_nets_is_still_a_verdict(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(_core, "judge", boom)
    report = safeload.scan_bytes(BENIGN, location="x.pkl")
    assert rules(report) == ["SL312"]
    assert report.verdict is Verdict.INVALID
    assert report.format == "pickle"
    path = tmp_path / "x.pkl"
    path.write_bytes(BENIGN)
    assert safeload.scan_file(path).verdict is Verdict.INVALID


def test_the_guarded_loader_refuses_a_file_its_scan_failed_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(walker, "_call", boom)
    with pytest.warns(safeload.UnsignedLoadWarning), pytest.raises(UnsafeFileError) as caught:
        safeload.loads(BENIGN, require_signature=False)
    assert "SL312" in str(caught.value.diagnostics())


# -- batches ------------------------------------------------------------------------------


def batch(tmp_path: Path, count: int = 9) -> tuple[Path, list[Path]]:
    """A directory of benign pickles, one hostile one and one that the test makes fail."""
    folder = tmp_path / "models"
    folder.mkdir()
    paths = []
    for i in range(count):
        path = folder / f"m{i}.pkl"
        path.write_bytes(BENIGN)
        paths.append(path)
    (folder / "evil.pkl").write_bytes(HOSTILE)
    (folder / "doomed.pkl").write_bytes(BENIGN)
    return folder, paths


def by_name(report: safeload.ScanReport) -> dict[str, safeload.FileReport]:
    return {Path(f.path).name: f for f in report.files}


def assert_others_reported(report: safeload.ScanReport, count: int) -> None:
    files = by_name(report)
    assert set(files) == {f"m{i}.pkl" for i in range(count)} | {"evil.pkl", "doomed.pkl"}
    assert all(files[f"m{i}.pkl"].verdict is Verdict.SAFE for i in range(count))
    assert files["evil.pkl"].verdict is Verdict.DANGEROUS
    assert not report.errors


def test_an_exception_in_one_file_of_a_serial_batch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, policy: Policy
) -> None:
    folder, _ = batch(tmp_path)
    real = _batch.scan_file

    def fails_on_doomed(path: Path, *args: Any, **kwargs: Any) -> safeload.FileReport:
        if path.name == "doomed.pkl":
            raise Boom("planted")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(_batch, "scan_file", fails_on_doomed)
    report = scan_paths([folder], policy, jobs=1)
    assert_others_reported(report, 9)
    doomed = by_name(report)["doomed.pkl"]
    assert doomed.verdict is Verdict.INVALID
    assert "Boom" in internal(doomed).message


def test_a_killed_worker_costs_only_its_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, policy: Policy
) -> None:
    folder, _ = batch(tmp_path)
    monkeypatch.setenv(_workers.TEST_KILL_ENV, "doomed.pkl")
    done: list[int] = []
    report = scan_paths([folder], policy, jobs=2, progress=lambda n, total: done.append(n))
    assert_others_reported(report, 9)
    doomed = by_name(report)["doomed.pkl"]
    assert doomed.verdict is Verdict.INVALID
    message = internal(doomed).message
    assert "killed by SIGKILL" in message and "out-of-memory" in message
    assert done == list(range(1, 12))


def test_workers_killed_on_several_files_are_all_replaced(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, policy: Policy
) -> None:
    folder = tmp_path / "same"
    folder.mkdir()
    for i in range(5):
        sub = folder / f"d{i}"
        sub.mkdir()
        (sub / "doomed.pkl").write_bytes(BENIGN)
    (folder / "evil.pkl").write_bytes(HOSTILE)
    monkeypatch.setenv(_workers.TEST_KILL_ENV, "doomed.pkl")
    report = scan_paths([folder], policy, jobs=2, timeout=60)
    files = {f.path: f for f in report.files}
    assert len(files) == 6
    assert files[str(folder / "evil.pkl")].verdict is Verdict.DANGEROUS
    for i in range(5):
        assert rules(files[str(folder / f"d{i}" / "doomed.pkl")]) == ["SL312"]


def slow_pickle(path: Path) -> None:
    """Twenty million opcodes: seconds of walking, far over the limit the tests set."""
    path.write_bytes(proto(4) + b"N0" * 10_000_000 + b"N" + stop())


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_file_over_the_time_limit_is_invalid_and_the_others_are_scanned(
    tmp_path: Path, policy: Policy, jobs: int
) -> None:
    folder, _ = batch(tmp_path, count=3)
    slow_pickle(folder / "doomed.pkl")
    report = scan_paths([folder], policy, jobs=jobs, timeout=2)
    assert_others_reported(report, 3)
    doomed = by_name(report)["doomed.pkl"]
    assert doomed.verdict is Verdict.INVALID
    (finding,) = doomed.findings
    assert finding.rule == "SL303"
    assert "longer than the limit of 2 s" in finding.message
    assert doomed.size == (folder / "doomed.pkl").stat().st_size


def test_without_a_time_limit_the_slow_file_is_scanned(tmp_path: Path, policy: Policy) -> None:
    path = tmp_path / "slow.pkl"
    path.write_bytes(proto(4) + b"N0" * 100_000 + b"N" + stop())
    report = scan_paths([path], policy, timeout=None)
    assert report.files[0].verdict is Verdict.SAFE


def test_worker_deaths_are_described() -> None:
    assert "SIGKILL" in _workers._death(-signal.SIGKILL)
    assert "out-of-memory" in _workers._death(-signal.SIGKILL)
    assert "SIGSEGV" in _workers._death(-signal.SIGSEGV)
    assert "code 3" in _workers._death(3)


# -- the command line and the configuration ----------------------------------------------


def test_cli_timeout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, _ = batch(tmp_path, count=2)
    slow_pickle(folder / "doomed.pkl")
    code = main(["scan", "--no-config", "--format", "json", "--timeout", "2", str(folder)])
    assert code == 1
    out = json.loads(capsys.readouterr().out)
    verdicts = {Path(f["path"]).name: f["verdict"] for f in out["files"]}
    assert verdicts == {
        "m0.pkl": "safe",
        "m1.pkl": "safe",
        "evil.pkl": "dangerous",
        "doomed.pkl": "invalid",
    }


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_cli_timeout_must_be_a_positive_number(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", "--timeout", value, "x.pkl"]) == 2
    assert "--timeout" in capsys.readouterr().err


def test_config_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.safeload]\ntimeout = 2\n")
    assert UserConfig.from_pyproject(tmp_path / "pyproject.toml").timeout == 2.0
    slow_pickle(tmp_path / "doomed.pkl")
    monkeypatch.chdir(tmp_path)
    assert main(["scan", "--format", "json", "doomed.pkl"]) == 1
    (file,) = json.loads(capsys.readouterr().out)["files"]
    assert [f["rule"] for f in file["findings"]] == ["SL303"]


@pytest.mark.parametrize("value", ["0", "-3", "true", '"10"', "nan"])
def test_config_timeout_is_checked(tmp_path: Path, value: str) -> None:
    (tmp_path / "pyproject.toml").write_text(f"[tool.safeload]\ntimeout = {value}\n")
    with pytest.raises(PolicyError, match="timeout"):
        UserConfig.from_pyproject(tmp_path / "pyproject.toml")


def test_no_worker_outlives_the_batch(tmp_path: Path, policy: Policy) -> None:
    import multiprocessing

    folder, _ = batch(tmp_path, count=8)
    scan_paths([folder], policy, jobs=2, timeout=60)
    assert not multiprocessing.active_children()
    assert os.getpid()  # the parent is untouched


def test_scan_api_timeout(tmp_path: Path) -> None:
    slow_pickle(tmp_path / "slow.pkl")
    (report,) = safeload.scan(tmp_path / "slow.pkl", timeout=2).files
    assert rules(report) == ["SL303"]
    (tmp_path / "ok.pkl").write_bytes(BENIGN)
    assert safeload.scan(tmp_path / "ok.pkl", timeout=60).files[0].verdict is Verdict.SAFE
    with pytest.raises(safeload.ScanInputError, match="no such file"):
        safeload.scan(tmp_path / "missing.pkl", timeout=60)
    verdicts = {Path(f.path).name: f.verdict for f in safeload.scan(tmp_path, timeout=2).files}
    assert verdicts == {"slow.pkl": Verdict.INVALID, "ok.pkl": Verdict.SAFE}
