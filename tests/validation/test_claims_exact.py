"""Claims 7 (depth-helps-k-steps) and 8 (all-layers-exact): each passes with the exact theory
and fails with a deliberately broken one, injected into the claim module (monkeypatch), so the
very code path that ``maml-depth validate`` runs is shown to be able to fail. Networks that
did not converge make the claim inconclusive, never a pass or a fail.
"""

from __future__ import annotations

import pytest

import maml_depth.theory.exact_expectation as ee
from maml_depth.theory import expected_deep_loss as true_deep_loss
from maml_depth.theory import k_step_loss as true_k_step_loss
from maml_depth.theory import optimal_preconditioner as true_opt
from maml_depth.validation import (
    CLAIMS,
    Budget,
    RunContext,
    claim_all_layers_exact,
    claim_depth_helps_k_steps,
    run_claim,
)

TINY = Budget("test", cases=8, mc_tasks=40_000, meta_steps=1000, population_steps=1000,
              seeds=2, eval_tasks=8_000, nonlinear=False)
#: claim 7 trains META_STEPS_FACTOR × meta_steps outer steps: 500 gives the 1000 of TINY
#: (and 2·10⁴ evaluation tasks, as the quick budget: at 8·10³ the ±5% loss bands are not
#: always decidable)
TINY7 = Budget("test", cases=8, mc_tasks=40_000, meta_steps=500, population_steps=1000,
               seeds=2, eval_tasks=20_000, nonlinear=False)
#: too few outer steps for meta-training to converge
SHORT = Budget("short", cases=8, mc_tasks=40_000, meta_steps=40, population_steps=100,
               seeds=2, eval_tasks=2_000, nonlinear=False)


def _run(cid: str, budget: Budget = TINY, seed: int = 0):
    return run_claim(CLAIMS[cid], RunContext(cid, budget, seed=seed))


def test_the_new_claims_are_in_the_paper_suite():
    for cid, number in (("depth-helps-k-steps", 7), ("all-layers-exact", 8)):
        c = CLAIMS[cid]
        assert c.suite == "paper" and c.number == number and "quick" in c.budgets
        assert "docs/theory/paper-claims.md#claim-" in c.reference


# -- claim 7 ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_depth_helps_k_steps_claim_passes():
    r = _run("depth-helps-k-steps", TINY7)
    assert r.verdict == "pass", r.summary
    assert r.n == TINY7.eval_tasks and r.ci_level == 0.95
    for k in claim_depth_helps_k_steps.STEPS:
        d = r.details[f"k={k}"]
        assert d["loss_star"] < d["loss_alpha_k"] < d["loss_alpha"]


def test_depth_helps_k_steps_claim_passes_for_two_steps(monkeypatch):
    monkeypatch.setattr(claim_depth_helps_k_steps, "STEPS", (2,))
    r = _run("depth-helps-k-steps", TINY7)
    assert r.verdict == "pass", r.summary
    assert all(v == "pass" for v in r.details["k=2"]["verdicts"].values())


def test_depth_helps_k_steps_claim_fails_with_the_one_step_loss(monkeypatch):
    """Predicting k steps with the one-step closed forms (E ℒ(αI), E ℒ(P*)) is refuted."""
    monkeypatch.setattr(claim_depth_helps_k_steps, "STEPS", (2,))
    monkeypatch.setattr(claim_depth_helps_k_steps, "k_step_loss",
                        lambda P, S, La, s, n, steps: true_k_step_loss(P, S, La, s, n, 1))
    monkeypatch.setattr(claim_depth_helps_k_steps, "optimal_preconditioner",
                        lambda S, La, s, n, kind, steps=1: true_opt(S, La, s, n, kind))
    r = _run("depth-helps-k-steps", TINY7)
    assert r.verdict == "fail", r.summary
    part = r.details["k=2"]["verdicts"]
    assert part["shallow"] == "fail" and part["deep"] == "fail", part


def test_depth_helps_k_steps_claim_fails_when_min_p_is_the_best_scalar(monkeypatch):
    """A theory in which depth buys nothing beyond the best scalar step (min_P = α_k* I)
    predicts the deep net's loss wrongly, and the measured ordering refutes it."""
    monkeypatch.setattr(claim_depth_helps_k_steps, "STEPS", (2,))

    def scalar_only(S, La, s, n, kind, steps=1):
        return true_opt(S, La, s, n, "scalar", steps=steps)

    monkeypatch.setattr(claim_depth_helps_k_steps, "optimal_preconditioner", scalar_only)
    r = _run("depth-helps-k-steps", TINY7)
    assert r.verdict == "fail", r.summary
    part = r.details["k=2"]["verdicts"]
    assert part["deep"] == "fail" and part["scalar_theory"] == "fail", part


def test_depth_helps_k_steps_is_inconclusive_when_training_did_not_converge(monkeypatch):
    monkeypatch.setattr(claim_depth_helps_k_steps, "STEPS", (2,))
    r = _run("depth-helps-k-steps", SHORT)
    assert r.verdict == "inconclusive", r.summary
    assert "not converged" in r.summary and r.details["not_converged"]


# -- claim 8 ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_all_layers_exact_claim_passes():
    """Both cases, two and three adapted layers, on 2·10⁵ fresh tasks each (the 3-layer
    derivation takes ~15 s once per process)."""
    r = _run("all-layers-exact")
    assert r.verdict == "pass", r.summary
    assert r.n is not None and r.n >= claim_all_layers_exact.MIN_TASKS
    assert set(r.details) >= {"adapt=(2, 3)", "adapt=(1, 2, 3)"}


def test_all_layers_exact_passes_for_two_adapted_layers(monkeypatch):
    monkeypatch.setattr(claim_all_layers_exact, "CASES", ((2, 3),))
    r = _run("all-layers-exact")
    assert r.verdict == "pass", r.summary
    assert r.n == claim_all_layers_exact.MIN_TASKS == 200_000
    lo, hi = r.ci
    assert 1 - claim_all_layers_exact.TOL <= lo <= hi <= 1 + claim_all_layers_exact.TOL


def test_all_layers_exact_fails_with_the_wrong_adapted_layers(monkeypatch):
    """The exact loss of the wrong adapted set (the lowest adapted layer left out) is
    refuted by the measurement."""
    monkeypatch.setattr(claim_all_layers_exact, "CASES", ((2, 3),))
    monkeypatch.setattr(claim_all_layers_exact, "MIN_TASKS", 20_000)

    def wrong_set(weights, *, adapt, **kw):
        return true_deep_loss(weights, adapt=tuple(adapt)[1:], **kw)

    monkeypatch.setattr(claim_all_layers_exact, "expected_deep_loss", wrong_set)
    r = _run("all-layers-exact")
    assert r.verdict == "fail", r.summary


def test_all_layers_exact_fails_with_a_pairing_dropped(monkeypatch):
    """The Wick sum with one pairing class left out (the engine's own broken switch)."""
    monkeypatch.setattr(claim_all_layers_exact, "CASES", ((2, 3),))
    monkeypatch.setattr(claim_all_layers_exact, "MIN_TASKS", 20_000)
    monkeypatch.setattr(ee, "_DROP_LAST_X_PAIRING", True)
    ee.clear_caches()
    try:
        r = _run("all-layers-exact")
    finally:
        monkeypatch.setattr(ee, "_DROP_LAST_X_PAIRING", False)
        ee.clear_caches()
    assert r.verdict == "fail", r.summary


def test_all_layers_exact_is_inconclusive_when_training_did_not_converge(monkeypatch):
    monkeypatch.setattr(claim_all_layers_exact, "CASES", ((2, 3),))
    monkeypatch.setattr(claim_all_layers_exact, "MIN_TASKS", 20_000)
    r = _run("all-layers-exact", SHORT)
    assert r.verdict == "inconclusive", r.summary
    assert "not converged" in r.summary and r.details["not_converged"]
