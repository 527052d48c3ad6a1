"""How the guarded loader refuses, and how a user allows what they trust.

The `UnsafeFileError` message lists every offending global at once, fully
qualified, with its byte offset and rule ID; the exact fix (`allow=[...]`,
`allowed_globals`, `[tool.safeload]`) is printed only when every offending
global is merely unknown, and applying it as printed makes the file load. A
file that names a dangerous global gets no allow suggestion at all, and
allowing a denied name is a `PolicyError`. `allowed_globals` is scoped to its
thread and its asyncio task.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import pickle
import re
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from picklebuild import (
    empty_tuple,
    glob,
    newobj,
    pop,
    proto,
    reduce,
    sbu,
    stop,
    tuple1,
    tuple2,
)

import safeload
from safeload.errors import PolicyError, UnsafeFileError


@dataclass
class Point:
    """A class of this test module: on no allow pack."""

    x: int
    y: int


class Outer:
    @dataclass
    class Inner:
        label: str


POINT = f"{Point.__module__}.Point"
INNER = f"{Outer.__module__}:Outer.Inner"
"""Fully qualified, in the canonical spelling allow entries take (`module:qualname`)."""
OBJ = {"p": Point(1, 2), "i": Outer.Inner("a")}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # no pyproject.toml here, and where a payload would write
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", safeload.UnsignedLoadWarning)
        yield
    assert not (tmp_path / "canary").exists(), "a payload ran"


def loads(data: bytes, **kw: Any) -> Any:
    return safeload.loads(data, require_signature=False, **kw)


def refusal(data: bytes, **kw: Any) -> UnsafeFileError:
    with pytest.raises(UnsafeFileError) as info:
        loads(data, **kw)
    return info.value


#: Two globals on no allow pack, then a dangerous call, then trailing junk.
MIXED = (
    proto(2)
    + glob("evilpkg.models", "Backdoor") + empty_tuple() + newobj() + pop()
    + glob("evilpkg.layers", "Hook") + pop()
    + glob("os", "system") + sbu("touch canary") + tuple1() + reduce()
    + stop()
)  # fmt: skip


def test_every_offending_global_is_listed_at_once() -> None:
    exc = refusal(MIXED)
    text = str(exc)
    scanned = [f for f in safeload.scan_bytes(MIXED).findings if f.verdict is not None]
    assert {(f.rule, f.global_name) for f in scanned} == {
        ("SL401", "evilpkg.models.Backdoor"),
        ("SL401", "evilpkg.layers.Hook"),
        ("SL101", "os.system"),
    }
    assert f"({len(scanned)} findings)" in text
    for f in scanned:
        line = f"<bytes>@{f.offset}: {f.global_name} [{f.rule} {f.rule_name}]"
        assert line in text, (line, text)
    assert [(f.rule, f.global_name, f.offset) for f in exc.findings if f.verdict] == [
        (f.rule, f.global_name, f.offset) for f in scanned
    ]
    assert exc.rule == "SL401" and exc.global_name == "evilpkg.models.Backdoor"


def test_no_allow_fix_for_a_file_with_a_dangerous_global() -> None:
    text = str(refusal(MIXED))
    for suggestion in ("allow=", "allowed_globals", "[tool.safeload]", "--allow"):
        assert suggestion not in text, text
    assert "Do not load this file" in text  # the dangerous global's own fix


def test_no_allow_fix_when_the_file_is_also_malformed() -> None:
    data = pickle.dumps(Point(1, 2), protocol=4) + b"junk"
    text = str(refusal(data))
    assert POINT in text and "SL304" in text
    assert "allow=" not in text and "[tool.safeload]" not in text


def _suggested(text: str, prefix: str) -> list[str]:
    """The list literal printed after `prefix` in the message."""
    match = re.search(re.escape(prefix) + r"(\[[^\]]*\])", text)
    assert match, (prefix, text)
    names = ast.literal_eval(match.group(1))
    assert isinstance(names, list)
    return names


@pytest.mark.parametrize("protocol", [2, 4])
def test_unknown_globals_get_the_exact_fix_and_it_works(tmp_path: Path, protocol: int) -> None:
    data = pickle.dumps(OBJ, protocol=protocol)
    exc = refusal(data)
    text = str(exc)
    named = {f.global_name for f in exc.findings}
    # protocol 2 pickles Outer.Inner as getattr(Outer, "Inner"): Outer is named too
    assert named == ({POINT, INNER} if protocol >= 4 else {POINT, INNER, f"{POINT[:-6]}.Outer"})
    allow = _suggested(text, "safeload.load(..., allow=")
    assert allow == sorted(named)
    assert _suggested(text, "safeload.allowed_globals(") == allow
    assert _suggested(text, "[tool.safeload] allow = ") == allow
    with pytest.raises(UnsafeFileError):  # one name is not enough
        loads(data, allow=[POINT])
    # each fix, applied as printed
    assert loads(data, allow=allow) == OBJ
    with safeload.allowed_globals(allow):
        assert loads(data) == OBJ
    line = next(x for x in text.splitlines() if "[tool.safeload] allow = " in x)
    table, _, _ = line.strip().partition("  (pyproject.toml)")
    (tmp_path / "pyproject.toml").write_text(table.replace("] allow", "]\nallow", 1) + "\n")
    assert loads(data) == OBJ


def test_refusal_by_the_restricted_unpickler_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the scan forced to say safe, the unpickler's own refusals say the same."""
    guarded = importlib.import_module("safeload.load._guarded")
    monkeypatch.setattr(guarded, "judge", lambda located, policy: [])
    exc = refusal(pickle.dumps(Point(1, 2), protocol=4))
    assert exc.global_name == POINT and exc.rule == "SL401"
    assert f'allow=["{POINT}"]' in str(exc)
    hostile = (
        proto(2) + glob("builtins", "open") + sbu("canary") + sbu("w") + tuple2() + reduce()
        + stop()
    )  # fmt: skip
    exc = refusal(hostile)
    assert (exc.rule, exc.global_name) == ("SL107", "builtins.open")
    assert "allow=" not in str(exc) and "allowed_globals" not in str(exc)


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "subprocess.Popen", "posix.system"])
def test_allowing_a_denied_name_is_a_policy_error(name: str) -> None:
    data = pickle.dumps(Point(1, 2), protocol=4)
    with pytest.raises(PolicyError, match=re.escape(name)):
        loads(data, allow=[name])
    with pytest.raises(PolicyError, match=re.escape(name)), safeload.allowed_globals([name]):
        pass
    with pytest.raises(PolicyError):  # also next to a name that may be allowed
        loads(data, allow=[POINT, name])


def test_allow_takes_a_list() -> None:
    data = pickle.dumps(Point(1, 2), protocol=4)
    with pytest.raises(TypeError):
        loads(data, allow=POINT)
    with pytest.raises(TypeError), safeload.allowed_globals(POINT):
        pass


def test_allowed_globals_blocks_nest_and_end() -> None:
    data = pickle.dumps(OBJ, protocol=4)
    with safeload.allowed_globals([POINT]):
        refusal(data)
        with safeload.allowed_globals([INNER]):
            assert loads(data) == OBJ
        refusal(data)
    refusal(data)


def test_allowed_globals_is_per_thread() -> None:
    data = pickle.dumps(Point(1, 2), protocol=4)
    inside = threading.Barrier(2)
    done = threading.Barrier(2)
    results: dict[str, Any] = {}

    def allowed() -> None:
        with safeload.allowed_globals([POINT]):
            inside.wait(10)
            try:
                results["allowed"] = loads(data)
            except Exception as exc:  # pragma: no cover - reported below
                results["allowed"] = exc
            done.wait(10)

    def other() -> None:
        inside.wait(10)  # the other thread is inside its block now
        try:
            results["other"] = loads(data)
        except Exception as exc:
            results["other"] = exc
        done.wait(10)

    threads = [threading.Thread(target=allowed), threading.Thread(target=other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results["allowed"] == Point(1, 2)
    assert isinstance(results["other"], UnsafeFileError), results["other"]


def test_allowed_globals_is_per_asyncio_task() -> None:
    data = pickle.dumps(Point(1, 2), protocol=4)

    async def main() -> tuple[Any, Any]:
        entered, checked = asyncio.Event(), asyncio.Event()

        async def allowed() -> Any:
            with safeload.allowed_globals([POINT]):
                entered.set()
                await checked.wait()  # the other task loads while this block is open
                return loads(data)

        async def other() -> Any:
            await entered.wait()
            try:
                return loads(data)
            except UnsafeFileError as exc:
                return exc
            finally:
                checked.set()

        return await asyncio.gather(allowed(), other())

    got_allowed, got_other = asyncio.run(main())
    assert got_allowed == Point(1, 2)
    assert isinstance(got_other, UnsafeFileError)
