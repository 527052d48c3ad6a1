"""Load-time resource bounds: what constructing a file's objects would cost, and its budget.

Each hostile file here is a few dozen bytes that name only allowlisted globals;
under its real loader (a forked child under an address-space limit and an
alarm) it allocates past the limit or never returns. The scan's estimate of
its load cost exceeds the budget (SL309 load-cost-limit, not safe), where its
globals' scopes do not already refuse it, and the guarded loader refuses it.
Real models cost about what they weigh, far below the budget.
"""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hostile_checks as H
import limited
import numpy as np
import pytest
from picklebuild import binint1, empty_dict, glob, mark, sbu, setitems, short_binbytes

import safeload
from safeload import Policy, Verdict
from safeload._checks import UNBOUNDED, estimate_load_cost
from safeload._formats import ReadingKind, locate
from safeload._machine.walker import analyze
from safeload.errors import PolicyError
from safeload.policy import DEFAULT_MAX_LOAD_COST, LOAD_COST_FLOOR, UserConfig
from tools import corpus

MULTIARRAY = H.MULTIARRAY


@dataclass(frozen=True)
class Case:
    """A file whose load allocates past `mem_mb` ('memory') or outlives `seconds` ('time')."""

    id: str
    data: bytes
    proof: str
    allow: tuple[str, ...] = ()
    """Globals whose scope the isolated scan lifts, so the budget is what refuses."""
    mem_mb: int = 512
    seconds: int = 3
    preload: str = "numpy"
    shown: str = ""
    """Text the SL309 message gives for the largest contribution."""


def _new_index_of_range() -> bytes:
    data = empty_dict() + mark() + sbu("data") + H.range_of(0, 1 << 33)
    data += sbu("dtype") + sbu("float64") + setitems()
    index = glob("pandas.core.indexes.base", "Index")
    return H.pickle_of(H.call("pandas.core.indexes.base", "_new_Index", index, data))


def _int64_scalar(value: int) -> bytes:
    dt = H.dtype("i8", H.simple_state("<", 0))
    return H.call(MULTIARRAY, "scalar", dt, short_binbytes(value.to_bytes(8, "little")))


CASES = [
    Case("bytearray-of-a-size", H.pickle_of(H.call("builtins", "bytearray", H.integer(1 << 34))),
         "memory", ("builtins.bytearray",), shown="builtins.bytearray(16.0 Gi)"),
    Case("bytes-of-a-size", H.pickle_of(H.call("builtins", "bytes", H.integer(1 << 34))),
         "memory", ("builtins.bytes",)),
    Case("bytes-new-of-a-size",
         H.pickle_of(H.call("copyreg", "__newobj__", glob("builtins", "bytes"), H.integer(1 << 34))),
         "memory", ("copyreg.__newobj__", "builtins.bytes")),
    Case("bytearray-of-a-numpy-int", H.pickle_of(H.call("builtins", "bytearray", _int64_scalar(1 << 33))),
         "memory", ("builtins.bytearray",), shown="cannot be bounded"),
    Case("deque-drains-a-huge-range",
         H.consumed("collections", "deque", H.range_of(10**18), binint1(0)),
         "time", ("collections.deque", "builtins.range"), shown="iterates 888.2 Pi items"),
    Case("tuple-of-a-huge-range", H.consumed("builtins", "tuple", H.range_of(1 << 40)),
         "memory", ("builtins.tuple", "builtins.range")),
    Case("set-of-a-huge-range", H.consumed("builtins", "set", H.range_of(1 << 40)),
         "memory", ("builtins.set", "builtins.range")),
    Case("reconstruct-allocates-its-shape",
         H.pickle_of(H.call(MULTIARRAY, "_reconstruct", glob("numpy", "ndarray"), H.shape(1 << 31),
                            short_binbytes(b"O"))),
         "memory", shown="shape (2.0 Gi)"),
    Case("ndarray-called-with-a-shape",
         H.pickle_of(H.call("numpy", "ndarray", H.shape(1 << 31), sbu("O"))),
         "memory", ("numpy.ndarray",)),
    Case("masked-array-of-a-shape",
         H.pickle_of(H.call("numpy.ma.core", "_mareconstruct", glob("numpy.ma", "MaskedArray"),
                            glob("numpy", "ndarray"), H.shape(1 << 31), sbu("O"))),
         "memory", ("numpy.ma.core._mareconstruct",)),
    Case("pandas-index-materializes-a-range", _new_index_of_range(), "memory",
         ("pandas.core.indexes.base._new_Index",), preload="pandas",
         shown="materializes a range"),
    Case("torch-layer-called-with-sizes",
         H.pickle_of(H.call("torch.nn.modules.linear", "Linear", H.integer(12000),
                            H.integer(12000))),
         "memory", ("torch.nn.modules.linear.Linear",), mem_mb=256, seconds=20, preload="torch",
         shown="allocates 549.3 MiB"),
]  # fmt: skip


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Any]:
    root = tmp_path_factory.mktemp("bounds")
    results: dict[tuple[str, str], Any] = {}
    for preload in sorted({c.preload for c in CASES}):
        jobs: list[tuple[tuple[str, str], limited.Job]] = []
        for case in (c for c in CASES if c.preload == preload):
            path = root / case.id / "payload.pkl"
            path.parent.mkdir()
            path.write_bytes(case.data)
            limits = {"mem_mb": case.mem_mb, "seconds": case.seconds}
            allowed = (
                "result = safeload.loads(open(path, 'rb').read(), require_signature=False, "
                f"allow={list(case.allow)!r})\n"
            )
            jobs.append(((case.id, "plain"), limited.Job(path, limited.PLAIN, **limits)))
            jobs.append(((case.id, "guarded"), limited.Job(path, limited.GUARDED, **limits)))
            jobs.append(((case.id, "isolated"), limited.Job(path, allowed, **limits)))
        found = limited.run([job for _, job in jobs], preload=(preload,))
        results.update((key, r) for (key, _), r in zip(jobs, found, strict=True))
    return results


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_payload_exhausts_its_plain_loader(case: Case, outcomes: dict[Any, Any]) -> None:
    plain = outcomes[(case.id, "plain")]
    assert len(case.data) < 200
    if case.proof == "memory":
        assert limited.out_of_memory(plain), plain
    else:
        assert limited.timed_out(plain), plain


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_scan_refuses_it(case: Case) -> None:
    report = safeload.scan_bytes(case.data)
    assert report.verdict is not Verdict.SAFE
    assert {f.rule for f in report.findings} <= {"SL405", "SL309"}, report.findings
    isolated = safeload.scan_bytes(case.data, Policy.build(allow=case.allow))
    assert isolated.verdict is Verdict.INVALID
    (over,) = [f for f in isolated.findings if f.rule == "SL309"]
    assert over.rule_name == "load-cost-limit" and over.location == "<bytes>"
    assert "budget 256.0 MiB" in over.message and case.shown in over.message, over.message


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_guarded_loader_refuses_it(case: Case, outcomes: dict[Any, Any]) -> None:
    guarded = outcomes[(case.id, "guarded")]
    assert guarded["outcome"] == "raised" and guarded["type"] == "UnsafeFileError", guarded
    assert limited.refused(outcomes[(case.id, "isolated")], "SL309 load-cost-limit")


# -- the estimate --------------------------------------------------------------------------------


def _cost(data: bytes) -> int:
    return estimate_load_cost(analyze(data), data).total


@pytest.mark.parametrize(
    ("bounds", "length"),
    [((10,), 10), ((2, 10), 8), ((10, 2, -3), 3), ((0, 10, 3), 4), ((5, 1), 0), ((1, 9, 0), 0),
     ((-(10**30), 0), UNBOUNDED)],
)  # fmt: skip
def test_range_lengths(bounds: tuple[int, ...], length: int) -> None:
    data = H.consumed("builtins", "list", H.range_of(*bounds))
    assert _cost(data) == min(UNBOUNDED, 8 * length)


def test_nested_consumers_add_up() -> None:
    inner = H.call("builtins", "list", H.range_of(1000))
    assert _cost(H.consumed("builtins", "tuple", inner)) == 2 * 8 * 1000
    # a result consumed twice is iterated twice
    shared = H.call("builtins", "list", H.range_of(1000)) + b"q\x00"
    twice = H.pickle_of(
        H.call("builtins", "tuple", shared) + H.call("builtins", "set", b"h\x00") + b"\x86"
    )
    assert _cost(twice) == 3 * 8 * 1000


def test_what_cannot_be_sized_is_unbounded() -> None:
    # an object some other call built: its length is not a constant
    opaque = H.consumed("builtins", "list", H.call("collections", "ChainMap"))
    assert _cost(opaque) == UNBOUNDED
    assert _cost(H.consumed("builtins", "list", H.call("collections", "OrderedDict"))) == 0
    deep = H.range_of(10)
    for _ in range(40):
        deep = H.call("builtins", "list", deep)
    assert _cost(H.pickle_of(deep)) == UNBOUNDED
    # what the file itself holds is sized by the file: free to name
    literal = H.consumed("builtins", "list", sbu("abc") + b"\x85")
    assert _cost(literal) == 8


def test_rebuilt_containers_consume_nothing() -> None:
    # NEWOBJ runs __new__ only: list.__new__ ignores its arguments.
    data = H.pickle_of(glob("builtins", "list") + H.range_of(10**18) + b"\x85\x81")
    assert _cost(data) == 0


def test_fraction_digits_are_a_cost() -> None:
    assert _cost(H.fraction_of("1e10000000")) > 10**10
    assert _cost(H.fraction_of("1e1000")) < 10**6
    assert _cost(H.fraction_of("22/7")) == 0


def test_torch_storages_count_their_bytes() -> None:
    import torch

    buf = io.BytesIO()
    torch.save({"w": torch.zeros(1000)}, buf)
    with locate(buf.getvalue()) as located:
        (reading,) = located.readings
        cost = estimate_load_cost(
            reading.analysis, reading.data, torch_storages=reading.kind is ReadingKind.TORCH
        )
    assert cost.total == 4000


def test_a_torch_storage_claiming_more_than_it_holds_is_over_budget(tmp_path: Path) -> None:
    import torch

    buf = io.BytesIO()
    torch.save({"w": torch.zeros(4)}, buf)
    raw = buf.getvalue()
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith("data.pkl")]
        members = {n: archive.read(n) for n in archive.namelist()}
    # numel 4 -> 2**40 in the storage id (a BININT -> LONG1 swap keeps the pickle valid)
    pkl = members[name]
    members[name] = pkl.replace(b"K\x04t", H.integer(1 << 40) + b"t", 1)
    assert members[name] != pkl
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for member, body in members.items():
            archive.writestr(member, body)
    report = safeload.scan_bytes(out.getvalue())
    assert report.verdict is Verdict.INVALID
    assert [f.rule for f in report.findings] == ["SL309"]
    assert "a torch storage" in report.findings[0].message


# -- the budget ----------------------------------------------------------------------------------


#: `_reconstruct(ndarray, (n,), b'b')`: the genuine call shape, allocating n bytes.
def _allocating(n: int) -> bytes:
    return H.pickle_of(
        H.call(
            MULTIARRAY, "_reconstruct", glob("numpy", "ndarray"), H.shape(n), short_binbytes(b"b")
        )
    )


def test_budget_scales_with_the_file_and_has_a_floor() -> None:
    policy = Policy.default()
    assert policy.max_load_cost == DEFAULT_MAX_LOAD_COST == 64
    assert policy.load_budget(0) == LOAD_COST_FLOOR == 256 << 20
    assert policy.load_budget(10 << 20) == 640 << 20
    assert safeload.scan_bytes(_allocating(LOAD_COST_FLOOR)).verdict is Verdict.SAFE
    assert safeload.scan_bytes(_allocating(LOAD_COST_FLOOR + 1)).verdict is Verdict.INVALID
    # a bigger file may cost more: the same call with 8 MiB of padding after the pickle
    padded = _allocating(300 << 20) + b"\x00" * (8 << 20)
    assert safeload.scan_bytes(padded).verdict is Verdict.SAFE


def test_budget_is_configurable(tmp_path: Path) -> None:
    data = _allocating(1 << 30)
    assert safeload.scan_bytes(data).verdict is Verdict.INVALID
    roomy = Policy.build(max_load_cost=1e8)
    assert safeload.scan_bytes(data, roomy).verdict is Verdict.SAFE
    project = tmp_path / "pyproject.toml"
    project.write_text("[tool.safeload]\nmax-load-cost = 1e8\n")
    config = UserConfig.from_pyproject(project)
    assert config.max_load_cost == 1e8
    assert Policy.build(config=config).max_load_cost == 1e8
    assert Policy.build(config=config, max_load_cost=2).max_load_cost == 2  # the flag wins
    with pytest.raises(PolicyError, match="positive number"):
        Policy.build(max_load_cost=0)
    project.write_text("[tool.safeload]\nmax-load-cost = 'big'\n")
    with pytest.raises(PolicyError, match="max-load-cost must be a positive number"):
        UserConfig.from_pyproject(project)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", safeload.UnsignedLoadWarning)
        loaded = safeload.loads(_allocating(16), policy=roomy, require_signature=False)
    assert loaded.shape == (16,)


def test_cli_flag_and_project_table(tmp_path: Path) -> None:
    path = tmp_path / "big.pkl"
    path.write_bytes(_allocating(1 << 30))

    def scan(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "safeload", "scan", *flags, str(path)],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    refused = scan()
    assert refused.returncode == 1 and "SL309 load-cost-limit" in refused.stdout
    assert scan("--max-load-cost", "1e8").returncode == 0
    (tmp_path / "pyproject.toml").write_text("[tool.safeload]\nmax-load-cost = 1e8\n")
    assert scan().returncode == 0
    assert scan("--no-config").returncode == 1
    assert scan("--max-load-cost", "0").returncode == 2


# -- real models -----------------------------------------------------------------------------------


def _ratio(data: bytes) -> tuple[float, int]:
    with locate(data) as located:
        cost = sum(
            estimate_load_cost(r.analysis, r.data, torch_storages=r.kind is ReadingKind.TORCH).total
            for r in located.readings
        )
        size = max([located.size, *(len(r.data) for r in located.readings)])
    return cost / size, cost


def test_real_models_cost_about_what_they_weigh() -> None:
    """Measured: at most 0.99 bytes of load cost per byte of file over the corpus
    (an xgboost Booster's raw model copied into a bytearray), far below the default 64."""
    import torch

    worst = 0.0
    files: list[bytes] = []
    for group in ("stdlib", "numpy", "scipy", "pandas", "sklearn-extra", "xgboost", "lightgbm"):
        for _label, obj in corpus.BUILDERS[group]():
            files += [data for _proto, data in corpus.pickles(obj)]
    files += [corpus.joblib_dump_bytes(obj) for _label, obj in corpus.joblib_objects()]
    for _label, obj in corpus.torch_objects():
        for zipped in (True, False):
            buf = io.BytesIO()
            torch.save(obj, buf, _use_new_zipfile_serialization=zipped)
            files.append(buf.getvalue())
    for data in files:
        ratio, cost = _ratio(data)
        worst = max(worst, ratio)
        assert cost < LOAD_COST_FLOOR // 64
    assert worst < 2, worst
    big = pickle.dumps({"weights": np.zeros((1000, 1000)), "ids": list(range(10_000))})
    assert _ratio(big)[0] < 0.01
