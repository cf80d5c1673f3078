"""Budgets: how much work a run may do, one module for every kind of run.

- :class:`Budget` (:data:`CLAIM_BUDGETS`): a claim of ``maml-depth validate`` (``quick`` /
  ``full``);
- :class:`ExperimentBudget` of :class:`DomainBudget` s (:data:`EXPERIMENT_BUDGETS`): the
  nonlinear meta-optimizer experiment (sine, digits);
- :class:`FigureBudget` (:data:`FIGURE_BUDGETS`): the paper figures (``tiny`` / ``quick`` /
  ``full``).

Every budget is a frozen dataclass with a ``name``; :func:`lookup` finds one by name in any
of the tables and rejects an unknown name with :class:`~maml_depth.errors.ConfigError`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TypeVar

from maml_depth.errors import ConfigError

__all__ = [
    "CLAIM_BUDGETS",
    "EXPERIMENT_BUDGETS",
    "FIGURE_BUDGETS",
    "Budget",
    "DomainBudget",
    "ExperimentBudget",
    "FigureBudget",
    "fingerprint",
    "lookup",
]

B = TypeVar("B")


def lookup(table: Mapping[str, B], name: str | B, *, option: str = "budget") -> B:
    """The budget ``name`` of ``table`` (a budget object is returned as it is); an unknown
    name raises :class:`ConfigError` naming ``option`` and the known names."""
    if not isinstance(name, str):
        return name
    try:
        return table[name]
    except KeyError:
        raise ConfigError(f"{option} must be one of {sorted(table)}, got {name!r}") from None


def fingerprint(budget: object) -> str:
    """Short sha256 of every field of a budget dataclass (part of cache keys)."""
    text = json.dumps(asdict(budget), sort_keys=True)  # type: ignore[call-overload]
    return hashlib.sha256(text.encode()).hexdigest()[:10]


# -- claims (maml-depth validate) ------------------------------------------------------------
@dataclass(frozen=True)
class Budget:
    """How much work a claim may do. ``quick`` runs every claim of ``make validate`` in under
    10 minutes on 2 CPU cores; ``full`` is meant for a GPU or a cluster."""

    name: str
    cases: int  # random configurations for property-style claims
    mc_tasks: int  # Monte Carlo tasks per configuration
    meta_steps: int  # outer steps of a sampled-task meta-training run
    population_steps: int  # outer steps on the population objective
    seeds: int  # independent training seeds where a CI over seeds is reported
    eval_tasks: int  # fresh tasks to measure a trained network
    nonlinear: bool  # run the nonlinear (sine, digits) parts


CLAIM_BUDGETS: dict[str, Budget] = {
    "quick": Budget("quick", cases=40, mc_tasks=100_000, meta_steps=1000,
                    population_steps=1500, seeds=3, eval_tasks=20_000, nonlinear=False),
    "full": Budget("full", cases=300, mc_tasks=400_000, meta_steps=6000,
                   population_steps=4000, seeds=8, eval_tasks=100_000, nonlinear=True),
}



# -- the nonlinear meta-optimizer experiment ---------------------------------------------------
@dataclass(frozen=True)
class DomainBudget:
    """Meta-training and evaluation settings of one domain.

    ``alpha``/``inner_steps``: the inner loop (same at meta-train and meta-test time);
    ``meta_steps``/``meta_batch``/``lr``: the outer loop (Adam); ``eval_episodes``: fresh
    meta-test episodes per seed (the same episodes for every model and optimizer);
    ``n_query_train``/``n_query_test``: query points (sine) or query images per class
    (digits); ``models``: model keys (see :data:`MODELS`).
    """

    meta_steps: int
    meta_batch: int
    lr: float
    alpha: float
    inner_steps: int
    eval_episodes: int
    n_query_train: int
    n_query_test: int
    models: tuple[str, ...]


@dataclass(frozen=True)
class ExperimentBudget:
    """A named set of :class:`DomainBudget` s, the number of seeds and the dtype."""

    name: str
    seeds: int
    sine: DomainBudget
    digits: DomainBudget
    dtype: str = "float32"

    def domain(self, name: str) -> DomainBudget:
        """The budget of domain ``name``: ``"sine"`` or else the digits budget."""
        return self.sine if name == "sine" else self.digits


EXPERIMENT_BUDGETS: dict[str, ExperimentBudget] = {
    "quick": ExperimentBudget(
        name="quick", seeds=5,
        sine=DomainBudget(meta_steps=1000, meta_batch=25, lr=1e-3, alpha=0.01, inner_steps=1,
                          eval_episodes=1000, n_query_train=10, n_query_test=50,
                          models=("mlp", "mlp+linnet")),
        digits=DomainBudget(meta_steps=250, meta_batch=16, lr=3e-3, alpha=0.4, inner_steps=1,
                            eval_episodes=500, n_query_train=5, n_query_test=15,
                            models=("cnn", "cnn+linnet")),
    ),
    "full": ExperimentBudget(
        name="full", seeds=10,
        sine=DomainBudget(meta_steps=20000, meta_batch=25, lr=1e-3, alpha=0.01, inner_steps=5,
                          eval_episodes=5000, n_query_train=10, n_query_test=100,
                          models=("mlp", "mlp+linnet")),
        digits=DomainBudget(meta_steps=5000, meta_batch=16, lr=1e-3, alpha=0.4,
                            inner_steps=5, eval_episodes=2000, n_query_train=15,
                            n_query_test=15, models=("mlp", "cnn", "cnn+linnet")),
    ),
}


# -- the paper figures -----------------------------------------------------------------------
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
        return fingerprint(self)


FIGURE_BUDGETS: dict[str, FigureBudget] = {
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
