"""Closed-form expected query loss after one preconditioned inner step
(docs/theory/expected-loss.md#closed-form).

For the Gaussian linear-regression tasks of docs/theory/notation.md#task-family (``x ~ N(0, Σ)``,
``W_t = W̄ + Z``
with rows of ``Z`` i.i.d. ``N(0, Λ)``, noise ``N(0, σ² I_m)``, ``n`` support samples) and
the update ``W' = W − α L G R`` with ``G = (WX − Y)Xᵀ/n``, write ``D = W − W̄``,
``M = RΣRᵀ`` and ``K_n = (1 + 1/n) ΣMΣ + (1/n) tr(MΣ) Σ``. Then ::

    E ℒ = ½ [ tr(DΣDᵀ) + m tr(ΛΣ)
            − 2α ( tr(L D Σ R Σ Dᵀ) + tr(L) tr(Λ Σ R Σ) )
            + α² ( tr(LᵀL D K_n Dᵀ) + tr(LᵀL) tr(Λ K_n) + (σ²/n) tr(MΣ) tr(LᵀL) ) ]
          + ½ m σ²

Three evaluations share *one* implementation of this formula (:func:`_formula`):

- :func:`expected_loss` — numpy (float) or torch (batched over leading dimensions,
  differentiable in every matrix argument and in ``alpha``, so it can be meta-trained on);
- :func:`expected_loss_symbolic` with ``method="formula"`` — the isotropic case as a sympy
  expression in ``d, m, n, σ, τ, α, λ, δ`` (Σ = λI, Λ = τ²I, L = I, R = I, ‖D‖²_F = δ²);
- sympy matrices of explicit size (used by the tests).

The formula is *derived*, not assumed: :func:`derive_expected_loss` computes the expectation
from first principles for explicit (symbolic or rational) matrices with the exact moment
engine of :mod:`maml_depth.theory.moments` (``n`` and σ symbolic), and
:func:`expected_loss_symbolic` (default ``method="derive"``) obtains the isotropic expression
for *symbolic* ``d, m`` by deriving it on a grid of explicit sizes and interpolating (it is a
polynomial of degree ≤ 2 in ``d`` and ≤ 1 in ``m``; two further sizes confirm the fit).
:func:`expected_loss_general_prior` extends the closed form to a full covariance ``Ω`` of
``vec W_t``.

``k > 1`` inner steps on the same support set (``expected_loss(..., steps=k)``) have no closed
form: the exact finite Wick expectation of :mod:`maml_depth.theory.exact_expectation`
(docs/theory/exact-expectation.md) is used, with ``steps=1`` staying on the closed form above
(the engine reproduces it to 1e-12, tested).

References: docs/theory/notation.md#task-family, docs/theory/expected-loss.md#closed-form;
docs/theory/exact-expectation.md; Arnold, Iqbal, Sha
(AISTATS 2021), §3.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import sympy as sp
import torch
from torch import Tensor

from maml_depth import _checks
from maml_depth.errors import InvalidArgumentError, ShapeError
from maml_depth.theory._validation import (
    ArrayLike,
    _as_array,
    _check_alpha,
    _check_psd,
    _check_spd,
    _finite,
    _np_T,
    _np_tr,
    _torch_T,
    _torch_tr,
    _trailing,
)
from maml_depth.theory.exact_expectation import shallow_value
from maml_depth.theory.moments import RegressionMoments

__all__ = [
    "derive_expected_loss",
    "expected_loss",
    "expected_loss_general_prior",
    "expected_loss_symbolic",
    "isotropic_symbols",
]

# ---------------------------------------------------------------------------------------
# the one formula, generic over numpy / torch / sympy
# ---------------------------------------------------------------------------------------
def _formula(
    W: Any, W_bar: Any, Sigma: Any, Lam: Any, sigma: Any, n: Any, alpha: Any,
    L: Any, R: Any, *, m: Any, T: Callable[[Any], Any], tr: Callable[[Any], Any],
) -> Any:
    """docs/theory/expected-loss.md#closed-form, written with traces of products only (so batch
    scalars broadcast).

    ``L is None`` / ``R is None`` mean identities; ``T`` transposes, ``tr`` takes the trace.
    """
    D = W - W_bar
    S = Sigma
    M = S if R is None else R @ S @ T(R)
    SRS = S @ S if R is None else S @ R @ S
    SMS = S @ M @ S
    DS = D @ S

    def lmul(X: Any) -> Any:
        return X if L is None else L @ X

    def ltl(X: Any) -> Any:
        return X if L is None else T(L) @ (L @ X)

    tr_L = m if L is None else tr(L)
    tr_LtL = m if L is None else tr(T(L) @ L)
    tr_MS = tr(M @ S)
    tr_LamS = tr(Lam @ S)
    a = 1 + 1 / n

    zeroth = tr(DS @ T(D)) + m * tr_LamS
    first = tr(lmul(DS @ R @ S @ T(D)) if R is not None else lmul(DS @ S @ T(D))) \
        + tr_L * tr(Lam @ SRS)
    second = (
        a * tr(ltl(D @ SMS @ T(D)))
        + tr_MS / n * tr(ltl(DS @ T(D)))
        + tr_LtL * (a * tr(Lam @ SMS) + tr_MS / n * tr_LamS + sigma**2 / n * tr_MS)
    )
    return (zeroth - 2 * alpha * first + alpha**2 * second) / 2 + m * sigma**2 / 2


def _prepare(
    W: ArrayLike, W_bar: ArrayLike, Sigma: ArrayLike, Lam: ArrayLike, L: ArrayLike | None,
    R: ArrayLike | None, lam_name: str = "Lam", lam_shape: str = "(d, d)", alpha: Any = None,
) -> tuple[Tensor | None, list[Any]]:
    """Convert to one backend (torch when any input, α included, is a tensor) and check
    shapes and values."""
    tensors = [x for x in (W, W_bar, Sigma, Lam, L, R, alpha) if isinstance(x, Tensor)]
    like: Tensor | None = None
    if tensors:
        dtype = torch.float64 if not tensors[0].is_floating_point() else tensors[0].dtype
        for x in tensors[1:]:
            if x.is_floating_point():
                dtype = torch.promote_types(dtype, x.dtype)
        like = torch.empty((), dtype=dtype, device=tensors[0].device)
    arrs: list[Any] = [None if x is None else _as_array(nm, x, like)
            for nm, x in zip(("W", "W_bar", "Sigma", lam_name, "L", "R"),
                             (W, W_bar, Sigma, Lam, L, R), strict=True)]
    W_, W_bar_, Sigma_, Lam_, L_, R_ = arrs
    if W_.ndim < 2:
        raise ShapeError(f"W has shape {tuple(W_.shape)}, expected (..., m, d)")
    m, d = int(W_.shape[-2]), int(W_.shape[-1])
    _trailing("W_bar", W_bar_, (m, d), f"(..., {m}, {d}) like W")
    _trailing("Sigma", Sigma_, (d, d), f"(..., {d}, {d})")
    if lam_name == "Lam":
        _trailing("Lam", Lam_, (d, d), f"(..., {d}, {d})")
    else:
        _trailing(lam_name, Lam_, (m * d, m * d), f"(..., {m * d}, {m * d}) {lam_shape}")
    if L_ is not None:
        _trailing("L", L_, (m, m), f"(..., {m}, {m})")
    if R_ is not None:
        _trailing("R", R_, (d, d), f"(..., {d}, {d})")
    for nm, x in zip(("W", "W_bar", "Sigma", lam_name, "L", "R"), arrs, strict=True):
        if x is not None:
            _finite(nm, x)
    _check_spd("Sigma", Sigma_)
    _check_psd(lam_name, Lam_)
    return like, arrs


def _out(value: Any, like: Tensor | None) -> Any:
    if like is not None:
        return value
    value = np.asarray(value, dtype=np.float64)
    return float(value) if value.ndim == 0 else value


# ---------------------------------------------------------------------------------------
# public numeric evaluators
# ---------------------------------------------------------------------------------------
def expected_loss(
    W: ArrayLike,
    *,
    W_bar: ArrayLike,
    Sigma: ArrayLike,
    Lam: ArrayLike,
    sigma: float,
    n: int,
    alpha: float | ArrayLike,
    L: ArrayLike | None = None,
    R: ArrayLike | None = None,
    steps: int = 1,
    max_terms: int = 10**6,
) -> Any:
    """Expected query loss after ``k`` steps ``W ← W − α L G R`` on one support set.

    ``steps=1`` is the closed form below (docs/theory/expected-loss.md#closed-form); ``steps = k >
    1`` is the exact
    Wick expectation of :mod:`maml_depth.theory.exact_expectation`
    (docs/theory/exact-expectation.md#words): ``W_k − W_t = Σ_j C(k, j)(−1)^j
    (αL)^j (D − Z)(Σ̂R)^j + noise words``, a polynomial of degree ``2k`` in the data whose
    expectation is a finite sum, exact in ``n`` (unbatched; the derivation is cached per
    ``(k, L given, R given)``; refused with a one-line error beyond the engine's reach of
    eight factors ``Σ̂``, ``E`` per trace product (k ≤ 4) or beyond ``max_terms`` terms —
    then use ``maml_depth.numerics.monte_carlo_loss``).

    With ``D = W − W̄``, ``M = RΣRᵀ``, ``K_n = (1 + 1/n) ΣMΣ + (1/n) tr(MΣ) Σ``::

        E ℒ = ½ [ tr(DΣDᵀ) + m tr(ΛΣ)
                − 2α ( tr(L D Σ R Σ Dᵀ) + tr(L) tr(Λ Σ R Σ) )
                + α² ( tr(LᵀL D K_n Dᵀ) + tr(LᵀL) tr(Λ K_n) + (σ²/n) tr(MΣ) tr(LᵀL) ) ]
              + ½ m σ²

    the expectation over tasks ``W_t = W̄ + Z`` (rows of ``Z`` ~ ``N(0, Λ)``), support sets
    of ``n`` inputs ``x ~ N(0, Σ)`` with noise ``N(0, σ² I_m)``, and the population query
    loss ``½ E‖W'x − y‖²`` (so the noise floor ``½ m σ²`` is included).

    Args:
        W: initial map, ``(…, m, d)``.
        W_bar: task mean W̄, ``(…, m, d)``.
        Sigma: input covariance Σ, ``(…, d, d)`` symmetric positive definite.
        Lam: row covariance Λ of the task deviation, ``(…, d, d)`` symmetric PSD, any rank.
        sigma: noise standard deviation σ ≥ 0.
        n: support samples per task, ≥ 1.
        alpha: step size α (a float, or an array/tensor broadcasting over the batch).
        L: left (output-side) factor, ``(…, m, m)``; ``None`` = identity.
        R: right (input-side) factor, ``(…, d, d)``; ``None`` = identity.
        steps: inner steps k ≥ 1 on the same support set (exact for k ≤ 4: 2k factors
            ``Σ̂``, ``E`` per trace product, the reach is 8; docs/theory/exact-expectation.md#reach).
        max_terms: the most distinct terms (products of traces) the exact expectation may
            have (k > 1).

    Returns:
        A float for unbatched numpy/array-like input, a numpy array for batched input, and a
        torch tensor of the batch shape (differentiable) when any argument is a tensor.

    Raises:
        ShapeError: shapes do not fit (the message names the argument).
        InvalidArgumentError: ``n < 1``, non-finite or negative σ, non-finite α or entries,
            Σ not symmetric positive definite, Λ not symmetric PSD.

    References: docs/theory/expected-loss.md#closed-form; Arnold, Iqbal, Sha (AISTATS 2021), §3.
    """
    n = _checks.positive_int("n", n)
    sigma = _checks.finite_float("sigma", sigma, nonneg=True)
    steps = _checks.positive_int("steps", steps)
    max_terms = _checks.positive_int("max_terms", max_terms)
    alpha = _check_alpha(alpha)
    like, (W_, W_bar_, Sigma_, Lam_, L_, R_) = _prepare(W, W_bar, Sigma, Lam, L, R,
                                                        alpha=alpha)
    if like is not None and not isinstance(alpha, (float, Tensor)):
        alpha = torch.as_tensor(alpha, dtype=like.dtype, device=like.device)
    m = int(W_.shape[-2])
    if steps > 1:
        return _out(_exact_steps(W_, W_bar_, Sigma_, Lam_, sigma, n, alpha, L_, R_,
                                 steps=steps, max_terms=max_terms), like)
    T, tr = (_torch_T, _torch_tr) if like is not None else (_np_T, _np_tr)
    value = _formula(W_, W_bar_, Sigma_, Lam_, sigma, n, alpha, L_, R_, m=m, T=T, tr=tr)
    return _out(value, like)


def _exact_steps(W_: Any, W_bar_: Any, Sigma_: Any, Lam_: Any, sigma: float, n: int,
                 alpha: Any, L_: Any, R_: Any, *, steps: int, max_terms: int,
                 _omit_noise_step: int | None = None) -> Any:
    """The exact k-step expectation on validated, unbatched inputs (docs eq. 7–11)."""
    for nm, x in (("W", W_), ("Sigma", Sigma_), ("Lam", Lam_), ("L", L_), ("R", R_)):
        if x is not None and x.ndim != 2:
            raise ShapeError(f"{nm} has shape {tuple(x.shape)}: steps > 1 is unbatched, "
                             "give one matrix")
    if (isinstance(alpha, np.ndarray) and alpha.ndim > 0) or (
            isinstance(alpha, Tensor) and alpha.ndim > 0):
        raise ShapeError("alpha must be a scalar when steps > 1")
    return shallow_value(W_ - W_bar_, Sigma_, Lam_, sigma, n, alpha, L_, R_, steps=steps,
                         max_terms=max_terms, _omit_noise_step=_omit_noise_step)


def expected_loss_general_prior(
    W: ArrayLike,
    *,
    W_bar: ArrayLike,
    Sigma: ArrayLike,
    Omega: ArrayLike,
    sigma: float,
    n: int,
    alpha: float | ArrayLike,
    L: ArrayLike | None = None,
    R: ArrayLike | None = None,
) -> Any:
    """Expected query loss after ``W' = W − α L G R`` when ``vec W_t ~ N(vec W̄, Ω)`` with a
    full ``md × md`` covariance Ω (column-major ``vec``; Ω = Λ ⊗ I_m is
    docs/theory/notation.md#task-family's family).

    In vec form ``vec(W' − W_t) = (I − RᵀΣ̂ ⊗ L) vec(W − W_t) + (Rᵀ ⊗ L) vec(N Xᵀ/n)``, and
    with the notation of :func:`expected_loss`::

        E ℒ = ½ [ tr(DΣDᵀ) + tr((Σ ⊗ I_m) Ω)
                − 2α ( tr(L D Σ R Σ Dᵀ) + tr((ΣRΣ ⊗ Lᵀ) Ω) )
                + α² ( tr(LᵀL D K_n Dᵀ) + tr((K_n ⊗ LᵀL) Ω) + (σ²/n) tr(MΣ) tr(LᵀL) ) ]
              + ½ m σ²

    The loss is quadratic in ``α L`` and in ``R`` separately but not jointly, so its
    minimiser over Kronecker-factored preconditioners has no closed form (see
    :func:`maml_depth.theory.optimal_kronecker_preconditioner`, a numeric optimum).
    Unbatched; numpy or torch (differentiable).

    References: docs/theory/expected-loss.md#closed-form (vec form of §1); Arnold, Iqbal, Sha
    (AISTATS 2021), §4 (KFO).
    """
    n = _checks.positive_int("n", n)
    sigma = _checks.finite_float("sigma", sigma, nonneg=True)
    alpha = _check_alpha(alpha)
    like, (W_, W_bar_, S, Om, L_, R_) = _prepare(W, W_bar, Sigma, Omega, L, R,
                                                 lam_name="Omega", lam_shape="(md, md)",
                                                 alpha=alpha)
    m, d = int(W_.shape[-2]), int(W_.shape[-1])
    if W_.ndim != 2 or S.ndim != 2:
        raise ShapeError("expected_loss_general_prior is unbatched: W (m, d), Sigma (d, d)")
    T: Callable[[Any], Any]
    tr: Callable[[Any], Any]
    kron: Callable[[Any, Any], Any]
    eye_m: Any
    eye_d: Any
    if like is not None:
        T, tr = _torch_T, _torch_tr

        def kron(a: Any, b: Any) -> Any:
            return torch.kron(a.contiguous(), b.contiguous())

        eye_m = torch.eye(m, dtype=like.dtype, device=like.device)
        eye_d = torch.eye(d, dtype=like.dtype, device=like.device)
    else:
        T, tr, kron = _np_T, _np_tr, np.kron
        eye_m, eye_d = np.eye(m), np.eye(d)
    Lm = eye_m if L_ is None else L_
    Rm = eye_d if R_ is None else R_
    M = Rm @ S @ T(Rm)
    K = (1 + 1 / n) * S @ M @ S + tr(M @ S) / n * S
    LtL = T(Lm) @ Lm
    # the D-part is that of the row-covariance family: evaluate it with Λ = 0
    zero = S * 0
    mean_part = _formula(W_, W_bar_, S, zero, 0.0, n, alpha, Lm, Rm, m=m, T=T, tr=tr)
    prior = (tr(kron(S, eye_m) @ Om) - 2 * alpha * tr(kron(S @ Rm @ S, T(Lm)) @ Om)
             + alpha**2 * tr(kron(K, LtL) @ Om))
    noise = alpha**2 * sigma**2 / n * tr(M @ S) * tr(LtL)
    value = mean_part + (prior + noise) / 2 + m * sigma**2 / 2
    return _out(value, like)


# ---------------------------------------------------------------------------------------
# symbolic: first-principles derivation and the isotropic expression
# ---------------------------------------------------------------------------------------
def derive_expected_loss(
    W: sp.Matrix,
    *,
    W_bar: sp.Matrix,
    Sigma: sp.Matrix,
    Lam: sp.Matrix,
    sigma: sp.Expr,
    n: sp.Expr,
    alpha: sp.Expr,
    L: sp.Matrix | None = None,
    R: sp.Matrix | None = None,
) -> sp.Expr:
    """Derive ``E ℒ`` from first principles for explicit (symbolic/rational) sympy matrices.

    No closed form is used: with ``Δ = W − W_t = D − Z`` the support gradient is
    ``G = Δ Σ̂ − E`` (``E = N Xᵀ/n``), the adapted map ``W' = W − α L G R``, and the query
    loss ``½ tr((W' − W_t) Σ (W' − W_t)ᵀ) + ½ m σ²`` (the population loss: the query input
    and noise are independent of ``W'``). The expectation of this polynomial in ``Z``,
    ``Σ̂`` and ``E`` is taken monomial by monomial with the exact moments of
    :class:`~maml_depth.theory.moments.RegressionMoments` (``n``, σ may be symbols).

    References: docs/theory/notation.md#task-family, docs/theory/expected-loss.md#closed-form.
    """
    W, W_bar, Sigma, Lam = (sp.Matrix(x) for x in (W, W_bar, Sigma, Lam))
    m, d = W.shape
    L = sp.eye(m) if L is None else sp.Matrix(L)
    R = sp.eye(d) if R is None else sp.Matrix(R)
    rm = RegressionMoments(Sigma, Lam, sigma, n, m)
    Delta = W - W_bar - rm.Z
    G = Delta * rm.S - rm.E
    err = Delta - alpha * L * G * R  # W' − W_t
    loss = (err * Sigma * err.T).trace() / 2 + sp.Integer(m) * sigma**2 / 2
    return sp.expand(rm.expect(loss))


def isotropic_symbols() -> dict[str, sp.Symbol]:
    """The symbols of :func:`expected_loss_symbolic`: d, m, n, σ, τ, α, λ, δ.

    Σ = λ I_d, Λ = τ² I_d, L = I_m, R = I_d, ``δ² = ‖W − W̄‖²_F``.
    """
    names = {"d": "d", "m": "m", "n": "n", "sigma": "sigma", "tau": "tau", "alpha": "alpha",
             "lam": "lambda", "delta": "delta"}
    return {k: sp.Symbol(v, positive=True) for k, v in names.items()}


class _Iso:
    """Linear combinations of words in ``D``, ``Dᵀ`` times identities — just enough algebra to
    evaluate :func:`_formula` with Σ = λI, Λ = τ²I, L = I, R = I and an abstract ``D``
    (``tr(D Dᵀ) = δ²``)."""

    def __init__(self, terms: dict[tuple[str, ...], sp.Expr], rows: sp.Expr, cols: sp.Expr,
                 delta: sp.Expr) -> None:
        self.terms, self.rows, self.cols, self.delta = terms, rows, cols, delta

    def _new(self, terms: dict[tuple[str, ...], sp.Expr], rows: sp.Expr | None = None,
             cols: sp.Expr | None = None) -> _Iso:
        return _Iso({k: v for k, v in terms.items() if v != 0},
                    self.rows if rows is None else rows, self.cols if cols is None else cols,
                    self.delta)

    def __add__(self, other: _Iso) -> _Iso:
        if (other.rows, other.cols) != (self.rows, self.cols):
            raise ShapeError("isotropic algebra: adding matrices of different shapes")
        out = dict(self.terms)
        for k, v in other.terms.items():
            out[k] = out.get(k, 0) + v
        return self._new(out)

    def __neg__(self) -> _Iso:
        return self._new({k: -v for k, v in self.terms.items()})

    def __sub__(self, other: _Iso) -> _Iso:
        return self + (-other)

    def __mul__(self, c: sp.Expr) -> _Iso:
        return self._new({k: c * v for k, v in self.terms.items()})

    __rmul__ = __mul__

    def __matmul__(self, other: _Iso) -> _Iso:
        if self.cols != other.rows:
            raise ShapeError("isotropic algebra: inner dimensions differ")
        out: dict[tuple[str, ...], sp.Expr] = {}
        for k1, v1 in self.terms.items():
            for k2, v2 in other.terms.items():
                out[k1 + k2] = out.get(k1 + k2, 0) + v1 * v2
        return self._new(out, self.rows, other.cols)

    @property
    def T(self) -> _Iso:
        flip = {"D": "Dt", "Dt": "D"}
        return self._new({tuple(flip[w] for w in reversed(k)): v for k, v in self.terms.items()},
                         self.cols, self.rows)

    def trace(self) -> sp.Expr:
        out: sp.Expr = sp.Integer(0)
        for k, v in self.terms.items():
            if k == ():
                out += v * self.rows
            elif k in (("D", "Dt"), ("Dt", "D")):
                out += v * self.delta**2
            else:
                raise NotImplementedError(f"trace of the word {k}")
        return out


def _isotropic_formula() -> sp.Expr:
    s = isotropic_symbols()
    d, m, delta = s["d"], s["m"], s["delta"]

    def iso(c: sp.Expr, dim: sp.Expr) -> _Iso:
        return _Iso({(): c}, dim, dim, delta)

    D = _Iso({("D",): sp.Integer(1)}, m, d, delta)
    zero = _Iso({}, m, d, delta)
    value = _formula(D, zero, iso(s["lam"], d), iso(s["tau"] ** 2, d), s["sigma"], s["n"],
                     s["alpha"], iso(sp.Integer(1), m), iso(sp.Integer(1), d), m=m,
                     T=lambda a: a.T, tr=lambda a: a.trace())
    return sp.expand(value)


def _derive_isotropic_at(d: int, m: int) -> sp.Expr:
    """First-principles E ℒ at explicit sizes, expressed through ``δ² = ‖D‖²_F``."""
    s = isotropic_symbols()
    D = sp.Matrix(m, d, lambda a, i: sp.Symbol(f"_D_{a}{i}", real=True))
    value = derive_expected_loss(
        D, W_bar=sp.zeros(m, d), Sigma=s["lam"] * sp.eye(d), Lam=s["tau"] ** 2 * sp.eye(d),
        sigma=s["sigma"], n=s["n"], alpha=s["alpha"])
    # by rotation invariance it depends on D only through ‖D‖²_F: check, then rewrite
    on_axis = value.subs({x: (s["delta"] if k == 0 else 0) for k, x in enumerate(D)})
    sumsq = sum((x**2 for x in D), sp.Integer(0))
    back = sp.expand(on_axis.subs(s["delta"], sp.sqrt(sumsq)))
    if sp.expand(back - value) != 0:  # pragma: no cover - would be a derivation error
        raise ArithmeticError(f"isotropic E ℒ at d={d}, m={m} is not a function of ‖D‖²")
    return sp.expand(on_axis)


@functools.lru_cache(maxsize=4)
def _derive_isotropic() -> sp.Expr:
    s = isotropic_symbols()
    d, m = s["d"], s["m"]
    d_grid, m_grid = (1, 2, 3), (1, 2)
    per_m = []
    for mv in m_grid:
        pts = [(dv, _derive_isotropic_at(dv, mv)) for dv in d_grid]
        per_m.append((mv, sp.expand(sp.interpolate(pts, d))))
    fit = sp.expand(sp.interpolate(per_m, m))
    # confirm the degree bound (≤ 2 in d, ≤ 1 in m) at sizes outside the grid
    for dv, mv in ((4, 1), (1, 3)):
        if sp.expand(fit.subs({d: dv, m: mv}) - _derive_isotropic_at(dv, mv)) != 0:
            raise ArithmeticError(  # pragma: no cover - would be a derivation error
                f"interpolated isotropic E ℒ fails at d={dv}, m={mv}")
    return fit


def expected_loss_symbolic(method: Literal["derive", "formula"] = "derive") -> sp.Expr:
    """The isotropic expected loss as a sympy expression in ``d, m, n, σ, τ, α, λ, δ``.

    Σ = λ I_d, Λ = τ² I_d, L = I_m, R = I_d (shallow MAML), ``δ² = ‖W − W̄‖²_F``::

        E ℒ = ½ [ λδ² + m d τ²λ − 2α (λ²δ² + m d τ²λ²)
                + α² λ³ (1 + (d + 1)/n) (δ² + m d τ²) + α² (σ²/n) m d λ² ] + ½ m σ²

    ``method="derive"`` (default) derives it from first principles: :func:`derive_expected_loss`
    at sizes ``d ∈ {1, 2, 3}``, ``m ∈ {1, 2}``, interpolated in ``d`` and ``m`` and confirmed
    at ``(d, m) = (4, 1), (1, 3)`` (a few seconds; cached). ``method="formula"`` evaluates
    the closed form of docs/theory/expected-loss.md#closed-form in the isotropic algebra. The two
    agree (tested).

    References: docs/theory/expected-loss.md#closed-form; Arnold, Iqbal, Sha (AISTATS 2021), §3.
    """
    if method == "derive":
        return _derive_isotropic()
    if method == "formula":
        return _isotropic_formula()
    raise InvalidArgumentError(f"method must be 'derive' or 'formula', got {method!r}")
