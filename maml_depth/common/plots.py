"""Plotting shared by the claims and the paper figures: the palette, its colour roles, and
the claims' quick figures (matplotlib, Agg backend), written atomically as PNG."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from maml_depth._io import atomic_write_bytes

#: colour-blind-safe palette (Okabe–Ito)
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442",
           "#000000"]

#: semantic colour roles (Okabe–Ito)
COLORS: dict[str, str] = {
    "shallow": PALETTE[1],  # vermillion
    "deep": PALETTE[0],  # blue
    "deep-all": PALETTE[5],  # sky blue
    "meta-sgd": PALETTE[2],  # bluish green
    "meta-curvature": PALETTE[3],  # reddish purple
    "kfo": PALETTE[4],  # orange
    "theory": PALETTE[7],  # black
    "reference": "#777777",
}


#: mantissas tried, in order, for the ticks of a log axis: the first set that puts at least
#: ``MIN_LOG_TICKS`` ticks inside the view wins (a decade-wide view gets 1, 2, 5; a view of
#: less than a decade gets finer steps instead of only "1" and "2")
LOG_TICK_MANTISSAS: tuple[tuple[float, ...], ...] = (
    (1.0,), (1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 5.0, 7.0),
    (1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0))
MIN_LOG_TICKS = 4
MAX_LOG_TICKS = 12


def log_ticks(low: float, high: float) -> list[float]:
    """Tick positions for a log axis spanning ``[low, high]`` (``0 < low < high``): the values
    ``m·10^k`` for the coarsest mantissa set of :data:`LOG_TICK_MANTISSAS` that gives between
    :data:`MIN_LOG_TICKS` and :data:`MAX_LOG_TICKS` ticks inside the view (the finest set when
    none does; at most :data:`MAX_LOG_TICKS`, thinned evenly, for views of many decades)."""
    import math

    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0 or high <= low:
        return []
    k0, k1 = math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1
    best: list[float] = []
    for subs in LOG_TICK_MANTISSAS:
        ticks = [float(f"{m * 10.0 ** k:.12g}") for k in range(k0, k1 + 1) for m in subs]
        ticks = [t for t in ticks if low <= t <= high]
        best = ticks
        if len(ticks) >= MIN_LOG_TICKS:
            break
    if len(best) > MAX_LOG_TICKS:
        step = math.ceil(len(best) / MAX_LOG_TICKS)
        best = best[::step]
    return best


def plain_log_axis(ax: Any, axis: str = "y") -> None:
    """Log scale with plain-number tick labels (0.5, 1, 2 … rather than 5×10⁻¹) and at least
    :data:`MIN_LOG_TICKS` labelled ticks however narrow the view (:func:`log_ticks`)."""
    from matplotlib.ticker import FuncFormatter, Locator, NullFormatter

    class _PlainLogLocator(Locator):  # type: ignore[misc]
        def __call__(self) -> list[float]:
            lo, hi = sorted(self.axis.get_view_interval())  # type: ignore[union-attr]
            return log_ticks(float(lo), float(hi))

        def tick_values(self, vmin: float, vmax: float) -> list[float]:
            lo, hi = sorted((vmin, vmax))
            return log_ticks(float(lo), float(hi))

    target = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    target.set_major_locator(_PlainLogLocator())
    target.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


#: figures kept by :func:`capture_figures` (name → figure), None when not capturing
_CAPTURED: dict[str, Any] | None = None


@contextlib.contextmanager
def capture_figures() -> Iterator[dict[str, Any]]:
    """Inside this context :func:`save_figure` also keeps each figure it draws (open, after
    ``tight_layout``) in the yielded dict under its ``name`` — for tests that inspect what a
    claim plotted (theory values, legend placement)."""
    global _CAPTURED
    before, _CAPTURED = _CAPTURED, {}
    try:
        yield _CAPTURED
    finally:
        _CAPTURED = before


def legend_outside(ax: Any, **kw: Any) -> Any:
    """A legend to the right of the axes, outside the data area (so it never covers a data
    point or a theory line); ``kw`` go to :meth:`~matplotlib.axes.Axes.legend`."""
    return ax.legend(**{"loc": "upper left", "bbox_to_anchor": (1.02, 1.0),
                        "borderaxespad": 0.0, "fontsize": 8, **kw})


def save_figure(out_dir: Path | None, name: str, draw: Callable[[Any], None],
                size: tuple[float, float] = (6.0, 4.0)) -> list[str]:
    """Draw with ``draw(ax)`` and write ``out_dir/name.png``; returns ``[path]`` (relative to
    the report folder) or ``[]`` when ``out_dir`` is None."""
    if out_dir is None:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keep = _CAPTURED is not None
    with plt.rc_context({"font.size": 11, "axes.prop_cycle": plt.cycler(color=PALETTE)}):
        fig, ax = plt.subplots(figsize=size, dpi=120)
        try:
            draw(ax)
            fig.tight_layout()
            buf = io.BytesIO()
            fig.savefig(buf, format="png")
        finally:
            plt.close(fig)  # out of pyplot's registry; a captured figure stays usable
    if keep and _CAPTURED is not None:
        _CAPTURED[name] = fig
    path = atomic_write_bytes(Path(out_dir) / f"{name}.png", buf.getvalue())
    return [f"{path.parent.name}/{path.name}"]


def trajectory_figure(out_dir: Path | None, name: str,
                      trajectories: list[list[tuple[int, float]]], *,
                      label: str, tolerance: float, tol_label: str, ylabel: str, title: str,
                      log: bool = False, size: tuple[float, float] = (8.0, 4.0)) -> list[str]:
    """A quantity over meta-training steps, one line per seed (``trajectories[i]`` is seed
    ``i``'s ``(step, value)`` list; seed 0 bold), with its tolerance line; a log axis has
    plain-number ticks (:func:`plain_log_axis`), the legend sits outside the axes."""

    def draw(ax: Any) -> None:
        for i, traj in enumerate(trajectories):
            steps, vals = zip(*traj, strict=True) if traj else ((), ())
            ax.plot(steps, vals, marker="o", ms=3 if i == 0 else 2, lw=1.8 if i == 0 else 1.0,
                    alpha=1.0 if i == 0 else 0.6, color=PALETTE[i % len(PALETTE)],
                    label=f"{label}, seed {i}")
        ax.axhline(tolerance, ls="--", color="gray", label=tol_label)
        if log:
            plain_log_axis(ax)
        ax.set_xlabel("meta-training step")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        legend_outside(ax)

    return save_figure(out_dir, name, draw, size)
