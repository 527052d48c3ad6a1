"""Named checks: what allowlisted globals may be given, in the scan and in the loader.

Each hostile file below names only allowlisted globals and attacks through a
value: a numpy dtype state, the dtype of bytes read as items, the constructor
numpy.random's pickle helpers call, a number parsed from text. Each is proven
under its real loader in a forked child (a crash signal, memory or time over a
limit); the scan refuses it (SL406 failed-check naming the check, when the
global's scope does not already refuse it) and so does the guarded loader. With
the scan set aside, the loader's real side refuses the ones it can stop before
native code sees the value.
"""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

import hostile_checks as H
import joblib
import limited
import numpy as np
import pytest
from picklebuild import (
    binget,
    binint,
    binint1,
    binput,
    empty_dict,
    glob,
    mark,
    newfalse,
    newtrue,
    none,
    sbu,
    setitems,
    tuple2,
    tuple_,
)

import safeload
from safeload import Policy, Verdict
from safeload._checks import APPLIES_TO, CHECKS, check_named, checks_for
from safeload._checks._dtype import Layout, real_layout, symbolic_layout
from safeload._checks._prebuild import real_dtypes
from safeload._checks._values import Values
from safeload._machine.walker import Res, analyze
from safeload.errors import PolicyError
from safeload.policy import parse_pack

_NUMPY_RANDOM = "numpy.random._pickle"


@dataclass(frozen=True)
class Case:
    """A hostile file, how it is proven, and the check that refuses it."""

    id: str
    data: bytes
    proof: str
    """'crash' (the plain load, or showing its result, dies of a memory fault),
    'memory' (it exceeds `mem_mb`) or 'time' (it outlives `seconds`)."""
    check: str
    allow: tuple[str, ...] = ()
    """Globals whose allow-entry scope is lifted for the isolated scan (a user
    `--allow`), so that the check, not the scope, is what refuses."""
    real: bool = True
    """The loader's real side refuses it with the scan set aside."""
    mem_mb: int = 1024
    seconds: int = 4
    extra: tuple[str, ...] = field(default=())
    """Other rules the default scan may add (an out-of-scope ufunc call)."""


_FORGED = ("numpy.dtype",)
CASES = [
    Case("scalar-reads-a-forged-object-pointer", H.scalar_forged_object(), "crash",
         "numpy-dtype-state"),
    Case("frombuffer-forged-objects-then-ufunc", H.frombuffer_forged_object_then_ufunc(), "crash",
         "numpy-dtype-state", allow=("numpy.add",), extra=("SL405",)),
    Case("newobj-builds-the-forged-dtype", H.newobj_forged_object(), "crash", "numpy-raw-bytes",
         allow=("copyreg.__newobj__", "numpy.dtype")),
    Case("struct-hides-its-object-field-frombuffer", H.hidden_object_field(), "crash",
         "numpy-dtype-state"),
    Case("struct-hides-its-object-field-array-state", H.hidden_object_field("state"), "crash",
         "numpy-dtype-state"),
    Case("struct-field-outside-its-item", H.field_outside_item(), "crash", "numpy-dtype-state"),
    # Filling the int field overwrites the object pointer numpy then releases (once
    # the load's objects are freed): the loader builds the dtype alone first.
    Case("struct-int-field-over-an-object-field", H.overlapping_object_field(), "crash",
         "numpy-dtype-state"),
    Case("generator-ctor-calls-its-second-argument",
         H.generator_ctor_calls(("builtins", "bytearray"), H.integer(1 << 33), "__generator_ctor"),
         "memory", "numpy-bit-generator", allow=(f"{_NUMPY_RANDOM}.__generator_ctor",)),
    Case("randomstate-ctor-calls-its-second-argument",
         H.generator_ctor_calls(("builtins", "bytearray"), H.integer(1 << 33), "__randomstate_ctor"),
         "memory", "numpy-bit-generator", allow=(f"{_NUMPY_RANDOM}.__randomstate_ctor",)),
    Case("fraction-from-an-exponent", H.fraction_of("1e10000000"), "time", "text-number",
         allow=("fractions.Fraction",), extra=("SL309",)),
    Case("fraction-of-a-decimal", H.fraction_of_decimal("1e999999999"), "time", "text-number",
         allow=("fractions.Fraction",)),
    Case("decimal-of-a-huge-int", H.decimal_of_int(1_000_000), "time", "text-number",
         allow=("decimal.Decimal",), extra=("SL309",)),
]  # fmt: skip
BY_ID = {c.id: c for c in CASES}


def _guarded(allow: tuple[str, ...]) -> str:
    return (
        "result = safeload.loads(open(path, 'rb').read(), require_signature=False, "
        f"allow={list(allow)!r})\n"
    )


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Any]:
    """Every case under its plain loader, the guarded one, and the real side alone."""
    root = tmp_path_factory.mktemp("checks")
    jobs: list[tuple[tuple[str, str], limited.Job]] = []
    for case in CASES:
        folder = root / case.id
        folder.mkdir()
        path = folder / "payload.pkl"
        path.write_bytes(case.data)
        limits = {"mem_mb": case.mem_mb, "seconds": case.seconds}
        jobs.append(((case.id, "plain"), limited.Job(path, limited.PLAIN_THEN_USE, **limits)))
        jobs.append(((case.id, "guarded"), limited.Job(path, limited.GUARDED, **limits)))
        allowed = _guarded(case.allow)
        jobs.append(((case.id, "isolated"), limited.Job(path, allowed, **limits)))
        if case.real:
            forced = limited.Job(path, allowed, forced=True, **limits)
            jobs.append(((case.id, "forced"), forced))
    results = limited.run([job for _, job in jobs])
    return {key: result for (key, _), result in zip(jobs, results, strict=True)}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_payload_harms_its_plain_loader(case: Case, outcomes: dict[Any, Any]) -> None:
    plain = outcomes[(case.id, "plain")]
    proven = {"crash": limited.crashed, "memory": limited.out_of_memory,
              "time": limited.timed_out}[case.proof]  # fmt: skip
    assert proven(plain), plain


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_scan_refuses_it(case: Case) -> None:
    report = safeload.scan_bytes(case.data)
    assert report.verdict is not Verdict.SAFE
    assert {f.rule for f in report.findings} <= {"SL405", "SL406", *case.extra}
    # Where the scope lets the use through, the check is what refuses it.
    isolated = safeload.scan_bytes(case.data, Policy.build(allow=case.allow))
    failed = [f for f in isolated.findings if f.rule == "SL406"]
    assert isolated.verdict is Verdict.DANGEROUS
    assert any(f"check {case.check} failed" in f.message for f in failed), isolated.findings
    assert all(f.rule_name == "failed-check" and f.global_name for f in failed)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_guarded_loader_refuses_it(case: Case, outcomes: dict[Any, Any]) -> None:
    guarded = outcomes[(case.id, "guarded")]
    assert guarded["outcome"] == "raised" and guarded["type"] == "UnsafeFileError", guarded
    isolated = outcomes[(case.id, "isolated")]
    assert limited.refused(isolated, "SL406 failed-check"), isolated
    assert case.check in isolated["message"]


@pytest.mark.parametrize("case", [c for c in CASES if c.real], ids=lambda c: c.id)
def test_real_side_refuses_it_with_the_scan_set_aside(case: Case, outcomes: dict[Any, Any]) -> None:
    forced = outcomes[(case.id, "forced")]
    assert forced["outcome"] == "raised" and forced["type"] == "UnsafeFileError", forced
    assert "whose state its native code would trust is invalid" in forced["message"]


def test_the_real_side_refuses_every_case() -> None:
    # The C unpickler hands a dtype to ndarray.__setstate__ and scalar() with no
    # call back into Python; the loader builds every dtype of the walk alone first
    # (copyreg.__newobj__ hands out no stand-in for numpy.dtype; an int field over
    # an object field crashes only once the load's objects are freed).
    assert all(c.real for c in CASES)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_the_loader_builds_genuine_dtypes_as_numpy_does(protocol: int) -> None:
    extra = [
        np.dtype("i4", metadata={"vlen": str}),  # metadata holding a class: left out
        np.dtype([(f"f{i}", "f8") for i in range(300)]),  # more names than the walk keeps
        np.dtype(
            {
                "names": [f"a{i}" for i in range(70)],
                "formats": ["i2"] * 70,
                "titles": [f"T{i}" for i in range(70)],
            }
        ),
    ]
    for dt in _genuine_dtypes() + extra:
        data = pickle.dumps(dt, protocol=protocol)
        built = real_dtypes(data, analyze(data).pickles[0])
        assert not isinstance(built, str), (dt, built)
        assert any(b == dt and b.flags == dt.flags and b.itemsize == dt.itemsize for b in built), (
            dt,
            built,
        )


def test_the_loader_refuses_forged_dtypes_before_unpickling() -> None:
    for data in (H.overlapping_object_field(), H.newobj_forged_object()):
        problem = real_dtypes(data, analyze(data).pickles[0])
        assert isinstance(problem, str), problem
    dt = H.call("numpy", "dtype", H.call("builtins", "str", sbu("O8")), newfalse(), newtrue())
    assert real_dtypes(H.pickle_of(dt), analyze(H.pickle_of(dt)).pickles[0]) == (
        "a dtype built from a call of builtins.str, not constants"
    )


# -- forms numpy never writes ----------------------------------------------------------------


def _state(*items: bytes) -> list[bytes]:
    return list(items)


_NEVER_WRITTEN = {
    "state-version-2": H.dtype("f8", _state(binint1(2), *H.simple_state("<", 0)[1:])),
    "negative-item-size": H.dtype("S5", H.simple_state("|", 0, -5, 1)),
    "text-item-size-not-4n": H.dtype("U2", H.simple_state("<", 8, 7, 4)),
    "void-alignment-3": H.dtype("V8", H.simple_state("|", 0, 8, 3)),
    "object-byte-order": H.dtype("O8", H.simple_state(">", 0x3F)),
    "fixed-type-item-size": H.dtype("f8", H.simple_state("<", 0, 3000, 1)),
    "float-with-object-flags": H.dtype("f8", H.simple_state("<", 0x3F)),
    "unknown-type-string": H.call("numpy", "dtype", sbu("i4,O"), newfalse(), newtrue()),
    "odd-item-size": H.call("numpy", "dtype", sbu("f3"), newfalse(), newtrue()),
    "dtype-class-called": H.call("numpy.dtypes", "ObjectDType"),
    "fields-on-an-object-dtype": H.dtype(
        "O8",
        [
            binint1(3),
            sbu("|"),
            none(),
            mark() + sbu("a") + tuple_(),
            empty_dict() + mark() + sbu("a") + H.f8() + binint1(0) + tuple2() + setitems(),
            binint(8),
            binint1(1),
            binint1(0x10),
        ],
    ),
    "subarray-larger-than-its-item": H.dtype(
        "V8",
        [
            binint1(3),
            sbu("|"),
            H.f8() + H.shape(100) + tuple2(),
            none(),
            none(),
            binint(8),
            binint1(8),
            binint1(0),
        ],
    ),
    "type-string-from-a-call": H.call(
        "numpy", "dtype", H.call("builtins", "str", sbu("O8")), newfalse(), newtrue()
    ),
    "built-twice": H.dtype("f8", H.simple_state("<", 0))
    + mark()
    + b"".join(H.simple_state("<", 0))
    + tuple_()
    + b"b",
}


_DTYPES_ALLOWED = Policy.build(allow=["numpy.dtype", "numpy.dtypes.ObjectDType"])


@pytest.mark.parametrize("name", sorted(_NEVER_WRITTEN))
def test_dtype_states_numpy_never_writes_fail_the_check(name: str) -> None:
    data = H.pickle_of(_NEVER_WRITTEN[name])
    assert safeload.scan_bytes(data).verdict is not Verdict.SAFE
    report = safeload.scan_bytes(data, _DTYPES_ALLOWED)
    failed = [f.message for f in report.findings if f.rule == "SL406"]
    assert failed and all("numpy-dtype-state" in m for m in failed), report.findings


def test_a_dtype_that_contains_itself_fails_the_check() -> None:
    # The parent dtype, memoized before its state, is its own field's dtype.
    parent = H.call("numpy", "dtype", sbu("V8"), newfalse(), newtrue()) + binput(0)
    fields = empty_dict() + mark() + sbu("a") + binget(0) + binint1(0) + tuple2()
    state = [binint1(3), sbu("|"), none(), mark() + sbu("a") + tuple_(),
             fields + setitems(), binint(8), binint1(1), binint1(0x10)]  # fmt: skip
    data = H.pickle_of(parent + mark() + b"".join(state) + tuple_() + b"b")
    messages = [f.message for f in safeload.scan_bytes(data, _DTYPES_ALLOWED).findings]
    assert any("contains itself" in m for m in messages), messages


def test_protocol_0_fields_are_read() -> None:
    # Protocol 0 writes the fields dict as MARK DICT and SETITEMs: the walk keeps
    # it, so a hidden object field is seen there too.
    data = pickle.dumps(np.dtype([("o", "O")]), protocol=0)
    assert safeload.scan_bytes(data).verdict is Verdict.SAFE
    forged = data.replace(b"I27\n", b"I16\n", 1)
    assert forged != data
    messages = [f.message for f in safeload.scan_bytes(forged).findings if f.rule == "SL406"]
    assert any("declares flags 0x10; numpy computes 0x1b" in m for m in messages), messages


def test_bit_generator_ctor_takes_only_bit_generators() -> None:
    policy = Policy.build(allow=[f"{_NUMPY_RANDOM}.__bit_generator_ctor"])
    for choice in (glob("builtins", "bytearray"), sbu("os"), H.call("builtins", "str")):
        data = H.pickle_of(H.call(_NUMPY_RANDOM, "__bit_generator_ctor", choice))
        messages = [f.message for f in safeload.scan_bytes(data, policy).findings]
        assert any("numpy-bit-generator failed" in m for m in messages), messages
    for choice in (glob("numpy.random._pcg64", "PCG64"), sbu("Philox")):
        data = H.pickle_of(H.call(_NUMPY_RANDOM, "__bit_generator_ctor", choice))
        assert safeload.scan_bytes(data, policy).verdict is Verdict.SAFE


# -- genuine dtypes: the static flags are numpy's ----------------------------------------------


def _genuine_dtypes() -> list[np.dtype[Any]]:
    found: list[np.dtype[Any]] = [np.dtype(c) for c in np.typecodes["All"] if c not in "SUVMm"]
    found += [np.dtype(s) for s in ("S0", "S5", "U0", "U7", "V0", "V7", ">i4", ">f8", ">c16",
                                    ">U3", "M8", "M8[ns]", "m8[D]", "M8[25s]")]  # fmt: skip
    found += [
        np.dtype([("a", "i4"), ("b", "O"), ("c", "U3")]),
        np.dtype([("a", "u1"), ("b", "f8")], align=True),
        np.dtype([("a", "u1"), ("o", "O")], align=True),
        np.dtype([("n", [("x", "f4"), ("y", "O")]), ("z", "c16", (2, 3))]),
        np.dtype(("f4", (2, 2))),
        np.dtype(("O", (3,))),
        np.dtype(("U2", (2,))),
        np.dtype({"names": ["a", "b"], "formats": ["i2", "f8"], "titles": ["T", None]}),
        np.dtype({"names": ["a", "b"], "formats": ["i4", "u1"], "offsets": [0, 0]}),
        np.dtype({"names": ["a"], "formats": ["i4"], "offsets": [8], "itemsize": 16}),
        np.dtype((np.void, 10)),
        np.dtype((np.record, [("x", "i4"), ("y", "O")])),
        np.dtype("i4", metadata={"unit": "m"}),
        np.dtype([(f"f{i}", "f8") for i in range(80)]),
    ]
    return found


def _layout_of(data: bytes) -> Layout | str:
    analysis = analyze(data)
    walk = analysis.pickles[0]
    values = Values(data, walk)
    # The dtype pickled is the first built: its fields' dtypes come inside its state.
    top = min(
        (c for g in walk.globals for c in g.calls if (g.module, g.name) == ("numpy", "dtype")),
        key=lambda c: c.offset,
    )
    assert type(top) is Res
    return symbolic_layout(values, top, {})


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_static_layout_is_numpys_for_genuine_dtypes(protocol: int) -> None:
    for dt in _genuine_dtypes():
        data = pickle.dumps(dt, protocol=protocol)
        report = safeload.scan_bytes(data)
        assert report.verdict is Verdict.SAFE, (dt, protocol, report.findings)
        layout = _layout_of(data)
        assert isinstance(layout, Layout), (dt, layout)
        assert layout.flags_problem(int(dt.flags)) is None, (dt, layout)
        assert (layout.itemsize, layout.objects) == (dt.itemsize, dt.hasobject), (dt, layout)
        assert isinstance(real_layout(dt), Layout), (dt, real_layout(dt))


def test_real_layout_refuses_a_forged_dtype() -> None:
    forged = np.dtype("O8", False, True)
    forged.__setstate__((3, "|", None, None, None, -1, -1, 0))
    assert real_layout(forged) == ("its state declares flags 0x0; numpy computes 0x3f for its type")
    assert isinstance(real_layout(np.dtype("O8", False, True)), Layout)


def test_structured_arrays_of_every_kind_load_as_they_pickle() -> None:
    values = [
        np.zeros(3, dtype=dt) for dt in _genuine_dtypes() if dt.itemsize and dt.kind == "V"
    ] + [np.array([1, "a", None], dtype=object), np.arange(4.0).view("M8[ns]")]
    for value in values:
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", safeload.UnsignedLoadWarning)
                loaded = safeload.loads(pickle.dumps(value, protocol), require_signature=False)
            assert loaded.dtype == value.dtype and repr(loaded) == repr(value)
        if value.dtype.type is np.record:
            continue  # joblib's wrapper of a record dtype: the walker cannot size it (SL301)
        buf = io.BytesIO()
        joblib.dump(value, buf)
        assert safeload.scan_bytes(buf.getvalue()).verdict is Verdict.SAFE, value.dtype


# -- scikit-learn trees: in the pickle, or only at load ------------------------------------------


def _bad_tree() -> Any:
    from sklearn.tree import DecisionTreeClassifier

    x = np.random.default_rng(0).random((60, 4))
    model = DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, (x[:, 0] > 0.5))
    state = model.tree_.__getstate__()
    nodes = state["nodes"].copy()
    nodes["feature"][0] = 10**9
    state["nodes"] = nodes
    model.tree_.__setstate__(state)
    return model


def test_tree_nodes_in_the_pickle_are_checked_by_the_scan() -> None:
    report = safeload.scan_bytes(pickle.dumps(_bad_tree()))
    (failed,) = [f for f in report.findings if f.rule == "SL406"]
    assert "sklearn-tree" in failed.message and "splits on feature 1000000000" in failed.message


def test_tree_nodes_outside_the_pickle_are_checked_by_the_loader() -> None:
    # joblib keeps arrays after the pickle: the scan cannot read them, the load can.
    buf = io.BytesIO()
    joblib.dump(_bad_tree(), buf)
    assert safeload.scan_bytes(buf.getvalue()).verdict is Verdict.SAFE
    with pytest.raises(safeload.UnsafeFileError, match="splits on feature 1000000000"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", safeload.UnsignedLoadWarning)
            safeload.loads(buf.getvalue(), require_signature=False)


# -- the registry and the policy ----------------------------------------------------------------


def test_every_check_is_named_documented_and_has_a_side() -> None:
    assert len({c.name for c in CHECKS}) == len(CHECKS)
    for check in CHECKS:
        assert check_named(check.name) is check
        assert check.doc and check.names and check.what
        assert check.symbolic is not None or check.objects, check.name
        assert set(check.arguments) <= check.names and set(check.verify) <= check.names
        assert APPLIES_TO[check.name] == {
            f"{m}.{q}" if "." not in q else f"{m}:{q}" for m, q in check.names
        }


def test_a_global_has_at_most_one_check() -> None:
    # A pack entry names one check: no global may need two.
    for check in CHECKS:
        for module, qualname in check.names:
            assert checks_for(module, qualname) == (check,)


def _pack(entry: str) -> bytes:
    return (
        'schema = 2\n[pack]\nname = "p"\ndescription = ""\n'
        f'allow = [{{ {entry}, audit = "reviewed" }}]\n'
    ).encode()


def test_policy_validates_check_names_when_packs_load() -> None:
    pack = parse_pack(
        _pack(
            'name = "numpy.dtype", use = ["called", "state"], calls = ["*"], '
            'check = "numpy-dtype-state"'
        ),
        "p.toml",
    )
    assert pack.scopes[("numpy", "dtype")].check == "numpy-dtype-state"
    with pytest.raises(PolicyError, match="unknown check 'no-such-check'"):
        parse_pack(_pack('name = "numpy.dtype", check = "no-such-check"'), "p.toml")
    with pytest.raises(PolicyError, match=r"does not apply to numpy\.ndarray"):
        parse_pack(_pack('name = "numpy.ndarray", check = "numpy-dtype-state"'), "p.toml")


def test_scanning_never_imports_numpy() -> None:
    data = pickle.dumps([np.zeros(2, dtype=[("a", "O")]), _bad_tree(), np.random.default_rng(0)])
    code = (
        "import sys\nimport safeload\n"
        "report = safeload.scan_bytes(sys.stdin.buffer.read())\n"
        "assert report.findings, report\n"
        "assert not {m.split('.')[0] for m in sys.modules} & {'numpy', 'sklearn', 'torch'}\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], input=data, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]


def test_checks_skip_what_the_scope_already_refuses() -> None:
    # One finding per reason: a global outside its entry's scope is not also checked.
    case = BY_ID["fraction-from-an-exponent"]
    rules = {f.rule for f in safeload.scan_bytes(case.data).findings}
    isolated = {
        f.rule for f in safeload.scan_bytes(case.data, Policy.build(allow=case.allow)).findings
    }
    assert "SL406" not in rules or "SL405" not in rules
    assert "SL406" in isolated
