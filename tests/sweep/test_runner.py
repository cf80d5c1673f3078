"""Running one point: measurement, theory prediction, extracted preconditioner, failures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maml_depth.sweep import RESULT_FIELDS, parse_config, run_point
from maml_depth.sweep import runner as runner_mod
from maml_depth.sweep.runner import build_family, build_model, theory_fields

from ..helpers import assert_close
from .common import TINY


def _point(**over):
    return parse_config({"fixed": TINY | over}).expand()[0].params


def test_ok_point_has_every_field_and_is_deterministic():
    p = _point(depth=2)
    before = torch.get_num_threads()
    a, b = run_point(p), run_point(p)
    assert torch.get_num_threads() == before
    assert a["status"] == "ok" and a["error"] is None
    assert set(a["result"]) == set(RESULT_FIELDS)
    assert a["result"] == b["result"]
    assert a["timing"]["seconds"] > 0
    r = a["result"]
    assert r["theory_kind"].startswith("deep: E L(P*)") and r["theory_loss"] > 0
    assert "at weights: exact expected_deep_loss" in r["theory_kind"]
    assert r["converged"] in (True, False) and r["convergence"]["converged"] == r["converged"]
    assert r["theory_gap"] == r["post_loss"] - r["theory_loss"]
    assert 0 <= r["precond_rel_err"] and -1 <= r["precond_alignment"] <= 1


def test_theory_prediction_matches_the_closed_forms():
    from maml_depth.theory import fixed_step_loss, optimal_preconditioner

    shallow = _point(depth=1)
    fam = build_family(shallow)
    S, Lam = fam.Sigma.numpy(), fam.Lam.numpy()
    model = build_model(shallow)
    params = {k: v.detach() for k, v in model.named_parameters()}
    t1 = theory_fields(shallow, fam, params)
    assert t1["theory_kind"].startswith("shallow: E L(alpha I)")
    assert_close(t1["theory_loss"], fixed_step_loss(S, Lam, fam.sigma, fam.n_support, 0.1))
    # same seed: the deep point has the same task family
    deep = _point(depth=2)
    dm = build_model(deep)
    dparams = {k: v.detach() for k, v in dm.named_parameters()}
    t2 = theory_fields(deep, build_family(deep), dparams)
    P, loss = optimal_preconditioner(S, Lam, fam.sigma, fam.n_support, kind="full")
    assert t2["theory_kind"].startswith("deep: E L(P*)")
    assert_close(t2["theory_loss"], loss)
    # extracted P = alpha B_L^T B_L, B_L = the bottom layer
    B = dparams["layers.0.weight"].numpy()
    Pex = 0.1 * B.T @ B
    assert_close(t2["precond_rel_err"], np.linalg.norm(Pex - P) / np.linalg.norm(P))
    assert_close(t2["precond_alignment"],
                 np.sum(Pex * P) / (np.linalg.norm(Pex) * np.linalg.norm(P)))


@pytest.mark.parametrize(("over", "why"), [
    ({"depth": 2, "adapt": "all"}, "adapted layers other than the top one"),
    ({"depth": 2, "steps": 2}, "steps > 1"),
    ({"depth": 2, "width": 2}, "hidden width below d"),
    ({"depth": 1, "first_order": True}, "first_order"),
])
def test_no_prediction_outside_the_closed_form(over, why):
    r = run_point(_point(**over))
    assert r["status"] == "ok"
    assert r["result"]["theory_loss"] is None and why in r["result"]["theory_note"]


def test_divergence_is_a_failed_point():
    r = run_point(_point(depth=2, alpha=50.0, lr=5.0, outer_optimizer="sgd"))
    assert r["status"] == "failed" and r["result"] is None
    assert r["error"].startswith("DivergenceError: meta-training diverged")


def test_exception_is_a_failed_point(monkeypatch):
    def boom(point):
        raise ValueError("boom\nsecond line")

    monkeypatch.setattr(runner_mod, "measure", boom)
    r = run_point(_point())
    assert r == r | {"status": "failed", "error": "ValueError: boom", "result": None}


@pytest.mark.parametrize(("d", "m", "rank"), [(4, 2, 2), (3, 1, 1), (5, 3, "full")])
def test_w_bar_rows_lie_in_the_range_of_lambda_with_the_asked_norm(d, m, rank):
    """The sweep's W̄ comes from the shared draw (common.settings.w_bar_in_range): every row
    has norm w_bar and no component in the null space of Λ."""
    fam = build_family(_point(d=d, m=m, lam_rank=rank, w_bar=0.7, depth=1))
    W = fam.W_bar.to(torch.float64).numpy()
    evals, evecs = np.linalg.eigh(fam.Lam.to(torch.float64).numpy())
    null = evecs[:, evals <= 1e-12 * evals.max()]
    assert_close(np.linalg.norm(W, axis=1), np.full(m, 0.7), what="row norms of W̄")
    assert np.abs(W @ null).max(initial=0.0) < 1e-12
