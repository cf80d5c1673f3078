"""The nonlinear meta-optimizer setting: sine regression and few-shot digits, shallow and
deeper models, MAML, Meta-SGD, Meta-Curvature and KFO (Arnold et al. 2021, §4–5).

One *job* meta-trains one (domain, model, optimizer, seed) and measures it on fresh
meta-test episodes (:func:`run_job`); :func:`summarize` aggregates the per-seed results into
rows with Student-t intervals over seeds and the paired difference to MAML. Shared by the
experiment document (:mod:`maml_depth.experiments.meta_optimizers`) and the full-budget
claim ``meta-optimizers-nonlinear`` (validation/).

Domains: sine regression (Finn et al. 2017, §5.1) and digits 5-way 1-shot and 5-shot
(scikit-learn's 8 × 8 digits with rotated classes, digits 0–4 for meta-training, 5–9 for
meta-testing); models: a "shallow" base model and a "deeper" one (the same model with two
extra linear layers before the output: more depth, the same capacity, Arnold et al. 2021
§3). For each seed every optimizer is meta-trained from the same initialisation on the same
task stream, then adapted on the same fresh meta-test episodes.

References: Arnold, Iqbal, Sha (AISTATS 2021), §4–5 and Table 2; Finn, Abbeel, Levine
(2017), §5; Li et al. (2017) "Meta-SGD"; Park & Oliva (2019) "Meta-Curvature".
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from maml_depth.common import stats
from maml_depth.common.budgets import EXPERIMENT_BUDGETS as BUDGETS
from maml_depth.common.budgets import DomainBudget, ExperimentBudget
from maml_depth.errors import InvalidArgumentError
from maml_depth.numerics.meta_optimizers import META_OPTIMIZERS

__all__ = [
    "BUDGETS",
    "DOMAINS",
    "MODELS",
    "OPTIMIZERS",
    "DomainBudget",
    "ExperimentBudget",
    "Job",
    "Row",
    "jobs_for",
    "run_experiment",
    "run_job",
    "summarize",
]

#: the optimizers compared: every registered meta-optimizer (MAML first)
OPTIMIZERS: tuple[str, ...] = META_OPTIMIZERS
DOMAINS: tuple[str, ...] = ("sine", "digits-1shot", "digits-5shot")


#: model key -> (description, shallow/deeper label)
MODELS: dict[str, tuple[str, str]] = {
    "mlp": ("MLP (sine 1-40-40-1; digits 64-64-64-5), ReLU", "shallow"),
    "mlp+linnet": ("the MLP + 2 linear h×h layers before the output (h = last hidden width; "
                   "same capacity)",
                   "deeper"),
    "cnn": ("CNN: 2 × [conv 3×3, 16 ch, ReLU, max-pool 2], linear 64→5", "shallow"),
    "cnn+linnet": ("the CNN + 2 linear 64×64 layers before the classifier (same capacity)",
                   "deeper"),
}


@dataclass(frozen=True)
class Job:
    """One meta-training run: a domain, a model, an optimizer and a seed."""

    domain: str
    model: str
    optimizer: str
    seed: int


def jobs_for(budget: ExperimentBudget, domains: Sequence[str] = DOMAINS,
             optimizers: Sequence[str] = OPTIMIZERS) -> list[Job]:
    """Every (domain, model, optimizer, seed) of a budget, most expensive first."""
    jobs = [Job(dom, model, opt, s)
            for dom in domains for model in budget.domain(dom).models
            for opt in optimizers for s in range(budget.seeds)]
    cost = {"sine": 1.0, "digits-1shot": 3.0, "digits-5shot": 4.0}
    return sorted(jobs, key=lambda j: -cost[j.domain] * (1.5 if "linnet" in j.model else 1.0))


# -- building blocks -------------------------------------------------------------------------
def _families(domain: str, db: DomainBudget, dtype: Any, device: Any) -> tuple[Any, Any]:
    from maml_depth.numerics import DigitsFewShot, SineTasks

    if domain == "sine":
        return (SineTasks(10, db.n_query_train, dtype=dtype, device=device),
                SineTasks(10, db.n_query_test, dtype=dtype, device=device))
    k = 1 if domain == "digits-1shot" else 5
    return (DigitsFewShot("train", 5, k, db.n_query_train, dtype=dtype, device=device),
            DigitsFewShot("test", 5, k, db.n_query_test, dtype=dtype, device=device))


def _model(domain: str, key: str, seed: int, dtype: Any, device: Any) -> Any:
    import torch

    from maml_depth.numerics import ConvNet, LinNetMLP

    g = torch.Generator().manual_seed(10_000 + seed)  # same init for every optimizer
    kw: dict[str, Any] = dict(generator=g, dtype=dtype, device=device)
    if domain == "sine":
        dims = (1, 40, 40, 1)
    else:
        dims = (64, 64, 64, 5)
    if key == "mlp":
        return LinNetMLP(dims, "relu", **kw)
    if key == "mlp+linnet":
        return LinNetMLP(dims, "relu", extra_linear=2, **kw)
    if key == "cnn":
        return ConvNet(5, (16, 16), **kw)
    if key == "cnn+linnet":
        return ConvNet(5, (16, 16), extra_linear=2, **kw)
    raise InvalidArgumentError(f"model must be one of {sorted(MODELS)}, got {key!r}")


@dataclass(frozen=True)
class _QueryMetric:
    """A task family whose ``query_loss`` is another per-task query metric."""

    family: Any
    metric: Callable[..., Any]

    @property
    def loss_fn(self) -> Any:
        return self.family.loss_fn

    def sample(self, num_tasks: int, generator: Any) -> Any:
        return self.family.sample(num_tasks, generator)

    def query_loss(self, model: Any, params: Any, Xq: Any, Yq: Any, W_t: Any) -> Any:
        return self.metric(model, params, Xq, Yq, W_t)


def run_job(job: Job, budget: ExperimentBudget, device: str = "cpu", threads: int = 1
            ) -> dict[str, Any]:
    """Meta-train one model with one optimizer, then adapt it on fresh meta-test episodes.

    Returns the per-seed means of the post-adaptation query loss and metric (sine: mean
    squared error; digits: accuracy) over ``eval_episodes`` episodes drawn from a generator
    seeded by ``100_000 + seed`` (identical across models and optimizers).
    """
    import torch

    from maml_depth.numerics import (
        InnerConfig,
        OuterConfig,
        meta_train,
        post_adaptation_losses,
        resolve_device,
        resolve_dtype,
    )

    torch.set_num_threads(threads)
    dev = resolve_device(device)
    dt = resolve_dtype(budget.dtype)
    db = budget.domain(job.domain)
    train_fam, test_fam = _families(job.domain, db, dt, dev)
    model = _model(job.domain, job.model, job.seed, dt, dev)
    inner = InnerConfig(alpha=db.alpha, steps=db.inner_steps, preconditioner=job.optimizer)
    t0, c0 = time.perf_counter(), time.process_time()
    res = meta_train(model, train_fam, inner,
                     OuterConfig(db.meta_steps, db.meta_batch, db.lr,
                                 log_every=max(1, db.meta_steps // 10)),
                     seed=job.seed)
    train_s = time.perf_counter() - t0
    if job.domain == "sine":
        metric_fam = _QueryMetric(test_fam, lambda *a: 2.0 * test_fam.query_loss(*a))
    else:
        metric_fam = _QueryMetric(test_fam, test_fam.query_accuracy)
    gen = torch.Generator(device=dev).manual_seed(100_000 + job.seed)
    losses: list[torch.Tensor] = []
    metrics: list[torch.Tensor] = []
    left = db.eval_episodes
    while left > 0:
        T = min(100, left)
        batch = test_fam.sample(T, gen)
        for fam, out in ((test_fam, losses), (metric_fam, metrics)):
            v = post_adaptation_losses(model, res.params, batch, fam, inner,
                                       precond_state=res.precond_state)
            out.append(v.detach().to(torch.float64).cpu())
        left -= T
    loss = torch.cat(losses)
    metric = torch.cat(metrics)
    return {
        **asdict(job),
        "loss": float(loss.mean()), "metric": float(metric.mean()),
        "metric_se_episodes": float(metric.std() / math.sqrt(metric.numel())),
        "episodes": int(metric.numel()),
        "train_seconds": train_s, "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
        "diverged": res.diverged, "steps_done": res.steps_done,
        "train_post_loss_last": res.history.post_loss[-1] if res.history.post_loss else None,
        "train_post_loss_first": res.history.post_loss[0] if res.history.post_loss else None,
    }


def job_params(job: Job, budget: ExperimentBudget, device: str) -> dict[str, Any]:
    """A job as a grid point (JSON-able; its store key is the hash of this)."""
    return {"job": asdict(job), "budget": asdict(budget), "device": device}


def _budget_from(d: dict[str, Any]) -> ExperimentBudget:
    def dom(x: dict[str, Any]) -> DomainBudget:
        return DomainBudget(**{**x, "models": tuple(x["models"])})

    return ExperimentBudget(name=d["name"], seeds=int(d["seeds"]), sine=dom(d["sine"]),
                            digits=dom(d["digits"]), dtype=d["dtype"])


def run_job_point(params: Mapping[str, Any]) -> dict[str, Any]:
    """The grid task of the experiment: :func:`run_job` of a :func:`job_params` point."""
    return run_job(Job(**params["job"]), _budget_from(params["budget"]), params["device"])


@dataclass(frozen=True)
class _Point:
    key: str
    params: dict[str, Any]
    index: int


def run_experiment(
    budget: ExperimentBudget,
    *,
    domains: Sequence[str] = DOMAINS,
    optimizers: Sequence[str] = OPTIMIZERS,
    workers: int = 1,
    device: str = "cpu",
    progress: bool = False,
    executor: Any = None,
    scheduler: str | None = None,
    store: str | Path | None = None,
    resume: bool = False,
) -> list[dict[str, Any]]:
    """Run every job of ``budget`` through the shared grid driver
    (:func:`maml_depth.common.grid.run_grid`) and return the per-job results in job order.

    ``executor``: ``"serial"`` (default for ``workers = 1``), ``"local"`` (a process pool of
    ``workers`` single-threaded processes, the default otherwise), ``"dask"`` (with
    ``scheduler="tcp://…"`` on a cluster); the results do not depend on it: every job is
    seeded and single-threaded. ``store``: the folder of the resumable store (default: a
    temporary one); with ``resume`` a killed run continues where it stopped. A failed job
    raises :class:`RuntimeError` naming it (after every other job is stored).
    """
    from maml_depth.common.grid import run_grid
    from maml_depth.common.store import Store, point_key

    jobs = jobs_for(budget, domains, optimizers)
    items = []
    for i, j in enumerate(jobs):
        params = job_params(j, budget, device)
        items.append(_Point(point_key(params), params, i))
    if executor is None:
        executor = "serial" if workers <= 1 and scheduler is None else (
            "dask" if scheduler is not None else "local")
    with contextlib.ExitStack() as stack:
        out = Path(store) if store is not None else Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="maml-depth-grid-")))
        report = run_grid(items, run_job_point, out, executor=executor, scheduler=scheduler,
                          workers=workers, resume=resume, progress=progress,
                          desc=f"meta-optimizers ({budget.name})")
        valid, corrupt = Store(out).scan(p.key for p in items)
    failed = [(p, valid.get(p.key)) for p in items
              if p.key not in valid or valid[p.key]["status"] != "ok"]
    if failed:
        p, rec = failed[0]
        why = rec["error"] if rec is not None else corrupt.get(p.key, "not stored")
        raise RuntimeError(f"{len(failed)} of {len(items)} jobs failed ({report.failed} in "
                           f"this run); first: {p.params['job']}: {why}")
    return [valid[p.key]["result"] for p in items]


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean over seeds and the half-width of its 95% Student-t interval (NaN for one seed):
    :func:`maml_depth.common.stats.mean_halfwidth`, the package's one Student-t interval."""
    return stats.mean_halfwidth(values)


@dataclass
class Row:
    """One (domain, model, optimizer) cell: over-seed mean and CI, paired Δ vs MAML."""

    domain: str
    model: str
    optimizer: str
    seeds: int
    episodes: int
    metric: float
    metric_ci: float
    loss: float
    loss_ci: float
    delta: float = float("nan")
    delta_ci: float = float("nan")
    verdict: str = ""
    diverged: int = 0
    per_seed: list[float] = field(default_factory=list)


def summarize(results: Sequence[dict[str, Any]]) -> list[Row]:
    """Aggregate per-seed results into :class:`Row` s; Δ = optimizer − MAML (paired by
    seed), positive = better for accuracy, negative = better for MSE."""
    by: dict[tuple[str, str, str], dict[int, dict[str, Any]]] = {}
    for r in results:
        by.setdefault((r["domain"], r["model"], r["optimizer"]), {})[r["seed"]] = r
    rows = []
    for (dom, model, opt), seeds in sorted(by.items(), key=lambda kv: (
            DOMAINS.index(kv[0][0]), kv[0][1], OPTIMIZERS.index(kv[0][2]))):
        order = sorted(seeds)
        metric = [seeds[s]["metric"] for s in order]
        loss = [seeds[s]["loss"] for s in order]
        m, mci = mean_ci(metric)
        lm, lci = mean_ci(loss)
        row = Row(dom, model, opt, len(order), seeds[order[0]]["episodes"], m, mci, lm, lci,
                  diverged=sum(1 for s in order if seeds[s]["diverged"]), per_seed=metric)
        base = by.get((dom, model, "maml"))
        if opt != "maml" and base:
            common = [s for s in order if s in base]
            diffs = [seeds[s]["metric"] - base[s]["metric"] for s in common]
            if diffs:
                row.delta, row.delta_ci = mean_ci(diffs)
                better = row.delta > 0 if dom.startswith("digits") else row.delta < 0
                if math.isnan(row.delta_ci) or abs(row.delta) <= row.delta_ci:
                    row.verdict = "no significant difference"
                else:
                    row.verdict = "beats MAML" if better else "worse than MAML"
        rows.append(row)
    return rows
