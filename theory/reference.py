"""Reference losses of one MAML step on Gaussian linear-regression tasks: the numbers a
meta-trained network should reach (docs/theory/index.md: expected loss, preconditioners).

Setting: tasks ``W_t = W̄ + Z`` with the ``m`` rows of ``Z`` i.i.d. ``N(0, Λ)``, ``n`` support
inputs ``x ~ N(0, Σ)`` with noise ``N(0, σ² I_m)``, population query loss, the initialisation at
the task mean ``W = W̄`` and the end-to-end update ``W' = W − G P``. Each output row is an
independent copy of the ``m = 1`` problem, so every loss below is ``m`` times its ``m = 1``
value and the minimisers do not depend on ``m``:

- ``E ℒ(αI)``: shallow MAML with the given step α (:func:`fixed_step_loss` / :func:`expected_loss`);
- ``α* = tr(ΛΣ²) / ((1 + 1/n) tr(ΛΣ³) + (c/n) tr(Σ²))``, ``c = tr(ΛΣ) + σ²``, and ``E ℒ(α*I)``:
  the best shallow step;
- ``P* = [(1 + 1/n) ΛΣ + (c/n) I]⁻¹ Λ`` and ``E ℒ(P*)``: the best preconditioner, reached by
  a deep linear network adapting its top layer (``P = α BᵀB`` with ``B`` the product of the
  layers below).

Hence ``E ℒ(P*) ≤ E ℒ(α*I) ≤ E ℒ(αI)``. Nothing is re-derived here: the minimisers come from
:func:`~maml_depth.theory.optimal_preconditioner`, the losses from
:func:`~maml_depth.theory.expected_loss` evaluated at ``m`` outputs.

Symbols ↔ user-facing names: ``n`` = ``n_support`` (``--n-support``), ``alpha`` = the inner
step size (``--alpha``), ``sigma`` = the label-noise standard deviation (``--sigma``).

References: docs/theory/index.md; Arnold, Iqbal, Sha (AISTATS 2021), §3–4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

from maml_depth import _checks
from maml_depth.theory.expected_loss import expected_loss
from maml_depth.theory.preconditioners import optimal_preconditioner

__all__ = ["ReferenceLosses", "reference_losses"]


@dataclass(frozen=True)
class ReferenceLosses:
    """The reference losses of :func:`reference_losses` (noise floor ``½ m σ²`` included).

    Attributes:
        loss_alpha: ``E ℒ(αI)`` at the given step ``alpha``.
        alpha: the given step α.
        alpha_star: the best scalar step α*.
        loss_alpha_star: ``E ℒ(α*I)``.
        P_star: the best effective step matrix ``P*`` (``d × d`` numpy array).
        loss_P_star: ``E ℒ(P*)``.
        m: number of outputs. n: support samples. sigma: noise standard deviation.
    """

    loss_alpha: float
    alpha: float
    alpha_star: float
    loss_alpha_star: float
    P_star: np.ndarray
    loss_P_star: float
    m: int
    n: int
    sigma: float

    def as_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready): the losses, steps and ``P*`` as nested lists."""
        return {"loss_alpha": self.loss_alpha, "alpha": self.alpha,
                "alpha_star": self.alpha_star, "loss_alpha_star": self.loss_alpha_star,
                "P_star": self.P_star.tolist(), "loss_P_star": self.loss_P_star,
                "m": self.m, "n": self.n, "sigma": self.sigma}


def _np(x: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def reference_losses(Sigma: Any, Lam: Any, sigma: float, n: int, alpha: float, *,
                     m: int = 1) -> ReferenceLosses:
    """``E ℒ(αI)``, ``α*``, ``E ℒ(α*I)``, ``P*`` and ``E ℒ(P*)`` at ``W = W̄`` for ``m`` outputs.

    ``E ℒ(P) = m · ½ [tr(ΛΣ) − 2 tr(ΣΛΣP) + (1 + 1/n) tr(ΣΛΣ PΣPᵀ) + (c/n) tr(PΣPᵀΣ)]
    + ½ m σ²`` with ``c = tr(ΛΣ) + σ²``, evaluated at ``P = αI``, ``α*I`` and ``P*``.

    Args:
        Sigma: input covariance Σ (``d × d``, SPD). Lam: row covariance Λ of ``W_t − W̄``
            (``d × d``, PSD). sigma: noise standard deviation σ ≥ 0. n: support samples ≥ 1.
        alpha: the inner step size α of the shallow reference. m: outputs ≥ 1.

    Raises:
        InvalidArgumentError / ShapeError: as :func:`expected_loss` (naming the argument).

    References: docs/theory/index.md; Arnold, Iqbal, Sha (AISTATS 2021), §3–4.
    """
    m = _checks.positive_int("m", m)
    n = _checks.positive_int("n", n)
    alpha = _checks.finite_float("alpha", alpha)
    sigma = _checks.finite_float("sigma", sigma, nonneg=True)
    S, La = _np(Sigma), _np(Lam)
    zero = np.zeros((m, S.shape[-1]))

    def loss(P: np.ndarray | None, a: float) -> float:
        return float(expected_loss(zero, W_bar=zero, Sigma=S, Lam=La, sigma=sigma, n=n,
                                   alpha=a, R=P))

    scalar = optimal_preconditioner(S, La, sigma, n, kind="scalar")
    full = optimal_preconditioner(S, La, sigma, n, kind="full")
    alpha_star = float(scalar.alpha if scalar.alpha is not None else 0.0)
    P_star = np.asarray(full.P, dtype=np.float64)
    return ReferenceLosses(
        loss_alpha=loss(None, alpha), alpha=alpha, alpha_star=alpha_star,
        loss_alpha_star=loss(None, alpha_star), P_star=P_star,
        loss_P_star=loss(P_star, 1.0), m=m, n=n, sigma=sigma)
