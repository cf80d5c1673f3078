"""The closed form of docs/theory/expected-loss.md#closed-form: derived from first principles, one
formula for sympy / numpy
/ torch, batched and differentiable; bad input names the field."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given
from hypothesis import strategies as st

from maml_depth.errors import InvalidArgumentError, ShapeError
from maml_depth.theory import (
    derive_expected_loss,
    expected_loss,
    expected_loss_general_prior,
    expected_loss_symbolic,
    isotropic_symbols,
)
from maml_depth.theory.expected_loss import _formula
from maml_depth.validation import strategies as mst
from tests.helpers import assert_close


def _rational(rng: np.random.Generator, shape: tuple[int, ...], den: int = 4) -> sp.Matrix:
    values = rng.integers(-6, 7, size=shape).ravel()
    return sp.Matrix(*shape, [sp.Rational(int(v), den) for v in values])


def _sym_formula(W, W_bar, Sigma, Lam, sigma, n, alpha, L, R):
    return sp.expand(_formula(W, W_bar, Sigma, Lam, sigma, n, alpha, L, R, m=W.shape[0],
                              T=lambda a: a.T, tr=lambda a: a.trace()))


@pytest.mark.parametrize(("d", "m", "rank", "seed"), [(2, 2, 2, 0), (2, 1, 1, 1), (3, 1, 2, 2),
                                                      (1, 3, 1, 3)])
def test_first_principles_derivation_equals_closed_form(d, m, rank, seed):
    """§3 from first principles (exact moments, symbolic n, σ, α) equals the closed form,
    for arbitrary rational W, W̄, L, R and Σ SPD, Λ PSD of the given rank."""
    rng = np.random.default_rng(seed)
    A = _rational(rng, (d, d))
    Sigma = A * A.T + sp.eye(d)
    B = _rational(rng, (d, rank))
    Lam = B * B.T
    W, W_bar = _rational(rng, (m, d)), _rational(rng, (m, d))
    L, R = _rational(rng, (m, m)), _rational(rng, (d, d))
    n, sigma, alpha = sp.symbols("n sigma alpha", positive=True)
    derived = derive_expected_loss(W, W_bar=W_bar, Sigma=Sigma, Lam=Lam, sigma=sigma, n=n,
                                   alpha=alpha, L=L, R=R)
    closed = _sym_formula(W, W_bar, Sigma, Lam, sigma, n, alpha, L, R)
    assert sp.simplify(derived - closed) == 0
    # and the numeric evaluator agrees at a point
    f = sp.lambdify((n, sigma, alpha), derived)
    num = expected_loss(np.array(W, dtype=float), W_bar=np.array(W_bar, dtype=float),
                        Sigma=np.array(Sigma, dtype=float), Lam=np.array(Lam, dtype=float),
                        sigma=0.7, n=3, alpha=0.2, L=np.array(L, dtype=float),
                        R=np.array(R, dtype=float))
    assert_close(num, f(3, 0.7, 0.2))


def test_isotropic_symbolic_expression():
    """Derived isotropic E ℒ (symbols d, m, n, σ, τ, α, λ, δ) = §3 formula = hand form."""
    s = isotropic_symbols()
    d, m, n, sig, tau, al, lam, de = (s[k] for k in
                                      ("d", "m", "n", "sigma", "tau", "alpha", "lam", "delta"))
    derived = expected_loss_symbolic()
    formula = expected_loss_symbolic(method="formula")
    hand = (sp.Rational(1, 2) * (lam * de**2 + m * d * tau**2 * lam
                                 - 2 * al * (lam**2 * de**2 + m * d * tau**2 * lam**2)
                                 + al**2 * lam**3 * (1 + (d + 1) / n) * (de**2 + m * d * tau**2)
                                 + al**2 * sig**2 / n * m * d * lam**2)
            + m * sig**2 / 2)
    assert sp.expand(derived - formula) == 0
    assert sp.expand(derived - hand) == 0
    assert derived.free_symbols == {d, m, n, sig, tau, al, lam, de}
    # and it evaluates like the numeric closed form
    vals = {d: 3, m: 2, n: 4, sig: 0.3, tau: 0.8, al: 0.25, lam: 1.5, de: 0.0}
    num = expected_loss(np.zeros((2, 3)), W_bar=np.zeros((2, 3)), Sigma=1.5 * np.eye(3),
                        Lam=0.64 * np.eye(3), sigma=0.3, n=4, alpha=0.25)
    assert_close(num, float(derived.subs(vals)))
    with pytest.raises(InvalidArgumentError, match="method"):
        expected_loss_symbolic(method="guess")  # type: ignore[arg-type]


@st.composite
def _problems(draw):
    d = draw(st.integers(1, 4))
    m = draw(st.integers(1, 3))
    rng = draw(mst.rngs())
    return dict(
        W=rng.standard_normal((m, d)), W_bar=rng.standard_normal((m, d)),
        Sigma=draw(mst.spd_matrices(d, max_condition=20.0)),
        Lam=draw(mst.psd_matrices(d)), sigma=draw(st.floats(0, 2)),
        n=draw(st.integers(1, 50)), alpha=draw(st.floats(-1, 1)),
        L=rng.standard_normal((m, m)), R=rng.standard_normal((d, d)),
    )


@given(_problems())
def test_numpy_torch_and_batched_agree(p):
    v = expected_loss(**{k: v for k, v in p.items() if k != "W"}, W=p["W"])
    assert isinstance(v, float)
    tp = {k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in p.items()}
    vt = expected_loss(tp.pop("W"), **tp)
    assert isinstance(vt, torch.Tensor) and vt.shape == ()
    assert_close(vt, v)
    # a batch of 3 maps and 3 step sizes, one call
    Ws = np.stack([p["W"], 2 * p["W"], p["W_bar"]])
    alphas = np.array([p["alpha"], 0.5, -0.1])
    kw = {k: v for k, v in p.items() if k not in ("W", "alpha")}
    vb = expected_loss(Ws, alpha=alphas, **kw)
    assert vb.shape == (3,)
    for i in range(3):
        assert_close(vb[i], expected_loss(Ws[i], alpha=float(alphas[i]), **kw))


def test_defaults_are_identities_and_noise_floor():
    rng = np.random.default_rng(0)
    d, m = 3, 2
    S = np.diag([1.0, 2.0, 0.5])
    kw = dict(W_bar=rng.standard_normal((m, d)), Sigma=S, Lam=np.eye(d), sigma=0.4, n=5)
    W = rng.standard_normal((m, d))
    assert_close(expected_loss(W, alpha=0.3, **kw),
                 expected_loss(W, alpha=0.3, L=np.eye(m), R=np.eye(d), **kw))
    # α = 0, Λ = 0: exactly the loss of W plus the noise floor ½ m σ²
    D = W - kw["W_bar"]
    kw0 = {**kw, "Lam": np.zeros((d, d))}
    assert_close(expected_loss(W, alpha=0.0, **kw0),
                 0.5 * np.trace(D @ S @ D.T) + 0.5 * m * 0.4**2)


def test_torch_is_differentiable():
    """Autograd gradients (W, α, L, R) match finite differences (torch.autograd.gradcheck)."""
    g = torch.Generator().manual_seed(0)
    d, m = 3, 2
    A = torch.randn(d, d, generator=g, dtype=torch.float64)
    Sigma = A @ A.T + torch.eye(d, dtype=torch.float64)
    Lam = torch.eye(d, dtype=torch.float64) * 0.5
    W_bar = torch.randn(m, d, generator=g, dtype=torch.float64)

    def f(W, alpha, L, R):
        return expected_loss(W, W_bar=W_bar, Sigma=Sigma, Lam=Lam, sigma=0.3, n=4, alpha=alpha,
                             L=L, R=R)

    args = (torch.randn(m, d, generator=g, dtype=torch.float64, requires_grad=True),
            torch.tensor(0.2, dtype=torch.float64, requires_grad=True),
            torch.randn(m, m, generator=g, dtype=torch.float64, requires_grad=True),
            torch.randn(d, d, generator=g, dtype=torch.float64, requires_grad=True))
    assert torch.autograd.gradcheck(f, args)
    # the analytic gradient in α: ∂/∂α = −(cross) + α (quadratic) vanishes at its minimiser
    alpha = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([alpha], max_iter=50, tolerance_grad=1e-14)

    def closure():
        opt.zero_grad()
        v = f(args[0].detach(), alpha, None, None)
        v.backward()
        return v

    opt.step(closure)
    assert abs(float(torch.autograd.grad(f(args[0].detach(), alpha, None, None), alpha)[0])) \
        < 1e-8


def test_tensor_step_size_with_numpy_matrices_meta_trains():
    """A learnable α (tensor) with numpy task matrices: torch path, and gradient descent on
    the closed form reaches the best scalar step of
    docs/theory/expected-loss.md#optimal-preconditioner (m = 1, W = W̄)."""
    from maml_depth.theory import optimal_preconditioner

    Sigma, Lam = np.diag([0.5, 1.0, 2.0]), np.diag([1.0, 0.5, 0.2])
    z = np.zeros((1, 3))
    alpha = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([alpha], lr=0.2)
    for _ in range(300):
        opt.zero_grad()
        loss = expected_loss(z, W_bar=z, Sigma=Sigma, Lam=Lam, sigma=0.3, n=4, alpha=alpha)
        assert isinstance(loss, torch.Tensor)
        loss.backward()
        opt.step()
    best = optimal_preconditioner(Sigma, Lam, 0.3, 4, kind="scalar")
    assert_close(alpha.detach(), best.alpha, rtol=1e-8)


@given(_problems())
def test_general_prior_reduces_to_row_covariance(p):
    """Ω = Λ ⊗ I_m (column-major vec) gives back docs/theory/expected-loss.md#closed-form."""
    m = p["W"].shape[0]
    Omega = np.kron(p["Lam"], np.eye(m))
    kw = {k: v for k, v in p.items() if k not in ("Lam", "W")}
    assert_close(expected_loss_general_prior(p["W"], Omega=Omega, **kw),
                 expected_loss(p["W"], Lam=p["Lam"], **kw))


# --- bad input -------------------------------------------------------------------------
def _ok():
    d, m = 3, 2
    return dict(W=np.zeros((m, d)), W_bar=np.zeros((m, d)), Sigma=np.eye(d), Lam=np.eye(d),
                sigma=0.1, n=5, alpha=0.1)


@pytest.mark.parametrize(("field", "value", "error"), [
    ("W", np.zeros(3), ShapeError),
    ("W_bar", np.zeros((3, 2)), ShapeError),
    ("Sigma", np.eye(2), ShapeError),
    ("Lam", np.eye(4), ShapeError),
    ("L", np.eye(3), ShapeError),
    ("R", np.eye(2), ShapeError),
    ("n", 0, InvalidArgumentError),
    ("n", -3, InvalidArgumentError),
    ("n", 2.5, InvalidArgumentError),
    ("sigma", math.nan, InvalidArgumentError),
    ("sigma", -1.0, InvalidArgumentError),
    ("alpha", math.nan, InvalidArgumentError),
    ("alpha", math.inf, InvalidArgumentError),
    ("alpha", "big", InvalidArgumentError),
    ("Sigma", np.diag([1.0, 0.0, 1.0]), InvalidArgumentError),
    ("Sigma", np.diag([1.0, -1.0, 1.0]), InvalidArgumentError),
    ("Sigma", np.array([[1.0, 0.5, 0], [0, 1, 0], [0, 0, 1]]), InvalidArgumentError),
    ("Lam", np.diag([1.0, -0.5, 1.0]), InvalidArgumentError),
    ("W", np.full((2, 3), np.nan), InvalidArgumentError),
])
def test_bad_input_names_the_field(field, value, error):
    kw = _ok()
    kw[field] = value
    W = kw.pop("W")
    with pytest.raises(error, match=field):
        expected_loss(W, **kw)


def test_bad_torch_input_names_the_field():
    kw = {k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in _ok().items()}
    W = kw.pop("W")
    with pytest.raises(InvalidArgumentError, match="alpha"):
        expected_loss(W, **{**kw, "alpha": torch.tensor(float("nan"))})
    with pytest.raises(InvalidArgumentError, match="Sigma"):
        expected_loss(W, **{**kw, "Sigma": -torch.eye(3, dtype=torch.float64)})
    with pytest.raises(ShapeError, match="Omega"):
        expected_loss_general_prior(W, **{k: v for k, v in kw.items() if k != "Lam"},
                                    Omega=torch.eye(5, dtype=torch.float64))
