"""Loading: the guarded loader, and `dump()` (serialize and sign) at save time.

>>> import safeload  # doctest: +SKIP
>>> trust = safeload.TrustStore.load(keys=["team.pub"])  # doctest: +SKIP
>>> model = safeload.load("model.joblib", trust=trust)  # doctest: +SKIP

`load` returns the object, or raises without having run one line chosen by
the file's author: the bytes it verifies are the bytes it scans and the bytes
it unpickles, and its restricted unpickler asks the same policy as the scan.
"""

from __future__ import annotations

from ._allowed import allowed_globals
from ._dump import dump
from ._guard import Guard, guard
from ._guarded import UnsignedLoadWarning, load, loads
from ._numpy import NpzArrays

__all__ = [
    "Guard",
    "NpzArrays",
    "UnsignedLoadWarning",
    "allowed_globals",
    "dump",
    "guard",
    "load",
    "loads",
]
