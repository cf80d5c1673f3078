"""reference_losses: the theory values printed beside every measurement.

Checked against (a) the m = 1 trace formulas of fixed_step_loss / optimal_preconditioner
(another formula path), (b) the optimality of α* and P* (perturbations never help), and
(c) a Monte Carlo simulation of the tasks and the one-step update, independent of any closed
form (99.9% interval, 40 000 tasks).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from maml_depth.errors import InvalidArgumentError
from maml_depth.theory import (
    fixed_step_loss,
    optimal_preconditioner,
    preconditioned_loss,
    reference_losses,
)


def _problem(seed: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((d, d))
    Sigma = A @ A.T / d + 0.2 * np.eye(d)
    B = rng.standard_normal((d, max(1, d - 1)))
    Lam = B @ B.T / d
    return Sigma, Lam


@given(seed=st.integers(0, 10_000), d=st.integers(1, 5), m=st.integers(1, 4),
       n=st.integers(1, 30), sigma=st.floats(0.0, 2.0), alpha=st.floats(0.0, 1.0))
def test_m_outputs_are_m_copies_and_ordering(seed, d, m, n, sigma, alpha):
    Sigma, Lam = _problem(seed, d)
    r = reference_losses(Sigma, Lam, sigma, n, alpha, m=m)
    one = optimal_preconditioner(Sigma, Lam, sigma, n, kind="full")
    scalar = optimal_preconditioner(Sigma, Lam, sigma, n, kind="scalar")
    tol = 1e-9 * (1 + abs(r.loss_alpha))
    assert r.loss_alpha == pytest.approx(m * fixed_step_loss(Sigma, Lam, sigma, n, alpha),
                                         rel=1e-10, abs=1e-12)
    assert r.loss_P_star == pytest.approx(m * one.loss, rel=1e-10, abs=1e-12)
    assert r.alpha_star == pytest.approx(scalar.alpha, rel=1e-12, abs=1e-15)
    assert r.loss_P_star <= r.loss_alpha_star + tol <= r.loss_alpha + 2 * tol
    assert r.loss_P_star >= 0.5 * m * sigma**2 - tol  # never below the noise floor


@given(seed=st.integers(0, 10_000), d=st.integers(1, 4), eps=st.floats(1e-3, 0.3))
def test_alpha_star_and_P_star_are_minimisers(seed, d, eps):
    Sigma, Lam = _problem(seed, d)
    r = reference_losses(Sigma, Lam, 0.3, 5, 0.1, m=2)
    for a in (r.alpha_star - eps, r.alpha_star + eps):
        assert reference_losses(Sigma, Lam, 0.3, 5, a, m=2).loss_alpha >= r.loss_alpha_star
    rng = np.random.default_rng(seed)
    E = rng.standard_normal((d, d)) * eps
    base = preconditioned_loss(r.P_star, Sigma, Lam, 0.3, 5)
    assert preconditioned_loss(r.P_star + E, Sigma, Lam, 0.3, 5) >= base - 1e-12


def test_monte_carlo_one_step_matches_reference_losses():
    """Simulate tasks, support sets and the step W' = W̄ − G P for P = αI and P = P*; the
    mean population query loss over 40 000 tasks must lie within its 99.9% interval of the
    theory value (m = 2 outputs, so the m-scaling is checked too)."""
    rng = np.random.default_rng(7)
    d, m, n, sigma, alpha = 3, 2, 6, 0.4, 0.25
    Sigma, Lam = _problem(11, d)
    r = reference_losses(Sigma, Lam, sigma, n, alpha, m=m)
    T = 40_000
    Ls, Ll = np.linalg.cholesky(Sigma), np.linalg.cholesky(Lam + 1e-12 * np.eye(d))
    W_bar = rng.standard_normal((m, d))
    for P, theory in ((alpha * np.eye(d), r.loss_alpha), (r.P_star, r.loss_P_star)):
        Wt = W_bar + rng.standard_normal((T, m, d)) @ Ll.T
        X = rng.standard_normal((T, n, d)) @ Ls.T
        Y = X @ Wt.transpose(0, 2, 1) + sigma * rng.standard_normal((T, n, m))
        G = (X @ W_bar.T - Y).transpose(0, 2, 1) @ X / n  # (T, m, d)
        D = W_bar - G @ P - Wt
        loss = 0.5 * np.einsum("tij,jk,tik->t", D, Sigma, D) + 0.5 * m * sigma**2
        se = loss.std(ddof=1) / math.sqrt(T)
        assert abs(loss.mean() - theory) < 3.29 * se, (loss.mean(), theory, se)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"n": 0}, "n"), ({"alpha": float("nan")}, "alpha"), ({"m": 0}, "m"),
    ({"sigma": -1.0}, "sigma"),
])
def test_bad_input_names_the_field(kwargs, field):
    args = {"Sigma": np.eye(2), "Lam": np.eye(2), "sigma": 0.1, "n": 5, "alpha": 0.1} | kwargs
    m = args.pop("m", 1)
    with pytest.raises(InvalidArgumentError, match=field):
        reference_losses(**args, m=m)


def test_as_dict_is_plain_data():
    import json

    r = reference_losses(np.eye(2), np.eye(2), 0.1, 5, 0.1)
    assert json.loads(json.dumps(r.as_dict()))["loss_P_star"] == r.loss_P_star
