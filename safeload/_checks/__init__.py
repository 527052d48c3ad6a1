"""Named checks of what allowlisted globals are given, and the load-cost estimate.

An allow entry says a global may be used; for globals whose native code trusts
its arguments or state, a *check* says what they may be given. Each check has
a stable slug, the globals it applies to, a symbolic side the scanner runs on
the walker's values (`run_symbolic`) and a real side the guarded loader runs on
real values before the native code sees them (`checked_constructor`,
`LoadChecks`). Every check applies to its globals whatever the allow packs say;
a pack entry may name one (`check = "<slug>"`, one of `APPLIES_TO`).

`estimate_load_cost` is the static estimate of what constructing a pickle's
objects would allocate and compute, which the scanner holds to a budget.

Shared by `scan` and `load`; imports only the machine, names and errors, and
never imports what a file names (numpy is imported only by the real side).
"""

from __future__ import annotations

from ._base import Check, ObjectCheck, Problem, Site
from ._cost import UNBOUNDED, CostItem, LoadCost, estimate_load_cost, shown
from ._real import LoadChecks, check_loaded, checked_constructor, load_checks, refusal
from ._registry import APPLIES_TO, CHECKS, check_named, checks_for
from ._symbolic import Failure, run_symbolic

__all__ = [
    "APPLIES_TO",
    "CHECKS",
    "UNBOUNDED",
    "Check",
    "CostItem",
    "Failure",
    "LoadChecks",
    "LoadCost",
    "ObjectCheck",
    "Problem",
    "Site",
    "check_loaded",
    "check_named",
    "checked_constructor",
    "checks_for",
    "estimate_load_cost",
    "load_checks",
    "refusal",
    "run_symbolic",
    "shown",
]
