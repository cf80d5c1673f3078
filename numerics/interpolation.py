"""Numeric twin of theory/interpolation.py: plain gradient descent on ``‖Xθ − y‖²/(2n)``
from θ₀, run until it interpolates (batched over tasks, torch).

References: docs/theory/neighbours-saunshi.md.
"""

from __future__ import annotations

import torch
from torch import Tensor

from maml_depth import _checks
from maml_depth.errors import ShapeError

__all__ = ["gd_to_interpolation"]


def gd_to_interpolation(theta0: Tensor, X: Tensor, y: Tensor, *, steps: int = 500) -> Tensor:
    """``steps`` gradient steps ``θ ← θ − η Xᵀ(Xθ − y)/n`` with the per-task step
    ``η = n/‖X‖₂²`` (the inverse of the largest curvature). Shapes ``θ₀ (T, d)``,
    ``X (T, n, d)``, ``y (T, n)``; returns ``(T, d)``. The iterates stay in ``θ₀ + row(X)``,
    so the limit is the interpolant nearest θ₀."""
    steps = _checks.positive_int("steps", steps)
    if X.ndim != 3 or y.shape != X.shape[:2] or theta0.shape != (X.shape[0], X.shape[2]):
        raise ShapeError(f"need theta0 (T, d), X (T, n, d), y (T, n); got {tuple(theta0.shape)}"
                         f", {tuple(X.shape)}, {tuple(y.shape)}")
    n = X.shape[1]
    eta = n / torch.linalg.matrix_norm(X, ord=2).pow(2)
    theta = theta0.clone()
    for _ in range(steps):
        r = torch.einsum("tnd,td->tn", X, theta) - y
        theta = theta - eta[:, None] * torch.einsum("tnd,tn->td", X, r) / n
    return theta
