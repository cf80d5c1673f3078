"""Task losses, rows are samples.

References: docs/theory/update-rules.md#one-step (``ℓ(W) = ‖WX − Y‖²_F / (2n)``).
"""

from __future__ import annotations

from torch import Tensor


def mse_loss(pred: Tensor, target: Tensor) -> Tensor:
    """``‖pred − target‖²_F / (2n)`` for ``pred, target`` of shape ``(n, m)``: the squared
    error summed over outputs, averaged over the n samples, halved.

    References: docs/theory/update-rules.md#one-step, ``ℓ(W) = ‖WX − Y‖²_F / (2n)``.
    """
    return 0.5 * (pred - target).pow(2).sum() / pred.shape[-2]
