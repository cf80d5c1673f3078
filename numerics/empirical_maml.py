"""Numeric twins of theory/empirical_maml.py: the empirical one-step MAML and pooled
least-squares estimators found by autograd (torch) on the objectives themselves, not from
their closed forms.

The MAML objective is evaluated with a real inner step (the support gradient by autograd,
kept in the graph) and, being quadratic in ω, is minimised exactly by one Newton step from
ω₀ with the pseudo-inverse of its autograd Hessian: ``ω̂ = ω₀ − H⁺ ∇L(ω₀)`` (the minimiser
nearest ω₀, as gradient descent from ω₀ would find).

References: docs/theory/neighbours-bernacchia.md, docs/theory/neighbours-gao-sener.md.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from maml_depth import _checks
from maml_depth.errors import ShapeError

__all__ = ["empirical_maml_objective", "maml_estimator_autograd", "newton_minimiser",
           "pooled_estimator_autograd"]


def _support_loss(w: Tensor, X: Tensor, y: Tensor) -> Tensor:
    return 0.5 * (X @ w - y).pow(2).sum() / X.shape[0]


def empirical_maml_objective(w: Tensor, Xt: Tensor, yt: Tensor, Xv: Tensor, yv: Tensor,
                             alpha: float) -> Tensor:
    """``Σ_i ‖X_i^v ω_i' − y_i^v‖²/(2 n_v)`` with ``ω_i' = ω − α ∇_ω ‖X_i^t ω − y_i^t‖²/(2n_t)``
    (inner gradient by autograd, second order). Shapes: ``Xt (m, n_t, p)``, ``yt (m, n_t)``,
    ``Xv (m, n_v, p)``, ``yv (m, n_v)``, ``w (p,)``."""
    total = torch.zeros((), dtype=w.dtype)
    for i in range(Xt.shape[0]):
        (g,) = torch.autograd.grad(_support_loss(w, Xt[i], yt[i]), w, create_graph=True)
        total = total + _support_loss(w - alpha * g, Xv[i], yv[i])
    return total


def newton_minimiser(f: Callable[[Tensor], Tensor], w0: Tensor) -> Tensor:
    """Exact minimiser nearest ``w0`` of a convex quadratic ``f``: ``w0 − H⁺∇f(w0)``
    (gradient and Hessian by autograd)."""
    w = w0.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(w), w)
    H = torch.autograd.functional.hessian(f, w0.detach())
    return (w0 - torch.linalg.pinv(H, hermitian=True) @ g).detach()


def maml_estimator_autograd(Xt: Tensor, yt: Tensor, Xv: Tensor, yv: Tensor, alpha: float,
                            omega0: Tensor | None = None) -> Tensor:
    """The empirical one-step MAML estimator by autograd (twin of
    ``theory.empirical_maml.maml_estimator``)."""
    alpha = _checks.finite_float("alpha", alpha)
    if Xt.ndim != 3 or Xv.ndim != 3 or Xt.shape[0] != Xv.shape[0]:
        raise ShapeError(f"Xt and Xv must be (m, n, p) with the same m, got {tuple(Xt.shape)}, "
                         f"{tuple(Xv.shape)}")
    p = Xt.shape[-1]
    w0 = torch.zeros(p, dtype=Xt.dtype) if omega0 is None else omega0
    return newton_minimiser(
        lambda w: empirical_maml_objective(w, Xt, yt, Xv, yv, alpha), w0)


def pooled_estimator_autograd(X: Tensor, y: Tensor) -> Tensor:
    """Pooled least squares ``argmin Σ_i ‖X_i w − y_i‖²`` (minimum norm) by autograd (twin of
    ``theory.empirical_maml.pooled_estimator``). ``X (m, n, p)``, ``y (m, n)``."""
    if X.ndim != 3 or y.shape != X.shape[:-1]:
        raise ShapeError(f"X must be (m, n, p) and y (m, n), got {tuple(X.shape)}, "
                         f"{tuple(y.shape)}")
    w0 = torch.zeros(X.shape[-1], dtype=X.dtype)
    return newton_minimiser(lambda w: 0.5 * (torch.einsum("inp,p->in", X, w) - y).pow(2).sum(),
                            w0)
