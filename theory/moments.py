"""Gaussian moment identities of docs/theory/notation.md#task-family, derived with sympy (not
typed in).

Everything rests on one fact, the moment generating function of ``x ~ N(0, C)``:
``E exp(tᵀx) = exp(½ tᵀCt)``. Its Taylor coefficients give every moment exactly
(:func:`gaussian_moment`); Isserlis' (Wick's) theorem, the sum over perfect matchings
(:func:`isserlis_moment`), is checked against it. From these single-sample moments,
:class:`RegressionMoments` derives the exact moments of the random quantities of one task of
the Gaussian linear-regression family, with the number of support samples ``n`` a *symbol*:

- ``S = Σ̂ = XXᵀ/n`` (the support second-moment matrix),
- ``E = N Xᵀ/n`` (the noise term of the gradient; ``N`` the ``m × n`` noise),
- ``Z = W_t − W̄`` (rows i.i.d. ``N(0, Λ)``).

A product of ``k`` factors, each an average over the ``n`` i.i.d. samples, is a sum over
assignments of samples to factors; grouping assignments by which factors share a sample (a
set partition with ``b`` blocks, ``n(n−1)⋯(n−b+1)`` assignments each) and factorising the
expectation over blocks gives the moment as a polynomial in ``1/n`` — exact, for any degree.

The closed identities used by :mod:`maml_depth.theory.expected_loss` (for symmetric ``M``)

- ``E[Σ̂ M Σ̂] = (1 + 1/n) Σ M Σ + (1/n) tr(MΣ) Σ``,
- ``E[E M Eᵀ] = (σ²/n) tr(MΣ) I_m``,
- ``E[Z C Zᵀ] = tr(ΛC) I_m`` (any ``C``),

are then *verified* entry by entry, for fully symbolic Σ, Λ, M, C of small dimension, by
:func:`verify_moment_identities`.

References: docs/theory/notation.md#task-family ("Useful moments"); Isserlis (1918); Arnold,
Iqbal, Sha (AISTATS
2021), §3.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import reduce

import sympy as sp

from maml_depth.errors import ShapeError

__all__ = [
    "GaussianMoments",
    "RegressionMoments",
    "gaussian_moment",
    "isserlis_moment",
    "noise_identity",
    "sample_covariance_identity",
    "symbolic_matrix",
    "task_identity",
    "verify_moment_identities",
]


# ---------------------------------------------------------------------------------------
# single Gaussian vectors
# ---------------------------------------------------------------------------------------
class GaussianMoments:
    """Exact moments ``E[x_{i_1} ⋯ x_{i_k}]`` of ``x ~ N(0, C)`` from the MGF.

    ``E exp(tᵀx) = exp(Q)``, ``Q = ½ tᵀCt``. The degree-``2j`` part of the Taylor series is
    ``Q^j / j!``; the moment with index multiplicities ``c_i`` is ``∏ c_i!`` times the
    coefficient of ``∏ t_i^{c_i}`` in it (odd orders vanish). Results are cached.

    References: docs/theory/notation.md#task-family; the Gaussian moment generating function.
    """

    def __init__(self, cov: sp.Matrix) -> None:
        cov = sp.Matrix(cov)
        if cov.shape[0] != cov.shape[1]:
            raise ShapeError(f"cov has shape {tuple(cov.shape)}, expected a square (k, k) matrix")
        self.cov = cov
        self.dim = int(cov.shape[0])
        self._t = sp.symbols(f"_t0:{self.dim}")
        t = sp.Matrix(self._t)
        self._Q = sp.expand(sp.Rational(1, 2) * (t.T * cov * t)[0, 0])
        self._polys: dict[int, sp.Poly] = {}
        self._cache: dict[tuple[int, ...], sp.Expr] = {}

    def _poly(self, j: int) -> sp.Poly:
        if j not in self._polys:
            self._polys[j] = sp.Poly(sp.expand(self._Q**j / sp.factorial(j)), *self._t)
        return self._polys[j]

    def __call__(self, idx: Sequence[int]) -> sp.Expr:
        """The moment ``E[x_{i_1} ⋯ x_{i_k}]`` of ``x ~ N(0, Σ)`` for the indices ``idx``
        (exact, sympy): 0 for odd k, else from the moment generating function
        ``E e^{tᵀx} = e^{½tᵀΣt}``.

        References: docs/theory/expected-loss.md#moments."""
        key = tuple(sorted(int(i) for i in idx))
        if key in self._cache:
            return self._cache[key]
        if any(not 0 <= i < self.dim for i in key):
            raise IndexError(f"moment index out of range 0..{self.dim - 1}: {key}")
        if len(key) % 2:
            value: sp.Expr = sp.Integer(0)
        elif not key:
            value = sp.Integer(1)
        else:
            counts = Counter(key)
            monom = tuple(counts.get(i, 0) for i in range(self.dim))
            coeff = self._poly(len(key) // 2).coeff_monomial(monom)
            value = sp.expand(coeff * math.prod(math.factorial(c) for c in counts.values()))
        self._cache[key] = value
        return value


def gaussian_moment(cov: sp.Matrix, idx: Sequence[int]) -> sp.Expr:
    """``E[x_{i_1} ⋯ x_{i_k}]`` for ``x ~ N(0, cov)``, from the moment generating function.

    References: docs/theory/notation.md#task-family.
    """
    return GaussianMoments(cov)(idx)


def isserlis_moment(cov: sp.Matrix, idx: Sequence[int]) -> sp.Expr:
    """``E[x_{i_1} ⋯ x_{i_k}]`` by Isserlis' theorem: the sum over perfect matchings of the
    indices of the products of covariances (zero for odd ``k``).

    References: Isserlis (1918); docs/theory/notation.md#task-family.
    """
    idx = tuple(idx)
    if not idx:
        return sp.Integer(1)
    if len(idx) % 2:
        return sp.Integer(0)
    first, rest = idx[0], idx[1:]
    return sp.expand(
        sum(
            (cov[first, rest[j]] * isserlis_moment(cov, rest[:j] + rest[j + 1:])
             for j in range(len(rest))),
            sp.Integer(0),
        )
    )


def symbolic_matrix(name: str, rows: int, cols: int | None = None, *,
                    symmetric: bool = False) -> sp.Matrix:
    """A matrix of independent real symbols ``name_{i}{j}`` (shared across the diagonal when
    ``symmetric``)."""
    cols = rows if cols is None else cols
    if symmetric and rows != cols:
        raise ShapeError(
            f"a symmetric matrix must be square, got rows={rows!r}, cols={cols!r}")

    def entry(i: int, j: int) -> sp.Symbol:
        if symmetric and j < i:
            i, j = j, i
        return sp.Symbol(f"{name}_{i}{j}", real=True)

    return sp.Matrix(rows, cols, lambda i, j: entry(i, j))


def set_partitions(items: list[int]) -> Iterator[list[list[int]]]:
    """Every partition of ``items`` into non-empty blocks, each once (Bell(len(items)) of
    them)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in set_partitions(rest):
        yield [[first], *part]
        for k in range(len(part)):
            yield [*part[:k], [first, *part[k]], *part[k + 1:]]


def _falling(n: sp.Expr, b: int) -> sp.Expr:
    return reduce(lambda acc, k: acc * (n - k), range(b), sp.Integer(1))


# ---------------------------------------------------------------------------------------
# one regression task
# ---------------------------------------------------------------------------------------
class RegressionMoments:
    """The random quantities of one task of docs/theory/notation.md#task-family, as symbols, with
    exact moments.

    Args:
        Sigma: input covariance Σ (``d × d`` sympy matrix; symbolic entries allowed).
        Lam: row covariance Λ of ``Z`` (``d × d``).
        sigma: noise standard deviation σ (sympy expression).
        n: number of support samples (a sympy symbol or integer).
        m: number of outputs.

    Attributes ``S`` (``d × d``, symmetric), ``E`` (``m × d``) and ``Z`` (``m × d``) are
    matrices of symbols standing for ``Σ̂``, ``N Xᵀ/n`` and ``W_t − W̄``;
    :meth:`expect` takes the expectation of any polynomial in them: ``Z`` is independent of
    the support sample; a product of ``k`` sample averages is the sum over set partitions of
    its factors (``b`` blocks: ``n(n−1)⋯(n−b+1)/n^k`` times the product of single-sample
    moments of ``(ε, x) ~ N(0, diag(σ² I_m, Σ))`` over the blocks).

    References: docs/theory/notation.md#task-family.
    """

    def __init__(self, Sigma: sp.Matrix, Lam: sp.Matrix, sigma: sp.Expr, n: sp.Expr,
                 m: int) -> None:
        self.Sigma, self.Lam = sp.Matrix(Sigma), sp.Matrix(Lam)
        self.d, self.m = int(self.Sigma.shape[0]), int(m)
        self.sigma, self.n = sp.sympify(sigma), sp.sympify(n)
        d, m = self.d, self.m
        self.S = sp.Matrix(d, d, lambda i, j: sp.Symbol(f"_S_{min(i, j)}{max(i, j)}"))
        self.E = sp.Matrix(m, d, lambda a, i: sp.Symbol(f"_E_{a}{i}"))
        self.Z = sp.Matrix(m, d, lambda a, i: sp.Symbol(f"_Z_{a}{i}"))
        self._s_index = {self.S[i, j]: (i, j) for i in range(d) for j in range(i, d)}
        self._e_index = {self.E[a, i]: (a, i) for a in range(m) for i in range(d)}
        self._z_index = {self.Z[a, i]: a * d + i for a in range(m) for i in range(d)}
        # one sample (ε, x): ε ~ N(0, σ² I_m) independent of x ~ N(0, Σ)
        joint = sp.diag(self.sigma**2 * sp.eye(m), self.Sigma)
        self._sample = GaussianMoments(joint)
        # vec Z by rows: Cov = I_m ⊗ Λ (rows independent)
        self._task = GaussianMoments(sp.kronecker_product(sp.eye(m), self.Lam))
        self._sample_cache: dict[tuple[tuple[str, int, int], ...], sp.Expr] = {}

    @property
    def random_symbols(self) -> list[sp.Symbol]:
        """The random symbols of the products: the entries of Σ̂, E and Z."""
        return [*self._s_index, *self._e_index, *self._z_index]

    # E[∏ factors], each factor (1/n) Σ_p f(sample p); f = x_i x_j ("s") or ε_a x_i ("e")
    def _sample_moment(self, factors: tuple[tuple[str, int, int], ...]) -> sp.Expr:
        key = tuple(sorted(factors))
        if key in self._sample_cache:
            return self._sample_cache[key]
        m = self.m

        def coords(f: tuple[str, int, int]) -> tuple[int, int]:
            kind, a, b = f
            return (m + a, m + b) if kind == "s" else (a, m + b)

        total: sp.Expr = sp.Integer(0)
        for blocks in set_partitions(list(range(len(key)))):
            term = _falling(self.n, len(blocks))
            for block in blocks:
                term *= self._sample([c for r in block for c in coords(key[r])])
                if term == 0:
                    break
            total += term
        value = sp.expand(total / self.n ** len(key)) if key else sp.Integer(1)
        self._sample_cache[key] = value
        return value

    def _monomial(self, powers: dict[sp.Symbol, int]) -> sp.Expr:
        z_idx: list[int] = []
        factors: list[tuple[str, int, int]] = []
        for s, k in powers.items():
            if s in self._z_index:
                z_idx += [self._z_index[s]] * k
            elif s in self._s_index:
                factors += [("s", *self._s_index[s])] * k
            else:
                factors += [("e", *self._e_index[s])] * k
        # Z is independent of the support sample (S, E)
        return self._task(z_idx) * self._sample_moment(tuple(factors))

    def expect(self, expr: sp.Expr | sp.Matrix) -> sp.Expr | sp.Matrix:
        """Exact expectation over ``Z``, ``Σ̂`` and the noise of a polynomial in them."""
        if isinstance(expr, sp.MatrixBase):
            return expr.applyfunc(self.expect)
        syms = self.random_symbols
        poly = sp.Poly(sp.expand(expr), *syms)
        out: sp.Expr = sp.Integer(0)
        for monom, coeff in poly.terms():
            powers = {s: k for s, k in zip(syms, monom, strict=True) if k}
            out += coeff * self._monomial(powers)
        return sp.expand(out)


# ---------------------------------------------------------------------------------------
# the closed identities and their verification
# ---------------------------------------------------------------------------------------
def sample_covariance_identity(Sigma: sp.Matrix, M: sp.Matrix, n: sp.Expr) -> sp.Matrix:
    """``(1 + 1/n) Σ M Σ + (1/n) tr(MΣ) Σ`` — the claimed ``E[Σ̂ M Σ̂]`` (M symmetric)."""
    return (1 + 1 / n) * Sigma * M * Sigma + (M * Sigma).trace() / n * Sigma


def noise_identity(Sigma: sp.Matrix, M: sp.Matrix, n: sp.Expr, sigma: sp.Expr,
                   m: int) -> sp.Matrix:
    """``(σ²/n) tr(MΣ) I_m`` — the claimed ``E[E M Eᵀ]`` for ``E = N Xᵀ/n``."""
    return sigma**2 / n * (M * Sigma).trace() * sp.eye(m)


def task_identity(Lam: sp.Matrix, C: sp.Matrix, m: int) -> sp.Matrix:
    """``tr(ΛC) I_m`` — the claimed ``E[Z C Zᵀ]`` for rows of ``Z`` i.i.d. ``N(0, Λ)``."""
    return (Lam * C).trace() * sp.eye(m)


def _is_zero(x: sp.Matrix | sp.Expr) -> bool:
    if isinstance(x, sp.MatrixBase):
        return all(sp.simplify(sp.expand(v)) == 0 for v in x)
    return bool(sp.simplify(sp.expand(x)) == 0)


def verify_moment_identities(d: int = 2, m: int = 2, *, max_order: int = 4,
                             explicit_n: Sequence[int] = (1, 2)) -> dict[str, bool]:
    """Check the moment identities of docs/theory/notation.md#task-family symbolically at
    dimension ``d``, ``m``.

    Σ, M, Λ are fully symbolic symmetric matrices, C a fully symbolic matrix, σ and ``n``
    symbols. Returns ``{check name: passed}``:

    - ``isserlis``: MGF moments equal Isserlis' sum over matchings, all orders ≤ ``max_order``;
    - ``first_moments``: ``E Σ̂ = Σ``, ``E[E] = 0``, ``E[Σ̂ ⊗ E] = 0`` (odd in the noise);
    - ``sample_covariance``: ``E[Σ̂MΣ̂] = (1 + 1/n)ΣMΣ + (1/n)tr(MΣ)Σ`` for symbolic ``n``;
    - ``sample_covariance_explicit_n``: the same, for each ``n`` in ``explicit_n``, computed
      without the partition-counting argument — the ``n`` samples stacked into one Gaussian
      vector of dimension ``n·d`` (checks the counting itself);
    - ``noise``: ``E[E M Eᵀ] = (σ²/n) tr(MΣ) I_m``;
    - ``task``: ``E[Z C Zᵀ] = tr(ΛC) I_m``.

    References: docs/theory/notation.md#task-family ("Useful moments").
    """
    n, sigma = sp.symbols("n sigma", positive=True)
    Sigma = symbolic_matrix("s", d, symmetric=True)
    Lam = symbolic_matrix("l", d, symmetric=True)
    M = symbolic_matrix("M", d, symmetric=True)
    C = symbolic_matrix("C", d)
    out: dict[str, bool] = {}

    mgf = GaussianMoments(Sigma)
    ok = True
    for order in range(max_order + 1):
        for idx in _multi_indices(d, order):
            ok &= _is_zero(mgf(idx) - isserlis_moment(Sigma, idx))
    out["isserlis"] = bool(ok)

    rm = RegressionMoments(Sigma, Lam, sigma, n, m)
    first = _is_zero(rm.expect(rm.S) - Sigma) and _is_zero(rm.expect(rm.E))
    first = first and all(_is_zero(rm.expect(s * e)) for s in rm.S for e in rm.E)
    out["first_moments"] = bool(first)

    lhs = rm.expect(rm.S * M * rm.S)
    out["sample_covariance"] = _is_zero(lhs - sample_covariance_identity(Sigma, M, n))

    ok = True
    for n_val in explicit_n:
        joint = GaussianMoments(sp.kronecker_product(sp.eye(n_val), Sigma))
        xs = symbolic_matrix("_x", d, n_val)  # column p = sample p; vec by columns
        pos = {xs[i, p]: p * d + i for p in range(n_val) for i in range(d)}
        S_hat = xs * xs.T / n_val
        expr = (S_hat * M * S_hat).applyfunc(sp.expand)

        def expect_x(e: sp.Expr, pos: dict[sp.Symbol, int] = pos,
                     joint: GaussianMoments = joint) -> sp.Expr:
            poly = sp.Poly(e, *pos)
            return sp.expand(sum(
                (c * joint([pos[s] for s, k in zip(pos, mon, strict=True) for _ in range(k)])
                 for mon, c in poly.terms()), sp.Integer(0)))

        direct = expr.applyfunc(expect_x)
        ok &= _is_zero(direct - sample_covariance_identity(Sigma, M, sp.Integer(n_val)))
    out["sample_covariance_explicit_n"] = bool(ok)

    out["noise"] = _is_zero(rm.expect(rm.E * M * rm.E.T) - noise_identity(Sigma, M, n, sigma, m))
    out["task"] = _is_zero(rm.expect(rm.Z * C * rm.Z.T) - task_identity(Lam, C, m))
    return out


def _multi_indices(d: int, order: int) -> Iterator[tuple[int, ...]]:
    if order == 0:
        yield ()
        return
    for head in range(d):
        for tail in _multi_indices(d, order - 1):
            if not tail or head <= tail[0]:
                yield (head, *tail)
