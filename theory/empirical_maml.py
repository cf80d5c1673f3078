"""Finite meta-training sets: the exact empirical one-step MAML estimator and the pooled
least-squares estimator for N tasks of linear regression, in closed form (the objectives
are quadratic in the initialisation), with the package's derived expectations for the
settings of Bernacchia (2021) and Gao & Sener (2020).

Conventions: rows are samples. Task i has support (inner) data ``X_i^t ∈ R^{n_t×p}``,
``y_i^t`` and query (outer) data ``X_i^v ∈ R^{n_v×p}``, ``y_i^v``. One inner step of size α
on the support loss ``‖X ω − y‖²/(2 n_t)`` maps

    ω ↦ ω_i' = A_i ω + (α/n_t) X_i^tᵀ y_i^t,      A_i = I − (α/n_t) X_i^tᵀ X_i^t,

so the empirical MAML objective ``Σ_i ‖y_i^v − X_i^v ω_i'‖²`` is ``‖z − Z ω‖²`` with
``Z_i = X_i^v A_i`` and ``z_i = y_i^v − (α/n_t) X_i^v X_i^tᵀ y_i^t`` (stacked over tasks).
Its minimiser nearest ω₀ is ``ω̂ = ω₀ + Z⁺(z − Z ω₀)`` (unique when Z has full column rank).

References: docs/theory/neighbours-bernacchia.md, docs/theory/neighbours-gao-sener.md;
Bernacchia, "Meta-learning with negative learning rates", ICLR 2021; Gao & Sener,
"Modeling and optimization trade-off in meta-learning", NeurIPS 2020.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from maml_depth import _checks
from maml_depth.errors import InvalidArgumentError, ShapeError

__all__ = [
    "BernacchiaSetting",
    "GaoSenerSetting",
    "adaptation_factor",
    "bernacchia_estimator_error",
    "bernacchia_test_loss",
    "maml_design",
    "maml_estimator",
    "pooled_estimator",
]


def _as_batch(a: np.ndarray, name: str, ndim: int) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != ndim:
        raise ShapeError(f"{name} must have {ndim} dimensions (tasks first), got shape "
                         f"{arr.shape}")
    return arr


def maml_design(Xt: np.ndarray, yt: np.ndarray, Xv: np.ndarray, yv: np.ndarray, alpha: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """The least-squares form ``‖z − Zω‖²`` of the empirical one-step MAML objective.

    ``Z_i = X_i^v (I − (α/n_t) X_i^tᵀX_i^t)``, ``z_i = y_i^v − (α/n_t) X_i^v X_i^tᵀ y_i^t``.

    Args:
        Xt: support inputs ``(…, m, n_t, p)``; yt: support targets ``(…, m, n_t)``.
        Xv: query inputs ``(…, m, n_v, p)``; yv: query targets ``(…, m, n_v)``.
        alpha: inner step size α (any real, negative allowed).

    Returns:
        ``Z`` of shape ``(…, m·n_v, p)`` and ``z`` of shape ``(…, m·n_v)``.

    References: docs/theory/neighbours-bernacchia.md#eq-7.1.
    """
    alpha = _checks.finite_float("alpha", alpha)
    Xt, Xv = np.asarray(Xt, np.float64), np.asarray(Xv, np.float64)
    yt, yv = np.asarray(yt, np.float64), np.asarray(yv, np.float64)
    if Xt.ndim < 3 or Xv.ndim != Xt.ndim or Xt.shape[-1] != Xv.shape[-1]:
        raise ShapeError(f"Xt and Xv must be (..., m, n, p) with the same p, got {Xt.shape} "
                         f"and {Xv.shape}")
    if yt.shape != Xt.shape[:-1] or yv.shape != Xv.shape[:-1]:
        raise ShapeError(f"yt/yv must have shapes {Xt.shape[:-1]}/{Xv.shape[:-1]}, got "
                         f"{yt.shape}/{yv.shape}")
    nt, p = Xt.shape[-2], Xt.shape[-1]
    A = np.eye(p) - (alpha / nt) * np.swapaxes(Xt, -1, -2) @ Xt
    Z = Xv @ A
    z = yv - (alpha / nt) * np.einsum("...vp,...tp,...t->...v", Xv, Xt, yt)
    lead = Z.shape[:-3]
    return Z.reshape(*lead, -1, p), z.reshape(*lead, -1)


def maml_estimator(Xt: np.ndarray, yt: np.ndarray, Xv: np.ndarray, yv: np.ndarray,
                   alpha: float, omega0: np.ndarray | None = None) -> np.ndarray:
    """Exact minimiser of the empirical one-step MAML objective nearest ``ω₀``:
    ``ω̂ = ω₀ + Z⁺(z − Zω₀)`` (``Z, z`` from :func:`maml_design`); when ``p > m·n_v`` this is
    the minimum-norm interpolant from ω₀ (gradient descent from ω₀ converges to it).

    Returns ``ω̂`` of shape ``(…, p)``.

    References: docs/theory/neighbours-bernacchia.md#eq-7.2.
    """
    Z, z = maml_design(Xt, yt, Xv, yv, alpha)
    p = Z.shape[-1]
    w0 = np.zeros(p) if omega0 is None else np.asarray(omega0, np.float64)
    if w0.shape[-1] != p:
        raise ShapeError(f"omega0 must have last dimension p = {p}, got shape {w0.shape}")
    r = z - np.einsum("...kp,...p->...k", Z, w0)
    return w0 + np.einsum("...pk,...k->...p", np.linalg.pinv(Z), r)


def pooled_estimator(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pooled least squares over all tasks' samples: ``ŵ = (Σ_i X_iᵀX_i)⁺ Σ_i X_iᵀ y_i``.

    Args:
        X: ``(…, m, n, p)`` inputs of m tasks; y: ``(…, m, n)`` targets.

    Returns ``(…, p)``.

    References: docs/theory/neighbours-gao-sener.md#eq-8.5.
    """
    X, y = np.asarray(X, np.float64), np.asarray(y, np.float64)
    if X.ndim < 3 or y.shape != X.shape[:-1]:
        raise ShapeError(f"X must be (..., m, n, p) and y (..., m, n), got {X.shape}, {y.shape}")
    H = np.einsum("...inp,...inq->...pq", X, X)
    b = np.einsum("...inp,...in->...p", X, y)
    return np.einsum("...pq,...q->...p", np.linalg.pinv(H), b)


@dataclass(frozen=True)
class BernacchiaSetting:
    """Mixed linear regression of Bernacchia (2021): ``x ~ N(0, I_p)``,
    ``w ~ N(w₀, (ν²/p) I)``, ``y = wᵀx + σε``; m training tasks with n_t support and n_v
    query points, meta-training rate α_t; at test one step α_r on n_r points. Initial
    point ω₀ = w₀ (the prediction below is for that case). Defaults: the paper's figure 2."""

    p: int = 60
    m: int = 3
    n_t: int = 30
    n_v: int = 2
    n_r: int = 20
    sigma: float = 1.0
    nu: float = 0.5
    alpha_r: float = 0.2

    def __post_init__(self) -> None:
        for name in ("p", "m", "n_t", "n_v", "n_r"):
            _checks.positive_int(name, getattr(self, name))
        _checks.finite_float("sigma", self.sigma)
        _checks.finite_float("nu", self.nu)
        _checks.finite_float("alpha_r", self.alpha_r)
        if self.sigma < 0 or self.nu < 0:
            raise InvalidArgumentError(f"sigma and nu must be >= 0, got sigma={self.sigma}, "
                                       f"nu={self.nu}")
        if self.p <= self.k + 1:
            raise InvalidArgumentError(
                f"the prediction is for the overparameterised case p > m·n_v + 1; got p = "
                f"{self.p}, m·n_v = {self.k}")

    @property
    def k(self) -> int:
        """Number of outer equations ``k = m·n_v`` (rows of Z)."""
        return self.m * self.n_v


def adaptation_factor(alpha: float, p: int, n: int) -> float:
    """``h(α) = E‖(I − αΣ̂)v‖²/‖v‖² = (1 − α)² + α²(p + 1)/n`` for ``Σ̂ = XᵀX/n``,
    ``x ~ N(0, I_p)`` (from ``E Σ̂² = (1 + (p + 1)/n) I``)."""
    return (1.0 - alpha) ** 2 + alpha ** 2 * (p + 1) / n


def bernacchia_estimator_error(s: BernacchiaSetting, alpha_t: float | np.ndarray, *,
                               inverse: str = "wishart") -> np.ndarray:
    """The package's prediction of ``E‖ω̂ − w₀‖²`` (ω₀ = w₀, p > k + 1, k = m·n_v)::

        E‖ω̂ − w₀‖² ≈ k/(p − k − 1) · [ ν² (p − n_v − 1)/p + σ² (1 + α_t² p/n_t) / h_t ],
        h_t = (1 − α_t)² + α_t² (p + 1)/n_t.

    Derived in docs/theory/neighbours-bernacchia.md: exact given that the rows of Z are
    isotropic Gaussian with variance h_t (the mean of ``A_i²``), using the inverse-Wishart
    mean ``E(ZZᵀ)⁻¹ = I/(h_t(p − k − 1))`` and the Schur complement per task.

    ``inverse="naive"`` is the wrong variant with ``k/p`` in place of ``k/(p − k − 1)``.
    """
    if inverse not in ("wishart", "naive"):
        raise InvalidArgumentError(f"inverse must be 'wishart' or 'naive', got {inverse!r}")
    a = np.asarray(alpha_t, dtype=np.float64)
    p, k, nt, nv = s.p, s.k, s.n_t, s.n_v
    h_t = adaptation_factor(a, p, nt)  # type: ignore[arg-type]
    factor = k / (p - k - 1) if inverse == "wishart" else k / p
    return factor * (s.nu ** 2 * (p - nv - 1) / p
                     + s.sigma ** 2 * (1.0 + a ** 2 * p / nt) / h_t)


def bernacchia_test_loss(s: BernacchiaSetting, alpha_t: float | np.ndarray, *,
                         inverse: str = "wishart") -> np.ndarray:
    """Expected test loss after one step α_r on n_r points from ω̂ (exact given
    ``E‖ω̂ − w₀‖²``; the population loss of a test task is ``½(‖ω' − w‖² + σ²)``)::

        L_test = ½ [ h_r (E‖ω̂ − w₀‖² + ν²) + σ² (1 + α_r² p/n_r) ],
        h_r = (1 − α_r)² + α_r² (p + 1)/n_r.

    References: docs/theory/neighbours-bernacchia.md#eq-7.5.
    """
    h_r = adaptation_factor(s.alpha_r, s.p, s.n_r)
    err = bernacchia_estimator_error(s, alpha_t, inverse=inverse)
    return 0.5 * (h_r * (err + s.nu ** 2) + s.sigma ** 2 * (1.0 + s.alpha_r ** 2 * s.p / s.n_r))


@dataclass(frozen=True)
class GaoSenerSetting:
    """One-dimensional regression of Gao & Sener (2020): per task the input variance
    ``q ~ U(0, β)`` (``x ~ N(0, q)``), the regression coefficient ``c`` (``c = q`` when
    ``coupled``, else ``c ~ U(0, β)`` independent of q), noise variance ``s² ~ U(0, β)``,
    ``y = c x + s ε``; N support and N query samples; one inner step α on the support loss
    ``Σ(y − wx)²/(2N)``."""

    beta: float = 2.0
    alpha: float = 0.25
    N: int = 5
    coupled: bool = True

    def __post_init__(self) -> None:
        _checks.finite_float("beta", self.beta, positive=True)
        _checks.finite_float("alpha", self.alpha)
        _checks.positive_int("N", self.N)

    def moment(self, k: int) -> float:
        """``E U^k = β^k/(k + 1)`` for ``U ~ U(0, β)``."""
        return self.beta ** k / (k + 1)

    def weight(self, q: float | np.ndarray) -> np.ndarray:
        """``w(q) = q − 2αq² + (1 + 2/N)α²q³ = q E_support(1 − αq̂)²`` (``q̂`` the support
        second moment, ``E q̂² = (1 + 2/N) q²``): the weight of a task in MAML's population
        objective."""
        q = np.asarray(q, dtype=np.float64)
        a = self.alpha
        return q - 2 * a * q ** 2 + (1 + 2 / self.N) * a ** 2 * q ** 3

    def _weight_moment(self, j: int) -> float:
        """``E[w(q) c^j]``."""
        a, c2 = self.alpha, 1 + 2 / self.N
        if self.coupled:
            return (self.moment(1 + j) - 2 * a * self.moment(2 + j)
                    + c2 * a ** 2 * self.moment(3 + j))
        return (self.moment(1) - 2 * a * self.moment(2) + c2 * a ** 2 * self.moment(3)) \
            * self.moment(j)

    def pooled_optimum(self) -> float:
        """Population optimum of pooled least squares ``E[q c]/E[q]`` (2β/3 when coupled,
        β/2 when independent)."""
        return (self.moment(2) if self.coupled else self.moment(1) * self.moment(1)) \
            / self.moment(1)

    def maml_optimum(self) -> float:
        """Population optimum of one-step MAML ``E[w(q) c]/E[w(q)]`` (β/2 when
        independent: then both optima coincide)."""
        return self._weight_moment(1) / self._weight_moment(0)

    def post_adaptation_loss(self, w: float | np.ndarray) -> np.ndarray:
        """Exact expected query loss after one inner step from w, over tasks, support sets
        and noise::

            ½ E[w(q)(w − c)²] + ½ E[s²](1 + α² E[q²]/N)

        (from ``w' − c = (1 − αq̂)(w − c) + (α/N)Σ x_i s ε_i`` and the query loss
        ``½[q(w' − c)² + s²]``). Minimised at :meth:`maml_optimum`."""
        w = np.asarray(w, dtype=np.float64)
        task = w ** 2 * self._weight_moment(0) - 2 * w * self._weight_moment(1) \
            + self._weight_moment(2)
        return 0.5 * task + 0.5 * self.moment(1) * (1 + self.alpha ** 2 * self.moment(2)
                                                    / self.N)
