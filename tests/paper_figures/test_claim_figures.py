"""The figures of claims 3–5 (``maml-depth validate`` reports) and of a sweep: their plotted
theory values equal the theory functions' values (recomputed here by another route than the
code under test), no data point lies inside a legend, log axes carry plain ticks, loss error
bars never reach below zero, and claim 5's interval for an angle stays inside [0°, 90°]."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from maml_depth.common import stats
from maml_depth.common.plots import capture_figures
from maml_depth.theory import expected_loss, fixed_step_loss, optimal_preconditioner
from tests.helpers import assert_close, overlaps_in_boxes

#: a budget that only has to produce the figures (verdicts at this size are inconclusive)
MICRO = {"cases": 2, "mc_tasks": 1000, "meta_steps": 40, "population_steps": 40, "seeds": 2,
         "eval_tasks": 400, "nonlinear": False}


def _theory_lines(fig: Any) -> list[Any]:
    return [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() == "theory"]


@pytest.fixture(scope="module")
def claim_figures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Claims 3, 4 and 5 run once at :data:`MICRO`: ``{claim id: (result, figures)}``."""
    import torch

    from maml_depth.validation import CLAIMS, Budget, RunContext, run_claim

    out = tmp_path_factory.mktemp("claims")
    budget = Budget("micro", **MICRO)  # type: ignore[arg-type]
    done: dict[str, Any] = {}
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for cid in ("depth-helps", "upper-layers-precondition", "bottom-layers-represent"):
            with capture_figures() as figs:
                res = run_claim(CLAIMS[cid], RunContext(cid, budget, seed=0, out_dir=out))
            done[cid] = (res, dict(figs))
    finally:
        torch.set_num_threads(before)
    return done


def test_claim3_theory_ticks_equal_the_closed_forms(claim_figures: dict[str, Any]) -> None:
    from maml_depth.validation.claim_depth_helps import SETTING as s

    res, figs = claim_figures["depth-helps"]
    fig = figs["claim3_depth_helps"]
    lines = _theory_lines(fig)  # one horizontal segment per network
    assert [len(set(ln.get_ydata())) for ln in lines] == [1, 1, 1]
    plotted = np.array([float(ln.get_ydata()[0]) for ln in lines])
    fam = s.family(0)
    S, La, Wb = fam.Sigma.numpy(), fam.Lam.numpy(), fam.W_bar.numpy()
    # another route: the closed form E ℒ(W) of docs/theory/expected-loss.md#closed-form at
    # W = W̄, with the step αI (shallow) and with the preconditioner P* (deep)
    shallow = float(expected_loss(Wb, W_bar=Wb, Sigma=S, Lam=La, sigma=s.sigma, n=s.n,
                                  alpha=s.alpha))
    P_star = np.asarray(optimal_preconditioner(S, La, s.sigma, s.n, "full").P)
    deep = float(expected_loss(Wb, W_bar=Wb, Sigma=S, Lam=La, sigma=s.sigma, n=s.n, alpha=1.0,
                               R=P_star))
    assert_close(plotted, np.array([shallow, deep, deep]),
                 rtol=1e-9, what="claim 3 theory ticks")
    assert_close(res.details["theory_loss_alpha"], fixed_step_loss(S, La, s.sigma, s.n, s.alpha),
                 what="claim 3 E L(alpha I)")
    # measured as points with 95% error bars, not bars
    ax = fig.axes[0]
    assert not ax.patches or all(p is ax.patch for p in ax.patches)
    assert ax.collections, "no error bars drawn"


@pytest.mark.parametrize("cid", ["depth-helps", "upper-layers-precondition",
                                 "bottom-layers-represent"])
def test_claim_figures_keep_legends_off_the_data(claim_figures: dict[str, Any], cid: str
                                                 ) -> None:
    _, figs = claim_figures[cid]
    assert figs, f"{cid} drew no figure"
    for name, fig in figs.items():
        problems = overlaps_in_boxes(fig)
        assert not problems, f"{name}:\n" + "\n".join(problems)


def test_claim4_plots_every_seed_on_a_plain_log_axis(claim_figures: dict[str, Any]) -> None:
    res, figs = claim_figures["upper-layers-precondition"]
    fig = figs["claim4_preconditioner_error"]
    ax = fig.axes[0]
    fig.draw_without_rendering()
    seeds = [ln for ln in ax.get_lines() if "seed" in str(ln.get_label())]
    assert len(seeds) == MICRO["seeds"] == len(res.details["trajectories_sampled"])
    labels = [t.get_text() for t in ax.yaxis.get_ticklabels() if t.get_text()]
    assert len(labels) >= 2 and not any("×" in t or "times" in t or "^" in t for t in labels), \
        labels


def test_claim5_angle_interval_stays_in_range(claim_figures: dict[str, Any]) -> None:
    res, _ = claim_figures["bottom-layers-represent"]
    assert res.ci is not None
    low, high = res.ci
    assert 0.0 <= low <= high <= 90.0
    assert "logit" in res.details["interval_method"]


def test_angle_interval_respects_zero_where_a_t_interval_does_not() -> None:
    from maml_depth.validation.claim_bottom_layers import angle_interval

    angles = [0.4, 9.0, 1.2]  # small, spread angles over three seeds
    plain = stats.mean_interval(angles)
    assert plain.low < 0  # what the report used to print
    iv = angle_interval(angles)
    assert 0.0 < iv.low < iv.estimate < iv.high < 90.0
    assert iv.n == 3 and iv.level == stats.LEVEL
    # the transform is exact: the interval of logit(θ/90°) mapped back
    u = np.log(np.asarray(angles) / (90.0 - np.asarray(angles)))
    t = stats.mean_interval(u)
    assert_close(iv.low, 90.0 / (1.0 + np.exp(-t.low)), what="low end")
    assert_close(iv.high, 90.0 / (1.0 + np.exp(-t.high)), what="high end")


# -- the sweep plot --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sweep_figure(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, list[Any], Path]:
    from maml_depth.sweep import run_sweep
    from maml_depth.sweep.config import expand_points
    from maml_depth.sweep.store import load_frame
    from maml_depth.sweep.summary import group_keys, hypothesis_figure
    from tests.sweep.common import tiny_config

    cfg = tiny_config({"depth": [1, 2, 3], "alpha": [0.05, 0.1], "seed": [0]})
    out = tmp_path_factory.mktemp("sweep")
    run_sweep(cfg, out=out, progress=False, summary=False)
    points = expand_points(cfg)
    frame = load_frame(out, [p.key for p in points])
    fig = hypothesis_figure(cfg, points, frame, group_keys(cfg, points))
    return cfg, fig, points, out


def _sweep_theory(point: Any) -> float:
    """Theory of one sweep point by another route than the runner's: ``fixed_step_loss``
    (shallow) and the minimum ``E ℒ(P*)`` returned by ``optimal_preconditioner`` (deep)."""
    from maml_depth.sweep.runner import build_family

    fam = build_family(point.params)
    S, La = fam.Sigma.numpy(), fam.Lam.numpy()
    sigma, n = float(fam.sigma), int(fam.n_support)
    if point.params["depth"] == 1:
        return float(fixed_step_loss(S, La, sigma, n, float(point.params["alpha"])))
    return float(optimal_preconditioner(S, La, sigma, n, "full").loss)


def test_sweep_theory_markers_are_the_theory_at_each_depth(sweep_figure: Any) -> None:
    _cfg, fig, points, _ = sweep_figure
    lines = _theory_lines(fig)
    # one per series (α = 0.05, 0.1); at depth ≥ 2 both predict E ℒ(P*), the same value
    assert len(lines) == 2
    markers = {ln.get_marker() for ln in lines}
    assert len(markers) == 2, "the series' theory markers must differ"
    xs_by_series = []
    for ln in lines:
        assert ln.get_linestyle() in ("None", "none", ""), "theory must not be interpolated"
        alpha = float(str(ln.get_label()).split("alpha=")[1].split(",")[0])
        x, y = np.asarray(ln.get_xdata(), float), np.asarray(ln.get_ydata(), float)
        depths = np.rint(x).astype(int)
        assert sorted(depths.tolist()) == [1, 2, 3]
        xs_by_series.append(x)
        expected = [np.mean([_sweep_theory(p) for p in points
                             if p.params["depth"] == dd and p.params["alpha"] == alpha])
                    for dd in depths]
        assert_close(y, np.asarray(expected), rtol=1e-9, what=f"theory alpha={alpha}")
    # the series are offset: no two theory markers at the same x
    assert np.min(np.abs(xs_by_series[0][:, None] - xs_by_series[1][None, :])) > 0.05


def test_sweep_error_bars_stay_above_zero_and_legend_off_the_data(sweep_figure: Any) -> None:
    from matplotlib.collections import LineCollection

    _, fig, _, _ = sweep_figure
    ax = fig.axes[0]
    bars = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert bars
    for c in bars:
        for seg in c.get_segments():
            assert np.min(np.asarray(seg)[:, 1]) >= 0.0
    problems = overlaps_in_boxes(fig)
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def claim7_figure(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """Claim 7 (k inner steps) run once at :data:`MICRO`: ``(result, figure)``."""
    from maml_depth.validation import CLAIMS, Budget, RunContext, run_claim

    out = tmp_path_factory.mktemp("claim7")
    budget = Budget("micro", **MICRO)  # type: ignore[arg-type]
    with capture_figures() as figs:
        res = run_claim(CLAIMS["depth-helps-k-steps"],
                        RunContext("depth-helps-k-steps", budget, seed=0, out_dir=out))
    return res, figs["claim7_depth_helps_k_steps"]


def test_claim7_theory_segments_are_the_k_step_theory(claim7_figure: Any) -> None:
    """The black segments of claim 7's figure are ``E ℒ_k(αI)`` (shallow, k-step loss at the
    fixed step, recomputed here through ``expected_loss(steps=k)`` at ``W = W̄``) and
    ``min_P E ℒ_k(P)`` (deep: the numeric optimum recomputed here), for k = 2, 3."""
    from maml_depth.validation.claim_depth_helps_k_steps import SETTING, STEPS

    res, fig = claim7_figure
    assert res.verdict != "error", res.details.get("traceback")
    s = SETTING
    fam = s.family(0)
    S, La, Wb = fam.Sigma.numpy(), fam.Lam.numpy(), fam.W_bar.numpy()
    want = []
    for k in STEPS:
        want.append(expected_loss(Wb, W_bar=Wb, Sigma=S, Lam=La, sigma=s.sigma, n=s.n,
                                  alpha=s.alpha, steps=k))
    for k in STEPS:
        want.append(optimal_preconditioner(S, La, s.sigma, s.n, "full", steps=k).loss)
    segs = [c for ax in fig.axes for c in ax.collections if c.get_gid() == "theory"]
    drawn = sorted(float(seg[0][1]) for c in segs for seg in c.get_segments())
    np.testing.assert_allclose(drawn, sorted(want), rtol=1e-6)


def test_claim7_legend_keeps_off_the_data(claim7_figure: Any) -> None:
    _, fig = claim7_figure
    assert overlaps_in_boxes(fig) == []


@pytest.mark.slow
def test_claim8_figure_draws_the_exact_reference_and_keeps_its_legend_off_the_data(
        tmp_path: Path) -> None:
    """Claim 8's figure: the theory line is the ratio 1 (measured = expected_deep_loss), each
    point is the claim's own measured/exact ratio, and the legend covers no data."""
    from maml_depth.validation import CLAIMS, Budget, RunContext, run_claim
    from maml_depth.validation.claim_all_layers_exact import CASES

    budget = Budget("micro", **MICRO)  # type: ignore[arg-type]
    with capture_figures() as figs:
        res = run_claim(CLAIMS["all-layers-exact"],
                        RunContext("all-layers-exact", budget, seed=0, out_dir=tmp_path))
    assert res.verdict != "error", res.details.get("traceback")
    fig = figs["claim8_all_layers_exact"]
    theory = _theory_lines(fig)
    assert len(theory) == 1 and set(theory[0].get_ydata()) == {1.0}
    points = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_marker() == "o"]
    drawn = np.concatenate([np.asarray(ln.get_ydata(), dtype=float) for ln in points])
    want = [res.details[f"adapt={a}"]["ratio"] for a in CASES]
    np.testing.assert_allclose(drawn, want, rtol=1e-12)
    assert overlaps_in_boxes(fig) == []
