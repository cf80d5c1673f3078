"""The Gaussian linear-regression task family of docs/theory/notation.md#task-family.

A task is ``W_t = W̄ + Z`` with the rows of ``Z`` i.i.d. ``N(0, Λ)``; inputs ``x ~ N(0, Σ)``;
targets ``y = W_t x + ε`` with ``ε ~ N(0, σ² I_m)``. Batches follow torch's convention
(rows are samples): inputs ``(T, n, d)``, targets ``(T, n, m)``, task maps ``(T, m, d)``.

References: docs/theory/notation.md#task-family; Arnold, Iqbal, Sha (AISTATS 2021), §3 (linear
regression).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from maml_depth import _checks
from maml_depth.errors import InvalidArgumentError, ShapeError
from maml_depth.numerics.losses import mse_loss


@dataclass(frozen=True)
class TaskBatch:
    """``T`` tasks stacked: support ``(X, Y)``, query ``(Xq, Yq)`` (``None`` when the query
    loss is the population loss) and the task maps ``W_t``."""

    X: Tensor
    Y: Tensor
    Xq: Tensor | None
    Yq: Tensor | None
    W_t: Tensor

    @property
    def num_tasks(self) -> int:
        """Number of tasks ``T`` in the batch (leading dimension of ``X``)."""
        return int(self.X.shape[0])


def _sym_sqrt(M: Tensor) -> Tensor:
    """Symmetric PSD square root (clips round-off negatives)."""
    evals, evecs = torch.linalg.eigh(0.5 * (M + M.mT))
    return (evecs * evals.clamp_min(0).sqrt()) @ evecs.mT


def random_rotation(d: int, generator: torch.Generator, dtype: torch.dtype = torch.float64
                    ) -> Tensor:
    """A Haar-random ``d × d`` orthogonal matrix."""
    q, r = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=dtype))
    return q * torch.sign(torch.diagonal(r))


@dataclass(frozen=True)
class LinearRegressionTasks:
    """Gaussian linear-regression tasks (docs/theory/notation.md#task-family).

    Args:
        Sigma: input covariance Σ, ``(d, d)`` symmetric positive definite.
        W_bar: task prior mean W̄, ``(m, d)``.
        Lam: row covariance Λ of ``Z = W_t − W̄``, ``(d, d)`` symmetric PSD (any rank).
        sigma: noise standard deviation σ ≥ 0.
        n_support: support samples per task, n ≥ 1.
        n_query: query samples per task, or ``None`` for the exact population query loss
            ``½ tr((W' − W_t) Σ (W' − W_t)ᵀ) + ½ m σ²``.
    """

    Sigma: Tensor
    W_bar: Tensor
    Lam: Tensor
    sigma: float
    n_support: int
    n_query: int | None = None

    def __post_init__(self) -> None:
        for name in ("Sigma", "W_bar", "Lam"):
            v = getattr(self, name)
            if not isinstance(v, Tensor):
                raise InvalidArgumentError(f"{name} must be a torch.Tensor, got {type(v).__name__}")
            if not torch.isfinite(v).all():
                raise InvalidArgumentError(f"{name} has non-finite entries")
        if self.W_bar.ndim != 2:
            raise ShapeError(f"W_bar must be (m, d), got shape {tuple(self.W_bar.shape)}")
        d = self.W_bar.shape[1]
        _checks.shape("Sigma", self.Sigma.shape, (d, d))
        _checks.shape("Lam", self.Lam.shape, (d, d))
        if self.Sigma.dtype != self.W_bar.dtype or self.Lam.dtype != self.W_bar.dtype:
            raise InvalidArgumentError("Sigma, W_bar and Lam must share one dtype")
        if not torch.allclose(self.Sigma, self.Sigma.mT, atol=1e-8 * float(self.Sigma.abs().max())):
            raise InvalidArgumentError("Sigma must be symmetric")
        if not torch.allclose(self.Lam, self.Lam.mT, atol=1e-8 * (1 + float(self.Lam.abs().max()))):
            raise InvalidArgumentError("Lam must be symmetric")
        if float(torch.linalg.eigvalsh(self.Sigma).min()) <= 0:
            raise InvalidArgumentError("Sigma must be positive definite (an eigenvalue is ≤ 0)")
        lam_min = float(torch.linalg.eigvalsh(self.Lam).min())
        if lam_min < -1e-10 * (1 + float(self.Lam.abs().max())):
            raise InvalidArgumentError(
                f"Lam must be positive semi-definite (eigenvalue {lam_min:.3g})"
            )
        object.__setattr__(self, "sigma", _checks.finite_float("sigma", self.sigma, nonneg=True))
        object.__setattr__(self, "n_support", _checks.positive_int("n_support", self.n_support))
        if self.n_query is not None:
            object.__setattr__(self, "n_query", _checks.positive_int("n_query", self.n_query))

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def isotropic(
        cls,
        d: int,
        m: int = 1,
        *,
        tau: float = 1.0,
        sigma: float = 0.0,
        n_support: int = 10,
        n_query: int | None = None,
        W_bar: Tensor | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> LinearRegressionTasks:
        """Σ = I, Λ = τ² I, W̄ = 0 unless given."""
        d, m = _checks.positive_int("d", d), _checks.positive_int("m", m)
        eye = torch.eye(d, dtype=dtype)
        wb = torch.zeros(m, d, dtype=dtype) if W_bar is None else W_bar.to(dtype)
        return cls(eye, wb, tau**2 * eye, sigma, n_support, n_query)

    @classmethod
    def from_spectrum(
        cls,
        sigma_eigs: Sequence[float],
        lam_eigs: Sequence[float] | None = None,
        *,
        m: int = 1,
        sigma: float = 0.0,
        n_support: int = 10,
        n_query: int | None = None,
        rotate: bool = True,
        W_bar: Tensor | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> LinearRegressionTasks:
        """Σ = Q diag(sigma_eigs) Qᵀ, Λ = R diag(lam_eigs) Rᵀ with Haar rotations Q, R
        (identity when ``rotate=False``); ``lam_eigs`` defaults to ones; zeros give a
        low-rank Λ. W̄ defaults to zero."""
        se = torch.as_tensor(list(sigma_eigs), dtype=dtype)
        d = se.numel()
        le = torch.ones(d, dtype=dtype) if lam_eigs is None else torch.as_tensor(
            list(lam_eigs), dtype=dtype)
        if le.numel() != d:
            raise ShapeError(f"lam_eigs has {le.numel()} entries, sigma_eigs has {d}")
        if rotate:
            if generator is None:
                raise InvalidArgumentError("from_spectrum(rotate=True) needs a torch.Generator")
            Q, R = random_rotation(d, generator, dtype), random_rotation(d, generator, dtype)
        else:
            Q = R = torch.eye(d, dtype=dtype)
        Sigma = (Q * se) @ Q.T
        Lam = (R * le) @ R.T
        wb = torch.zeros(m, d, dtype=dtype) if W_bar is None else W_bar.to(dtype)
        return cls(0.5 * (Sigma + Sigma.T), wb, 0.5 * (Lam + Lam.T), sigma, n_support, n_query)

    # -- properties -----------------------------------------------------------------------
    @property
    def d(self) -> int:
        """Input dimension ``d`` (columns of W̄)."""
        return int(self.W_bar.shape[1])

    @property
    def m(self) -> int:
        """Output dimension ``m`` (rows of W̄)."""
        return int(self.W_bar.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the family's tensors."""
        return self.W_bar.dtype

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
           ) -> LinearRegressionTasks:
        """The same family with its matrices moved/cast."""
        def cv(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype)
        return LinearRegressionTasks(cv(self.Sigma), cv(self.W_bar), cv(self.Lam), self.sigma,
                                     self.n_support, self.n_query)

    # -- sampling -------------------------------------------------------------------------
    def sample(self, num_tasks: int, generator: torch.Generator) -> TaskBatch:
        """Draw ``num_tasks`` tasks with their support (and query) sets.

        The generator must live on the same device as the family's matrices.
        """
        T = _checks.positive_int("num_tasks", num_tasks)
        dev, dt = self.W_bar.device, self.dtype
        m, d, n = self.m, self.d, self.n_support
        lam_half = _sym_sqrt(self.Lam)
        sig_half = _sym_sqrt(self.Sigma)
        Z = torch.randn(T, m, d, generator=generator, dtype=dt, device=dev) @ lam_half
        W_t = self.W_bar + Z

        def draw(k: int) -> tuple[Tensor, Tensor]:
            X = torch.randn(T, k, d, generator=generator, dtype=dt, device=dev) @ sig_half
            eps = torch.randn(T, k, m, generator=generator, dtype=dt, device=dev) * self.sigma
            return X, X @ W_t.mT + eps

        X, Y = draw(n)
        Xq, Yq = draw(self.n_query) if self.n_query is not None else (None, None)
        return TaskBatch(X, Y, Xq, Yq, W_t)

    # -- losses ---------------------------------------------------------------------------
    @property
    def loss_fn(self) -> Callable[[Tensor, Tensor], Tensor]:
        """Support loss ``‖pred − Y‖²/(2n)``."""
        return mse_loss

    def query_loss(
        self, model: nn.Module, params: dict[str, Tensor], Xq: Tensor | None, Yq: Tensor | None,
        W_t: Tensor,
    ) -> Tensor:
        """Post-adaptation loss of one task: on the query set when there is one, else the
        exact population loss of the model's end-to-end map (deep linear models only)."""
        if Xq is not None and Yq is not None:
            return mse_loss(functional_call(model, params, (Xq,)), Yq)
        end_to_end = getattr(model, "end_to_end", None)
        if end_to_end is None:
            raise InvalidArgumentError(
                f"n_query=None (population query loss) needs a linear model with end_to_end(); "
                f"{type(model).__name__} has none: set n_query to a number of query samples"
            )
        return self.population_loss(end_to_end(params), W_t)

    def population_loss(self, W: Tensor, W_t: Tensor) -> Tensor:
        """Exact query loss ``½ tr((W − W_t) Σ (W − W_t)ᵀ) + ½ m σ²`` (batched over leading
        dimensions of ``W`` / ``W_t``, shapes ``(…, m, d)``)."""
        D = W - W_t
        return 0.5 * ((D @ self.Sigma) * D).sum(dim=(-2, -1)) + 0.5 * self.m * self.sigma**2
