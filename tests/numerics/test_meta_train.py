"""Meta-training: convergence on a problem with a known answer, divergence, determinism."""

from __future__ import annotations

import warnings

import pytest
import torch

from maml_depth.errors import DivergenceError
from maml_depth.numerics import (
    MLP,
    DeepLinear,
    InnerConfig,
    LinearRegressionTasks,
    OuterConfig,
    evaluate,
    get_params,
    meta_train,
)


def test_shallow_meta_training_reaches_task_mean():
    """Shallow MAML's minimiser over W is W̄ (docs/theory/expected-loss.md#closed-form, D = 0):
    training from W₀ must end
    within 0.1‖W₀ − W̄‖ of W̄ (with the exact population query loss, no query noise)."""
    g = torch.Generator().manual_seed(0)
    d, m = 4, 2
    W_bar = torch.randn(m, d, generator=g, dtype=torch.float64) * 2.0
    fam = LinearRegressionTasks.from_spectrum([0.5, 1.0, 1.5, 2.0], [0.3] * d, m=m, sigma=0.1,
                                              n_support=10, W_bar=W_bar, generator=g)
    model = DeepLinear((d, m), init="gaussian", generator=g)
    W0 = model.end_to_end().detach().clone()
    res = meta_train(model, fam, InnerConfig(alpha=0.2, adapt="all"),
                     OuterConfig(meta_steps=400, meta_batch=64, lr=0.05), seed=1)
    W = model.end_to_end(res.params)
    assert res.diverged is None
    dist, start = float((W - W_bar).norm()), float((W0 - W_bar).norm())
    assert dist < 0.1 * start, f"‖W − W̄‖ = {dist:.4f}, ‖W₀ − W̄‖ = {start:.4f}"
    assert res.history.post_loss[-1] < res.history.post_loss[0]


def test_divergence_stops_and_keeps_last_finite_state():
    g = torch.Generator().manual_seed(0)
    fam = LinearRegressionTasks.isotropic(3, 1, sigma=0.1, n_support=5)
    model = DeepLinear((3, 8, 8, 1), generator=g)
    outer = OuterConfig(meta_steps=200, meta_batch=8, lr=50.0, optimizer="sgd")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = meta_train(model, fam, InnerConfig(alpha=0.5), outer)
    assert res.diverged is not None and "diverged" in res.diverged
    assert any("diverged" in str(w.message) for w in caught)
    assert res.steps_done < outer.meta_steps
    assert all(torch.isfinite(v).all() for v in res.params.values())
    with pytest.raises(DivergenceError, match="diverged"):
        meta_train(model, fam, InnerConfig(alpha=0.5), outer, on_divergence="raise")


def test_same_seed_same_run_and_different_seed_differs():
    fam = LinearRegressionTasks.isotropic(3, 1, sigma=0.1, n_support=5, n_query=7)

    def run(seed: int) -> list[float]:
        model = MLP((3, 8, 1), "tanh", generator=torch.Generator().manual_seed(5))
        r = meta_train(model, fam, InnerConfig(alpha=0.1, adapt=[2], steps=2),
                       OuterConfig(meta_steps=5, meta_batch=4, lr=1e-2), seed=seed)
        return r.history.post_loss

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_evaluate_adapts_on_fresh_tasks():
    g = torch.Generator().manual_seed(0)
    fam = LinearRegressionTasks.isotropic(3, 1, tau=1.0, sigma=0.0, n_support=20)
    model = DeepLinear((3, 1), init="identity", scale=0.0)
    p = get_params(model)
    no_adapt, _, _ = evaluate(model, p, fam, InnerConfig(alpha=1e-12), num_tasks=500)
    adapt, se, n = evaluate(model, p, fam, InnerConfig(alpha=0.8), num_tasks=500)
    assert n == 500 and se > 0
    # un-adapted: ½ tr(Λ Σ) = 1.5 for W = W̄ = 0; adaptation with α ≈ 1/λ helps a lot
    assert abs(no_adapt - 1.5) < 4 * 0.15
    assert adapt < 0.5 * no_adapt
    del g


# -- convergence report and divergence beyond NaN -----------------------------------------
def _iso_setup():
    fam = LinearRegressionTasks.isotropic(3, 1, sigma=0.1, n_support=5)
    return fam, (lambda: DeepLinear((3, 1), generator=torch.Generator().manual_seed(0)))


def test_convergence_report_flags_an_unfinished_run_and_accepts_a_finished_one():
    """Shallow MAML from a far initialisation: 30 tiny SGD steps are still descending
    (NOT converged, with the reason); 600 Adam steps with a cosine schedule are converged."""
    g = torch.Generator().manual_seed(0)
    fam = LinearRegressionTasks.from_spectrum([0.5, 1.0, 2.0], m=1, sigma=0.1, n_support=10,
                                              W_bar=3 * torch.ones(1, 3, dtype=torch.float64),
                                              generator=g)
    model = DeepLinear((3, 1), init="gaussian", generator=g)
    inner = InnerConfig(alpha=0.2, adapt="all")
    short = meta_train(model, fam, inner, OuterConfig(meta_steps=30, meta_batch=32, lr=1e-3,
                                                      optimizer="sgd"), seed=1)
    assert short.convergence is not None and not short.convergence.converged
    assert "meta-gradient still points one way" in short.convergence.reason
    full = meta_train(model, fam, inner, OuterConfig(meta_steps=600, meta_batch=64, lr=0.05,
                                                     schedule="cosine"), seed=1)
    assert full.convergence is not None and full.convergence.converged, full.convergence
    assert full.convergence.as_dict()["rtol"] == OuterConfig().converge_rtol


def test_too_few_steps_cannot_be_called_converged():
    fam, make = _iso_setup()
    r = meta_train(make(), fam, InnerConfig(alpha=0.1), OuterConfig(meta_steps=5, lr=1e-2))
    assert r.convergence is not None and not r.convergence.converged
    assert "too few steps" in r.convergence.reason


def test_inner_step_overshoot_is_divergence_with_alpha_hint():
    """α = 10⁶: the query loss after adapting is orders of magnitude above the loss before
    (finite, no NaN) — diverged at step 1, the hint names alpha and the curvature."""
    fam, make = _iso_setup()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = meta_train(make(), fam, InnerConfig(alpha=1e6), OuterConfig(meta_steps=20))
    assert r.diverged is not None and "alpha" in r.diverged and "curvature" in r.diverged
    assert r.steps_done == 0 and r.convergence is None


def test_finite_loss_explosion_is_divergence_with_lr_hint_and_keeps_best_state():
    """Outer SGD with lr = 10⁹ on a deep linear net: the meta-loss grows by many orders of
    magnitude while staying finite for a while; it must be flagged, with the lr hint, and
    the kept state must be the one with the lowest meta-loss (finite, not the exploded one)."""
    fam = LinearRegressionTasks.isotropic(3, 1, sigma=0.1, n_support=5)
    model = DeepLinear((3, 4, 1), generator=torch.Generator().manual_seed(0))
    seen: list[float] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = meta_train(model, fam, InnerConfig(alpha=0.1), seed=0,
                       outer=OuterConfig(meta_steps=20, lr=1e9, optimizer="sgd"),
                       callback=lambda s, p, st: seen.append(s))
    assert seen == [1]  # step 1 was fine; step 2 exploded
    assert r.diverged is not None
    assert "grew" in r.diverged and "still finite" in r.diverged and "lower --lr" in r.diverged
    assert all(torch.isfinite(v).all() for v in r.params.values())
    kept, _, _ = evaluate(model, r.params, fam, InnerConfig(alpha=0.1), num_tasks=200)
    assert kept < 1e3


def test_growth_criterion_documented_default():
    assert OuterConfig().diverge_factor == 1e3
    with pytest.raises(Exception, match="diverge_factor"):
        OuterConfig(diverge_factor=1.0)
