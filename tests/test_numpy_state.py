"""An object array's state list must hold exactly as many items as its shape.

numpy's `array_setstate` (numpy/_core/src/multiarray/methods.c) checks that an
object array's data is a list, never its length; `_setlist_pkl` then reads
`PyList_GET_ITEM(list, i)` for every item of the shape, past the end of a
shorter list. An empty list has no item array at all, so a shape of (2,) with
`[]` crashes `np.load(allow_pickle=True)` on a NULL pointer every time. The
loader fuzzer found a 3-item list with shape (136,)
(tests/fuzz_regressions/load/npy-object-list-shorter-than-shape-segfault),
which the scan called safe.

Hostile files are built byte by byte and from real numpy objects, loaded by
`np.load` only in a child process (it must die of SIGSEGV: the payload is
real), scanned (never safe) and loaded by `safeload.load` in forked children
(`tests/loadrun.py`), with the scan's judgment and with a scan that misses
everything (`force_safe`): a refusal, never a crash.
"""

from __future__ import annotations

import io
import pickle
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import safeload
from safeload import Verdict
from safeload._machine.walker import Opaque, Res, walk_one
from tests import picklebuild as P
from tests.loadrun import run_jobs

ROOT = Path(__file__).resolve().parent.parent
FUZZ_INPUT = "npy-object-list-shorter-than-shape-segfault"

# -- building the files ------------------------------------------------------------------


def npy(body: bytes) -> bytes:
    """An .npy file whose header numpy writes for a 1-item object array, then `body`
    (np.load unpickles whatever object the pickle holds)."""
    out = io.BytesIO()
    header = np.lib.format.header_data_from_array_1_0(np.empty(1, dtype=object))
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue() + body


def _object_dtype() -> bytes:
    """numpy.dtype('O8', False, True) with the state numpy writes (flags 0x3f)."""
    return (
        P.glob("numpy", "dtype")
        + P.sbu("O8")
        + P.newfalse()
        + P.newtrue()
        + P.tuple3()
        + P.reduce()
        + P.mark()
        + P.binint1(3)
        + P.sbu("|")
        + P.none()
        + P.none()
        + P.none()
        + P.binint(-1)
        + P.binint(-1)
        + P.binint1(0x3F)
        + P.tuple_()
        + P.build()
    )


def _new_array() -> bytes:
    """numpy._core.multiarray._reconstruct(numpy.ndarray, (0,), b'b'), as numpy writes it."""
    return (
        P.glob("numpy._core.multiarray", "_reconstruct")
        + P.glob("numpy", "ndarray")
        + P.binint1(0)
        + P.tuple1()
        + P.short_binbytes(b"b")
        + P.tuple3()
        + P.reduce()
    )


def _shape(dims: tuple[int, ...]) -> bytes:
    return P.mark() + b"".join(P.binint(d) for d in dims) + P.tuple_()


def _items(n: int) -> bytes:
    return b"".join(P.binint1(i % 200) for i in range(n))


def object_array(dims: tuple[int, ...], data: bytes, *, after: bytes = b"") -> bytes:
    """An object array's pickle: `_reconstruct`, then BUILD with (1, dims, dtype('O'),
    False, <data>); `after` runs once the array is built (the array stays on top)."""
    state = P.mark() + P.binint1(1) + _shape(dims) + _object_dtype() + P.newfalse() + data
    return P.proto(2) + _new_array() + state + P.tuple_() + P.build() + after + P.stop()


def appended(n: int) -> bytes:
    """A list with `n` items, put in memo 0 (EMPTY_LIST, MARK items APPENDS)."""
    return P.empty_list() + P.binput(0) + (P.mark() + _items(n) + P.appends() if n else b"")


_SLICE_ALL = P.glob("builtins", "slice") + P.none() + P.none() + P.none() + P.tuple3() + P.reduce()


def hostile_pickles() -> dict[str, bytes]:
    """Each object array's list holds fewer items than its shape when BUILD runs."""
    return {
        # No item array at all: numpy reads through a NULL pointer.
        "empty-list": object_array((2,), appended(0)),
        "empty-list-2d": object_array((2, 3), appended(0)),
        # MARK LIST (how protocol 0 starts a list) with no item.
        "empty-list-opcode": object_array((2,), P.mark() + P.list_()),
        # The stream fills the list after BUILD: the array read it empty.
        "appended-after-build": object_array(
            (3,), appended(0), after=P.binget(0) + P.mark() + _items(3) + P.appends() + P.pop()
        ),
        # list[:] = [] through SETITEM with builtins.slice (allowlisted) empties it
        # after three APPENDs.
        "emptied-by-a-slice": object_array(
            (3,), appended(3) + _SLICE_ALL + P.empty_list() + P.setitem()
        ),
        "shorter": object_array((136,), appended(3)),
        "one-item-0d-needs-one": object_array((), appended(0)),
    }


def forged_by_numpy(shape: tuple[int, ...], items: list[Any], protocol: int) -> bytes:
    """The pickle of a real object array whose `__reduce__` state is given `shape`:
    numpy's own reconstructor, dtype and list, as `pickle.dumps` writes them."""
    real = np.array(items, dtype=object)
    reduced: Any = real.__reduce__()
    fn, args, state = reduced

    class Forged:
        def __reduce__(self) -> tuple[Any, ...]:
            return fn, args, (state[0], shape, *state[2:])

    return pickle.dumps(Forged(), protocol=protocol)


def forged_masked(shape: tuple[int, ...], items: list[Any]) -> bytes:
    """A real masked object array's pickle (`_mareconstruct`; MaskedArray.__setstate__
    hands shape, dtype and list to ndarray.__setstate__) whose state is given `shape`."""
    real = np.ma.array(np.array(items, dtype=object), mask=[False] * len(items))
    reduced: Any = real.__reduce__()
    fn, args, state = reduced
    size = int(np.prod(shape))

    class Forged:
        def __reduce__(self) -> tuple[Any, ...]:
            return fn, args, (state[0], shape, *state[2:5], b"\x00" * size, state[6])

    return pickle.dumps(Forged(), protocol=4)


def real_hostile() -> dict[str, bytes]:
    return {
        f"numpy-empty-list-shape-2-protocol-{p}": forged_by_numpy((2,), [], p) for p in (0, 2, 4)
    } | {
        "numpy-three-items-shape-136": forged_by_numpy((136,), [1, "x", None], 4),
        "numpy-masked-three-items-shape-300": forged_masked((300,), [1, "x", None]),
    }


def fuzz_input() -> bytes:
    for folder in ("fuzz_regressions", "fuzz_known"):
        path = ROOT / "tests" / folder / "load" / FUZZ_INPUT
        if path.is_file():
            return path.read_bytes()[1:]  # its first byte picks the fuzz target's loader
    raise AssertionError(f"{FUZZ_INPUT} is in neither tests/fuzz_regressions nor fuzz_known")


# -- the plain loader crashes --------------------------------------------------------------

CRASHES = {**hostile_pickles(), **{k: v for k, v in real_hostile().items() if "empty" in k}}
"""The files whose list is empty when BUILD runs: a NULL read, a crash every time."""


def _np_load_in_child(path: Path) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(
        """
        import sys, numpy as np
        np.load(sys.argv[1], allow_pickle=True)
        print("loaded")
        """
    )
    return subprocess.run(
        [sys.executable, "-I", "-c", code, str(path)],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("name", [k for k in CRASHES if k != "shorter"])
def test_np_load_dies_of_sigsegv(tmp_path: Path, name: str) -> None:
    """The payload is real: numpy's own loader crashes on each file."""
    path = tmp_path / f"{name}.npy"
    path.write_bytes(npy(CRASHES[name]))
    done = _np_load_in_child(path)
    assert done.returncode == -signal.SIGSEGV, (done.returncode, done.stdout, done.stderr[-2000:])


def test_the_fuzz_input_crashes_np_load(tmp_path: Path) -> None:
    path = tmp_path / "fuzz.npy"
    path.write_bytes(fuzz_input())
    done = _np_load_in_child(path)
    assert done.returncode < 0, (done.returncode, done.stdout, done.stderr[-2000:])


# -- the scan and the guarded loader refuse it -------------------------------------------

ALL_HOSTILE = {**hostile_pickles(), **real_hostile()}


@pytest.mark.parametrize("name", sorted(ALL_HOSTILE))
def test_scan_is_not_safe(name: str) -> None:
    for data in (ALL_HOSTILE[name], npy(ALL_HOSTILE[name])):
        report = safeload.scan_bytes(data)
        assert report.verdict is not Verdict.SAFE, name
        failed = [f for f in report.findings if f.rule == "SL406"]
        assert failed, [(f.rule, f.message) for f in report.findings]
        assert "numpy-raw-bytes" in failed[0].message
        assert "object array" in failed[0].message


def test_scan_of_the_fuzz_input_names_both_lengths() -> None:
    report = safeload.scan_bytes(fuzz_input())
    assert report.verdict is Verdict.DANGEROUS
    (finding,) = [f for f in report.findings if f.rule == "SL406"]
    assert "shape (136,) (136 items) whose list holds 3" in finding.message


@pytest.mark.parametrize("force_safe", [False, True], ids=["scanned", "scan-misses-everything"])
def test_guarded_loader_refuses_without_crashing(tmp_path: Path, force_safe: bool) -> None:
    """safeload.load refuses every file, also when the scan's judgment is replaced by
    "no findings" (the loader runs the array check itself before unpickling)."""
    files = {**ALL_HOSTILE, "fuzz-input": fuzz_input()}
    jobs = []
    for name, data in sorted(files.items()):
        path = tmp_path / f"{name}.npy"
        path.write_bytes(data if name == "fuzz-input" else npy(data))
        jobs.append(
            {"kind": "safeload", "path": path, "cwd": tmp_path / name, "force_safe": force_safe}
        )
    results = run_jobs(jobs, preload=("numpy",))
    for job, result in zip(jobs, results, strict=True):
        assert result["outcome"] == "raised", (job["path"], result)
        assert result["safeload_error"], (job["path"], result)
        if force_safe:
            assert "numpy array" in result["message"], result["message"]


# -- genuine object arrays still pass ------------------------------------------------------


def benign_arrays() -> dict[str, np.ndarray[Any, Any]]:
    two_d = np.empty((2, 3), dtype=object)
    two_d[:] = [[1, "a", None], [2.5, (1, 2), [3]]]
    structured = np.array([(1, "x"), (2, None)], dtype=[("a", "i8"), ("b", "O")])
    return {
        "0-d": np.array(None, dtype=object),
        "0-d-str": np.array("text", dtype=object),
        "empty": np.array([], dtype=object),
        "empty-0x3": np.empty((0, 3), dtype=object),
        "1-d": np.array([1, "two", None, 4.0], dtype=object),
        "2-d-fortran": np.asfortranarray(two_d),
        "3-d": np.arange(24).astype(object).reshape(2, 3, 4),
        "long": np.array([f"s{i}" for i in range(5000)], dtype=object),
        "structured-with-object": structured,
        "masked": np.ma.array(np.array([1, "x", None], dtype=object), mask=[False, True, False]),
    }


def _same(a: Any, b: Any) -> bool:
    return (
        type(a) is type(b)
        and a.shape == b.shape
        and a.dtype == b.dtype
        and a.flags.f_contiguous == b.flags.f_contiguous
        and a.tolist() == b.tolist()
        and np.array_equal(np.ma.getmaskarray(a), np.ma.getmaskarray(b))
    )


@pytest.mark.parametrize("name", sorted(benign_arrays()))
def test_benign_object_arrays_scan_safe_and_load_equal(name: str) -> None:
    array = benign_arrays()[name]
    saved = io.BytesIO()
    np.save(saved, array, allow_pickle=True)
    files = {"npy": saved.getvalue()} | {
        f"protocol-{p}": pickle.dumps(array, protocol=p) for p in range(pickle.HIGHEST_PROTOCOL + 1)
    }
    for how, data in files.items():
        report = safeload.scan_bytes(data)
        assert report.verdict is Verdict.SAFE, (how, [(f.rule, f.message) for f in report.findings])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unsigned, on purpose
            loaded = safeload.loads(data, require_signature=False)
        assert _same(loaded, array), how


# -- the walk counts each list's items -----------------------------------------------------


def _built(data: bytes) -> Res:
    walk = walk_one(data, 0, len(data), 10_000)
    (array,) = [c for g in walk.globals if g.name == "_reconstruct" for c in g.calls]
    return array


def _length_at_build(data: bytes) -> int | None:
    lists = _built(data).lists
    assert lists is not None and len(lists) == 1
    return next(iter(lists.values()))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (object_array((5,), appended(5)), 5),
        (object_array((5,), appended(3000)), 3000),  # past the items `shown` keeps
        (object_array((2,), P.mark() + _items(7) + P.list_()), 7),  # MARK ... LIST
        (object_array((2,), P.mark() + P.list_()), 0),
        # protocol 0: MARK LIST, then one APPEND per item
        (object_array((4,), P.mark() + P.list_() + b"".join(_items(1) + P.append() for _ in range(4))), 4),
        # shared through the memo: both appends count, the ones after BUILD do not
        (
            object_array(
                (4,),
                P.empty_list() + P.binput(0) + _items(1) + P.append() + P.pop() + P.binget(0)
                + P.mark() + _items(3) + P.appends(),
                after=P.binget(0) + _items(1) + P.append() + P.pop(),
            ),
            4,
        ),
        (hostile_pickles()["appended-after-build"], 0),
        (hostile_pickles()["emptied-by-a-slice"], None),  # written into: not known
    ],
    ids=["appends", "long", "list-opcode", "list-opcode-empty", "protocol-0", "memo-shared",
         "after-build", "slice"],
)  # fmt: skip
def test_walk_keeps_list_lengths_at_build(data: bytes, expected: int | None) -> None:
    assert _length_at_build(data) == expected


def test_a_list_opcode_gets_its_own_node() -> None:
    data = object_array((2,), P.mark() + _items(2) + P.list_())
    (node,) = _built(data).lists or {}
    assert type(node) is Opaque and node.what == "list"
