"""docs/rules.md is generated from rules/rules.toml and has one entry per rule."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from safeload import Policy
from safeload._names import canonical

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "rules.md"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_rule_docs", ROOT / "tools" / "gen_rule_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_are_up_to_date() -> None:
    expected = generator().generate((ROOT / "rules" / "rules.toml").read_bytes())
    assert DOC.read_text(encoding="utf-8") == expected, "run: python tools/gen_rule_docs.py"


def test_check_mode_detects_stale_docs(tmp_path: Path) -> None:
    gen = generator()
    gen.DOC = tmp_path / "rules.md"
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0
    assert gen.main(["--check"]) == 0
    gen.DOC.write_text(gen.DOC.read_text() + "edited by hand\n")
    assert gen.main(["--check"]) == 1


def test_check_mode_from_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_rule_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_every_rule_has_exactly_one_entry() -> None:
    text = DOC.read_text(encoding="utf-8")
    policy = Policy.default()
    anchors = re.findall(r'<a id="([a-z0-9]+)"></a>', text)
    headings = re.findall(r"^### ([A-Z]+[0-9]+) `([a-z0-9-]+)`$", text, flags=re.MULTILINE)
    assert sorted(anchors) == sorted(rid.lower() for rid in policy.rules)
    assert len(anchors) == len(set(anchors))
    assert sorted(headings) == sorted((r.id, r.name) for r in policy.rules.values())


def entry(text: str, rule_id: str) -> str:
    start = text.index(f'<a id="{rule_id.lower()}"></a>')
    end = text.find('<a id="', start + 1)
    section_end = text.find("\n## ", start)
    ends = [e for e in (end, section_end) if e != -1]
    return text[start : min(ends) if ends else len(text)]


def test_entries_carry_every_field() -> None:
    text = DOC.read_text(encoding="utf-8")
    for rule in Policy.default().rules.values():
        body = entry(text, rule.id)
        verdict = rule.verdict.value if rule.verdict is not None else "none (note)"
        assert f"**Severity:** {rule.severity.value} · **Verdict:** {verdict}" in body, rule.id
        assert rule.summary.rstrip(".") in body, rule.id
        assert rule.why in body, rule.id
        assert rule.fix in body, rule.id
        for module, qualname in rule.globals:
            assert f"`{canonical(module, qualname)}`" in body, (rule.id, module, qualname)
        for module in rule.modules:
            assert f"`{module}`" in body, (rule.id, module)
