"""Symbolic MAML update rules of deep linear networks (docs/theory/update-rules.md#one-step).

A deep linear network ``f(x) = W_L ⋯ W_1 x`` with ``W_j ∈ R^{d_j × d_{j−1}}`` adapts the
layers in ``S ⊆ {1, …, L}`` (1 = input layer) by ``k`` inner gradient steps of size ``α`` on
the task loss ``ℓ(W) = ‖W X − Y‖²_F / (2n)`` (columns of ``X ∈ R^{d×n}``, ``Y ∈ R^{m×n}`` are
samples), every adapted layer from the same point::

    G = (W X − Y) Xᵀ / n,          W = W_L ⋯ W_1 = A_j W_j B_j,
    A_j = W_L ⋯ W_{j+1},  B_j = W_{j−1} ⋯ W_1  (identities at the ends),
    W_j ← W_j − α A_jᵀ G B_jᵀ      (j ∈ S).

After one step the end-to-end map is the subset sum (never a naive ``expand``)::

    W' = Σ_{T ⊆ S} (−α)^{|T|} Π_{j=L..1} M_j^T,   M_j^T = A_jᵀ G B_jᵀ (j ∈ T), else W_j,

a polynomial of degree |S| in α with 2^|S| terms; its α¹ coefficient is
``−Σ_{j∈S} A_jA_jᵀ G B_jᵀB_j``, i.e. ``vec W' = vec W − α P vec G + O(α²)`` with the
Kronecker sum ``P = Σ_{j∈S} (B_jᵀB_j) ⊗ (A_jA_jᵀ)`` (column-major ``vec``). For k > 1 steps
the rule is kept as the composition of k one-step rules, unexpanded.

Symbols (see :func:`rule_symbols`): the layers are ``sympy.MatrixSymbol`` s ``W_1 … W_L``
(non-commutative by construction) of shape ``(d_j, d_{j−1})`` with *symbolic* widths
``d_0 … d_L`` and sample count ``n`` — the rule is the same for every choice of widths —,
the data ``X`` ``(d_0, n)`` and ``Y`` ``(d_L, n)``, the placeholder ``G`` ``(d_L, d_0)`` for the
end-to-end gradient, and the commuting scalar ``alpha``.

References: docs/theory/update-rules.md#one-step ("Exact end-to-end update", "First order in α",
"k inner steps");
Arnold, Iqbal, Sha (AISTATS 2021), §3–4.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp
from sympy.core.mul import _keep_coeff
from sympy.matrices.expressions import (
    Identity,
    KroneckerProduct,
    MatAdd,
    MatMul,
    MatrixExpr,
    MatrixSymbol,
    Transpose,
)
from sympy.printing.latex import LatexPrinter
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.str import StrPrinter

from maml_depth import _checks
from maml_depth.errors import InvalidArgumentError, ShapeError

from .compile import Backend, compile_matrix_exprs

__all__ = [
    "RuleSymbols",
    "UpdateRule",
    "exact_update",
    "first_order_preconditioner",
    "first_order_preconditioner_symbolic",
    "rule_symbols",
    "update_rule",
]


# --------------------------------------------------------------------------------------------
# symbols


@dataclass(frozen=True)
class RuleSymbols:
    """The sympy symbols of a depth-L rule.

    Attributes:
        W: ``(W_1, …, W_L)``, ``MatrixSymbol`` of shape ``(d_j, d_{j−1})``.
        X: data ``(d_0, n)``; Y: targets ``(d_L, n)``.
        G: placeholder for the end-to-end gradient ``(W X − Y) Xᵀ / n``, shape ``(d_L, d_0)``.
        alpha: the inner step size (commuting, real).
        n: number of support samples; widths: ``(d_0, …, d_L)`` (positive integer symbols).
    """

    depth: int
    W: tuple[MatrixSymbol, ...]
    X: MatrixSymbol
    Y: MatrixSymbol
    G: MatrixSymbol
    alpha: sp.Symbol
    n: sp.Symbol
    widths: tuple[sp.Symbol, ...]


@functools.cache
def rule_symbols(depth: int) -> RuleSymbols:
    """Symbols ``W_1 … W_L, X, Y, G, alpha, n, d_0 … d_L`` of a depth-``depth`` network."""
    L = _checks.positive_int("depth", depth)
    d = tuple(sp.Symbol(f"d_{j}", integer=True, positive=True) for j in range(L + 1))
    n = sp.Symbol("n", integer=True, positive=True)
    W = tuple(MatrixSymbol(f"W_{j}", d[j], d[j - 1]) for j in range(1, L + 1))
    return RuleSymbols(
        depth=L,
        W=W,
        X=MatrixSymbol("X", d[0], n),
        Y=MatrixSymbol("Y", d[L], n),
        G=MatrixSymbol("G", d[L], d[0]),
        alpha=sp.Symbol("alpha", real=True),
        n=n,
        widths=d,
    )


# --------------------------------------------------------------------------------------------
# building blocks (layer lists are 0-based: Ws[j - 1] is W_j)


def _mul(*factors: Any) -> Any:
    """A flat, unevaluated product; a single factor is returned as is."""
    return factors[0] if len(factors) == 1 else MatMul(*factors)


def _gradient(W: Any, s: RuleSymbols) -> MatrixExpr:
    """``G = (1/n) (W X − Y) Xᵀ`` for an end-to-end expression ``W``."""
    residual = MatAdd(_mul(*_factors(W), s.X), MatMul(-1, s.Y))
    return MatMul(1 / s.n, residual, Transpose(s.X))


def _factors(e: Any) -> tuple[Any, ...]:
    """Top-level matrix factors of a flat product (the expression itself otherwise)."""
    if isinstance(e, MatMul) and all(getattr(a, "is_Matrix", False) for a in e.args):
        return tuple(e.args)
    return (e,)


def _flat_layer_gradient(Ws: Sequence[Any], j: int, G: Any) -> MatrixExpr:
    """``A_jᵀ G B_jᵀ = W_{j+1}ᵀ⋯W_Lᵀ · G · W_1ᵀ⋯W_{j−1}ᵀ`` as one flat product."""
    L = len(Ws)
    left = [Transpose(Ws[i - 1]) for i in range(j + 1, L + 1)]
    right = [Transpose(Ws[i - 1]) for i in range(1, j)]
    return _mul(*left, G, *right)


def _flat_step(Ws: Sequence[Any], S: Sequence[int], s: RuleSymbols, G: Any) -> list[Any]:
    """One inner step in flat (printable) form; ``G`` is the gradient to use."""
    out = list(Ws)
    for j in S:
        grad = _factors(_flat_layer_gradient(Ws, j, G))
        out[j - 1] = MatAdd(Ws[j - 1], MatMul(-s.alpha, *grad))
    return out


def _nested_step(Ws: Sequence[Any], S: Sequence[int], s: RuleSymbols) -> list[Any]:
    """One inner step in evaluation form: prefix/suffix products ``A_j``, ``B_j`` are shared
    sub-expressions, so the compiled code needs O(L) matrix products per step."""
    L = len(Ws)
    A: list[Any] = [None] * (L + 1)  # A[j] = W_L ⋯ W_{j+1}; None = identity
    B: list[Any] = [None] * (L + 1)  # B[j] = W_{j−1} ⋯ W_1
    for j in range(L - 1, 0, -1):
        A[j] = Ws[j] if A[j + 1] is None else MatMul(A[j + 1], Ws[j])
    for j in range(2, L + 1):
        B[j] = Ws[j - 2] if B[j - 1] is None else MatMul(Ws[j - 2], B[j - 1])
    W = Ws[L - 1] if B[L] is None else MatMul(Ws[L - 1], B[L])
    G = MatMul(1 / s.n, MatAdd(MatMul(W, s.X), MatMul(-1, s.Y)), Transpose(s.X))
    out = list(Ws)
    for j in S:
        parts = ([Transpose(A[j])] if A[j] is not None else []) + [G]
        parts += [Transpose(B[j])] if B[j] is not None else []
        out[j - 1] = MatAdd(Ws[j - 1], MatMul(-s.alpha, *parts))
    return out


def _nested_product(Ws: Sequence[Any]) -> Any:
    out = Ws[0]
    for w in Ws[1:]:
        out = MatMul(w, out)
    return out


def _degree(L: int, S: Sequence[int], k: int) -> int:
    """Degree in α of the end-to-end map after k steps (|S| for k = 1).

    ``deg W_j^{(t+1)} = max(deg W_j^{(t)}, 1 + deg G^{(t)} + Σ_{i≠j} deg W_i^{(t)})`` for
    j ∈ S with ``deg G^{(t)} = Σ_i deg W_i^{(t)}``; the end-to-end degree is the sum. It is
    attained (the leading coefficient is a non-zero polynomial): already in the scalar case
    all widths 1 (checked against :mod:`maml_depth.theory.scalar`).
    """
    deg = [0] * L
    for _ in range(k):
        total = sum(deg)
        deg = [
            max(deg[j - 1], 1 + total + total - deg[j - 1]) if j in S else deg[j - 1]
            for j in range(1, L + 1)
        ]
    return sum(deg)


# --------------------------------------------------------------------------------------------
# the rule object


class UpdateRule:
    """The end-to-end map of a depth-L deep linear network after k MAML inner steps on S.

    Create with :func:`update_rule` (cached by ``(L, S, k)``).

    Attributes:
        depth, adapt, steps: ``L``, the sorted 1-based adapted layers ``S``, ``k``.
        symbols: the :class:`RuleSymbols`.
        expr: the end-to-end map ``W' = W_L^{(k)} ⋯ W_1^{(k)}`` over ``W_1 … W_L, X, Y,
            alpha, n`` in product (composition) form: the updated layers multiplied, each
            step's gradient written out as ``(W X − Y) Xᵀ / n`` at that step's layers. Never
            expanded (for k > 1 a DAG of shared sub-expressions).
        layers: the adapted layers ``(W_1^{(k)}, …, W_L^{(k)})`` in the same form.
        gradient: ``G = (W X − Y) Xᵀ / n`` at the initial layers (what the symbol ``G``
            stands for in :attr:`coefficients`, :attr:`expanded` and :attr:`product_form`).
        degree: the degree in α of ``W'`` (``|S|`` for k = 1).

    k = 1 only: :attr:`coefficients` ``{p: C_p}`` with ``W' = Σ_{p=0}^{|S|} α^p C_p`` over
    ``W_j`` and ``G``; :attr:`expanded` that sum; :attr:`product_form`
    ``Π_{j=L..1} (W_j − α A_jᵀ G B_jᵀ)`` (only j ∈ S updated) over ``W_j`` and ``G``.

    Compiled callables (:meth:`numpy`, :meth:`torch`) take ``(weights, X, Y, alpha)`` and
    evaluate the product form.

    References: docs/theory/update-rules.md#one-step.
    """

    def __init__(self, depth: int, adapt: tuple[int, ...], steps: int) -> None:
        self.depth, self.adapt, self.steps = depth, adapt, steps
        self.symbols = s = rule_symbols(depth)
        flat: list[Any] = list(s.W)
        nested: list[Any] = list(s.W)
        for _ in range(steps):
            G_t = _gradient(_mul(*reversed(flat)), s)
            flat = _flat_step(flat, adapt, s, G_t)
            nested = _nested_step(nested, adapt, s)
        self.layers: tuple[Any, ...] = tuple(flat)
        self.expr: Any = _mul(*reversed(flat))
        self._evaluation_form: Any = _nested_product(nested)
        self.gradient: MatrixExpr = _gradient(_mul(*reversed(s.W)), s)
        self.degree: int = _degree(depth, adapt, steps)
        self._compiled: dict[tuple[str, str], Callable[..., Any]] = {}

    def __repr__(self) -> str:
        S = ",".join(map(str, self.adapt))
        return f"UpdateRule(depth={self.depth}, adapt=({S}), steps={self.steps})"

    # -- k = 1: the subset-sum structure ----------------------------------------------------

    def _require_one_step(self, what: str) -> None:
        if self.steps != 1:
            raise InvalidArgumentError(
                f"{what} exist only for steps=1 (this rule has steps={self.steps}, a polynomial "
                f"of degree {self.degree} in alpha kept as a composition of one-step rules); "
                f"use .expr or the compiled .numpy()/.torch() instead"
            )

    @functools.cached_property
    def _subset_sums(self) -> dict[int, list[MatrixExpr]]:
        """``{p: [Π_j M_j^T for |T| = p]}`` — the 2^|S| products of the subset sum."""
        s, L = self.symbols, self.depth
        out: dict[int, list[MatrixExpr]] = {}
        for p in range(len(self.adapt) + 1):
            terms = []
            for T in itertools.combinations(self.adapt, p):
                factors: list[Any] = []
                for i in range(L, 0, -1):
                    if i in T:
                        factors += _factors(_flat_layer_gradient(s.W, i, s.G))
                    else:
                        factors.append(s.W[i - 1])
                terms.append(_mul(*factors))
            out[p] = terms
        return out

    @functools.cached_property
    def coefficients(self) -> dict[int, MatrixExpr]:
        """``{p: C_p}``, ``W' = Σ_p α^p C_p``, ``C_p = (−1)^p Σ_{|T|=p} Π_{j=L..1} M_j^T``.

        Over ``W_1 … W_L`` and the gradient symbol ``G`` (see :attr:`gradient`); keys
        ``0 … |S|``. ``C_0 = W``, ``C_1 = −Σ_{j∈S} A_jA_jᵀ G B_jᵀB_j``. Steps = 1 only.

        References: docs/theory/update-rules.md#one-step, "Exact end-to-end update".
        """
        self._require_one_step("coefficients")
        out = {}
        for p, terms in self._subset_sums.items():
            total = terms[0] if len(terms) == 1 else MatAdd(*terms)
            out[p] = total if p % 2 == 0 else MatMul(-1, total)
        return out

    @functools.cached_property
    def expanded(self) -> MatrixExpr:
        """``Σ_{p=0}^{|S|} (−α)^p Σ_{|T|=p} Π_j M_j^T`` over ``W_j``, ``G``, α (steps = 1)."""
        self._require_one_step("the expanded form and its coefficients")
        parts = []
        for p, terms in self._subset_sums.items():
            total = terms[0] if len(terms) == 1 else MatAdd(*terms)
            parts.append(total if p == 0 else MatMul((-self.symbols.alpha) ** p, total))
        return parts[0] if len(parts) == 1 else MatAdd(*parts)

    @functools.cached_property
    def product_form(self) -> MatrixExpr:
        """``Π_{j=L..1} W_j'`` with ``W_j' = W_j − α A_jᵀ G B_jᵀ`` for j ∈ S, over ``G``."""
        self._require_one_step("the product form over G")
        s = self.symbols
        return _mul(*reversed(_flat_step(s.W, self.adapt, s, s.G)))

    # -- compiled callables -----------------------------------------------------------------

    def _inputs(self) -> list[sp.Basic]:
        s = self.symbols
        return [*s.W, s.X, s.Y, s.alpha, s.n]

    def _raw(self, kind: str, backend: Backend) -> Callable[..., Any]:
        key = (kind, backend)
        if key not in self._compiled:
            s = self.symbols
            name = f"rule_L{self.depth}_S{'_'.join(map(str, self.adapt))}_k{self.steps}_{kind}"
            if kind == "product":
                exprs = [self._evaluation_form]
            elif kind == "expanded":
                exprs = [self.expanded]
            else:  # coefficients
                exprs = [self.coefficients[p] for p in sorted(self.coefficients)]
            self._compiled[key] = compile_matrix_exprs(
                exprs,
                self._inputs(),
                backend,
                substitutions={s.G: _nested_gradient(s)},
                name=name,
            )
        return self._compiled[key]

    def _wrap(self, kind: str, backend: Backend) -> Callable[..., Any]:
        raw = self._raw(kind, backend)
        depth = self.depth

        def evaluate(
            weights: Sequence[Any], X: Any, Y: Any, alpha: Any, *, check: bool = True
        ) -> Any:
            if check:
                weights, X, Y, alpha = _validate(weights, X, Y, alpha, depth, backend)
            return raw(*weights, X, Y, alpha, X.shape[-1])[0]

        evaluate.__name__ = f"{kind}_{backend}"
        evaluate.__doc__ = (
            f"W' after {self.steps} step(s) on layers {self.adapt} of a depth-{depth} network "
            f"({backend}; product form). Args: weights [W_1..W_L] (d_j, d_(j-1)), X (d, n), "
            f"Y (m, n), alpha (number or per-task array); leading task dimensions broadcast."
        )
        evaluate.__source__ = raw.__source__  # type: ignore[attr-defined]
        return evaluate

    def numpy(self) -> Callable[..., np.ndarray]:
        """``f(weights, X, Y, alpha) -> W'`` on numpy arrays, evaluated in product form.

        Broadcasts over leading (task) dimensions; ``alpha`` is a number or an array of
        per-task step sizes of the batch shape.
        """
        return self._wrap("product", "numpy")

    def torch(self) -> Callable[..., Any]:
        """``f(weights, X, Y, alpha) -> W'`` on torch tensors (differentiable, batched)."""
        return self._wrap("product", "torch")

    def expanded_function(self, backend: Backend = "numpy") -> Callable[..., Any]:
        """``f(weights, X, Y, alpha)`` evaluating the *expanded* 2^|S|-term sum (steps = 1).

        For comparison only (benchmarks, tests): the product form is far cheaper.
        """
        self._require_one_step("the expanded form")
        return self._wrap("expanded", backend)

    def coefficient_function(self, backend: Backend = "numpy") -> Callable[..., dict[int, Any]]:
        """``f(weights, X, Y) -> {p: C_p}`` evaluated at the given weights (steps = 1)."""
        self._require_one_step("coefficients")
        raw = self._raw("coefficients", backend)
        depth, keys = self.depth, sorted(self.coefficients)

        def evaluate(weights: Sequence[Any], X: Any, Y: Any) -> dict[int, Any]:
            weights, X, Y, _ = _validate(weights, X, Y, 0.0, depth, backend)
            vals = raw(*weights, X, Y, 0.0, X.shape[-1])
            return dict(zip(keys, vals, strict=True))

        return evaluate

    # -- printing ---------------------------------------------------------------------------

    def _equations(self, printer: Callable[[Any], str]) -> list[tuple[str, str]]:
        """(left side, right side) pairs describing the rule."""
        s, L = self.symbols, self.depth
        W = _mul(*reversed(s.W))
        Gdef = MatMul(1 / s.n, MatAdd(_mul(*_factors(W), s.X), MatMul(-1, s.Y)), Transpose(s.X))
        if self.steps == 1:
            eqs = [("G", printer(Gdef)), ("W'", printer(self.product_form))]
            for p, c in self.coefficients.items():
                eqs.append((f"C_{p}", printer(c)))
            return eqs
        # k > 1: the one-step rule on step-t symbols, composed k times
        Wt = tuple(MatrixSymbol(f"W_{j}^({'t'})", *s.W[j - 1].shape) for j in range(1, L + 1))
        Gt = MatrixSymbol("G^(t)", *s.G.shape)
        Wt_prod = _mul(*reversed(Wt))
        eqs = [("G^(t)", printer(MatMul(1 / s.n, MatAdd(_mul(*_factors(Wt_prod), s.X),
                                                         MatMul(-1, s.Y)), Transpose(s.X))))]
        step = _flat_step(Wt, self.adapt, s, Gt)
        for j in self.adapt:
            eqs.append((f"W_{j}^(t+1)", printer(step[j - 1])))
        final = _mul(*[MatrixSymbol(f"W_{j}^({self.steps})", *s.W[j - 1].shape)
                       for j in range(L, 0, -1)])
        eqs.append(("W'", printer(final)))
        return eqs

    def _header(self) -> str:
        S = ", ".join(map(str, self.adapt))
        return (
            f"MAML update rule of a depth-{self.depth} linear network, adapted layers "
            f"S = {{{S}}}, {self.steps} inner step(s); degree {self.degree} in alpha"
        )

    def text(self) -> str:
        """The rule as plain text (sympy ``str`` notation, ``.T`` = transpose)."""
        lines = [self._header()]
        eqs = self._equations(matrix_str)
        if self.steps == 1:
            lines.append("  (W = W_L*...*W_1; W' = sum_p alpha**p * C_p)")
        else:
            lines.append(
                f"  (t = 0..{self.steps - 1}, W_j^(0) = W_j; layers outside S stay fixed; "
                "coefficients exist only for steps=1)"
            )
        width = max(len(lhs) for lhs, _ in eqs)
        lines += [f"  {lhs.ljust(width)} = {rhs}" for lhs, rhs in eqs]
        return "\n".join(lines)

    def latex(self) -> str:
        """The rule as a LaTeX ``aligned`` block (gradient, product form, α-coefficients)."""
        rows = [f"{_tex_name(lhs)} &= {rhs}" for lhs, rhs in self._equations(matrix_latex)]
        return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"

    def __str__(self) -> str:
        return self.text()


def _cheap_precedence(item: Any) -> int:
    """sympy's precedence without its cost: for a matrix product sympy asks
    ``could_extract_minus_sign``, which negates and re-simplifies (``MatMul.doit``) the whole
    product — seconds per term at depth 8. A product here is negative exactly when its
    leading scalar is, which is what this checks."""
    if isinstance(item, MatMul):
        c = item.args[0]
        neg = bool(getattr(c, "is_Number", False) and c.is_negative)
        return PRECEDENCE["Add"] if neg else PRECEDENCE["Mul"]
    return precedence(item)


class _StrPrinter(StrPrinter):
    """``sp.sstr`` with :func:`_cheap_precedence` (same text, linear time)."""

    def parenthesize(self, item: Any, level: int, strict: bool = False) -> str:
        p = _cheap_precedence(item)
        if p < level or (not strict and p <= level):
            return f"({self._print(item)})"
        return str(self._print(item))

    def _print_MatMul(self, expr: Any) -> str:
        c, m = expr.as_coeff_mmul()
        sign = ""
        if c.is_number and c.is_extended_real and c.is_negative:
            expr = _keep_coeff(-c, m)
            sign = "-"
        level = _cheap_precedence(expr)
        return sign + "*".join(self.parenthesize(a, level) for a in expr.args)

    def _print_Add(self, expr: Any, order: Any = None) -> str:
        prec = precedence(expr)
        parts: list[str] = []
        for term in self._as_ordered_terms(expr, order=order):
            t = str(self._print(term))
            if t.startswith("-") and not term.is_Add:
                sign, t = "-", t[1:]
            else:
                sign = "+"
            if _cheap_precedence(term) < prec or term.is_Add:
                parts.extend([sign, f"({t})"])
            else:
                parts.extend([sign, t])
        sign = parts.pop(0)
        return ("" if sign == "+" else sign) + " ".join(parts)


class _LatexPrinter(LatexPrinter):
    """``sp.latex`` with :func:`_cheap_precedence` (same text, linear time)."""

    def parenthesize(self, item: Any, level: int, is_neg: bool = False,
                     strict: bool = False) -> str:
        if is_neg and strict:
            return str(self._add_parens(self._print(item)))
        p = _cheap_precedence(item)
        if p < level or (not strict and p <= level):
            return str(self._add_parens(self._print(item)))
        return str(self._print(item))

    def _print_MatMul(self, expr: Any) -> str:
        level = _cheap_precedence(expr)

        def parens(x: Any) -> str:
            if isinstance(x, sp.Mul) and not isinstance(x, MatMul):
                return str(self._print(x))
            return self.parenthesize(x, level, False)

        args = list(expr.args)
        c = args[0]
        if getattr(c, "is_Number", False) and c.is_negative:
            args = args[1:] if c == -1 else [-c, *args[1:]]
            return "- " + " ".join(map(parens, args))
        return " ".join(map(parens, args))

    def _print_Add(self, expr: Any, order: Any = None) -> str:
        tex = ""
        for i, term in enumerate(self._as_ordered_terms(expr, order=order)):
            if isinstance(term, MatMul):
                c, m = term.as_coeff_mmul()
                negative = bool(getattr(c, "is_Number", False) and c.is_negative)
            else:
                negative = bool(term.could_extract_minus_sign())
            if i == 0:
                pass
            elif negative:
                tex += " - "
                term = _keep_coeff(-c, m) if isinstance(term, MatMul) else -term
            else:
                tex += " + "
            term_tex = str(self._print(term))
            if self._needs_add_brackets(term):
                term_tex = rf"\left({term_tex}\right)"
            tex += term_tex
        return tex


def matrix_str(expr: Any) -> str:
    return str(_StrPrinter().doprint(expr))


def matrix_latex(expr: Any) -> str:
    return str(_LatexPrinter().doprint(expr))


def _tex_name(lhs: str) -> str:
    """``W_3^(t+1)`` → ``W_{3}^{(t+1)}``, ``C_2`` → ``C_{2}``, ``W'`` → ``W'``."""
    head, _, sup = lhs.partition("^")
    if "_" in head:
        base, sub = head.split("_", 1)
        head = f"{base}_{{{sub}}}"
    return head + (f"^{{{sup}}}" if sup else "")


def _nested_gradient(s: RuleSymbols) -> MatrixExpr:
    """``G`` in evaluation form (the end-to-end map as a right-nested product)."""
    W = _nested_product(list(s.W))
    return MatMul(1 / s.n, MatAdd(MatMul(W, s.X), MatMul(-1, s.Y)), Transpose(s.X))


@functools.lru_cache(maxsize=256)
def _update_rule_cached(depth: int, adapt: tuple[int, ...], steps: int) -> UpdateRule:
    return UpdateRule(depth, adapt, steps)


def update_rule(depth: int, adapt: _checks.AdaptSpec = "all", steps: int = 1) -> UpdateRule:
    """The symbolic MAML update rule of a depth-``depth`` linear network (cached by (L, S, k)).

    Args:
        depth: number of layers ``L ≥ 1``.
        adapt: adapted layers ``S``: 1-based indices (1 = input layer ``W_1``), a comma list
            ``"1,3"``, or ``"all"``.
        steps: number of inner steps ``k ≥ 1``.

    Returns:
        An :class:`UpdateRule`: ``W' = Π_{j=L..1} W_j^{(k)}`` with
        ``W_j^{(t+1)} = W_j^{(t)} − α A_j^{(t)ᵀ} G^{(t)} B_j^{(t)ᵀ}`` for j ∈ S; for k = 1 also
        ``W' = Σ_{T⊆S} (−α)^{|T|} Π_{j=L..1} M_j^T`` collected by powers of α.

    References: docs/theory/update-rules.md#one-step, "Exact end-to-end update" and "k inner steps".
    """
    L = _checks.positive_int("depth", depth)
    S = _checks.resolve_adapt(adapt, L)
    k = _checks.positive_int("steps", steps)
    return _update_rule_cached(L, S, k)


# --------------------------------------------------------------------------------------------
# validation and numeric entry points


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _validate(
    weights: Any, X: Any, Y: Any, alpha: Any, depth: int | None, backend: str
) -> tuple[list[Any], Any, Any, Any]:
    """Check shapes up front (ShapeError / InvalidArgumentError naming the argument) and
    return ``(weights, X, Y, alpha)`` converted for ``backend``."""
    if isinstance(weights, str | bytes) or not isinstance(weights, Sequence):
        raise InvalidArgumentError(
            f"weights must be a list [W_1, ..., W_L] of matrices, got {type(weights).__name__}"
        )
    if len(weights) == 0:
        raise InvalidArgumentError("weights is empty: give at least one layer [W_1, ..., W_L]")
    if depth is not None and len(weights) != depth:
        raise ShapeError(f"weights has {len(weights)} layers, but the rule has depth {depth}")
    convert = _to_torch if backend == "torch" else _to_numpy
    Ws = [convert(f"weights[{i}] (W_{i + 1})", w) for i, w in enumerate(weights)]
    X = convert("X", X)
    Y = convert("Y", Y)
    for i, w in enumerate(Ws):
        if w.ndim < 2:
            raise ShapeError(
                f"weights[{i}] (W_{i + 1}) has shape {tuple(w.shape)}, expected a matrix "
                f"(d_{i + 1}, d_{i})"
            )
        if i > 0 and w.shape[-1] != Ws[i - 1].shape[-2]:
            raise ShapeError(
                f"weights[{i}] (W_{i + 1}) has shape {tuple(w.shape)}: its input width "
                f"{w.shape[-1]} does not match the output width {Ws[i - 1].shape[-2]} of "
                f"W_{i} (W_j must have shape (d_j, d_(j-1)))"
            )
    d, m = Ws[0].shape[-1], Ws[-1].shape[-2]
    if X.ndim < 2 or X.shape[-2] != d or X.shape[-1] < 1:
        raise ShapeError(
            f"X has shape {tuple(X.shape)}, expected (d_0={d}, n) with samples as columns"
        )
    n = X.shape[-1]
    if Y.ndim < 2 or Y.shape[-2] != m or Y.shape[-1] != n:
        raise ShapeError(
            f"Y has shape {tuple(Y.shape)}, expected (d_L={m}, n={n}) with samples as columns"
        )
    return Ws, X, Y, _alpha(alpha, backend)


def _to_numpy(name: str, x: Any) -> np.ndarray:
    if _is_torch(x):
        raise InvalidArgumentError(f"{name} is a torch tensor; use the torch version")
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name} must be an array, got {type(x).__name__}") from None
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InvalidArgumentError(f"{name} must be a real array, got dtype {arr.dtype}")
    return arr if np.issubdtype(arr.dtype, np.floating) else arr.astype(np.float64)


def _to_torch(name: str, x: Any) -> Any:
    import torch

    if not isinstance(x, torch.Tensor):
        raise InvalidArgumentError(
            f"{name} must be a torch tensor (got {type(x).__name__}); use the numpy version"
        )
    if not x.is_floating_point():
        raise InvalidArgumentError(f"{name} must be a floating-point tensor, got {x.dtype}")
    return x


def _alpha(alpha: Any, backend: str) -> Any:
    """A number, or a per-task array/tensor (reshaped to broadcast against matrices)."""
    if _is_torch(alpha):
        if backend != "torch":
            raise InvalidArgumentError("alpha is a torch tensor; use the torch version")
        if alpha.device.type == "cpu" and not bool(alpha.detach().isfinite().all()):
            raise InvalidArgumentError(f"alpha must be finite, got {alpha!r}")
        return alpha if alpha.ndim == 0 else alpha[..., None, None]
    if np.ndim(alpha) > 0:
        arr = np.asarray(alpha, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise InvalidArgumentError(f"alpha must be finite, got {alpha!r}")
        if backend == "torch":
            raise InvalidArgumentError("a per-task alpha for the torch version must be a tensor")
        return arr[..., None, None]
    return _checks.finite_float("alpha", alpha)


def exact_update(
    weights: Sequence[Any],
    X: Any,
    Y: Any,
    alpha: Any,
    adapt: _checks.AdaptSpec = "all",
    steps: int = 1,
) -> Any:
    """End-to-end map ``W' = W_L^{(k)} ⋯ W_1^{(k)}`` after k MAML inner steps on layers S.

    Each step, from the same point for all adapted layers,
    ``W_j ← W_j − α A_jᵀ G B_jᵀ`` (j ∈ S) with ``G = (W X − Y) Xᵀ / n``,
    ``A_j = W_L⋯W_{j+1}``, ``B_j = W_{j−1}⋯W_1``; evaluated with the compiled symbolic rule
    (product form).

    Args:
        weights: ``[W_1, …, W_L]``, ``W_j`` of shape ``(…, d_j, d_{j−1})``.
        X: inputs ``(…, d_0, n)`` (columns are samples); Y: targets ``(…, d_L, n)``.
        alpha: inner step size (a finite number, or per-task values of the batch shape).
        adapt: 1-based adapted layers or ``"all"``; steps: ``k ≥ 1``.

    Returns:
        ``W'`` of shape ``(…, d_L, d_0)``: numpy in → numpy out, torch in → torch out
        (differentiable; leading task dimensions broadcast).

    References: docs/theory/update-rules.md#one-step.
    """
    if isinstance(weights, str | bytes) or not isinstance(weights, Sequence) or not weights:
        raise InvalidArgumentError(
            "weights must be a non-empty list [W_1, ..., W_L] of matrices"
        )
    rule = update_rule(len(weights), adapt, steps)
    use_torch = any(_is_torch(v) for v in (*weights, X, Y))
    return (rule.torch() if use_torch else rule.numpy())(weights, X, Y, alpha)


def first_order_preconditioner(weights: Sequence[Any], adapt: _checks.AdaptSpec = "all") -> Any:
    """The first-order preconditioner ``P = Σ_{j∈S} (B_jᵀB_j) ⊗ (A_jA_jᵀ)`` (md × md).

    ``vec W' = vec W − α P vec G + O(α²)`` with column-major ``vec`` (``vec(M)`` stacks the
    columns of M, so ``vec(A G B) = (Bᵀ ⊗ A) vec G``); ``A_j = W_L⋯W_{j+1}``,
    ``B_j = W_{j−1}⋯W_1``. Symmetric positive semi-definite.

    Args:
        weights: ``[W_1, …, W_L]``, ``W_j`` of shape ``(…, d_j, d_{j−1})`` (numpy or torch;
            leading dimensions broadcast).
        adapt: 1-based adapted layers or ``"all"``.

    Returns:
        P of shape ``(…, m·d, m·d)`` with ``m = d_L``, ``d = d_0``; same library as the input.

    References: docs/theory/update-rules.md#one-step, "First order in α".
    """
    if isinstance(weights, str | bytes) or not isinstance(weights, Sequence) or not weights:
        raise InvalidArgumentError("weights must be a non-empty list [W_1, ..., W_L] of matrices")
    L = len(weights)
    S = _checks.resolve_adapt(adapt, L)
    backend = "torch" if any(_is_torch(w) for w in weights) else "numpy"
    first, last = (tuple(getattr(w, "shape", np.shape(w))) for w in (weights[0], weights[-1]))
    if len(first) < 2 or len(last) < 2:
        bad, shp = (0, first) if len(first) < 2 else (L - 1, last)
        raise ShapeError(f"weights[{bad}] (W_{bad + 1}) has shape {shp}, expected a matrix")
    d, m = first[-1], last[-2]
    dummy_X = _zeros_like(weights[0], (d, 1), backend)
    dummy_Y = _zeros_like(weights[0], (m, 1), backend)
    Ws, _, _, _ = _validate(weights, dummy_X, dummy_Y, 0.0, None, backend)
    if backend == "torch":
        import torch

        einsum: Any = torch.einsum
        eye: Any = functools.partial(torch.eye, dtype=Ws[0].dtype, device=Ws[0].device)
    else:
        einsum, eye = np.einsum, functools.partial(np.eye, dtype=Ws[0].dtype)

    def T(a: Any) -> Any:
        return a.transpose(-1, -2) if backend == "torch" else np.swapaxes(a, -1, -2)

    # A[j] = W_L ⋯ W_{j+1}, B[j] = W_{j−1} ⋯ W_1 (None = identity)
    A: list[Any] = [None] * (L + 1)
    B: list[Any] = [None] * (L + 1)
    for j in range(L - 1, 0, -1):
        A[j] = Ws[j] if A[j + 1] is None else A[j + 1] @ Ws[j]
    for j in range(2, L + 1):
        B[j] = Ws[j - 2] if B[j - 1] is None else Ws[j - 2] @ B[j - 1]
    P: Any = None
    for j in S:
        right = eye(d) if B[j] is None else T(B[j]) @ B[j]  # BᵀB, d × d
        left = eye(m) if A[j] is None else A[j] @ T(A[j])  # AAᵀ, m × m
        kron = einsum("...ij,...kl->...ikjl", right, left)
        kron = kron.reshape(*kron.shape[:-4], d * m, d * m)
        P = kron if P is None else P + kron
    batch = tuple(np.broadcast_shapes(*(tuple(w.shape[:-2]) for w in Ws)))
    if tuple(P.shape[:-2]) != batch:  # e.g. L = 1: P = I, the batch shape comes from W_1
        shape = (*batch, d * m, d * m)
        P = P.expand(*shape).clone() if backend == "torch" else np.broadcast_to(P, shape).copy()
    return P


def _zeros_like(ref: Any, shape: tuple[int, int], backend: str) -> Any:
    if backend == "torch":
        import torch

        if not isinstance(ref, torch.Tensor):
            raise InvalidArgumentError("weights mixes numpy arrays and torch tensors")
        return torch.zeros(shape, dtype=ref.dtype if ref.is_floating_point() else None,
                           device=ref.device)
    return np.zeros(shape)


@functools.lru_cache(maxsize=128)
def _preconditioner_symbolic(depth: int, adapt: tuple[int, ...]) -> MatrixExpr:
    s = rule_symbols(depth)
    L, d = depth, s.widths
    terms = []
    for j in adapt:
        below = [s.W[i - 1] for i in range(j - 1, 0, -1)]  # B_j = W_{j−1} ⋯ W_1
        above = [s.W[i - 1] for i in range(L, j, -1)]  # A_j = W_L ⋯ W_{j+1}
        right = (
            _mul(*[Transpose(w) for w in reversed(below)], *below) if below else Identity(d[0])
        )
        left = _mul(*above, *[Transpose(w) for w in reversed(above)]) if above else Identity(d[L])
        terms.append(KroneckerProduct(right, left))
    return terms[0] if len(terms) == 1 else MatAdd(*terms)


def first_order_preconditioner_symbolic(
    depth: int, adapt: _checks.AdaptSpec = "all"
) -> MatrixExpr:
    """``P = Σ_{j∈S} (B_jᵀB_j) ⊗ (A_jA_jᵀ)`` as a sympy ``KroneckerProduct`` sum.

    Over the symbols of :func:`rule_symbols` (``B_1 = I_{d_0}``, ``A_L = I_{d_L}``); shape
    ``(d_0 d_L, d_0 d_L)``. Substitute numbers for the widths and call ``.as_explicit()``
    for small explicit matrices.

    References: docs/theory/update-rules.md#one-step, "First order in α".
    """
    L = _checks.positive_int("depth", depth)
    return _preconditioner_symbolic(L, _checks.resolve_adapt(adapt, L))
