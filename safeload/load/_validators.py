"""The loader's name for the real side of the named checks (`safeload._checks`).

The checks of what native code trusts (numpy dtype states, arrays read from
raw bytes and object arrays' state lists, numpy.random constructors, scikit-learn trees and
HistGradientBoosting predictors, scipy.sparse formats, numbers parsed from
text) live in one registry shared with the scanner; `find_class` hands out
`checked_constructor(...)` and the loader verifies after the load
(`LoadChecks`). What the C unpickler hands to native code with no call back
into Python between (a dtype's state, an array's state) is checked from the
walk before the unpickler runs, whatever the scan's judgment
(`LoadChecks.for_readings`). SECURITY.md lists them.
"""

from __future__ import annotations

from .._checks import LoadChecks, check_loaded, checked_constructor, load_checks

__all__ = ["LoadChecks", "check_loaded", "checked_constructor", "load_checks"]
