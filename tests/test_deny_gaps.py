"""Deny-gap rules (SL120-SL124): library callables that write, read, connect, import or spawn.

Before these rules, `torch.serialization.save`, `pandas.to_pickle`, `numpy.memmap`,
`numpy.lib.format.open_memmap`, `pandas.read_hdf` and the like were `unknown`,
so a file calling them passed `--fail-on dangerous`. The rules are generated
from tools/deny_gaps.toml by tools/gen_deny_gaps.py; these tests check that the
generated block is current, that byte-built pickles calling the callables are
`dangerous` at every protocol and under every alias the generator found, and
that real payloads (run by the real `pickle.load` in a subprocess) write their
canary while safeload refuses them.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from safeload import Verdict
from safeload._names import parse_canonical
from safeload.policy import Policy
from safeload.scan import scan_bytes
from tests import picklebuild as pb
from tests.loadrun import CANARY, canary_in, run_jobs

ROOT = Path(__file__).resolve().parent.parent
GAP_IDS = ("SL120", "SL121", "SL122", "SL123", "SL124")


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.default()


def call_pickle(module: str, qualname: str, protocol: int, *args: bytes) -> bytes:
    """`module:qualname(*args)` at `protocol`, byte by byte (GLOBAL below 4, STACK_GLOBAL from 4)."""
    if protocol >= 4:
        fn = pb.sbu(module) + pb.sbu(qualname) + pb.stack_global()
    else:
        fn = pb.glob(module, qualname)
    head = pb.proto(protocol) if protocol >= 2 else b""
    return head + pb.calln(fn, *args) + pb.stop()


# The callables issue 10 names, each under the name a hostile file would use.
ISSUE_NAMES = [
    "torch.save",
    "torch.serialization.save",
    "torch.load",
    "pandas.to_pickle",
    "pandas:DataFrame.to_pickle",
    "pandas.read_hdf",
    "pandas.read_stata",
    "pandas.read_csv",
    "numpy.save",
    "numpy.memmap",
    "numpy.lib.format.open_memmap",
    "numpy.load",
    "joblib.load",
    "joblib.dump",
    "pickle.load",
    "pickle.loads",
    "marshal.loads",
    "scipy.io.savemat",
    "sklearn.datasets.fetch_openml",
    "xgboost:Booster.save_model",
    "torch.from_file",
    "torch.distributed.init_process_group",
    "unittest.mock.patch",
]


@pytest.mark.parametrize("name", ISSUE_NAMES)
@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_issue_callables_are_dangerous(name: str, protocol: int, policy: Policy) -> None:
    module, qualname = parse_canonical(name)
    if "." in qualname and protocol < 4:
        pytest.skip("GLOBAL names a dotted qualname only from protocol 4 on")
    data = call_pickle(
        module,
        qualname,
        protocol,
        pb.unicode_("x") if protocol == 0 else pb.sbu("x") if protocol >= 4 else pb.binunicode("x"),
    )
    report = scan_bytes(data, policy)
    assert report.verdict is Verdict.DANGEROUS, (name, [f.rule for f in report.findings])
    assert any(f.verdict is Verdict.DANGEROUS for f in report.findings)


def _generated_rules(policy: Policy) -> list[tuple[str, str]]:
    return [
        (rule_id, name)
        for rule_id in GAP_IDS
        for name in sorted(
            f"{m}:{q}" if "." in q else f"{m}.{q}" for m, q in policy.rules[rule_id].globals
        )
    ]


def test_every_generated_name_is_dangerous_when_called(policy: Policy) -> None:
    """Every alias the generator wrote is denied by a rule when a pickle calls it (protocol 4)."""
    names = _generated_rules(policy)
    assert len(names) > 300  # the aliases, not only the reviewed definitions
    missed = []
    for rule_id, name in names:
        module, qualname = parse_canonical(name)
        report = scan_bytes(call_pickle(module, qualname, 4, pb.sbu("x")), policy)
        rules = {f.rule for f in report.findings}
        if report.verdict is not Verdict.DANGEROUS or rule_id not in rules:
            missed.append((name, report.verdict.value, sorted(rules)))
    assert not missed


@pytest.mark.parametrize(
    "module",
    ["scipy.io", "sklearn.datasets", "torch.distributed", "joblib.memory", "pandas.io.pytables"],
)
def test_module_rules_cover_submodules(module: str, policy: Policy) -> None:
    report = scan_bytes(call_pickle(module + ".anything", "f", 4, pb.sbu("x")), policy)
    assert report.verdict is Verdict.DANGEROUS


def test_no_generated_name_is_allowed(policy: Policy) -> None:
    """The generator refuses names on allow packs: genuine files never become dangerous."""
    for rule_id in GAP_IDS:
        assert not (policy.rules[rule_id].globals & policy.allowed), rule_id


def test_no_allowed_global_is_denied_by_a_module_rule(policy: Policy) -> None:
    """Module-wide gap rules (scipy.io, sklearn.datasets, joblib.parallel, ...) name
    nothing an allow pack lists."""
    denied = {
        (m, q): d.rule.id
        for m, q in policy.allowed
        if (d := policy.decide(m, q)).denied and d.rule is not None and d.rule.id in GAP_IDS
    }
    assert denied == {}


def test_generated_rules_are_current() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_deny_gaps.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


def test_genuine_memmap_pickle_names_memmap(tmp_path: Path, policy: Policy) -> None:
    """What the SL120 fix text says: a pickled numpy.memmap names `numpy.memmap` (stored, not
    called), so it is reported; numpy.asarray of it pickles without it and is safe."""
    np = pytest.importorskip("numpy")
    mapped = np.memmap(tmp_path / "data.bin", dtype="float32", mode="w+", shape=(4,))
    reported = scan_bytes(pickle.dumps(mapped, protocol=4), policy)
    assert "SL120" in {f.rule for f in reported.findings}
    assert scan_bytes(pickle.dumps(np.asarray(mapped), protocol=4), policy).verdict is Verdict.SAFE


# -- real payloads: the plain loader writes the canary, safeload refuses -----------

PAYLOADS = {
    # pandas.to_pickle(0, 'canary'): writes a pickle of 0 to ./canary
    "pandas.to_pickle": call_pickle("pandas", "to_pickle", 2, pb.binint1(0), pb.binunicode(CANARY)),
    # numpy.lib.format.open_memmap('canary', 'w+', 'u1', (1,)): creates ./canary
    "numpy.lib.format.open_memmap": call_pickle(
        "numpy.lib.format",
        "open_memmap",
        2,
        pb.binunicode(CANARY),
        pb.binunicode("w+"),
        pb.binunicode("u1"),
        pb.binint1(1) + pb.tuple1(),
    ),
    # numpy.memmap('canary', 'u1', 'w+', 0, (1,)): creates ./canary
    "numpy.memmap": call_pickle(
        "numpy",
        "memmap",
        2,
        pb.binunicode(CANARY),
        pb.binunicode("u1"),
        pb.binunicode("w+"),
        pb.binint1(0),
        pb.binint1(1) + pb.tuple1(),
    ),
    # torch.serialization.save({}, 'canary')
    "torch.serialization.save": call_pickle(
        "torch.serialization", "save", 2, pb.empty_dict(), pb.binunicode(CANARY)
    ),
}


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_payload_runs_under_pickle_and_is_refused(
    name: str, tmp_path: Path, policy: Policy
) -> None:
    data = PAYLOADS[name]
    report = scan_bytes(data, policy)
    assert report.verdict is Verdict.DANGEROUS, [f.rule for f in report.findings]
    assert {f.rule for f in report.findings} & set(GAP_IDS)
    path = tmp_path / "model.pkl"
    path.write_bytes(data)
    plain = {"kind": "plain", "path": path, "cwd": tmp_path / "plain",
             "code": "import pickle\nwith open(path, 'rb') as f: pickle.load(f)"}  # fmt: skip
    guarded = {"kind": "safeload", "path": path, "cwd": tmp_path / "guarded"}
    plain_result, guarded_result = run_jobs([plain, guarded])
    assert canary_in(tmp_path / "plain"), plain_result  # the payload is real
    assert guarded_result["outcome"] == "raised" and guarded_result["unsafe"], guarded_result
    assert not canary_in(tmp_path / "guarded")
