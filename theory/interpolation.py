"""Gradient descent to interpolation from an initialisation, and the convex baseline of
Saunshi, Zhang, Khodak & Arora (2020).

Noiseless linear regression, ``x ~ N(0, I_d)``, n < d samples ``X ∈ R^{n×d}`` (rows are
samples), ``y = X w``. Gradient descent on ``‖Xθ − y‖²`` from θ₀ stays in ``θ₀ + row(X)`` and
converges to the interpolant nearest θ₀:

    θ̂ = θ₀ + X⁺(y − Xθ₀) = θ₀ + Π(w − θ₀),        Π = X⁺X (projection on row(X)),

so ``θ̂ − w = (I − Π)(θ₀ − w)``. Π is a uniformly random rank-n projection (X is rotation
invariant), ``E Π = (n/d) I``, hence

    E‖θ̂ − w‖² = (1 − n/d) E‖θ₀ − w‖² ≥ (1 − n/d) tr Cov(w),

with equality at θ₀ = E w. For tasks ``w = a u`` (‖u‖ = 1, E a = 0) the best initialisation
gives ``(1 − n/d) E a²``: no initialisation escapes the factor (1 − n/d).

References: N. Saunshi, Y. Zhang, M. Khodak, S. Arora, "A sample complexity separation
between non-convex and convex meta-learning", ICML 2020; docs/theory/neighbours-saunshi.md.
"""

from __future__ import annotations

import numpy as np

from maml_depth import _checks
from maml_depth.errors import InvalidArgumentError, ShapeError

__all__ = ["expected_interpolation_error", "min_norm_interpolant", "one_step_line_error"]


def min_norm_interpolant(theta0: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``θ̂ = θ₀ + X⁺(y − Xθ₀)``, the limit of gradient descent from θ₀ (batched: ``X`` of
    shape ``(…, n, d)``, ``y (…, n)``, ``θ₀ (…, d)``)."""
    X, y, t0 = (np.asarray(a, dtype=np.float64) for a in (X, y, theta0))
    if X.ndim < 2 or y.shape != X.shape[:-1] or t0.shape[-1] != X.shape[-1]:
        raise ShapeError(f"X must be (..., n, d), y (..., n), theta0 (..., d); got {X.shape}, "
                         f"{y.shape}, {t0.shape}")
    r = y - np.einsum("...nd,...d->...n", X, t0)
    return t0 + np.einsum("...dn,...n->...d", np.linalg.pinv(X), r)


def expected_interpolation_error(init_error: float, n: int, d: int) -> float:
    """``E‖θ̂ − w‖² = (1 − n/d)·E‖θ₀ − w‖²`` for ``x ~ N(0, I_d)``, n ≤ d, noiseless.

    Args:
        init_error: ``E‖θ₀ − w‖²`` (over tasks).
        n: samples (1 ≤ n ≤ d). d: dimension.
    """
    n, d = _checks.positive_int("n", n), _checks.positive_int("d", d)
    if n > d:
        raise InvalidArgumentError(f"n must be <= d (interpolation regime), got n={n}, d={d}")
    init_error = _checks.finite_float("init_error", init_error, nonneg=True)
    return (1.0 - n / d) * init_error


def one_step_line_error(n: int, second_moment: float = 1.0) -> float:
    """Best expected error ``E‖θ' − w‖²`` of one preconditioned step ``θ' = P Σ̂ w`` (θ₀ = 0)
    for tasks ``w = a u``: ``P* = uuᵀ/(1 + 2/n)`` and the error ``E a² · 2/(n + 2)``.

    From ``E[Σ̂ uuᵀ Σ̂] = (1 + 1/n) uuᵀ + I/n`` (Gaussian moments): the part of ``PΣ̂u``
    along u is ``uᵀPu · uᵀΣ̂u`` with ``E (uᵀΣ̂u)² = 1 + 2/n``. This is what a two-layer
    linear net adapting its top layer can reach (``P = α B_LᵀB_L``, rank one).
    """
    n = _checks.positive_int("n", n)
    return _checks.finite_float("second_moment", second_moment, nonneg=True) * 2.0 / (n + 2)
