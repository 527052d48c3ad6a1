"""Calls of a `functools.partial` built in the stream (pandas 1.3-1.5 blocks).

pandas 1.x pickles each block of a frame as `partial(new_block, ndim=2)` called
with `(values, placement)`. A partial whose function is an imported global and
whose bound arguments and keywords are immutable constants is judged as the
call of that function it is, by the scanner and the loader alike (the walk
gives the function's entry the call's shape, keywords as `name=kind`). Every
other call of a partial stays a computed call (SL205).
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import picklebuild as pb
import pytest
from loadrun import canary_in, run_jobs

import safeload
from safeload import Verdict
from safeload._machine.shapes import call_shape
from safeload._machine.walker import analyze
from safeload.policy import parse_pack

pytestmark = pytest.mark.filterwarnings("ignore::safeload.UnsignedLoadWarning")

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "generations"


def _partial(func: tuple[str, str], bound: bytes, keywords: bytes, namespace: bytes) -> bytes:
    """`partial(func)` BUILT with `(func, bound, keywords, namespace)`, as partial's
    own `__reduce__` writes it; func in memo 0, the partial left on the stack."""
    return (
        pb.glob("functools", "partial")
        + pb.glob(*func)
        + pb.binput(0)
        + pb.tuple1()
        + pb.reduce()
        + pb.mark()
        + pb.binget(0)
        + bound
        + keywords
        + namespace
        + pb.tuple_()
        + pb.build()
    )


def _called(partial: bytes, args: bytes = b")") -> bytes:
    return pb.proto(2) + partial + args + pb.reduce() + pb.stop()


def _dtype_partial(keywords: bytes = pb.none(), namespace: bytes = pb.none()) -> bytes:
    bound = pb.mark() + pb.sbu("f8") + pb.newfalse() + pb.newtrue() + pb.tuple_()
    return _partial(("numpy", "dtype"), bound, keywords, namespace)


def _rules(data: bytes) -> set[str]:
    return {f.rule for f in safeload.scan_bytes(data).findings if f.verdict is not None}


def test_a_partial_of_an_allowed_function_with_constant_arguments_is_that_call() -> None:
    data = _called(_dtype_partial())
    assert pickle.loads(data) == np.dtype("f8")
    report = safeload.scan_bytes(data)
    assert report.verdict is Verdict.SAFE, [(f.rule, f.message) for f in report.findings]
    assert safeload.loads(data, require_signature=False) == np.dtype("f8")
    walk = analyze(data).pickles[0]
    dtype = next(g for g in walk.globals if g.name == "dtype")
    assert [call_shape(data, c) for c in dtype.calls] == [("str", "bool", "bool")]
    # no keywords written as an empty dict (partial's own __reduce__ does so)
    empty = _called(_dtype_partial(pb.empty_dict()))
    assert safeload.scan_bytes(empty).verdict is Verdict.SAFE
    assert safeload.loads(empty, require_signature=False) == np.dtype("f8")


def test_the_call_is_judged_by_the_functions_scope() -> None:
    # numpy.dtype is allowed with (str,bool,bool); through the partial it gets one more
    bound = pb.mark() + pb.sbu("f8") + pb.newfalse() + pb.newtrue() + pb.tuple_()
    data = _called(_partial(("numpy", "dtype"), bound, pb.none(), pb.none()), pb.sbu("x") + b"\x85")
    report = safeload.scan_bytes(data)
    assert report.verdict is not Verdict.SAFE
    assert "SL405" in _rules(data), [(f.rule, f.message) for f in report.findings]


@pytest.mark.parametrize(
    ("why", "data"),
    [
        (
            "a bound argument that is an object",
            _called(
                _partial(
                    ("numpy", "dtype"),
                    pb.empty_list() + pb.tuple1(),
                    pb.none(),
                    pb.none(),
                )
            ),
        ),
        (
            "a keyword that is a container",
            _called(
                _dtype_partial(pb.empty_dict() + pb.sbu("align") + pb.empty_list() + pb.setitem())
            ),
        ),
        ("a namespace dict", _called(_dtype_partial(namespace=pb.empty_dict()))),
        (
            "a second BUILD",
            _called(
                _dtype_partial()
                + pb.mark()
                + pb.binget(0)
                + pb.empty_tuple()
                + pb.none()
                + pb.none()
                + pb.tuple_()
                + pb.build()
            ),
        ),
        (
            "no BUILD (arguments given at the call only)",
            pb.proto(2)
            + pb.glob("functools", "partial")
            + pb.glob("numpy", "dtype")
            + pb.tuple1()
            + pb.reduce()
            + pb.mark()
            + pb.sbu("f8")
            + pb.newfalse()
            + pb.newtrue()
            + pb.tuple_()
            + pb.reduce()
            + pb.stop(),
        ),
        (
            "a state whose function is not the one partial() was given",
            pb.proto(2)
            + pb.glob("functools", "partial")
            + pb.glob("numpy", "dtype")
            + pb.tuple1()
            + pb.reduce()
            + pb.mark()
            + pb.glob("numpy", "ndarray")
            + pb.empty_tuple()
            + pb.none()
            + pb.none()
            + pb.tuple_()
            + pb.build()
            + pb.empty_tuple()
            + pb.reduce()
            + pb.stop(),
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_any_other_partial_call_stays_a_computed_call(why: str, data: bytes) -> None:
    assert "SL205" in _rules(data), why
    with pytest.raises(safeload.errors.UnsafeFileError):
        safeload.loads(data, require_signature=False)
    # the restricted unpickler refuses it on its own (the walk of the bytes it loads
    # has the event), with the scan's judgment set aside
    with _scan_set_aside(), pytest.raises(safeload.errors.UnsafeFileError, match="SL205"):
        safeload.loads(data, require_signature=False)


def _scan_set_aside() -> Any:
    return mock.patch("safeload.load._guarded.judge", lambda located, policy: [])


def test_keywords_are_read_as_the_dict_holds_them_when_the_call_runs() -> None:
    # the keywords dict is memoized, then filled after the BUILD: the call sees `align`
    keywords = pb.empty_dict() + pb.binput(1)
    late = pb.binget(1) + pb.sbu("align") + pb.newtrue() + pb.setitem() + pb.pop()
    made = _partial(("numpy", "dtype"), pb.sbu("f8") + pb.tuple1(), keywords, pb.none())
    data = pb.proto(2) + made + late + pb.empty_tuple() + pb.reduce() + pb.stop()
    assert pickle.loads(data) == np.dtype("f8", align=True)
    walk = analyze(data).pickles[0]
    dtype = next(g for g in walk.globals if g.name == "dtype")
    assert [call_shape(data, c) for c in dtype.calls] == [("str", "align=bool")]
    assert "SL405" in _rules(data)  # numpy.dtype's scope has no keywords


def test_an_unknown_function_through_a_partial_stays_unknown() -> None:
    data = _called(_partial(("no_such_module", "fn"), pb.empty_tuple(), pb.none(), pb.none()))
    report = safeload.scan_bytes(data)
    assert report.verdict is Verdict.UNKNOWN
    assert _rules(data) == {"SL401"}


def test_a_partial_of_os_system_is_dangerous_and_never_runs(tmp_path: Path) -> None:
    payload = _called(
        _partial(
            ("os", "system"),
            pb.sbu("touch canary") + pb.tuple1(),
            pb.none(),
            pb.none(),
        )
    )
    path = tmp_path / "partial-system.pkl"
    path.write_bytes(payload)
    report = safeload.scan_file(path)
    assert report.verdict is Verdict.DANGEROUS
    jobs = [
        {"kind": "plain", "path": path, "cwd": tmp_path / "plain", "code": _PLAIN},
        {"kind": "safeload", "path": path, "cwd": tmp_path / "guarded"},
        {"kind": "safeload", "path": path, "cwd": tmp_path / "forced", "force_safe": True},
    ]
    plain, guarded, forced = run_jobs(jobs, preload=("numpy",))
    assert plain["outcome"] == "loaded" and canary_in(tmp_path / "plain")
    for result, cwd in ((guarded, "guarded"), (forced, "forced")):
        assert result["outcome"] == "raised" and result["unsafe"], result
        assert not canary_in(tmp_path / cwd)


_PLAIN = "import pickle\nwith open(path, 'rb') as fh:\n    pickle.load(fh)"


def _pandas_1_frame() -> bytes:
    data = (FIXTURES / "2022" / "pandas" / "tz-utc.pkl").read_bytes()
    assert b"functools" in data and b"new_block" in data  # saved by pandas 1.3.5
    return data


def test_pandas_1_blocks_scan_safe_and_their_placements_are_checked() -> None:
    data = _pandas_1_frame()
    assert safeload.scan_bytes(data).verdict is Verdict.SAFE
    walk = analyze(data).pickles[0]
    new_block = [g for g in walk.globals if g.name == "new_block"]
    shapes = {call_shape(data, c) for g in new_block for c in g.calls}
    assert shapes == {("object", "object", "ndim=int")}
    # the first block's placement slice(1, 2, 1) made slice(0, 1, 1), the second
    # block's: item 0 placed twice, which the placement check reads through the
    # partial call (the first column access would write through it unchecked)
    good = b"K\x01K\x02K\x01\x87"
    assert data.count(good) == 1
    bad = data.replace(good, b"K\x00K\x01K\x01\x87")
    report = safeload.scan_bytes(bad)
    assert report.verdict is not Verdict.SAFE
    assert any("placement" in f.message for f in report.findings), [
        (f.rule, f.message) for f in report.findings
    ]


def test_a_new_block_keyword_outside_its_scope_is_refused_by_scan_and_loader() -> None:
    # klass= is a keyword new_block takes but pandas never pickles: out of scope
    data = _pandas_1_frame()
    good = b"\x8c\x04ndim\x94K\x02s"
    assert data.count(good) == 1
    bad = data.replace(good, b"\x8c\x04ndim\x94K\x02s\x8c\x05klass\x8c\x01xs")
    size = int.from_bytes(data[3:11], "little") + len(bad) - len(data)
    bad = bad[:3] + size.to_bytes(8, "little") + bad[11:]  # the first FRAME holds it
    assert "SL405" in _rules(bad)
    with warnings.catch_warnings(), pytest.raises(safeload.errors.UnsafeFileError):
        warnings.simplefilter("ignore")
        safeload.loads(bad, require_signature=False)
    # the restricted unpickler judges new_block's call shape as the scan does
    with (
        _scan_set_aside(),
        pytest.raises(safeload.errors.UnsafeFileError, match=r"SL405.*new_block|new_block.*SL405"),
    ):
        safeload.loads(bad, require_signature=False)


@pytest.mark.parametrize(
    ("shape", "ok"),
    [
        ("object,object,ndim=int", True),
        ("str,align=bool", True),
        ("ndim=int", True),
        ("object,ndim=", False),
        ("object,=int", False),
        ("object,Ndim=int", False),
        ("object,ndim=int=int", False),
    ],
)
def test_pack_call_shapes_take_keywords_as_name_kind(shape: str, ok: bool) -> None:
    text = (
        'schema = 2\n[pack]\nname = "t"\ndescription = "t"\nallow = [\n'
        f'  {{ name = "m.f", use = ["called"], calls = ["{shape}"], audit = "a test entry" }},\n]\n'
    )
    if ok:
        pack = parse_pack(text.encode(), "t.toml")
        assert pack.scopes[("m", "f")].calls == {shape}
    else:
        with pytest.raises(safeload.errors.PolicyError, match="bad call shape"):
            parse_pack(text.encode(), "t.toml")
