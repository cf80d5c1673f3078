"""Networks as functional models: deep linear networks, MLPs, and any ``torch.nn.Module``.

Every model is evaluated functionally, ``torch.func.functional_call(module, params, (x,))``,
with ``params`` a ``dict[str, Tensor]``. Layers are numbered from 1 (the input layer) to L
(the output layer), as in docs/theory/update-rules.md#one-step: layer j is the j-th sub-module, in
registration order,
that owns parameters directly (for :class:`DeepLinear` and :class:`MLP` the j-th
``nn.Linear``). Inputs are rows: ``x`` has shape ``(n, d_0)``, outputs ``(n, d_L)``.

References: Arnold, Iqbal, Sha (AISTATS 2021), §3; docs/theory/update-rules.md#one-step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from maml_depth import _checks

Params = dict[str, Tensor]
InitScheme = Literal["gaussian", "balanced", "identity"]

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
}


def layer_groups(module: nn.Module) -> list[list[str]]:
    """Parameter names of each layer, layer 1 first.

    A layer is a sub-module that owns parameters directly (``recurse=False``), in
    registration order; its entry lists the full names of those parameters.
    """
    groups: list[list[str]] = []
    for prefix, sub in module.named_modules():
        own = [name for name, _ in sub.named_parameters(recurse=False)]
        if own:
            groups.append([f"{prefix}.{n}" if prefix else n for n in own])
    if not groups:
        raise _checks.InvalidArgumentError(f"{type(module).__name__} has no parameters to adapt")
    return groups


def adapted_names(module: nn.Module, adapt: _checks.AdaptSpec) -> tuple[str, ...]:
    """Names of the parameters of the adapted layers (1-based indices, or ``"all"``)."""
    groups = layer_groups(module)
    layers = _checks.resolve_adapt(adapt, len(groups))
    return tuple(name for j in layers for name in groups[j - 1])


def get_params(module: nn.Module) -> Params:
    """The module's parameters as a fresh dict of detached tensors (``requires_grad=False``)."""
    return {name: p.detach().clone() for name, p in module.named_parameters()}


class DeepLinear(nn.Module):
    """Deep linear network ``f(x) = W_L ⋯ W_1 x`` with ``W_j ∈ R^{d_j × d_{j−1}}``.

    Args:
        dims: widths ``(d_0, d_1, …, d_L)``; depth ``L = len(dims) − 1 ≥ 1``.
        init: ``"gaussian"`` (entries ``N(0, scale²/d_{j−1})``), ``"balanced"`` (the
            end-to-end map ``W = c·Q`` of a Gaussian draw split into ``L`` factors with
            ``W_{j+1}ᵀW_{j+1} = W_jW_jᵀ`` via its SVD) or ``"identity"`` (``W_j = scale·I``
            padded/cropped to shape, so the end-to-end map is ``scale^L`` times a partial
            identity).
        scale: see ``init`` (default 1).
        generator: explicit ``torch.Generator`` for the random schemes.

    References: docs/theory/update-rules.md#one-step (``W = A_j W_j B_j``).
    """

    def __init__(
        self,
        dims: Sequence[int],
        *,
        init: InitScheme = "gaussian",
        scale: float = 1.0,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.dims = _checks.dims("dims", dims)
        scale = _checks.finite_float("scale", scale)
        self.layers = nn.ModuleList(
            nn.Linear(self.dims[j - 1], self.dims[j], bias=False, dtype=dtype, device=device)
            for j in range(1, len(self.dims))
        )
        self.reset_parameters(init=init, scale=scale, generator=generator)

    @property
    def depth(self) -> int:
        """Number of layers ``L`` (``len(dims) − 1``)."""
        return len(self.dims) - 1

    @property
    def weight_names(self) -> tuple[str, ...]:
        """Parameter names of ``W_1, …, W_L`` (layer 1 first)."""
        return tuple(f"layers.{j}.weight" for j in range(self.depth))

    @property
    def weights(self) -> tuple[Tensor, ...]:
        """The live parameters ``(W_1, …, W_L)``."""
        return tuple(layer.weight for layer in self.layers)  # type: ignore[misc]

    @torch.no_grad()
    def reset_parameters(
        self,
        *,
        init: InitScheme = "gaussian",
        scale: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        """Re-initialise the weights in place: ``"gaussian"`` entries ``N(0, scale²/d_{j−1})``,
        ``"identity"`` ``scale·I`` (rectangular identity), or ``"balanced"`` layers with
        ``W_{j+1}ᵀW_{j+1} = W_jW_jᵀ`` (:func:`balanced_factors`); drawn with ``generator``.

        References: docs/theory/neighbours-ach.md#setting."""
        ws = self.weights
        like = ws[0]
        if init == "gaussian":
            for w in ws:
                w.copy_(
                    torch.randn(w.shape, generator=generator, dtype=like.dtype).to(like.device)
                    * (scale / math.sqrt(w.shape[1]))
                )
        elif init == "identity":
            for w in ws:
                w.copy_(scale * torch.eye(*w.shape, dtype=like.dtype, device=like.device))
        elif init == "balanced":
            for w, f in zip(ws, balanced_factors(self.dims, scale, generator, like.dtype),
                            strict=True):
                w.copy_(f.to(like.device))
        else:
            raise _checks.InvalidArgumentError(
                f"init must be 'gaussian', 'balanced' or 'identity', got {init!r}"
            )

    def forward(self, x: Tensor) -> Tensor:
        """The end-to-end map ``f(x) = W_L ⋯ W_1 x`` applied to the rows of ``x`` (shape
        ``(n, d_0)``).

        References: docs/theory/notation.md#network."""
        for layer in self.layers:
            x = layer(x)
        return x

    def end_to_end(self, params: Params | None = None) -> Tensor:
        """``W = W_L ⋯ W_1`` of shape ``(d_L, d_0)``, from ``params`` (default: own weights).

        Batched parameters (leading task dimensions) give a batch of maps.
        """
        ws = self.weights if params is None else tuple(params[n] for n in self.weight_names)
        out = ws[0]
        for w in ws[1:]:
            out = w @ out
        return out


def balanced_factors(
    dims: Sequence[int],
    scale: float,
    generator: torch.Generator | None,
    dtype: torch.dtype = torch.float64,
) -> list[Tensor]:
    """Balanced factors ``W_j`` (``W_{j+1}ᵀW_{j+1} = W_jW_jᵀ``) of a random end-to-end map.

    Draw ``W ~ N(0, scale²/d_0)`` of shape ``(d_L, d_0)``, take its SVD ``W = U S Vᵀ`` and
    set ``W_j = U_j S^{1/L} U_{j−1}ᵀ`` with ``U_0 = V``, ``U_L = U`` and random orthonormal
    frames in between (padded with zeros where a hidden width is below the rank).
    """
    dims = tuple(dims)
    L = len(dims) - 1
    W = torch.randn(dims[-1], dims[0], generator=generator, dtype=dtype) * (
        scale / math.sqrt(dims[0])
    )
    r = min(dims)
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    U, S, V = U[:, :r], S[:r], Vh[:r].T
    frames = [V]
    for j in range(1, L):
        q, _ = torch.linalg.qr(torch.randn(dims[j], r, generator=generator, dtype=dtype))
        frames.append(q[:, :r])
    frames.append(U)
    root = S.pow(1.0 / L)
    return [frames[j] @ torch.diag(root) @ frames[j - 1].T for j in range(1, L + 1)]


class MLP(nn.Module):
    """Multi-layer perceptron ``dims[0] → … → dims[-1]``, activation between layers.

    Args:
        dims: widths ``(d_0, …, d_L)``.
        activation: ``"relu"``, ``"tanh"``, ``"sigmoid"``, ``"gelu"``, ``"softplus"``,
            ``"identity"`` or a zero-argument callable returning a module.
        bias: whether each ``nn.Linear`` has a bias.
        generator: explicit ``torch.Generator`` for the (Kaiming-uniform) initialisation.
    """

    def __init__(
        self,
        dims: Sequence[int],
        activation: str | Callable[[], nn.Module] = "relu",
        *,
        bias: bool = True,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.dims = _checks.dims("dims", dims)
        if isinstance(activation, str):
            if activation not in _ACTIVATIONS:
                raise _checks.InvalidArgumentError(
                    f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
                )
            act_factory = _ACTIVATIONS[activation]
        else:
            act_factory = activation
        self.activation = activation if isinstance(activation, str) else "custom"
        mods: list[nn.Module] = []
        for j in range(1, len(self.dims)):
            mods.append(
                nn.Linear(self.dims[j - 1], self.dims[j], bias=bias, dtype=dtype, device=device)
            )
            if j < len(self.dims) - 1:
                mods.append(act_factory())
        self.net = nn.Sequential(*mods)
        with torch.no_grad():
            for m in self.net:
                if isinstance(m, nn.Linear):
                    bound = 1.0 / math.sqrt(m.in_features)
                    m.weight.copy_(_uniform(m.weight.shape, bound, generator, dtype))
                    if m.bias is not None:
                        m.bias.copy_(_uniform(m.bias.shape, bound, generator, dtype))

    @property
    def depth(self) -> int:
        """Number of layers ``L`` (``len(dims) − 1``)."""
        return len(self.dims) - 1

    def forward(self, x: Tensor) -> Tensor:
        """The network's output for inputs ``x`` of shape ``(n, d_0)``."""
        return self.net(x)


def _uniform(
    shape: torch.Size, bound: float, generator: torch.Generator | None, dtype: torch.dtype
) -> Tensor:
    return (torch.rand(shape, generator=generator, dtype=dtype) * 2 - 1) * bound
