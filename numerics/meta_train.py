"""Meta-training: the outer loop of MAML (and of every registered preconditioner).

Each outer step samples ``meta_batch`` tasks, computes the meta-loss
``ℒ(θ, φ) = (1/T) Σ_t ℓ_q(θ'_t)`` with a batched engine, and takes one step of a torch
optimizer on the initialisation θ and the preconditioner state φ.

Divergence: a non-finite meta-loss or meta-gradient stops training at that step with a
message; the returned parameters are the last state whose loss was finite.

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

    def __post_init__(self) -> None:
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


@dataclass
class MetaTrainResult:
    """What :func:`meta_train` returns.

    ``params``/``precond_state``: the final (or last finite, if diverged) meta-parameters.
    ``diverged``: None, or the message saying at which step and why training stopped.
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
    good = ({k: v.detach().clone() for k, v in params.items()},
            {k: v.detach().clone() for k, v in state.items()})
    diverged: str | None = None
    t0 = time.perf_counter()
    steps_done = 0
    bar = tqdm(range(1, outer.meta_steps + 1), disable=not progress, desc="meta-train",
               unit="step", dynamic_ncols=True)
    for step in bar:
        batch = family.sample(outer.meta_batch, gen)
        post = post_adaptation_losses(model, params, batch, family, inner,
                                      precond_state=state, engine=choice.name)
        loss = post.mean()
        if not math.isfinite(float(loss.detach())):
            diverged = f"meta-loss became {float(loss.detach())} at step {step}"
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in leaves if p.grad is not None]
        if not _all_finite(grads):
            diverged = f"meta-gradient became non-finite at step {step}"
            break
        # the state that produced a finite loss and gradient: keep it
        good = ({k: v.detach().clone() for k, v in params.items()},
                {k: v.detach().clone() for k, v in state.items()})
        if step % outer.log_every == 0 or step == outer.meta_steps:
            with torch.no_grad():
                pre = pre_adaptation_losses(model, params, batch, family).mean()
            history.step.append(step)
            history.pre_loss.append(float(pre))
            history.post_loss.append(float(loss.detach()))
            bar.set_postfix(post=f"{float(loss.detach()):.4g}", pre=f"{float(pre):.4g}")
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
        good = ({k: v.detach().clone() for k, v in params.items()},
                {k: v.detach().clone() for k, v in state.items()})
    bar.close()
    if diverged is not None:
        msg = (f"meta-training diverged: {diverged}; kept the last finite state "
               f"(after {steps_done} completed steps) — lower the outer lr or alpha")
        if on_divergence == "raise":
            raise DivergenceError(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
        diverged = msg
    return MetaTrainResult(
        params=good[0], precond_state=good[1], history=history, steps_done=steps_done,
        engine=choice.name, device=str(dev), seconds=time.perf_counter() - t0,
        diverged=diverged,
        config={"inner": {k: (v.name if hasattr(v, "name") else v)
                          for k, v in asdict(inner).items()},
                "outer": asdict(outer), "seed": seed, "engine": choice.name},
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
