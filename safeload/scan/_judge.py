"""Judge what the locator found: findings for every reading and note, by a policy."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .._checks import (
    UNBOUNDED,
    Check,
    checks_for,
    estimate_load_cost,
    run_symbolic,
    shown,
)
from .._formats import Located, ReadingKind
from .._machine import opcodes as O
from .._machine.shapes import Shape, call_shape, effective_uses
from .._machine.walker import (
    Event,
    GRef,
    PersRes,
    StreamAnalysis,
    Tup,
    const_value,
    internal_error_message,
    is_str_const,
    render,
    torch_module_class,
)
from .._names import canonical
from ..policy import Policy, Rule, Use
from ..report import Finding, Severity, Verdict


@dataclass
class _Agg:
    """All references to one global within one location."""

    first: GRef
    count: int = 0
    uses: set[str] = field(default_factory=set)
    args: list[str] = field(default_factory=list)
    shapes: set[Shape | None] = field(default_factory=set)


def judge(located: Located, policy: Policy) -> list[Finding]:
    """Every finding of a located file: its notes, then its readings' globals and events.

    Sorted with the file's own findings first, then by member and offset.
    """
    found = [
        structural(policy, note.rule, note.message, note.location, note.offset)
        for note in located.notes
    ]
    refusals: list[frozenset[tuple[str, str]]] = []
    for reading in located.readings:
        per: list[Finding] = []
        try:
            refused = _judge_reading(
                reading.analysis,
                reading.data,
                policy,
                reading.location,
                per,
                torch_storage_pids=reading.kind is ReadingKind.TORCH,
            )
        except Exception as exc:  # the last resort: a bug is a verdict, not a crash
            per.append(internal_error(policy, exc, reading.location))
            refused = frozenset()
        refusals.append(refused)
        if reading.base:
            per = [
                dataclasses.replace(f, offset=f.offset - reading.base)
                if f.offset is not None
                else f
                for f in per
            ]
        found.extend(per)
    try:
        cost = _load_cost(located, policy, refusals)
    except Exception as exc:  # the last resort: a bug is a verdict, not a crash
        cost = internal_error(policy, exc, located.location)
    if cost is not None:
        found.append(cost)
    top = located.location
    found.sort(
        key=lambda f: (
            f.location != top,
            f.location,
            f.offset if f.offset is not None else -1,
        )
    )
    return found


def findings_for(
    analysis: StreamAnalysis,
    data: Any,
    policy: Policy,
    location: str,
    *,
    torch_storage_pids: bool = False,
) -> list[Finding]:
    """Findings for every global and event of `analysis`, in stream order."""
    out: list[Finding] = []
    _judge_reading(analysis, data, policy, location, out, torch_storage_pids=torch_storage_pids)
    return out


def _judge_reading(
    analysis: StreamAnalysis,
    data: Any,
    policy: Policy,
    location: str,
    out: list[Finding],
    *,
    torch_storage_pids: bool = False,
) -> frozenset[tuple[str, str]]:
    """`findings_for` into `out` (so that an exception keeps what was found before
    it), and the globals the policy refuses as they are used (which the checks and
    the load-cost estimate leave to their own findings)."""
    aggs: dict[tuple[str, str, str], _Agg] = {}
    effective = effective_uses(analysis.globals)
    for g in analysis.globals:
        if not g.resolved:
            continue  # reported through its event (computed name, EXT code)
        if g.folded_away:
            continue  # every reference was folded into the dotted name it reaches
        key = (g.module, g.name, g.kind if g.kind == "getattr" else "")
        agg = aggs.get(key)
        if agg is None:
            agg = aggs[key] = _Agg(g)
        agg.count += 1
        agg.uses |= effective[id(g)]
        agg.shapes.update(call_shape(data, c) for c in g.calls if c.use == Use.CALLED)
        for a in g.args:
            if len(agg.args) < 3 and a not in agg.args:
                agg.args.append(a)
    refused: set[tuple[str, str]] = set()
    for agg in aggs.values():
        finding = _global_finding(agg, policy, location)
        if finding is not None:
            out.append(finding)
            refused.add((agg.first.module, agg.first.name))
    out.extend(_check_findings(analysis, data, policy, location, refused))
    for event in analysis.all_events:
        out.append(_event_finding(event, policy, location))
    out.extend(_persid_findings(analysis, data, policy, location, torch_storage_pids))
    out.sort(key=lambda f: f.offset if f.offset is not None else -1)
    return frozenset(refused)


def _usage(uses: Iterable[str]) -> tuple[str, ...]:
    present = {Use(u) for u in uses}
    if len(present) > 1:
        present.discard(Use.STORED)
    return tuple(u.value for u in Use if u in present)


def _global_finding(agg: _Agg, policy: Policy, location: str) -> Finding | None:
    g = agg.first
    decision = policy.decide(g.module, g.name, agg.uses, agg.shapes)
    rule = decision.rule
    if rule is None:
        return None
    name = g.canonical
    usage = _usage(agg.uses)
    how = _describe(g, usage, agg.args)
    if decision.denied:
        message = f"{how}: {rule.summary[:1].lower()}{rule.summary[1:]}"
        fix = rule.fix
    elif decision.detail:
        message = f"{how}: allowlisted, but {decision.detail}"
        fix = rule.fix
    else:
        message = f"{how}: not on any allow pack"
        fix = f"if you trust the code that defines it: --allow '{name}' (or allow = [\"{name}\"] under [tool.safeload])"
    return Finding(
        rule=rule.id,
        rule_name=rule.name,
        severity=rule.severity,
        verdict=decision.verdict,
        message=message,
        location=location,
        offset=g.offset,
        global_name=name,
        usage=usage,
        arguments=tuple(agg.args),
        count=agg.count,
        fix=fix,
    )


def _describe(g: GRef, usage: tuple[str, ...], args: list[str]) -> str:
    name = g.canonical
    if g.kind == "getattr" and g.base is not None:
        text = f"{name} (reached by getattr on {g.base.canonical})"
    elif "." in g.name:
        head = g.name.split(".")[0]
        text = f"{name} ({g.name.split('.', 1)[1]} reached through {g.module}.{head})"
    else:
        text = name
    if g.raw is not None:
        raw_mod, raw_name = g.raw
        text += f" (written as {raw_mod}.{raw_name}; protocol < 3 maps it)"
    verbs = {
        Use.CALLED: "called",
        Use.INSTANTIATED: "instantiated",
        Use.STATE: "given state",
        Use.STATE_REWRITE: "has its attributes rewritten",
        Use.MUTATED: "mutated in place",
        Use.MUTATED_INSTANCE: "instance mutated",
        Use.PERSISTENT_ID: "used in a persistent id",
        Use.GETATTR_BASE: "attribute read",
        Use.STORED: "imported",
    }
    verb = ", ".join(verbs[Use(u)] for u in usage if u in verbs) or "imported"
    if Use.CALLED in usage and args:
        text += f" {verb} with {args[0]}"
    else:
        text += f" {verb}"
    return text


def _event_finding(event: Event, policy: Policy, location: str) -> Finding:
    rule = policy.rule(event.rule)
    return Finding(
        rule=rule.id,
        rule_name=rule.name,
        severity=rule.severity,
        verdict=rule.verdict,
        message=event.message,
        location=location,
        offset=event.offset,
        global_name=event.gref.canonical if event.gref is not None else None,
        usage=_usage(event.gref.uses) if event.gref is not None else (),
        fix=rule.fix,
    )


def _check_findings(
    analysis: StreamAnalysis,
    data: Any,
    policy: Policy,
    location: str,
    refused: set[tuple[str, str]],
) -> list[Finding]:
    """SL406: the named checks of allowed globals, on every object they build.

    Every check applies to its globals whatever their allow entry names (the
    policy only lets an entry name a check that applies to it); a global the
    policy refuses as it is used (on no allow list, or outside its entry's
    scope) has its own finding and is not checked.
    """

    def checks_of(module: str, qualname: str) -> tuple[Check, ...]:
        found = checks_for(module, qualname)
        if not found or (module, qualname) in refused or policy.scope(module, qualname) is None:
            return ()
        return found

    failed: dict[tuple[str, str], list[Any]] = {}
    for failure in run_symbolic(analysis, data, checks_of):
        failed.setdefault((failure.check.name, canonical(*failure.site.name)), []).append(failure)
    if not failed:
        return []
    rule = policy.rule("failed-check")
    out = []
    for (check_name, name), failures in failed.items():
        first = failures[0]
        site = first.site
        message = f"{name} {site.how}: check {check_name} failed: {first.problem}"
        if len(failures) > 1:
            message += f" ({len(failures)} objects fail it)"
        out.append(
            Finding(
                rule=rule.id,
                rule_name=rule.name,
                severity=rule.severity,
                verdict=rule.verdict,
                message=message,
                location=location,
                offset=site.res.offset,
                global_name=name,
                usage=_usage(site.gref.uses),
                count=len(failures),
                fix=rule.fix,
            )
        )
    return out


def _load_cost(
    located: Located, policy: Policy, refusals: list[frozenset[tuple[str, str]]]
) -> Finding | None:
    """SL309: the estimated cost of constructing every reading's objects, against the
    budget for the file's size (the expanded size of a compressed one). Calls of
    globals the policy refuses have their own findings and are not counted."""
    total = 0
    largest: list[tuple[int, str, int | None]] = []
    for reading, refused in zip(located.readings, refusals, strict=True):
        part = estimate_load_cost(
            reading.analysis,
            reading.data,
            torch_storages=reading.kind is ReadingKind.TORCH,
            skip=refused,
        )
        total = min(UNBOUNDED, total + part.total)
        top = reading.location == located.location
        for item in part.largest:
            offset = item.offset - reading.base
            where = f"offset {offset}" if top else f"{reading.location} @ offset {offset}"
            largest.append((item.cost, f"{item.what} ({where})", offset if top else None))
    size = max([located.size, *(_buffer_size(r.data) for r in located.readings)])
    budget = policy.load_budget(size)
    if total <= budget:
        return None
    largest.sort(key=lambda x: -x[0])
    rule = policy.rule("load-cost-limit")
    return Finding(
        rule=rule.id,
        rule_name=rule.name,
        severity=rule.severity,
        verdict=rule.verdict,
        message=(
            f"constructing its objects would cost about {shown(total)} (budget "
            f"{shown(budget)} for {size} bytes: {policy.max_load_cost:g} per byte, at least "
            f"{shown(policy.load_budget(0))}); largest: "
            + "; ".join(what for _cost, what, _offset in largest[:3])
        ),
        location=located.location,
        offset=largest[0][2] if largest else None,
        fix=rule.fix,
    )


def _buffer_size(data: Any) -> int:
    try:
        return len(data)
    except TypeError:
        return 0


def _is_torch_storage_pid(data: Any, pid: object, policy: Policy) -> bool:
    """A storage id as torch.save writes it.

    Zip format: ('storage', <storage type>, key: str, location: str, numel:
    int).  Legacy format adds view metadata: None or (view key: str, offset:
    int, size: int), all constants.  The storage type must be a global
    `Policy.decide` allows as part of a persistent id.  The restricted
    unpickler's `check_torch_storage_pid` applies the same rules to the
    loaded values, so a load accepts exactly the ids this scan accepts.
    """
    if type(pid) is not Tup or pid.items is None or pid.n not in (5, 6):
        return False
    tag, storage_type, key, location, numel, *view = pid.items
    try:
        if not is_str_const(data, tag) or const_value(data, tag) != "storage":
            return False
    except (UnicodeDecodeError, ValueError):
        return False
    if (
        type(storage_type) is not GRef
        or not storage_type.resolved
        or not policy.decide(storage_type.module, storage_type.name, (Use.PERSISTENT_ID,)).allowed
    ):
        return False
    if not (is_str_const(data, key) and is_str_const(data, location) and _is_int(data, numel)):
        return False
    if not view:
        return True
    (meta,) = view
    if type(meta) is int:
        return bool(data[meta] == O.NONE)
    return (
        type(meta) is Tup
        and meta.items is not None
        and meta.n == 3
        and is_str_const(data, meta.items[0])
        and _is_int(data, meta.items[1])
        and _is_int(data, meta.items[2])
    )


def _is_int(data: Any, item: object) -> bool:
    """A constant that unpickles as an `int` (not a bool: INT `01` is True)."""
    if type(item) is not int:
        return False
    try:
        return type(const_value(data, item)) is int
    except (ValueError, IndexError, UnicodeDecodeError):
        return False


def _persid_findings(
    analysis: StreamAnalysis, data: Any, policy: Policy, location: str, torch_ok: bool
) -> list[Finding]:
    pending = []
    for walk in analysis.pickles:
        for offset, pid in walk.persids:
            if torch_ok and _is_torch_storage_pid(data, pid, policy):
                continue
            if walk.module_pids and torch_module_class(data, pid) is not None:
                continue  # the class is judged as the global it is
            pending.append((offset, pid))
    if not pending:
        return []
    rule: Rule = policy.rule("persistent-id")
    offset, pid = pending[0]
    shown = repr(pid) if isinstance(pid, str) else render(data, pid)
    if isinstance(pid, PersRes):  # pragma: no cover - pids are never results
        shown = "<persistent object>"
    return [
        Finding(
            rule=rule.id,
            rule_name=rule.name,
            severity=rule.severity,
            verdict=rule.verdict,
            message=f"persistent id {shown} is resolved by the loader's persistent_load",
            location=location,
            offset=offset,
            count=len(pending),
            fix=rule.fix,
        )
    ]


def verdict_of(findings: Iterable[Finding]) -> Verdict:
    """The file verdict: the worst verdict any finding carries."""
    return Verdict.worst([f.verdict for f in findings if f.verdict is not None])


def internal_error(policy: Policy, exc: BaseException, location: str) -> Finding:
    """SL312: the scan of `location` stopped at an unexpected exception (a bug, not the file's
    fault); the findings made before it are kept by the caller."""
    return structural(policy, "internal-error", internal_error_message(exc), location, None)


def structural(
    policy: Policy, rule_name: str, message: str, location: str, offset: int | None
) -> Finding:
    """A finding for a container-level problem (unreadable, unsupported, polyglot)."""
    rule = policy.rule(rule_name)
    return Finding(
        rule=rule.id,
        rule_name=rule.name,
        severity=rule.severity,
        verdict=rule.verdict,
        message=message,
        location=location,
        offset=offset,
        fix=rule.fix,
    )


__all__ = ["Severity", "findings_for", "internal_error", "judge", "structural", "verdict_of"]
