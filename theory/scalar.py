"""The scalar case of the MAML update rule (all widths 1): explicit polynomials.

With every width 1 the layers are commuting scalars ``w_1 … w_L`` and the network computes
``f(x) = w x`` with ``w = w_L ⋯ w_1``. For support data with moments
``s_xx = Σ x_i² / n`` and ``s_xy = Σ x_i y_i / n`` the loss ``Σ (w x_i − y_i)² / (2n)`` has
end-to-end gradient ``g = w s_xx − s_xy`` (docs/theory/update-rules.md#one-step's ``G`` at m = d =
1) and one inner
step on the layers ``S`` is ``w_j ← w_j − α (Π_{i≠j} w_i) g`` for j ∈ S, all from the same
point; k steps iterate it. Everything here is an exact polynomial computed with sympy's
sparse polynomial rings (never by expanding products of sums term by term).

**Task model of** :func:`scalar_maml_objective` (docs/theory/notation.md#task-family with m = d =
1): inputs
``x ~ N(0, s)`` (``s`` the input *variance*, docs/theory/'s Σ), task weight
``w_t ~ N(w̄, τ²)`` (Λ = τ²), noise ``ε ~ N(0, σ²)`` (σ a standard deviation),
``y = w_t x + ε``, ``n`` support samples per task; the query loss is the population loss
``½ E_x,ε (w' x − y)² = ½ s (w' − w_t)² + ½ σ²`` at the adapted ``w'``. The objective is its
expectation over the task and its support set, computed *exactly* from the moments

    ŝ = s_xx = (s/n) χ²_n:     E[ŝ^r] = s^r Π_{i<r} (1 + 2i/n),
    e = Σ x_i ε_i / n | x ~ N(0, σ² ŝ / n):  E[ŝ^b e^{2m}] = (2m−1)!! (σ²/n)^m E[ŝ^{b+m}],
    w_t − w̄ ~ N(0, τ²) independent of both,

after writing ``s_xy = w_t ŝ + e``. For L = 1, k = 1 it is
docs/theory/expected-loss.md#closed-form with m = d = 1,
L = R = 1 (checked in the tests).

References: docs/theory/update-rules.md#one-step (update), §2 (task family), §3 (closed form, L =
1, k = 1).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sympy as sp
from sympy.polys.rings import PolyElement, ring

from maml_depth import _checks
from maml_depth.errors import InvalidArgumentError

from .compile import Backend, compile_polynomial

__all__ = [
    "ScalarSymbols",
    "scalar_layer_updates",
    "scalar_maml_objective",
    "scalar_objective_function",
    "scalar_symbols",
    "scalar_task_objective",
    "scalar_update",
    "scalar_update_function",
]


@dataclass(frozen=True)
class ScalarSymbols:
    """Commuting symbols of the scalar case of depth L.

    Attributes:
        w: ``(w_1, …, w_L)`` the scalar layers; alpha: the inner step size.
        s_xx, s_xy: support moments ``Σx²/n``, ``Σxy/n``.
        q_xx, q_xy, q_yy: query moments ``Σx²/n_q``, ``Σxy/n_q``, ``Σy²/n_q``.
        s, wbar, tau, sigma, n: task model — input variance, mean and standard deviation
            of the task weight, noise standard deviation, support size.
    """

    w: tuple[sp.Symbol, ...]
    alpha: sp.Symbol
    s_xx: sp.Symbol
    s_xy: sp.Symbol
    q_xx: sp.Symbol
    q_xy: sp.Symbol
    q_yy: sp.Symbol
    s: sp.Symbol
    wbar: sp.Symbol
    tau: sp.Symbol
    sigma: sp.Symbol
    n: sp.Symbol


@functools.cache
def scalar_symbols(depth: int) -> ScalarSymbols:
    """The symbols of the depth-``depth`` scalar case (see :class:`ScalarSymbols`)."""
    L = _checks.positive_int("depth", depth)
    real, pos = {"real": True}, {"positive": True}
    return ScalarSymbols(
        w=tuple(sp.Symbol(f"w_{j}", **real) for j in range(1, L + 1)),
        alpha=sp.Symbol("alpha", **real),
        s_xx=sp.Symbol("s_xx", nonnegative=True),
        s_xy=sp.Symbol("s_xy", **real),
        q_xx=sp.Symbol("q_xx", nonnegative=True),
        q_xy=sp.Symbol("q_xy", **real),
        q_yy=sp.Symbol("q_yy", nonnegative=True),
        s=sp.Symbol("s", **pos),
        wbar=sp.Symbol("wbar", **real),
        tau=sp.Symbol("tau", nonnegative=True),
        sigma=sp.Symbol("sigma", nonnegative=True),
        n=sp.Symbol("n", integer=True, positive=True),
    )


def _args(depth: int, adapt: _checks.AdaptSpec, steps: int) -> tuple[int, tuple[int, ...], int]:
    L = _checks.positive_int("depth", depth)
    return L, _checks.resolve_adapt(adapt, L), _checks.positive_int("steps", steps)


def _prod(xs: Sequence[PolyElement], one: PolyElement) -> PolyElement:
    out = one
    for x in xs:
        out = out * x
    return out


def _steps(
    ws: list[PolyElement], alpha: PolyElement, S: Sequence[int], k: int,
    gradient: Callable[[PolyElement], PolyElement],
) -> list[PolyElement]:
    """k inner steps ``w_j ← w_j − α (Π_{i≠j} w_i) g(w)`` for j ∈ S (0-based list)."""
    one = alpha.ring.one
    for _ in range(k):
        g = gradient(_prod(ws, one))
        new = list(ws)
        for j in S:
            others = _prod([w for i, w in enumerate(ws) if i != j - 1], one)
            new[j - 1] = ws[j - 1] - alpha * others * g
        ws = new
    return ws


@functools.lru_cache(maxsize=64)
def _layer_updates(L: int, S: tuple[int, ...], k: int) -> tuple[sp.Expr, ...]:
    sy = scalar_symbols(L)
    _, *gens = ring([*sy.w, sy.alpha, sy.s_xx, sy.s_xy], sp.QQ)
    ws, alpha, sxx, sxy = gens[:L], gens[L], gens[L + 1], gens[L + 2]
    out = _steps(list(ws), alpha, S, k, lambda w: w * sxx - sxy)
    return tuple(p.as_expr() for p in out)


def scalar_layer_updates(
    depth: int, adapt: _checks.AdaptSpec = "all", steps: int = 1
) -> tuple[sp.Expr, ...]:
    """The adapted layers ``(w_1^{(k)}, …, w_L^{(k)})`` as expanded polynomials.

    ``w_j^{(t+1)} = w_j^{(t)} − α (Π_{i≠j} w_i^{(t)}) (w^{(t)} s_xx − s_xy)`` for j ∈ S, in the
    symbols of :func:`scalar_symbols` (``w_1 … w_L``, ``alpha``, ``s_xx``, ``s_xy``).

    References: docs/theory/update-rules.md#one-step (widths 1).
    """
    return _layer_updates(*_args(depth, adapt, steps))


@functools.lru_cache(maxsize=64)
def _update_poly(L: int, S: tuple[int, ...], k: int) -> PolyElement:
    sy = scalar_symbols(L)
    R, *gens = ring([*sy.w, sy.alpha, sy.s_xx, sy.s_xy], sp.QQ)
    ws, alpha, sxx, sxy = gens[:L], gens[L], gens[L + 1], gens[L + 2]
    out = _steps(list(ws), alpha, S, k, lambda w: w * sxx - sxy)
    return _prod(out, R.one)


def scalar_update(depth: int, adapt: _checks.AdaptSpec = "all", steps: int = 1) -> sp.Expr:
    """End-to-end ``w' = Π_j w_j^{(k)}`` after k steps on S, an expanded polynomial.

    In ``w_1 … w_L``, ``alpha``, ``s_xx``, ``s_xy`` (:func:`scalar_symbols`); e.g. depth 2,
    S = {1, 2}, k = 1: ``w' = (w_2 − α w_1 g)(w_1 − α w_2 g)``, ``g = w_2 w_1 s_xx − s_xy``.
    Its degree in α is :attr:`UpdateRule.degree` (``|S|`` for k = 1).

    References: docs/theory/update-rules.md#one-step (widths 1).
    """
    return _update_poly(*_args(depth, adapt, steps)).as_expr()


def scalar_task_objective(
    depth: int, adapt: _checks.AdaptSpec = "all", steps: int = 1
) -> sp.Expr:
    """Query loss of one task after adaptation, ``½ (q_xx w'² − 2 q_xy w' + q_yy)``.

    ``w'`` is :func:`scalar_update` (support moments ``s_xx``, ``s_xy``); ``q_*`` are the
    query-set moments — the loss surface of a single task over ``w_1 … w_L``. Expanded.

    References: docs/theory/update-rules.md#one-step (loss ``‖WX − Y‖²/(2n)`` at m = d = 1).
    """
    L, S, k = _args(depth, adapt, steps)
    return _task_objective(L, S, k)


@functools.lru_cache(maxsize=64)
def _task_objective(L: int, S: tuple[int, ...], k: int) -> sp.Expr:
    sy = scalar_symbols(L)
    R, *gens = ring([*sy.w, sy.alpha, sy.s_xx, sy.s_xy, sy.q_xx, sy.q_xy, sy.q_yy], sp.QQ)
    ws = gens[:L]
    alpha, sxx, sxy, qxx, qxy, qyy = gens[L : L + 6]
    w = _prod(_steps(list(ws), alpha, S, k, lambda v: v * sxx - sxy), R.one)
    half = sp.QQ(1, 2)
    return (half * (qxx * w**2 - 2 * qxy * w + qyy)).as_expr()


def scalar_maml_objective(
    depth: int,
    adapt: _checks.AdaptSpec = "all",
    steps: int = 1,
    *,
    s: float | None = None,
    wbar: float | None = None,
    tau: float | None = None,
    sigma: float | None = None,
    n: int | None = None,
) -> sp.Expr:
    """Expected post-adaptation query loss of the scalar task family (exact polynomial).

    ``E ℒ(w_1, …, w_L; α) = ½ s E[(w' − w_t)²] + ½ σ²`` with ``w'`` the end-to-end weight
    after k inner steps on S from support moments ``ŝ = Σx²/n``, ``Σxy/n = w_t ŝ + e``; the
    expectation over ``x ~ N(0, s)``, ``w_t ~ N(w̄, τ²)``, ``ε ~ N(0, σ²)`` (see the module
    docstring for the moments). A polynomial in ``w_j``, ``alpha``, ``wbar``, ``tau``,
    ``sigma``, ``s`` and ``1/n`` (symbols of :func:`scalar_symbols`).

    Task parameters given as numbers (``s``, ``wbar``, ``tau``, ``sigma``, ``n``) are
    substituted exactly (decimal → rational) before the expression is built, which keeps it
    small: with all five given it is a polynomial in ``w_j`` and ``alpha`` only. The fully
    symbolic objective grows fast with k (the α-degree of ``w'`` is geometric in k): L = 2,
    k = 2 has ~28,000 terms and takes ~30 s to build as a sympy expression; use numbers or
    :func:`scalar_objective_function` (compiled straight from the polynomial) for surfaces.

    L = 1, k = 1 gives docs/theory/expected-loss.md#closed-form (m = d = 1, L = R = 1):
    ``½[s(D² + τ²)(1 − 2αs + α²s²(1 + 2/n)) + α²σ²s²/n] + ½σ²`` with ``D = w − w̄``.

    References: docs/theory/notation.md#task-family (task family), §3.
    """
    L, S, k = _args(depth, adapt, steps)
    poly = _objective_poly(L, S, k)
    values = _task_values(s=s, wbar=wbar, tau=tau, sigma=sigma, n=n)
    gens = poly.ring.gens[L + 1 :]  # wbar, tau, sigma, s, 1/n
    subs = [(g, v) for g, v in zip(gens, values, strict=True) if v is not None]
    return (poly.evaluate(subs) if subs else poly).as_expr()


def _task_values(**kw: Any) -> list[Any]:
    """Exact rationals for the given task parameters, in ring order (wbar, tau, sigma, s, 1/n)."""

    def exact(name: str, v: Any, **flags: bool) -> Any:
        if v is None:
            return None
        x = _checks.finite_float(name, v, **flags)
        return sp.QQ(sp.Rational(repr(x)).p, sp.Rational(repr(x)).q)

    n = kw["n"]
    return [
        exact("wbar", kw["wbar"]),
        exact("tau", kw["tau"], nonneg=True),
        exact("sigma", kw["sigma"], nonneg=True),
        exact("s", kw["s"], positive=True),
        None if n is None else sp.QQ(1, _checks.positive_int("n", n)),
    ]


@functools.lru_cache(maxsize=64)
def _objective_poly(L: int, S: tuple[int, ...], k: int) -> PolyElement:
    """The objective in the ring over (w_1..w_L, alpha, wbar, tau, sigma, s, 1/n), QQ."""
    sy = scalar_symbols(L)
    # support-side ring: layers, α, and the random quantities w_t, ŝ, e
    wt_, sh_, e_ = sp.symbols("w_t shat e_noise")
    R, *g = ring([*sy.w, sy.alpha, wt_, sh_, e_], sp.QQ)
    ws, alpha, wt, sh, e = g[:L], g[L], g[L + 1], g[L + 2], g[L + 3]
    w = _prod(_steps(list(ws), alpha, S, k, lambda v: (v - wt) * sh - e), R.one)
    sq = (w - wt) ** 2
    # expectation ring: layers, α, and the task-model parameters
    E, *h = ring([*sy.w, sy.alpha, sy.wbar, sy.tau, sy.sigma, sy.s, 1 / sy.n], sp.QQ)
    wbar, tau, sigma, s, ninv = h[L + 1 :]

    @functools.cache
    def m_w(a: int) -> PolyElement:  # E[w_t^a], w_t ~ N(w̄, τ²)
        return sum(
            (math.comb(a, i) * _double_factorial(i - 1) * wbar ** (a - i) * tau**i
             for i in range(0, a + 1, 2)),
            E.zero,
        )

    @functools.cache
    def m_s(r: int) -> PolyElement:  # E[ŝ^r] = s^r Π_{i<r} (1 + 2i/n)
        out = s**r
        for i in range(r):
            out = out * (1 + 2 * i * ninv)
        return out

    def m_se(b: int, c: int) -> PolyElement:  # E[ŝ^b e^c], c even
        mm = c // 2
        return _double_factorial(c - 1) * sigma ** (2 * mm) * ninv**mm * m_s(b + mm)

    # group the terms of (w' − w_t)² by their (w_t, ŝ, e) exponents, then take moments once
    groups: dict[tuple[int, int, int], dict[tuple[int, ...], Any]] = {}
    pad = (0,) * 5
    for monom, coeff in sq.terms():
        abc = (monom[L + 1], monom[L + 2], monom[L + 3])
        if abc[2] % 2:
            continue  # odd powers of e vanish
        groups.setdefault(abc, {})[monom[: L + 1] + pad] = coeff
    total = E.zero
    for (a, b, c), terms in groups.items():
        total += E.from_dict(terms) * (m_w(a) * m_se(b, c))
    half = sp.QQ(1, 2)
    return half * s * total + half * sigma**2


def _double_factorial(k: int) -> int:
    """``k!!`` with ``(−1)!! = 1``."""
    out = 1
    while k > 1:
        out *= k
        k -= 2
    return out


# --------------------------------------------------------------------------------------------
# compiled (numpy / torch) versions for loss surfaces


@functools.lru_cache(maxsize=64)
def _compiled(kind: str, L: int, S: tuple[int, ...], k: int, backend: str) -> Callable[..., Any]:
    if kind == "update":
        return compile_polynomial(_update_poly(L, S, k), backend)  # type: ignore[arg-type]
    f = compile_polynomial(_objective_poly(L, S, k), backend)  # type: ignore[arg-type]

    names = ("wbar", "tau", "sigma", "s", "n")

    def objective(*args: Any, **task: Any) -> Any:
        if task:
            unknown = sorted(set(task) - set(names))
            if unknown or len(args) != L + 1 or len(task) != 5:
                raise InvalidArgumentError(
                    f"the depth-{L} scalar objective takes w_1..w_{L}, alpha and the keywords "
                    f"wbar, tau, sigma, s, n; got {len(args)} positional and {sorted(task)}"
                )
            args = (*args, *(task[k] for k in names))
        if len(args) != L + 6:
            raise InvalidArgumentError(
                f"the depth-{L} scalar objective takes {L + 6} arguments "
                f"(w_1..w_{L}, alpha, wbar, tau, sigma, s, n), got {len(args)}"
            )
        return f(*args[:-1], 1 / args[-1])

    return objective


def scalar_update_function(
    depth: int, adapt: _checks.AdaptSpec = "all", steps: int = 1, backend: Backend = "numpy"
) -> Callable[..., Any]:
    """Compiled :func:`scalar_update`: ``f(w_1, …, w_L, alpha, s_xx, s_xy)`` (elementwise,
    broadcasting; numpy arrays or torch tensors, differentiable for torch)."""
    return _compiled("update", *_args(depth, adapt, steps), backend)


def scalar_objective_function(
    depth: int, adapt: _checks.AdaptSpec = "all", steps: int = 1, backend: Backend = "numpy"
) -> Callable[..., Any]:
    """Compiled :func:`scalar_maml_objective`:
    ``f(w_1, …, w_L, alpha, wbar, tau, sigma, s, n)``, the task parameters positionally in
    that order or all five as keywords (elementwise, broadcasting; numpy
    arrays or torch tensors, differentiable for torch) — e.g. on a grid of ``(w_1, w_2)``
    for a loss surface. Compiled straight from the exact polynomial (float coefficients)."""
    return _compiled("objective", *_args(depth, adapt, steps), backend)
