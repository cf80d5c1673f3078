"""Compile sympy matrix expressions (and scalar polynomials) to numpy and torch functions.

:func:`compile_matrix_exprs` turns expressions built from ``MatrixSymbol``, ``Transpose``,
``MatMul``, ``MatAdd`` and commuting scalar factors into straight-line Python source with
one statement per *distinct* sub-expression (a structural common-subexpression elimination:
a sub-expression that occurs many times in a DAG is computed once). Matrix products use
``@`` and transposes swap the last two axes, so the generated functions broadcast over any
leading (task) dimensions, both for numpy arrays and for torch tensors — and for torch they
are differentiable, because they are ordinary tensor operations.

The matrix-chain evaluation order is left to right, exactly as the expression nests: an
expression in *product form* (a product of updated layers) is evaluated as that product,
never expanded.

References: docs/theory/update-rules.md#one-step (the expressions compiled here).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import sympy as sp
from sympy.matrices.expressions import MatAdd, MatMul, MatrixExpr, MatrixSymbol, Transpose

from maml_depth.errors import InvalidArgumentError

Backend = Literal["numpy", "torch"]

__all__ = [
    "Backend",
    "compile_matrix_exprs",
    "compile_polynomial",
    "compile_scalar_expr",
    "count_matmuls",
]


def _backend_namespace(backend: str) -> dict[str, Any]:
    if backend == "numpy":
        import numpy as np

        return {"_T": lambda a: np.swapaxes(a, -1, -2)}
    if backend == "torch":
        return {"_T": lambda a: a.transpose(-1, -2)}
    raise InvalidArgumentError(f"backend must be 'numpy' or 'torch', got {backend!r}")


class _CodeGen:
    """Emit one Python statement per distinct sub-expression (memoised on the expression)."""

    def __init__(self, names: Mapping[sp.Basic, str], subs: Mapping[sp.Basic, sp.Basic]):
        self.memo: dict[sp.Basic, str] = dict(names)
        self.subs = dict(subs)
        self.lines: list[str] = []
        self.counter = 0

    def _new(self, code: str) -> str:
        name = f"_t{self.counter}"
        self.counter += 1
        self.lines.append(f"    {name} = {code}")
        return name

    # scalars (commuting): numbers, symbols, +, *, integer powers
    def scalar(self, e: sp.Expr) -> str:
        if e in self.memo:
            return self.memo[e]
        if e.is_Integer:
            return f"({int(e)})"
        if e.is_Rational:
            return f"({int(e.p)}/{int(e.q)})"
        if e.is_Float:
            return f"({float(e)!r})"
        if isinstance(e, sp.Mul):
            return "(" + " * ".join(self.scalar(a) for a in e.args) + ")"
        if isinstance(e, sp.Add):
            return "(" + " + ".join(self.scalar(a) for a in e.args) + ")"
        if isinstance(e, sp.Pow) and e.exp.is_Integer:
            return f"({self.scalar(e.base)} ** ({int(e.exp)}))"
        raise NotImplementedError(f"cannot compile scalar sub-expression {e!r}")

    def matrix(self, e: sp.Basic) -> str:
        if e in self.memo:
            return self.memo[e]
        if e in self.subs:
            out = self.matrix(self.subs[e])
        elif isinstance(e, MatrixSymbol):
            raise NotImplementedError(f"matrix symbol {e} is not an input of the function")
        elif isinstance(e, Transpose):
            out = self._new(f"_T({self.matrix(e.arg)})")
        elif isinstance(e, MatMul):
            scalars = [a for a in e.args if not getattr(a, "is_Matrix", False)]
            mats = [self.matrix(a) for a in e.args if getattr(a, "is_Matrix", False)]
            code = " @ ".join(mats)
            if scalars:
                coeff = sp.Mul(*scalars)
                code = f"{self.scalar(coeff)} * ({code})"
            out = self._new(code)
        elif isinstance(e, MatAdd):
            out = self._new(" + ".join(self.matrix(a) for a in e.args))
        else:
            raise NotImplementedError(
                f"cannot compile matrix sub-expression of type {type(e).__name__}: {e}"
            )
        self.memo[e] = out
        return out


def compile_matrix_exprs(
    exprs: Sequence[MatrixExpr],
    inputs: Sequence[sp.Basic],
    backend: Backend = "numpy",
    *,
    substitutions: Mapping[sp.Basic, sp.Basic] | None = None,
    name: str = "compiled",
) -> Callable[..., tuple[Any, ...]]:
    """Compile matrix expressions to ``f(*inputs) -> tuple`` for numpy or torch.

    Args:
        exprs: sympy matrix expressions (``MatrixSymbol``, ``Transpose``, ``MatMul``,
            ``MatAdd``, commuting scalar coefficients built from ``inputs``' scalar symbols).
        inputs: the argument symbols, in order (matrix symbols and scalar symbols).
        backend: ``"numpy"`` or ``"torch"``; the generated code only uses ``@``, ``+``,
            ``*`` and a last-two-axes transpose, so it broadcasts over leading dimensions.
        substitutions: symbols standing for sub-expressions (e.g. the gradient ``G``), each
            compiled once, on first use.
        name: the generated function's name (visible in tracebacks).

    The generated source is kept on the function as ``__source__``.
    """
    names = {s: f"_a{i}" for i, s in enumerate(inputs)}
    gen = _CodeGen(names, substitutions or {})
    outs = [gen.matrix(e) for e in exprs]
    args = ", ".join(names[s] for s in inputs)
    src = "\n".join(
        [f"def {name}({args}):", *gen.lines, f"    return ({', '.join(outs)},)", ""]
    )
    ns = _backend_namespace(backend)
    exec(compile(src, f"<maml_depth.theory.compile:{name}>", "exec"), ns)
    fn: Callable[..., tuple[Any, ...]] = ns[name]
    fn.__source__ = src  # type: ignore[attr-defined]
    return fn


def count_matmuls(fn: Callable[..., Any]) -> int:
    """Number of matrix products (``@``) in a function made by :func:`compile_matrix_exprs`."""
    return str(getattr(fn, "__source__", "")).count(" @ ")


def compile_scalar_expr(
    expr: sp.Expr, inputs: Sequence[sp.Symbol], backend: Backend = "numpy"
) -> Callable[..., Any]:
    """Compile a polynomial / rational scalar expression to an elementwise function.

    Only ``+``, ``*``, ``/`` and integer powers are allowed, so the same code evaluates numpy
    arrays and torch tensors (broadcasting, differentiable for torch).
    """
    if backend not in ("numpy", "torch"):
        raise InvalidArgumentError(f"backend must be 'numpy' or 'torch', got {backend!r}")
    bad = [f for f in expr.atoms(sp.Function)]
    bad += [p for p in expr.atoms(sp.Pow) if not p.exp.is_Integer]
    if bad:
        raise NotImplementedError(
            f"compile_scalar_expr handles rational expressions only, got {bad[0]}"
        )
    return sp.lambdify(tuple(inputs), expr, modules=[{}], cse=False)


def compile_polynomial(poly: Any, backend: Backend = "numpy", *, chunk: int = 64) -> Callable:
    """Compile a sympy ring polynomial (``sympy.polys.rings.PolyElement``) to a function of
    its generators, in ring order: ``f(x_1, …, x_r)``.

    Coefficients become floats; powers are computed once per (variable, exponent); the sum is
    accumulated in chunks, so polynomials with tens of thousands of terms compile. Elementwise
    and broadcasting for numpy arrays and torch tensors (differentiable for torch).
    """
    _backend_namespace(backend)  # validates the name
    terms = poly.terms()
    nvars = poly.ring.ngens
    args = [f"_x{i}" for i in range(nvars)]
    lines: list[str] = []
    powers: dict[tuple[int, int], str] = {}

    def power(i: int, e: int) -> str:
        if e == 1:
            return args[i]
        if (i, e) not in powers:
            powers[(i, e)] = f"_p{i}_{e}"
            lines.append(f"    _p{i}_{e} = {args[i]} ** {e}")
        return powers[(i, e)]

    codes = []
    for monom, coeff in terms:
        factors = [repr(float(coeff))] + [power(i, e) for i, e in enumerate(monom) if e]
        codes.append("*".join(factors))
    if not codes:
        codes = ["0.0"]
    for start in range(0, len(codes), chunk):
        part = " + ".join(codes[start : start + chunk])
        lines.append(f"    _acc = {part}" if start == 0 else f"    _acc = _acc + ({part})")
    src = "\n".join([f"def polynomial({', '.join(args)}):", *lines, "    return _acc", ""])
    ns: dict[str, Any] = {}
    exec(compile(src, "<maml_depth.theory.compile:polynomial>", "exec"), ns)
    fn: Callable[..., Any] = ns["polynomial"]
    fn.__source__ = src  # type: ignore[attr-defined]
    return fn
