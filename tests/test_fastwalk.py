"""The walker's optional C loop (`safeload/_machine/_fastwalk.c`) against the pure walker.

`_walk` in `safeload/_machine/walker.py` is the reference: it hands runs of plain
data opcodes to `_fastwalk.run` after MARK and FRAME, and the C loop must leave
every piece of state exactly as the Python branches would. So every test here
walks the same bytes twice, once with the C loop and once with
`walker._fast_run = None` (what SAFELOAD_PURE_WALKER=1 selects at import), and
compares everything the walk produced: each pickle's events, globals (with their
uses, calls, references), memo-derived items, kept dicts and shown items,
opcode counts and end offsets, plus the scan report built from it.
"""

from __future__ import annotations

import array
import dataclasses
import io
import os
import pickle
import shutil
import struct
import subprocess
import sys
import sysconfig
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import safeload
from safeload._machine import opcodes as O
from safeload._machine import walker
from tests import picklebuild as pb

try:
    from safeload._machine import _fastwalk
except ImportError:
    _fastwalk = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parent.parent
_BUILT = walker._fast_run is not None
needs_c = pytest.mark.skipif(
    not _BUILT,
    reason="the C walker (safeload._machine._fastwalk) is not built here, or "
    "SAFELOAD_PURE_WALKER is set: only the pure walker can run",
)


def _compiler() -> str | None:
    cc = sysconfig.get_config_var("CC")
    return shutil.which(str(cc).split()[0]) if cc else None


@pytest.mark.skipif(
    os.environ.get("SAFELOAD_PURE_WALKER", "") not in ("", "0"),
    reason="SAFELOAD_PURE_WALKER is set: the pure walker is asked for",
)
@pytest.mark.skipif(
    not sys.platform.startswith("linux") or _compiler() is None,
    reason="no C compiler: an install here builds the pure package only",
)
def test_c_walker_is_built_where_a_compiler_is() -> None:
    # With a compiler, `pip install .` / `pip install -e .` build the extension
    # (`optional = true` only forgives a failed build): a checkout that was never
    # built, or a build that broke, must not silently test the pure walker alone.
    assert _fastwalk is not None, (
        "safeload._machine._fastwalk is not importable: build it in place with "
        "`pip install -e .` (the tests import the checkout)"
    )
    assert walker._fast_run is _fastwalk.run


@needs_c
def test_opcode_bytes_match_the_table() -> None:
    assert _fastwalk is not None
    for name, code in _fastwalk.OPCODES.items():
        assert getattr(O, name) == code, name


def test_pure_switch_is_read_at_import() -> None:
    code = "import safeload._machine.walker as w, sys; sys.stdout.write(str(w._fast_run is None))"
    env = {**os.environ, "SAFELOAD_PURE_WALKER": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout == "True"


# -- comparing two walks --------------------------------------------------------


def _snap(obj: Any, seen: dict[int, int]) -> Any:
    """A comparable picture of a walk's objects: shared objects (a GRef pushed
    twice, a Res in its global's calls) appear once, then by reference."""
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return obj
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, [_snap(x, seen) for x in obj])
    if isinstance(obj, (set, frozenset)):
        return ("set", sorted(repr(x) for x in obj))
    if isinstance(obj, dict):
        return ("dict", [(_snap(k, seen), _snap(v, seen)) for k, v in obj.items()])
    key = id(obj)
    if key in seen:
        return ("ref", seen[key])
    seen[key] = len(seen)
    slots = getattr(type(obj), "__slots__", None)
    names = list(slots) if slots is not None else sorted(vars(obj))
    return (type(obj).__name__, [(n, _snap(getattr(obj, n), seen)) for n in names])


def _walk_picture(a: walker.StreamAnalysis) -> Any:
    seen: dict[int, int] = {}
    return (
        a.end,
        _snap(a.inert, seen),
        _snap(a.events, seen),
        [
            [(f.name, _snap(getattr(p, f.name), seen)) for f in dataclasses.fields(p)]
            for p in a.pickles
        ],
    )


def _report(data: bytes) -> Any:
    return safeload.scan_bytes(data, location="blob").to_json()


def _both(monkeypatch: pytest.MonkeyPatch, fn: Callable[[], Any]) -> tuple[Any, Any]:
    fast = fn()
    with monkeypatch.context() as m:
        m.setattr(walker, "_fast_run", None)
        pure = fn()
    return fast, pure


def _same_walk(
    monkeypatch: pytest.MonkeyPatch, data: bytes, max_opcodes: int | None = None
) -> walker.StreamAnalysis:
    kw = {} if max_opcodes is None else {"max_opcodes": max_opcodes}
    fast, pure = _both(monkeypatch, lambda: walker.analyze(data, **kw))
    assert _walk_picture(fast) == _walk_picture(pure)
    return fast


class _Counting:
    """Wraps `_fastwalk.run`, counting the bytes it walked: proves the hook runs."""

    def __init__(self, run: Callable[..., tuple[int, int]]) -> None:
        self.run = run
        self.calls = 0
        self.walked = 0

    def __call__(self, *args: Any) -> tuple[int, int]:
        pos, start = self.run(*args)
        self.calls += 1
        self.walked += pos - args[1]
        return pos, start


# -- corpora --------------------------------------------------------------------


def _data_objects() -> dict[str, object]:
    long_text = "x" * 300 + "é"
    shared = "shared-string"
    return {
        "dict": {f"key{i}": i for i in range(3000)},
        "mixed": {
            "ints": [0, 1, 255, 256, 65535, 65536, -1, -(2**31), 2**31 - 1, 2**40],
            "floats": [0.0, 1.5, -2.25, float("inf")],
            "consts": [None, True, False, (), {}, set(), frozenset()],
            "text": [long_text, long_text, shared, shared, "", "a" * 255, "b" * 256],
            "bytes": [b"", b"abc", b"y" * 300, bytearray(b"z")],
            "nested": [(1, 2), (1, 2, 3), (1, 2, 3, 4), [[1], [2, [3]]], {"a": {"b": None}}],
        },
        "many-memo": [f"s{i}" for i in range(700)] + [f"s{i}" for i in range(0, 700, 7)],
        "tuples": [(i, str(i), float(i)) for i in range(1500)],
    }


def _real_pickles() -> Iterator[tuple[str, bytes]]:
    import numpy as np
    import pandas as pd
    import torch
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = (x[:, 0] > 0).astype(int)
    objects: dict[str, object] = {
        **_data_objects(),
        "logreg": LogisticRegression().fit(x, y),
        "forest": RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(x, y),
        "ndarray": rng.normal(size=(5, 3)),
        "object-array": np.array(["a", 1, None, 2.5], dtype=object),
        "frame": pd.DataFrame({"f": [1.0, 2.0], "s": ["a", "b"], "i": [1, 2]}),
        "tensors": {"w": torch.ones(3, 2), "b": torch.zeros(2)},
    }
    for name, value in objects.items():
        for protocol in range(6):
            yield f"{name}-p{protocol}", pickle.dumps(value, protocol=protocol)
    buf = io.BytesIO()
    torch.save({"w": torch.ones(4, 4), "n": {"a": torch.arange(3)}}, buf)
    yield "torch-zip", buf.getvalue()
    import joblib

    buf = io.BytesIO()
    joblib.dump({"x": x, "names": ["a", "b"], "model": objects["logreg"]}, buf)
    yield "joblib", buf.getvalue()


def _files(*dirs: str) -> Iterator[tuple[str, bytes]]:
    for d in dirs:
        for path in sorted((ROOT / d).rglob("*")):
            if path.is_file() and not path.name.endswith(".md") and path.stat().st_size < 4 << 20:
                yield str(path.relative_to(ROOT)), path.read_bytes()


def _byte_built() -> Iterator[tuple[str, bytes]]:
    from tests import hostile_containers as hc

    yield "payload", hc.payload()
    yield "ndarray-wrapper", hc.ndarray_wrapper_pickle("x")
    yield from _edge_cases()


def _edge_cases() -> Iterator[tuple[str, bytes]]:
    """Byte-built streams at the C loop's edges."""
    run = pb.mark() + pb.sbu("k") + pb.memoize() + pb.binint1(1) + pb.sbu("v") + pb.memoize()
    body = pb.empty_dict() + pb.memoize() + run + pb.setitems() + pb.stop()
    yield "plain-run", pb.proto(4) + body
    # A frame ending inside a run, at every opcode boundary and inside opcodes:
    # the C loop must stop at the frame's end and leave the crossing to Python.
    for cut in range(1, len(body)):
        head, tail = body[:cut], body[cut:]
        yield (
            f"frame-cut-{cut}",
            pb.proto(4) + pb.frame(len(head)) + head + pb.frame(len(tail)) + tail,
        )
        # A frame shorter than what it holds (an opcode straddles its end).
        yield f"frame-short-{cut}", pb.proto(4) + pb.frame(cut) + body
    # SHORT_BINUNICODE whose MEMOIZE lies just past the frame's end.
    s = pb.sbu("abc")
    yield (
        "memoize-after-frame",
        pb.proto(4)
        + pb.frame(2 + len(s))
        + pb.empty_list()
        + pb.mark()
        + s
        + pb.frame(2)
        + pb.memoize()
        + pb.appends()
        + pb.stop(),
    )
    # BINUNICODE with BINPUT and LONG_BINPUT: at len(memo), past it (sparse), below it.
    for idx in (0, 1, 2, 300, 70000):
        for put in (pb.binput, pb.long_binput):
            if put is pb.binput and idx > 255:
                continue
            yield (
                f"binput-{put.__name__}-{idx}",
                pb.proto(2)
                + pb.empty_list()
                + pb.binput(0)
                + pb.mark()
                + pb.binunicode("a")
                + put(idx)
                + pb.binunicode("b")
                + pb.binput(1)
                + pb.binget(0)
                + pb.binget(1)
                + pb.long_binget(idx)
                + pb.binint(7)
                + pb.memoize()
                + pb.appends()
                + pb.stop(),
            )
    # A sparse memo before the run (every memo write then goes through `_Memo.put`).
    yield (
        "sparse-then-run",
        pb.proto(4)
        + pb.none()
        + pb.binput(9)
        + pb.empty_list()
        + pb.mark()
        + pb.sbu("a")
        + pb.memoize()
        + pb.binint1(3)
        + pb.binput(1)
        + pb.binget(9)
        + pb.binget(1)
        + pb.binget(0)
        + pb.appends()
        + pb.stop(),
    )
    # Memo gets of a node (a global: its references are counted) and of a miss.
    glob = pb.glob("collections", "OrderedDict")
    yield (
        "get-node",
        pb.proto(2)
        + glob
        + pb.binput(0)
        + pb.mark()
        + pb.binget(0)
        + pb.binget(0)
        + pb.long_binget(0)
        + pb.binget(5)
        + pb.pop_mark()
        + pb.stop(),
    )
    # Memo gets of other nodes (a tuple, a call's result) inside a run.
    yield (
        "get-tuple-node",
        pb.proto(2)
        + pb.binint1(1)
        + pb.binint1(2)
        + pb.tuple2()
        + pb.binput(0)
        + glob
        + pb.binput(1)
        + pb.empty_tuple()
        + pb.reduce()
        + pb.binput(2)
        + pb.mark()
        + pb.binget(0)
        + pb.binget(2)
        + pb.binget(1)
        + pb.long_binget(0)
        + pb.tuple_()
        + pb.stop(),
    )
    # Memo writes with nothing above the mark (underflow: Python raises).
    for put in (pb.memoize(), pb.binput(0), pb.long_binput(0)):
        yield f"put-underflow-{put[0]}", pb.proto(4) + pb.mark() + pb.binint1(1) + pb.mark() + put
    # Every hot opcode, truncated inside its argument.
    for op in (
        pb.sbu("hello"),
        pb.binunicode("hello"),
        pb.binint(5),
        pb.binint1(5),
        pb.binint2(5),
        pb.binfloat(1.5),
        pb.short_binbytes(b"abc"),
        pb.binput(0),
        pb.long_binput(0),
        pb.binget(0),
        pb.long_binget(0),
    ):
        whole = pb.proto(2) + pb.none() + pb.binput(0) + pb.mark() + op + op
        for cut in range(len(whole) - len(op), len(whole) + 1):
            yield f"trunc-{op[0]}-{cut}", whole[:cut]
    # A BINUNICODE whose length runs past the end, and one that is huge.
    yield "binunicode-long", pb.proto(2) + pb.mark() + b"X" + struct.pack("<I", 50) + b"abc"
    yield "binunicode-huge", pb.proto(2) + pb.mark() + b"X" + b"\xff\xff\xff\xff" + b"abc"


def _corpus() -> list[tuple[str, bytes]]:
    return [
        *_real_pickles(),
        *_byte_built(),
        *_files("fuzz/seeds", "tests/fuzz_regressions", "tests/fuzz_known"),
    ]


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, bytes]]:
    return _corpus()


@needs_c
def test_corpus_walks_alike(
    monkeypatch: pytest.MonkeyPatch, corpus: list[tuple[str, bytes]]
) -> None:
    assert _fastwalk is not None
    counting = _Counting(_fastwalk.run)
    monkeypatch.setattr(walker, "_fast_run", counting)
    differ = []
    for name, data in corpus:
        fast, pure = _both(monkeypatch, lambda data=data: walker.analyze(data))
        if _walk_picture(fast) != _walk_picture(pure):
            differ.append(name)
    assert not differ, f"C and pure walks differ on {differ}"
    # The hook really ran, and walked most of the opcode-dense pickles.
    assert counting.calls > 1000
    assert counting.walked > 100_000


@needs_c
def test_corpus_reports_alike(
    monkeypatch: pytest.MonkeyPatch, corpus: list[tuple[str, bytes]]
) -> None:
    differ = []
    for name, data in corpus:
        fast, pure = _both(monkeypatch, lambda data=data: _report(data))
        if fast != pure:
            differ.append(name)
    assert not differ, f"C and pure scan reports differ on {differ}"


@needs_c
def test_big_dict_is_walked_in_c(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _fastwalk is not None
    for protocol in (2, 4):
        data = pickle.dumps({f"key{i}": i for i in range(20_000)}, protocol=protocol)
        counting = _Counting(_fastwalk.run)
        monkeypatch.setattr(walker, "_fast_run", counting)
        analysis = _same_walk(monkeypatch, data)
        assert analysis.opcodes > 60_000
        # Python takes only MARK, SETITEMS, the frame crossings and the ends.
        assert counting.walked > 0.99 * len(data)
    # One run longer than the C loop goes without letting other threads in.
    data = pickle.dumps(tuple(range(70_000)), protocol=2)
    counting = _Counting(_fastwalk.run)
    monkeypatch.setattr(walker, "_fast_run", counting)
    _same_walk(monkeypatch, data)
    assert counting.calls == 1 and counting.walked > 0.99 * len(data)


@needs_c
def test_step_budget_runs_out_mid_run(monkeypatch: pytest.MonkeyPatch) -> None:
    data = pickle.dumps({f"key{i}": i for i in range(40)} | {"t": ("x" * 300, 1.5)}, protocol=4)
    total = walker.analyze(data).opcodes
    for budget in range(1, total + 3):
        _same_walk(monkeypatch, data, max_opcodes=budget)
    data2 = pickle.dumps([f"s{i}" for i in range(300)] * 2, protocol=2)
    total2 = walker.analyze(data2).opcodes
    for budget in (*range(1, 40), *range(total2 - 40, total2 + 2)):
        _same_walk(monkeypatch, data2, max_opcodes=budget)


@needs_c
def test_truncated_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    for protocol in (2, 4):
        data = pickle.dumps({f"k{i}": (i, "v" * (i % 3)) for i in range(30)}, protocol=protocol)
        for cut in range(len(data)):
            _same_walk(monkeypatch, data[:cut])


@needs_c
def test_held_and_mapped_buffers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The guarded loader walks an anonymous map; scan_file a file map.
    import mmap

    data = pickle.dumps({f"key{i}": [i, float(i)] for i in range(2000)}, protocol=4)
    path = tmp_path / "d.pkl"
    path.write_bytes(data)
    fast, pure = _both(monkeypatch, lambda: safeload.scan_file(path).to_json())
    assert fast == pure
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        assert _walk_picture(_same_walk(monkeypatch, mm)) == _walk_picture(walker.analyze(data))  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", safeload.UnsignedLoadWarning)
        assert safeload.load(path, require_signature=False) == pickle.loads(data)


@needs_c
def test_not_a_byte_buffer_is_walked_in_python(monkeypatch: pytest.MonkeyPatch) -> None:
    # An object without the buffer protocol (or of wider items) is left to Python.
    assert _fastwalk is not None
    data = pickle.dumps({"a": 1, "b": 2}, protocol=4)
    stack: list[Any] = []
    out = _fastwalk.run(
        list(data),
        0,
        len(data),
        0,
        stack,
        [],
        array.array("q"),
        {},
        object(),
        iter([None]),
        walker.GRef,
    )
    assert out == (0, 0) and stack == []
    # An end past the bytes: Python reads there, and fails as it does.
    short = pickle.dumps([1, 2], protocol=2)  # ... MARK at 5, BININT1 at 6 and 8
    assert short[6] == short[8] == O.BININT1
    steps = iter([None] * 9)
    out = _fastwalk.run(
        short, 6, len(short) + 9, 5, stack, [], array.array("q"), {}, object(), steps, walker.GRef
    )
    assert out == (6, 5) and stack == []
    out = _fastwalk.run(
        short, 6, len(short), 5, stack, [], array.array("q"), {}, object(), steps, walker.GRef
    )
    assert out == (10, 8) and stack == [6, 8]
    stack.clear()
    wide = array.array("H", b"\0" * 8)
    out = _fastwalk.run(
        wide, 0, 4, 0, stack, [], array.array("q"), {}, object(), iter([None]), walker.GRef
    )
    assert out == (0, 0) and stack == []


# -- mutated pickles --------------------------------------------------------------


def _seeds() -> list[bytes]:
    seeds = [data for _, data in _byte_built()][:40]
    for value in _data_objects().values():
        for protocol in (1, 2, 4, 5):
            raw = pickle.dumps(value, protocol=protocol)
            if len(raw) < 20_000:
                seeds.append(raw)
    seeds += [d for _, d in _files("fuzz/seeds/scan") if len(d) < 20_000][:40]
    return seeds


_SEEDS = _seeds()


@st.composite
def _mutant(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "set-op", "insert", "delete", "truncate", "dup"]))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set-op":
            data[at] = draw(st.sampled_from(sorted(O.BY_CODE)))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=9))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 9))]
        elif kind == "truncate":
            del data[at:]
        else:
            span = data[at : at + draw(st.integers(1, 40))]
            data[at:at] = span
    return bytes(data)


@needs_c
@settings(
    max_examples=int(os.environ.get("SAFELOAD_FASTWALK_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=_mutant(), budget=st.one_of(st.none(), st.integers(1, 400)))
def test_mutated_pickles_walk_alike(
    monkeypatch: pytest.MonkeyPatch, data: bytes, budget: int | None
) -> None:
    _same_walk(monkeypatch, data, max_opcodes=budget)
