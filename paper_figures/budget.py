"""How much work the figures may do: ``tiny`` (tests, seconds), ``quick`` (the gallery, a few
minutes on two CPU cores) and ``full`` (more seeds, steps and tasks; an hour or more).

The budget type lives with every other budget in :mod:`maml_depth.common.budgets`. A budget
is part of every cache key (its name *and* a fingerprint of its fields), so changing a number
recomputes the data instead of reusing stale arrays.
"""

from __future__ import annotations

from maml_depth.common.budgets import FIGURE_BUDGETS as BUDGETS
from maml_depth.common.budgets import FigureBudget, lookup

__all__ = ["BUDGETS", "FigureBudget", "get_budget"]


def get_budget(name: str | FigureBudget) -> FigureBudget:
    """A budget by name (or the budget itself)."""
    return lookup(BUDGETS, name)
