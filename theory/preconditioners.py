"""Optimal preconditioners of one inner step and their expected losses
(docs/theory/expected-loss.md#optimal-preconditioner).

Setting: one output (m = 1), initialisation at the task mean (``W = W̄``, ``D = 0``), the
update ``W' = W − G P`` with the *effective step matrix* ``P = αR`` (``d × d``). With
``c = tr(ΛΣ) + σ²`` the expected loss of docs/theory/expected-loss.md#closed-form becomes the
convex quadratic ::

    E ℒ(P) = ½ [ tr(ΛΣ) − 2 tr(ΣΛΣ P) + tr(A P Σ Pᵀ) ] + ½ σ²,
    A = (1 + 1/n) ΣΛΣ + (c/n) Σ

whose minimisers over the preconditioner classes are

- full (Meta-Curvature / KFO / a deep net adapting its top layer):
  ``P* = [(1 + 1/n) ΛΣ + (c/n) I]⁻¹ Λ = Λ^½ [(1 + 1/n) Λ^½ΣΛ^½ + (c/n) I]⁻¹ Λ^½``
  (symmetric PSD; ``→ Λ^½(Λ^½ΣΛ^½)⁺Λ^½`` as ``n → ∞``, = Σ⁻¹ for full-rank Λ),
  ``E ℒ(P*) = ½ [tr(ΛΣ) − tr(ΛΣP*Σ)] + ½ σ²``;
- diagonal (Meta-SGD): ``H p = diag(ΣΛΣ)``, ``H = (1 + 1/n)(ΣΛΣ) ∘ Σ + (c/n) Σ ∘ Σ``,
  ``E ℒ = ½ [tr(ΛΣ) − pᵀ diag(ΣΛΣ)] + ½ σ²``;
- scalar (tuned shallow MAML):
  ``α_s* = tr(ΛΣ²) / ((1 + 1/n) tr(ΛΣ³) + (c/n) tr(Σ²))``,
  ``E ℒ = ½ [tr(ΛΣ) − α_s* tr(ΛΣ²)] + ½ σ²``;

and ``E ℒ(αI)`` for a fixed step (:func:`fixed_step_loss`). Hence
``E ℒ(P*) ≤ E ℒ(P*_diag) ≤ E ℒ(α_s* I) ≤ E ℒ(αI)``.

Where no closed form exists — a full covariance Ω over ``vec W_t`` with a
Kronecker-factored step ``W − α L G R`` — :func:`optimal_kronecker_preconditioner` returns a
*numeric* optimum (scipy), labelled ``method="numeric"``.

References: docs/theory/expected-loss.md#optimal-preconditioner; Arnold, Iqbal, Sha (AISTATS
2021), §3–4.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from scipy import optimize
from torch import Tensor

from maml_depth import _checks
from maml_depth.errors import InvalidArgumentError, ShapeError
from maml_depth.theory._validation import _check_psd, _check_spd, _finite, _torch_T, _torch_tr
from maml_depth.theory.expected_loss import expected_loss, expected_loss_general_prior

__all__ = [
    "KroneckerPreconditioner",
    "OptimalPreconditioner",
    "fixed_step_loss",
    "k_step_loss",
    "optimal_kronecker_preconditioner",
    "optimal_preconditioner",
    "preconditioned_loss",
]

Kind = Literal["full", "diagonal", "scalar"]


class OptimalPreconditioner(tuple):  # type: ignore[type-arg]
    """``(P, loss)`` — unpacks as a pair — with labels.

    Attributes:
        P: the effective step matrix (``d × d``; the update is ``W − G P``).
        loss: its expected loss ``E ℒ(P)`` (float, noise floor ``½σ²`` included).
        kind: ``"full"``, ``"diagonal"`` or ``"scalar"``.
        method: ``"closed form"`` here (``"numeric"`` for numerically found optima).
        alpha: for ``kind="scalar"`` the step α_s* (``P = α_s* I``), else ``None``.
    """

    P: Any
    loss: float
    kind: str
    method: str
    alpha: float | None

    def __new__(cls, P: Any, loss: float, kind: str, method: str,
                alpha: float | None = None) -> OptimalPreconditioner:
        """``(P, loss)`` labelled with ``kind``, ``method`` and (scalar kind) ``alpha``."""
        self = super().__new__(cls, (P, loss))
        self.P, self.loss, self.kind, self.method, self.alpha = P, loss, kind, method, alpha
        return self

    def __repr__(self) -> str:
        return (f"OptimalPreconditioner(kind={self.kind!r}, method={self.method!r}, "
                f"loss={self.loss!r}, P={self.P!r})")


class KroneckerPreconditioner(tuple):  # type: ignore[type-arg]
    """``(L, R, loss)`` of a numerically optimised Kronecker-factored step ``W − L G R``
    (α absorbed into ``L``), with ``method="numeric"`` and the optimiser's report."""

    L: np.ndarray
    R: np.ndarray
    loss: float
    method: str
    success: bool
    message: str
    iterations: int

    def __new__(cls, L: np.ndarray, R: np.ndarray, loss: float, *, success: bool,
                message: str, iterations: int) -> KroneckerPreconditioner:
        """``(L, R, loss)`` with the optimiser's report (``success``, ``message``,
        ``iterations``); ``method`` is ``"numeric"``."""
        self = super().__new__(cls, (L, R, loss))
        self.L, self.R, self.loss = L, R, loss
        self.method = "numeric"
        self.success, self.message, self.iterations = success, message, iterations
        return self

    def __repr__(self) -> str:
        return (f"KroneckerPreconditioner(method='numeric', loss={self.loss!r}, "
                f"success={self.success}, L={self.L!r}, R={self.R!r})")


def _inputs(Sigma: Any, Lam: Any, sigma: Any, n: Any) -> tuple[np.ndarray, np.ndarray, float,
                                                                 int, bool]:
    was_torch = isinstance(Sigma, Tensor) or isinstance(Lam, Tensor)

    def arr(name: str, x: Any) -> np.ndarray:
        if isinstance(x, Tensor):
            x = x.detach().to(torch.float64).cpu().numpy()
        try:
            a = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"{name} must be a real (d, d) array, got {x!r}") from None
        return a

    S, La = arr("Sigma", Sigma), arr("Lam", Lam)
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise ShapeError(f"Sigma has shape {S.shape}, expected (d, d)")
    d = S.shape[0]
    _checks.shape("Lam", La.shape, (d, d))
    _finite("Sigma", S)
    _finite("Lam", La)
    _check_spd("Sigma", S)
    _check_psd("Lam", La)
    n = _checks.positive_int("n", n)
    sigma = _checks.finite_float("sigma", sigma, nonneg=True)
    return 0.5 * (S + S.T), 0.5 * (La + La.T), sigma, n, was_torch


def _psd_factor(Lam: np.ndarray) -> np.ndarray:
    """``U_r Λ_r^½`` (``d × r``) from the eigenvalues of Λ above round-off."""
    ev, U = np.linalg.eigh(Lam)
    tol = Lam.shape[0] * np.finfo(float).eps * max(float(np.abs(ev).max()), 1e-300)
    keep = ev > tol
    return U[:, keep] * np.sqrt(ev[keep])


def _back(P: np.ndarray, was_torch: bool) -> Any:
    return torch.from_numpy(P) if was_torch else P


def optimal_preconditioner(
    Sigma: Any, Lam: Any, sigma: float, n: int, kind: Kind = "full", steps: int = 1, *,
    max_terms: int = 10**6, restarts: int = 4, seed: int = 0,
) -> OptimalPreconditioner:
    """The best effective step matrix ``P`` of a class, and its expected loss
    (docs/theory/expected-loss.md#optimal-preconditioner).

    m = 1, ``W = W̄``, update ``W − G P``; ``c = tr(ΛΣ) + σ²``.

    - ``kind="full"``: ``P* = Λ^½ [(1 + 1/n) Λ^½ΣΛ^½ + (c/n) I]⁻¹ Λ^½``
      ``= [(1 + 1/n)ΛΣ + (c/n)I]⁻¹Λ`` (symmetric PSD; Λ of any rank);
    - ``kind="diagonal"``: ``P = diag(p)``, ``H p = diag(ΣΛΣ)``,
      ``H = (1 + 1/n)(ΣΛΣ) ∘ Σ + (c/n) Σ ∘ Σ``;
    - ``kind="scalar"``: ``P = α_s* I``,
      ``α_s* = tr(ΛΣ²) / ((1 + 1/n) tr(ΛΣ³) + (c/n) tr(Σ²))``.

    The loss is ``½ [tr(ΛΣ) − tr(ΣΛΣ P)] + ½ σ²`` at each of these minimisers. When
    ``Λ = 0`` and ``σ = 0`` every ``P`` is optimal and ``P = 0`` is returned.

    ``steps = k > 1``: the update ``W ← W − G P`` repeated k times on one support set, whose
    exact expected loss ``E ℒ_k(P)`` (:func:`~maml_depth.theory.expected_loss` with
    ``steps=k``, α = 1, ``R = P``; docs/theory/exact-expectation.md#eq-4.15) has degree
    ``2k`` in P and is not convex. ``"full"`` is then a symmetric PSD ``P = F Fᵀ`` (what
    ``α B_LᵀB_L`` of a deep net can be), ``"diagonal"`` any ``diag(p)``, ``"scalar"``
    ``α_k* I``. ``"scalar"`` is exact: ``E ℒ_k(αI)`` is a polynomial of degree 2k in α,
    recovered from 2k + 1 exact values, and α_k* is its best real critical point. ``"full"``
    and ``"diagonal"`` return the best of ``restarts`` L-BFGS minimisations (torch autograd
    on the exact loss) started from the one-step optimum, the k-step scalar optimum and
    (further restarts) seeded perturbations of them, labelled ``method="numeric"`` — local
    optima found numerically, not a certificate of global optimality.

    Args:
        Sigma: input covariance Σ (``d × d``, SPD). Lam: task covariance Λ (``d × d``, PSD).
        sigma: noise standard deviation σ ≥ 0. n: support samples ≥ 1.
        kind: the preconditioner class.

    Returns:
        :class:`OptimalPreconditioner` — unpacks as ``(P, loss)``; ``P`` is a numpy array
        (a tensor when Σ or Λ was one), ``loss`` a float; ``.method == "closed form"``.

    References: docs/theory/expected-loss.md#optimal-preconditioner;
    docs/theory/exact-expectation.md; Arnold, Iqbal, Sha
    (AISTATS 2021), §3–4.
    """
    steps = _checks.positive_int("steps", steps)
    if steps > 1:
        if kind not in ("full", "diagonal", "scalar"):
            raise InvalidArgumentError(
                f"kind must be 'full', 'diagonal' or 'scalar', got {kind!r}")
        return _optimal_k_steps(Sigma, Lam, sigma, n, kind, steps, max_terms=max_terms,
                                restarts=_checks.positive_int("restarts", restarts), seed=seed)
    S, La, sigma, n, was_torch = _inputs(Sigma, Lam, sigma, n)
    d = S.shape[0]
    a = 1.0 + 1.0 / n
    c = float(np.trace(La @ S)) + sigma**2
    SLS = S @ La @ S
    alpha: float | None = None
    if kind == "full":
        F = _psd_factor(La)  # Λ = F Fᵀ
        r = F.shape[1]
        if r == 0:
            P = np.zeros((d, d))
        else:
            inner = a * F.T @ S @ F + (c / n) * np.eye(r)
            P = F @ np.linalg.solve(inner, F.T)
            P = 0.5 * (P + P.T)
    elif kind == "diagonal":
        H = a * SLS * S + (c / n) * S * S
        rhs = np.diag(SLS).copy()
        if not rhs.any():
            p = np.zeros(d)
        else:
            p = np.linalg.solve(H, rhs)
        P = np.diag(p)
    elif kind == "scalar":
        num = float(np.trace(La @ S @ S))
        den = a * float(np.trace(La @ S @ S @ S)) + (c / n) * float(np.trace(S @ S))
        alpha = num / den if num != 0 else 0.0
        P = alpha * np.eye(d)
    else:
        raise InvalidArgumentError(
            f"kind must be 'full', 'diagonal' or 'scalar', got {kind!r}")
    loss = 0.5 * (float(np.trace(La @ S)) - float(np.sum(SLS * P))) + 0.5 * sigma**2
    return OptimalPreconditioner(_back(P, was_torch), float(loss), kind, "closed form", alpha)


def preconditioned_loss(P: Any, Sigma: Any, Lam: Any, sigma: float, n: int) -> Any:
    """``E ℒ(P)`` for the step ``W − G P`` at m = 1, ``W = W̄`` (any ``d × d`` P, batched).

    ``½ [tr(ΛΣ) − 2 tr(ΣΛΣP) + (1 + 1/n) tr(ΣΛΣ PΣPᵀ) + (c/n) tr(PΣPᵀΣ)] + ½σ²`` with
    ``c = tr(ΛΣ) + σ²`` — :func:`~maml_depth.theory.expected_loss` with ``α = 1``,
    ``L = 1``, ``R = P``. Torch in, torch (differentiable) out.

    References: docs/theory/expected-loss.md#closed-form,
    docs/theory/expected-loss.md#optimal-preconditioner.
    """
    Pt: Any
    zero: Any
    if isinstance(P, Tensor):
        Pt = P
        zero = torch.zeros(1, Pt.shape[-1], dtype=Pt.dtype, device=Pt.device)
    else:
        Pt = np.asarray(P, dtype=np.float64)
        if Pt.ndim < 2:
            raise ShapeError(f"P has shape {Pt.shape}, expected (..., d, d)")
        zero = np.zeros((1, Pt.shape[-1]))
    return expected_loss(zero, W_bar=zero, Sigma=Sigma, Lam=Lam, sigma=sigma, n=n, alpha=1.0,
                         R=Pt)


def fixed_step_loss(Sigma: Any, Lam: Any, sigma: float, n: int, alpha: float) -> float:
    """``E ℒ(αI)``: shallow MAML with a fixed step α (m = 1, ``W = W̄``)::

        ½ [tr(ΛΣ) − 2α tr(ΛΣ²) + α² ((1 + 1/n) tr(ΛΣ³) + (c/n) tr(Σ²))] + ½ σ²,
        c = tr(ΛΣ) + σ²

    It exceeds the tuned-scalar loss by exactly ``½ q (α − α_s*)²``,
    ``q = (1 + 1/n) tr(ΛΣ³) + (c/n) tr(Σ²)``.

    References: docs/theory/expected-loss.md#optimal-preconditioner.
    """
    S, La, sigma, n, _ = _inputs(Sigma, Lam, sigma, n)
    alpha = _checks.finite_float("alpha", alpha)
    c = float(np.trace(La @ S)) + sigma**2
    q = (1 + 1 / n) * float(np.trace(La @ S @ S @ S)) + (c / n) * float(np.trace(S @ S))
    return 0.5 * (float(np.trace(La @ S)) - 2 * alpha * float(np.trace(La @ S @ S))
                  + alpha**2 * q) + 0.5 * sigma**2


def optimal_kronecker_preconditioner(
    Sigma: Any, Omega: Any, sigma: float, n: int, m: int, *,
    W_bar: Any = None, restarts: int = 3, seed: int = 0, tol: float = 1e-12,
) -> KroneckerPreconditioner:
    """Numeric optimum (**no closed form**) of ``W' = W̄ − L G R`` over square ``L``
    (``m × m``, α absorbed) and ``R`` (``d × d``) when ``vec W_t ~ N(vec W̄, Ω)`` with a full
    ``md × md`` covariance Ω (:func:`~maml_depth.theory.expected_loss_general_prior`).

    The objective is a polynomial of degree 4 in ``(L, R)`` (quadratic in each), minimised
    by scipy's L-BFGS with exact gradients (torch autograd) from ``restarts`` starting points
    (the identity scaled by the best scalar step, then random); the best is returned with
    ``method="numeric"``, the optimiser's success flag and message. The result is a local
    optimum found numerically — not a certificate of global optimality.

    References: docs/theory/expected-loss.md#closed-form,
    docs/theory/expected-loss.md#optimal-preconditioner (vec form); Arnold, Iqbal, Sha (AISTATS
    2021), §4 (KFO).
    """
    m = _checks.positive_int("m", m)
    n = _checks.positive_int("n", n)
    sigma = _checks.finite_float("sigma", sigma, nonneg=True)
    restarts = _checks.positive_int("restarts", restarts)
    S = torch.as_tensor(np.asarray(Sigma.detach().cpu() if isinstance(Sigma, Tensor) else Sigma,
                                   dtype=np.float64))
    Om = torch.as_tensor(np.asarray(Omega.detach().cpu() if isinstance(Omega, Tensor) else Omega,
                                    dtype=np.float64))
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise ShapeError(f"Sigma has shape {tuple(S.shape)}, expected (d, d)")
    d = S.shape[0]
    _checks.shape("Omega", tuple(Om.shape), (m * d, m * d))
    Wb = torch.zeros(m, d, dtype=torch.float64) if W_bar is None else torch.as_tensor(
        np.asarray(W_bar, dtype=np.float64))
    _checks.shape("W_bar", tuple(Wb.shape), (m, d))
    # validate once (Σ SPD, Ω PSD, finiteness)
    expected_loss_general_prior(Wb, W_bar=Wb, Sigma=S, Omega=Om, sigma=sigma, n=n, alpha=0.0)

    def unpack(z: np.ndarray) -> tuple[Tensor, Tensor]:
        t = torch.from_numpy(z)
        return t[: m * m].reshape(m, m), t[m * m:].reshape(d, d)

    def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
        zt = torch.from_numpy(z).requires_grad_(True)
        Lm, Rm = zt[: m * m].reshape(m, m), zt[m * m:].reshape(d, d)
        val = _kron_objective(Wb, S, Om, sigma, n, Lm, Rm)
        (g,) = torch.autograd.grad(val, zt)
        return float(val.detach()), g.numpy()

    trace_omega = float(torch.trace(Om))
    Sn = S.numpy()
    scale = (trace_omega / max(m, 1)) if trace_omega > 0 else 1.0
    s0 = 1.0 / ((1 + 1 / n) * float(np.trace(Sn)) + (scale * np.trace(Sn) + sigma**2) / n)
    starts = [np.concatenate([np.eye(m).ravel(), s0 * np.eye(d).ravel()])]
    rng = np.random.default_rng(seed)
    for _ in range(restarts - 1):
        starts.append(np.concatenate([
            np.eye(m).ravel() + 0.3 * rng.standard_normal(m * m),
            s0 * (np.eye(d) + 0.3 * rng.standard_normal((d, d))).ravel()]))
    best: Any = None
    for z0 in starts:
        res = optimize.minimize(fun, z0, jac=True, method="L-BFGS-B",
                                options={"ftol": tol, "gtol": 1e-10, "maxiter": 5000})
        if best is None or res.fun < best.fun:
            best = res
    Lt, Rt = unpack(np.asarray(best.x))
    return KroneckerPreconditioner(Lt.numpy().copy(), Rt.numpy().copy(), float(best.fun),
                                   success=bool(best.success), message=str(best.message),
                                   iterations=int(best.nit))


def _kron_objective(Wb: Tensor, S: Tensor, Om: Tensor, sigma: float, n: int, Lm: Tensor,
                    Rm: Tensor) -> Tensor:
    """``E ℒ`` of :func:`expected_loss_general_prior` at ``W = W̄``, α = 1 (no validation:
    called inside the optimiser loop)."""
    m = Wb.shape[0]
    eye_m = torch.eye(m, dtype=S.dtype)
    M = Rm @ S @ Rm.T
    trMS = _torch_tr(M @ S)
    K = (1 + 1 / n) * S @ M @ S + trMS / n * S
    LtL = _torch_T(Lm) @ Lm
    prior = (_torch_tr(torch.kron(S, eye_m) @ Om)
             - 2 * _torch_tr(torch.kron(S @ Rm @ S, Lm.T.contiguous()) @ Om)
             + _torch_tr(torch.kron(K, LtL) @ Om))
    noise = sigma**2 / n * trMS * _torch_tr(LtL)
    return (prior + noise) / 2 + m * sigma**2 / 2


def k_step_loss(P: Any, Sigma: Any, Lam: Any, sigma: float, n: int, steps: int, *,
                max_terms: int = 10**6) -> Any:
    """``E ℒ_k(P)``: k steps ``W ← W − G P`` at m = 1, ``W = W̄`` (exact; numpy or torch).

    :func:`~maml_depth.theory.expected_loss` with ``α = 1``, ``R = P``, ``steps = k``
    (docs/theory/exact-expectation.md#eq-4.15). Torch in, torch (differentiable) out.

    References: docs/theory/exact-expectation.md; docs/theory/expected-loss.md#closed-form,
    docs/theory/expected-loss.md#optimal-preconditioner.
    """
    zero: Any
    if isinstance(P, Tensor):
        zero = torch.zeros(1, P.shape[-1], dtype=P.dtype, device=P.device)
    else:
        P = np.asarray(P, dtype=np.float64)
        if P.ndim != 2:
            raise ShapeError(f"P has shape {P.shape}, expected (d, d)")
        zero = np.zeros((1, P.shape[-1]))
    return expected_loss(zero, W_bar=zero, Sigma=Sigma, Lam=Lam, sigma=sigma, n=n, alpha=1.0,
                         R=P, steps=steps, max_terms=max_terms)


def _lbfgs_k_steps(z0: Tensor, kind: str, St: Tensor, Lt: Tensor, sigma: float, n: int,
                   steps: int, max_terms: int) -> np.ndarray:
    """One L-BFGS minimisation of ``E ℒ_k(P)`` over ``P = zzᵀ`` (full) or ``diag(z)``."""
    z = z0.clone().requires_grad_(True)

    def build(z: Tensor) -> Tensor:
        return z @ z.T if kind == "full" else torch.diag(z)

    opt = torch.optim.LBFGS([z], lr=1.0, max_iter=200, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-12, tolerance_change=1e-15, history_size=30)

    def closure() -> Tensor:
        opt.zero_grad()
        val = k_step_loss(build(z), St, Lt, sigma, n, steps, max_terms=max_terms)
        val.backward()
        return val

    prev = float("inf")
    for _ in range(5):
        out = opt.step(closure)
        cur = float(out.detach()) if isinstance(out, Tensor) else float("nan")
        if abs(prev - cur) <= 1e-15 * max(abs(cur), 1.0):
            break
        prev = cur
    with torch.no_grad():
        return build(z).numpy().copy()


def _optimal_k_steps(Sigma: Any, Lam: Any, sigma: float, n: int, kind: Kind, steps: int, *,
                     max_terms: int, restarts: int, seed: int) -> OptimalPreconditioner:
    S, La, sigma, n, was_torch = _inputs(Sigma, Lam, sigma, n)
    d = S.shape[0]
    St, Lt = torch.from_numpy(S), torch.from_numpy(La)

    def loss_np(P: np.ndarray) -> float:
        return float(k_step_loss(P, S, La, sigma, n, steps, max_terms=max_terms))

    # exact best scalar: the loss is a polynomial of degree 2k in α
    a1 = optimal_preconditioner(S, La, sigma, n, "scalar").alpha or 0.0
    scale = max(abs(a1), 1e-12)
    nodes = scale * np.linspace(0.0, 2.0, 2 * steps + 1)
    vals = np.array([loss_np(a * np.eye(d)) for a in nodes])
    coef = np.polynomial.polynomial.polyfit(nodes / scale, vals, 2 * steps)
    crit = np.polynomial.polynomial.polyroots(np.polynomial.polynomial.polyder(coef))
    cands = [float(r.real) * scale for r in np.atleast_1d(crit) if abs(r.imag) < 1e-9]
    cands = cands or [a1]
    alpha_k = min(cands, key=lambda a: loss_np(a * np.eye(d)))
    if kind == "scalar":
        P = alpha_k * np.eye(d)
        return OptimalPreconditioner(_back(P, was_torch), loss_np(P), "scalar", "numeric",
                                     alpha_k)
    P1 = optimal_preconditioner(S, La, sigma, n, kind).P
    P1 = np.asarray(P1, dtype=np.float64)
    rng = np.random.default_rng(seed)
    starts = [P1, alpha_k * np.eye(d)]
    while len(starts) < restarts:
        base_ = starts[len(starts) % 2]
        noise = rng.standard_normal((d, d)) * 0.2 * np.abs(base_).max()
        starts.append(base_ + (noise @ noise.T / d if kind == "full" else np.diag(np.diag(noise))))
    best_P, best_loss = None, float("inf")
    for P0 in starts[:restarts]:
        if kind == "full":
            ev, U = np.linalg.eigh(0.5 * (P0 + P0.T))
            z0 = torch.from_numpy(U * np.sqrt(np.clip(ev, 0.0, None)))
        else:
            z0 = torch.from_numpy(np.diag(P0).copy())
        P = _lbfgs_k_steps(z0, kind, St, Lt, sigma, n, steps, max_terms)
        val = loss_np(P)
        if np.isfinite(val) and val < best_loss:
            best_P, best_loss = P, val
    assert best_P is not None
    if kind == "full":
        best_P = 0.5 * (best_P + best_P.T)
    return OptimalPreconditioner(_back(best_P, was_torch), best_loss, kind, "numeric", None)
