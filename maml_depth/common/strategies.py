"""Public hypothesis strategies for property-based checks about depth and adaptation.

Everything random is drawn from a numpy ``Generator`` seeded by hypothesis, so examples
shrink well and reproduce exactly. Matrices are numpy float64 arrays; convert with
``torch.from_numpy`` where torch is wanted.

Example::

    from hypothesis import given
    from maml_depth.validation import strategies as mst

    @given(mst.spd_matrices(3, max_condition=10.0))
    def test_spd(S):
        assert (np.linalg.eigvalsh(S) > 0).all()
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hypothesis import strategies as st

from maml_depth import _checks

__all__ = [
    "ELEMENTWISE_ACTIVATIONS",
    "activations",
    "adapt_subsets",
    "deep_linear_weights",
    "layer_dims",
    "linear_data",
    "orthogonal_matrices",
    "param_shapes",
    "preconditioner_names",
    "psd_matrices",
    "rngs",
    "spd_matrices",
]


def rngs() -> st.SearchStrategy[np.random.Generator]:
    """A seeded ``numpy.random.Generator``."""
    return st.integers(0, 2**32 - 1).map(np.random.default_rng)


def _orthogonal(rng: np.random.Generator, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))  # Haar-distributed


def orthogonal_matrices(d: int) -> st.SearchStrategy[np.ndarray]:
    """Haar-random ``d × d`` orthogonal matrices."""
    return rngs().map(lambda rng: _orthogonal(rng, d))


def spd_matrices(
    d: int, *, max_condition: float = 100.0, scale: float = 1.0, rotated: bool = True
) -> st.SearchStrategy[np.ndarray]:
    """Symmetric positive-definite ``d × d`` matrices with condition number ≤ ``max_condition``.

    Eigenvalues are log-uniform in ``[scale / √κ, scale · √κ]`` (κ = ``max_condition``),
    eigenvectors Haar-random (or the identity when ``rotated=False``).
    """
    _checks.number("max_condition", max_condition, low=1.0)

    def build(rng: np.random.Generator) -> np.ndarray:
        half = 0.5 * np.log(max_condition)
        eig = scale * np.exp(rng.uniform(-half, half, size=d))
        if not rotated:
            return np.diag(eig)
        q = _orthogonal(rng, d)
        s = (q * eig) @ q.T
        return 0.5 * (s + s.T)

    return rngs().map(build)


def psd_matrices(
    d: int, rank: int | None = None, *, max_condition: float = 100.0, scale: float = 1.0
) -> st.SearchStrategy[np.ndarray]:
    """Symmetric PSD ``d × d`` matrices of the given rank (random rank 1..d when None)."""
    ranks = st.integers(1, d) if rank is None else st.just(rank)

    def build(args: tuple[int, np.random.Generator]) -> np.ndarray:
        r, rng = args
        half = 0.5 * np.log(max_condition)
        eig = np.zeros(d)
        eig[:r] = scale * np.exp(rng.uniform(-half, half, size=r))
        q = _orthogonal(rng, d)
        s = (q * eig) @ q.T
        return 0.5 * (s + s.T)

    return st.tuples(ranks, rngs()).map(build)


def layer_dims(
    *, min_depth: int = 1, max_depth: int = 5, min_width: int = 1, max_width: int = 6
) -> st.SearchStrategy[tuple[int, ...]]:
    """Widths ``(d_0, …, d_L)`` of a network of depth L in ``[min_depth, max_depth]``."""
    return st.integers(min_depth, max_depth).flatmap(
        lambda L: st.tuples(*[st.integers(min_width, max_width) for _ in range(L + 1)])
    )


#: Names of the elementwise activations of ``numerics.MLP`` (see ``networks._ACTIVATIONS``).
ELEMENTWISE_ACTIVATIONS: tuple[str, ...] = (
    "identity", "relu", "tanh", "sigmoid", "gelu", "softplus",
)


def activations() -> st.SearchStrategy[str]:
    """Name of an elementwise activation for ``numerics.MLP`` (shrinks towards identity)."""
    return st.sampled_from(ELEMENTWISE_ACTIVATIONS)


def adapt_subsets(depth: int) -> st.SearchStrategy[tuple[int, ...]]:
    """Non-empty sorted tuples of 1-based layer indices of a depth-``depth`` network."""
    return st.sets(st.integers(1, depth), min_size=1).map(lambda s: tuple(sorted(s)))


def deep_linear_weights(
    dims: Sequence[int], *, balanced: bool | None = None
) -> st.SearchStrategy[list[np.ndarray]]:
    """Weights ``[W_1, …, W_L]``, ``W_j`` of shape ``(d_j, d_{j−1})``, of moderate scale.

    ``balanced=True`` gives ``W_{j+1}ᵀW_{j+1} = W_jW_jᵀ``-balanced weights (equal widths
    only: scaled orthogonal matrices); ``False`` Gaussian with variance ``1/d_{j−1}``;
    None draws either.
    """
    dims = tuple(dims)
    flags = st.booleans() if balanced is None else st.just(balanced)

    def build(args: tuple[bool, np.random.Generator]) -> list[np.ndarray]:
        bal, rng = args
        L = len(dims) - 1
        if bal and len(set(dims)) == 1:
            c = rng.uniform(0.6, 1.2)
            return [c * _orthogonal(rng, dims[0]) for _ in range(L)]
        return [
            rng.standard_normal((dims[j], dims[j - 1])) / np.sqrt(dims[j - 1])
            for j in range(1, L + 1)
        ]

    return st.tuples(flags, rngs()).map(build)


def preconditioner_names(*, include_maml: bool = True) -> st.SearchStrategy[str]:
    """Name of a meta-optimizer drawn from the registry itself
    (``maml_depth.numerics.PRECONDITIONERS``, in registration order, so it shrinks towards
    MAML's identity): an optimizer registered later is drawn too."""
    from maml_depth.numerics import PRECONDITIONERS

    names = [n for n in PRECONDITIONERS if include_maml or n != "maml"]
    return st.sampled_from(names)


def param_shapes(*, max_side: int = 4) -> st.SearchStrategy[tuple[int, ...]]:
    """Shape of one parameter: a bias ``(n,)``, a linear weight ``(out, in)`` or a conv
    kernel ``(out, in, kh, kw)``, each side in ``[1, max_side]``."""
    side = st.integers(1, max_side)
    return st.one_of(
        st.tuples(side), st.tuples(side, side), st.tuples(side, side, side, side)
    )


def linear_data(
    d: int, m: int, *, min_n: int = 1, max_n: int = 8, scale: float = 1.0
) -> st.SearchStrategy[tuple[np.ndarray, np.ndarray]]:
    """Support data ``(X, Y)`` in theory/'s convention (columns are samples): ``X`` of shape
    ``(d, n)``, ``Y`` of shape ``(m, n)``, standard normal times ``scale``, n in
    ``[min_n, max_n]``. Transpose for numerics/ (rows are samples)."""

    def build(args: tuple[int, np.random.Generator]) -> tuple[np.ndarray, np.ndarray]:
        n, rng = args
        return scale * rng.standard_normal((d, n)), scale * rng.standard_normal((m, n))

    return st.tuples(st.integers(min_n, max_n), rngs()).map(build)
