"""Small models for the nonlinear task families, with optional extra linear layers.

"+LinNet" (Arnold et al. 2021, §3) adds linear layers (no nonlinearity between them) before
the output layer: the network computes the same class of functions (same capacity) but is
deeper, which changes how MAML's inner step moves the function
(docs/theory/update-rules.md#one-step: the layers
above an adapted one precondition its gradient).

- :class:`LinNetMLP` — ``dims[0] → … → dims[-1]`` with an activation after every hidden
  layer, then ``extra_linear`` linear ``h × h`` layers (``h = dims[-2]``), then the output
  layer. ``extra_linear = 0`` is a plain MLP (e.g. the sine-regression MLP 1-40-40-1).
- :class:`ConvNet` — for 8 × 8 single-channel images given as rows of 64 pixels:
  ``[conv 3×3 (padding 1) → ReLU → max-pool 2]`` per entry of ``channels``, flatten, then
  ``extra_linear`` linear layers and a linear classifier. Conv kernels
  ``(out, in, kh, kw)`` are what Meta-Curvature's and KFO's kernel forms act on.

Both are ordinary ``nn.Module``s evaluated with ``torch.func.functional_call`` and
vmappable over tasks; layers are numbered 1 (input) … L (output) by
:func:`~maml_depth.numerics.networks.layer_groups`. Extra linear layers are initialised
orthogonal (they preserve norms at initialisation); the others Kaiming-uniform
(``U[−1/√fan_in, 1/√fan_in]``), all from an explicit ``torch.Generator``.

References: Arnold, Iqbal, Sha (AISTATS 2021), §3 ("LogR+LinNet", "Deep" linear models), §5
(4-layer CNNs); Finn et al. (2017), §5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from maml_depth import _checks
from maml_depth.numerics.networks import _ACTIVATIONS

__all__ = ["ConvNet", "LinNetMLP"]


def _uniform_(t: Tensor, bound: float, generator: torch.Generator | None) -> None:
    with torch.no_grad():
        u = torch.rand(t.shape, generator=generator, dtype=t.dtype)
        t.copy_(((u * 2 - 1) * bound).to(t.device))


def _orthogonal_(t: Tensor, generator: torch.Generator | None) -> None:
    with torch.no_grad():
        q, r = torch.linalg.qr(torch.randn(t.shape[0], t.shape[1], generator=generator,
                                           dtype=t.dtype))
        t.copy_((q * torch.sign(torch.diagonal(r))).to(t.device))


def _kaiming_(m: nn.Linear | nn.Conv2d, generator: torch.Generator | None) -> None:
    w = m.weight
    fan_in = math.prod(w.shape[1:])
    bound = 1.0 / math.sqrt(fan_in)
    _uniform_(w, bound, generator)
    if m.bias is not None:
        _uniform_(m.bias, bound, generator)


class LinNetMLP(nn.Module):
    """MLP with ``extra_linear`` linear layers inserted before the output layer.

    ``f(x) = W_out (L_k ⋯ L_1) σ(W_{L−1} ⋯ σ(W_1 x + b_1) ⋯ + b_{L−1}) + b_out``; the
    ``L_i ∈ R^{h×h}`` (with biases when ``bias``) add depth but no capacity.

    Args:
        dims: widths ``(d_0, …, d_L)`` of the base MLP (``len ≥ 3`` when extra_linear > 0).
        activation: name from :class:`~maml_depth.numerics.networks.MLP`'s list.
        extra_linear: number of extra linear layers k ≥ 0.
        bias: biases on every layer.

    References: Arnold et al. (2021), §3.
    """

    def __init__(
        self,
        dims: Sequence[int],
        activation: str = "relu",
        *,
        extra_linear: int = 0,
        bias: bool = True,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.dims = _checks.dims("dims", dims)
        if activation not in _ACTIVATIONS:
            raise _checks.InvalidArgumentError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if isinstance(extra_linear, bool) or not isinstance(extra_linear, int) or extra_linear < 0:
            raise _checks.InvalidArgumentError(
                f"extra_linear must be an integer ≥ 0, got {extra_linear!r}")
        if extra_linear and len(self.dims) < 3:
            raise _checks.InvalidArgumentError(
                f"extra_linear needs a hidden layer: dims {self.dims} has none")
        self.extra_linear = extra_linear
        kw: dict[str, Any] = dict(dtype=dtype, device=device)
        mods: list[nn.Module] = []
        for j in range(1, len(self.dims) - 1):
            lin = nn.Linear(self.dims[j - 1], self.dims[j], bias=bias, **kw)
            _kaiming_(lin, generator)
            mods += [lin, _ACTIVATIONS[activation]()]
        h = self.dims[-2]
        for _ in range(extra_linear):
            lin = nn.Linear(h, h, bias=bias, **kw)
            _orthogonal_(lin.weight, generator)
            if bias:
                nn.init.zeros_(lin.bias)
            mods.append(lin)
        out = nn.Linear(h, self.dims[-1], bias=bias, **kw)
        _kaiming_(out, generator)
        mods.append(out)
        self.net = nn.Sequential(*mods)

    @property
    def depth(self) -> int:
        """Number of layers with parameters (base layers plus extra linear ones)."""
        return len(self.dims) - 1 + self.extra_linear

    def forward(self, x: Tensor) -> Tensor:
        """The network's output ``f(x)`` for inputs ``x`` of shape ``(n, d)``."""
        return self.net(x)


class ConvNet(nn.Module):
    """Small CNN for ``image × image`` single-channel inputs given as rows of pixels.

    ``[conv 3×3 → ReLU → max-pool 2] × len(channels) → flatten → extra_linear × Linear(h, h)
    → Linear(h, n_classes)`` with ``h = channels[-1] · (image / 2^len(channels))²``.

    Args:
        n_classes: outputs (N for N-way episodes).
        channels: output channels of the conv blocks.
        image: side of the square input (8 for the digits); inputs are ``(n, image²)``.
        extra_linear: linear layers (no nonlinearity) before the classifier ("+LinNet").

    References: Finn et al. (2017), §5.2 (4-block CNN); Arnold et al. (2021), §5.
    """

    def __init__(
        self,
        n_classes: int = 5,
        channels: Sequence[int] = (16, 16),
        *,
        image: int = 8,
        extra_linear: int = 0,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        n_classes = _checks.positive_int("n_classes", n_classes)
        chans = _checks.dims("channels", tuple(channels), min_len=1)
        image = _checks.positive_int("image", image)
        if image % (2 ** len(chans)):
            raise _checks.InvalidArgumentError(
                f"image side {image} is not divisible by 2^{len(chans)} (one max-pool per "
                f"conv block); use fewer channels entries")
        if isinstance(extra_linear, bool) or not isinstance(extra_linear, int) or extra_linear < 0:
            raise _checks.InvalidArgumentError(
                f"extra_linear must be an integer ≥ 0, got {extra_linear!r}")
        kw: dict[str, Any] = dict(dtype=dtype, device=device)
        self.image = image
        self.extra_linear = extra_linear
        convs = []
        c_in = 1
        for c in chans:
            conv = nn.Conv2d(c_in, c, 3, padding=1, **kw)
            _kaiming_(conv, generator)
            convs.append(conv)
            c_in = c
        self.convs = nn.ModuleList(convs)
        side = image // 2 ** len(chans)
        h = chans[-1] * side * side
        lins = []
        for _ in range(extra_linear):
            lin = nn.Linear(h, h, **kw)
            _orthogonal_(lin.weight, generator)
            nn.init.zeros_(lin.bias)
            lins.append(lin)
        self.linnet = nn.ModuleList(lins)
        self.head = nn.Linear(h, n_classes, **kw)
        _kaiming_(self.head, generator)
        self.dims = (image * image, n_classes)

    @property
    def depth(self) -> int:
        """Number of weight layers: the convolutions, the extra linear layers and the
        classifier."""
        return len(self.convs) + self.extra_linear + 1

    def forward(self, x: Tensor) -> Tensor:
        """Logits for ``x`` of shape ``(n, image²)``: each conv block is conv → ReLU → 2×2
        max-pool, then the extra linear layers (no activation) and the classifier."""
        n = x.shape[0]
        h = x.reshape(n, 1, self.image, self.image)
        for conv in self.convs:
            h = torch.nn.functional.max_pool2d(torch.relu(conv(h)), 2)
        h = h.reshape(n, -1)
        for lin in self.linnet:
            h = lin(h)
        return self.head(h)
