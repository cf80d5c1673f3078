"""Sympy confirms the update rule on its own: matrix calculus, explicit small matrices.

The derived layer gradient ``A_jᵀ G B_jᵀ`` is compared with sympy's derivative of the trace
loss (``MatrixSymbol`` + ``diff``) and with entrywise derivatives of explicit small
matrices; the subset-sum expansion is compared with the expanded product on explicit
matrices; the α¹ coefficient with ``−P vec G`` for the symbolic Kronecker sum.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from sympy.matrices.expressions import Trace

from maml_depth.theory import (
    first_order_preconditioner,
    first_order_preconditioner_symbolic,
    rule_symbols,
    update_rule,
)
from maml_depth.theory.compile import compile_matrix_exprs
from maml_depth.theory.update_rule import _flat_layer_gradient, _mul
from tests.helpers import assert_close


def _is_zero(e) -> bool:
    e = sp.expand(e.doit()) if hasattr(e, "doit") else sp.expand(e)
    if isinstance(e, sp.MatrixBase):
        return all(sp.expand(x) == 0 for x in e)
    return e == 0 or bool(getattr(e, "is_ZeroMatrix", False))


def _explicit(expr, widths: dict, n: int = 2):
    """Substitute concrete widths (and n) and return an explicit sympy Matrix."""
    L = len(widths) - 1
    s = rule_symbols(L)
    subs = {s.widths[j]: widths[j] for j in range(L + 1)}
    subs[s.n] = n
    return sp.Matrix(expr.subs(subs).as_explicit())


def _vec(M: sp.Matrix) -> sp.Matrix:
    return sp.Matrix([M[i, j] for j in range(M.cols) for i in range(M.rows)])


@pytest.mark.parametrize("L", [1, 2, 3, 4])
def test_matrix_calculus_gradient_equals_derived_formula(L):
    """d/dW_j of ‖W X − Y‖²/(2n) by sympy's matrix calculus is A_jᵀ G B_jᵀ."""
    s = rule_symbols(L)
    W = _mul(*reversed(s.W))
    R = _mul(*(W.args if L > 1 else (W,)), s.X) - s.Y
    loss = Trace(R * R.T) / (2 * s.n)
    G = (W * s.X - s.Y) * s.X.T / s.n
    for j in range(1, L + 1):
        derived = _flat_layer_gradient(s.W, j, G)
        assert _is_zero(sp.diff(loss, s.W[j - 1]) - derived), (L, j)
    # and the rule's gradient is that G
    assert _is_zero(update_rule(L, "all").gradient - G)


def test_matrix_calculus_check_detects_a_wrong_formula():
    """The comparison can fail: a flipped sign, a missing 1/n or A_j on the wrong side."""
    s = rule_symbols(2)
    W = s.W[1] * s.W[0]
    R = s.W[1] * s.W[0] * s.X - s.Y
    loss = Trace(R * R.T) / (2 * s.n)
    G = (W * s.X - s.Y) * s.X.T / s.n
    d1 = sp.diff(loss, s.W[0])
    assert _is_zero(d1 - s.W[1].T * G)
    assert not _is_zero(d1 + s.W[1].T * G)  # sign flipped
    assert not _is_zero(d1 - s.W[1].T * (W * s.X - s.Y) * s.X.T)  # 1/n missing
    s3 = rule_symbols(3)
    W3 = s3.W[2] * s3.W[1] * s3.W[0]
    R3 = W3 * s3.X - s3.Y
    G3 = R3 * s3.X.T / s3.n
    d2 = sp.diff(Trace(R3 * R3.T) / (2 * s3.n), s3.W[1])
    assert _is_zero(d2 - s3.W[2].T * G3 * s3.W[0].T)
    # square widths make a transposed-factor mistake shape-valid; it is still caught
    sq = {w: sp.Symbol("d") for w in s3.widths}
    assert not _is_zero((d2 - s3.W[2] * G3 * s3.W[0]).subs(sq))


@pytest.mark.parametrize(("widths", "n"), [((2, 1, 2), 2), ((1, 2, 2, 1), 1), ((2, 2), 3)])
def test_entrywise_derivatives_of_explicit_matrices(widths, n):
    L = len(widths) - 1
    s = rule_symbols(L)
    Ws = [_explicit(w, dict(enumerate(widths)), n) for w in s.W]
    X = _explicit(s.X, dict(enumerate(widths)), n)
    Y = _explicit(s.Y, dict(enumerate(widths)), n)
    W = Ws[0]
    for w in Ws[1:]:
        W = w * W
    R = W * X - Y
    loss = (R * R.T).trace() / (2 * n)
    G = R * X.T / n
    for j in range(1, L + 1):
        A = sp.eye(widths[-1])
        for w in reversed(Ws[j:]):
            A = A * w
        B = sp.eye(widths[0])
        for w in Ws[: j - 1]:
            B = w * B
        Wj = Ws[j - 1]
        partials = Wj.applyfunc(lambda e, loss=loss: sp.diff(loss, e))
        assert _is_zero(partials - A.T * G * B.T), (widths, j)


@pytest.mark.parametrize(
    ("widths", "S"),
    [((1, 1, 1), (1, 2)), ((2, 1, 2), (1, 2)), ((1, 2, 1, 2), (1, 3)), ((1, 1, 1, 1), (1, 2, 3))],
)
def test_subset_sum_equals_expanded_product_on_explicit_matrices(widths, S):
    """Σ_{T⊆S} (−α)^{|T|} Π M_j^T equals the expanded product Π (W_j − α A_jᵀGB_jᵀ)."""
    L = len(widths) - 1
    rule = update_rule(L, S)
    w = dict(enumerate(widths))
    s = rule.symbols
    G = _explicit(s.G, w)
    product = _explicit(rule.product_form, w)
    expanded = _explicit(rule.expanded, w)
    assert _is_zero(product - expanded)
    # coefficients: collect the expanded product in α
    for p, C in rule.coefficients.items():
        coeff = product.applyfunc(lambda e, p=p: sp.expand(e).coeff(s.alpha, p))
        assert _is_zero(coeff - _explicit(C, w)), p
    top = product.applyfunc(lambda e: sp.expand(e).coeff(s.alpha, len(S) + 1))
    assert _is_zero(top)
    assert G.shape == (widths[-1], widths[0])


def test_expr_is_product_form_with_gradient_written_out():
    for L, S in [(1, (1,)), (3, (1, 3)), (4, (1, 2, 3, 4))]:
        rule = update_rule(L, S)
        assert rule.expr == rule.product_form.xreplace({rule.symbols.G: rule.gradient})


@pytest.mark.parametrize(("L", "S", "k"), [(2, (1, 2), 1), (3, (2, 3), 2), (4, (1, 4), 3)])
def test_printed_expr_and_compiled_evaluation_form_agree(L, S, k):
    rule = update_rule(L, S, k)
    s = rule.symbols
    flat = compile_matrix_exprs([rule.expr], [*s.W, s.X, s.Y, s.alpha, s.n])
    rng = np.random.default_rng(L)
    dims = rng.integers(1, 4, L + 1)
    Ws = [rng.standard_normal((dims[j], dims[j - 1])) / 2 for j in range(1, L + 1)]
    X, Y = rng.standard_normal((dims[0], 3)), rng.standard_normal((dims[-1], 3))
    assert_close(flat(*Ws, X, Y, 0.1, 3)[0], rule.numpy()(Ws, X, Y, 0.1))


@pytest.mark.parametrize(
    ("widths", "S"), [((2, 1, 2), (1, 2)), ((2, 2, 1), (2,)), ((1, 2, 1, 2), (1, 2, 3))]
)
def test_first_order_term_is_kronecker_sum_symbolically(widths, S):
    """vec C_1 = −P vec G exactly, for the symbolic P = Σ (B_jᵀB_j) ⊗ (A_jA_jᵀ)."""
    L = len(widths) - 1
    w = dict(enumerate(widths))
    rule = update_rule(L, S)
    P = _explicit(first_order_preconditioner_symbolic(L, S), w)
    G = _explicit(rule.symbols.G, w)
    C1 = _explicit(rule.coefficients[1], w)
    assert _is_zero(_vec(C1) + P * _vec(G))
    assert _is_zero(P - P.T)
    # the symbolic P at numbers equals the numeric P
    rng = np.random.default_rng(0)
    Ws = [rng.standard_normal((widths[j], widths[j - 1])) for j in range(1, L + 1)]
    values = {}
    for sym, num in zip(rule.symbols.W, Ws, strict=True):
        explicit = _explicit(sym, w)
        values.update({explicit[i, j]: num[i, j] for i in range(num.shape[0])
                       for j in range(num.shape[1])})
    P_num = np.array(P.subs(values).evalf(), dtype=float)
    assert_close(P_num, first_order_preconditioner(Ws, S))
