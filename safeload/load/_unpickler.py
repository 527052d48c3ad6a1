"""The restricted unpickler: CPython's C unpickler, importing only what the scan judged.

`RestrictedUnpickler` loads one pickle that the walker (`safeload._machine`)
has already walked. Its `find_class` asks `Policy.decide`, the same question
the scanner's findings ask, and imports a module only once its global is
allowed. There is no fallback: whatever is refused raises `UnsafeFileError`.

How the load stays bound to its scan
------------------------------------

The C unpickler does not tell `find_class` the protocol current at the
opcode, yet the protocol decides what a name means: `_compat_pickle` maps it
below 3 (`cPickle.loads` is `pickle.loads`) and a dotted name is walked
attribute by attribute from 4 on. A single "protocol of the pickle" is not
enough either, since PROTO may appear anywhere and change it mid-stream.

The walk already knows the answer for every import opcode, in stream order,
and the C unpickler calls `find_class` exactly once per GLOBAL, STACK_GLOBAL
and INST, in stream order (a memo GET or DUP of an imported object imports
nothing). So the walk becomes an `ImportPlan`, a list of expected calls, and
the k-th `find_class` call must be the k-th import the walk saw, with the same
names as written. Its protocol is then known exactly, mapped with the one
shared `map_name`, and decided on the name the scanner judged. A call the
walk did not predict (a reader that diverges from the walk, a different string
encoding) is refused as SL209, so the scan and the load cannot judge
different names, and no mapping is ever guessed.

EXT1/EXT2/EXT4 cannot be gated by `find_class` alone: the C unpickler takes a
code already in `copyreg._extension_cache` straight from the cache, without
calling `find_class`. They are refused before the first opcode runs, because
the walk of these bytes reports every EXT opcode it meets (SL202). That relies
on the walk seeing every opcode the C unpickler executes, which is enforced
as far as it can be from here: a plan is refused unless its walk reached STOP
without a single event (frame tricks, reader divergence, computed names all
are events); the unpickler is given exactly the walked bytes, so it cannot
read past them; and after `load` it must have consumed all of them and asked
for every predicted import, else the result is discarded (SL209). An uncached
EXT code the walk missed would reach `find_class` with the registry's names
at a position where the plan expects something else, and is refused there.

`builtins.getattr` whose every reference the walk folded into a dotted name
(`getattr(ZoneInfo, '_unpickle')`, how bound methods pickle) is judged, as by
the scanner, through the names it reaches: `find_class` hands out a getattr
that only reads attributes of objects this unpickler imported, and only when
the dotted name is one the walk folded and `Policy.decide` allows.

A global whose arguments native code trusts is handed out as a checking
stand-in (`safeload._checks.CheckedConstructor`) for the whole load, so that
every call of it, by an opcode or by code that received it, is checked. What
the pickle kept as data is then given back as the global itself, as
`pickle.loads` returns it, once the load is over and nothing of the pickle
runs any more (`ImportGuard.hand_back`, `safeload.load._stand_ins`).

The name checks live in `ImportGuard`, which any unpickler can use as its
`find_class` (the pure-Python joblib reader, whose walk skips raw array bytes
as `joblib.load` does, and which `RestrictedUnpickler` therefore refuses).
`check_torch_storage_pid` is the persistent-id validator for PyTorch files.
"""

from __future__ import annotations

import _pickle
import importlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .._machine.shapes import Shape, call_shape, effective_uses
from .._machine.walker import DEFAULT_MAX_OPCODES, PickleWalk, analyze
from .._names import Use, canonical, map_name
from ..errors import UnsafeFileError
from ..policy import Decision, Policy
from ..report import Finding, Verdict
from ._open import HeldBuffer
from ._stand_ins import held_elsewhere, swap_stand_ins
from ._validators import checked_constructor

__all__ = [
    "ExpectedImport",
    "ImportGuard",
    "ImportPlan",
    "PidCheck",
    "RestrictedUnpickler",
    "check_torch_storage_pid",
    "restricted_loads",
]

#: Walker kinds that are one `find_class` call each.
_IMPORT_KINDS = frozenset({"GLOBAL", "STACK_GLOBAL", "INST"})
_EXT_KINDS = frozenset({"EXT1", "EXT2", "EXT4"})
#: joblib reads raw array bytes after each wrapper's BUILD; the C unpickler
#: would read them as opcodes, so such a walk does not describe this load.
_JOBLIB_WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")
#: The most a non-`bytes` buffer hands the C unpickler at once (copied: see `_Held`).
_PREFETCH = 1 << 17
#: The most a `bytes` buffer hands it at once (a view: see `_Held`).
_VIEW = 8 << 20
_MAX_SHOWN = 200


@dataclass(frozen=True)
class ExpectedImport:
    """One `find_class` call the walk predicts."""

    raw: tuple[str, str]
    """(module, name) as written in the stream: what `find_class` receives."""
    module: str
    qualname: str
    """The name the walker mapped with the protocol below, and judged."""
    proto: int
    """The protocol current at the opcode."""
    kind: str
    """GLOBAL, STACK_GLOBAL, INST; EXT1/2/4 or computed are never allowed."""
    offset: int
    uses: frozenset[str]
    """How the pickle uses this name, over all its imports of it, as the scanner
    counts them (`effective_uses`): what `decide` judges against the entry's scope."""
    folded_away: bool = False
    """`builtins.getattr` used only as folded `getattr(<global>, '<name>')`."""
    shapes: frozenset[Shape | None] = frozenset()
    """The argument shapes of every call of this name in the pickle."""

    @property
    def name(self) -> str:
        """Canonical spelling of the mapped name."""
        return canonical(self.module, self.qualname)


@dataclass(frozen=True)
class ImportPlan:
    """What the walk of one pickle allows its load to do."""

    start: int
    end: int
    """The pickle's bytes in the walked buffer: from its first opcode to after STOP."""
    calls: tuple[ExpectedImport, ...]
    """Every `find_class` call, in stream order."""
    folds: Mapping[tuple[str, str], frozenset[str]]
    """Dotted names reached by folded getattr, with how they are used."""
    refusal: tuple[str, int | None, str] | None = None
    """(rule name, offset, message) when the walk itself forbids loading: an EXT
    opcode, any event, or a walk that did not reach STOP."""
    joblib_arrays: int | None = None
    """Offset of a joblib NumpyArrayWrapper: the walk then skipped raw array
    bytes as `joblib.load` does, and only a joblib reader follows it."""
    persistent_ids: tuple[int, ...] = ()
    """Offsets of PERSID/BINPERSID opcodes."""

    @classmethod
    def from_walk(cls, walk: PickleWalk, data: Any = None) -> ImportPlan:
        """The plan for the pickle `walk` describes; `data` is the walked buffer.

        Uses and call shapes are gathered per name over the whole pickle, as
        the scanner gathers them, so `find_class` asks `decide` exactly what the
        scan asked. Without `data` (tests of the binding alone) no call shapes
        are known, and an entry that scopes its calls refuses every call.
        """
        calls: list[ExpectedImport] = []
        folds: dict[tuple[str, str], set[str]] = {}
        refusal: tuple[str, int | None, str] | None = None
        effective = effective_uses(walk.globals)
        uses_of: dict[tuple[str, str, bool], set[str]] = {}
        shapes_of: dict[tuple[str, str, bool], set[Shape | None]] = {}
        for g in walk.globals:
            key = (g.module, g.name, g.kind == "getattr")
            uses_of.setdefault(key, set()).update(effective[id(g)])
            shapes_of.setdefault(key, set()).update(
                call_shape(data, c) if data is not None else None
                for c in g.calls
                if c.use == Use.CALLED
            )
        for g in walk.globals:
            if g.kind == "getattr":
                folds.setdefault((g.module, g.name), set()).update(
                    uses_of[(g.module, g.name, True)]
                )
                continue
            key = (g.module, g.name, False)
            raw = g.raw or (g.module, g.name)
            calls.append(
                ExpectedImport(
                    raw=raw,
                    module=g.module,
                    qualname=g.name,
                    proto=g.proto,
                    kind=g.kind,
                    offset=g.offset,
                    uses=frozenset(uses_of[key]),
                    folded_away=g.folded_away,
                    shapes=frozenset(shapes_of[key]),
                )
            )
            if g.ext is not None and refusal is None:
                refusal = (
                    "extension-code",
                    g.offset,
                    f"{g.kind} {g.ext} at offset {g.offset}: the global would come from the "
                    "process's copyreg extension cache, which find_class cannot check",
                )
        if refusal is None and walk.events:
            first = min(walk.events, key=lambda e: e.offset)
            refusal = (first.rule, first.offset, first.message)
        if refusal is None and not walk.complete:
            refusal = (
                "scan-load-mismatch",
                walk.end,
                f"the scan stopped at offset {walk.end} before this pickle's STOP",
            )
        wrapper = next((g for g in walk.globals if (g.module, g.name) == _JOBLIB_WRAPPER), None)
        return cls(
            start=walk.start,
            end=walk.end,
            calls=tuple(calls),
            folds={k: frozenset(v) for k, v in folds.items()},
            refusal=refusal,
            joblib_arrays=wrapper.offset if wrapper is not None else None,
            persistent_ids=tuple(offset for offset, _pid in walk.persids),
        )


PidCheck = Callable[[object, "ImportGuard"], None]
"""Validates a persistent id before `persistent_load` sees it; raises to refuse."""


class _FoldedGetattr:
    """The `builtins.getattr` of a folded `getattr(<global>, '<name>')`."""

    __slots__ = ("_guard",)

    def __init__(self, guard: ImportGuard) -> None:
        self._guard = guard

    def __call__(self, obj: object, name: object, /) -> object:
        return self._guard._fold(obj, name)

    def __repr__(self) -> str:
        return "<safeload restricted getattr>"


class ImportGuard:
    """`find_class` for one walked pickle, usable by any unpickler.

    The k-th call must be the k-th import of the plan (same names as
    written); the name is mapped with the protocol the walk saw at that
    opcode, judged by `Policy.decide`, and only an allowed global's module is
    imported. Everything else raises `UnsafeFileError`. The guard does not
    check `plan.refusal`: the unpickler using it must, before loading.
    """

    def __init__(self, plan: ImportPlan, policy: Policy, *, location: str = "<bytes>") -> None:
        self.plan = plan
        self.policy = policy
        self.location = location
        self.calls_made = 0
        self._getattr = _FoldedGetattr(self)
        # id -> (object, names it was imported as): the object is kept alive
        # so that its id cannot be reused by another object meanwhile.
        self._origins: dict[int, tuple[object, list[tuple[str, str]]]] = {}
        # (stand-in, global) for each checking stand-in handed out: see `hand_back`.
        self._stand_ins: list[tuple[object, object]] = []

    @property
    def finished(self) -> bool:
        """True once every predicted import has been asked for."""
        return self.calls_made == len(self.plan.calls)

    def find_class(self, module_name: str, global_name: str, /) -> Any:
        """The global the next import opcode names, if `Policy.decide` allows it."""
        sys.audit("pickle.find_class", module_name, global_name)
        index = self.calls_made
        self.calls_made = index + 1
        calls = self.plan.calls
        if index >= len(calls) or calls[index].raw != (module_name, global_name):
            shown = _shown(f"{module_name}.{global_name}")
            raise self.mismatch(f"find_class({shown}) is not the import the scan saw next")
        call = calls[index]
        if call.kind in _EXT_KINDS:
            raise self.refuse("extension-code", "EXT opcode", call.offset)
        if call.kind not in _IMPORT_KINDS:
            raise self.refuse(
                "computed-global-name",
                f"STACK_GLOBAL operands computed while loading: {_shown(call.name)}",
                call.offset,
            )
        module, qualname = map_name(module_name, global_name, call.proto)
        if (module, qualname) != (call.module, call.qualname):
            # Only a plan whose protocols are not the walk's can get here.
            raise self.mismatch(f"{call.name} maps differently at load time", call.offset)
        if call.folded_away:
            return self._getattr
        decision = self.policy.decide(module, qualname, call.uses, call.shapes)
        if not decision.allowed:
            raise self.refusal(decision, call.offset, call.raw)
        # Only now, for an allowed global, is its module imported.
        obj = _resolve(module, qualname, dotted=call.proto >= 4)
        self._remember(obj, [(module, qualname)])
        # A constructor whose arguments native code trusts is handed out as a
        # stand-in that checks them first (safeload.load._validators).
        handed = checked_constructor(module, qualname, obj, self.location)
        if handed is not obj:
            self._stand_ins.append((handed, obj))
        return handed

    def hand_back(self, result: Any) -> Any:
        """`result` holding the globals themselves where it holds their stand-ins.

        Called once the load is over: every call made while loading went
        through the stand-ins (whoever made it); what the pickle kept as data
        is the global, as `pickle.loads` returns it (`_stand_ins`). Raises
        `UnsupportedFormatError` when a stand-in is held where it cannot be
        swapped back.
        """
        pairs, self._stand_ins = self._stand_ins, []
        if not pairs or not held_elsewhere(pairs):
            return result
        return swap_stand_ins(result, {id(s): real for s, real in pairs}, self.location)

    def imported_as(self, obj: object) -> tuple[tuple[str, str], ...]:
        """The (module, qualname) names under which this guard handed out `obj`."""
        entry = self._origins.get(id(obj))
        if entry is None or entry[0] is not obj:
            return ()
        return tuple(entry[1])

    def decide_imported(self, obj: object, usage: tuple[Use, ...] = ()) -> Decision | None:
        """`Policy.decide` for an object this guard handed out, used as `usage` says.

        None when `find_class` (or a folded getattr) did not hand out `obj`;
        otherwise the first refusal among its names, else the first decision.
        """
        names = self.imported_as(obj)
        if not names:
            return None
        decisions = [self.policy.decide(m, q, usage) for m, q in names]
        return next((d for d in decisions if not d.allowed), decisions[0])

    def fold_decision(self, module: str, qualname: str) -> Decision | None:
        """The decision for a dotted name reached by folded getattr; None if the
        walk did not fold it."""
        uses = self.plan.folds.get((module, qualname))
        if uses is None:
            return None
        return self.policy.decide(module, qualname, uses)

    def refuse(self, rule_name: str, message: str, offset: int | None) -> UnsafeFileError:
        """The error for a refusal by rule (not a global's decision)."""
        rule = self.policy.rule(rule_name)
        finding = Finding(
            rule=rule.id,
            rule_name=rule.name,
            severity=rule.severity,
            verdict=rule.verdict,
            message=message,
            location=self.location,
            offset=offset,
            fix=rule.fix,
        )
        text = (
            f"{self.location}: refused to load: {message} "
            f"({rule.id} {rule.name}: {rule.summary}). Fix: {rule.fix}"
        )
        return UnsafeFileError(text, path=self.location, findings=[finding])

    def mismatch(self, message: str, offset: int | None = None) -> UnsafeFileError:
        """The error for a load that left the path its scan walked."""
        return self.refuse("scan-load-mismatch", message, offset)

    def refusal(
        self, decision: Decision, offset: int | None = None, raw: tuple[str, str] | None = None
    ) -> UnsafeFileError:
        """The error for a global `decision` refuses (`raw`: the name as written)."""
        rule = decision.rule
        assert rule is not None  # only refusals come here
        name = _shown(decision.name)
        written = ""
        if raw is not None and raw != (decision.module, decision.qualname):
            written = f" (written as {_shown('.'.join(raw))})"
        if decision.denied:
            why = f"{rule.summary[:1].lower()}{rule.summary[1:]}"
            fix = rule.fix
        else:
            # Only a name on no allow pack may be allowed by the user; a
            # denied one never is (deny rules win over allow entries).
            why = "not on any allow pack"
            fix = f'if you trust the code that defines it, allow it: allow=["{name}"]'
        finding = Finding(
            rule=rule.id,
            rule_name=rule.name,
            severity=rule.severity,
            verdict=decision.verdict,
            message=f"{name}{written}: {why}",
            location=self.location,
            offset=offset,
            global_name=decision.name,
            usage=tuple(u.value for u in decision.usage),
            fix=fix,
        )
        text = (
            f"{self.location}: refused to load global {name}{written}: {why} "
            f"({rule.id} {rule.name}). Fix: {fix}"
        )
        return UnsafeFileError(text, path=self.location, findings=[finding])

    def _remember(self, obj: object, names: list[tuple[str, str]]) -> None:
        entry = self._origins.get(id(obj))
        if entry is not None and entry[0] is obj:
            entry[1].extend(n for n in names if n not in entry[1])
        else:
            self._origins[id(obj)] = (obj, list(names))

    def _fold(self, obj: object, name: object) -> object:
        bases = self.imported_as(obj)
        if not bases or type(name) is not str:
            raise self.mismatch(
                "getattr applied to something other than an imported global and a string"
            )
        decisions = [
            d for d in (self.fold_decision(m, f"{q}.{name}") for m, q in bases) if d is not None
        ]
        if not decisions:
            shown = _shown(f"{canonical(*bases[0])}.{name}")
            raise self.mismatch(f"getattr reaches {shown}, which the scan did not fold")
        for decision in decisions:
            if not decision.allowed:
                raise self.refusal(decision)
        value = getattr(obj, name)
        self._remember(value, [(d.module, d.qualname) for d in decisions])
        return value


class RestrictedUnpickler(_pickle.Unpickler):
    """The C unpickler for one walked pickle, importing only allowed globals.

    `data` is the buffer the walk was made over (bytes, bytearray, memoryview,
    mmap); only `data[plan.start:plan.end]` is read, from memory. Globals go
    through an `ImportGuard`. PERSID and BINPERSID are refused unless
    `persistent_load` is given, and then every persistent id first goes
    through `check_pid` (e.g. `check_torch_storage_pid`). `load()` may be
    called once.
    """

    def __init__(
        self,
        data: Any,
        plan: ImportPlan,
        policy: Policy,
        *,
        location: str = "<bytes>",
        persistent_load: Callable[[object], object] | None = None,
        check_pid: PidCheck | None = None,
        encoding: str = "ASCII",
        errors: str = "strict",
    ) -> None:
        if persistent_load is not None and check_pid is None:
            raise TypeError("persistent_load needs check_pid (e.g. check_torch_storage_pid)")
        self._size = plan.end - plan.start
        self._reader = _Held(data, plan.start, plan.end)
        super().__init__(self._reader, fix_imports=True, encoding=encoding, errors=errors)
        self.guard = ImportGuard(plan, policy, location=location)
        self._pers = persistent_load
        self._check_pid = check_pid
        self._used = False

    def load(self) -> Any:
        """Load the pickle, or raise `UnsafeFileError` without importing anything refused."""
        if self._used:
            raise RuntimeError("a RestrictedUnpickler loads its one pickle once")
        self._used = True
        guard = self.guard
        plan = guard.plan
        if plan.refusal is not None:
            rule_name, offset, message = plan.refusal
            raise guard.refuse(rule_name, message, offset)
        if plan.joblib_arrays is not None:
            raise guard.mismatch(
                "the scan followed joblib's reading (raw array bytes after each "
                "NumpyArrayWrapper), which the C unpickler does not: load it as joblib",
                plan.joblib_arrays,
            )
        if plan.persistent_ids and self._pers is None:
            # Refused before anything runs, rather than at the opcode.
            raise guard.refuse(
                "persistent-id",
                "persistent id: no persistent_load was supplied",
                plan.persistent_ids[0],
            )
        obj = super().load()
        if not guard.finished or self._reader.tell() != self._size:
            raise guard.mismatch(
                f"the load asked for {guard.calls_made} of {len(plan.calls)} predicted globals "
                f"and read {self._reader.tell()} of {self._size} bytes",
                plan.end,
            )
        self.memo.clear()  # the memo's references are not the result's
        return guard.hand_back(obj)

    def find_class(self, module_name: str, global_name: str, /) -> Any:
        """`ImportGuard.find_class`: the next predicted import, if allowed."""
        return self.guard.find_class(module_name, global_name)

    def persistent_load(self, pid: Any) -> Any:
        """Refuse, unless the caller supplied `persistent_load` and `check_pid` accepts `pid`."""
        if self._pers is None:
            raise self.guard.refuse(
                "persistent-id",
                f"persistent id {_pid_text(pid)}: no persistent_load was supplied",
                None,
            )
        assert self._check_pid is not None  # __init__ requires it with persistent_load
        self._check_pid(pid, self.guard)
        return self._pers(pid)


class _Held:
    """The file the C unpickler reads `data[start:end]` from; nothing past `end`.

    A `bytes` buffer or the guarded loader's `HeldBuffer` (never closed, never
    resized) is handed out as views:
    `peek` gives the C unpickler up to `_VIEW` bytes, which it parses in place
    as `pickle.loads` does, with no copy and no call per frame or opcode; it
    calls `read` to move past what it consumed (hence `tell`) before the next
    `peek`. Those two calls are Python code, where a thread waiting for the
    GIL gets it: the signature check hashing the same bytes would otherwise
    wait for the end of a long load of bytes or arrays, which never leaves C.
    Any other buffer (an mmap must stay closable, a bytearray resizable) is
    handed out in copies, `peek` giving at most `_PREFETCH` bytes, so the
    unpickler never holds an export of it nor a copy of all of it.
    """

    __slots__ = ("_data", "_end", "_pos", "_start", "_view")

    def __init__(self, data: Any, start: int, end: int) -> None:
        self._data = data
        self._view = (
            memoryview(data) if type(data) is bytes or isinstance(data, HeldBuffer) else None
        )
        self._start = self._pos = start
        self._end = end

    def _slice(self, start: int, stop: int) -> Any:
        if self._view is not None:
            return self._view[start:stop]
        with memoryview(self._data) as view, view[start:stop] as part:
            return bytes(part)

    def _advance(self, size: int) -> Any:
        start = self._pos
        self._pos = min(self._end, start + size)
        return self._slice(start, self._pos)

    def peek(self, size: int = 0, /) -> Any:
        stop = min(self._end, self._pos + (_VIEW if self._view is not None else _PREFETCH))
        return self._slice(self._pos, stop)

    def read(self, size: int | None = -1, /) -> Any:
        return self._advance(self._end - self._pos if size is None or size < 0 else size)

    def readinto(self, buffer: Any, /) -> int:
        with memoryview(buffer) as target, target.cast("B") as flat:
            chunk = self._advance(len(flat))
            flat[: len(chunk)] = chunk
            return len(chunk)

    def readline(self, size: int | None = -1, /) -> Any:
        at = self._pos
        while at < self._end:  # in bounded steps: only a line's length is copied
            stop = min(at + _PREFETCH, self._end)
            newline = bytes(self._slice(at, stop)).find(b"\n")
            if newline >= 0:
                return self._advance(at + newline + 1 - self._pos)
            at = stop
        return self._advance(self._end - self._pos)

    def tell(self) -> int:
        return self._pos - self._start


def _resolve(module: str, qualname: str, *, dotted: bool) -> object:
    """What `find_class` returns, as CPython resolves it (`Lib/pickle.py`
    `find_class` and `_getattribute`, `Modules/_pickle.c` `getattribute`)."""
    importlib.import_module(module)
    obj: object = sys.modules[module]
    if not dotted:
        # Below protocol 4 the whole name is one attribute, dots and all.
        return getattr(obj, qualname)
    for part in qualname.split("."):
        if part == "<locals>":
            raise AttributeError(f"Can't get local attribute {qualname!r} on {obj!r}")
        obj = getattr(obj, part)
    return obj


def _shown(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


_PLAIN = (str, bytes, int, bool, float, type(None))


def _pid_text(pid: object, depth: int = 0) -> str:
    """A persistent id for a message, without running any object's own __repr__."""
    if type(pid) in _PLAIN:
        return _shown(repr(pid))
    if type(pid) is tuple and depth == 0:
        return _shown("(" + ", ".join(_pid_text(x, 1) for x in pid[:8]) + ")")
    return f"<{type(pid).__qualname__}>"


def check_torch_storage_pid(pid: object, guard: ImportGuard) -> None:
    """Accept only a storage id as `torch.save` writes it; raise `UnsafeFileError` otherwise.

    Zip format: `('storage', <storage type>, key: str, location: str, numel: int)`;
    the legacy format adds view metadata, None or `(view key: str, offset: int,
    size: int)`. The storage type must be an object `guard` imported whose name
    `Policy.decide` allows as part of a persistent id: the rule the scanner
    applies to the same ids (`safeload.scan._judge._is_torch_storage_pid`).
    A `PidCheck` for `RestrictedUnpickler(check_pid=...)`.
    """
    # Types are checked before any comparison: an object's own __eq__ could run.
    if type(pid) is not tuple or len(pid) not in (5, 6) or type(pid[0]) is not str:
        raise guard.refuse(
            "persistent-id", f"persistent id of type {type(pid).__name__} is not a storage id", None
        )
    if pid[0] != "storage":
        raise guard.refuse("persistent-id", f"persistent id tag {_pid_text(pid[0])}", None)
    decision = guard.decide_imported(pid[1], (Use.PERSISTENT_ID,))
    if decision is None:
        raise guard.refuse(
            "persistent-id",
            f"storage type {_pid_text(pid[1])} is not a global this pickle imported",
            None,
        )
    if not decision.allowed:
        raise guard.refusal(decision)
    key, location, numel = pid[2:5]
    ok = type(key) is str and type(location) is str and type(numel) is int
    if len(pid) == 6:
        view = pid[5]
        ok = ok and (
            view is None
            or (
                type(view) is tuple
                and len(view) == 3
                and type(view[0]) is str
                and type(view[1]) is int
                and type(view[2]) is int
            )
        )
    if not ok:
        raise guard.refuse(
            "persistent-id", f"persistent id {_pid_text(pid)} is not a PyTorch storage id", None
        )


_default_policy: Policy | None = None


def restricted_loads(
    data: Any,
    policy: Policy | None = None,
    *,
    location: str = "<bytes>",
    max_opcodes: int = DEFAULT_MAX_OPCODES,
    encoding: str = "ASCII",
    errors: str = "strict",
) -> Any:
    """Walk `data` as one pickle and load it through `RestrictedUnpickler`.

    The convenience form of scan-then-load for a plain pickle: anything but
    one complete pickle (optionally followed by padding that no reader
    interprets: a note, not a verdict) is refused, as
    are persistent ids.
    """
    global _default_policy
    if policy is None:
        if _default_policy is None:
            _default_policy = Policy.default()
        policy = _default_policy
    analysis = analyze(data, max_opcodes=max_opcodes)
    extra = [e for e in analysis.events if policy.rule(e.rule).verdict is not None]
    if extra or len(analysis.pickles) != 1:
        event = extra[0] if extra else None
        rule = policy.rule(event.rule if event is not None else "trailing-data")
        message = event.message if event is not None else "more than one pickle in the buffer"
        finding = Finding(
            rule=rule.id,
            rule_name=rule.name,
            severity=rule.severity,
            verdict=rule.verdict or Verdict.INVALID,
            message=message,
            location=location,
            offset=event.offset if event is not None else None,
            fix=rule.fix,
        )
        raise UnsafeFileError(
            f"{location}: refused to load: {message} ({rule.id} {rule.name}). Fix: {rule.fix}",
            path=location,
            findings=[finding],
        )
    plan = ImportPlan.from_walk(analysis.pickles[0], data)
    unpickler = RestrictedUnpickler(
        data, plan, policy, location=location, encoding=encoding, errors=errors
    )
    return unpickler.load()
