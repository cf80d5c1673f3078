"""The symbolic MAML update rule (theory/update_rule.py) against autograd (numerics/).

Claim 1 of docs/theory/paper-claims.md: the symbolic exact update — any depth, widths, adapted
subset S and
number of steps k — equals a real torch network adapted by autograd (the numerics/ inner
loop) to float64 round-off; its α¹ term is the Kronecker sum P.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from maml_depth.errors import InvalidArgumentError, ShapeError
from maml_depth.numerics import DeepLinear, inner_adapt
from maml_depth.theory import (
    exact_update,
    first_order_preconditioner,
    update_rule,
)
from maml_depth.theory.compile import compile_matrix_exprs, count_matmuls
from maml_depth.validation import strategies as mst
from tests.helpers import assert_close

# --------------------------------------------------------------------------------------------
# helpers


@st.composite
def rule_cases(
    draw: st.DrawFn, *, max_depth: int = 6, max_width: int = 5, max_steps: int = 3
) -> tuple:
    """(dims, S, k, weights, X, Y, alpha): random depth 1–6, widths 1–5, S, k 1–3, α.

    α is a fraction in [0.01, 0.9] of the stable step ``1/λ``, ``λ = ‖P‖₂ ‖XXᵀ/n‖₂`` (the
    curvature of the first-order step), so that k steps do not diverge to overflow.
    """
    dims = draw(mst.layer_dims(min_depth=1, max_depth=max_depth, max_width=max_width))
    L = len(dims) - 1
    S = draw(mst.adapt_subsets(L))
    k = draw(st.integers(1, max_steps))
    Ws = draw(mst.deep_linear_weights(dims))
    X, Y = draw(mst.linear_data(dims[0], dims[-1], max_n=6))
    frac = draw(st.floats(0.01, 0.9))
    lam = np.linalg.eigvalsh(first_order_preconditioner(Ws, S)).max()
    lam *= np.linalg.eigvalsh(X @ X.T / X.shape[1]).max()
    alpha = min(frac / max(lam, 1e-12), 1.0)
    return dims, S, k, Ws, X, Y, alpha


def autograd_update(Ws, X, Y, alpha, S, k=1):
    """End-to-end map after k steps by numerics' inner loop (rows are samples there)."""
    dims = (Ws[0].shape[1], *[w.shape[0] for w in Ws])
    model = DeepLinear(dims)
    params = {n: torch.from_numpy(np.array(w)) for n, w in zip(model.weight_names, Ws,
                                                              strict=True)}
    Xr, Yr = torch.from_numpy(np.array(X.T)), torch.from_numpy(np.array(Y.T))
    out = inner_adapt(model, params, Xr, Yr, alpha=alpha, adapt=list(S), steps=k)
    return model.end_to_end(out).numpy()


def end_to_end(Ws):
    W = Ws[0]
    for w in Ws[1:]:
        W = w @ W
    return W


def gradient(Ws, X, Y):
    return (end_to_end(Ws) @ X - Y) @ X.T / X.shape[1]


def factors(Ws, j):
    """A_j = W_L⋯W_{j+1}, B_j = W_{j−1}⋯W_1 (1-based j), identities at the ends."""
    A = np.eye(Ws[-1].shape[0])
    for w in Ws[j:][::-1]:
        A = A @ w
    B = np.eye(Ws[0].shape[1])
    for w in Ws[: j - 1]:
        B = w @ B
    return A, B


def vec(M):
    return M.reshape(-1, order="F")  # column-major


# --------------------------------------------------------------------------------------------
# the exact update equals autograd


@given(rule_cases())
def test_compiled_rule_equals_autograd(case):
    _, S, k, Ws, X, Y, alpha = case
    expected = autograd_update(Ws, X, Y, alpha, S, k)
    rule = update_rule(len(Ws), S, k)
    assert_close(rule.numpy()(Ws, X, Y, alpha), expected, what=f"numpy rule {rule}")
    tW = [torch.from_numpy(w) for w in Ws]
    out = rule.torch()(tW, torch.from_numpy(X), torch.from_numpy(Y), alpha)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    assert_close(out, expected, what=f"torch rule {rule}")
    assert_close(exact_update(Ws, X, Y, alpha, S, k), expected, what="exact_update")


@given(rule_cases(max_steps=1))
def test_expanded_subset_sum_equals_product_form(case):
    _, S, _, Ws, X, Y, alpha = case
    rule = update_rule(len(Ws), S)
    expected = autograd_update(Ws, X, Y, alpha, S)
    assert_close(rule.expanded_function()(Ws, X, Y, alpha), expected, what="expanded sum")
    coeffs = rule.coefficient_function()(Ws, X, Y)
    assert_close(sum(alpha**p * c for p, c in coeffs.items()), expected, what="Σ α^p C_p")


@given(rule_cases(max_steps=1, max_depth=5))
def test_degree_is_size_of_S_and_higher_coefficients_vanish(case):
    """Interpolate the autograd result in α at L + 2 nodes: the coefficients of α^p match
    C_p for p ≤ |S|, vanish above, and C_|S| is non-zero."""
    _, S, _, Ws, X, Y, _ = case
    L = len(Ws)
    rule = update_rule(L, S)
    assert rule.degree == len(S) == max(rule.coefficients)
    coeffs = rule.coefficient_function()(Ws, X, Y)
    nodes = np.cos(np.pi * (np.arange(L + 2) + 0.5) / (L + 2))  # Chebyshev, well conditioned
    vals = np.stack([autograd_update(Ws, X, Y, a, S) for a in nodes])
    V = np.vander(nodes, L + 2, increasing=True)
    fit = np.linalg.solve(V, vals.reshape(L + 2, -1)).reshape(vals.shape)
    scale = max(np.linalg.norm(c) for c in coeffs.values())
    for p in range(L + 2):
        want = coeffs.get(p, np.zeros_like(fit[0]))
        # interpolation through L + 2 nodes loses a few digits: compare at 1e-8 of the scale
        assert_close(fit[p], want, rtol=1e-8, atol=scale, what=f"coefficient of alpha^{p}")
    # C_|S| is the single product Π_j M_j^S, computed to within ~(#factors)·eps times the
    # product of its factors' norms: non-zero means well above that round-off floor
    bound = 1.0
    for i in range(1, L + 1):
        A, B = factors(Ws, i)
        G = gradient(Ws, X, Y)
        bound *= np.linalg.norm(A) * np.linalg.norm(G) * np.linalg.norm(B) if i in S else (
            np.linalg.norm(Ws[i - 1]))
    assert np.linalg.norm(coeffs[len(S)]) > 1e-12 * bound, "the α^|S| coefficient vanished"


@given(rule_cases(max_steps=1))
def test_first_order_coefficient_is_minus_P_vec_G(case):
    dims, S, _, Ws, X, Y, _ = case
    C1 = update_rule(len(Ws), S).coefficient_function()(Ws, X, Y)[1]
    P = first_order_preconditioner(Ws, S)
    m, d = dims[-1], dims[0]
    assert P.shape == (m * d, m * d)
    G = gradient(Ws, X, Y)
    assert_close(vec(C1), -P @ vec(G), what="C_1 vs -P vec G")
    # P is the Kronecker sum Σ (B_jᵀB_j) ⊗ (A_jA_jᵀ), symmetric PSD
    ref = sum(np.kron(B.T @ B, A @ A.T) for A, B in (factors(Ws, j) for j in S))
    assert_close(P, ref, what="P vs numpy kron")
    assert_close(P, P.T, what="P symmetric")
    assert np.linalg.eigvalsh(P).min() >= -1e-10 * max(1.0, np.abs(P).max())
    # torch in, torch out (and batched over leading dimensions)
    tW = [torch.from_numpy(w).requires_grad_() for w in Ws]
    tP = first_order_preconditioner(tW, S)
    assert isinstance(tP, torch.Tensor) and (tP.requires_grad or len(Ws) == 1)
    assert_close(tP, P, what="torch P")
    batched = first_order_preconditioner([torch.stack([w, 2 * w]) for w in tW], S)
    assert batched.shape == (2, m * d, m * d)
    assert_close(batched[0], P, what="batched P")


@given(
    st.integers(1, 6).flatmap(
        lambda L: st.tuples(
            st.just(L),
            st.integers(1, L),
            mst.layer_dims(min_depth=L, max_depth=L, max_width=5),
            mst.rngs(),
            st.floats(-1.0, 1.0),
        )
    )
)
def test_single_adapted_layer_has_no_alpha_squared_term(args):
    L, j, dims, rng, alpha = args
    Ws = [rng.standard_normal((dims[i], dims[i - 1])) / np.sqrt(dims[i - 1])
          for i in range(1, L + 1)]
    X, Y = rng.standard_normal((dims[0], 4)), rng.standard_normal((dims[-1], 4))
    rule = update_rule(L, j)
    assert sorted(rule.coefficients) == [0, 1] and rule.degree == 1
    A, B = factors(Ws, j)
    G = gradient(Ws, X, Y)
    # no remainder (docs/theory/update-rules.md#one-step)
    exact = end_to_end(Ws) - alpha * A @ A.T @ G @ B.T @ B
    assert_close(autograd_update(Ws, X, Y, alpha, (j,)), exact, what="autograd, one layer")
    assert_close(rule.numpy()(Ws, X, Y, alpha), exact, what="rule, one layer")


def test_top_and_bottom_special_cases():
    """S = {L}: W' = W − α G B_LᵀB_L; S = {1}: W' = W − α A_1A_1ᵀ G
    (docs/theory/update-rules.md#one-step)."""
    rng = np.random.default_rng(3)
    dims = (3, 4, 2, 5)
    Ws = [rng.standard_normal((dims[i], dims[i - 1])) for i in range(1, 4)]
    X, Y = rng.standard_normal((3, 6)), rng.standard_normal((5, 6))
    G, W = gradient(Ws, X, Y), end_to_end(Ws)
    _, B = factors(Ws, 3)
    A, _ = factors(Ws, 1)
    assert_close(exact_update(Ws, X, Y, 0.1, 3), W - 0.1 * G @ B.T @ B)
    assert_close(exact_update(Ws, X, Y, 0.1, 1), W - 0.1 * A @ A.T @ G)


# --------------------------------------------------------------------------------------------
# torch: batched over tasks and differentiable


def test_torch_rule_batched_over_tasks_with_per_task_alpha():
    gen = torch.Generator().manual_seed(0)
    dims, T, n = (3, 4, 2), 5, 6
    Ws = [torch.randn(T, dims[i], dims[i - 1], generator=gen, dtype=torch.float64)
          for i in (1, 2)]
    X = torch.randn(T, 3, n, generator=gen, dtype=torch.float64)
    Y = torch.randn(T, 2, n, generator=gen, dtype=torch.float64)
    alpha = torch.linspace(0.05, 0.3, T, dtype=torch.float64)
    f = update_rule(2, "all", 2).torch()
    out = f(Ws, X, Y, alpha)
    assert out.shape == (T, 2, 3)
    for t in range(T):
        one = [w[t].numpy() for w in Ws]
        want = autograd_update(one, X[t].numpy(), Y[t].numpy(), float(alpha[t]), (1, 2), 2)
        assert_close(out[t], want, what=f"task {t}")
    # shared (unbatched) layers broadcast against batched data
    shared = [w[0] for w in Ws]
    assert f(shared, X, Y, 0.1).shape == (T, 2, 3)
    assert_close(f(shared, X, Y, 0.1)[2], f(shared, X[2], Y[2], 0.1))


def test_torch_rule_is_differentiable_like_second_order_maml():
    """Meta-gradients (w.r.t. the layers and α) through the compiled rule equal those of
    the numerics inner loop (second order)."""
    gen = torch.Generator().manual_seed(1)
    dims = (3, 4, 3, 2)
    model = DeepLinear(dims, generator=gen)
    Ws = [w.detach().clone().requires_grad_() for w in model.weights]
    alpha = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    X = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    Y = torch.randn(2, 5, generator=gen, dtype=torch.float64)
    Xq = torch.randn(3, 7, generator=gen, dtype=torch.float64)
    Yq = torch.randn(2, 7, generator=gen, dtype=torch.float64)

    def query_loss(W):
        return 0.5 * (W @ Xq - Yq).pow(2).sum() / Xq.shape[1]

    rule = update_rule(3, (1, 3), 2)
    g_rule = torch.autograd.grad(query_loss(rule.torch()(Ws, X, Y, alpha)), [*Ws, alpha])
    params = dict(zip(model.weight_names, Ws, strict=True))
    adapted = inner_adapt(model, params, X.T, Y.T, alpha=alpha, adapt=[1, 3], steps=2)
    g_ref = torch.autograd.grad(query_loss(model.end_to_end(adapted)), [*Ws, alpha])
    for i, (a, b) in enumerate(zip(g_rule, g_ref, strict=True)):
        assert_close(a, b, what=f"meta-gradient {i}")


# --------------------------------------------------------------------------------------------
# product form, caching, printing


def test_compiled_rule_evaluates_in_product_form():
    """Matrix products grow linearly in L for the compiled rule, as 2^L for the sum."""
    for L in (4, 8):
        rule = update_rule(L, "all")
        product = count_matmuls(rule.numpy())
        expanded = count_matmuls(rule.expanded_function())
        assert product <= 6 * L, (L, product)
        assert expanded >= 2**L, (L, expanded)
    k3 = update_rule(6, "all", 3)
    assert count_matmuls(k3.numpy()) <= 3 * 6 * 6  # k compositions, each O(L)


def test_rule_is_cached_by_depth_subset_and_steps():
    assert update_rule(3, "1,3") is update_rule(3, [3, 1, 3])
    assert update_rule(3, "all") is update_rule(3, (1, 2, 3))
    assert update_rule(3, "all", 2) is not update_rule(3, "all", 1)
    assert update_rule(2, "all").numpy() is not None


def test_rule_objects_print_and_expose_symbols():
    rule = update_rule(3, "1,3")
    s = rule.symbols
    assert rule.expr.free_symbols >= {*s.W, s.X, s.Y, s.alpha, s.n}
    assert s.G not in rule.expr.free_symbols  # G is written out in .expr
    assert rule.expr.shape == (s.widths[3], s.widths[0])
    text = rule.text()
    assert "C_2" in text and "W_3*W_2*W_1" in text
    assert "\\begin{aligned}" in rule.latex() and "C_{2}" in rule.latex()
    k2 = update_rule(2, "all", 2)
    assert k2.degree == 8
    assert "W_1^(t+1)" in k2.text() and "\\end{aligned}" in k2.latex()
    with pytest.raises(InvalidArgumentError, match="coefficients exist only for steps=1"):
        _ = k2.coefficients


# --------------------------------------------------------------------------------------------
# the comparison can fail: deliberately wrong rules are caught


def _wrong_rule(L: int, S: tuple[int, ...], *, swap: bool = False, sign: int = 1):
    """The one-step rule with A and B swapped (square layers) or the sign of α flipped."""
    from sympy.matrices.expressions import MatAdd, MatMul, Transpose

    from maml_depth.theory.update_rule import _mul, rule_symbols

    s = rule_symbols(L)
    W = _mul(*reversed(s.W))
    G = MatMul(1 / s.n, MatAdd(MatMul(W, s.X), MatMul(-1, s.Y)), Transpose(s.X))
    new = list(s.W)
    for j in S:
        A = [Transpose(s.W[i - 1]) for i in range(j + 1, L + 1)]
        B = [Transpose(s.W[i - 1]) for i in range(1, j)]
        left, right = (B, A) if swap else (A, B)
        new[j - 1] = MatAdd(s.W[j - 1], MatMul(-sign * s.alpha, *left, G, *right))
    f = compile_matrix_exprs([_mul(*reversed(new))], [*s.W, s.X, s.Y, s.alpha, s.n])
    return lambda Ws, X, Y, a: f(*Ws, X, Y, a, X.shape[1])[0]


def test_deliberately_wrong_rules_are_caught():
    rng = np.random.default_rng(7)
    d, L, S = 3, 3, (2, 3)
    Ws = [rng.standard_normal((d, d)) / np.sqrt(d) for _ in range(L)]
    X, Y = rng.standard_normal((d, 5)), rng.standard_normal((d, 5))
    expected = autograd_update(Ws, X, Y, 0.2, S)
    # the right rule passes the comparison used above ...
    assert_close(_wrong_rule(L, S)(Ws, X, Y, 0.2), expected)
    assert_close(update_rule(L, S).numpy()(Ws, X, Y, 0.2), expected)
    # ... and each mutation fails it
    for wrong in (_wrong_rule(L, S, swap=True), _wrong_rule(L, S, sign=-1)):
        with pytest.raises(AssertionError, match="relative error"):
            assert_close(wrong(Ws, X, Y, 0.2), expected)
    with pytest.raises(AssertionError, match="relative error"):  # first order only
        C = update_rule(L, S).coefficient_function()(Ws, X, Y)
        assert_close(C[0] + 0.2 * C[1], expected)
    with pytest.raises(AssertionError, match="relative error"):  # one step instead of two
        assert_close(exact_update(Ws, X, Y, 0.2, S, 1), autograd_update(Ws, X, Y, 0.2, S, 2))


# --------------------------------------------------------------------------------------------
# bad input


def _data():
    rng = np.random.default_rng(0)
    Ws = [rng.standard_normal((4, 3)), rng.standard_normal((2, 4))]
    return Ws, rng.standard_normal((3, 5)), rng.standard_normal((2, 5))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda W, X, Y: exact_update(W, X[:2], Y, 0.1), ShapeError, r"X has shape \(2, 5\)"),
        (lambda W, X, Y: exact_update(W, X, Y[:, :4], 0.1), ShapeError, r"Y has shape"),
        (lambda W, X, Y: exact_update(W, X, Y[:1], 0.1), ShapeError, r"d_L=2"),
        (lambda W, X, Y: exact_update([W[0], W[1].T], X, Y, 0.1), ShapeError,
         r"weights\[1\] \(W_2\)"),
        (lambda W, X, Y: exact_update([W[0][0], W[1]], X, Y, 0.1), ShapeError,
         r"weights\[0\] \(W_1\).*expected a matrix"),
        (lambda W, X, Y: exact_update(W, X, Y, float("nan")), InvalidArgumentError,
         "alpha must be finite"),
        (lambda W, X, Y: exact_update(W, X, Y, 0.1, adapt=7), InvalidArgumentError,
         "adapt names layer 7"),
        (lambda W, X, Y: exact_update(W, X, Y, 0.1, adapt="1,x"), InvalidArgumentError,
         "adapt must be"),
        (lambda W, X, Y: exact_update(W, X, Y, 0.1, steps=0), InvalidArgumentError, "steps"),
        (lambda W, X, Y: exact_update([], X, Y, 0.1), InvalidArgumentError, "weights"),
        (lambda W, X, Y: exact_update(W, torch.from_numpy(X), Y, 0.1), InvalidArgumentError,
         "weights\\[0\\] \\(W_1\\) must be a torch tensor"),
        (lambda W, X, Y: update_rule(0, "all"), InvalidArgumentError, "depth"),
        (lambda W, X, Y: update_rule(3, 0), InvalidArgumentError, "adapt names layer 0"),
        (lambda W, X, Y: update_rule(2).numpy()([W[0]], X, Y, 0.1), ShapeError,
         "has 1 layers, but the rule has depth 2"),
        (lambda W, X, Y: first_order_preconditioner(W, 3), InvalidArgumentError, "adapt"),
        (lambda W, X, Y: update_rule(2).numpy()(W, X, Y, [0.1, float("inf")]),
         InvalidArgumentError, "alpha must be finite"),
    ],
)
def test_bad_input_raises_naming_the_field(call, error, match):
    Ws, X, Y = _data()
    with pytest.raises(error, match=match):
        call(Ws, X, Y)
