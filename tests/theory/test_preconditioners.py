"""Optimal preconditioners of docs/theory/expected-loss.md#optimal-preconditioner, checked against
generic numerical minimisation of
the closed-form loss (not only against each other)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import optimize

from maml_depth.errors import InvalidArgumentError, ShapeError
from maml_depth.theory import (
    expected_loss,
    fixed_step_loss,
    optimal_kronecker_preconditioner,
    optimal_preconditioner,
    preconditioned_loss,
)
from maml_depth.validation import strategies as mst
from tests.helpers import assert_close


@st.composite
def _families(draw, *, min_d=1, max_d=4, full_rank=False, rotated=True):
    d = draw(st.integers(min_d, max_d))
    rank = d if full_rank else draw(st.integers(1, d))
    return dict(
        Sigma=draw(mst.spd_matrices(d, max_condition=10.0, rotated=rotated)),
        Lam=draw(mst.psd_matrices(d, rank, max_condition=10.0)),
        sigma=draw(st.one_of(st.just(0.0), st.floats(0.1, 2.0))),
        n=draw(st.integers(1, 30)),
    )


def _torch_objective(f):
    """Value and exact gradient (autograd) of a closed-form loss of a flat numpy vector."""

    def fun(z):
        zt = torch.from_numpy(z).requires_grad_(True)
        val = f(zt)
        (g,) = torch.autograd.grad(val, zt)
        return float(val.detach()), g.numpy()

    return fun


def _minimise(f, z0):
    res = optimize.minimize(_torch_objective(f), z0, jac=True, method="BFGS",
                            options={"gtol": 1e-13, "maxiter": 10_000})
    return res.x, res.fun


@given(_families())
def test_full_preconditioner_is_the_numerical_minimiser(fam):
    """P* (closed form) = BFGS on the closed-form E ℒ over all d × d matrices P."""
    d = fam["Sigma"].shape[0]
    opt = optimal_preconditioner(**fam, kind="full")
    assert opt.method == "closed form" and opt.kind == "full"
    P, loss = opt  # unpacks as a pair

    def f(z):
        return preconditioned_loss(z.reshape(d, d), **fam)

    z, fmin = _minimise(f, np.zeros(d * d))
    assert_close(loss, fmin, rtol=1e-9, what="E ℒ(P*) vs numeric minimum")
    assert_close(P, z.reshape(d, d), rtol=1e-5, what="P* vs numeric minimiser")
    assert_close(preconditioned_loss(P, **fam), loss)


@given(_families())
def test_diagonal_and_scalar_are_numerical_minimisers(fam):
    """H p = diag(ΣΛΣ) and α_s* (closed forms) = numeric minima over diagonal / scalar P."""
    d = fam["Sigma"].shape[0]
    P_diag, loss_diag = optimal_preconditioner(**fam, kind="diagonal")
    z, fmin = _minimise(lambda z: preconditioned_loss(torch.diag(z), **fam), np.zeros(d))
    assert_close(loss_diag, fmin, rtol=1e-9, what="diagonal E ℒ vs numeric")
    assert_close(np.diag(P_diag), z, rtol=1e-5, what="diagonal p vs numeric")
    assert_close(P_diag, np.diag(np.diag(P_diag)))

    sc = optimal_preconditioner(**fam, kind="scalar")
    res = optimize.minimize_scalar(lambda a: fixed_step_loss(**fam, alpha=a),
                                   bracket=(0.0, 1.0), tol=1e-12)
    assert_close(sc.loss, res.fun, rtol=1e-9, what="scalar E ℒ vs numeric")
    assert_close(sc.alpha, res.x, rtol=1e-5, what="α_s* vs numeric")
    assert_close(sc.P, sc.alpha * np.eye(d))


@given(_families(), st.floats(-0.5, 2.0))
def test_fixed_step_loss(fam, alpha):
    """E ℒ(αI) = §3 at m = 1, W = W̄; it exceeds the tuned loss by ½ q (α − α_s*)²."""
    d = fam["Sigma"].shape[0]
    v = fixed_step_loss(**fam, alpha=alpha)
    z = np.zeros((1, d))
    assert_close(v, expected_loss(z, W_bar=z, Lam=fam["Lam"], Sigma=fam["Sigma"],
                                  sigma=fam["sigma"], n=fam["n"], alpha=alpha))
    S, La, n = fam["Sigma"], fam["Lam"], fam["n"]
    c = np.trace(La @ S) + fam["sigma"] ** 2
    q = (1 + 1 / n) * np.trace(La @ S @ S @ S) + c / n * np.trace(S @ S)
    sc = optimal_preconditioner(**fam, kind="scalar")
    # cancellation in v − loss: compare on the scale of v
    assert_close(v - sc.loss, 0.5 * q * (alpha - sc.alpha) ** 2, atol=max(1.0, v))


@given(_families())
def test_full_preconditioner_is_symmetric_psd_and_matches_math_md_form(fam):
    P, _ = optimal_preconditioner(**fam)
    assert_close(P, P.T)
    assert np.linalg.eigvalsh(P).min() >= -1e-10 * max(1.0, np.abs(P).max())
    S, La, n = fam["Sigma"], fam["Lam"], fam["n"]
    c = np.trace(La @ S) + fam["sigma"] ** 2
    d = S.shape[0]
    # docs/theory/expected-loss.md#optimal-preconditioner
    literal = np.linalg.solve((1 + 1 / n) * La @ S + c / n * np.eye(d), La)
    assert_close(P, literal, rtol=1e-8)


@given(_families(), mst.rngs())
def test_rotating_sigma_and_lam_rotates_p_star(fam, rng):
    d = fam["Sigma"].shape[0]
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    P, loss = optimal_preconditioner(**fam)
    rot = {**fam, "Sigma": Q @ fam["Sigma"] @ Q.T, "Lam": Q @ fam["Lam"] @ Q.T}
    P_rot, loss_rot = optimal_preconditioner(**rot)
    assert_close(P_rot, Q @ P @ Q.T, rtol=1e-8)
    assert_close(loss_rot, loss, rtol=1e-10)


def _sym_sqrt(A):
    ev, U = np.linalg.eigh(A)
    return (U * np.sqrt(np.clip(ev, 0, None))) @ U.T


@pytest.mark.parametrize(("d", "rank"), [(3, 3), (4, 2), (3, 1)])
def test_large_n_limit(d, rank):
    """σ fixed, n → ∞: P* → Σ⁻¹ (full-rank Λ) or Λ^½(Λ^½ΣΛ^½)⁺Λ^½; the error is O(1/n)."""
    rng = np.random.default_rng(d * 10 + rank)
    A = rng.standard_normal((d, d))
    Sigma = A @ A.T / d + 0.3 * np.eye(d)
    B = rng.standard_normal((d, rank))
    Lam = B @ B.T
    h = _sym_sqrt(Lam)
    limit = h @ np.linalg.pinv(h @ Sigma @ h, rcond=1e-10) @ h
    if rank == d:
        assert_close(limit, np.linalg.inv(Sigma), rtol=1e-8)
    errors = []
    for n in (10**2, 10**4, 10**6):
        P, _ = optimal_preconditioner(Sigma, Lam, 0.7, n)
        errors.append(np.linalg.norm(P - limit) / np.linalg.norm(limit))
    assert errors[0] > 30 * errors[1] > 900 * errors[2], errors
    assert errors[2] < 1e-4, errors


def test_isotropic_task_prior_eigenvalues():
    """Λ = τ²I: P* shares Σ's eigenvectors, eigenvalues 1/((1 + 1/n)λ_i + (trΣ + σ²/τ²)/n)."""
    rng = np.random.default_rng(3)
    lam = np.array([0.2, 1.0, 4.0])
    Q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    Sigma, tau, sigma, n = Q @ np.diag(lam) @ Q.T, 0.6, 0.9, 7
    P, _ = optimal_preconditioner(Sigma, tau**2 * np.eye(3), sigma, n)
    expect = 1 / ((1 + 1 / n) * lam + (lam.sum() + sigma**2 / tau**2) / n)
    assert_close(P, Q @ np.diag(expect) @ Q.T, rtol=1e-10)


@given(_families(), st.floats(0.0, 2.0))
def test_ordering(fam, alpha):
    """E ℒ(P*) ≤ E ℒ(P*_diag) ≤ E ℒ(α_s* I) ≤ E ℒ(αI) for any Σ, Λ, α."""
    full = optimal_preconditioner(**fam, kind="full").loss
    diag = optimal_preconditioner(**fam, kind="diagonal").loss
    scal = optimal_preconditioner(**fam, kind="scalar").loss
    fixed = fixed_step_loss(**fam, alpha=alpha)
    tol = 1e-12 * max(1.0, fixed)
    assert full <= diag + tol and diag <= scal + tol and scal <= fixed + tol, \
        (full, diag, scal, fixed)


@st.composite
def _anisotropic(draw):
    """Σ, Λ with spread-out spectra (condition numbers 3–10, eigenvalues geometrically
    spaced) and independent Haar rotations — generic, rotated, anisotropic."""
    d = draw(st.integers(2, 4))

    def build(kappa, Q):
        eig = np.geomspace(kappa**-0.5, kappa**0.5, d)
        return (Q * eig) @ Q.T

    return dict(Sigma=build(draw(st.floats(3, 10)), draw(mst.orthogonal_matrices(d))),
                Lam=build(draw(st.floats(3, 10)), draw(mst.orthogonal_matrices(d))),
                sigma=draw(st.one_of(st.just(0.0), st.floats(0.1, 2.0))),
                n=draw(st.integers(1, 30)))


@given(_anisotropic())
def test_ordering_is_strict_for_rotated_anisotropic(fam):
    """Generic rotated anisotropic Σ, Λ: every gap of the ordering is strictly positive
    (> 10⁻¹⁰ relative), the last one for α = 1.5 α_s* ≠ α_s*."""
    full = optimal_preconditioner(**fam, kind="full").loss
    diag = optimal_preconditioner(**fam, kind="diagonal").loss
    sc = optimal_preconditioner(**fam, kind="scalar")
    fixed = fixed_step_loss(**fam, alpha=1.5 * sc.alpha)
    eps = 1e-10 * fixed
    assert diag - full > eps and sc.loss - diag > eps and fixed - sc.loss > eps, \
        (full, diag, sc.loss, fixed)


def test_special_pairs_where_p_star_is_diagonal():
    """Axis-aligned Σ and Λ: the diagonal class already contains P* (no gap)."""
    Sigma, Lam = np.diag([0.5, 1.0, 3.0]), np.diag([2.0, 0.1, 1.0])
    full = optimal_preconditioner(Sigma, Lam, 0.3, 4)
    diag = optimal_preconditioner(Sigma, Lam, 0.3, 4, kind="diagonal")
    assert_close(full.P, diag.P)
    assert_close(full.loss, diag.loss)


def test_degenerate_priors():
    S = np.diag([1.0, 2.0])
    P, loss = optimal_preconditioner(S, np.zeros((2, 2)), 0.0, 3)
    assert_close(P, np.zeros((2, 2)))
    assert loss == 0.0
    for kind in ("full", "diagonal", "scalar"):
        P, loss = optimal_preconditioner(S, np.zeros((2, 2)), 0.5, 3, kind=kind)
        assert_close(P, np.zeros((2, 2)))
        assert_close(loss, 0.125)  # the noise floor ½σ²


def test_torch_in_torch_out():
    S = torch.diag(torch.tensor([1.0, 2.0], dtype=torch.float64))
    P, loss = optimal_preconditioner(S, torch.eye(2, dtype=torch.float64), 0.1, 5)
    assert isinstance(P, torch.Tensor) and isinstance(loss, float)
    assert_close(P, optimal_preconditioner(S.numpy(), np.eye(2), 0.1, 5).P)


# --- Kronecker-factored steps under a full vec-covariance: numeric optimum ----------------
def test_kronecker_numeric_optimum_reaches_p_star_at_m1():
    """m = 1, Ω = Λ: L is a scalar, so L·R can be any P and the numeric optimum must reach
    the closed-form E ℒ(P*) — the numeric optimiser checked against a closed form."""
    rng = np.random.default_rng(8)
    d = 3
    A = rng.standard_normal((d, d))
    Sigma = A @ A.T / d + 0.5 * np.eye(d)
    B = rng.standard_normal((d, d))
    Lam = B @ B.T / d
    res = optimal_kronecker_preconditioner(Sigma, Lam, 0.4, 3, 1)
    assert res.method == "numeric" and res.success, res
    full = optimal_preconditioner(Sigma, Lam, 0.4, 3)
    assert_close(res.loss, full.loss, rtol=1e-8)
    assert_close(res.L[0, 0] * res.R, full.P, rtol=1e-4)
    L, R, loss = res  # unpacks as a triple
    assert L is res.L and R is res.R and loss == res.loss


def test_kronecker_numeric_optimum_general_covariance():
    """m = 2 with a generic md × md Ω: labelled numeric, a stationary point no worse than the
    tuned Kronecker-separable starting point nor any of 50 random factor pairs, and its
    reported loss is the closed form at the returned factors."""
    from maml_depth.theory import expected_loss_general_prior

    rng = np.random.default_rng(9)
    d, m, n, sigma = 2, 2, 3, 0.3
    A = rng.standard_normal((d, d))
    Sigma = A @ A.T / d + 0.5 * np.eye(d)
    B = rng.standard_normal((m * d, m * d))
    Omega = B @ B.T / (m * d)
    res = optimal_kronecker_preconditioner(Sigma, Omega, sigma, n, m)
    assert res.method == "numeric" and "numeric" in repr(res)
    z = np.zeros((m, d))

    def loss(L, R):
        return expected_loss_general_prior(z, W_bar=z, Sigma=Sigma, Omega=Omega, sigma=sigma,
                                           n=n, alpha=1.0, L=L, R=R)

    assert_close(loss(res.L, res.R), res.loss)
    for _ in range(50):
        L = np.eye(m) + 0.5 * rng.standard_normal((m, m))
        R = 0.3 * (np.eye(d) + 0.5 * rng.standard_normal((d, d)))
        assert res.loss <= loss(L, R) + 1e-12
    for s in np.linspace(0.0, 1.0, 21):
        assert res.loss <= loss(np.eye(m), s * np.eye(d)) + 1e-12
    # stationary: the autograd gradient vanishes at the optimum
    Lt = torch.tensor(res.L, requires_grad=True)
    Rt = torch.tensor(res.R, requires_grad=True)
    v = expected_loss_general_prior(torch.zeros(m, d, dtype=torch.float64),
                                    W_bar=torch.zeros(m, d, dtype=torch.float64),
                                    Sigma=torch.tensor(Sigma), Omega=torch.tensor(Omega),
                                    sigma=sigma, n=n, alpha=1.0, L=Lt, R=Rt)
    gL, gR = torch.autograd.grad(v, (Lt, Rt))
    assert float(torch.cat([gL.flatten(), gR.flatten()]).abs().max()) < 1e-6


# --- bad input ----------------------------------------------------------------------------
@pytest.mark.parametrize(("kw", "error", "field"), [
    (dict(kind="bogus"), InvalidArgumentError, "kind"),
    (dict(n=0), InvalidArgumentError, "n"),
    (dict(sigma=math.nan), InvalidArgumentError, "sigma"),
    (dict(sigma=-0.1), InvalidArgumentError, "sigma"),
    (dict(Sigma=np.diag([1.0, -1.0])), InvalidArgumentError, "Sigma"),
    (dict(Sigma=np.ones(2)), ShapeError, "Sigma"),
    (dict(Lam=np.eye(3)), ShapeError, "Lam"),
    (dict(Lam=-np.eye(2)), InvalidArgumentError, "Lam"),
])
def test_bad_input_names_the_field(kw, error, field):
    args = dict(Sigma=np.eye(2), Lam=np.eye(2), sigma=0.1, n=3)
    args.update(kw)
    with pytest.raises(error, match=field):
        optimal_preconditioner(**args)


def test_bad_alpha_names_the_field():
    with pytest.raises(InvalidArgumentError, match="alpha"):
        fixed_step_loss(np.eye(2), np.eye(2), 0.1, 3, alpha=math.nan)
    with pytest.raises(ShapeError, match="Omega"):
        optimal_kronecker_preconditioner(np.eye(2), np.eye(3), 0.1, 3, 2)
