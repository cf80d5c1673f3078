"""How much work the figures may do: ``tiny`` (tests, seconds), ``quick`` (the gallery, a few
minutes on two CPU cores) and ``full`` (more seeds, steps and tasks; an hour or more).

A budget is part of every cache key (its name *and* a fingerprint of its fields), so changing
a number recomputes the data instead of reusing stale arrays.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from maml_depth.errors import ConfigError

__all__ = ["BUDGETS", "FigureBudget", "get_budget"]


@dataclass(frozen=True)
class FigureBudget:
    """The sizes every figure reads.

    Attributes:
        name: ``tiny`` | ``quick`` | ``full``.
        seeds: independent meta-training runs per curve or point (the 95% intervals are
            Student-t intervals over these seeds).
        meta_steps: outer steps of a linear-regression meta-training run (Adam, cosine).
        logr_steps: outer steps of a binary-classification (LogR) run.
        scalar_steps: outer steps of a scalar-model trajectory (figure 1).
        eval_tasks: fresh tasks that measure a trained network (real autograd adaptation).
        checkpoint_tasks: fresh tasks per checkpoint along a training curve.
        checkpoints: evaluations along a training run (besides step 0).
        depths: network depths of figure 3.
        shots: support-set sizes n of figure 3.
        grid: points per axis of the loss surface of figure 1.
        mc_tasks: Monte Carlo tasks of a reference estimate where no closed form exists.
    """

    name: str
    seeds: int
    meta_steps: int
    logr_steps: int
    scalar_steps: int
    eval_tasks: int
    checkpoint_tasks: int
    checkpoints: int
    depths: tuple[int, ...]
    shots: tuple[int, ...]
    grid: int
    mc_tasks: int

    def fingerprint(self) -> str:
        """Short hash of every field (part of the cache key)."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


BUDGETS: dict[str, FigureBudget] = {
    "tiny": FigureBudget("tiny", seeds=2, meta_steps=20, logr_steps=10, scalar_steps=20,
                         eval_tasks=256, checkpoint_tasks=128, checkpoints=4, depths=(1, 2),
                         shots=(2, 10), grid=21, mc_tasks=512),
    "quick": FigureBudget("quick", seeds=3, meta_steps=800, logr_steps=500, scalar_steps=400,
                          eval_tasks=10_000, checkpoint_tasks=5_000, checkpoints=20,
                          depths=(1, 2, 3, 4), shots=(2, 5, 10, 25), grid=161,
                          mc_tasks=20_000),
    "full": FigureBudget("full", seeds=8, meta_steps=4000, logr_steps=3000, scalar_steps=1500,
                         eval_tasks=50_000, checkpoint_tasks=10_000, checkpoints=40,
                         depths=(1, 2, 3, 4, 5, 6), shots=(2, 3, 5, 10, 20, 50, 100),
                         grid=301, mc_tasks=200_000),
}


def get_budget(name: str | FigureBudget) -> FigureBudget:
    """A budget by name (or the budget itself)."""
    if isinstance(name, FigureBudget):
        return name
    try:
        return BUDGETS[name]
    except KeyError:
        raise ConfigError(f"budget must be one of {sorted(BUDGETS)}, got {name!r}") from None
