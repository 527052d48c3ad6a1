"""Report renderers: `text`, `json` and `sarif`, each `render(report, ...) -> str`.

Nothing here prints; `safeload._cli` decides where the text goes.
"""

from __future__ import annotations


def rule_help(rule_id: str) -> str:
    """Where a user reads a rule's full entry, offline: `safeload rules SL101`.

    The same entries are in `docs/rules.md`, generated from `rules/rules.toml`.
    """
    return f"safeload rules {rule_id}"


FORMATS = ("text", "json", "sarif")

__all__ = ["FORMATS", "rule_help"]
