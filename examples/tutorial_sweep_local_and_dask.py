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
# # Sweep a grid, locally and on Dask
#
# `maml_depth.sweep` runs a grid of meta-training experiments: each *point* meta-trains a
# (deep) linear network on Gaussian linear-regression tasks and records its post-adaptation
# loss on fresh tasks beside the closed-form prediction — `E ℒ(αI)` for the shallow model,
# `E ℒ(P*)` for a deep one that adapts its top layer
# ([optimal preconditioner](../docs/theory/expected-loss.md#optimal-preconditioner)). Every
# finished point is stored at once, so an interrupted sweep resumes
# ([sweeps](../docs/sweeps.md)).
#
# This tutorial runs one small grid twice: on a local process pool, and on a Dask
# `LocalCluster` started in this process — the same code takes a sweep to a cluster
# (`scheduler="tcp://…"`). The command-line equivalent is
# `maml-depth sweep examples/sweep_depth.toml [--executor dask] [--scheduler tcp://…]`.
#
# Run it: `python examples/tutorial_sweep_local_and_dask.py` (about 30 s on 2 cores);
# `MAML_DEPTH_TUTORIAL_BUDGET=tiny` trains for only 10 steps (about 15 s; the numbers then
# show an untrained network, far from the theory).
# Open it as a notebook: `jupytext --to notebook examples/tutorial_sweep_local_and_dask.py`.
#
# A process pool starts fresh Python processes that import this file again: the cells that
# start work are therefore under `if __name__ == "__main__":` (true in a notebook and when
# the file is run), so that the workers' import does nothing.

# %%
import os
import time
from pathlib import Path

from maml_depth._io import atomic_write_json
from maml_depth.errors import ConfigError
from maml_depth.sweep import load_frame, parse_config, run_sweep

BUDGET = os.environ.get("MAML_DEPTH_TUTORIAL_BUDGET", "default")
if BUDGET not in ("tiny", "default"):
    raise ConfigError(f"MAML_DEPTH_TUTORIAL_BUDGET must be 'tiny' or 'default', got {BUDGET!r}")
OUT = Path(os.environ.get("MAML_DEPTH_TUTORIAL_OUT", "results/tutorials/sweep_local_and_dask"))
WORKERS = 2  # worker processes of the local pool, and Dask workers
t_start = time.perf_counter()

# %% [markdown]
# ## The grid
#
# The same schema as a sweep file (`examples/sweep_depth.toml`), here as a dict: depth 1
# (the shallow model) against depth 2 (top layer adapted), on rotated, anisotropic tasks.

# %%
config = {
    "sweep": {"name": "tutorial-depth", "x": "depth"},
    "fixed": {"d": 3, "width": 6, "adapt": "top", "alpha": 0.1, "shots": 10,
              "anisotropy": 10.0, "rotation": True, "noise": 0.1, "init_scale": 1.0,
              "meta_batch": 16 if BUDGET == "tiny" else 32, "lr": 0.05,
              "meta_steps": 10 if BUDGET == "tiny" else 600,
              "eval_tasks": 100 if BUDGET == "tiny" else 2000},
    "grid": {"depth": [1, 2], "seed": [0] if BUDGET == "tiny" else [0, 1]},
}
cfg = parse_config(config)  # checked up front: a bad key or value is one line naming it
points = cfg.expand()
if __name__ == "__main__":
    print(f"{len(points)} points:", [(p.params["depth"], p.params["seed"]) for p in points])

# %% [markdown]
# ## Locally: a process pool
#
# `executor="local"` runs the points on a `ProcessPoolExecutor` (one torch thread per
# worker); `run_sweep` writes `store/<key>.json` per point, then `summary.md`, `summary.csv`
# and `hypothesis.png`.

# %%
if __name__ == "__main__":
    t0 = time.perf_counter()
    local = run_sweep(cfg, out=OUT / "local", executor="local", workers=WORKERS, progress=False)
    t_local = time.perf_counter() - t0
    print(f"local: {local.computed} ran, {local.failed} failed, {local.skipped} stored before "
          f"({t_local:.1f} s)")
    print((OUT / "local" / "summary.md").read_text())

# %% [markdown]
# Run it again with `resume=True`: every point is already stored, nothing runs.

# %%
if __name__ == "__main__":
    again = run_sweep(cfg, out=OUT / "local", executor="local", workers=WORKERS, resume=True,
                      progress=False)
    print(f"resume: {again.computed} ran, {again.skipped} already stored")

# %% [markdown]
# ## On Dask
#
# Pass a `distributed.Client` as the executor. Here the cluster is a `LocalCluster` inside
# this process (threads, no extra processes); on a real cluster it would be
# `Client("tcp://scheduler:8786")` — or `executor="dask", scheduler="tcp://…"` — with
# `maml-depth` installed on the workers.

# %%
if __name__ == "__main__":
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    with LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        on_dask = run_sweep(cfg, out=OUT / "dask", executor=client, progress=False)
    t_dask = time.perf_counter() - t0
    print(f"dask: {on_dask.computed} ran, {on_dask.failed} failed ({t_dask:.1f} s)")

# %% [markdown]
# ## Theory beside measurement
#
# `load_frame` reads a store as a table. Every point is seeded, so the local and the Dask
# run measured the same numbers; each point's post-adaptation loss (mean ± standard error
# over `eval_tasks` fresh tasks) stands beside its closed-form prediction.

# %%
if __name__ == "__main__":
    local_df = load_frame(OUT / "local").set_index("key")
    dask_df = load_frame(OUT / "dask").set_index("key")
    rows = []
    print(f"{'depth':>5} {'seed':>4}  {'theory':>8}  {'local':>17}  {'dask':>8}  kind")
    for p in points:
        loc, dsk = local_df.loc[p.key], dask_df.loc[p.key]
        print(f"{p.params['depth']:5d} {p.params['seed']:4d}  {loc['theory_loss']:8.4f}  "
              f"{loc['post_loss']:8.4f} ± {loc['post_loss_se']:.4f}  {dsk['post_loss']:8.4f}  "
              f"{loc['theory_kind']}")
        rows.append({"what": f"depth {p.params['depth']} seed {p.params['seed']}",
                     "theory": float(loc["theory_loss"]), "measured": float(loc["post_loss"]),
                     "se": float(loc["post_loss_se"]), "measured_dask": float(dsk["post_loss"]),
                     "steps_done": int(loc["steps_done"])})
    atomic_write_json(OUT / "theory_vs_measurement.json",
                      {"tutorial": "sweep_local_and_dask", "budget": BUDGET, "rows": rows,
                       "meta_steps": config["fixed"]["meta_steps"],
                       "ran": {"local": local.computed, "resume": again.computed,
                               "dask": on_dask.computed},
                       "seconds": time.perf_counter() - t_start})
    print(f"wrote {OUT / 'theory_vs_measurement.json'} ({time.perf_counter() - t_start:.1f} s)")
