"""Report renderers: `text`, `json` and `sarif`, each `render(report, ...) -> str`.

Nothing here prints; `safeload._cli` decides where the text goes.
"""

from __future__ import annotations

PROJECT_URL = "https://github.com/safeload/safeload"
"""Where the project lives; rule documentation is `docs/rules.md` in it."""

RULES_DOC_URL = f"{PROJECT_URL}/blob/main/docs/rules.md"


def rule_url(rule_id: str) -> str:
    """The documentation anchor of one rule, e.g. `.../docs/rules.md#sl101`."""
    return f"{RULES_DOC_URL}#{rule_id.lower()}"


FORMATS = ("text", "json", "sarif")

__all__ = ["FORMATS", "PROJECT_URL", "RULES_DOC_URL", "rule_url"]
