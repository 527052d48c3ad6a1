"""`safeload rules suggest`: a rules file (TOML) allowing what trusted files use."""

from __future__ import annotations

import json

from ...scan._suggest import Suggestion

_SHOWN = 3


def _seen(places: list[str]) -> str:
    more = len(places) - _SHOWN
    text = ", ".join(places[:_SHOWN])
    return text + (f" and {more} more" if more > 0 else "")


def _comment(text: str) -> str:
    # File names come from the user's disk: keep each comment on its line.
    return text.replace("\r", "\\r").replace("\n", "\\n")


def render(found: Suggestion, paths: list[str]) -> str:
    """The rules file; comments say where each name was seen and what was refused."""
    lines = [
        "# Allow entries suggested by `safeload rules suggest` for files you trust:",
        *(f"#   {_comment(p)}" for p in paths),
        "# Review each name: allowing it lets any file you load construct it.",
        "# Use: safeload scan --rules THIS_FILE ..., or allow = [...] under [tool.safeload].",
        "schema = 1",
    ]
    if found.allow:
        lines.append("allow = [")
        for name, places in found.allow.items():
            lines.append(f"    {json.dumps(name)},  # {_comment(_seen(places))}")
        lines.append("]")
    else:
        lines.append("allow = []  # nothing unknown: every global is already allowed or refused")
    if found.refused:
        lines.append("")
        lines.append("# Refused, never suggested (deny rules name them; do not load these files):")
        for name, places in found.refused.items():
            lines.append(f"#   {_comment(name)}: {_comment(_seen(places))}")
    if found.unreadable:
        lines.append("")
        lines.append("# Not readable as any loader would read them (verdict invalid):")
        lines.extend(f"#   {_comment(p)}" for p in found.unreadable)
    return "\n".join(lines) + "\n"
