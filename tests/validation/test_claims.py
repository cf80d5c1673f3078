"""Each claim in a reduced form, and deliberately broken theory makes it fail.

The broken variants are injected into the claim modules (monkeypatch), so the very code path
that ``maml-depth validate`` runs is shown to be able to fail.
"""

from __future__ import annotations

import numpy as np
import pytest

from maml_depth.theory import expected_loss as true_expected_loss
from maml_depth.theory import optimal_preconditioner as true_opt
from maml_depth.theory.update_rule import first_order_preconditioner as true_P
from maml_depth.validation import (
    CLAIMS,
    Budget,
    RunContext,
    claim_bottom_layers,
    claim_depth_helps,
    claim_expected_loss,
    claim_meta_optimizers,
    claim_update_rule,
    claim_upper_layers,
    run_claim,
)

TINY = Budget("test", cases=8, mc_tasks=40_000, meta_steps=1000, population_steps=1000,
              seeds=2, eval_tasks=8_000, nonlinear=False)


def _run(cid: str, budget: Budget = TINY, seed: int = 0):
    return run_claim(CLAIMS[cid], RunContext(cid, budget, seed=seed))


def test_registry_has_the_claims_of_math_section_5():
    numbers = sorted(c.number for c in CLAIMS.values() if c.number is not None)
    assert numbers[:5] == [1, 2, 3, 4, 5]
    for c in CLAIMS.values():
        assert c.statement and c.reference and c.title


# -- claim 1 ---------------------------------------------------------------------------------
def test_update_rule_claim_passes():
    r = _run("update-rule")
    assert r.verdict == "pass", r.summary
    assert r.measured is not None and r.measured <= claim_update_rule.RTOL_UPDATE
    assert r.ci is not None and r.n == 2 * TINY.cases


def test_update_rule_claim_fails_with_kronecker_factors_swapped(monkeypatch):
    def swapped(weights, adapt):
        # Σ (A_jA_jᵀ) ⊗ (B_jᵀB_j): the factors in the wrong order
        P = np.asarray(true_P(weights, adapt))
        m, d = np.shape(weights[-1])[0], np.shape(weights[0])[1]
        # permute the Kronecker structure: (d·m × d·m) with index (i, a) -> (a, i)
        perm = np.arange(m * d).reshape(d, m).T.reshape(-1)
        return P[np.ix_(perm, perm)]

    monkeypatch.setattr(claim_update_rule, "first_order_preconditioner", swapped)
    r = _run("update-rule")
    assert r.verdict == "fail", r.summary


def test_update_rule_claim_fails_with_wrong_sign(monkeypatch):
    from maml_depth.theory.update_rule import exact_update

    monkeypatch.setattr(claim_update_rule, "exact_update",
                        lambda w, X, Y, a, S, k: exact_update(w, X, Y, -a, S, k))
    assert _run("update-rule").verdict == "fail"


# -- claim 2 ---------------------------------------------------------------------------------
def section3(W, *, W_bar, Sigma, Lam, sigma, n, alpha, L=None, R=None, drop_1_over_n=False,
             drop_noise=False, swap=False):
    """docs/theory/expected-loss.md#closed-form written out independently (numpy), with switches
    that break it."""
    W, Wb, S, La = (np.asarray(x, dtype=float) for x in (W, W_bar, Sigma, Lam))
    m, d = W.shape
    L = np.eye(m) if L is None else np.asarray(L, dtype=float)
    R = np.eye(d) if R is None else np.asarray(R, dtype=float)
    if swap and m == d:
        L, R = R, L
    D = W - Wb
    M = R @ S @ R.T
    a = 1.0 if drop_1_over_n else 1.0 + 1.0 / n
    K = a * S @ M @ S + np.trace(M @ S) / n * S
    tr = np.trace
    val = 0.5 * (tr(D @ S @ D.T) + m * tr(La @ S)
                 - 2 * alpha * (tr(L @ D @ S @ R @ S @ D.T) + tr(L) * tr(La @ S @ R @ S))
                 + alpha**2 * (tr(L.T @ L @ D @ K @ D.T) + tr(L.T @ L) * tr(La @ K)
                               + (0 if drop_noise else sigma**2 / n * tr(M @ S) * tr(L.T @ L))))
    return val + 0.5 * m * sigma**2


def test_independent_formula_agrees_with_theory():
    rng = np.random.default_rng(0)
    for _ in range(5):
        c = claim_expected_loss.random_case(rng)
        kw = {k: c[k] for k in ("W_bar", "Sigma", "Lam", "sigma", "n", "alpha", "L", "R")}
        assert abs(section3(c["W"], **kw) - true_expected_loss(c["W"], **kw)) <= 1e-10 * abs(
            section3(c["W"], **kw))


def test_expected_loss_claim_passes():
    r = _run("expected-loss")
    assert r.verdict == "pass", r.summary


@pytest.mark.parametrize("broken", ["drop_1_over_n", "drop_noise"])
def test_expected_loss_claim_rejects_broken_formulas(monkeypatch, broken):
    monkeypatch.setattr(claim_expected_loss, "expected_loss",
                        lambda W, **kw: section3(W, **kw, **{broken: True}))
    r = _run("expected-loss")
    assert r.verdict == "fail", r.summary


# -- claims 3 and 4 --------------------------------------------------------------------------
def test_depth_helps_and_upper_layers_claims_pass():
    r3 = _run("depth-helps")
    assert r3.verdict == "pass", r3.summary
    r4 = _run("upper-layers-precondition")
    assert r4.verdict == "pass", r4.summary


def test_upper_layers_claim_fails_with_wrong_preconditioner(monkeypatch):
    """Σ⁻¹ (the n → ∞ Newton step) instead of P* at n = 10 must be rejected."""

    def newton(Sigma, Lam, sigma, n, kind="full"):
        _, loss = true_opt(Sigma, Lam, sigma, n, kind)
        return np.linalg.inv(Sigma), loss

    monkeypatch.setattr(claim_upper_layers, "optimal_preconditioner", newton)
    assert _run("upper-layers-precondition").verdict == "fail"


def test_depth_helps_claim_fails_with_a_wrong_preconditioner(monkeypatch):
    """Predicting the deep net's loss with the Newton step Σ⁻¹ instead of P* (its loss by
    the closed form) predicts the wrong gap."""
    from maml_depth.theory import preconditioned_loss

    def newton(Sigma, Lam, sigma, n, kind="full"):
        P = np.linalg.inv(Sigma)
        return P, float(preconditioned_loss(P, Sigma, Lam, sigma, n))

    monkeypatch.setattr(claim_depth_helps, "optimal_preconditioner", newton)
    r = _run("depth-helps")
    assert r.verdict == "fail", r.summary


# -- claim 5 ---------------------------------------------------------------------------------
def test_bottom_layers_claim_passes_and_fails_against_a_wrong_subspace(monkeypatch):
    r = _run("bottom-layers-represent")
    assert r.verdict == "pass", r.summary
    # measured against the orthogonal complement of range(Λ) the angles are ~90°
    orig = claim_bottom_layers.angles_deg

    def complement(B, U):
        q, _ = np.linalg.qr(np.hstack([U, np.eye(U.shape[0])]))
        return orig(B, q[:, U.shape[1]:2 * U.shape[1]])

    monkeypatch.setattr(claim_bottom_layers, "angles_deg", complement)
    assert _run("bottom-layers-represent").verdict == "fail"


# -- claim 6 (linear part) -------------------------------------------------------------------
def test_meta_optimizers_claim_passes_and_fails_against_the_wrong_class(monkeypatch):
    r = _run("meta-optimizers-linear")
    assert r.verdict == "pass", r.summary
    # Meta-SGD (diagonal P) measured against the optimum of the full class cannot close 90%
    monkeypatch.setattr(claim_meta_optimizers, "CLASSES", {"meta-sgd": "full"})
    r = _run("meta-optimizers-linear")
    assert r.verdict == "fail", r.summary


def test_full_budget_only_claims_are_not_available_in_quick():
    from maml_depth.validation.claims import BUDGETS

    only_full = [c for c in CLAIMS.values() if "quick" not in c.budgets]
    for c in only_full:
        r = run_claim(c, RunContext(c.id, BUDGETS["quick"]))
        assert r.verdict == "not available" and "full" in r.summary


def test_a_crashing_claim_is_an_error_not_a_fail():
    """A claim that raises is reported as ``error`` with its traceback, never ``fail``."""
    from maml_depth.validation import BUDGETS, Claim, RunContext, run_claim

    def boom(ctx):
        raise ImportError("something the claim needs is missing")

    c = Claim("boom", None, "t", "s", "r", boom)
    r = run_claim(c, RunContext("boom", BUDGETS["quick"]))
    assert r.verdict == "error"
    assert "ImportError" in r.details["traceback"]


def test_suites_select_claims():
    from maml_depth.validation import CLAIMS, SUITES

    assert {c.suite for c in CLAIMS.values()} <= set(SUITES)
    assert sum(c.suite == "paper" for c in CLAIMS.values()) >= 6
