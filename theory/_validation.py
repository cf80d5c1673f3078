"""Argument checks and small backend helpers shared by the theory/ modules (one place:
expected_loss.py, preconditioners.py, population.py and exact_expectation.py import them
from here). Every check raises a :mod:`maml_depth.errors` type naming the field.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from maml_depth import _checks
from maml_depth.errors import InvalidArgumentError, ShapeError

ArrayLike = Any  # numpy array, torch tensor, nested sequence or scalar


def _np_T(a: np.ndarray) -> np.ndarray:
    return np.swapaxes(a, -1, -2)


def _np_tr(a: np.ndarray) -> np.ndarray:
    return np.trace(a, axis1=-2, axis2=-1)


def _torch_T(a: Tensor) -> Tensor:
    return a.transpose(-1, -2)


def _torch_tr(a: Tensor) -> Tensor:
    return torch.diagonal(a, dim1=-2, dim2=-1).sum(-1)


# ---------------------------------------------------------------------------------------
# validation shared with preconditioners.py and population.py
# ---------------------------------------------------------------------------------------
def _is_torch(*xs: Any) -> bool:
    return any(isinstance(x, Tensor) for x in xs)


def _as_array(name: str, x: ArrayLike, like: Tensor | None) -> Any:
    """``x`` as a float64 numpy array, or (when ``like`` is a tensor) a tensor of its dtype."""
    if like is not None:
        if isinstance(x, Tensor):
            return x.to(device=like.device, dtype=like.dtype)
        try:
            return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=like.dtype,
                                   device=like.device)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"{name} must be a real array, got {x!r}") from None
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name} must be a real array, got {x!r}") from None


def _finite(name: str, x: Any) -> None:
    ok = bool(torch.isfinite(x).all()) if isinstance(x, Tensor) else bool(np.isfinite(x).all())
    if not ok:
        raise InvalidArgumentError(f"{name} has non-finite entries (NaN or inf)")


def _trailing(name: str, x: Any, expected: tuple[int | None, int | None], what: str) -> None:
    if x.ndim < 2:
        raise ShapeError(f"{name} has shape {tuple(x.shape)}, expected {what}")
    _checks.shape(name, tuple(x.shape[-2:]), expected)


def _eigvalsh(x: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        return torch.linalg.eigvalsh(x.detach().to(torch.float64).cpu()).numpy()
    return np.linalg.eigvalsh(x)


def _check_symmetric(name: str, x: Any) -> None:
    xt = x.detach().to(torch.float64).cpu().numpy() if isinstance(x, Tensor) else x
    asym = float(np.abs(xt - _np_T(xt)).max()) if xt.size else 0.0
    scale = float(np.abs(xt).max()) if xt.size else 0.0
    if asym > 1e-8 * max(scale, 1e-300):
        raise InvalidArgumentError(
            f"{name} must be symmetric (max |{name} − {name}ᵀ| = {asym:.3g})")


def _check_spd(name: str, x: Any) -> None:
    """Symmetric positive definite (the input covariance Σ)."""
    _check_symmetric(name, x)
    ev = _eigvalsh(x)
    if not (ev > 0).all():
        raise InvalidArgumentError(
            f"{name} must be symmetric positive definite, smallest eigenvalue {ev.min():.3g}")


def _check_psd(name: str, x: Any) -> None:
    """Symmetric positive semi-definite, up to round-off (a task covariance, any rank)."""
    _check_symmetric(name, x)
    ev = _eigvalsh(x)
    scale = max(float(np.abs(ev).max()) if ev.size else 0.0, 1e-300)
    if ev.size and ev.min() < -1e-10 * max(scale, 1.0):
        raise InvalidArgumentError(
            f"{name} must be positive semi-definite, smallest eigenvalue {ev.min():.3g}")


def _check_alpha(alpha: Any) -> Any:
    if isinstance(alpha, Tensor):
        _finite("alpha", alpha)
        return alpha
    if isinstance(alpha, np.ndarray) and alpha.ndim > 0:
        arr = np.asarray(alpha, dtype=np.float64)
        _finite("alpha", arr)
        return arr
    return _checks.finite_float("alpha", alpha)
