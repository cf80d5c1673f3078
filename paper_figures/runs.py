"""Meta-training runs shared by the figures, measured on fresh tasks.

Every measured number in the figures comes from here: a network meta-trained with
:func:`maml_depth.numerics.meta_train` on sampled tasks, then adapted *for real* (autograd,
:func:`maml_depth.numerics.evaluate_losses`) on fresh tasks that training never saw — never
by evaluating theory/ on its weights. Along the way the run is evaluated at checkpoints on a
fixed set of fresh tasks (the same tasks at every checkpoint and for every model, so curves
are smooth and comparisons paired), and, on request, its parameters are kept.

Runs are memoised in-process (:func:`linear_run`), so figures built in one command share
them: the shallow and the deep run of the default linear setting serve figures 2–5.

Seeds: the task family is fixed by ``family_seed`` (so theory is one number), the seed of a
run fixes its initialisation and task stream; evaluation tasks come from a separate seed.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from maml_depth.common import stats
from maml_depth.common.settings import B_L, DEPTH_HELPS, LinearSetting
from maml_depth.errors import InvalidArgumentError
from maml_depth.numerics import (
    DeepLinear,
    InnerConfig,
    LinearRegressionTasks,
    OuterConfig,
    Params,
    evaluate_losses,
    meta_train,
)
from maml_depth.paper_figures.budget import FigureBudget

__all__ = [
    "EVAL_SEED",
    "KINDS",
    "LINEAR",
    "Run",
    "bottom_layer_series",
    "interval_arrays",
    "linear_run",
    "linear_runs",
    "log_interval_arrays",
    "outer_config",
    "snapshot_arrays",
    "train_and_measure",
]

#: the linear-regression setting of docs/theory/expected-loss.md#optimal-preconditioner shared
# with claims 3–4 (d = 4, n = 10,
#: σ = 0.5, α = 0.1, depth 3, hidden 2d, anisotropic rotated Σ and Λ, W̄ in range Λ)
LINEAR = DEPTH_HELPS
#: seed of the fresh evaluation tasks (never a training seed)
EVAL_SEED = 9_000_017
#: seed of the task family (Σ, Λ, W̄) of every linear figure
FAMILY_SEED = 0

#: run kinds of :func:`linear_run`: model and inner loop
KINDS: dict[str, str] = {
    "shallow": "one linear layer W (d → 1), MAML (all = its only layer adapted)",
    "deep-top": "deep linear net (hidden 2d), MAML adapting the top layer (S = {L})",
    "deep-all": "deep linear net (hidden 2d), MAML adapting all layers",
    "meta-sgd": "one linear layer + Meta-SGD (learned per-entry steps)",
    "meta-curvature": "one linear layer + Meta-Curvature (learned M_o, M_i)",
    "kfo": "one linear layer + KFO (learned LᵀL, RᵀR)",
}


#: outer learning-rate multipliers (Adam): Meta-SGD's per-entry steps must travel from 1 to
#: ~7 (the diagonal optimum / α), which Adam at the shared rate cannot do in a quick budget
LR_SCALE: dict[str, float] = {"meta-sgd": 5.0}


@dataclass
class Run:
    """One meta-training run measured on fresh tasks.

    ``steps``: checkpoint steps (0 = initialisation); ``curve``: mean post-adaptation loss on
    ``checkpoint_tasks`` fresh tasks at each; ``final``: per-task losses of the final
    network on ``eval_tasks`` fresh tasks; ``snapshots``: parameters at the checkpoints (when
    kept).
    """

    steps: np.ndarray
    curve: np.ndarray
    final: np.ndarray
    params: Params
    precond_state: Params
    snapshots: list[Params] = field(default_factory=list)
    diverged: str | None = None
    seconds: float = 0.0
    #: meta_train's :class:`~maml_depth.numerics.meta_train.Convergence` report (None when
    #: training diverged)
    convergence: Any = None

    @property
    def converged(self) -> bool:
        """meta_train's convergence report says converged (False when diverged)."""
        return self.diverged is None and bool(getattr(self.convergence, "converged", False))


def eval_seed(seed: int) -> int:
    """Seed of the fresh evaluation tasks of a run with training seed ``seed``."""
    return EVAL_SEED + 104_729 * int(seed)


def outer_config(steps: int, checkpoints: int, *, meta_batch: int, lr: float,
                 schedule: str = "cosine") -> OuterConfig:
    """Adam with ``steps`` steps, logging (and so checkpointing) ``checkpoints`` times."""
    every = max(1, steps // max(1, checkpoints))
    return OuterConfig(meta_steps=steps, meta_batch=meta_batch, lr=lr,
                       schedule=schedule,  # type: ignore[arg-type]
                       log_every=every)


def train_and_measure(
    model: nn.Module,
    family: Any,
    inner: InnerConfig,
    outer: OuterConfig,
    *,
    seed: int,
    eval_tasks: int,
    checkpoint_tasks: int,
    keep_snapshots: bool = False,
    init_params: Params | None = None,
    eval_family: Any = None,
) -> Run:
    """Meta-train ``model`` and measure it: at step 0, at every logged step and at the end.

    ``eval_family`` (default ``family``) supplies the fresh evaluation tasks; they are drawn
    with :func:`eval_seed` of ``seed``, so runs of different seeds are measured on
    independent tasks (an interval over seeds then covers the task-sampling error too) and
    runs of the same seed on the same tasks (paired comparisons between models).
    """
    import time

    ev_fam = family if eval_family is None else eval_family
    steps: list[int] = []
    curve: list[float] = []
    snaps: list[Params] = []

    def measure(step: int, params: Params, state: Params | None) -> None:
        with torch.enable_grad():
            v = evaluate_losses(model, params, ev_fam, inner, num_tasks=checkpoint_tasks,
                                seed=eval_seed(seed) + 1, precond_state=state)
        steps.append(step)
        curve.append(float(v.mean()))
        if keep_snapshots:
            snaps.append({k: t.detach().clone() for k, t in params.items()})

    p0 = init_params if init_params is not None else {
        k: v.detach().clone() for k, v in model.named_parameters()}
    s0 = inner.init_state(model, p0)
    measure(0, p0, s0)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # divergence is recorded, not raised
        res = meta_train(model, family, inner, outer, seed=seed, init_params=p0,
                         callback=lambda st, p, s: measure(st, p, s))
    seconds = time.perf_counter() - t0
    if steps[-1] != res.steps_done and res.diverged is None:
        measure(res.steps_done, res.params, res.precond_state)
    final = evaluate_losses(model, res.params, ev_fam, inner, num_tasks=eval_tasks,
                            seed=eval_seed(seed), precond_state=res.precond_state)
    return Run(np.asarray(steps), np.asarray(curve), final.detach().cpu().numpy(),
               res.params, res.precond_state, snaps, res.diverged, seconds,
               res.convergence)


def _model(kind: str, setting: LinearSetting, seed: int) -> DeepLinear:
    g = torch.Generator().manual_seed(1_000 + 7919 * seed + setting.depth)
    if kind in ("deep-top", "deep-all"):
        return DeepLinear(setting.deep_dims, init="gaussian", scale=1.0, generator=g)
    return DeepLinear((setting.d, 1), init="gaussian", scale=1.0, generator=g)


def _inner(kind: str, setting: LinearSetting) -> InnerConfig:
    if kind == "deep-top":
        return InnerConfig(alpha=setting.alpha, adapt="top")
    if kind in ("deep-all", "shallow"):
        return InnerConfig(alpha=setting.alpha, adapt="all")
    return InnerConfig(alpha=setting.alpha, adapt="all", preconditioner=kind)


def linear_inner(kind: str, setting: LinearSetting = LINEAR) -> InnerConfig:
    """The inner loop of a run kind (public for the figures' captions and tests)."""
    return _inner(kind, setting)


@functools.lru_cache(maxsize=256)
def linear_family(setting: LinearSetting, family_seed: int = FAMILY_SEED
                  ) -> LinearRegressionTasks:
    """The task family of ``setting`` (population query loss, ``n_query=None``)."""
    return setting.family(family_seed)


@functools.lru_cache(maxsize=256)
def linear_run(kind: str, setting: LinearSetting, budget: FigureBudget, seed: int) -> Run:
    """Meta-train a ``kind`` (:data:`KINDS`) on ``setting``'s tasks with ``seed``; memoised.

    The parameters at every checkpoint are kept (small: the networks have a few hundred
    weights), so figures that read the trajectory and figures that read only the losses
    share one run.
    """
    if kind not in KINDS:
        raise InvalidArgumentError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    fam = linear_family(setting)
    model = _model(kind, setting, seed)
    outer = outer_config(budget.meta_steps, budget.checkpoints, meta_batch=setting.meta_batch,
                         lr=setting.lr * LR_SCALE.get(kind, 1.0))
    return train_and_measure(model, fam, _inner(kind, setting), outer, seed=seed,
                             eval_tasks=budget.eval_tasks,
                             checkpoint_tasks=budget.checkpoint_tasks, keep_snapshots=True)


def linear_runs(kinds: Sequence[str], setting: LinearSetting, budget: FigureBudget, *,
                desc: str, progress: bool = False) -> dict[str, list[Run]]:
    """``{kind: [run of seed 0, 1, …]}``: :func:`linear_run` of each of ``kinds`` for every
    seed of ``budget`` (seed by seed, the kinds in order), under a progress bar ``desc``."""
    runs: dict[str, list[Run]] = {k: [] for k in kinds}
    jobs = [(k, seed) for seed in range(budget.seeds) for k in kinds]
    for kind, seed in progress_iter(jobs, desc, progress):
        runs[kind].append(linear_run(kind, setting, budget, seed))
    return runs


def model_for(kind: str, setting: LinearSetting = LINEAR) -> DeepLinear:
    """A model of the architecture of ``kind`` (for reading snapshots)."""
    return _model(kind, setting, 0)


def bottom_layer_series(setting: LinearSetting, budget: FigureBudget,
                        measure: Callable[[np.ndarray], tuple[Any, ...]], *, desc: str,
                        progress: bool = False
                        ) -> tuple[list[Run], np.ndarray, list[np.ndarray]]:
    """The ``deep-top`` runs of every seed of ``budget`` on ``setting``, read along training
    through ``B_L = W_{L−1} ⋯ W_1``, the product of the frozen layers below the adapted top
    layer (the inner step's preconditioner is ``α B_LᵀB_L``).

    ``measure(B_L)`` (numpy) returns a tuple of quantities at one checkpoint; returns
    ``(runs, steps, arrays)`` with :func:`snapshot_arrays`' steps and arrays.
    """
    model = model_for("deep-top", setting)
    runs = linear_runs(("deep-top",), setting, budget, desc=desc, progress=progress)["deep-top"]
    steps, arrays = snapshot_arrays(runs, lambda p: measure(B_L(model, p).numpy()))
    return runs, steps, arrays


def with_depth(setting: LinearSetting, depth: int) -> LinearSetting:
    return replace(setting, depth=depth)


def with_shots(setting: LinearSetting, n: int) -> LinearSetting:
    return replace(setting, n=n)


# -- statistics ---------------------------------------------------------------------------
def interval_arrays(values: Sequence[float] | np.ndarray, axis: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and 95% Student-t interval over ``axis`` (the seeds), elementwise."""
    a = np.asarray(values, dtype=np.float64)
    a = np.moveaxis(a, axis, 0)
    flat = a.reshape(a.shape[0], -1)
    mean, low, high = (np.empty(flat.shape[1]) for _ in range(3))
    for j in range(flat.shape[1]):
        col = flat[:, j]
        col = col[np.isfinite(col)]
        if col.size >= 2:
            iv = stats.mean_interval(col)
            mean[j], low[j], high[j] = iv.estimate, iv.low, iv.high
        elif col.size == 1:
            mean[j] = low[j] = high[j] = col[0]
        else:
            mean[j] = low[j] = high[j] = math.nan
    shape = a.shape[1:]
    return mean.reshape(shape), low.reshape(shape), high.reshape(shape)


def log_interval_arrays(values: Sequence[float] | np.ndarray, axis: int = 0
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Geometric mean and 95% interval over ``axis`` (a t-interval of the logarithms,
    exponentiated) — for positive quantities drawn on a log axis."""
    a = np.asarray(values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(np.where(a > 0, a, np.nan))
    mean, low, high = interval_arrays(logs, axis)
    return np.exp(mean), np.exp(low), np.exp(high)


def progress_iter(items: Sequence[Any], desc: str, enabled: bool) -> Any:
    """A nested (non-persistent) tqdm bar over ``items``."""
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, leave=False, disable=not enabled, dynamic_ncols=True)


Callback = Callable[[int, Params, Params], None]


def stack_curves(runs: Sequence[Run]) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, curves)`` of several runs (seeds × checkpoints); a run that stopped early
    (divergence) is padded with NaN."""
    longest = max(runs, key=lambda r: len(r.steps))
    out = np.full((len(runs), len(longest.steps)), np.nan)
    for i, r in enumerate(runs):
        out[i, : len(r.curve)] = r.curve
    return np.asarray(longest.steps), out


def snapshot_arrays(runs: Sequence[Run], measure: Callable[[Params], tuple[Any, ...]]
                    ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Quantities read from the kept parameters of several runs along training.

    ``measure(params)`` returns a tuple of quantities (scalars or arrays) at one checkpoint.
    Returns the steps of the longest run and, per quantity, an array seeds × checkpoints ×
    (its shape), padded with NaN after a run that stopped early (divergence).
    """
    values = [[measure(p) for p in r.snapshots] for r in runs]
    steps = max((r.steps for r in runs), key=len)
    first = next(v[0] for v in values if v)
    out = [np.full((len(runs), len(steps), *np.shape(q)), np.nan) for q in first]
    for i, per_run in enumerate(values):
        for t, quantities in enumerate(per_run):
            for arr, q in zip(out, quantities, strict=True):
                arr[i, t] = q
    return np.asarray(steps), out


def final_means(runs: Sequence[Run]) -> np.ndarray:
    """Per-seed mean post-adaptation loss of the final networks on the fresh tasks."""
    return np.array([float(np.mean(r.final)) for r in runs])
