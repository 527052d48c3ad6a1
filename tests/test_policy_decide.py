"""`Policy.decide`: the one judgment of a global, asked by the scanner and the loader."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

import pytest
from picklebuild import binpersid, glob, mark, proto, reduce, sbu, stop, tuple_

import safeload
from safeload import Policy, PolicyError, Verdict
from safeload._machine.walker import analyze
from safeload._names import Use, map_name
from safeload.policy import AllowPack, Decision, Shape, builtin_packs, builtin_rules
from safeload.scan._judge import findings_for
from tools import corpus

POLICY = Policy.default()


def test_allowed_global() -> None:
    d = POLICY.decide("collections", "OrderedDict")
    assert d.allowed and not d.denied
    assert d.verdict is Verdict.SAFE
    assert d.rule is None
    assert d.name == "collections.OrderedDict"


def test_unknown_global_is_refused_by_the_unknown_global_rule() -> None:
    d = POLICY.decide("mylib.models", "Thing")
    assert not d.allowed and not d.denied
    assert d.verdict is Verdict.UNKNOWN
    assert d.rule is not None and d.rule.id == "SL401"


def test_exact_deny() -> None:
    d = POLICY.decide("os", "system")
    assert not d.allowed and d.denied
    assert d.verdict is Verdict.DANGEROUS
    assert d.rule is not None and d.rule.id == "SL101"


def test_module_prefix_deny_covers_submodules() -> None:
    d = POLICY.decide("subprocess", "Popen")
    assert d.rule is not None and d.rule.id == "SL101"
    d = POLICY.decide("torch.jit._script", "RecursiveScriptModule")
    assert d.rule is not None and d.rule.id == "SL102"


def test_deny_through_a_dotted_relay() -> None:
    # `pathlib:os.system` is os.system reached as an attribute of pathlib.
    d = POLICY.decide("pathlib", "os.system")
    assert d.rule is not None and d.rule.id == "SL101"
    assert d.name == "pathlib:os.system"
    # Every suffix of the path is tried as a module: numpy:core.os.system.
    d = POLICY.decide("numpy", "core.os.system")
    assert d.rule is not None and d.rule.id == "SL101"


def test_allowing_the_relay_module_does_not_allow_the_relay() -> None:
    policy = Policy.build(allow=["pathlib.PurePosixPath"])
    assert policy.decide("pathlib", "PurePosixPath").allowed
    assert not policy.decide("pathlib", "PurePosixPath.os").allowed


def test_exact_deny_wins_over_a_module_prefix_along_the_path() -> None:
    # torch.jit is denied as a module (SL102), but the path ends at os.system.
    d = POLICY.decide("torch", "jit.unsupported_tensor_ops.os.system")
    assert d.rule is not None and d.rule.id == "SL101"


@pytest.mark.parametrize(
    ("module", "qualname"),
    [
        ("numpy", "ndarray.__init__.__globals__"),
        ("collections", "OrderedDict.__dict__"),
        ("numpy", "dtype.__subclasses__"),
        ("numpy", "__builtins__"),
    ],
)
def test_escape_attributes_are_attribute_access(module: str, qualname: str) -> None:
    d = POLICY.decide(module, qualname)
    assert d.rule is not None and d.rule.id == "SL104"
    assert d.verdict is Verdict.DANGEROUS


def test_escape_attribute_is_reported_before_a_module_prefix() -> None:
    # `subprocess` is a module rule (SL101); the escape attribute says more.
    d = POLICY.decide("subprocess", "Popen.__init__.__globals__")
    assert d.rule is not None and d.rule.id == "SL104"


def test_deny_wins_over_a_user_allow_entry() -> None:
    with pytest.raises(PolicyError, match="SL101"):
        Policy.build(allow=["os.system"])
    with pytest.raises(PolicyError, match="SL101"):
        Policy.build(allow=["pathlib:os.system"])


def test_deny_wins_over_an_allow_pack() -> None:
    evil = AllowPack("evil", "lists a denied name", frozenset({("os", "system"), ("os", "getcwd")}))
    policy = Policy(builtin_rules(), [*builtin_packs(), evil])
    assert ("os", "system") in policy.allowed
    d = policy.decide("os", "system")
    assert not d.allowed
    assert d.rule is not None and d.rule.id == "SL101"


def _user_rule_policy(tmp_path: Path, verdict: str) -> Policy:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        "[[rule]]\n"
        'id = "ACME001"\n'
        'name = "acme-note"\n'
        f'verdict = "{verdict}"\n'
        'why = "noted"\n'
        'globals = ["mylib.Thing", "collections.OrderedDict"]\n'
    )
    return Policy.build(rule_files=[rules])


@pytest.mark.parametrize("verdict", ["none", "unknown"])
def test_a_mild_user_deny_rule_never_makes_a_global_safe(tmp_path: Path, verdict: str) -> None:
    policy = _user_rule_policy(tmp_path, verdict)
    for module, qualname in [("mylib", "Thing"), ("collections", "OrderedDict")]:
        d = policy.decide(module, qualname)
        assert d.rule is not None and d.rule.id == "ACME001"
        assert not d.allowed
        assert d.verdict is Verdict.UNKNOWN
    data = proto(2) + glob("mylib", "Thing") + stop()
    report = safeload.scan_bytes(data, policy)
    assert [f.rule for f in report.findings] == ["ACME001"]
    assert report.verdict is Verdict.UNKNOWN


def test_decide_takes_the_mapped_name() -> None:
    # `__builtin__.eval` only means builtins.eval once mapped (protocol < 3).
    assert map_name("__builtin__", "eval", 2) == ("builtins", "eval")
    d = POLICY.decide(*map_name("__builtin__", "eval", 2))
    assert d.rule is not None and d.rule.id == "SL102"
    assert POLICY.decide(*map_name("copy_reg", "_reconstructor", 0)).allowed
    assert not POLICY.decide("copy_reg", "_reconstructor").allowed


def test_usage_is_validated_and_ordered() -> None:
    d = POLICY.decide("collections", "OrderedDict", ["stored", Use.CALLED, "called", "state"])
    assert d.usage == (Use.CALLED, Use.STATE, Use.STORED)
    with pytest.raises(ValueError, match="bogus"):
        POLICY.decide("collections", "OrderedDict", ["bogus"])


@pytest.mark.parametrize("use", list(Use))
def test_user_allow_entries_allow_every_use(use: Use) -> None:
    # Pack entries are scoped (tests/test_scopes.py); a user's own entry is not.
    policy = Policy.build(allow=["mylib.models.Thing"])
    assert policy.decide("mylib.models", "Thing", [use]).allowed
    assert not POLICY.decide("os", "system", [use]).allowed


def test_decision_is_frozen_data() -> None:
    d = POLICY.decide("collections", "OrderedDict")
    assert isinstance(d, Decision)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.verdict = Verdict.DANGEROUS  # type: ignore[misc]


def test_decide_is_the_only_public_judgment() -> None:
    assert not hasattr(POLICY, "is_allowed")
    assert not hasattr(POLICY, "deny_rule")


def test_use_values_are_the_walkers_strings() -> None:
    values = {u.value for u in Use}
    assert values == {
        "called",
        "instantiated",
        "state",
        "state-rewrite",
        "mutated",
        "mutated-instance",
        "persistent-id",
        "getattr-base",
        "folded",
        "stored",
    }
    seen: set[str] = set()
    for _label, obj in corpus.stdlib_objects():
        for _proto, data in corpus.pickles(obj):
            for g in analyze(data).globals:
                seen |= g.uses
    assert seen <= values
    assert {"called", "stored", "instantiated", "state"} <= seen


class _Recording(Policy):
    """The default policy, recording what it is asked; refuses one (name, use)."""

    def __init__(self, refuse: tuple[str, str, Use] | None = None) -> None:
        super().__init__(builtin_rules(), builtin_packs())
        self.asked: list[tuple[str, str, tuple[Use, ...]]] = []
        self.refuse = refuse

    def decide(
        self,
        module: str,
        qualname: str,
        usage: Iterable[Use | str] = (),
        shapes: Iterable[Shape | None] = (),
    ) -> Decision:
        d = super().decide(module, qualname, usage, shapes)
        self.asked.append((module, qualname, d.usage))
        if self.refuse is not None and (module, qualname) == self.refuse[:2]:
            if self.refuse[2] in d.usage:
                return Decision(module, qualname, Verdict.UNKNOWN, self.rule("unknown-global"))
        return d


def test_scanner_findings_ask_decide_with_the_uses() -> None:
    policy = _Recording()
    data = proto(2) + glob("collections", "OrderedDict") + mark() + tuple_() + reduce() + stop()
    report = safeload.scan_bytes(data, policy)
    assert report.safe
    assert ("collections", "OrderedDict", (Use.CALLED,)) in policy.asked


def test_a_decide_refusal_is_a_finding() -> None:
    policy = _Recording(refuse=("collections", "OrderedDict", Use.CALLED))
    data = proto(2) + glob("collections", "OrderedDict") + mark() + tuple_() + reduce() + stop()
    report = safeload.scan_bytes(data, policy)
    assert [(f.rule, f.global_name) for f in report.findings] == [
        ("SL401", "collections.OrderedDict")
    ]


def _storage_pid_pickle() -> tuple[bytes, tuple[str, str]]:
    torch = pytest.importorskip("torch")
    data = corpus.torch_save_data_pkl({"w": torch.zeros(3)})
    storage = next((g.module, g.name) for g in analyze(data).globals if Use.PERSISTENT_ID in g.uses)
    return data, storage


def test_torch_storage_pid_check_goes_through_decide() -> None:
    data, storage = _storage_pid_pickle()
    plain = _Recording()
    analysis = analyze(data)
    assert findings_for(analysis, data, plain, "data.pkl", torch_storage_pids=True) == []
    assert (*storage, (Use.PERSISTENT_ID,)) in plain.asked
    # Refused for use in a persistent id only: the storage id is no longer understood.
    scoped = _Recording(refuse=(*storage, Use.PERSISTENT_ID))
    found = findings_for(analysis, data, scoped, "data.pkl", torch_storage_pids=True)
    assert [f.rule for f in found] == ["SL401", "SL402"]


def test_a_storage_type_that_is_not_a_global_is_not_a_storage_id() -> None:
    # BINPERSID of ('storage', <the result of a call>, ...) is not understood.
    call = glob("collections", "OrderedDict") + mark() + tuple_() + reduce()
    pid = mark() + sbu("storage") + call + sbu("0") + sbu("cpu") + b"K\x03" + tuple_()
    data = proto(2) + pid + binpersid() + stop()
    analysis = analyze(data)
    found = findings_for(analysis, data, POLICY, "x", torch_storage_pids=True)
    assert [f.rule for f in found] == ["SL402"]
