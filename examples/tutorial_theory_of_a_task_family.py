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
# # The theory of a task family
#
# A *task family* is Gaussian linear regression: a task is a map `W_t = W̄ + Z` (rows of `Z`
# drawn from `N(0, Λ)`), its support set `n` inputs `x ~ N(0, Σ)` with labels
# `y = W_t x + ε`, `ε ~ N(0, σ² I)`, and its loss the population query loss
# ([notation](../docs/theory/notation.md#task-family)). For such a family the package knows,
# *exactly*, the expected loss after adaptation:
#
# - `reference_losses`: `E ℒ(αI)` of plain MAML, the best scalar step `α*`, and the best
#   step *matrix* `P*` with its loss `E ℒ(P*)` — the target a deep network's frozen layers
#   can reach ([optimal preconditioner](../docs/theory/expected-loss.md#optimal-preconditioner));
# - `expected_loss(..., steps=k)`: the expected loss after `k` inner steps on one support
#   set — the closed form at `k = 1`, an exact Wick sum for `k > 1`
#   ([exact expectations](../docs/theory/exact-expectation.md));
# - `expected_deep_loss`: the same for a deep linear network adapting any of its layers.
#
# This tutorial computes each of them and puts a Monte Carlo estimate beside it (fresh
# tasks, exact population loss per task), with the estimate's 95% interval.
#
# Run it: `python examples/tutorial_theory_of_a_task_family.py` (about 15 s on one core);
# `MAML_DEPTH_TUTORIAL_BUDGET=tiny` runs it with fewer Monte Carlo tasks (a few seconds).
# Open it as a notebook: `jupytext --to notebook examples/tutorial_theory_of_a_task_family.py`.

# %%
import os
import time
from pathlib import Path

import numpy as np
import torch

from maml_depth._io import atomic_write_json
from maml_depth.errors import ConfigError
from maml_depth.numerics import LinearRegressionTasks, monte_carlo_deep_loss, monte_carlo_loss
from maml_depth.theory import (
    expected_deep_loss,
    expected_loss,
    optimal_preconditioner,
    reference_losses,
)

BUDGET = os.environ.get("MAML_DEPTH_TUTORIAL_BUDGET", "default")
if BUDGET not in ("tiny", "default"):
    raise ConfigError(f"MAML_DEPTH_TUTORIAL_BUDGET must be 'tiny' or 'default', got {BUDGET!r}")
OUT = Path(os.environ.get("MAML_DEPTH_TUTORIAL_OUT", "results/tutorials/theory_of_a_task_family"))
MC_TASKS = 20_000 if BUDGET == "tiny" else 200_000  # Monte Carlo tasks per estimate
rows: list[dict] = []  # theory beside measurement, written to OUT at the end
t_start = time.perf_counter()


def show(what: str, theory: float, est) -> None:
    """Print the exact value beside the Monte Carlo estimate and keep the row."""
    lo, hi = est.interval(0.95)
    z = (est.mean - theory) / est.stderr
    print(f"{what:38s} theory {theory:9.5f}   Monte Carlo {est.mean:9.5f} "
          f"[{lo:.5f}, {hi:.5f}]   z = {z:+.2f}")
    rows.append({"what": what, "theory": theory, "measured": est.mean, "se": est.stderr,
                 "n": est.num_tasks})


# %% [markdown]
# ## The family
#
# `d = 4` inputs, one output, an anisotropic input covariance (eigenvalues 0.25 … 2 in a
# random basis), a task covariance `Λ` of rank 2 (the tasks vary in a plane only), a task
# mean `W̄` in the range of `Λ`, label noise `σ = 0.3` and `n = 8` support samples.

# %%
rng = np.random.default_rng(0)
d, n, sigma, alpha = 4, 8, 0.3, 0.25
Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
Sigma = Q @ np.diag([2.0, 1.0, 0.5, 0.25]) @ Q.T
U, _ = np.linalg.qr(rng.standard_normal((d, d)))
Lam = U[:, :2] @ np.diag([1.0, 0.4]) @ U[:, :2].T
W_bar = (U[:, :2] @ np.array([0.5, -0.3]))[None, :]  # (m, d) = (1, 4), in range(Λ)
tasks = LinearRegressionTasks(torch.from_numpy(Sigma), torch.from_numpy(W_bar),
                              torch.from_numpy(Lam), sigma, n)
print("eigenvalues of Σ:", np.round(np.linalg.eigvalsh(Sigma), 3))
print("eigenvalues of Λ:", np.round(np.linalg.eigvalsh(Lam), 3))

# %% [markdown]
# ## Reference losses at `W = W̄`
#
# `reference_losses` gives the three numbers every claim about depth is measured against:
# the loss of MAML with our step `α`, with the best scalar step `α*`, and with the best step
# matrix `P*` (what adapting the top layer of a deep linear network can realise, since its
# frozen layers act as `P = α B_Lᵀ B_L`). Each is then *measured*: the same update on
# `MC_TASKS` fresh tasks.

# %%
ref = reference_losses(Sigma, Lam, sigma, n, alpha)
print(f"α = {ref.alpha},  α* = {ref.alpha_star:.4f}")
print("P* =\n", np.round(ref.P_star, 3))
W0 = torch.from_numpy(W_bar)
show("E L(alpha I)", ref.loss_alpha, monte_carlo_loss(tasks, W0, alpha=alpha,
                                                       num_tasks=MC_TASKS, seed=1))
show("E L(alpha* I)", ref.loss_alpha_star,
     monte_carlo_loss(tasks, W0, alpha=ref.alpha_star, num_tasks=MC_TASKS, seed=2))
show("E L(P*)", ref.loss_P_star,
     monte_carlo_loss(tasks, W0, alpha=1.0, R=torch.from_numpy(ref.P_star),
                      num_tasks=MC_TASKS, seed=3))

# %% [markdown]
# `P*` is optimal among *all* step matrices, so `E ℒ(P*) ≤ E ℒ(α*I) ≤ E ℒ(αI)`; the gap
# between the first two is what depth can buy on this family.

# %%
print(f"gain of the best matrix over the best scalar step: "
      f"{ref.loss_alpha_star - ref.loss_P_star:.5f} "
      f"({100 * (ref.loss_alpha_star - ref.loss_P_star) / ref.loss_alpha_star:.1f}%)")

# %% [markdown]
# ## k inner steps, exactly
#
# With `k` steps on the same support set the adapted map is a polynomial of degree `2k` in
# the data; `expected_loss(..., steps=k)` is its exact expectation (exact in `n`, not an
# asymptotic). We start away from the mean, at a random `W`, where the steps matter most.

# %%
W = W_bar + 0.5 * rng.standard_normal((1, d))
for k in (1, 2, 3):
    t0 = time.perf_counter()
    exact = float(expected_loss(W, W_bar=W_bar, Sigma=Sigma, Lam=Lam, sigma=sigma, n=n,
                                alpha=alpha, steps=k))
    t_exact = time.perf_counter() - t0
    show(f"E L after k = {k} steps (exact: {t_exact:.2f} s)", exact,
         monte_carlo_loss(tasks, torch.from_numpy(W), alpha=alpha, steps=k,
                          num_tasks=MC_TASKS, seed=10 + k))

# %% [markdown]
# The best scalar step depends on `k`: `optimal_preconditioner(kind="scalar", steps=k)`
# recovers the degree-`2k` polynomial `E ℒ_k(αI)` exactly and returns its best critical
# point `α_k*`. More steps on the same data call for a smaller step.

# %%
for k in (1, 2, 3):
    best = optimal_preconditioner(Sigma, Lam, sigma, n, kind="scalar", steps=k)
    show(f"E L_k(alpha_k* I), k = {k}, alpha_k* = {best.alpha:.3f}", best.loss,
         monte_carlo_loss(tasks, W0, alpha=float(best.alpha), steps=k, num_tasks=MC_TASKS,
                          seed=20 + k))

# %% [markdown]
# ## A deep linear network
#
# A random two-layer network `W = W₂W₁` (hidden width 4) adapts its top layer (`"top"`, i.e. ANIL),
# its bottom layer (`1`) or both (`"all"`); `expected_deep_loss` is exact for each.
# Adapting the top layer alone is the shallow update `W ← W − α G W₁ᵀW₁` (`L = I`,
# `R = W₁ᵀW₁`), so it must equal `expected_loss` with that `R` — a check the theory makes on itself.

# %%
W1, _ = np.linalg.qr(rng.standard_normal((4, d)))  # an orthogonal input layer
W2 = 0.6 * rng.standard_normal((1, 4))               # a random output layer
weights = [W1, W2]
top_as_shallow = float(expected_loss(W2 @ W1, W_bar=W_bar, Sigma=Sigma, Lam=Lam, sigma=sigma,
                                     n=n, alpha=alpha, R=W1.T @ W1))
top = float(expected_deep_loss(weights, adapt="top", W_bar=W_bar, Sigma=Sigma, Lam=Lam,
                               sigma=sigma, n=n, alpha=alpha))
print(f"adapt top: expected_deep_loss {top:.10f} = expected_loss with R = W1ᵀW1 "
      f"{top_as_shallow:.10f}")
tw = [torch.from_numpy(w) for w in weights]
for adapt in ("top", 1, "all"):
    exact = float(expected_deep_loss(weights, adapt=adapt, W_bar=W_bar, Sigma=Sigma, Lam=Lam,
                                     sigma=sigma, n=n, alpha=alpha))
    show(f"deep net, adapt = {adapt!r}", exact,
         monte_carlo_deep_loss(tasks, tw, alpha=alpha, adapt=adapt, num_tasks=MC_TASKS,
                               seed=30 + len(str(adapt))))

# %% [markdown]
# ## Theory beside measurement
#
# Every row: the exact value, the Monte Carlo mean and its 95% interval, and
# `z = (measured − theory) / standard error`. With exact theory, `|z|` stays below the
# Bonferroni bound for the number of rows (family-wise 95%) — the test of this tutorial
# checks exactly that.

# %%
from scipy.stats import norm  # noqa: E402

z_bound = float(norm.ppf(1 - 0.05 / (2 * len(rows))))
worst = max(abs(r["measured"] - r["theory"]) / r["se"] for r in rows)
print(f"{len(rows)} comparisons, {MC_TASKS} tasks each: max |z| = {worst:.2f} "
      f"(Bonferroni bound {z_bound:.2f} at family-wise 95%)")
atomic_write_json(OUT / "theory_vs_measurement.json",
                  {"tutorial": "theory_of_a_task_family", "budget": BUDGET, "rows": rows,
                   "seconds": time.perf_counter() - t_start})
print(f"wrote {OUT / 'theory_vs_measurement.json'} "
      f"({time.perf_counter() - t_start:.1f} s)")
