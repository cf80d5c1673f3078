"""Closed-form expected loss (docs/theory/expected-loss.md#closed-form) vs a Monte Carlo estimate
of equal precision.

"Equal precision": the closed form is exact up to float64 round-off; the Monte Carlo
estimate is run with enough tasks that its standard error is ``rel_precision`` (default
10⁻³) times the expected loss — the number of tasks is ``(s / (rel_precision · E ℒ))²``
with ``s`` the per-task standard deviation measured on a pilot run. That is generous to
Monte Carlo (its error is still 10¹² times the closed form's). Reported: both timings, the
number of tasks, and the speed-up (target ≥ 1000×). When the required Monte Carlo run would
exceed the time budget, its time is extrapolated linearly from a timed run of as many tasks
as fit (marked "extrapolated").

References: docs/theory/expected-loss.md#closed-form; Arnold, Iqbal, Sha (AISTATS 2021), §3.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import torch

from maml_depth.benchmarks.table import Table, machine_description

#: (d, m, n) settings of the default run
DEFAULT_SETTINGS: tuple[tuple[int, int, int], ...] = ((4, 1, 10), (16, 4, 20), (32, 8, 50))


def _problem(d: int, m: int, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    Sigma = (q * np.geomspace(0.3, 3.0, d)) @ q.T
    q2, _ = np.linalg.qr(rng.standard_normal((d, d)))
    Lam = (q2 * np.geomspace(1.0, 0.1, d)) @ q2.T / d
    W_bar = rng.standard_normal((m, d)) / math.sqrt(d)
    return dict(
        W=W_bar + 0.3 * rng.standard_normal((m, d)) / math.sqrt(d), W_bar=W_bar,
        Sigma=0.5 * (Sigma + Sigma.T), Lam=0.5 * (Lam + Lam.T), sigma=0.5, n=n,
        alpha=0.5 / (3.0 * (1 + (d + 1) / n)),
        L=np.eye(m) + 0.2 * rng.standard_normal((m, m)) / math.sqrt(m),
        R=np.eye(d) + 0.2 * rng.standard_normal((d, d)) / math.sqrt(d),
    )


def _time_closed_form(p: dict, repeats: int) -> tuple[float, float]:
    from maml_depth.theory import expected_loss

    kw = {k: v for k, v in p.items() if k != "W"}
    value = expected_loss(p["W"], **kw)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(repeats):
            expected_loss(p["W"], **kw)
        times.append((time.perf_counter() - t0) / repeats)
    return float(value), min(times)


def run(
    *,
    rel_precision: float = 1e-3,
    settings: Sequence[tuple[int, int, int]] = DEFAULT_SETTINGS,
    mc_budget_s: float = 12.0,
    pilot_tasks: int = 20_000,
    seed: int = 0,
    four_layers: bool = False,
) -> list[Table]:
    """Time the closed form and an equal-precision Monte Carlo estimate for each (d, m, n).

    Args:
        four_layers: add the four-adapted-layer row to the exact table (:func:`run_exact`).
        rel_precision: target Monte Carlo standard error relative to E ℒ.
        settings: (d, m, n) triples.
        mc_budget_s: wall-clock budget per setting for the Monte Carlo run; beyond it the
            Monte Carlo time is extrapolated.
        pilot_tasks: tasks of the pilot run that measures the per-task spread.
        seed: seed of the problem and of the Monte Carlo generators.
    """
    from maml_depth.numerics.monte_carlo import monte_carlo_loss
    from maml_depth.numerics.tasks import LinearRegressionTasks

    table = Table(
        "Expected post-adaptation loss: closed form vs Monte Carlo of equal precision",
        ["d, m, n", "E ℒ closed form", "MC estimate", "tasks for SE = "
         f"{rel_precision:g}·E ℒ", "closed form (µs)", "MC (s)", "speed-up", "MC timing"],
    )
    for d, m, n in settings:
        p = _problem(d, m, n, seed)
        value, t_closed = _time_closed_form(p, repeats=200)
        t = torch.from_numpy
        fam = LinearRegressionTasks(t(p["Sigma"]), t(p["W_bar"]), t(p["Lam"]), p["sigma"], n)
        kw = dict(alpha=p["alpha"], L=t(p["L"]), R=t(p["R"]))
        t0 = time.perf_counter()
        pilot = monte_carlo_loss(fam, t(p["W"]), num_tasks=pilot_tasks, seed=seed + 1, **kw)
        t_pilot = time.perf_counter() - t0
        spread = pilot.stderr * math.sqrt(pilot.num_tasks)
        needed = max(2, math.ceil((spread / (rel_precision * abs(value))) ** 2))
        per_task = t_pilot / pilot_tasks
        affordable = int(mc_budget_s / per_task)
        if needed <= affordable:
            t0 = time.perf_counter()
            est = monte_carlo_loss(fam, t(p["W"]), num_tasks=needed, seed=seed + 2, **kw)
            t_mc = time.perf_counter() - t0
            how = "measured"
        else:
            run_tasks = max(pilot_tasks, affordable)
            t0 = time.perf_counter()
            est = monte_carlo_loss(fam, t(p["W"]), num_tasks=run_tasks, seed=seed + 2, **kw)
            t_mc = (time.perf_counter() - t0) * needed / run_tasks
            how = f"extrapolated from {run_tasks} tasks"
        table.add(
            f"{d}, {m}, {n}", value, f"{est.mean:.6g} ± {est.stderr:.2g} "
            f"(z = {est.z_score(value):+.2f})", needed, t_closed * 1e6, t_mc,
            t_mc / t_closed, how,
        )
    table.notes += [
        f"Equal precision: Monte Carlo standard error = {rel_precision:g} × E ℒ (tasks = "
        "(s / (rel · E ℒ))², s the per-task standard deviation from a "
        f"{pilot_tasks}-task pilot); the closed form is exact to float64 round-off.",
        "Closed form: maml_depth.theory.expected_loss on numpy arrays, argument validation "
        "included (eigenvalue checks of Σ and Λ), best of 5 × 200 calls.",
        "Monte Carlo: maml_depth.numerics.monte_carlo_loss (vectorised torch, chunks of "
        "16384 tasks, exact population query loss per task); z compares it with the closed "
        "form (an estimate: |z| ≲ 3 expected).",
        "Update W' = W − α L G R with random L, R near the identity; rotated anisotropic Σ, Λ.",
        f"Machine: {machine_description()}",
    ]
    return [table, *run_exact(seed=seed, four_layers=four_layers)]


def _exact_problem(d: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    Sigma = (q * np.geomspace(0.5, 2.0, d)) @ q.T
    q2, _ = np.linalg.qr(rng.standard_normal((d, d)))
    Lam = (q2 * np.geomspace(1.0, 0.2, d)) @ q2.T / d
    W_bar = rng.standard_normal((1, d)) / math.sqrt(d)
    weights = [np.eye(d) + 0.3 * rng.standard_normal((d, d)) / math.sqrt(d) for _ in range(2)]
    weights.append(W_bar + 0.3 * rng.standard_normal((1, d)) / math.sqrt(d))
    weights4 = [np.eye(d) + 0.3 * rng.standard_normal((d, d)) / math.sqrt(d) for _ in range(3)]
    weights4.append(W_bar + 0.3 * rng.standard_normal((1, d)) / math.sqrt(d))
    return dict(Sigma=0.5 * (Sigma + Sigma.T), Lam=0.5 * (Lam + Lam.T), W_bar=W_bar,
                W=W_bar + 0.3 * rng.standard_normal((1, d)) / math.sqrt(d), weights=weights,
                weights4=weights4, sigma=0.5, n=20, alpha=0.1)


def _derivation_note() -> str:
    """The measured one-time derivation of every structure derived (or loaded) here."""
    from maml_depth.theory import exact_expectation as ee

    parts = [f"{kind} {spec}: {len(der):,} terms, derived in {der.seconds:.1f} s"
             for (kind, spec), der in ee._DERIVATIONS.items() if der.seconds > 0]
    return "measured derivations: " + ("; ".join(parts) or "none") + "."


def run_exact(*, d: int = 8, rel_precision: float = 1e-4, mc_budget_s: float = 10.0,
              pilot_tasks: int = 20_000, seed: int = 0,
              four_layers: bool = False) -> list[Table]:
    """Exact k-step / several-layer expected losses vs the Monte Carlo reaching
    ``SE = rel_precision · E ℒ`` (d = 8, m = 1), all measured in this one run.

    Rows: ``expected_loss`` with steps = 2 and 3 (L = I, random R); ``expected_deep_loss``
    of a depth-3 net (widths 8) adapting all three layers, one step (and, with
    ``four_layers``, a depth-4 net adapting all four: the reach). Reported: the one-time
    derivation (cached per structure), the evaluation after it (best of 5), the Monte Carlo
    time (measured, or extrapolated linearly from a timed run within ``mc_budget_s``) and the
    ratio. Targets: evaluation < 1 s (shallow), < 5 s (three layers), ratio ≥ 100.
    """
    from maml_depth.numerics.monte_carlo import monte_carlo_deep_loss, monte_carlo_loss
    from maml_depth.numerics.tasks import LinearRegressionTasks
    from maml_depth.theory import expected_deep_loss, expected_loss

    p = _exact_problem(d, seed)
    t = torch.from_numpy
    fam = LinearRegressionTasks(t(p["Sigma"]), t(p["W_bar"]), t(p["Lam"]), p["sigma"], p["n"])
    R = np.eye(d) + 0.2 * np.random.default_rng(seed + 5).standard_normal((d, d)) / math.sqrt(d)
    fkw = dict(W_bar=p["W_bar"], Sigma=p["Sigma"], Lam=p["Lam"], sigma=p["sigma"], n=p["n"],
               alpha=p["alpha"])
    cases = [
        ("expected_loss, steps = 2", lambda: expected_loss(p["W"], R=R, steps=2, **fkw),
         lambda k, s: monte_carlo_loss(fam, t(p["W"]), alpha=p["alpha"], R=t(R), steps=2,
                                       num_tasks=k, seed=s)),
        ("expected_loss, steps = 3", lambda: expected_loss(p["W"], R=R, steps=3, **fkw),
         lambda k, s: monte_carlo_loss(fam, t(p["W"]), alpha=p["alpha"], R=t(R), steps=3,
                                       num_tasks=k, seed=s)),
        ("expected_deep_loss, 3 adapted layers, k = 1",
         lambda: expected_deep_loss(p["weights"], adapt="all", **fkw),
         lambda k, s: monte_carlo_deep_loss(fam, [t(w) for w in p["weights"]],
                                            alpha=p["alpha"], adapt="all", num_tasks=k,
                                            seed=s)),
    ]
    if four_layers:
        cases.append((
            "expected_deep_loss, 4 adapted layers, k = 1",
            lambda: expected_deep_loss(p["weights4"], adapt="all", **fkw),
            lambda k, s: monte_carlo_deep_loss(fam, [t(w) for w in p["weights4"]],
                                               alpha=p["alpha"], adapt="all", num_tasks=k,
                                               seed=s)))
    table = Table(
        f"Exact expected loss beyond one step (d = {d}, m = 1, n = {p['n']}) vs Monte Carlo "
        f"reaching SE = {rel_precision:g}·E ℒ",
        ["case", "E ℒ exact", "MC estimate", "derivation (s, once)", "evaluation (s)",
         "tasks for SE", "MC (s)", "speed-up", "MC timing"],
    )
    for name, exact, mc in cases:
        t0 = time.perf_counter()
        value = float(exact())
        t_first = time.perf_counter() - t0
        evals = []
        for _ in range(5):
            t0 = time.perf_counter()
            exact()
            evals.append(time.perf_counter() - t0)
        t_eval = min(evals)
        t0 = time.perf_counter()
        pilot = mc(pilot_tasks, seed + 1)
        t_pilot = time.perf_counter() - t0
        spread = pilot.stderr * math.sqrt(pilot.num_tasks)
        needed = max(2, math.ceil((spread / (rel_precision * abs(value))) ** 2))
        affordable = int(mc_budget_s / (t_pilot / pilot_tasks))
        run_tasks = min(needed, max(pilot_tasks, affordable))
        t0 = time.perf_counter()
        est = mc(run_tasks, seed + 2)
        t_run = time.perf_counter() - t0
        t_mc = t_run * needed / run_tasks
        how = "measured" if run_tasks == needed else f"extrapolated from {run_tasks} tasks"
        table.add(name, value, f"{est.mean:.6g} ± {est.stderr:.2g} (z = "
                  f"{est.z_score(value):+.2f})", max(t_first - t_eval, 0.0), t_eval, needed,
                  t_mc, t_mc / t_eval, how)
    table.notes += [
        "Exact: maml_depth.theory.expected_loss(steps=k) / expected_deep_loss — the Wick "
        "engine of docs/theory/exact-expectation.md; 'derivation' is the first call minus "
        "one evaluation (word expansion, pairings, collection; cached per structure for the "
        "process), 'evaluation' the best of 5 later calls (numpy, validation included).",
        f"Monte Carlo: maml_depth.numerics.monte_carlo_loss / monte_carlo_deep_loss; tasks = "
        f"(s / ({rel_precision:g}·E ℒ))² with s from a {pilot_tasks}-task pilot; z compares "
        "the estimate with the exact value (|z| ≲ 3 expected).",
        "Speed-up = Monte Carlo time / evaluation time, both measured in this run.",
        "A derivation slower than 2 s is kept in the disk cache (docs/theory/"
        "exact-expectation.md#reach): read from there, its 'derivation' is the load time; "
        + _derivation_note(),
        f"Machine: {machine_description()}",
    ]
    return [table]


if __name__ == "__main__":  # pragma: no cover
    from maml_depth.benchmarks.table import render

    print(render(run()))
