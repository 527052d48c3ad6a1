"""Write rules/parsed.json: the built-in rules and allow packs, parsed.

`tomllib` is pure Python: parsing rules/rules.toml and the allow packs took
about 150 ms, most of what `safeload scan` spent before reading a file. The
TOML files stay the source; this file holds what `tomllib.loads` returns
for each, keyed by the SHA-256 of its bytes, and `safeload.policy` uses an
entry only when the bytes it read hash to that key (any other bytes are
parsed as before). Regenerate after editing a rule or a pack:

    python tools/compile_rules.py

`tests/test_startup.py` fails while it is out of date.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
OUT = RULES / "parsed.json"


def sources() -> list[Path]:
    """Every built-in TOML file `safeload.policy` reads."""
    return [RULES / "rules.toml", *sorted((RULES / "allow").glob("*.toml"))]


def compiled() -> dict[str, Any]:
    """`{sha256 of the file: what tomllib.loads returns}` for every source."""
    out: dict[str, Any] = {}
    for path in sources():
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
        if json.loads(json.dumps(data)) != data:
            # A TOML date or time has no JSON form: that file is parsed at run time.
            continue
        out[hashlib.sha256(raw).hexdigest()] = data
    return out


def text() -> str:
    return json.dumps(compiled(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def main() -> int:
    OUT.write_text(text() + "\n", encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)} ({len(sources())} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
