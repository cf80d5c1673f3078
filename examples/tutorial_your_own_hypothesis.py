# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Test your own hypothesis
#
# A hypothesis about MAML on deep linear networks can be settled twice: by the exact
# expectations of `maml_depth.theory` ([exact expectations](../docs/theory/exact-expectation.md)),
# and by measurement. This tutorial asks two questions,
#
# 1. *ANIL or all layers?* Does adapting every layer of a two-layer network beat adapting
#    only the top one (ANIL, `adapt="top"`) at the same weights and step size?
# 2. *More inner steps?* How much do `k` inner steps on the same support set help?
#
# answers each with theory beside a Monte Carlo measurement, and then writes the first as a
# **claim** — registered with `maml_depth.validation.claim`, judged with
# `maml_depth.validation.stats`, run like the paper's claims (`maml-depth validate`).
#
# Run it: `python examples/tutorial_your_own_hypothesis.py` (under a minute on one core);
# `MAML_DEPTH_TUTORIAL_BUDGET=tiny` runs it with fewer cases and tasks (seconds).
# Open it as a notebook: `jupytext --to notebook examples/tutorial_your_own_hypothesis.py`.

# %%
import os
import time
from pathlib import Path

import numpy as np
import torch

from maml_depth._io import atomic_write_json
from maml_depth.errors import ConfigError
from maml_depth.numerics import LinearRegressionTasks, monte_carlo_deep_loss
from maml_depth.theory import TermLimitError, expected_deep_loss, optimal_preconditioner
from maml_depth.validation import (
    BUDGETS,
    CLAIMS,
    Budget,
    ClaimResult,
    RunContext,
    claim,
    run_claim,
    stats,
)

BUDGET = os.environ.get("MAML_DEPTH_TUTORIAL_BUDGET", "default")
if BUDGET not in ("tiny", "default"):
    raise ConfigError(f"MAML_DEPTH_TUTORIAL_BUDGET must be 'tiny' or 'default', got {BUDGET!r}")
OUT = Path(os.environ.get("MAML_DEPTH_TUTORIAL_OUT", "results/tutorials/your_own_hypothesis"))
MC_TASKS = 20_000 if BUDGET == "tiny" else 100_000
SIGMA, N = 0.3, 8  # label noise, support samples
rows: list[dict] = []
t_start = time.perf_counter()


def random_case(rng: np.random.Generator, d: int = 4) -> dict:
    """A random task family (Σ with eigenvalues in [0.3, 2], Λ of random rank, W̄ in range(Λ))
    and a random two-layer network [W₁ (orthogonal), W₂]."""
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    Sigma = Q @ np.diag(np.exp(rng.uniform(np.log(0.3), np.log(2.0), d))) @ Q.T
    U, _ = np.linalg.qr(rng.standard_normal((d, d)))
    r = int(rng.integers(1, d + 1))
    Lam = U[:, :r] @ np.diag(rng.uniform(0.2, 1.0, r)) @ U[:, :r].T
    W_bar = 0.5 * (U[:, :r] @ rng.standard_normal(r))[None, :]
    W1, _ = np.linalg.qr(rng.standard_normal((d, d)))
    W2 = 0.6 * rng.standard_normal((1, d))
    return {"Sigma": Sigma, "Lam": Lam, "W_bar": W_bar, "weights": [W1, W2]}


def tasks_of(case: dict) -> LinearRegressionTasks:
    return LinearRegressionTasks(torch.from_numpy(case["Sigma"]), torch.from_numpy(case["W_bar"]),
                                 torch.from_numpy(case["Lam"]), SIGMA, N)


def exact(case: dict, adapt, alpha: float, steps: int = 1) -> float:
    return float(expected_deep_loss(case["weights"], adapt=adapt, steps=steps,
                                    W_bar=case["W_bar"], Sigma=case["Sigma"], Lam=case["Lam"],
                                    sigma=SIGMA, n=N, alpha=alpha))


def measured(case: dict, adapt, alpha: float, steps: int = 1, *, num_tasks: int, seed: int):
    return monte_carlo_deep_loss(tasks_of(case), [torch.from_numpy(w) for w in case["weights"]],
                                 alpha=alpha, adapt=adapt, steps=steps, num_tasks=num_tasks,
                                 seed=seed)


def show(what: str, theory: float | None, est) -> None:
    lo, hi = est.interval(0.95)
    th = f"{theory:9.5f}" if theory is not None else "    —    "
    print(f"{what:34s} theory {th}   measured {est.mean:9.5f} [{lo:.5f}, {hi:.5f}]")
    if theory is not None:
        rows.append({"what": what, "theory": theory, "measured": est.mean, "se": est.stderr,
                     "n": est.num_tasks})


# %% [markdown]
# ## 1. ANIL or all layers? — first, ask the theory
#
# One inner step, a random network on a random family. The exact expected loss after
# adapting the top layer, the bottom layer, or both, at three step sizes:

# %%
case = random_case(np.random.default_rng(0))
print(f"{'alpha':>6} {'top (ANIL)':>11} {'bottom':>9} {'all':>9}")
for alpha in (0.1, 0.3, 0.8):
    print(f"{alpha:6.2f} {exact(case, 'top', alpha):11.5f} {exact(case, 1, alpha):9.5f} "
          f"{exact(case, 'all', alpha):9.5f}")

# %% [markdown]
# Adapting all layers moves the network further in one step: at a small step size that
# helps, at a large one it overshoots. So the hypothesis needs its step size:
# **"at α = 0.1, adapting all layers beats ANIL"**. Theory first, then the measurement:

# %%
for adapt in ("top", "all"):
    show(f"alpha = 0.1, adapt = {adapt!r}", exact(case, adapt, 0.1),
         measured(case, adapt, 0.1, num_tasks=MC_TASKS, seed=1 if adapt == "top" else 2))

# %% [markdown]
# ## 2. More inner steps?
#
# With only the top layer adapted the net is the shallow model with the step matrix
# `P = α W₁ᵀW₁`, and `expected_deep_loss(..., steps=k)` is exact for every `k`. With several
# layers and `k > 1` the exact sum has too many terms and the theory refuses (one line,
# `TermLimitError`): there the Monte Carlo estimate is the only reference.

# %%
for k in (1, 2, 3):
    show(f"adapt 'top', k = {k}", exact(case, "top", 0.1, k),
         measured(case, "top", 0.1, k, num_tasks=MC_TASKS, seed=10 + k))
for k in (1, 2):
    try:
        th: float | None = exact(case, "all", 0.1, k)
    except TermLimitError as exc:
        th = None
        print(f"(theory for adapt 'all', k = {k}: {str(exc).splitlines()[0][:90]}…)")
    show(f"adapt 'all', k = {k}", th, measured(case, "all", 0.1, k, num_tasks=MC_TASKS,
                                               seed=20 + k))

# %% [markdown]
# How far can `k` steps go at best? At `W = W̄` the best step matrix for `k` steps,
# `optimal_preconditioner(..., kind="full", steps=k)` (exact loss, optimised numerically for
# `k > 1`), is what a deep net's frozen layers could at best realise; the best scalar step
# is plain MAML's best. (The matrix takes a few seconds per `k > 1`; the tiny budget skips
# `k = 2`.)

# %%
for k in (1,) if BUDGET == "tiny" else (1, 2):
    scalar = optimal_preconditioner(case["Sigma"], case["Lam"], SIGMA, N, kind="scalar", steps=k)
    full = optimal_preconditioner(case["Sigma"], case["Lam"], SIGMA, N, kind="full", steps=k)
    print(f"k = {k}: best scalar step E L_k(alpha_k* I) = {scalar.loss:.5f}, best matrix "
          f"E L_k(P*_k) = {full.loss:.5f} ({full.method})")

# %% [markdown]
# ## 3. Write the hypothesis as a claim
#
# A claim is a function of a `RunContext` returning `ctx.result(...)`: a verdict, the
# measured value, its theoretical value and a confidence interval. This one draws random
# families and networks, measures the relative gain of all layers over ANIL,
# `(E ℒ_top − E ℒ_all) / E ℒ_top`, on independent Monte Carlo tasks, and passes when every
# case's gain is above 0 at a Bonferroni-corrected 95% level (fails when any is below).
# The theory is the same gain from `expected_deep_loss`, averaged with the same weights.
# `make_claim` registers one claim per step size, so that we can also try a step size where
# theory says the hypothesis is false.


# %%
def make_claim(alpha: float) -> str:
    claim_id = f"tutorial-all-layers-beat-anil-alpha-{alpha:g}"
    CLAIMS.pop(claim_id, None)  # re-running this cell replaces the claim

    @claim(claim_id, title=f"All layers beat ANIL at α = {alpha:g}",
           statement=f"After one inner step of size {alpha:g}, adapting both layers of a "
                     "random two-layer linear network gives a lower expected loss than "
                     "adapting the top layer only.",
           reference="docs/theory/exact-expectation.md (expected_deep_loss); tutorial",
           budgets=("quick", "full"), suite="neighbours")
    def run(ctx: RunContext) -> ClaimResult:
        rng = np.random.default_rng(ctx.seed + 100)
        K = max(3, ctx.budget.cases // 8)
        level = 1 - 0.05 / K  # Bonferroni: all K cases at family-wise 95%
        gains, ses, exact_gains, verdicts = [], [], [], []
        for i in range(K):
            c = random_case(rng)
            top = measured(c, "top", alpha, num_tasks=ctx.budget.mc_tasks, seed=2 * i)
            alls = measured(c, "all", alpha, num_tasks=ctx.budget.mc_tasks, seed=2 * i + 1)
            gain = (top.mean - alls.mean) / top.mean
            # independent estimates: delta-method standard error of the ratio
            se = float(np.hypot(alls.mean * top.stderr / top.mean ** 2,
                                alls.stderr / top.mean))
            gains.append(gain)
            ses.append(se)
            t_top, t_all = exact(c, "top", alpha), exact(c, "all", alpha)
            exact_gains.append((t_top - t_all) / t_top)
            verdicts.append(stats.verdict_above(
                stats.from_standard_error(gain, se, ctx.budget.mc_tasks, level), 0.0))
        iv = stats.weighted_mean_interval(gains, ses)
        w = 1 / np.square(ses)
        theory = float(np.sum(w * np.array(exact_gains)) / np.sum(w))
        return ctx.result(
            verdict=stats.combine(verdicts), measured=iv.estimate, theory=theory, interval=iv,
            effect="weighted mean relative gain of all layers over ANIL",
            summary=f"{K} random cases × {ctx.budget.mc_tasks} tasks; gain > 0 in "
                    f"{verdicts.count('pass')} of {K} (Bonferroni 95%), < 0 in "
                    f"{verdicts.count('fail')}",
            config={"alpha": alpha, "cases": K, "mc_tasks": ctx.budget.mc_tasks},
            details={"gains": gains, "stderr": ses, "exact_gains": exact_gains})

    return claim_id


# %% [markdown]
# Run it at α = 0.1 (theory: true) and at α = 0.8 (theory: false) — a claim that can fail
# is a claim worth having.

# %%
quick = BUDGETS["quick"]
budget = (Budget("tiny", cases=24, mc_tasks=10_000, meta_steps=quick.meta_steps,
                 population_steps=quick.population_steps, seeds=quick.seeds,
                 eval_tasks=quick.eval_tasks, nonlinear=False)
          if BUDGET == "tiny" else quick)
verdicts = {}
for alpha in (0.1, 0.8):
    cid = make_claim(alpha)
    r = run_claim(CLAIMS[cid], RunContext(cid, budget, seed=0))
    verdicts[cid] = r.verdict
    lo, hi = r.ci
    print(f"{cid}: {r.verdict} — measured gain {r.measured:+.4f} [{lo:+.4f}, {hi:+.4f}], "
          f"theory {r.theory:+.4f}  ({r.summary}; {r.seconds:.1f} s)")
    rows.append({"what": f"{cid} (weighted mean gain)", "theory": r.theory,
                 "measured": r.measured, "se": (hi - lo) / (2 * 1.959963984540054),
                 "n": r.n * budget.mc_tasks})  # tasks per arm, over all cases

# %% [markdown]
# To run your claim like the paper's, put `make_claim` and its helpers in a file, say
# `my_claims.py`, and call `make_claim(0.1)` there; then
#
# ```
# maml-depth validate --plugin ./my_claims.py --claims tutorial-all-layers-beat-anil-alpha-0.1
# ```
#
# writes `report.md` / `report.json` as for every claim (`--suite neighbours` lists it with
# the other claims outside the paper).

# %%
atomic_write_json(OUT / "theory_vs_measurement.json",
                  {"tutorial": "your_own_hypothesis", "budget": BUDGET, "verdicts": verdicts,
                   "rows": rows, "seconds": time.perf_counter() - t_start})
print(f"wrote {OUT / 'theory_vs_measurement.json'} ({time.perf_counter() - t_start:.1f} s)")
