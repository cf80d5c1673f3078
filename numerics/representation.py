"""Numeric twin of theory/representation.py: the population first-order ANIL step computed
by autograd (inner step on w by autograd from w = 0, detached; outer gradient on B by
autograd), the expectation over w* taken exactly on the k points ``√k Λ^{½} e_i`` (the loss
is quadratic in w* with E w* = 0, so their average is the expectation).

References: docs/theory/neighbours-collins.md.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["anil_population_step_autograd"]


def _population_loss(B: Tensor, w: Tensor, B_star: Tensor, w_star: Tensor) -> Tensor:
    """``½ E_x (⟨w, Bᵀx⟩ − ⟨B*w*, x⟩)² = ½‖Bw − B*w*‖²`` for ``x ~ N(0, I)`` (noise
    dropped: it adds a constant)."""
    return 0.5 * (B @ w - B_star @ w_star).pow(2).sum()


def anil_population_step_autograd(B: Tensor, B_star: Tensor, Lam: Tensor, alpha: float,
                                  beta: float) -> Tensor:
    """``B − β E_{w*} ∇_B ℓ(B, w')`` with ``w' = 0 − α ∇_w ℓ(B, 0)`` (first order)."""
    k = B_star.shape[1]
    evals, evecs = torch.linalg.eigh(Lam)
    root = evecs * evals.clamp_min(0).sqrt()  # Λ^{½} up to rotation: root rootᵀ = Λ
    Bv = B.detach().clone().requires_grad_(True)
    grad = torch.zeros_like(B)
    for i in range(k):
        w_star = math.sqrt(k) * root[:, i]
        w0 = torch.zeros(k, dtype=B.dtype, requires_grad=True)
        (g_w,) = torch.autograd.grad(_population_loss(Bv, w0, B_star, w_star), w0)
        w1 = (w0 - alpha * g_w).detach()
        (g_B,) = torch.autograd.grad(_population_loss(Bv, w1, B_star, w_star), Bv)
        grad = grad + g_B / k
    return (B - beta * grad).detach()
