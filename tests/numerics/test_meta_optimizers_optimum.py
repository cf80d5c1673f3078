"""Meta-trained meta-optimizers reach their class optimum on shallow linear regression.

Setting (docs/theory/expected-loss.md#optimal-preconditioner): one output, the shallow model
``DeepLinear((d, 1))``, every layer
adapted, one inner step of size α, anisotropic and rotated Σ and Λ, the population query
loss. The classes and their optima (``maml_depth.theory.optimal_preconditioner``):
Meta-SGD — diagonal ``P``; Meta-Curvature and KFO — any (PSD) ``P``, optimum ``P*``.
MAML at the same α has ``E ℒ(αI)`` (``fixed_step_loss``).

Criterion: meta-training (θ and the preconditioner state jointly, Adam) closes at least 90%
of the gap between MAML's loss at α and the class optimum. All three losses are *measured*
on the same fresh tasks by real adaptation (autograd through the model): MAML at its
optimum ``W = W̄``; the class optimum realised by the optimizer's own state; the trained
model. The fraction is a paired ratio of means with a 95% confidence interval, and its
lower end must be ≥ 0.9.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from maml_depth.numerics import (
    DeepLinear,
    InnerConfig,
    LinearRegressionTasks,
    OuterConfig,
    evaluate,
    meta_train,
    post_adaptation_losses,
    state_for_step_matrix,
    step_matrix,
)
from maml_depth.theory import fixed_step_loss, optimal_preconditioner, preconditioned_loss

NAME = "layers.0.weight"
CLASS = {"meta-sgd": "diagonal", "meta-curvature": "full", "kfo": "full"}


@dataclass(frozen=True)
class Budget:
    d: int
    n: int
    sigma: float
    steps: int
    meta_batch: int
    lr: float
    eval_tasks: int


FAST = Budget(d=3, n=5, sigma=0.5, steps=300, meta_batch=64, lr=0.05, eval_tasks=10_000)
SLOW = Budget(d=4, n=8, sigma=0.3, steps=1500, meta_batch=256, lr=0.02, eval_tasks=100_000)


def _family(b: Budget) -> LinearRegressionTasks:
    g = torch.Generator().manual_seed(2024)
    sigma_eigs = np.geomspace(0.3, 3.0, b.d)
    lam_eigs = np.geomspace(2.0, 0.2, b.d)
    W_bar = torch.linspace(1.0, -0.5, b.d, dtype=torch.float64).reshape(1, b.d)
    return LinearRegressionTasks.from_spectrum(sigma_eigs, lam_eigs, sigma=b.sigma,
                                               n_support=b.n, W_bar=W_bar, generator=g)


def _per_task(model, W, state, inner, fam, batch) -> torch.Tensor:
    losses = post_adaptation_losses(model, {NAME: W}, batch, fam, inner,
                                    precond_state=state, engine="vmap")
    return losses.detach()


def _paired_fraction(maml: torch.Tensor, trained: torch.Tensor, best: torch.Tensor
                     ) -> tuple[float, float]:
    """``R = mean(maml − trained) / mean(maml − best)`` and its standard error (delta
    method on paired per-task values)."""
    num, den = maml - trained, maml - best
    R = float(num.mean() / den.mean())
    se = float((num - R * den).std() / (math.sqrt(num.numel()) * den.mean()))
    return R, se


def _run(b: Budget) -> None:
    fam = _family(b)
    S, L = fam.Sigma.numpy(), fam.Lam.numpy()
    alpha = 0.5 * optimal_preconditioner(S, L, b.sigma, b.n, kind="scalar").alpha
    eval_batch = fam.sample(b.eval_tasks, torch.Generator().manual_seed(777))
    model = DeepLinear((b.d, 1), init="identity", scale=0.0)
    maml_inner = InnerConfig(alpha=alpha)
    maml = _per_task(model, fam.W_bar, {}, maml_inner, fam, eval_batch)
    theory_maml = fixed_step_loss(S, L, b.sigma, b.n, alpha)
    assert abs(float(maml.mean()) - theory_maml) < 4 * float(maml.std()) / math.sqrt(
        b.eval_tasks), "measured MAML loss disagrees with E ℒ(αI)"
    trained_losses = {}
    report = []
    for opt, kind in CLASS.items():
        inner = InnerConfig(alpha=alpha, preconditioner=opt)
        best_P, best_loss = optimal_preconditioner(S, L, b.sigma, b.n, kind=kind)
        best_state = state_for_step_matrix(opt, best_P, alpha, NAME, b.d)
        best = _per_task(model, fam.W_bar, best_state, inner, fam, eval_batch)
        r1 = meta_train(model, fam, inner, OuterConfig(b.steps, b.meta_batch, b.lr,
                                                        log_every=b.steps), seed=1)
        r = meta_train(model, fam, inner,
                       OuterConfig(b.steps // 2, b.meta_batch, b.lr / 10,
                                   log_every=b.steps), seed=2,
                       init_params=r1.params, init_state=r1.precond_state)
        assert r1.diverged is None and r.diverged is None
        trained = _per_task(model, r.params[NAME], r.precond_state, inner, fam, eval_batch)
        trained_losses[opt] = trained
        R, se = _paired_fraction(maml, trained, best)
        # the same on independent tasks with `evaluate` (real adaptation), for the report
        m, m_se, N = evaluate(model, r.params, fam, inner, num_tasks=b.eval_tasks // 2,
                              seed=4242, precond_state=r.precond_state)
        P_learned = step_matrix(opt, r.precond_state, NAME, alpha).numpy()
        R_theory = ((theory_maml - float(preconditioned_loss(P_learned, S, L, b.sigma, b.n)))
                    / (theory_maml - best_loss))
        report.append(f"{opt}: gap closed {R:.3f} ± {1.96 * se:.3f} (95% CI, {b.eval_tasks} "
                      f"paired tasks); theory of the learned P {R_theory:.3f}; loss "
                      f"{m:.4f} ± {1.96 * m_se:.4f} ({N} tasks) vs class optimum "
                      f"{best_loss:.4f}, MAML {theory_maml:.4f}")
        assert abs(float(best.mean()) - best_loss) < 4 * float(best.std()) / math.sqrt(
            b.eval_tasks), f"{opt}: measured class-optimum loss disagrees with theory"
        assert R - 1.96 * se >= 0.9, "\n".join(report)
        assert R_theory >= 0.9, "\n".join(report)
    # the ordering of docs/theory/expected-loss.md#optimal-preconditioner: full class < diagonal
    # class < MAML at α (paired, 3 SE)
    for full in ("meta-curvature", "kfo"):
        diff = trained_losses["meta-sgd"] - trained_losses[full]
        assert float(diff.mean()) > 3 * float(diff.std()) / math.sqrt(diff.numel()), report
    diff = maml - trained_losses["meta-sgd"]
    assert float(diff.mean()) > 3 * float(diff.std()) / math.sqrt(diff.numel()), report
    print("\n".join(report))


def test_meta_trained_optimizers_close_90_percent_of_the_gap_to_their_class_optimum():
    _run(FAST)


@pytest.mark.slow
def test_meta_trained_optimizers_reach_their_class_optimum_d4():
    _run(SLOW)
