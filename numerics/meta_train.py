"""Meta-training: the outer loop of MAML (and of every registered preconditioner).

Each outer step samples ``meta_batch`` tasks, computes the meta-loss
``ℒ(θ, φ) = (1/T) Σ_t ℓ_q(θ'_t)`` with a batched engine, and takes one step of a torch
optimizer on the initialisation θ and the preconditioner state φ.

Divergence (``result.diverged``, a message with a hint) is declared at the first step where

- the meta-loss or meta-gradient is non-finite (the last finite state is kept), or
- the meta-loss stays finite but *explodes*: it exceeds ``diverge_factor`` (default 10³, three
  orders of magnitude) times the lowest meta-loss seen so far **and** the first step's loss —
  the outer step ``lr`` is too large for the curvature of the meta-loss (the state with the
  lowest meta-loss is kept), or
- adaptation makes the query loss ``diverge_factor`` times *worse* than before adapting
  (``post > diverge_factor · pre``) — the inner step ``α`` overshoots the curvature of the
  support loss (a gradient step is stable only for ``α · λ_max < 2``); the last state before
  it is kept.

Convergence is measured, not assumed (:class:`Convergence`, ``result.convergence``):

- the smoothed meta-loss's relative change over the last fifth of training: with windows of a
  tenth of the steps, ``a`` = mean loss of the window just before the last fifth and
  ``b`` = mean loss of the last window; converged needs ``|a − b| ≤ rtol·|b| + 2·se(a − b)``
  (``rtol`` default 0.01: the loss moved by at most 1 % beyond its sampling noise);
- the meta-gradient's drift over the last tenth: ``r = ‖mean g‖ / mean ‖g‖`` over its steps
  (1 for a gradient that keeps pointing one way, about ``1/√(steps)`` for pure sampling noise
  around a stationary point); converged needs ``r ≤ gtol`` (default 0.5).

Both tolerances live in :class:`OuterConfig` (``converge_rtol``, ``converge_gtol``).

References: Finn et al. (2017), Algorithm 1; Arnold et al. (2021), §3–4.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from maml_depth import _checks
from maml_depth.errors import DivergenceError, InvalidArgumentError
from maml_depth.numerics.engines import (
    InnerConfig,
    TaskFamily,
    post_adaptation_losses,
    pre_adaptation_losses,
    select_engine,
)
from maml_depth.numerics.networks import Params, get_params

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None → CUDA when available, else CPU; anything else as given (checked)."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidArgumentError("device 'cuda' was requested but no CUDA device is available")
    return dev


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """The torch dtype named ``dtype`` (a key of ``DTYPES``); a torch dtype is returned as is."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise InvalidArgumentError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


@dataclass(frozen=True)
class OuterConfig:
    """The outer loop: ``meta_steps`` steps of ``optimizer`` with learning rate ``lr`` on
    batches of ``meta_batch`` tasks; losses logged every ``log_every`` steps.

    ``schedule="cosine"`` decays the learning rate as ``lr · ½(1 + cos(π t/T))``, which
    removes most of the stochastic noise floor of sampled-task training at the end.
    """

    meta_steps: int = 1000
    meta_batch: int = 32
    lr: float = 1e-3
    optimizer: Literal["adam", "sgd"] = "adam"
    log_every: int = 1
    schedule: Literal["constant", "cosine"] = "constant"
    converge_rtol: float = 0.01
    converge_gtol: float = 0.5
    diverge_factor: float = 1e3

    def __post_init__(self) -> None:
        for name in ("converge_rtol", "converge_gtol"):
            object.__setattr__(self, name,
                               _checks.finite_float(name, getattr(self, name), positive=True))
        f = _checks.finite_float("diverge_factor", self.diverge_factor, positive=True)
        if f <= 1:
            raise InvalidArgumentError(f"diverge_factor must be > 1, got {self.diverge_factor!r}")
        object.__setattr__(self, "diverge_factor", f)
        object.__setattr__(self, "meta_steps", _checks.positive_int("meta_steps", self.meta_steps))
        object.__setattr__(self, "meta_batch", _checks.positive_int("meta_batch", self.meta_batch))
        object.__setattr__(self, "lr", _checks.finite_float("lr", self.lr, positive=True))
        object.__setattr__(self, "log_every", _checks.positive_int("log_every", self.log_every))
        if self.optimizer not in ("adam", "sgd"):
            raise InvalidArgumentError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in ("constant", "cosine"):
            raise InvalidArgumentError(
                f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")


@dataclass
class History:
    """Meta-batch means of the query loss before and after adaptation, per logged step."""

    step: list[int] = field(default_factory=list)
    pre_loss: list[float] = field(default_factory=list)
    post_loss: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Convergence:
    """Whether meta-training converged, measured on its own history (see the module doc).

    Attributes:
        converged: both criteria hold (False when there are too few logged steps to tell).
        rel_change: ``(a − b)/|b|``, the smoothed meta-loss's relative decrease over the last
            fifth (positive: still decreasing). noise: ``2·se(a − b)/|b|``, its sampling noise.
        grad_drift: ``‖mean g‖ / mean ‖g‖`` of the meta-gradient over the last tenth.
        grad_norm: mean meta-gradient norm ``‖g‖`` over the last tenth.
        rtol, gtol: the tolerances used. reason: one line saying why not (empty if converged).
    """

    converged: bool
    rel_change: float
    noise: float
    grad_drift: float
    grad_norm: float
    rtol: float
    gtol: float
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The convergence report as a plain dict (for JSON reports)."""
        return asdict(self)

    def summary(self) -> str:
        """One line: converged or not (and why), the relative change of the meta-loss over the
        last fifth of training against its noise and tolerance, and the gradient drift
        against its tolerance."""
        state = "converged" if self.converged else f"NOT converged ({self.reason})"
        return (f"{state}: meta-loss change over the last fifth {self.rel_change:+.2%} "
                f"(noise ±{self.noise:.2%}, tol {self.rtol:.0%}), gradient drift "
                f"{self.grad_drift:.2f} (tol {self.gtol:.2f})")


def convergence_report(losses: list[float], grad_sum_norm: float, grad_norms: list[float],
                       *, rtol: float = 0.01, gtol: float = 0.5) -> Convergence:
    """:class:`Convergence` from the per-step meta-losses, ``‖Σ g‖`` and the ``‖g‖`` of the
    last tenth of the steps (see the module docstring for the criteria)."""
    n = len(losses)
    w = n // 10
    nan = float("nan")
    if w < 2 or not grad_norms:
        return Convergence(False, nan, nan, nan, nan, rtol, gtol,
                           f"too few steps ({n}) to measure convergence (need ≥ 20)")
    start = (4 * n) // 5
    a_win = torch.tensor(losses[max(0, start - w):start], dtype=torch.float64)
    b_win = torch.tensor(losses[n - w:], dtype=torch.float64)
    a, b = float(a_win.mean()), float(b_win.mean())
    se = math.sqrt(float(a_win.var()) / a_win.numel() + float(b_win.var()) / b_win.numel())
    scale = abs(b) if b != 0 else 1.0
    rel, noise = (a - b) / scale, 2 * se / scale
    mean_norm = sum(grad_norms) / len(grad_norms)
    drift = grad_sum_norm / (len(grad_norms) * mean_norm) if mean_norm > 0 else 0.0
    reasons = []
    if abs(a - b) > rtol * scale + 2 * se:
        what = "still decreasing" if a > b else "increasing"
        reasons.append(f"meta-loss {what}: {rel:+.2%} over the last fifth "
                       f"(> {rtol:.0%} + noise {noise:.2%})")
    if drift > gtol:
        reasons.append(f"meta-gradient still points one way (drift {drift:.2f} > {gtol:.2f})")
    return Convergence(not reasons, rel, noise, drift, mean_norm, rtol, gtol,
                       "; ".join(reasons))


@dataclass
class MetaTrainResult:
    """What :func:`meta_train` returns.

    ``params``/``precond_state``: the final (or last finite, if diverged) meta-parameters.
    ``diverged``: None, or the message saying at which step and why training stopped.
    ``convergence``: the measured :class:`Convergence` (None when training diverged).
    """

    params: Params
    precond_state: Params
    history: History
    steps_done: int
    engine: str
    device: str
    seconds: float
    diverged: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    convergence: Convergence | None = None


def _all_finite(tensors: list[Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def meta_train(
    model: nn.Module,
    family: TaskFamily,
    inner: InnerConfig,
    outer: OuterConfig | None = None,
    *,
    seed: int = 0,
    engine: str = "auto",
    init_params: Params | None = None,
    init_state: Params | None = None,
    progress: bool = False,
    on_divergence: Literal["stop", "raise"] = "stop",
    callback: Callable[[int, Params, Params], None] | None = None,
) -> MetaTrainResult:
    """Meta-train the initialisation θ (and preconditioner state φ) of ``model``.

    ``θ ← opt(θ, ∇_θ (1/T) Σ_t ℓ_q(inner_adapt(θ, φ; S_t)))`` for ``outer.meta_steps`` steps,
    tasks drawn from ``family`` with a ``torch.Generator`` seeded by ``seed`` (same seed →
    same run). The model's dtype and device are those of its parameters (and the family's
    matrices must match).

    Args:
        callback: called as ``callback(step, params, precond_state)`` after each logged
            step (e.g. to record a trajectory).
        on_divergence: ``"stop"`` warns and returns the last finite state with
            ``result.diverged`` set; ``"raise"`` raises :class:`DivergenceError`.

    References: Finn et al. (2017), Algorithm 1.
    """
    outer = outer or OuterConfig()
    if on_divergence not in ("stop", "raise"):
        raise InvalidArgumentError(
            f"on_divergence must be 'stop' or 'raise', got {on_divergence!r}"
        )
    params0 = init_params if init_params is not None else get_params(model)
    dev = next(iter(params0.values())).device
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params0.items()}
    state0 = init_state if init_state is not None else inner.init_state(model, params)
    state = {k: v.detach().clone().requires_grad_(True) for k, v in state0.items()}
    leaves = list(params.values()) + list(state.values())
    opt: torch.optim.Optimizer
    if outer.optimizer == "adam":
        opt = torch.optim.Adam(leaves, lr=outer.lr)
    else:
        opt = torch.optim.SGD(leaves, lr=outer.lr)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=outer.meta_steps)
             if outer.schedule == "cosine" else None)
    choice = select_engine(engine, model, inner)
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    history = History()
    def snapshot() -> tuple[Params, Params]:
        return ({k: v.detach().clone() for k, v in params.items()},
                {k: v.detach().clone() for k, v in state.items()})

    good = snapshot()
    best, best_loss, first_loss = good, math.inf, math.nan
    diverged: str | None = None
    hint = "lower the outer lr or alpha"
    factor = outer.diverge_factor
    tail_from = outer.meta_steps - outer.meta_steps // 10 + 1  # the last tenth of the steps
    grad_sum: list[Tensor] | None = None
    tail_norms: list[float] = []
    step_losses: list[float] = []
    t0 = time.perf_counter()
    steps_done = 0
    bar = tqdm(range(1, outer.meta_steps + 1), disable=not progress, desc="meta-train",
               unit="step", dynamic_ncols=True)
    for step in bar:
        batch = family.sample(outer.meta_batch, gen)
        post = post_adaptation_losses(model, params, batch, family, inner,
                                      precond_state=state, engine=choice.name)
        loss = post.mean()
        lval = float(loss.detach())
        if not math.isfinite(lval):
            diverged = f"meta-loss became {lval} at step {step}"
            break
        if step == 1:
            first_loss = lval
        if lval > factor * best_loss and lval > first_loss:
            diverged = (f"meta-loss grew to {lval:.4g} at step {step}, over {factor:.0e} times "
                        f"its lowest value {best_loss:.4g} (still finite)")
            hint = (f"the outer step lr = {outer.lr:g} is too large for the curvature of the "
                    f"meta-loss (a step is stable only while lr · curvature ≲ 2): lower --lr")
            good = best
            break
        log_now = step % outer.log_every == 0 or step == outer.meta_steps
        pre_val = math.nan
        if log_now or step == 1:
            with torch.no_grad():
                pre_val = float(pre_adaptation_losses(model, params, batch, family).mean())
            if lval > factor * pre_val and pre_val > 0:
                diverged = (f"adaptation made the query loss {lval / pre_val:.3g} times worse "
                            f"({pre_val:.4g} before adapting, {lval:.4g} after) at step {step}")
                hint = (f"the inner step alpha = {inner.alpha:g} overshoots the curvature "
                        f"λ_max of the support loss it adapts on (a gradient step is stable "
                        f"only for alpha · λ_max < 2): lower --alpha")
                break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in leaves if p.grad is not None]
        if not _all_finite(grads):
            diverged = f"meta-gradient became non-finite at step {step}"
            break
        # the state that produced a finite loss and gradient: keep it
        good = snapshot()
        if lval < best_loss:
            best, best_loss = good, lval
        step_losses.append(lval)
        if step >= tail_from:
            flat = [g.detach().reshape(-1) for g in grads]
            tail_norms.append(math.sqrt(sum(float((f * f).sum()) for f in flat)))
            grad_sum = flat if grad_sum is None else [a + f for a, f in
                                                      zip(grad_sum, flat, strict=True)]
        if log_now:
            history.step.append(step)
            history.pre_loss.append(pre_val)
            history.post_loss.append(lval)
            bar.set_postfix(post=f"{lval:.4g}", pre=f"{pre_val:.4g}")
            if callback is not None:
                callback(step, good[0], good[1])
        opt.step()
        if sched is not None:
            sched.step()
        steps_done = step
        if not _all_finite(leaves):
            diverged = f"parameters became non-finite after the update of step {step}"
            break
    else:
        good = snapshot()
    bar.close()
    convergence: Convergence | None = None
    if diverged is not None:
        msg = (f"meta-training diverged: {diverged}; kept the last good state "
               f"(after {steps_done} completed steps) — {hint}")
        if on_divergence == "raise":
            raise DivergenceError(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
        diverged = msg
    else:
        gsum = (math.sqrt(sum(float((g * g).sum()) for g in grad_sum))
                if grad_sum is not None else 0.0)
        convergence = convergence_report(step_losses, gsum, tail_norms,
                                         rtol=outer.converge_rtol, gtol=outer.converge_gtol)
    return MetaTrainResult(
        params=good[0], precond_state=good[1], history=history, steps_done=steps_done,
        engine=choice.name, device=str(dev), seconds=time.perf_counter() - t0,
        diverged=diverged,
        config={"inner": {k: (v.name if hasattr(v, "name") else v)
                          for k, v in asdict(inner).items()},
                "outer": asdict(outer), "seed": seed, "engine": choice.name},
        convergence=convergence,
    )


def evaluate_losses(
    model: nn.Module,
    params: Params,
    family: TaskFamily,
    inner: InnerConfig,
    *,
    num_tasks: int = 1000,
    seed: int = 12345,
    precond_state: Params | None = None,
    chunk: int = 1024,
    engine: str = "auto",
) -> Tensor:
    """Per-task post-adaptation query losses on ``num_tasks`` fresh tasks, shape ``(T,)``.

    Tasks come from a generator seeded by ``seed`` (use a seed different from training), so
    two models evaluated with the same seed see the same tasks (paired comparisons).
    Adaptation is real: autograd through the model, not theory.
    """
    num_tasks = _checks.positive_int("num_tasks", num_tasks)
    dev = next(iter(params.values())).device
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    vals = []
    left = num_tasks
    while left > 0:
        T = min(chunk, left)
        batch = family.sample(T, gen)
        with torch.enable_grad():
            losses = post_adaptation_losses(model, params, batch, family, inner,
                                            precond_state=precond_state, engine=engine)
        vals.append(losses.detach())
        left -= T
    return torch.cat(vals)


def evaluate(
    model: nn.Module,
    params: Params,
    family: TaskFamily,
    inner: InnerConfig,
    *,
    num_tasks: int = 1000,
    seed: int = 12345,
    precond_state: Params | None = None,
    chunk: int = 1024,
) -> tuple[float, float, int]:
    """Post-adaptation query loss on fresh tasks: (mean, standard error, number of tasks).

    See :func:`evaluate_losses`.
    """
    v = evaluate_losses(model, params, family, inner, num_tasks=num_tasks, seed=seed,
                        precond_state=precond_state, chunk=chunk).to(torch.float64)
    se = float(v.std(unbiased=True) / math.sqrt(v.numel())) if v.numel() > 1 else float("nan")
    return float(v.mean()), se, int(v.numel())
