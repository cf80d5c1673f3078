"""What the six paper figures show, at a glance: no data point lies inside a legend's box
(nor, in figure 2, inside a note), every log axis labels at least four ticks with plain
numbers, and figure 4 marks runs that have not converged instead of drawing them as if they
disagreed with theory."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from maml_depth.common.plots import MIN_LOG_TICKS, log_ticks
from tests.helpers import overlaps_in_boxes

NUMBERS = (1, 2, 3, 4, 5, 6)


def _render(built: dict[int, Any], number: int, data: Any = None) -> Any:
    from maml_depth.paper_figures import FIGURES, style

    mod = FIGURES[number].module()
    with style.context():
        fig = mod.render(built[number].data if data is None else data)
        fig.draw_without_rendering()
    return fig


@pytest.mark.parametrize("number", NUMBERS)
def test_no_data_point_inside_a_legend(built: dict[int, Any], number: int) -> None:
    from maml_depth.paper_figures import style

    fig = _render(built, number)
    with style.context():
        problems = overlaps_in_boxes(fig, texts=number == 2)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("number", NUMBERS)
def test_log_axes_label_enough_plain_ticks(built: dict[int, Any], number: int) -> None:
    fig = _render(built, number)
    for ax in fig.axes:
        for axis, name in ((ax.yaxis, "y"), (ax.xaxis, "x")):
            if axis.get_scale() != "log":
                continue
            lo, hi = sorted(axis.get_view_interval())
            labels = [t.get_text() for t in axis.get_ticklabels()
                      if t.get_text() and lo <= t.get_position()[0 if name == "x" else 1] <= hi]
            assert len(labels) >= min(MIN_LOG_TICKS, len(log_ticks(lo, hi))), (
                ax.get_title(), name, labels)
            assert not any("times" in s or "×" in s or "^" in s for s in labels), labels


@pytest.mark.parametrize(("low", "high"), [(0.7, 3.5), (0.9, 1.1), (0.005, 4.0), (1e-3, 1e3)])
def test_log_ticks_are_plain_and_enough(low: float, high: float) -> None:
    ticks = log_ticks(low, high)
    assert len(ticks) >= MIN_LOG_TICKS
    assert all(low <= t <= high for t in ticks)
    # plain numbers: every tick is a short decimal m·10^k
    assert all(len(f"{t:g}") <= 6 for t in ticks), ticks


def test_still_moving_flags_a_drift_not_noise() -> None:
    from maml_depth.paper_figures.fig4_preconditioner_spectrum import MOVING_RTOL, still_moving

    steps = np.arange(0, 801, 40)
    rng = np.random.default_rng(0)
    flat = 0.5 * (1 + 0.01 * rng.standard_normal((len(steps), 1)))
    flat[::2] += 0.004  # alternating noise: changes sign
    drift = (0.30 + 0.10 * (steps / 800.0))[:, None]  # still rising by 0.02 per fifth
    E = np.stack([np.hstack([flat, drift]), np.hstack([flat, flat])])
    out = still_moving(steps, E)
    assert out.tolist() == [[False, True], [False, False]]
    # the same drift below the tolerance is not flagged
    small = (0.40 + 0.4 * MOVING_RTOL * 0.5 * (steps / 800.0))[:, None]
    assert not still_moving(steps, np.stack([np.hstack([flat, small])])).any()


def test_fig4_marks_an_unconverged_run(built: dict[int, Any]) -> None:
    import copy

    from matplotlib.lines import Line2D

    from maml_depth.paper_figures import fig4_preconditioner_spectrum as f4

    data = copy.deepcopy(built[4].data)

    def crosses(fig: Any) -> list[Any]:
        return [ln for ln in fig.axes[0].get_lines()
                if isinstance(ln, Line2D) and ln.get_marker() == "x"]

    data.arrays["run_converged"] = np.ones_like(data["run_converged"])
    E = np.asarray(data["eig_P"])
    E[:, :, :] = E[:, :1, :]  # a flat trajectory: nothing still moving
    data.arrays["eig_P"] = E
    assert not crosses(_render(built, 4, data))
    assert "Every run converged" in f4.caption(data)
    data.arrays["run_converged"][0] = 0.0  # meta_train says seed 0 did not converge
    marks = crosses(_render(built, 4, data))
    assert len(marks) == E.shape[-1]  # each of seed 0's eigenvalues ends in a ×
    assert "seed 0 (meta_train: not converged)" in f4.caption(data)
