"""The population MAML objective of a deep linear network adapting one layer.

For ``W = W_L ⋯ W_1`` adapting layer ``j`` with one step of size α, the layer gradient is
``A_jᵀ G B_jᵀ`` (``A_j = W_L ⋯ W_{j+1}``, ``B_j = W_{j−1} ⋯ W_1``), so the adapted
end-to-end map is exactly (docs/theory/update-rules.md#one-step, no remainder) ::

    W' = A_j (W_j − α A_jᵀ G B_jᵀ) B_j = W − α (A_jA_jᵀ) G (B_jᵀB_j)

— a Kronecker-factored step with ``L = A_jA_jᵀ`` (``m × m``) and ``R = B_jᵀB_j``
(``d × d``). Its expected query loss over the task family of docs/theory/notation.md#task-family
is therefore the
closed form of docs/theory/expected-loss.md#closed-form (:func:`~maml_depth.theory.expected_loss`)
at these factors: the
*population* MAML objective, a smooth torch function of the layer weights with no sampling
noise, which numerics/ can meta-train on directly.

Several adapted layers (all gradients at the same point) and ``k`` inner steps have no closed
form but an exact finite expectation: :func:`expected_deep_loss` (the Wick engine of
:mod:`maml_depth.theory.exact_expectation`, docs/theory/exact-expectation.md), of which
:func:`population_maml_loss` is the one-layer, one-step case (tested equal).

References: docs/theory/update-rules.md#one-step, docs/theory/expected-loss.md#closed-form,
docs/theory/expected-loss.md#optimal-preconditioner (``P = α B_LᵀB_L`` for S = {L});
docs/theory/exact-expectation.md; Arnold, Iqbal, Sha (AISTATS 2021), §3.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from maml_depth import _checks
from maml_depth.errors import InvalidArgumentError, ShapeError
from maml_depth.theory._validation import _check_alpha
from maml_depth.theory.exact_expectation import deep_value, shallow_value
from maml_depth.theory.expected_loss import _prepare, expected_loss

__all__ = ["expected_deep_loss", "layer_factors", "population_maml_loss"]


def _as_tensors(weights: Sequence[Any]) -> tuple[list[Tensor], bool]:
    if isinstance(weights, (Tensor, np.ndarray)) or not isinstance(weights, Sequence):
        raise InvalidArgumentError(
            "weights must be a sequence [W_1, ..., W_L] of layer matrices (layer 1 first), "
            f"got {type(weights).__name__}")
    if len(weights) < 1:
        raise InvalidArgumentError("weights is empty: give at least one layer")
    was_torch = any(isinstance(w, Tensor) for w in weights)
    dtype = torch.float64
    for w in weights:
        if isinstance(w, Tensor) and w.is_floating_point():
            dtype = w.dtype
            break
    out = [w if isinstance(w, Tensor) else torch.as_tensor(np.asarray(w, dtype=np.float64))
           for w in weights]
    device = next((w.device for w in weights if isinstance(w, Tensor)), torch.device("cpu"))
    out = [w.to(dtype=dtype, device=device) for w in out]
    for k, w in enumerate(out):
        if w.ndim < 2:
            raise ShapeError(f"weights[{k}] (W_{k + 1}) has shape {tuple(w.shape)}, "
                             "expected (..., d_j, d_{j-1})")
        if k and w.shape[-1] != out[k - 1].shape[-2]:
            raise ShapeError(
                f"weights[{k}] (W_{k + 1}) has shape {tuple(w.shape)}: its {w.shape[-1]} "
                f"columns do not match the {out[k - 1].shape[-2]} rows of W_{k}")
    return out, was_torch


def _product(ws: Sequence[Tensor], size: int, like: Tensor) -> Tensor:
    """``ws[-1] ⋯ ws[0]`` (identity of ``size`` when empty)."""
    if not ws:
        return torch.eye(size, dtype=like.dtype, device=like.device)
    out = ws[0]
    for w in ws[1:]:
        out = w @ out
    return out


def layer_factors(weights: Sequence[Any], layer: int) -> tuple[Tensor, Tensor]:
    """``(A_j, B_j)`` with ``A_j = W_L ⋯ W_{j+1}`` (identity for j = L) and
    ``B_j = W_{j−1} ⋯ W_1`` (identity for j = 1), so ``W = A_j W_j B_j``; ``layer`` = j is
    1-based (1 = input layer). Torch tensors (batched over leading dimensions).

    References: docs/theory/update-rules.md#one-step.
    """
    ws, _ = _as_tensors(weights)
    (j,) = _checks.resolve_adapt(layer, len(ws), name="layer")
    A = _product(ws[j:], int(ws[-1].shape[-2]), ws[0])
    B = _product(ws[: j - 1], int(ws[0].shape[-1]), ws[0])
    return A, B


def population_maml_loss(
    weights: Sequence[Any],
    *,
    adapt: int | str,
    W_bar: Any,
    Sigma: Any,
    Lam: Any,
    sigma: float,
    n: int,
    alpha: float | Tensor,
) -> Any:
    """Population MAML objective of a deep linear net adapting one layer (exact expectation).

    ``E ℒ(W, L = A_jA_jᵀ, R = B_jᵀB_j)`` of :func:`~maml_depth.theory.expected_loss` with
    ``W = A_j W_j B_j`` — equal to the expected query loss after the one-step inner update
    ``W_j ← W_j − α ∇_{W_j} ℓ`` of the network (docs/theory/update-rules.md#one-step exact special
    case).

    Args:
        weights: ``[W_1, …, W_L]`` (layer 1 first), ``W_j`` of shape ``(…, d_j, d_{j−1})``;
            e.g. ``[params[k] for k in model.weight_names]`` of a ``DeepLinear``.
        adapt: the one adapted layer, 1-based (``"top"`` = L). Several layers (or k
            steps): :func:`expected_deep_loss` (exact, within its reach).
        W_bar, Sigma, Lam, sigma, n, alpha: the task family and step size, as in
            :func:`~maml_depth.theory.expected_loss` (``W_bar`` is ``(d_L, d_0)``).

    Returns:
        A torch tensor (differentiable in the weights and α) when any weight is a tensor,
        else a float.

    References: docs/theory/update-rules.md#one-step, docs/theory/expected-loss.md#closed-form;
    Arnold, Iqbal, Sha (AISTATS 2021), §3.
    """
    ws, was_torch = _as_tensors(weights)
    layers = _checks.resolve_adapt(adapt, len(ws))
    if len(layers) != 1:
        raise InvalidArgumentError(
            f"adapt names layers {list(layers)}: the closed form covers one adapted layer; "
            "for several use maml_depth.theory.expected_deep_loss (exact)")
    j = layers[0]
    A, B = layer_factors(ws, j)
    W = A @ ws[j - 1] @ B
    L = A @ A.transpose(-1, -2)
    R = B.transpose(-1, -2) @ B
    value = expected_loss(W, W_bar=W_bar, Sigma=Sigma, Lam=Lam, sigma=sigma, n=n, alpha=alpha,
                          L=L, R=R)
    if was_torch:
        return value
    return float(value) if value.ndim == 0 else value.detach().numpy()


def expected_deep_loss(
    weights: Sequence[Any],
    *,
    adapt: _checks.AdaptSpec,
    steps: int = 1,
    W_bar: Any,
    Sigma: Any,
    Lam: Any,
    sigma: float,
    n: int,
    alpha: float | Tensor,
    max_terms: int = 10**6,
    _words: bool = False,
    _sequential: bool = False,
) -> Any:
    """Exact expected query loss of a deep linear net adapting any layers for ``k`` steps.

    The net ``W = W_L ⋯ W_1`` (``weights = [W_1, …, W_L]``, ``W_1`` the input layer, ``m ≥ 1``
    outputs) takes ``k`` inner steps on one support set, each
    ``W_j ← W_j − α A_jᵀ G B_jᵀ`` for every ``j`` in ``adapt`` with all gradients at the
    same point (``A_j = W_L ⋯ W_{j+1}``, ``B_j = W_{j−1} ⋯ W_1``,
    ``G = (WX − Y)Xᵀ/n``). The adapted map ``W'`` is a polynomial in ``Z``, ``Σ̂``, ``E``
    (docs/theory/exact-expectation.md#eq-4.10) and ::

        E ℒ = ½ E tr((W' − W_t) Σ (W' − W_t)ᵀ) + ½ m σ²

    is the finite Wick sum of :mod:`maml_depth.theory.exact_expectation` (eq. 4–5, 10–11),
    exact in ``n``. One adapted layer ``j`` stays the Kronecker step ``L = A_jA_jᵀ``,
    ``R = B_jᵀB_j`` for every k (its factors do not change), so it is
    :func:`~maml_depth.theory.expected_loss` with ``steps = k`` (the closed form at k = 1,
    = :func:`population_maml_loss`). Several layers expand into words: one step with up to
    four adapted layers is exact (2r factors ``Σ̂``, ``E`` per trace product, the reach is 8;
    four layers: 369 877 terms, a derivation of several minutes kept in the disk cache,
    docs/theory/exact-expectation.md#reach); five layers, or several layers with k > 1, are
    refused before any enumeration — use ``maml_depth.numerics.monte_carlo_deep_loss``
    (an estimate) there.

    Args:
        weights: ``[W_1, …, W_L]``, ``W_j`` of shape ``(d_j, d_{j−1})`` (unbatched).
        adapt: adapted layers: 1-based index, tuple of indices, ``"top"`` or ``"all"``.
        steps: inner steps k ≥ 1.
        W_bar, Sigma, Lam, sigma, n, alpha: the task family and step size, as in
            :func:`~maml_depth.theory.expected_loss` (``W_bar`` is ``(d_L, d_0)``).
        max_terms: the most distinct terms (products of traces) the exact expectation may
            have.

    Returns:
        A float for numpy input; a torch tensor (differentiable in the weights and α) when
        any weight (or α) is a tensor.

    Raises:
        TermLimitError: beyond the reach, or more than ``max_terms`` terms (one line
            with the count; an :class:`~maml_depth.errors.InvalidArgumentError`).
        ShapeError, InvalidArgumentError: bad shapes or values (named).

    References: docs/theory/exact-expectation.md; docs/theory/update-rules.md#one-step,
    docs/theory/notation.md#task-family, docs/theory/expected-loss.md#closed-form; Arnold, Iqbal,
    Sha
    (AISTATS 2021), §3.
    """
    was_torch = any(isinstance(w, Tensor) for w in weights) if isinstance(
        weights, Sequence) else False
    ws, _ = _as_tensors(weights)
    layers = _checks.resolve_adapt(adapt, len(ws))
    steps = _checks.positive_int("steps", steps)
    max_terms = _checks.positive_int("max_terms", max_terms)
    n = _checks.positive_int("n", n)
    sigma = _checks.finite_float("sigma", sigma, nonneg=True)
    alpha = _check_alpha(alpha)
    for k, w in enumerate(ws):
        if w.ndim != 2:
            raise ShapeError(f"weights[{k}] (W_{k + 1}) has shape {tuple(w.shape)}: "
                             "expected_deep_loss is unbatched, give (d_j, d_{j-1}) matrices")
    was_torch = was_torch or isinstance(alpha, Tensor)
    W = _product(ws, int(ws[0].shape[-1]), ws[0])
    like, (W_, W_bar_, Sigma_, Lam_, _, _) = _prepare(W, W_bar, Sigma, Lam, None, None,
                                                      alpha=alpha)
    assert like is not None
    ws = [w.to(dtype=like.dtype) for w in ws]
    W_ = _product(ws, int(ws[0].shape[-1]), ws[0])
    if isinstance(alpha, np.ndarray):
        alpha = float(alpha)
    D = W_ - W_bar_
    if len(layers) == 1 and not _words and not _sequential:
        A, B = layer_factors(ws, layers[0])
        L = A @ A.transpose(-1, -2)
        R = B.transpose(-1, -2) @ B
        if steps == 1:
            value = expected_loss(W_, W_bar=W_bar_, Sigma=Sigma_, Lam=Lam_, sigma=sigma, n=n,
                                  alpha=alpha, L=L, R=R)
        else:
            value = shallow_value(D, Sigma_, Lam_, sigma, n, alpha, L, R, steps=steps,
                                  max_terms=max_terms)
    else:
        value = deep_value(ws, D, Sigma_, Lam_, sigma, n, alpha, adapt=layers, steps=steps,
                           max_terms=max_terms, _sequential=_sequential)
    if was_torch:
        return value
    return float(value.detach()) if isinstance(value, Tensor) else float(value)
