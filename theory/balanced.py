"""Balanced deep linear networks: the end-to-end dynamics of Arora, Cohen & Hazan (2018).

For layers ``W_1 … W_N`` with ``W_{j+1}ᵀW_{j+1} = W_jW_jᵀ`` (balanced) and end-to-end map
``W = W_N ⋯ W_1``, one gradient step η on every layer (loss ℓ of W, ``G = ∇ℓ(W)``) moves W by

    W' = W − η Σ_{j=1..N} (WWᵀ)^{(j−1)/N} G (WᵀW)^{(N−j)/N} + O(η²),

and for N = 2 exactly ``W' = W − η[(WWᵀ)^{½}G + G(WᵀW)^{½}] + η² G WᵀG``.

Derivation (docs/theory/neighbours-ach.md): ``A_jA_jᵀ = (WWᵀ)^{(N−j)/N}`` and
``B_jᵀB_j = (WᵀW)^{(j−1)/N}`` for balanced layers, so the package's first-order rule
``Σ_j A_jA_jᵀ G B_jᵀB_j`` (docs/theory/update-rules.md#first-order) is the fractional-power
sum (reindexed).

References: Arora, Cohen, Hazan, "On the optimization of deep networks: implicit acceleration
by overparameterization", ICML 2018 (gradient-flow form); docs/theory/neighbours-ach.md.
"""

from __future__ import annotations

import numpy as np

from maml_depth import _checks
from maml_depth.errors import InvalidArgumentError, ShapeError

__all__ = [
    "ACH_VARIANTS",
    "ach_end_to_end_step",
    "ach_kronecker_preconditioner",
    "ach_two_layer_exact_step",
    "psd_power",
]

#: the rule and its wrong variants (the last needs a square W)
ACH_VARIANTS: tuple[str, ...] = ("ach", "plain", "scaled", "shifted", "swapped")


def psd_power(S: np.ndarray, t: float) -> np.ndarray:
    """``S^t`` of a symmetric PSD matrix by its eigendecomposition, with ``S^0 = I`` and
    zero eigenvalues kept at zero for ``t > 0`` (tiny negative round-off clipped)."""
    S = np.asarray(S, dtype=np.float64)
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise ShapeError(f"S must be a square matrix, got shape {S.shape}")
    if t == 0:
        return np.eye(S.shape[0])
    if t < 0:
        raise InvalidArgumentError(f"t must be >= 0 (PSD powers), got {t}")
    lam, U = np.linalg.eigh((S + S.T) / 2)
    tol = max(float(lam.max(initial=0.0)), 1.0) * S.shape[0] * np.finfo(np.float64).eps
    lam = np.where(lam > tol, lam, 0.0)
    return (U * lam ** t) @ U.T


def _factors(W: np.ndarray, N: int, variant: str) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """``[(left_j, right_j, c_j)]`` with the step ``−η Σ_j c_j left_j G right_j``."""
    WWt, WtW = W @ W.T, W.T @ W
    if variant == "ach":
        return [(psd_power(WWt, (j - 1) / N), psd_power(WtW, (N - j) / N), 1.0)
                for j in range(1, N + 1)]
    if variant == "plain":
        return [(np.eye(W.shape[0]), np.eye(W.shape[1]), 1.0)]
    if variant == "scaled":
        return [(np.eye(W.shape[0]), np.eye(W.shape[1]), float(N))]
    if variant == "shifted":
        return [(psd_power(WWt, j / N), psd_power(WtW, (N - j) / N), 1.0)
                for j in range(1, N + 1)]
    if variant == "swapped":
        if W.shape[0] != W.shape[1]:
            raise ShapeError(f"variant 'swapped' needs a square W, got shape {W.shape}")
        return [(psd_power(WtW, (j - 1) / N), psd_power(WWt, (N - j) / N), 1.0)
                for j in range(1, N + 1)]
    raise InvalidArgumentError(f"variant must be one of {ACH_VARIANTS}, got {variant!r}")


def ach_end_to_end_step(W: np.ndarray, G: np.ndarray, eta: float, depth: int,
                        variant: str = "ach") -> np.ndarray:
    """First-order end-to-end step of a balanced depth-N net:
    ``W − η Σ_{j=1..N} (WWᵀ)^{(j−1)/N} G (WᵀW)^{(N−j)/N}``.

    ``variant`` selects a wrong rule for tests: ``"plain"`` ``W − ηG``; ``"scaled"``
    ``W − ηN G``; ``"shifted"`` exponents ``j/N`` and ``(N−j)/N``; ``"swapped"`` WWᵀ and
    WᵀW exchanged (square W).

    References: Arora, Cohen, Hazan (ICML 2018); docs/theory/neighbours-ach.md.
    """
    W, G = np.asarray(W, np.float64), np.asarray(G, np.float64)
    if W.ndim != 2 or G.shape != W.shape:
        raise ShapeError(f"W must be a matrix and G of its shape, got {W.shape}, {G.shape}")
    N = _checks.positive_int("depth", depth)
    eta = _checks.finite_float("eta", eta)
    step = np.zeros_like(W)
    for Lf, Rf, c in _factors(W, N, variant):
        step += c * (Lf @ G @ Rf)
    return W - eta * step


def ach_two_layer_exact_step(W: np.ndarray, G: np.ndarray, eta: float) -> np.ndarray:
    """Exact end-to-end step of a balanced two-layer net (``W = W_2W_1``,
    ``W_2ᵀW_2 = W_1W_1ᵀ``): ``W − η[(WWᵀ)^{½}G + G(WᵀW)^{½}] + η² G WᵀG``.

    Derivation: ``(W_2 − ηGW_1ᵀ)(W_1 − ηW_2ᵀG)`` with ``W_2W_2ᵀ = (WWᵀ)^{½}`` and
    ``W_1ᵀW_1 = (WᵀW)^{½}`` (balancedness), ``W_1ᵀW_2ᵀ = Wᵀ``.

    References: docs/theory/neighbours-ach.md#eq-6.4.
    """
    W, G = np.asarray(W, np.float64), np.asarray(G, np.float64)
    if W.ndim != 2 or G.shape != W.shape:
        raise ShapeError(f"W must be a matrix and G of its shape, got {W.shape}, {G.shape}")
    eta = _checks.finite_float("eta", eta)
    return (W - eta * (psd_power(W @ W.T, 0.5) @ G + G @ psd_power(W.T @ W, 0.5))
            + eta ** 2 * G @ W.T @ G)


def ach_kronecker_preconditioner(W: np.ndarray, depth: int) -> np.ndarray:
    """The fractional-power form as a Kronecker sum (column-major vec):
    ``P = Σ_{j=1..N} (WᵀW)^{(N−j)/N} ⊗ (WWᵀ)^{(j−1)/N}``, so that
    ``vec(W' − W) = −η P vec G + O(η²)``.

    References: docs/theory/neighbours-ach.md#eq-6.3.
    """
    W = np.asarray(W, np.float64)
    if W.ndim != 2:
        raise ShapeError(f"W must be a matrix, got shape {W.shape}")
    N = _checks.positive_int("depth", depth)
    P = np.zeros((W.size, W.size))
    for Lf, Rf, _ in _factors(W, N, "ach"):
        P += np.kron(Rf.T, Lf)
    return P
