"""raghu-feature-reuse: ANIL and MAML meta-trained alike reach the same subspace, range(Λ),
and their paired loss difference matches the exact one; multitask training with one shared
head (no inner loop) on tasks with E w* = 0 keeps a Λ-blind subspace and fails the check; an
unconverged run is inconclusive, never a pass or a fail.

The fast tests use a tiny setting (d = 4, rank-1 Λ, depth 2: two adapted layers, whose exact
expectation needs no long derivation); the claim's own setting (depth 3) is slow."""

from __future__ import annotations

import numpy as np
import pytest

from maml_depth.common.settings import LinearSetting
from maml_depth.validation.neighbours import raghu_feature_reuse as ra

TINY = LinearSetting(d=4, lam_rank=1, depth=2)


def test_claim_passes_and_multitask_is_rejected_tiny() -> None:
    r = ra.evaluate(seeds=1, meta_steps=1000, eval_tasks=4000, seed=3, setting=TINY)
    assert not r["unconverged"], r["unconverged"]
    assert r["verdict"] == "pass", (r["verdict_losses"], r["runs"][0]["angles"],
                                    str(r["runs"][0]["loss"]["difference"]),
                                    r["runs"][0]["loss"]["exact_difference"])
    wrong = ra.evaluate_wrong(seeds=1, meta_steps=1000, seed=3, setting=TINY)
    assert all(x["converged"] for x in wrong["runs"])
    assert wrong["verdict"] == "fail", wrong["runs"]
    # the shared map collapses to W̄ = 0 while B_L keeps a subspace blind to Λ
    assert wrong["runs"][0]["end_to_end_norm"] < 0.1


def test_unconverged_run_is_inconclusive() -> None:
    r = ra.evaluate(seeds=1, meta_steps=20, eval_tasks=500, seed=3, setting=TINY)
    assert r["unconverged"]
    assert r["verdict"] == "inconclusive"


def test_pooled_gradient_does_not_depend_on_lambda() -> None:
    """Eq. (2) of the theory page: the multitask (α = 0) expected loss differs between two
    Λ only by the constant ½ tr(ΛΣ), so its gradient in the weights is Λ-free."""
    import torch

    from maml_depth.theory import expected_deep_loss

    fam = ra.family(1, TINY)
    g = torch.Generator().manual_seed(7)
    ws = [torch.randn(s, generator=g, dtype=torch.float64).requires_grad_(True)
          for s in ((8, 4), (1, 8))]
    Lams = [fam.Lam, torch.eye(4, dtype=torch.float64) * 0.7]
    grads, values = [], []
    for Lam in Lams:
        v = expected_deep_loss(ws, adapt="top", W_bar=fam.W_bar, Sigma=fam.Sigma, Lam=Lam,
                               sigma=TINY.sigma, n=TINY.n, alpha=0.0)
        values.append(float(v.detach()) - 0.5 * float(torch.trace(Lam @ fam.Sigma)))
        grads.append(torch.autograd.grad(v, ws))
    assert np.isclose(values[0], values[1], rtol=1e-12)
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_claim_setting_depth_three_exact_vs_measured() -> None:
    r = ra.evaluate(seeds=2, meta_steps=2000, eval_tasks=20_000, seed=0)
    assert not r["unconverged"], r["unconverged"]
    assert r["verdict"] == "pass", r
    for x in r["runs"]:
        assert x["loss"]["exact_difference"] is not None
        assert x["relative_change"]["body_over_head"] < 1.0
    wrong = ra.evaluate_wrong(seeds=2, meta_steps=2000, seed=0)
    assert wrong["verdict"] == "fail", wrong["runs"]
