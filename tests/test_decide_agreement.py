"""The scanner and the restricted unpickler judge every global identically.

For every global in the test corpora (every hostile byte-built pickle of the
test suite, and the benign corpus of tools/corpus.py at every protocol), the
scanner's judgment (its findings for that global, from `findings_for`) and
the judgment of the restricted unpickler's `find_class` (an `ImportGuard`
built from the same walk, called with the names exactly as written, in
stream order) must agree: both allow it, or both refuse it with the same
rule ID and the same fully qualified name.

Driven from the walker's GRefs: the raw name (what `find_class` receives),
the mapped name (what the scanner judged) and the protocol at the opcode.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
import test_hostile
import test_walker_audit
from picklebuild import glob, proto, sbu, stack_global, stop

from safeload import Policy, UnsafeFileError
from safeload._machine.walker import analyze
from safeload._names import canonical
from safeload.load._unpickler import ImportGuard, ImportPlan
from safeload.report import Finding
from safeload.scan._judge import findings_for
from tools import corpus

POLICY = Policy.default()
_IMPORTS = {"GLOBAL", "STACK_GLOBAL", "INST"}
_EVENT_RULE = {"computed": "SL201", "EXT1": "SL202", "EXT2": "SL202", "EXT4": "SL202"}

Judgment = tuple[bool, str | None, str | None]
"""(allowed, rule ID, fully qualified global) of one global."""


def _scanner(findings: Iterable[Finding], policy: Policy) -> dict[str, set[str]]:
    """Canonical global -> the rule IDs of the scanner's findings *for that global*
    (deny rules, unknown-global and out-of-scope-use: `Policy.decide`'s answers;
    events that merely mention it are excluded)."""
    out: dict[str, set[str]] = {}
    decided = {policy.rule("unknown-global").id, policy.rule("out-of-scope-use").id}
    for f in findings:
        if f.global_name is None:
            continue
        rule = policy.rules[f.rule] if f.rule in policy.rules else None
        if f.rule in decided or (rule is not None and rule.is_deny):
            out.setdefault(f.global_name, set()).add(f.rule)
    return out


def _loader(guard: ImportGuard, raw: tuple[str, str]) -> Judgment:
    try:
        guard.find_class(*raw)
    except UnsafeFileError as exc:
        return False, exc.rule, exc.global_name
    except (AttributeError, ImportError):
        pass  # allowed, then not resolvable here (e.g. a dotted name below protocol 4)
    return True, None, None


def judgments(
    data: bytes, policy: Policy = POLICY, loader_policy: Policy | None = None
) -> Iterator[tuple[str, Judgment, Judgment]]:
    """(what, scanner judgment, loader judgment) for every global the walk saw."""
    analysis = analyze(data)
    findings = findings_for(analysis, data, policy, "x")
    by_name = _scanner(findings, policy)
    by_offset = {(f.offset, f.rule) for f in findings}
    for walk in analysis.pickles:
        plan = ImportPlan.from_walk(walk, data)
        guard = ImportGuard(plan, loader_policy or policy)
        for call, g in zip(
            plan.calls, [g for g in walk.globals if g.kind != "getattr"], strict=True
        ):
            assert (call.offset, call.proto) == (g.offset, g.proto)
            what = f"{call.kind} {canonical(*call.raw)} at {call.offset} (protocol {call.proto})"
            loaded = _loader(guard, call.raw)
            if call.kind not in _IMPORTS:
                rule = _EVENT_RULE[call.kind]
                scanned: Judgment = (False, rule if (g.offset, rule) in by_offset else None, None)
                yield what, scanned, (loaded[0], loaded[1], None)
                continue
            if g.folded_away:
                scanned = (True, None, None)
            else:
                rules = by_name.get(g.canonical, set())
                assert len(rules) <= 1, (g.canonical, rules)
                scanned = (False, min(rules), g.canonical) if rules else (True, None, None)
            yield what, scanned, loaded
        for g in walk.globals:
            if g.kind != "getattr":
                continue
            decision = guard.fold_decision(g.module, g.name)
            assert decision is not None
            loaded = (
                (True, None, None)
                if decision.allowed
                else (False, decision.rule.id if decision.rule else None, decision.name)
            )
            rules = by_name.get(g.canonical, set())
            scanned = (False, min(rules), g.canonical) if rules else (True, None, None)
            yield f"folded getattr {g.canonical} at {g.offset}", scanned, loaded


def disagreements(streams: Iterable[tuple[str, bytes]], **kw: Any) -> tuple[list[str], int, int]:
    """Every disagreement, the number of globals compared and how many were refused."""
    problems = []
    compared = refused = 0
    for label, data in streams:
        for what, scanned, loaded in judgments(data, **kw):
            compared += 1
            refused += not scanned[0]
            if scanned != loaded:
                problems.append(f"{label}: {what}: scanner {scanned}, find_class {loaded}")
    return problems, compared, refused


# -- the corpora -------------------------------------------------------------------


def hostile_streams() -> list[tuple[str, bytes]]:
    """Every byte-built hostile pickle of the test suite."""
    out = [(f"hostile/{case.id}", case.data) for case in test_hostile.CASES]
    out += [(f"crash/{k}", v) for k, v in test_hostile.SCANNER_CRASHES.items()]
    out += [(f"truncated-inst/{k}", v) for k, v in test_hostile.TRUNCATED_INST.items()]
    out += [("joblib-polyglot", test_hostile.JOBLIB_POLYGLOT)]
    out += [(f"audit/{k}", v) for k, v in test_walker_audit.AGREE.items()]
    return out


def _benign(group: str) -> list[tuple[str, bytes]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if group == "sklearn":
            objects = [(n, e) for n, e, err in corpus.sklearn_estimators() if err is None]
        elif group in ("torch", "joblib"):
            objects = corpus.torch_objects() if group == "torch" else corpus.joblib_objects()
            dump = corpus.torch_save_data_pkl if group == "torch" else corpus.joblib_dump_bytes
            return [(f"{group}/{label}", dump(obj)) for label, obj in objects]
        else:
            objects = corpus.BUILDERS[group]()
        return [
            (f"{group}/{label}.p{p}", data)
            for label, obj in objects
            for p, data in corpus.pickles(obj)
        ]


def test_hostile_corpus_agrees() -> None:
    streams = hostile_streams()
    assert len(streams) > 200
    problems, compared, refused = disagreements(streams)
    assert not problems, "\n".join(problems[:50])
    assert compared > 250
    assert 200 < refused < compared  # refusals and allowed names were both compared


@pytest.mark.parametrize("group", [*corpus.BUILDERS, "sklearn", "torch", "joblib"])
def test_benign_corpus_agrees(group: str) -> None:
    streams = _benign(group)
    assert streams
    problems, compared, _refused = disagreements(streams)
    assert not problems, "\n".join(problems[:50])
    assert compared >= len(streams)


def test_every_protocol_is_covered() -> None:
    streams = _benign("stdlib")
    assert {label.rsplit(".p", 1)[1] for label, _ in streams} == {"0", "1", "2", "3", "4", "5"}
    # A protocol-1 stream has no PROTO opcode: its names are read at protocol 0.
    protos = {g.proto for _label, data in streams for g in analyze(data).globals}
    assert protos == {0, 2, 3, 4, 5}


# -- the comparison itself can fail ----------------------------------------------------


class _Lenient(Policy):
    """A loader-side policy that judges one name differently from the scanner's."""

    def __init__(self) -> None:
        base = Policy.default()
        super().__init__(base.rules.values(), base.packs, [("mylib", "Thing")])


def test_a_loader_judging_differently_is_caught() -> None:
    data = proto(2) + glob("mylib", "Thing") + stop()
    problems, compared, refused = disagreements([("x", data)], loader_policy=_Lenient())
    assert compared == refused == 1
    assert len(problems) == 1 and "mylib.Thing" in problems[0]


def test_protocol_straddling_names_agree() -> None:
    """PROTO switches mid-stream: each name is mapped at the protocol of its opcode."""
    data = (
        proto(4)
        + glob("copy_reg", "_reconstructor")  # protocol 4: not mapped, unknown
        + proto(2)
        + glob("copy_reg", "_reconstructor")  # protocol 2: copyreg._reconstructor, allowed
        + proto(4)
        + sbu("collections")
        + sbu("OrderedDict.fromkeys")
        + stack_global()
        + stop()
    )
    got = [(what.split(" at ")[0], scanned) for what, scanned, _ in judgments(data)]
    assert got[0] == ("GLOBAL copy_reg._reconstructor", (False, "SL401", "copy_reg._reconstructor"))
    assert got[1] == ("GLOBAL copy_reg._reconstructor", (True, None, None))
    problems, _, _ = disagreements([("straddle", data)])
    assert not problems, problems
