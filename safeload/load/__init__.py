"""Loading: the guarded loader and, at save time, `dump()` (serialize and sign)."""

from __future__ import annotations

from ._dump import dump

__all__ = ["dump"]
