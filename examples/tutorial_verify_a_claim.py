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
# # Verify a claim
#
# The paper's claims are registered checks ([the claims](../docs/theory/paper-claims.md)):
# each measures something, computes what the theory says it should be, and returns a
# verdict — `pass`, `fail`, `inconclusive`, `error` or `not available` — with a 95%
# confidence interval. This tutorial runs one of them, claim 2 (`expected-loss`: the closed
# form of the expected loss after one MAML step equals a Monte Carlo estimate), first from
# Python and then from the command line, and reads its result: the theory beside the
# measurement, case by case.
#
# Run it: `python examples/tutorial_verify_a_claim.py` (about 10 s on one core);
# `MAML_DEPTH_TUTORIAL_BUDGET=tiny` runs the Python part with a smaller budget.
# Open it as a notebook: `jupytext --to notebook examples/tutorial_verify_a_claim.py`.

# %%
import json
import os
import time
from pathlib import Path

from maml_depth._io import atomic_write_json
from maml_depth.cli import main as maml_depth_cli
from maml_depth.errors import ConfigError
from maml_depth.validation import BUDGETS, CLAIMS, Budget, RunContext, run_claim

BUDGET = os.environ.get("MAML_DEPTH_TUTORIAL_BUDGET", "default")
if BUDGET not in ("tiny", "default"):
    raise ConfigError(f"MAML_DEPTH_TUTORIAL_BUDGET must be 'tiny' or 'default', got {BUDGET!r}")
OUT = Path(os.environ.get("MAML_DEPTH_TUTORIAL_OUT", "results/tutorials/verify_a_claim"))
t_start = time.perf_counter()

# %% [markdown]
# ## The registry
#
# `CLAIMS` maps each claim id to its title, statement, reference and the budgets whose
# default run includes it (`maml-depth validate --list` prints the same).

# %%
for c in sorted(CLAIMS.values(), key=lambda c: (c.number is None, c.number or 0, c.id)):
    if c.suite == "paper":
        print(f"{c.id:28s} {c.title}  [budgets: {', '.join(c.budgets)}]")

# %%
claim = CLAIMS["expected-loss"]
print(claim.statement)
print("reference:", claim.reference)

# %% [markdown]
# ## Run it from Python
#
# A claim receives a `RunContext`: its budget (how many random cases, how many Monte Carlo
# tasks, …), a seed and a device. `BUDGETS["quick"]` is what `make validate` uses; any
# `Budget` works, e.g. a smaller one while you explore. `run_claim` never raises: a claim
# that crashes gets the verdict `error`, never `fail`.

# %%
quick = BUDGETS["quick"]
if BUDGET == "tiny":  # 5 random task families × 20 000 tasks instead of 10 × 100 000
    budget = Budget("tiny", cases=20, mc_tasks=20_000, meta_steps=quick.meta_steps,
                    population_steps=quick.population_steps, seeds=quick.seeds,
                    eval_tasks=quick.eval_tasks, nonlinear=False)
else:
    budget = quick
result = run_claim(claim, RunContext(claim.id, budget, seed=0, device="cpu"))
print(f"verdict:  {result.verdict}  ({result.seconds:.1f} s)")
lo, hi = result.ci
print(f"measured: {result.measured:.3g}   theory: {result.theory}   "
      f"{100 * result.ci_level:.0f}% CI [{lo:.3g}, {hi:.3g}]   n = {result.n}")
print(f"effect:   {result.effect}")
print(f"summary:  {result.summary}")

# %% [markdown]
# The claim's headline number is the mean relative deviation of Monte Carlo from the closed
# form (theory: 0); it passes when the 95% interval lies within ±1% and no single case is
# off by more than the Bonferroni bound. Its `details` keep every case — the theory beside
# the measurement:

# %%
rows = []
print(f"{'d':>2} {'m':>2} {'rank Λ':>6} {'n':>3}   {'closed form':>11}   {'Monte Carlo':>11} "
      f"± {'stderr':<8} {'z':>6}")
for case in result.details["cases"]:
    print(f"{case['d']:2d} {case['m']:2d} {case['rank']:6d} {case['n']:3d}   "
          f"{case['closed_form']:11.5f}   {case['monte_carlo']:11.5f} ± {case['stderr']:<8.5f} "
          f"{case['z']:+6.2f}")
    rows.append({"what": f"case d={case['d']} m={case['m']} n={case['n']}",
                 "theory": case["closed_form"], "measured": case["monte_carlo"],
                 "se": case["stderr"], "n": budget.mc_tasks})

# %% [markdown]
# ## Run it from the command line
#
# The same claim through `maml-depth validate` (here called in-process; in a shell it is
# the command printed below). It writes `report.md` and `report.json` into `--out`; the exit
# code is 0 only when every selected claim passes.

# %%
argv = ["validate", "--claims", claim.id, "--budget", "quick", "--seed", "0",
        "--out", str(OUT / "validate"), "--no-progress"]
print("$ maml-depth " + " ".join(argv))
code = maml_depth_cli(argv)
report = json.loads((OUT / "validate" / "report.json").read_text())
entry = report["claims"][0]
print(f"exit code {code}; {entry['id']}: {entry['verdict']}, measured {entry['measured']:.3g}, "
      f"theory {entry['theory']}, CI [{entry['ci'][0]:.3g}, {entry['ci'][1]:.3g}], "
      f"n = {entry['n']}")

# %%
atomic_write_json(OUT / "theory_vs_measurement.json",
                  {"tutorial": "verify_a_claim", "budget": BUDGET, "verdict": result.verdict,
                   "cli_exit_code": code, "cli_verdict": entry["verdict"], "rows": rows,
                   "z_bound": result.details["z_crit"],
                   "seconds": time.perf_counter() - t_start})
print(f"wrote {OUT / 'theory_vs_measurement.json'} ({time.perf_counter() - t_start:.1f} s)")
