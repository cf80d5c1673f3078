"""Meta-training on the exact population objective (no sampling noise).

For a deep linear network adapting any layers with k inner steps of size α, the expected
post-adaptation loss over the task family is an exact function of the layer weights
(:func:`maml_depth.theory.expected_deep_loss`: the closed form of
docs/theory/expected-loss.md#closed-form with
``L = A_jA_jᵀ``, ``R = B_jᵀB_j`` for one layer and one step, the exact Wick expectation of
docs/theory/exact-expectation.md otherwise, within its reach: one adapted layer with
k ≤ 4, or one step with up to four adapted layers). This module minimises it with L-BFGS
(strong Wolfe line search) — the deterministic counterpart of
:func:`maml_depth.numerics.meta_train`.

References: docs/theory/update-rules.md#one-step, docs/theory/expected-loss.md#closed-form,
docs/theory/expected-loss.md#optimal-preconditioner; Arnold, Iqbal, Sha (AISTATS 2021), §3.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from maml_depth import _checks
from maml_depth.errors import DivergenceError, InvalidArgumentError
from maml_depth.numerics.networks import DeepLinear, Params, get_params
from maml_depth.numerics.tasks import LinearRegressionTasks
from maml_depth.theory.population import expected_deep_loss


@dataclass
class PopulationResult:
    """Final parameters, the loss after each L-BFGS outer iteration, wall time."""

    params: Params
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def population_objective(
    model: DeepLinear, params: Params, family: LinearRegressionTasks, alpha: float,
    adapt: _checks.AdaptSpec = "top",
    steps: int = 1,
    max_terms: int = 10**6,
) -> Tensor:
    """``E_tasks ℓ_q(θ')`` exactly for the network's weights (differentiable): the expected
    query loss after ``steps`` inner steps adapting ``adapt``
    (:func:`maml_depth.theory.expected_deep_loss`)."""
    return expected_deep_loss(
        [params[k] for k in model.weight_names], adapt=adapt, steps=steps,
        W_bar=family.W_bar, Sigma=family.Sigma, Lam=family.Lam, sigma=family.sigma,
        n=family.n_support, alpha=alpha, max_terms=max_terms)


def train_population(
    model: DeepLinear,
    family: LinearRegressionTasks,
    *,
    alpha: float,
    adapt: _checks.AdaptSpec = "top",
    steps: int = 1,
    iterations: int = 20,
    max_eval: int = 100,
    init_params: Params | None = None,
    callback: Callable[[int, Params], None] | None = None,
) -> PopulationResult:
    """Minimise the population MAML objective over the weights with L-BFGS.

    ``adapt`` (1-based tuple, ``"top"``, ``"all"``) and ``steps`` may be anything within
    the exact engine's reach (see :func:`maml_depth.theory.expected_deep_loss`); beyond it
    the first evaluation raises :class:`maml_depth.theory.TermLimitError` (before training).
    ``iterations`` outer L-BFGS calls of up to ``max_eval`` function evaluations each;
    ``callback(iteration, params)`` after each (e.g. to record a trajectory). Stops with
    :class:`DivergenceError` (keeping nothing) if the objective becomes non-finite.
    """
    if not isinstance(model, DeepLinear):
        raise InvalidArgumentError(
            f"the population objective needs a DeepLinear model, got {type(model).__name__}")
    alpha = _checks.finite_float("alpha", alpha)
    iterations = _checks.positive_int("iterations", iterations)
    steps = _checks.positive_int("steps", steps)
    p0 = init_params if init_params is not None else get_params(model)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in p0.items()}
    opt = torch.optim.LBFGS(list(params.values()), lr=1.0, max_iter=max_eval,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-13,
                            tolerance_change=1e-16, history_size=50)

    def closure() -> Tensor:
        opt.zero_grad(set_to_none=True)
        loss = population_objective(model, params, family, alpha, adapt, steps)
        loss.backward()
        return loss

    t0 = time.perf_counter()
    losses = []
    for it in range(1, iterations + 1):
        opt.step(closure)
        with torch.no_grad():
            val = float(population_objective(model, params, family, alpha, adapt, steps))
        if not math.isfinite(val):
            raise DivergenceError(f"population objective became {val} at iteration {it}")
        losses.append(val)
        if callback is not None:
            callback(it, {k: v.detach().clone() for k, v in params.items()})
    return PopulationResult({k: v.detach().clone() for k, v in params.items()}, losses,
                            time.perf_counter() - t0)
