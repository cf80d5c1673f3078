"""Monte Carlo estimates of the expected post-adaptation loss (the twins of theory/'s closed
forms, and the only answer where there is no closed form).

For tasks of a :class:`~maml_depth.numerics.tasks.LinearRegressionTasks` family, each
estimate averages, over ``num_tasks`` i.i.d. tasks with fresh support sets, the *exact*
population query loss ``½ tr((W' − W_t) Σ (W' − W_t)ᵀ) + ½ m σ²`` of the adapted map ``W'``
(the query expectation taken in closed form, so no query sampling noise is added). The
estimator is unbiased for the expected loss; its standard error is the sample standard
deviation over tasks divided by √T, and :meth:`MonteCarloEstimate.interval` gives a
normal-approximation confidence interval. Every result is labelled an *estimate*.

- :func:`monte_carlo_loss` — ``k`` steps ``W ← W − α L G R`` of a shallow (end-to-end) map,
  ``G = (WX − Y)Xᵀ/n`` (docs/theory/expected-loss.md#closed-form has the closed form for ``k =
  1``; none for ``k > 1``).
- :func:`monte_carlo_deep_loss` — a deep linear net ``W_L ⋯ W_1`` adapting any subset of its
  layers for ``k`` steps, each step the gradient of the support loss computed by autograd on
  the network's forward pass (no closed form except one adapted layer and ``k = 1``:
  :func:`maml_depth.theory.population_maml_loss`).

Both are vectorised over tasks (batched matmuls), processed in chunks of ``chunk_size``
tasks, and draw every random number from an explicit ``torch.Generator`` (``seed`` when
none is given), so results reproduce exactly.

Conventions: rows are samples (``X (T, n, d)``, ``Y (T, n, m)``); maps are ``(m, d)`` as in
docs/theory/.

References: docs/theory/update-rules.md#one-step, docs/theory/notation.md#task-family,
docs/theory/expected-loss.md#closed-form; Arnold, Iqbal, Sha (AISTATS 2021), §3.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from statistics import NormalDist
from typing import Any, NamedTuple

import torch
from torch import Tensor

from maml_depth import _checks
from maml_depth.errors import InvalidArgumentError, ShapeError
from maml_depth.numerics.networks import DeepLinear
from maml_depth.numerics.tasks import LinearRegressionTasks

__all__ = [
    "MonteCarloEstimate",
    "deep_linear_adapted_maps",
    "monte_carlo_deep_loss",
    "monte_carlo_loss",
    "preconditioned_adapted_maps",
]


class MonteCarloEstimate(NamedTuple):
    """A Monte Carlo *estimate*: ``(mean, stderr, num_tasks)``.

    ``mean`` is the average post-adaptation population loss over ``num_tasks`` i.i.d. tasks,
    ``stderr`` its standard error ``s / √T`` (``s`` the sample standard deviation, ddof 1).
    """

    mean: float
    stderr: float
    num_tasks: int

    @property
    def method(self) -> str:
        """``"Monte Carlo estimate"``: how the value was obtained (against a closed form's
        "exact")."""
        return "Monte Carlo estimate"

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Two-sided normal-approximation confidence interval at ``level``."""
        level = _checks.finite_float("level", level, positive=True)
        if level >= 1:
            raise InvalidArgumentError(f"level must be in (0, 1), got {level!r}")
        z = NormalDist().inv_cdf(0.5 + level / 2)
        return self.mean - z * self.stderr, self.mean + z * self.stderr

    def z_score(self, value: float) -> float:
        """``(value − mean) / stderr`` (±inf when the estimate has zero variance and differs)."""
        diff = float(value) - self.mean
        if self.stderr == 0:
            return 0.0 if diff == 0 else math.copysign(math.inf, diff)
        return diff / self.stderr

    def __str__(self) -> str:
        lo, hi = self.interval(0.95)
        return (f"{self.mean:.6g} ± {self.stderr:.2g} (Monte Carlo estimate over "
                f"{self.num_tasks} tasks; 95% CI [{lo:.6g}, {hi:.6g}])")


class _Accumulator:
    """Streaming mean and sum of squared deviations (Chan et al.'s parallel update)."""

    def __init__(self) -> None:
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, values: Tensor) -> None:
        v = values.detach().to(torch.float64).reshape(-1)
        k = int(v.numel())
        if k == 0:
            return
        if not bool(torch.isfinite(v).all()):
            raise FloatingPointError("Monte Carlo: a task's post-adaptation loss is not finite")
        mean_b = float(v.mean())
        m2_b = float(((v - mean_b) ** 2).sum())
        total = self.count + k
        delta = mean_b - self.mean
        self.mean += delta * k / total
        self.m2 += m2_b + delta**2 * self.count * k / total
        self.count = total

    def result(self) -> MonteCarloEstimate:
        var = self.m2 / (self.count - 1) if self.count > 1 else math.nan
        return MonteCarloEstimate(self.mean, math.sqrt(max(var, 0.0) / self.count), self.count)


def _generator(generator: torch.Generator | None, seed: int, device: torch.device
               ) -> torch.Generator:
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise InvalidArgumentError(
                f"generator must be a torch.Generator, got {type(generator).__name__}")
        return generator
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidArgumentError(f"seed must be an integer, got {seed!r}")
    return torch.Generator(device=device).manual_seed(seed)


def _matrix(name: str, x: Any, shape: tuple[int, int], tasks: LinearRegressionTasks
            ) -> Tensor:
    t = torch.as_tensor(x.detach() if isinstance(x, Tensor) else x)
    t = t.to(dtype=tasks.dtype, device=tasks.W_bar.device)
    _checks.shape(name, tuple(t.shape), shape)
    if not bool(torch.isfinite(t).all()):
        raise InvalidArgumentError(f"{name} has non-finite entries")
    return t


def _run(tasks: LinearRegressionTasks, num_tasks: int, chunk_size: int,
         generator: torch.Generator, adapted_maps: Callable[[Tensor, Tensor], Tensor]
         ) -> MonteCarloEstimate:
    if not isinstance(tasks, LinearRegressionTasks):
        raise InvalidArgumentError(
            f"tasks must be a LinearRegressionTasks family, got {type(tasks).__name__}")
    num_tasks = _checks.positive_int("num_tasks", num_tasks)
    if num_tasks < 2:
        raise InvalidArgumentError(f"num_tasks must be ≥ 2 for a standard error, got {num_tasks}")
    chunk_size = _checks.positive_int("chunk_size", chunk_size)
    family = tasks if tasks.n_query is None else dataclasses.replace(tasks, n_query=None)
    acc = _Accumulator()
    done = 0
    while done < num_tasks:
        T = min(chunk_size, num_tasks - done)
        batch = family.sample(T, generator)
        W_new = adapted_maps(batch.X, batch.Y)
        acc.add(family.population_loss(W_new, batch.W_t))
        done += T
    return acc.result()


# ---------------------------------------------------------------------------------------
# shallow: W ← W − α L G R, k steps
# ---------------------------------------------------------------------------------------
def preconditioned_adapted_maps(W: Tensor, X: Tensor, Y: Tensor, *, alpha: float,
                                L: Tensor | None = None, R: Tensor | None = None,
                                steps: int = 1) -> Tensor:
    """``k`` steps ``W ← W − α L G R``, ``G = (WX − Y)Xᵀ/n`` (theory's convention; here
    rows are samples, so ``G = (X Wᵀ − Y)ᵀ X / n``), for a batch of tasks.

    Args: ``W (m, d)``; ``X (T, n, d)``; ``Y (T, n, m)``; ``L (m, m)``; ``R (d, d)``.
    Returns: the adapted maps ``(T, m, d)``.

    References: docs/theory/update-rules.md#one-step (Meta-Curvature/KFO update), §3.
    """
    n = X.shape[-2]
    Wk = W.expand(X.shape[0], *W.shape)
    for _ in range(steps):
        G = (X @ Wk.mT - Y).mT @ X / n
        if L is not None:
            G = L @ G
        if R is not None:
            G = G @ R
        Wk = Wk - alpha * G
    return Wk


def monte_carlo_loss(
    tasks: LinearRegressionTasks,
    W: Tensor | Any,
    *,
    alpha: float,
    L: Tensor | Any | None = None,
    R: Tensor | Any | None = None,
    steps: int = 1,
    num_tasks: int = 100_000,
    chunk_size: int = 16_384,
    generator: torch.Generator | None = None,
    seed: int = 0,
) -> MonteCarloEstimate:
    """Monte Carlo estimate of ``E ℒ`` after ``steps`` inner steps ``W ← W − α L G R``.

    For ``steps = 1`` it estimates what :func:`maml_depth.theory.expected_loss` computes in
    closed form (docs/theory/expected-loss.md#closed-form); for ``steps > 1`` there is no closed
    form and this estimate is
    the reference.

    Args:
        tasks: the task family (Σ, W̄, Λ, σ, n); its ``n_query`` is ignored (the query loss
            is the exact population loss).
        W: the initial map ``(m, d)``.
        alpha: inner step size α. L: ``(m, m)`` or None (identity). R: ``(d, d)`` or None.
        steps: inner steps k ≥ 1 (the same support set each step).
        num_tasks: tasks T ≥ 2. chunk_size: tasks per vectorised batch.
        generator: explicit ``torch.Generator`` (on the family's device); default a fresh
            one seeded with ``seed``.

    Returns:
        :class:`MonteCarloEstimate` ``(mean, stderr, num_tasks)`` — an estimate.

    References: docs/theory/expected-loss.md#closed-form; Arnold, Iqbal, Sha (AISTATS 2021), §3.
    """
    if not isinstance(tasks, LinearRegressionTasks):
        raise InvalidArgumentError(
            f"tasks must be a LinearRegressionTasks family, got {type(tasks).__name__}")
    m, d = tasks.m, tasks.d
    alpha = _checks.finite_float("alpha", alpha)
    steps = _checks.positive_int("steps", steps)
    W_ = _matrix("W", W, (m, d), tasks)
    L_ = None if L is None else _matrix("L", L, (m, m), tasks)
    R_ = None if R is None else _matrix("R", R, (d, d), tasks)
    gen = _generator(generator, seed, tasks.W_bar.device)

    def maps(X: Tensor, Y: Tensor) -> Tensor:
        return preconditioned_adapted_maps(W_, X, Y, alpha=alpha, L=L_, R=R_, steps=steps)

    with torch.no_grad():
        return _run(tasks, num_tasks, chunk_size, gen, maps)


# ---------------------------------------------------------------------------------------
# deep linear networks: any adapted subset, k steps, gradients by autograd
# ---------------------------------------------------------------------------------------
def _weights(weights: DeepLinear | Sequence[Any], tasks: LinearRegressionTasks | None
             ) -> list[Tensor]:
    if isinstance(weights, DeepLinear):
        ws = [w.detach() for w in weights.weights]
    elif isinstance(weights, Sequence) and not isinstance(weights, (str, bytes)):
        ws = [torch.as_tensor(w.detach() if isinstance(w, Tensor) else w) for w in weights]
    else:
        raise InvalidArgumentError(
            "weights must be a DeepLinear or a sequence [W_1, ..., W_L] (layer 1 first), got "
            f"{type(weights).__name__}")
    if not ws:
        raise InvalidArgumentError("weights is empty: give at least one layer")
    if tasks is not None:
        ws = [w.to(dtype=tasks.dtype, device=tasks.W_bar.device) for w in ws]
    for k, w in enumerate(ws):
        if w.ndim != 2:
            raise ShapeError(f"weights[{k}] (W_{k + 1}) has shape {tuple(w.shape)}, "
                             "expected (d_j, d_{j-1})")
        if k and w.shape[1] != ws[k - 1].shape[0]:
            raise ShapeError(f"weights[{k}] (W_{k + 1}) has {w.shape[1]} columns, W_{k} has "
                             f"{ws[k - 1].shape[0]} rows")
        if not bool(torch.isfinite(w).all()):
            raise InvalidArgumentError(f"weights[{k}] (W_{k + 1}) has non-finite entries")
    return ws


def deep_linear_adapted_maps(weights: DeepLinear | Sequence[Any], X: Tensor, Y: Tensor, *,
                             alpha: float, adapt: _checks.AdaptSpec, steps: int = 1) -> Tensor:
    """End-to-end maps ``(T, d_L, d_0)`` of a deep linear net after ``steps`` inner steps on
    the layers ``adapt`` (1-based; all adapted layers from the same point at each step), for
    a batch of tasks ``X (T, n, d_0)``, ``Y (T, n, d_L)``.

    Each task gets its own copy of the adapted layers; the gradient of the summed support
    losses ``Σ_t ‖X_t W_1ᵀ ⋯ W_Lᵀ − Y_t‖²/(2n)`` with respect to these copies is, task by
    task, that task's layer gradient — computed by autograd on the network's forward pass.

    References: docs/theory/update-rules.md#one-step.
    """
    ws = _weights(weights, None)
    ws = [w.to(dtype=X.dtype, device=X.device) for w in ws]
    layers = _checks.resolve_adapt(adapt, len(ws))
    steps = _checks.positive_int("steps", steps)
    alpha = _checks.finite_float("alpha", alpha)
    T, n = X.shape[0], X.shape[-2]
    cur: list[Tensor] = [w.expand(T, *w.shape).clone() if (k + 1) in layers else w
                         for k, w in enumerate(ws)]
    for _ in range(steps):
        with torch.enable_grad():
            leaves = [cur[j - 1].detach().requires_grad_(True) for j in layers]
            params = list(cur)
            for j, leaf in zip(layers, leaves, strict=True):
                params[j - 1] = leaf
            h = X
            for w in params:
                h = h @ w.mT
            loss = 0.5 * (h - Y).pow(2).sum() / n
            grads = torch.autograd.grad(loss, leaves)
        for j, leaf, g in zip(layers, leaves, grads, strict=True):
            cur[j - 1] = leaf.detach() - alpha * g
    out = cur[0]
    for w in cur[1:]:
        out = w @ out
    return out.expand(T, *out.shape[-2:]) if out.ndim == 2 else out


def monte_carlo_deep_loss(
    tasks: LinearRegressionTasks,
    weights: DeepLinear | Sequence[Any],
    *,
    alpha: float,
    adapt: _checks.AdaptSpec,
    steps: int = 1,
    num_tasks: int = 100_000,
    chunk_size: int = 16_384,
    generator: torch.Generator | None = None,
    seed: int = 0,
) -> MonteCarloEstimate:
    """Monte Carlo estimate of the expected post-adaptation loss of a deep linear network.

    The network ``W_L ⋯ W_1`` (``weights`` = ``[W_1, …, W_L]`` or a ``DeepLinear``) adapts the
    layers ``adapt`` (1-based, ``"all"``, ``"top"``) for ``steps`` inner steps of size α on
    each task's support set (:func:`deep_linear_adapted_maps`); the loss is the exact
    population query loss of the adapted end-to-end map. With one adapted layer and one step
    the closed form is :func:`maml_depth.theory.population_maml_loss`; otherwise (several
    layers, ``k > 1``) this estimate is the only reference.

    Returns:
        :class:`MonteCarloEstimate` ``(mean, stderr, num_tasks)`` — an estimate.

    References: docs/theory/update-rules.md#one-step, docs/theory/expected-loss.md#closed-form;
    Arnold, Iqbal, Sha (AISTATS 2021), §3.
    """
    if not isinstance(tasks, LinearRegressionTasks):
        raise InvalidArgumentError(
            f"tasks must be a LinearRegressionTasks family, got {type(tasks).__name__}")
    ws = _weights(weights, tasks)
    if ws[0].shape[1] != tasks.d or ws[-1].shape[0] != tasks.m:
        raise ShapeError(
            f"the network maps {ws[0].shape[1]} inputs to {ws[-1].shape[0]} outputs, the tasks "
            f"have d = {tasks.d} inputs and m = {tasks.m} outputs")
    _checks.resolve_adapt(adapt, len(ws))
    alpha = _checks.finite_float("alpha", alpha)
    steps = _checks.positive_int("steps", steps)
    gen = _generator(generator, seed, tasks.W_bar.device)

    def maps(X: Tensor, Y: Tensor) -> Tensor:
        return deep_linear_adapted_maps(ws, X, Y, alpha=alpha, adapt=adapt, steps=steps)

    with torch.no_grad():
        return _run(tasks, num_tasks, chunk_size, gen, maps)
