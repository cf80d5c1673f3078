"""The figures of the six neighbours claims (``maml-depth validate --suite neighbours``), each
drawn once by the claim itself at a micro budget (verdicts at this size may be inconclusive or
fail; only the figures matter here): no data point lies inside a legend, the legend covers
neither an axis label nor the title, every axis is labelled, a legend names every labelled
series, and what is plotted is the claim's own numbers — its theory curve (Bernacchia's test-
loss formula, Collins' population FO-ANIL contraction, ACH's slope-2 reference, Saunshi's
convex prediction) recomputed here from ``maml_depth.theory`` or the claim's result details.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from maml_depth.common.plots import capture_figures
from tests.helpers import assert_close, overlaps_in_boxes

#: the smallest budget every claim accepts: ``mc_tasks // 20`` = 500 Monte Carlo trials is
#: Bernacchia's minimum (its 5 SE test's power), the rest only has to draw the figures
MICRO = {"cases": 2, "mc_tasks": 10_000, "meta_steps": 40, "population_steps": 40, "seeds": 1,
         "eval_tasks": 400, "nonlinear": False}
SEED = 0
FIGURES = {"ach-balanced-dynamics": "neighbours_ach_error_vs_eta",
           "bernacchia-negative-rate": "neighbours_bernacchia_alpha_t",
           "gao-sener-tradeoff": "neighbours_gao_sener_crossover",
           "collins-representation": "neighbours_collins_dist",
           "saunshi-separation": "neighbours_saunshi_ratios",
           "raghu-feature-reuse": "neighbours_raghu_angles"}

Run = tuple[Any, Any]  # (ClaimResult, the claim's figure)


@pytest.fixture(scope="module")
def claim_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Run]:
    """``claim_run(id)``: the claim run once (per module) at :data:`MICRO` with its figure
    captured; runs only the claims a test asks for."""
    import torch

    from maml_depth.validation import CLAIMS, Budget, RunContext, run_claim

    out = tmp_path_factory.mktemp("neighbours")
    budget = Budget("micro", **MICRO)  # type: ignore[arg-type]
    done: dict[str, Run] = {}

    def get(cid: str) -> Run:
        if cid not in done:
            before = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with capture_figures() as figs:
                    res = run_claim(CLAIMS[cid], RunContext(cid, budget, seed=SEED,
                                                            out_dir=out))
            finally:
                torch.set_num_threads(before)
            assert res.verdict != "error", res.details.get("traceback")
            assert list(figs) == [FIGURES[cid]], list(figs)
            assert res.figures == [f"{out.name}/{FIGURES[cid]}.png"]
            done[cid] = (res, figs[FIGURES[cid]])
        return done[cid]

    return get


def _line(ax: Any, label: str) -> Any:
    found = [ln for ln in ax.get_lines() if ln.get_label() == label]
    assert len(found) == 1, (label, [ln.get_label() for ln in ax.get_lines()])
    return found[0]


def _xy(line: Any) -> tuple[np.ndarray, np.ndarray]:
    return (np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float))


def _vline_at(ax: Any, label: str) -> float:
    x, _ = _xy(_line(ax, label))
    assert len(set(x.tolist())) == 1, f"{label!r} is not a vertical line"
    return float(x[0])


def _estimate(interval_text: str) -> float:
    """The estimate of a stored interval ``"est [low, high] (…)"`` (4 significant digits)."""
    return float(interval_text.split()[0])


# -- 1. legends and labels -------------------------------------------------------------------
@pytest.mark.parametrize("cid", list(FIGURES))
def test_legend_off_the_data_and_labels_and_axes_labelled(claim_run: Callable[[str], Run],
                                                          cid: str) -> None:
    _, fig = claim_run(cid)
    problems = overlaps_in_boxes(fig)
    assert problems == [], f"{cid}:\n" + "\n".join(problems)
    # overlaps_in_boxes drew the figure: window extents below are of that draw
    for ax in fig.axes:
        assert ax.get_xlabel().strip() and ax.get_ylabel().strip(), \
            (cid, ax.get_xlabel(), ax.get_ylabel())
        drawn = [ln for ln in ax.get_lines() if len(ln.get_xdata())] + list(ax.collections)
        handles, labels = ax.get_legend_handles_labels()
        leg = ax.get_legend()
        if len(drawn) >= 2 or len(handles) >= 2:
            assert leg is not None and leg.get_visible(), f"{cid}: several series, no legend"
        if leg is None:
            continue
        # the legend names every labelled series, and hides no axis label nor the title
        assert sorted(t.get_text() for t in leg.get_texts()) == sorted(labels), cid
        box = leg.get_window_extent()
        for text in (ax.xaxis.label, ax.yaxis.label, ax.title):
            if text.get_text().strip():
                assert not box.overlaps(text.get_window_extent()), \
                    f"{cid}: legend covers {text.get_text()!r}"


# -- 2. what is plotted is the claim's own numbers -------------------------------------------
def test_bernacchia_formula_curve_is_the_theory(claim_run: Callable[[str], Run]) -> None:
    from maml_depth.theory.empirical_maml import BernacchiaSetting, bernacchia_test_loss

    res, fig = claim_run("bernacchia-negative-rate")
    ax = fig.axes[0]
    x, y = _xy(_line(ax, "formula (package)"))
    s = BernacchiaSetting()  # the claim's setting: the paper's figure 2 sizes
    # theory one α_t at a time (scalar calls, not the claim's vectorised fine grid)
    pick = np.arange(0, len(x), 97)
    want = np.array([float(bernacchia_test_loss(s, float(a))) for a in x[pick]])
    assert_close(y[pick], want, rtol=1e-12, what="Bernacchia formula curve")
    # the dashed line marks the plotted curve's minimum, the claim's reported argmin
    a_star = _vline_at(ax, f"formula's minimum α_t = {res.details['formula_argmin']:.2f}")
    assert a_star == float(x[int(np.argmin(y))]) == res.details["formula_argmin"]
    # the formula on the claim's grid (details) lies on the curve
    grid = np.asarray(res.details["grid"])
    on_curve = np.interp(grid, x, y)
    assert_close(on_curve, np.asarray(res.details["formula_loss"]), rtol=1e-12,
                 what="formula at the grid")
    # Monte Carlo points: the claim's means on its grid, 95% bars ±1.96 SE
    pts = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]
    assert len(pts) == 1
    px, py = _xy(pts[0])
    assert_close(px, grid, rtol=1e-15, what="MC grid")
    assert_close(py, np.asarray(res.details["mc_loss"]), rtol=1e-12, what="MC means")


def test_collins_population_curve_is_the_theory(claim_run: Callable[[str], Run]) -> None:
    from maml_depth.theory.representation import anil_population_step, subspace_distance
    from maml_depth.validation.neighbours import collins_representation as co

    res, fig = claim_run("collins-representation")
    ax = fig.axes[0]
    x, y = _xy(_line(ax, "population FO-ANIL (x = outer step)"))
    steps = res.config["population_steps"]
    assert x.tolist() == list(range(steps + 1))
    # population first-order ANIL iterated here from the claim's problem
    Bs, Lam, B = co.problem(SEED)
    want = [subspace_distance(B, Bs)]
    for _ in range(steps):
        B = anil_population_step(B, Bs, Lam, co.ALPHA, co.BETA)
        want.append(subspace_distance(B, Bs))
    assert_close(y, np.asarray(want), rtol=1e-12, what="population dist(B, B*)")
    # the claim's theory: late rate β α λ_min(E w*w*ᵀ), by hand from its constants
    assert_close(res.theory, co.BETA * co.ALPHA * min(co.LAMBDAS), rtol=1e-12,
                 what="predicted rate")
    # the plotted curve's late per-step ratio is that rate (the claim's 5%)
    t0, t1 = res.details["claim"]["population"]["window"]
    ratio = (y[t1] / y[t0]) ** (1.0 / (t1 - t0))
    assert abs((1.0 - ratio) - res.theory) <= co.RATE_TOL * res.theory
    # the engine runs drawn are the claim's own trajectories
    for run, label in zip(res.details["claim"]["runs"][:2],
                          ("ANIL (engine, seed 0)", "MAML (engine, seed 0)"), strict=True):
        sx, sy = _xy(_line(ax, label))
        st, dv = zip(*run["trajectory"], strict=True)
        assert sx.tolist() == list(st)
        assert_close(sy, np.asarray(dv), rtol=1e-15, what=label)
    assert set(_xy(_line(ax, f"goal {co.GOAL}"))[1].tolist()) == {co.GOAL}


def test_ach_reference_has_slope_two_through_the_rule(claim_run: Callable[[str], Run]) -> None:
    from maml_depth.validation.neighbours import ach_balanced as ach

    res, fig = claim_run("ach-balanced-dynamics")
    ax = fig.axes[0]
    ex, ey = _xy(_line(ax, "ACH rule (N = 3)"))
    rx, ry = _xy(_line(ax, "slope 2"))
    assert ex.tolist() == rx.tolist() == list(ach.ETAS)
    # the rule's error is the claim's own measurement at depth 3
    row = next(r for r in res.details["rows"] if r["depth"] == 3)
    assert_close(ey, np.asarray(row["errors"]), rtol=1e-12, what="ACH errors, N = 3")
    # the reference: error ∝ η² (docs/theory/neighbours-ach.md), through the rule's first point
    assert_close(np.polyfit(np.log(rx), np.log(ry), 1)[0], 2.0, rtol=1e-12,
                 what="reference slope")
    assert_close(ry[0], ey[0], rtol=1e-15, what="reference anchor")


def test_gao_sener_points_are_the_claims_probabilities(claim_run: Callable[[str], Run]
                                                       ) -> None:
    from maml_depth.validation.neighbours import gao_sener_tradeoff as gs

    res, fig = claim_run("gao-sener-tradeoff")
    ax = fig.axes[0]
    assert set(_xy(_line(ax, "½"))[1].tolist()) == {0.5}
    series = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]
    assert len(series) == 2
    for ln, key in zip(series, ("claim", "wrong_variant"), strict=True):
        rows = res.details[key]["rows"]
        x, y = _xy(ln)
        assert x.tolist() == list(gs.MS)
        assert_close(y, np.asarray([r["p_maml_wins"] for r in rows]), rtol=1e-15, what=key)
    # each 95% bar spans the claim's Clopper–Pearson interval
    bars = sorted((tuple(np.asarray(seg)[:, 1]) for c in ax.collections
                   for seg in c.get_segments()), key=lambda t: t)
    want = sorted((tuple(r["ci"]) for key in ("claim", "wrong_variant")
                   for r in res.details[key]["rows"]), key=lambda t: t)
    assert_close(np.asarray(bars), np.asarray(want), rtol=1e-12, what="CP intervals")


def test_saunshi_bars_are_the_claims_ratios_and_convex_line_at_one(
        claim_run: Callable[[str], Run]) -> None:
    from maml_depth.validation.neighbours import saunshi_separation as sa

    res, fig = claim_run("saunshi-separation")
    ax = fig.axes[0]
    # the convex learners' theory: measured / (1 − n/d)E‖θ₀ − w‖² = 1; the claim's bound ½
    assert _vline_at(ax, "convex prediction (1 − n/d)") == 1.0
    assert _vline_at(ax, "claim: below ½") == sa.THRESHOLD
    d = res.details
    want = ([_estimate(x["ratio"]) for x in d["claim"]["nets"]]
            + [_estimate(d["wrong_variant_frozen"]["ratio"])]
            + [_estimate(v["ratio"]) for v in d["claim"]["convex"].values()])
    widths = [p.get_width() for p in ax.patches]
    assert len(widths) == len(want) == MICRO["seeds"] + 3
    assert_close(np.asarray(widths), np.asarray(want), rtol=5e-4, what="bar ratios (4 digits)")


def test_raghu_angles_are_the_claims(claim_run: Callable[[str], Run]) -> None:
    from maml_depth.validation.claim_bottom_layers import TOL_DEG

    res, fig = claim_run("raghu-feature-reuse")
    ax = fig.axes[0]
    assert _vline_at(ax, f"tolerance {TOL_DEG}°") == TOL_DEG
    runs, wrong = res.details["claim"]["runs"], res.details["wrong_variant_multitask"]["runs"]
    want = [[x["angles"][k] for x in runs]
            for k in ("anil_vs_maml", "anil_vs_range_lam", "maml_vs_range_lam",
                      "init_vs_range_lam")] + [[x["largest_angle_deg"] for x in wrong]]
    drawn = [np.asarray(c.get_offsets(), dtype=float) for c in ax.collections]
    assert len(drawn) == len(want)
    for row, (pts, vals) in enumerate(zip(drawn, want, strict=True)):
        assert pts[:, 1].tolist() == [row] * len(vals)
        assert_close(pts[:, 0], np.asarray(vals), rtol=1e-15, what=f"row {row}")
