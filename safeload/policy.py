"""Policy: rules and allow packs, loaded from data and validated on load.

The built-in rules (`rules/rules.toml`) and allow packs (`rules/allow/*.toml`)
ship inside the wheel as the `safeload.rules` package and are read only
through `importlib.resources`. Users add allowed names and their own deny
rules with `--allow`, `--rules FILE` or a `[tool.safeload]` table.

"Safe" means allowlisted: deny rules only name and explain danger, and a
global that is on no allow pack is `unknown`, never safe.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._checks import APPLIES_TO, check_named
from ._names import Use, canonical, parse_canonical
from .errors import PolicyError
from .report import Severity, Verdict

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["AllowPack", "Decision", "Policy", "Rule", "Use", "UserConfig"]

_RULE_KEYS = {
    "except",
    "id",
    "name",
    "severity",
    "verdict",
    "since",
    "summary",
    "why",
    "fix",
    "globals",
    "modules",
}
_REQUIRED_RULE_KEYS = {"id", "name", "severity", "verdict", "summary", "why", "fix"}
_PACK_KEYS = {"name", "description", "generated_by", "versions", "sources", "globals", "allow"}
_ID_RE = re.compile(r"^[A-Z][A-Z0-9]{1,9}[0-9]{3}$")
_NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_BUILTIN_PREFIX = "SL"
DEFAULT_MAX_LOAD_COST = 64.0
"""The load-cost budget, in bytes of estimated load cost per byte of file."""
LOAD_COST_FLOOR = 256 << 20
"""The budget of a small file: what any file may cost to load, whatever its size."""
#: Attribute names that reach interpreter internals from any object.
_ESCAPE_ATTRIBUTES = frozenset(
    {
        "__builtins__",
        "__globals__",
        "__dict__",
        "__subclasses__",
        "__code__",
        "__closure__",
        "__func__",
        "__self__",
        "__loader__",
        "__spec__",
        "__getattribute__",
        "__setattr__",
        "__delattr__",
        "__import__",
        "__mro__",
        "__bases__",
        "__base__",
    }
)


@dataclass(frozen=True)
class Rule:
    """One rule: a stable ID, what it flags, and why."""

    id: str
    name: str
    severity: Severity
    verdict: Verdict | None
    since: str
    summary: str
    why: str
    fix: str
    globals: frozenset[tuple[str, str]] = frozenset()
    """Exact (module, qualname) pairs this deny rule names."""
    modules: tuple[str, ...] = ()
    """Modules (and their submodules) whose every global this rule names."""
    exceptions: frozenset[tuple[str, str]] = frozenset()
    """Exact globals inside `modules` that this rule does not name (reviewed, each
    with its reason in the rule file)."""
    source: str = "builtin"

    @property
    def is_deny(self) -> bool:
        """True for rules that name globals."""
        return bool(self.globals or self.modules)


Shape = tuple[str, ...]
"""The argument kinds of one call (see `safeload._machine.shapes`)."""

#: Uses an allow entry scopes. Storing a global (keeping a class or function
#: as data) runs nothing, and a folded `getattr` is judged by the name it
#: reaches, so neither needs an entry's permission; rewriting or mutating the
#: imported object itself are stream events of their own (SL203, SL204).
SCOPED_USES = frozenset(
    {
        Use.CALLED,
        Use.INSTANTIATED,
        Use.STATE,
        Use.MUTATED_INSTANCE,
        Use.PERSISTENT_ID,
        Use.GETATTR_BASE,
    }
)
_USE_WORDS = {
    Use.CALLED: "called",
    Use.INSTANTIATED: "rebuilt without __init__",
    Use.STATE: "given state",
    Use.MUTATED_INSTANCE: "filled with items",
    Use.PERSISTENT_ID: "named in a persistent id",
    Use.GETATTR_BASE: "read an attribute of",
}
#: A kind, or `name=kind` for a keyword of a call through functools.partial.
_KIND = r"([a-z]+|[a-z_][a-z0-9_]*=[a-z]+)"
_SHAPE_RE = re.compile(rf"^(\*|\(\)|{_KIND}(,{_KIND})*)$")


def shape_text(shape: Shape | None) -> str:
    """`str,bool,bool`; `()` for no arguments; `?` when the kinds are not known."""
    if shape is None:
        return "?"
    return ",".join(shape) if shape else "()"


@dataclass(frozen=True)
class Scope:
    """How an allow entry lets its global be used."""

    uses: frozenset[Use] | None = None
    """The scoped uses it may have (`SCOPED_USES`); None: every use."""
    calls: frozenset[str] | None = None
    """Argument shapes it may be called with (`str,bool,bool`, `()`); None or
    `*` in the set: any. Only read when `called` is among `uses`."""
    check: str | None = None
    """A named check of its arguments or state (safeload/_checks)."""
    audit: str = ""
    """Why the entry is safe within this scope (the gadget audit)."""

    def merge(self, other: Scope) -> Scope:
        """What two entries for one global allow together."""
        uses = None if self.uses is None or other.uses is None else self.uses | other.uses
        calls = None if self.calls is None or other.calls is None else self.calls | other.calls
        if self.check is not None and other.check is not None and self.check != other.check:
            raise PolicyError(
                f"two allow entries name different checks ({self.check}, {other.check})"
            )
        return Scope(uses, calls, self.check or other.check, self.audit or other.audit)

    def violation(self, uses: Iterable[Use], shapes: Iterable[Shape | None]) -> str | None:
        """What `uses` and call `shapes` do that the entry does not cover, or None."""
        if self.uses is not None:
            outside = [u for u in Use if u in set(uses) and u in SCOPED_USES and u not in self.uses]
            if outside:
                allowed = ", ".join(_USE_WORDS[u] for u in Use if u in self.uses) or "stored only"
                done = ", ".join(_USE_WORDS[u] for u in outside)
                return f"its allow entry covers {allowed}; not {done}"
        if self.calls is None or "*" in self.calls:
            return None
        if self.uses is not None and Use.CALLED not in self.uses:
            return None
        bad = sorted({shape_text(s) for s in shapes} - self.calls)
        if bad:
            shown = " | ".join(f"({b})" for b in bad[:3])
            allowed = " | ".join(f"({c})" for c in sorted(self.calls)[:3])
            return f"it is called with {shown}; its allow entry covers calls with {allowed}"
        return None


FULL_SCOPE = Scope()
"""Every use, any arguments: user allow entries (`--allow`, `[tool.safeload]`)."""


@dataclass(frozen=True)
class AllowPack:
    """A named set of exact globals, each with the scope of its use."""

    name: str
    description: str
    globals: frozenset[tuple[str, str]]
    versions: Mapping[str, str] = field(default_factory=dict)
    generated_by: str = ""
    scopes: Mapping[tuple[str, str], Scope] = field(default_factory=dict)
    """Each global's scope (`FULL_SCOPE` where the pack gives none)."""


@dataclass(frozen=True)
class Decision:
    """The policy's judgment of one global, as the unpickler would import it.

    `module` and `qualname` are the name *after* `_compat_pickle` mapping
    (`safeload._names.map_name`). `rule` is the deny rule that matched, the
    `unknown-global` rule for a name on no allow pack, or None when allowed.
    """

    module: str
    qualname: str
    verdict: Verdict
    """`SAFE` only when allowed; a deny rule's verdict, never better than `UNKNOWN`."""
    rule: Rule | None
    usage: tuple[Use, ...] = ()
    """The uses the decision was asked about, in `Use` order."""
    detail: str = ""
    """For an allowlisted global used beyond its entry's scope: what it did."""

    @property
    def allowed(self) -> bool:
        """True only for an allowlisted global that no deny rule names."""
        return self.rule is None

    @property
    def denied(self) -> bool:
        """True when a deny rule (not merely the unknown-global rule) decided."""
        return self.rule is not None and self.rule.is_deny

    @property
    def name(self) -> str:
        """`module.name`, or `module:dotted.qualname`."""
        return canonical(self.module, self.qualname)

    def __repr__(self) -> str:
        rule = f", {self.rule.id} {self.rule.name}" if self.rule is not None else ""
        return f"Decision({self.name!r}, {self.verdict.value}{rule})"


FAIL_ON_LEVELS = ("dangerous", "unknown", "not-a-pickle")
"""`scan --fail-on` / `fail-on` under [tool.safeload]: the mildest verdict that fails
(`not-a-pickle` is what `--strict` sets)."""


@dataclass(frozen=True)
class UserConfig:
    """Settings from `[tool.safeload]` in a project's pyproject.toml."""

    allow: tuple[str, ...] = ()
    rules: tuple[Path, ...] = ()
    fail_on: str | None = None
    exclude: tuple[str, ...] = ()
    max_load_cost: float | None = None
    max_expansion: float | None = None
    timeout: float | None = None
    """Seconds one file's scan may take in a batch (`scan --timeout`)."""
    trust: tuple[Path, ...] = ()
    """Public key files and trust directories the repository trusts (`safeload
    check-signatures`, the `safeload-verify` hook), relative to pyproject.toml."""
    path: Path | None = None

    @classmethod
    def find(cls, start: Path) -> UserConfig:
        """The `[tool.safeload]` table of the nearest pyproject.toml above `start`."""
        for folder in (start.resolve(), *start.resolve().parents):
            candidate = folder / "pyproject.toml"
            if candidate.is_file():
                return cls.from_pyproject(candidate)
        return cls()

    @classmethod
    def from_pyproject(cls, path: Path) -> UserConfig:
        """Parse one pyproject.toml; no table means an empty config."""
        data = _read_toml(path.read_bytes(), str(path))
        table = data.get("tool", {}).get("safeload")
        if table is None:
            return cls(path=path)
        if not isinstance(table, dict):
            raise PolicyError(f"{path}: [tool.safeload] must be a table")
        unknown = set(table) - {
            "allow", "rules", "fail-on", "exclude", "max-load-cost", "max-expansion", "timeout",
            "trust",
        }  # fmt: skip
        if unknown:
            raise PolicyError(
                f"{path}: unknown keys in [tool.safeload]: {', '.join(sorted(unknown))}"
            )
        allow = _str_list(table.get("allow", []), f"{path}: tool.safeload.allow")
        rules = _str_list(table.get("rules", []), f"{path}: tool.safeload.rules")
        exclude = _str_list(table.get("exclude", []), f"{path}: tool.safeload.exclude")
        trust = _str_list(table.get("trust", []), f"{path}: tool.safeload.trust")
        fail_on = table.get("fail-on")
        if fail_on is not None and fail_on not in FAIL_ON_LEVELS:
            raise PolicyError(
                f"{path}: tool.safeload.fail-on must be one of "
                + ", ".join(repr(level) for level in FAIL_ON_LEVELS)
            )
        for name in allow:
            _check_global(name, f"{path}: tool.safeload.allow")
        cost = table.get("max-load-cost")
        if cost is not None:
            cost = check_max_load_cost(cost, f"{path}: tool.safeload.max-load-cost")
        expansion = table.get("max-expansion")
        if expansion is not None:
            expansion = check_max_expansion(expansion, f"{path}: tool.safeload.max-expansion")
        timeout = table.get("timeout")
        if timeout is not None and (
            type(timeout) not in (int, float) or not 0 < timeout < float("inf")
        ):
            raise PolicyError(f"{path}: tool.safeload.timeout must be a positive number of seconds")
        return cls(
            allow=tuple(allow),
            rules=tuple(path.parent / r for r in rules),
            fail_on=fail_on,
            exclude=tuple(exclude),
            max_load_cost=cost,
            max_expansion=expansion,
            timeout=None if timeout is None else float(timeout),
            trust=tuple(path.parent / t for t in trust),
            path=path,
        )


class Policy:
    """Allow packs plus rules. `decide` is the one judgment of a global: the
    scanner's findings and the restricted unpickler's `find_class` both ask it,
    so a check and a load can never judge the same name differently."""

    def __init__(
        self,
        rules: Iterable[Rule],
        packs: Iterable[AllowPack],
        extra_allow: Iterable[tuple[str, str]] = (),
        *,
        max_load_cost: float | None = None,
        max_expansion: float | None = None,
    ):
        self.max_load_cost = (
            DEFAULT_MAX_LOAD_COST
            if max_load_cost is None
            else check_max_load_cost(max_load_cost, "max_load_cost")
        )
        """The load-cost budget per byte of file (see `load_budget`)."""
        self.max_expansion = (
            None if max_expansion is None else check_max_expansion(max_expansion, "max_expansion")
        )
        """Decompressed bytes a file may produce per byte of file; None: the locator's
        default (`safeload._formats.DEFAULT_MAX_EXPANSION`)."""
        by_id: dict[str, Rule] = {}
        by_name: dict[str, Rule] = {}
        for rule in rules:
            if rule.id in by_id:
                raise PolicyError(
                    f"duplicate rule ID {rule.id} ({rule.source} and {by_id[rule.id].source})"
                )
            if rule.name in by_name:
                raise PolicyError(
                    f"duplicate rule name {rule.name!r} ({rule.id} and {by_name[rule.name].id})"
                )
            by_id[rule.id] = rule
            by_name[rule.name] = rule
        self.rules: Mapping[str, Rule] = by_id
        self._by_name = by_name
        self.packs: tuple[AllowPack, ...] = tuple(packs)
        self.extra_allow: frozenset[tuple[str, str]] = frozenset(extra_allow)
        """User allow entries: every use, any arguments."""
        scopes: dict[tuple[str, str], Scope] = {}
        for pack in self.packs:
            for pair in pack.globals:
                scope = pack.scopes.get(pair, FULL_SCOPE)
                known = scopes.get(pair)
                scopes[pair] = scope if known is None else known.merge(scope)
        for pair in self.extra_allow:
            scopes[pair] = FULL_SCOPE
        if not scopes:
            # An empty allowlist would make everything unknown; refusing it
            # catches a broken install instead of reporting noise.
            raise PolicyError("the policy has no allowed globals (no allow packs loaded)")
        self._scopes = scopes
        self._allowed = frozenset(scopes)
        out_of_scope = by_name.get("out-of-scope-use")
        if out_of_scope is None:
            raise PolicyError("the policy has no out-of-scope-use rule (built-in rules missing)")
        self._out_of_scope = out_of_scope
        unknown = by_name.get("unknown-global")
        if unknown is None:
            # `decide` must be able to name why a global is refused.
            raise PolicyError("the policy has no unknown-global rule (built-in rules missing)")
        self._unknown = unknown
        self._deny_exact: dict[tuple[str, str], Rule] = {}
        self._deny_module: dict[str, Rule] = {}
        for rule in by_id.values():
            for pair in rule.globals:
                self._deny_exact.setdefault(pair, rule)
            for module in rule.modules:
                self._deny_module.setdefault(module, rule)
        # Deny rules win over allow entries: a team config cannot quietly
        # turn `os.system` into "safe". Say so at load time, not at scan time.
        for module, qualname in self.extra_allow:
            hit = self._deny_rule(module, qualname)
            if hit is not None:
                raise PolicyError(
                    f"cannot allow {canonical(module, qualname)}: it is named by deny rule "
                    f"{hit.id} ({hit.name}); deny rules always win"
                )

    # -- construction -------------------------------------------------------

    @classmethod
    def default(cls) -> Policy:
        """The built-in rules and every built-in allow pack."""
        return cls(builtin_rules(), builtin_packs())

    @classmethod
    def build(
        cls,
        *,
        allow: Iterable[str] = (),
        rule_files: Iterable[Path] = (),
        config: UserConfig | None = None,
        max_load_cost: float | None = None,
        max_expansion: float | None = None,
    ) -> Policy:
        """The default policy plus user additions (CLI flags, files, pyproject).

        `max_load_cost` (or the config's `max-load-cost`) is the load-cost budget
        in bytes per byte of file, `max_expansion` (`max-expansion`) the decompressed
        bytes a file may produce per byte of file; the arguments win over the config.
        """
        rules = list(builtin_rules())
        extra: list[tuple[str, str]] = []
        files = list(rule_files)
        if config is not None:
            files = [*config.rules, *files]
            allow = [*config.allow, *allow]
            if max_load_cost is None:
                max_load_cost = config.max_load_cost
            if max_expansion is None:
                max_expansion = config.max_expansion
        for name in allow:
            extra.append(_check_global(name, "--allow"))
        for path in files:
            file_rules, file_allow = load_user_rules(path)
            rules.extend(file_rules)
            extra.extend(file_allow)
        return cls(
            rules,
            builtin_packs(),
            extra,
            max_load_cost=max_load_cost,
            max_expansion=max_expansion,
        )

    # -- queries ------------------------------------------------------------

    def rule(self, name: str) -> Rule:
        """A rule by its slug or ID."""
        found = self._by_name.get(name) or self.rules.get(name)
        if found is None:
            raise KeyError(name)
        return found

    @property
    def allowed(self) -> frozenset[tuple[str, str]]:
        """Every allowed (module, qualname) pair."""
        return self._allowed

    def load_budget(self, size: int) -> int:
        """The load cost a file of `size` bytes may have (`safeload._checks`'s estimate
        of what constructing its objects allocates and computes)."""
        return max(LOAD_COST_FLOOR, int(self.max_load_cost * size))

    def scope(self, module: str, qualname: str) -> Scope | None:
        """The scope of an allowed global's entry (None when it is on no allow list)."""
        return self._scopes.get((module, qualname))

    def decide(
        self,
        module: str,
        qualname: str,
        usage: Iterable[Use | str] = (),
        shapes: Iterable[Shape | None] = (),
    ) -> Decision:
        """Judge the global `module:qualname`, used as `usage` says and called with
        arguments of `shapes`.

        The name is the one `find_class` really imports: map it first with
        `safeload._names.map_name` for the protocol current at its opcode.
        Deny rules are asked first and always win over allow entries; a name
        no deny rule names is allowed only if it is exactly on an allow pack
        or a user allow entry, and is otherwise `unknown`, never safe. An
        allowed name used beyond its entry's scope (rebuilt-only but called,
        called with arguments of another shape) is `unknown` under
        `out-of-scope-use`, saying which scope was left.
        """
        uses = _uses(usage)
        rule = self._deny_rule(module, qualname)
        if rule is not None:
            # A deny rule whose own verdict is milder (a user rule with
            # verdict "none" or "unknown") still never makes a global safe.
            verdict = Verdict.worst([rule.verdict or Verdict.UNKNOWN, Verdict.UNKNOWN])
            return Decision(module, qualname, verdict, rule, uses)
        scope = self._scopes.get((module, qualname))
        if scope is None:
            return Decision(module, qualname, Verdict.UNKNOWN, self._unknown, uses)
        problem = scope.violation(uses, shapes)
        if problem is not None:
            return Decision(module, qualname, Verdict.UNKNOWN, self._out_of_scope, uses, problem)
        return Decision(module, qualname, Verdict.SAFE, None, uses)

    def _deny_rule(self, module: str, qualname: str) -> Rule | None:
        """The deny rule naming this global, also when reached through a relay.

        `pathlib:os.system` is `os.system` reached as an attribute of
        `pathlib`, so every attribute path inside the qualname is also tried
        as a module (`os`) with the rest as its name (`system`).
        """
        parts = qualname.split(".")
        candidates: list[tuple[str, str]] = [(module, qualname)]
        for i in range(1, len(parts)):
            candidates.append((module + "." + ".".join(parts[:i]), ".".join(parts[i:])))
            for j in range(i):
                candidates.append((".".join(parts[j:i]), ".".join(parts[i:])))
        # An exact name anywhere on the path says more than a module prefix
        # (`torch:jit.x.os.system` is command execution, not "torch.jit").
        for mod, name in candidates:
            hit = self._deny_exact.get((mod, name))
            if hit is not None:
                return hit
        if any(p in _ESCAPE_ATTRIBUTES for p in parts):
            # `<anything>.__builtins__`, `.__globals__`, ...: attribute paths
            # that lead from any object to the interpreter's internals.
            return self._by_name.get("attribute-access")
        for mod, name in candidates:
            hit = self._module_rule(mod)
            if hit is not None and (mod, name) not in hit.exceptions:
                return hit
        return None

    def _module_rule(self, module: str) -> Rule | None:
        while True:
            hit = self._deny_module.get(module)
            if hit is not None:
                return hit
            module, dot, _ = module.rpartition(".")
            if not dot:
                return None


def _uses(usage: Iterable[Use | str]) -> tuple[Use, ...]:
    """Validated uses, once each, in `Use` order (ValueError for an unknown one)."""
    present = {Use(u) for u in usage}
    return tuple(u for u in Use if u in present)


# -- loading and validation ----------------------------------------------------


_parsed: dict[str, Any] | None = None


def _precompiled(raw: bytes) -> dict[str, Any] | None:
    """What `tomllib.loads` returns for `raw`, when rules/parsed.json holds it.

    The built-in rules and packs, parsed ahead (`tools/compile_rules.py`):
    tomllib took most of the CLI's start-up. An entry is used only for the
    bytes whose SHA-256 it is filed under, and once (the caller keeps what it
    builds from it); anything else is parsed from the TOML.
    """
    global _parsed
    if _parsed is None:
        try:
            text = _rules_root().joinpath("parsed.json").read_text(encoding="utf-8")
            _parsed = json.loads(text)
        except (OSError, ValueError, PolicyError):
            _parsed = {}
    found = _parsed.pop(hashlib.sha256(raw).hexdigest(), None)
    return found if isinstance(found, dict) else None


def _read_toml(raw: bytes, where: str) -> dict[str, Any]:
    parsed = _precompiled(raw)
    if parsed is not None:
        return parsed
    import tomllib  # here: a scan of the built-in policy alone never needs it

    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{where}: not valid TOML: {exc}") from exc


def _str_list(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"{where} must be a list of strings")
    return list(value)


def check_max_load_cost(value: object, where: str) -> float:
    """A load-cost budget per byte of file: a positive number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise PolicyError(f"{where} must be a positive number (bytes of load cost per byte)")
    return float(value)


def check_max_expansion(value: object, where: str) -> float:
    """Decompressed bytes per byte of file: a number of at least 1."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 1:
        raise PolicyError(f"{where} must be a number of at least 1 (decompressed bytes per byte)")
    return float(value)


def _check_global(text: str, where: str) -> tuple[str, str]:
    try:
        module, qualname = parse_canonical(text)
    except ValueError as exc:
        raise PolicyError(f"{where}: {exc}") from exc
    if not _MODULE_RE.match(module) or not all(p.isidentifier() for p in qualname.split(".")):
        raise PolicyError(f"{where}: not a global name: {text!r}")
    return module, qualname


def _parse_rule(raw: object, where: str, *, builtin: bool) -> Rule:
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: each [[rule]] must be a table")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown rule keys {sorted(unknown)}")
    missing = (_REQUIRED_RULE_KEYS if builtin else {"id", "name", "why"}) - set(raw)
    if missing:
        raise PolicyError(f"{where}: rule is missing {sorted(missing)}")
    rid = raw["id"]
    if not isinstance(rid, str) or not _ID_RE.match(rid):
        raise PolicyError(f"{where}: bad rule id {rid!r} (e.g. SL101, ACME001)")
    if builtin != rid.startswith(_BUILTIN_PREFIX):
        raise PolicyError(
            f"{where}: rule id {rid}: the {_BUILTIN_PREFIX} prefix is reserved for built-in rules"
        )
    name = raw["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise PolicyError(f"{where}: rule {rid}: name must be a lowercase-hyphenated slug")
    try:
        severity = Severity(raw.get("severity", "high"))
    except ValueError as exc:
        raise PolicyError(f"{where}: rule {rid}: bad severity {raw.get('severity')!r}") from exc
    verdict_text = raw.get("verdict", "dangerous")
    # `not-a-pickle` describes a file, never a global: only SL305 decides it.
    if verdict_text not in ("dangerous", "invalid", "unknown", "none") and not (
        builtin and verdict_text == "not-a-pickle"
    ):
        raise PolicyError(f"{where}: rule {rid}: bad verdict {verdict_text!r}")
    verdict = None if verdict_text == "none" else Verdict(verdict_text)
    texts = {}
    for key in ("since", "summary", "why", "fix"):
        value = raw.get(key, "")
        if not isinstance(value, str):
            raise PolicyError(f"{where}: rule {rid}: {key} must be a string")
        texts[key] = value
    globs = frozenset(
        _check_global(g, f"{where}: rule {rid}")
        for g in _str_list(raw.get("globals", []), f"{where}: rule {rid}: globals")
    )
    modules = tuple(_str_list(raw.get("modules", []), f"{where}: rule {rid}: modules"))
    for module in modules:
        if not _MODULE_RE.match(module):
            raise PolicyError(f"{where}: rule {rid}: bad module {module!r}")
    exceptions = frozenset(
        _check_global(g, f"{where}: rule {rid}: except")
        for g in _str_list(raw.get("except", []), f"{where}: rule {rid}: except")
    )
    for module, qualname in exceptions:
        if not any(module == m or module.startswith(m + ".") for m in modules):
            raise PolicyError(
                f"{where}: rule {rid}: except {canonical(module, qualname)} is in none of its modules"
            )
    if not builtin and not (globs or modules):
        raise PolicyError(f"{where}: rule {rid}: a user rule must name `globals` or `modules`")
    return Rule(
        id=rid,
        name=name,
        severity=severity,
        verdict=verdict,
        since=texts["since"],
        summary=texts["summary"] or texts["why"],
        why=texts["why"],
        fix=texts["fix"],
        globals=globs,
        modules=modules,
        exceptions=exceptions,
        source=where,
    )


def parse_rules(raw: bytes, where: str, *, builtin: bool) -> list[Rule]:
    """Rules from one rules file (`[[rule]]` tables)."""
    data = _read_toml(raw, where)
    unknown = set(data) - {"schema", "rule", "allow"}
    if unknown:
        raise PolicyError(f"{where}: unknown top-level keys {sorted(unknown)}")
    if data.get("schema", 1) != 1:
        raise PolicyError(f"{where}: unsupported schema {data.get('schema')!r} (expected 1)")
    rules = data.get("rule", [])
    if not isinstance(rules, list):
        raise PolicyError(f"{where}: `rule` must be an array of tables ([[rule]])")
    return [_parse_rule(r, where, builtin=builtin) for r in rules]


def parse_pack(raw: bytes, where: str) -> AllowPack:
    """One allow pack file.

    Schema 2 lists entries with their scope: `allow = [{name, use, calls,
    check, audit}, ...]`; schema 1 (`globals = [...]`, every use allowed) is
    still read for packs users wrote.
    """
    data = _read_toml(raw, where)
    schema = data.get("schema")
    if schema not in (1, 2):
        raise PolicyError(f"{where}: unsupported schema {schema!r} (expected 1 or 2)")
    pack = data.get("pack")
    if not isinstance(pack, dict):
        raise PolicyError(f"{where}: missing [pack] table")
    unknown = set(pack) - _PACK_KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown [pack] keys {sorted(unknown)}")
    name = pack.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise PolicyError(f"{where}: pack name must be a lowercase slug")
    scopes: dict[tuple[str, str], Scope] = {}
    if schema == 1:
        if "allow" in pack:
            raise PolicyError(f"{where}: schema 1 packs list `globals`; `allow` needs schema 2")
        names = _str_list(pack.get("globals"), f"{where}: pack.globals")
        pairs = [_check_global(g, f"{where}: pack {name}") for g in names]
        if len(set(pairs)) != len(pairs):
            raise PolicyError(f"{where}: pack {name} lists a global twice")
        scopes = dict.fromkeys(pairs, FULL_SCOPE)
    else:
        if "globals" in pack:
            raise PolicyError(f"{where}: schema 2 packs list `allow` entries, not `globals`")
        entries = pack.get("allow")
        if not isinstance(entries, list):
            raise PolicyError(f"{where}: pack.allow must be a list of entries")
        for entry in entries:
            pair, scope = _parse_entry(entry, f"{where}: pack {name}")
            if pair in scopes:
                raise PolicyError(f"{where}: pack {name} lists {canonical(*pair)} twice")
            scopes[pair] = scope
    if not scopes:
        raise PolicyError(f"{where}: pack {name} allows nothing")
    versions = pack.get("versions", {})
    if not isinstance(versions, dict) or not all(isinstance(v, str) for v in versions.values()):
        raise PolicyError(f"{where}: pack.versions must map names to version strings")
    return AllowPack(
        name=name,
        description=str(pack.get("description", "")),
        globals=frozenset(scopes),
        versions=dict(versions),
        generated_by=str(pack.get("generated_by", "")),
        scopes=scopes,
    )


_ENTRY_KEYS = {"name", "use", "calls", "check", "audit", "seen_in", "alias_of", "renamed_to"}


def _parse_entry(raw: object, where: str) -> tuple[tuple[str, str], Scope]:
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: each allow entry must be a table")
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown allow entry keys {sorted(unknown)}")
    text = raw.get("name")
    if not isinstance(text, str):
        raise PolicyError(f"{where}: an allow entry needs a name")
    pair = _check_global(text, where)
    where = f"{where}: {text}"
    uses: set[Use] = set()
    for word in _str_list(raw.get("use", []), f"{where}: use"):
        try:
            use = Use(word)
        except ValueError:
            raise PolicyError(f"{where}: unknown use {word!r}") from None
        if use not in SCOPED_USES:
            raise PolicyError(f"{where}: {word!r} is not a use an entry scopes")
        uses.add(use)
    calls = frozenset(_str_list(raw.get("calls", []), f"{where}: calls"))
    for shape in calls:
        if not _SHAPE_RE.match(shape):
            raise PolicyError(
                f"{where}: bad call shape {shape!r} (e.g. 'str,bool,bool', '()', '*')"
            )
    if calls and Use.CALLED not in uses:
        raise PolicyError(f"{where}: call shapes without the 'called' use")
    if Use.CALLED in uses and not calls:
        raise PolicyError(f"{where}: a called entry must list its call shapes ('*' for any)")
    check = raw.get("check")
    if check is not None and (not isinstance(check, str) or not _NAME_RE.match(check)):
        raise PolicyError(f"{where}: check must be a check's slug")
    if check is not None:
        if check_named(check) is None:
            known = ", ".join(sorted(APPLIES_TO))
            raise PolicyError(f"{where}: unknown check {check!r} (known: {known})")
        if canonical(*pair) not in APPLIES_TO[check]:
            raise PolicyError(f"{where}: check {check!r} does not apply to {canonical(*pair)}")
    audit = raw.get("audit", "")
    if not isinstance(audit, str) or not audit.strip():
        raise PolicyError(f"{where}: every allow entry says why it is safe (audit)")
    # Provenance only (the generator's record, not a permission): the releases
    # whose pickles use the spelling, and the name an old spelling stands for.
    _str_list(raw.get("seen_in", []), f"{where}: seen_in")
    for key in ("alias_of", "renamed_to"):
        if key in raw:
            target = raw[key]
            if not isinstance(target, str):
                raise PolicyError(f"{where}: {key} must be a global's name")
            _check_global(target, f"{where}: {key}")
    return pair, Scope(frozenset(uses), calls, check, audit)


def load_user_rules(path: Path) -> tuple[list[Rule], list[tuple[str, str]]]:
    """A `--rules FILE`: optional `allow = [...]` and `[[rule]]` deny rules."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read rules file {path}: {exc.strerror or exc}") from exc
    rules = parse_rules(raw, str(path), builtin=False)
    data = _read_toml(raw, str(path))
    allow = [
        _check_global(g, f"{path}: allow")
        for g in _str_list(data.get("allow", []), f"{path}: allow")
    ]
    return rules, allow


_builtin_rules_cache: list[Rule] | None = None
_builtin_packs_cache: list[AllowPack] | None = None


def _rules_root(subpackage: str = "") -> Traversable:
    """The shipped rules folder (`safeload.rules` in the wheel).

    In a source checkout run without installing, the package is only the
    top-level `rules/` folder, so fall back to it.
    """
    name = "safeload.rules" + (f".{subpackage}" if subpackage else "")
    # Installed from a wheel, the rules sit beside this module: no need to import
    # importlib.resources (a few ms of every start-up) to find them.
    beside = Path(__file__).resolve().parent / "rules"
    beside = beside / subpackage if subpackage else beside
    if (beside / "__init__.py").is_file():
        return beside
    from importlib import resources

    try:
        return resources.files(name)
    except ModuleNotFoundError:
        folder = Path(__file__).resolve().parent.parent / "rules"
        if subpackage:
            folder = folder / subpackage
        if not (folder / "__init__.py").is_file():
            raise PolicyError(f"the built-in rules ({name}) are not installed") from None
        return folder


def builtin_rules() -> list[Rule]:
    """The rules shipped in `safeload.rules/rules.toml`."""
    global _builtin_rules_cache
    if _builtin_rules_cache is None:
        raw = _rules_root().joinpath("rules.toml").read_bytes()
        _builtin_rules_cache = parse_rules(raw, "rules/rules.toml", builtin=True)
    return list(_builtin_rules_cache)


def builtin_packs() -> list[AllowPack]:
    """Every allow pack shipped in `safeload.rules.allow`."""
    global _builtin_packs_cache
    if _builtin_packs_cache is None:
        packs = []
        folder = _rules_root("allow")
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".toml"):
                packs.append(parse_pack(entry.read_bytes(), f"rules/allow/{entry.name}"))
        names = [p.name for p in packs]
        if len(set(names)) != len(names):
            raise PolicyError("two allow packs share a name")
        _builtin_packs_cache = packs
    return list(_builtin_packs_cache)


def display(module: str, qualname: str) -> str:
    """Canonical display of a global (re-exported for renderers)."""
    return canonical(module, qualname)
