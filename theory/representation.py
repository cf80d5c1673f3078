"""Representation learning by ANIL in the model ``y = ⟨B* w*, x⟩ + noise`` (Collins,
Mokhtari, Oh & Shakkottai, 2022): the exact population first-order ANIL step and the
contraction rate of ``dist(B, B*)`` it implies.

Model ``⟨w, Bᵀx⟩`` with ``B ∈ R^{d×k}``, ``x ~ N(0, I_d)``, ``B* ∈ R^{d×k}`` orthonormal,
``w* ~`` a law with ``E w* = 0``, ``E w*w*ᵀ = Λ`` (k × k). One inner step α on w from w = 0
(population gradient ``−BᵀB*w*``) gives ``w' = α BᵀB* w*``; the first-order outer gradient
``E[(Bw' − B*w*) w'ᵀ]`` yields the update

    B ← B − βα (α BBᵀ − I) B* Λ B*ᵀ B.

Writing ``R = B*ᵀB`` and ``E = B*_⊥ᵀB``: ``R ← R + βα(I − αRRᵀ)ΛR`` (closed in R) and
``E ← E (I − βα² RᵀΛR)``. At the fixed point ``RRᵀ = I/α`` (``R = O/√α``, O orthogonal) the
perpendicular part contracts as ``E ← E (I − βα OᵀΛO)``, so ``dist(B, B*) = ‖B*_⊥ᵀ B̂‖₂``
(B̂ an orthonormal basis of col B) has the late ratio ``1 − βα λ_min(Λ)``.

References: L. Collins, A. Mokhtari, S. Oh, S. Shakkottai, "MAML and ANIL provably learn
representations", ICML 2022; docs/theory/neighbours-collins.md.
"""

from __future__ import annotations

import numpy as np

from maml_depth import _checks
from maml_depth.errors import ShapeError

__all__ = ["anil_late_ratio", "anil_population_step", "subspace_distance"]


def subspace_distance(B: np.ndarray, B_star: np.ndarray) -> float:
    """``dist(B, B*) = ‖(I − B*B*ᵀ) B̂‖₂`` with B̂ an orthonormal basis of col(B) (the sine of
    the largest principal angle; B* orthonormal)."""
    B, Bs = np.asarray(B, np.float64), np.asarray(B_star, np.float64)
    if B.ndim != 2 or Bs.ndim != 2 or B.shape[0] != Bs.shape[0]:
        raise ShapeError(f"B and B* must be d×k matrices with the same d, got {B.shape}, "
                         f"{Bs.shape}")
    Q, _ = np.linalg.qr(B)
    return float(np.linalg.norm(Q - Bs @ (Bs.T @ Q), ord=2))


def anil_population_step(B: np.ndarray, B_star: np.ndarray, Lam: np.ndarray, alpha: float,
                         beta: float) -> np.ndarray:
    """One population first-order ANIL step from w = 0:
    ``B − βα (α BBᵀ − I) B* Λ B*ᵀ B``."""
    B, Bs, L = (np.asarray(a, np.float64) for a in (B, B_star, Lam))
    if B.shape != Bs.shape or L.shape != (Bs.shape[1], Bs.shape[1]):
        raise ShapeError(f"B, B* must be d×k and Λ k×k; got {B.shape}, {Bs.shape}, {L.shape}")
    alpha, beta = _checks.finite_float("alpha", alpha), _checks.finite_float("beta", beta)
    M = Bs @ L @ Bs.T @ B
    return B - beta * alpha * (alpha * B @ (B.T @ M) - M)


def anil_late_ratio(Lam: np.ndarray, alpha: float, beta: float) -> float:
    """``1 − βα λ_min(Λ)``: the asymptotic per-step ratio of ``dist(B, B*)`` under
    :func:`anil_population_step`."""
    lam = np.linalg.eigvalsh(np.asarray(Lam, np.float64))
    return 1.0 - _checks.finite_float("beta", beta) * _checks.finite_float("alpha", alpha) \
        * float(lam.min())
