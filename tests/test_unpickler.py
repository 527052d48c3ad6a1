"""The restricted unpickler (`safeload.load._unpickler`).

Benign objects, pickled for real, load to objects equal to `pickle.loads`;
hostile streams, built byte by byte, are refused. Every hostile load runs in
a subprocess whose working directory is a fresh `tmp_path`, with a payload
that only creates a `canary` file there: CPython's own `pickle.loads` is run
on the same bytes first and must create it (the payload is real), then the
restricted unpickler must refuse the stream and the canary must not appear.
"""

from __future__ import annotations

import collections
import copyreg
import dataclasses
import io
import json
import mmap
import pickle
import subprocess
import sys
import warnings
import zipfile
import zoneinfo
from pathlib import Path
from typing import Any

import pytest
import test_hostile
from picklebuild import (
    append,
    appends,
    binget,
    binint1,
    binpersid,
    binput,
    empty_list,
    empty_tuple,
    ext1,
    glob,
    inst,
    mark,
    newtrue,
    none,
    obj,
    persid,
    pop,
    proto,
    reduce,
    sbu,
    sglobal,
    short_binbytes,
    stack_global,
    stop,
    string,
    tuple1,
    tuple2,
    tuple_,
)

import safeload
from safeload import Policy, UnsafeFileError, UnsupportedFormatError, Verdict
from safeload._machine.walker import analyze
from safeload.load._unpickler import (
    ImportGuard,
    ImportPlan,
    RestrictedUnpickler,
    check_torch_storage_pid,
    restricted_loads,
)
from safeload.scan._judge import findings_for
from tools import corpus

ROOT = Path(__file__).resolve().parent.parent
POLICY = Policy.default()
CMD = "touch canary"
SRC = "open('canary', 'w').close()"
EXT_CODE = 240


# -- benign objects load as pickle.loads loads them -----------------------------------


def _same(a: Any, b: Any) -> bool:
    """Equal as data: the same pickle at protocol 4 (NaN-safe, array-safe)."""
    return pickle.dumps(a, protocol=4) == pickle.dumps(b, protocol=4)


def _load_problems(objects: list[tuple[str, Any]], group: str) -> tuple[list[str], int]:
    problems = []
    loaded = 0
    for label, obj_ in objects:
        for p, data in corpus.pickles(obj_):
            where = f"{group}/{label} protocol {p}"
            report = safeload.scan_bytes(data)
            expected = pickle.loads(data)
            try:
                got = restricted_loads(data, location=where)
            except UnsafeFileError as exc:
                # Refused: only ever when the scan is not safe, for a reason it reports.
                if report.safe or exc.rule not in {f.rule for f in report.findings}:
                    problems.append(f"{where}: refused ({exc}) but scanned {report.verdict}")
                continue
            loaded += 1
            if not report.safe:
                problems.append(f"{where}: loaded although the scan says {report.verdict}")
            if not _same(got, expected):
                problems.append(f"{where}: differs from pickle.loads")
    return problems, loaded


@pytest.mark.parametrize("group", list(corpus.BUILDERS))
def test_benign_group_loads_like_pickle(group: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        objects = corpus.BUILDERS[group]()
        problems, loaded = _load_problems(objects, group)
    assert not problems, "\n".join(problems)
    assert loaded >= len(objects) * 5


def test_fitted_estimators_load_like_pickle() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = [(name, est) for name, est, err in corpus.sklearn_estimators() if err is None]
        problems, loaded = _load_problems(fitted, "sklearn")
    assert not problems, "\n".join(problems)
    assert loaded == 6 * len(fitted) > 1000


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_containers_at_every_protocol(protocol: int) -> None:
    value = {
        "ints": [0, 1, -1, 255, 65535, 2**31, -(2**63), 2**100],
        "floats": (0.5, -0.0, 1e308),
        "text": ["", "ascii", "ü∂\u2028", "x" * 300],
        "bytes": [b"", b"\x00\xff" * 200, bytearray(b"mutable")],
        "sets": [set(), {1, 2, 3}, frozenset({"a"})],
        "nested": [[[]], {"k": ({"v": (1,)},)}],
        "flags": [None, True, False],
    }
    shared: list[int] = [1, 2]
    value["shared"] = [shared, shared]
    data = pickle.dumps(value, protocol=protocol)
    got = restricted_loads(data)
    assert got == value
    assert got["shared"][0] is got["shared"][1]


def test_numpy_pandas_sklearn_spot_checks() -> None:
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    linear = pytest.importorskip("sklearn.linear_model")
    model = linear.LogisticRegression().fit(np.arange(20).reshape(10, 2), [0, 1] * 5)
    frame = pd.DataFrame(
        {
            "x": np.arange(4.0),
            "when": pd.date_range("2024-01-01", periods=4, tz=zoneinfo.ZoneInfo("Europe/Paris")),
        }
    )
    for p in range(pickle.HIGHEST_PROTOCOL + 1):
        array = restricted_loads(pickle.dumps(np.arange(12.0).reshape(3, 4), protocol=p))
        np.testing.assert_array_equal(array, np.arange(12.0).reshape(3, 4))
        pd.testing.assert_frame_equal(restricted_loads(pickle.dumps(frame, protocol=p)), frame)
        again = restricted_loads(pickle.dumps(model, protocol=p))
        np.testing.assert_array_equal(again.coef_, model.coef_)
        assert again.predict([[3, 4]]) == model.predict([[3, 4]])


def test_bound_method_loads_through_a_folded_getattr() -> None:
    method = zoneinfo.ZoneInfo._unpickle
    for p in range(pickle.HIGHEST_PROTOCOL + 1):
        data = pickle.dumps(method, protocol=p)
        assert b"getattr" in data
        assert restricted_loads(data) == pickle.loads(data) == method


def test_torch_checkpoint_loads_with_the_storage_id_check() -> None:
    torch = pytest.importorskip("torch")
    state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2], dtype=torch.int64)}
    buf = io.BytesIO()
    torch.save(state, buf)
    archive = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    (name,) = [n for n in archive.namelist() if n.endswith("/data.pkl")]
    prefix = name.rsplit("/", 1)[0]
    data = archive.read(name)
    seen: list[object] = []

    def persistent_load(pid: Any) -> Any:
        seen.append(pid)
        _tag, storage_type, key, _location, _numel = pid
        raw = bytearray(archive.read(f"{prefix}/data/{key}"))
        untyped = torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.storage.TypedStorage(
                wrap_storage=untyped, dtype=storage_type.dtype, _internal=True
            )

    (walk,) = analyze(data).pickles
    unpickler = RestrictedUnpickler(
        data,
        ImportPlan.from_walk(walk, data),
        POLICY,
        persistent_load=persistent_load,
        check_pid=check_torch_storage_pid,
        encoding="utf-8",
    )
    got = unpickler.load()
    assert len(seen) == 2
    assert set(got) == set(state)
    for key, tensor in state.items():
        assert torch.equal(got[key], tensor)


# -- the protocol of each import is the one the walk saw at that opcode ------------------


def test_protocol_switch_down_maps_the_python2_name() -> None:
    # PROTO 4, then PROTO 2 right before a Python 2 name: mapped to builtins.set.
    data = proto(4) + none() + pop() + proto(2) + glob("__builtin__", "set") + stop()
    assert pickle.loads(data) is set
    assert restricted_loads(data) is set


def test_protocol_switch_up_does_not_map() -> None:
    # PROTO 2, then PROTO 3: `__builtin__` is no longer mapped, and is unknown.
    data = proto(2) + proto(3) + glob("__builtin__", "set") + stop()
    with pytest.raises(ModuleNotFoundError):
        pickle.loads(data)
    with pytest.raises(UnsafeFileError) as info:
        restricted_loads(data)
    assert (info.value.rule, info.value.global_name) == ("SL401", "__builtin__.set")
    scanned = [(f.rule, f.global_name) for f in safeload.scan_bytes(data).findings]
    assert scanned == [("SL401", "__builtin__.set")]


def test_one_protocol_per_pickle_would_misjudge() -> None:
    """The naive design (one protocol for the whole pickle, e.g. the highest the
    walk saw) maps a name the scanner did not judge: the guard refuses it."""
    data = proto(4) + none() + pop() + proto(2) + glob("__builtin__", "set") + stop()
    (walk,) = analyze(data).pickles
    plan = ImportPlan.from_walk(walk, data)
    naive = dataclasses.replace(
        plan, calls=tuple(dataclasses.replace(c, proto=walk.protocol) for c in plan.calls)
    )
    with pytest.raises(UnsafeFileError) as info:
        RestrictedUnpickler(data, naive, POLICY).load()
    assert info.value.rule == "SL209"
    assert RestrictedUnpickler(data, plan, POLICY).load() is set


def test_dotted_names_resolve_as_cpython_does_at_each_protocol() -> None:
    method = zoneinfo.ZoneInfo._unpickle
    below4 = proto(2) + glob("zoneinfo", "ZoneInfo._unpickle") + stop()
    with pytest.raises(AttributeError):
        pickle.loads(below4)
    with pytest.raises(AttributeError):  # allowed, but one attribute named with a dot
        restricted_loads(below4)
    for data in (
        proto(4) + sglobal("zoneinfo", "ZoneInfo._unpickle") + stop(),
        proto(2) + proto(4) + glob("zoneinfo", "ZoneInfo._unpickle") + stop(),
    ):
        assert pickle.loads(data) == method
        assert restricted_loads(data) == method


# -- refusals, in process (payloads that cannot run) ---------------------------------------


def test_unknown_global_error_names_the_file_global_rule_and_allow_fix() -> None:
    data = proto(2) + glob("mylib.models", "Thing") + empty_tuple() + reduce() + stop()
    with pytest.raises(UnsafeFileError) as info:
        restricted_loads(data, location="models/model.pkl")
    exc = info.value
    text = str(exc)
    assert "models/model.pkl" in text and "mylib.models.Thing" in text and "SL401" in text
    assert 'allow=["mylib.models.Thing"]' in text
    assert exc.path == "models/model.pkl"
    (finding,) = exc.findings
    assert (finding.rule, finding.global_name, finding.offset) == ("SL401", "mylib.models.Thing", 2)
    assert finding.verdict is Verdict.UNKNOWN
    assert finding.usage == ("called",)


def test_dangerous_global_error_never_suggests_allowing_it() -> None:
    data = proto(4) + sbu("pathlib") + sbu("os.system") + stack_global() + stop()
    with pytest.raises(UnsafeFileError) as info:
        restricted_loads(data, location="evil.pkl")
    exc = info.value
    assert (exc.rule, exc.global_name) == ("SL101", "pathlib:os.system")
    assert "evil.pkl" in str(exc) and "SL101" in str(exc) and "Fix:" in str(exc)
    assert "allow" not in str(exc).lower()
    assert exc.findings[0].fix == POLICY.rule("SL101").fix


def test_folded_getattr_to_an_escape_attribute_is_refused() -> None:
    # getattr(zoneinfo.ZoneInfo, '__dict__'): builtins.getattr is handed out
    # restricted; the dotted name it reaches is what is judged. (ZoneInfo's
    # allow entry covers reading an attribute of it, as genuine pickles do.)
    data = (
        proto(2)
        + glob("builtins", "getattr")
        + glob("zoneinfo", "ZoneInfo")
        + sbu("__dict__")
        + tuple2()
        + reduce()
        + stop()
    )
    with pytest.raises(UnsafeFileError) as info:
        restricted_loads(data)
    assert (info.value.rule, info.value.global_name) == ("SL104", "zoneinfo:ZoneInfo.__dict__")
    scanned = {(f.rule, f.global_name) for f in safeload.scan_bytes(data).findings}
    assert scanned == {("SL104", "zoneinfo:ZoneInfo.__dict__")}


def test_restricted_getattr_only_reads_imported_globals() -> None:
    data = proto(2) + glob("builtins", "getattr") + glob("collections", "OrderedDict")
    data += sbu("fromkeys") + tuple2() + reduce() + stop()
    (walk,) = analyze(data).pickles
    guard = ImportGuard(ImportPlan.from_walk(walk, data), POLICY)
    folded = guard.find_class("builtins", "getattr")
    assert folded is not getattr
    with pytest.raises(UnsafeFileError) as info:
        folded(object(), "fromkeys")  # not an object the guard imported
    assert info.value.rule == "SL209"


def test_a_plan_binds_the_load_to_the_bytes_it_was_made_from() -> None:
    scanned = proto(2) + glob("collections", "OrderedDict") + empty_tuple() + reduce() + stop()
    other = proto(2) + glob("collections", "Counter") + empty_tuple() + reduce() + stop()
    (walk,) = analyze(scanned).pickles
    with pytest.raises(UnsafeFileError) as info:
        RestrictedUnpickler(other, ImportPlan.from_walk(walk, scanned), POLICY).load()
    assert info.value.rule == "SL209"


def test_joblib_walks_are_refused_by_the_plain_unpickler() -> None:
    np = pytest.importorskip("numpy")
    data = corpus.joblib_dump_bytes({"a": np.arange(100)})
    (walk,) = analyze(data).pickles
    with pytest.raises(UnsafeFileError) as info:
        RestrictedUnpickler(data, ImportPlan.from_walk(walk, data), POLICY).load()
    assert info.value.rule == "SL209"
    assert "joblib" in str(info.value)


def test_walk_events_refuse_before_anything_runs() -> None:
    # A computed callable (SL205) is refused before the first opcode: not even the
    # allowed global before it is imported.
    data = proto(2) + glob("functools", "partial") + glob("builtins", "int")
    data += tuple1() + reduce() + empty_tuple() + reduce() + stop()
    (walk,) = analyze(data).pickles
    unpickler = RestrictedUnpickler(data, ImportPlan.from_walk(walk, data), POLICY)
    with pytest.raises(UnsafeFileError) as info:
        unpickler.load()
    assert info.value.rule == "SL205"
    assert unpickler.guard.calls_made == 0


def test_persistent_id_without_persistent_load_is_refused_before_anything_runs() -> None:
    data = proto(2) + glob("collections", "OrderedDict") + empty_tuple() + reduce()
    data += persid("0") + tuple2() + stop()
    (walk,) = analyze(data).pickles
    unpickler = RestrictedUnpickler(data, ImportPlan.from_walk(walk, data), POLICY)
    with pytest.raises(UnsafeFileError) as info:
        unpickler.load()
    assert (info.value.rule, info.value.findings[0].offset) == ("SL402", walk.persids[0][0])
    assert unpickler.guard.calls_made == 0


def test_trailing_bytes_and_second_pickles_are_refused_by_restricted_loads() -> None:
    one = proto(2) + none() + stop()
    assert restricted_loads(one + b"\x00" * 16) is None
    for extra in (b"junk", one):
        with pytest.raises(UnsafeFileError):
            restricted_loads(one + extra)


def test_the_unpickler_reads_only_the_walked_pickle() -> None:
    first = proto(2) + none() + stop()
    second = proto(2) + glob("collections", "OrderedDict") + stop()
    data = first + second
    walks = analyze(data).pickles
    assert [w.start for w in walks] == [0, len(first)]
    assert RestrictedUnpickler(data, ImportPlan.from_walk(walks[0], data), POLICY).load() is None
    got = RestrictedUnpickler(data, ImportPlan.from_walk(walks[1], data), POLICY).load()
    assert got is __import__("collections").OrderedDict


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("holder", ["bytes", "bytearray", "memoryview", "mmap"])
def test_any_buffer_is_read_in_place_up_to_the_pickle_end(
    protocol: int, holder: str, tmp_path: Path
) -> None:
    # Long lines and strings (protocol 0 writes this one as a 300 KB text line) cross
    # the 128 KiB slices a non-bytes buffer is handed out in.
    value = {"text": "x" * 300_000, "numbers": list(range(3000)), "pair": (1.5, None)}
    body = pickle.dumps(value, protocol=protocol)
    data = b"JUNK" + body + b"\x80\x02cos\nsystem\n."  # a second pickle that must stay unread
    (walk,) = analyze(data, 4, 4 + len(body)).pickles
    path = tmp_path / "held.bin"
    path.write_bytes(data)
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        buffer: Any = {
            "bytes": data,
            "bytearray": bytearray(data),
            "memoryview": memoryview(data),
            "mmap": mm,
        }[holder]
        unpickler = RestrictedUnpickler(buffer, ImportPlan.from_walk(walk, data), POLICY)
        assert unpickler.load() == value
        del unpickler, buffer  # the map closes: the unpickler holds no export of it


def test_one_load_per_unpickler_and_persistent_load_needs_a_check() -> None:
    data = proto(2) + none() + stop()
    (walk,) = analyze(data).pickles
    unpickler = RestrictedUnpickler(data, ImportPlan.from_walk(walk, data), POLICY)
    assert unpickler.load() is None
    with pytest.raises(RuntimeError):
        unpickler.load()
    with pytest.raises(TypeError, match="check_pid"):
        RestrictedUnpickler(data, ImportPlan.from_walk(walk, data), POLICY, persistent_load=print)


def test_it_is_the_c_unpickler() -> None:
    assert RestrictedUnpickler.__mro__[1].__module__ == "_pickle"


# -- persistent ids: the storage-id check agrees with the scanner's -------------------------

_ST = glob("torch", "FloatStorage")
_S, _KEY, _LOC, _N = sbu("storage"), sbu("0"), sbu("cpu"), binint1(3)
_VIEW = mark() + sbu("v") + binint1(0) + binint1(3) + tuple_()

PIDS: dict[str, tuple[bytes, bool]] = {
    "zip-format": (_S + _ST + _KEY + _LOC + _N, True),
    "legacy-no-view": (_S + _ST + _KEY + _LOC + _N + none(), True),
    "legacy-view": (_S + _ST + _KEY + _LOC + _N + _VIEW, True),
    # allowlisted, but its allow entry does not cover naming it in a persistent id
    "allowed-global-not-a-storage": (
        _S + glob("collections", "OrderedDict") + _KEY + _LOC + _N,
        False,
    ),
    "tag-module": (sbu("module") + _ST + _KEY + _LOC + _N, False),
    "tag-bytes": (short_binbytes(b"storage") + _ST + _KEY + _LOC + _N, False),
    "key-int": (_S + _ST + binint1(0) + _LOC + _N, False),
    "numel-bool": (_S + _ST + _KEY + _LOC + newtrue(), False),
    "numel-str": (_S + _ST + _KEY + _LOC + sbu("3"), False),
    "view-wrong-types": (
        _S + _ST + _KEY + _LOC + _N + mark() + sbu("v") + sbu("0") + _N + tuple_(),
        False,
    ),
    "view-four-items": (
        _S + _ST + _KEY + _LOC + _N + mark() + sbu("v") + _N + _N + _N + tuple_(),
        False,
    ),
    "four-items": (_S + _ST + _KEY + _LOC, False),
    "storage-type-computed": (
        _S + glob("collections", "OrderedDict") + empty_tuple() + reduce() + _KEY + _LOC + _N,
        False,
    ),
    "storage-type-unknown": (_S + glob("mylib", "Storage") + _KEY + _LOC + _N, False),
}


def _pid_stream(items: bytes) -> bytes:
    return proto(2) + mark() + items + tuple_() + binpersid() + stop()


@pytest.mark.parametrize("name", sorted(PIDS))
def test_storage_id_check_agrees_with_the_scanner(name: str) -> None:
    pytest.importorskip("torch")
    items, accepted = PIDS[name]
    data = _pid_stream(items)
    analysis = analyze(data)
    found = findings_for(analysis, data, POLICY, "data.pkl", torch_storage_pids=True)
    scanner_ok = not any(f.rule == "SL402" for f in found)
    (walk,) = analysis.pickles
    unpickler = RestrictedUnpickler(
        data,
        ImportPlan.from_walk(walk, data),
        POLICY,
        persistent_load=lambda pid: ("loaded", pid),
        check_pid=check_torch_storage_pid,
    )
    try:
        got = unpickler.load()
        loader_ok = True
        assert got[0] == "loaded"
    except UnsafeFileError as exc:
        loader_ok = False
        assert exc.rule in {f.rule for f in found}
    assert scanner_ok is loader_ok is accepted


# -- hostile loads, for real, in a subprocess --------------------------------------------------

_RUNNER = r"""
import copyreg, json, pickle, sys
sys.path.insert(0, sys.argv[1])
mode, path, code = sys.argv[2], sys.argv[3], int(sys.argv[4])
data = open(path, "rb").read()
if "ext" in mode:
    # The process registered an extension code; a legitimate earlier load
    # resolved it, so the C unpickler now takes it from its cache without
    # calling find_class.
    copyreg.add_extension("os", "system", code)
    pickle.loads(bytes([0x80, 2, 0x82, code]) + b".")
    assert code in copyreg._extension_cache
result = {"outcome": "loaded"}
if mode.startswith("pickle"):
    try:
        pickle.loads(data)
    except Exception as exc:
        result = {"outcome": type(exc).__name__}
else:
    from safeload.errors import UnsafeFileError
    from safeload.policy import Policy
    from safeload._machine.walker import analyze
    from safeload.load._unpickler import ImportPlan, RestrictedUnpickler, check_torch_storage_pid

    def persistent_load(pid):
        open("canary", "w").close()
        return pid

    kw = {}
    if "persid" in mode:
        kw = {"persistent_load": persistent_load, "check_pid": check_torch_storage_pid}
    policy = Policy.default()
    try:
        # Every pickle of the stream, as a loader that reads them all would.
        for walk in analyze(data).pickles:
            RestrictedUnpickler(data, ImportPlan.from_walk(walk, data), policy, **kw).load()
    except UnsafeFileError as exc:
        result = {"outcome": "refused", "rule": exc.rule, "global": exc.global_name}
    except Exception as exc:
        result = {"outcome": type(exc).__name__, "message": str(exc)}
print(json.dumps(result))
"""


def run(data: bytes, mode: str, cwd: Path) -> dict[str, Any]:
    """Load `data` in a fresh interpreter whose working directory is `cwd`."""
    sample = cwd / "sample.pkl"
    sample.write_bytes(data)
    done = subprocess.run(
        [sys.executable, "-I", "-c", _RUNNER, str(ROOT), mode, str(sample), str(EXT_CODE)],
        cwd=cwd,
        timeout=120,
        check=False,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


HOSTILE: dict[str, tuple[bytes, str, str | None]] = {
    "reduce-os-system": (
        proto(2) + glob("os", "system") + sbu(CMD) + tuple1() + reduce() + stop(),
        "SL101",
        "os.system",
    ),
    "inst-eval-python2-name": (
        mark() + string(SRC) + inst("__builtin__", "eval") + stop(),
        "SL102",
        "builtins.eval",
    ),
    "obj-subprocess": (
        mark()
        + glob("subprocess", "check_call")
        + mark()
        + string("sh")
        + string("-c")
        + string(CMD)
        + tuple_()
        + obj()
        + stop(),
        "SL101",
        "subprocess.check_call",
    ),
    "stack-global-os-system": (
        proto(4) + sglobal("os", "system") + sbu(CMD) + tuple1() + reduce() + stop(),
        "SL101",
        "os.system",
    ),
    "dotted-relay-pathlib": (
        proto(4) + sglobal("pathlib", "os.system") + sbu(CMD) + tuple1() + reduce() + stop(),
        "SL101",
        "pathlib:os.system",
    ),
    "dotted-relay-through-a-denied-module": (
        # shutil is denied as a module (SL107); the exact name says more.
        proto(4) + sglobal("shutil", "os.system") + sbu(CMD) + tuple1() + reduce() + stop(),
        "SL101",
        "shutil:os.system",
    ),
    "ext-code-cached": (
        proto(2) + ext1(EXT_CODE) + sbu(CMD) + tuple1() + reduce() + stop(),
        "SL202",
        None,
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_payload_runs_under_pickle_loads(name: str, tmp_path: Path) -> None:
    data, _rule, _global = HOSTILE[name]
    run(data, "pickle-ext" if "ext" in name else "pickle", tmp_path)
    assert (tmp_path / "canary").exists(), f"{name}: the payload is not real"


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_is_refused_and_never_runs(name: str, tmp_path: Path) -> None:
    data, rule, global_name = HOSTILE[name]
    result = run(data, "restricted-ext" if "ext" in name else "restricted", tmp_path)
    assert not (tmp_path / "canary").exists(), f"{name}: the payload ran"
    assert result == {"outcome": "refused", "rule": rule, "global": global_name}


CANARY_CASES = [case for case in test_hostile.CASES if case.canary is not None]


@pytest.mark.parametrize("case", CANARY_CASES, ids=[case.id for case in CANARY_CASES])
def test_hostile_corpus_never_runs(case: test_hostile.Case, tmp_path: Path) -> None:
    """Every hostile sample proven to run under CPython (tests/test_hostile.py) is refused,
    for a reason the scanner reports too."""
    result = run(case.data, "restricted", tmp_path)
    assert not (tmp_path / "canary").exists(), f"{case.id}: the payload ran"
    assert result["outcome"] == "refused", result
    scanned = {f.rule for f in safeload.scan_bytes(case.data).findings}
    assert result["rule"] in scanned, (result, scanned)


def test_persistent_id_is_refused_without_persistent_load(tmp_path: Path) -> None:
    data = proto(2) + persid("0") + stop()
    result = run(data, "restricted", tmp_path)
    assert result == {"outcome": "refused", "rule": "SL402", "global": None}


def test_hostile_persistent_id_never_reaches_persistent_load(tmp_path: Path) -> None:
    # ('module', <allowed global>, ...) as torch's legacy format pickles modules
    # (the global one whose allow entry covers persistent ids).
    data = _pid_stream(sbu("module") + glob("torch", "FloatStorage") + _KEY + _LOC + _N)
    result = run(data, "restricted-persid", tmp_path)
    assert not (tmp_path / "canary").exists(), "persistent_load ran"
    assert result == {"outcome": "refused", "rule": "SL402", "global": None}


def test_storage_id_reaches_persistent_load(tmp_path: Path) -> None:
    """The control for the test above: the canary does show a call of persistent_load."""
    pytest.importorskip("torch")
    result = run(_pid_stream(PIDS["zip-format"][0]), "restricted-persid", tmp_path)
    assert result == {"outcome": "loaded"}
    assert (tmp_path / "canary").exists()


def test_extension_registry_is_left_alone() -> None:
    assert EXT_CODE not in copyreg._inverted_registry  # the subprocesses registered it, not us


# -- checked globals kept as data (issue 15: pickle-checkedconstructor-in-result) ----------


def _checked_globals() -> list[Any]:
    """Globals `find_class` hands out as checking stand-ins wherever the pickle puts them."""
    import numpy as np
    from numpy.random import _pickle as random_pickle
    from sklearn.tree._tree import Tree

    return [
        np._core.numeric._frombuffer,
        np._core.multiarray.scalar,
        random_pickle.__bit_generator_ctor,
        Tree,
    ]


class _Holder:
    """An object whose state holds a global (BUILD sets its __dict__)."""

    def __eq__(self, other: object) -> bool:
        return type(other) is _Holder and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_checked_global_kept_as_data_loads_as_the_global(protocol: int) -> None:
    """A real function or class kept as data (a dict value, a tuple, a set, a list, a
    dict key) comes back as itself, as pickle.loads returns it, not as the stand-in."""
    for g in _checked_globals():
        shared: tuple[Any, ...] = ("t", g)
        value = {
            "g": g,
            "nested": ((((g,),),),),
            "list": [g, shared, shared],
            "set": {g},
            "frozen": frozenset({g}),
            "default": collections.defaultdict(list, {"g": g}),
            g: "as a key",
        }
        data = pickle.dumps(value, protocol=protocol)
        policy = Policy.build(allow=[f"{g.__module__}.{g.__qualname__}"])
        got = restricted_loads(data, policy)
        assert got == pickle.loads(data)
        assert got["g"] is g and got["nested"][0][0][0][0] is g and got["list"][0] is g
        assert got["list"][1] is got["list"][2] and got["list"][1][1] is g  # one tuple, shared
        assert next(iter(got["set"])) is g and next(iter(got["frozen"])) is g
        assert got["default"]["g"] is g and list(got)[-1] is g


def test_a_checked_global_in_a_cycle_through_a_tuple() -> None:
    from numpy._core.multiarray import scalar

    items: list[Any] = []
    cell = (items, scalar)
    items.append(cell)
    got = restricted_loads(
        pickle.dumps(cell, protocol=4), Policy.build(allow=["numpy._core.multiarray.scalar"])
    )
    assert got[1] is scalar and got[0][0] is got


def test_a_checked_global_in_an_objects_state_through_the_guarded_loader() -> None:
    """safeload.loads (scan, then load) of a real object whose attribute is such a global;
    the fuzz input's shape: the tuple of a call whose REDUCE was cut, the global kept."""
    from numpy._core.numeric import _frombuffer

    holder = _Holder()
    holder.fn = _frombuffer  # type: ignore[attr-defined]
    data = pickle.dumps({"h": holder, "t": (1, (_frombuffer,))}, protocol=5)
    allow = ["numpy._core.numeric._frombuffer", f"{__name__}._Holder"]
    got = safeload.loads(data, require_signature=False, allow=allow)
    assert got["h"].fn is _frombuffer and got["t"][1][0] is _frombuffer


def test_a_checked_global_held_where_it_cannot_be_swapped_is_refused() -> None:
    """functools.partial keeps its function where no attribute or item reaches it."""
    import functools

    from numpy._core.multiarray import scalar

    data = pickle.dumps(functools.partial(scalar), protocol=4)
    policy = Policy.build(allow=["numpy._core.multiarray.scalar", "functools.partial"])
    with pytest.raises(UnsupportedFormatError, match="partial"):
        restricted_loads(data, policy)


def test_a_checked_global_kept_as_data_is_still_checked_when_called() -> None:
    """The same global stored and called: the call goes through the stand-in (its check
    refuses a bit generator constructor given `bytearray`), the stored one comes back as
    the global only once the load is over."""
    ctor = ("numpy.random._pickle", "__bit_generator_ctor")
    body = (
        proto(4) + empty_list() + mark() + glob(*ctor) + binput(0)
        + binget(0) + mark() + glob("builtins", "bytearray") + tuple_() + reduce()
        + appends() + stop()
    )  # fmt: skip
    pickle.loads(body)  # the plain loader calls it (numpy refuses it its own way, later)
    policy = Policy.build(allow=[".".join(ctor), "builtins.bytearray"])
    with pytest.raises(UnsafeFileError, match="bit generator"):
        restricted_loads(body, policy)
    stored_only = proto(4) + empty_list() + glob(*ctor) + append() + stop()
    assert restricted_loads(stored_only, policy)[0] is pickle.loads(stored_only)[0]


def test_a_checked_global_kept_as_data_in_a_joblib_file() -> None:
    import joblib
    import numpy as np
    from numpy._core.numeric import _frombuffer

    buf = io.BytesIO()
    joblib.dump({"f": _frombuffer, "a": np.arange(3)}, buf)
    allow = ["numpy._core.numeric._frombuffer"]
    got = safeload.loads(buf.getvalue(), require_signature=False, allow=allow)
    assert got["f"] is _frombuffer and list(got["a"]) == [0, 1, 2]
