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
    (1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0),
    tuple(round(1.0 + 0.1 * i, 1) for i in range(90)))
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
    """A legend below the axes, outside the data area (so it never covers a data point or a
    theory line, and the axes keep the figure's width); ``kw`` go to
    :meth:`~matplotlib.axes.Axes.legend`. :func:`save_figure` keeps it in the image."""
    return ax.legend(**{"loc": "upper center", "bbox_to_anchor": (0.5, -0.12),
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
            fig.savefig(buf, format="png", bbox_inches="tight")
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


# -- keeping legends and notes off the data --------------------------------------------------
#: inside locations tried by :func:`place_legend`, in order, after the preferred one
LEGEND_LOCATIONS: tuple[str, ...] = ("upper right", "upper left", "lower right", "lower left",
                                     "center right", "center left", "upper center",
                                     "lower center", "center")


def _polyline_points(xy: Any, step: float, connected: bool) -> Any:
    import numpy as np

    pts = np.asarray(xy, dtype=float).reshape(-1, 2)
    if not connected or len(pts) < 2:
        return pts[np.all(np.isfinite(pts), axis=1)]
    a, b = pts[:-1], pts[1:]
    ok = np.all(np.isfinite(a), axis=1) & np.all(np.isfinite(b), axis=1)
    a, b = a[ok], b[ok]
    out = [pts[np.all(np.isfinite(pts), axis=1)]]
    if len(a):
        k = np.maximum(1, np.ceil(np.linalg.norm(b - a, axis=1) / step)).astype(int)
        kmax = int(min(k.max(), 300))
        t = np.linspace(0.0, 1.0, kmax + 1)[None, :, None]
        out.append((a[:, None, :] + t * (b - a)[:, None, :]).reshape(-1, 2))
    return np.vstack(out)


def display_points(ax: Any, step: float = 2.0) -> Any:
    """Every drawn data point of ``ax`` in display coordinates (an ``(N, 2)`` array): the
    vertices of its lines, collections (bands, error bars, contours, scatter offsets) and
    patches (bars), with points every ``step`` pixels along connected segments, restricted
    to the axes' box. Call after a draw (``fig.draw_without_rendering()``)."""
    import numpy as np
    from matplotlib.collections import Collection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    spines = list(ax.spines.values())
    chunks = [np.empty((0, 2))]
    for art in ax.get_children():
        if not art.get_visible():
            continue
        if isinstance(art, Line2D):
            xy = art.get_transform().transform(np.asarray(art.get_xydata(), dtype=float))
            chunks.append(_polyline_points(
                xy, step, art.get_linestyle() not in ("None", "", " ", "none")))
        elif isinstance(art, Collection):
            tr = art.get_transform()
            for path in art.get_paths():
                if np.asarray(path.vertices).size:
                    chunks.append(_polyline_points(tr.transform(path.vertices), step, True))
            offsets = np.asarray(np.ma.filled(art.get_offsets(), np.nan), dtype=float)
            if offsets.size:
                chunks.append(art.get_offset_transform().transform(offsets.reshape(-1, 2)))
        elif isinstance(art, Patch) and art is not ax.patch and all(art is not s for s in spines):
            chunks.append(_polyline_points(art.get_transform().transform(
                art.get_path().vertices), step, True))
    pts = np.vstack(chunks)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    box = ax.get_window_extent()
    keep = ((pts[:, 0] >= box.x0) & (pts[:, 0] <= box.x1)
            & (pts[:, 1] >= box.y0) & (pts[:, 1] <= box.y1))
    return pts[keep]


def _hits(pts: Any, bb: Any, pad: float = 0.0) -> bool:
    return bool(((pts[:, 0] > bb.x0 - pad) & (pts[:, 0] < bb.x1 + pad)
                 & (pts[:, 1] > bb.y0 - pad) & (pts[:, 1] < bb.y1 + pad)).any())


def _text_boxes(ax: Any, renderer: Any, skip: Any = None) -> list[Any]:
    return [t.get_window_extent(renderer) for t in ax.texts
            if t is not skip and t.get_visible() and t.get_text().strip()]


def place_legend(ax: Any, prefer: str | None = None, **kw: Any) -> Any:
    """The legend of ``ax`` at the first location (``prefer`` first, then
    :data:`LEGEND_LOCATIONS`) where its box covers no data point (:func:`display_points`)
    and no text of the axes; outside the axes, below them (:func:`legend_outside`) when no
    inside location is free. Call when everything else is drawn and the limits are final."""
    fig = ax.figure
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer() if hasattr(fig.canvas, "get_renderer") \
        else fig._get_renderer()
    pts = display_points(ax)
    texts = _text_boxes(ax, renderer)
    order = ([prefer] if prefer else []) + [loc for loc in LEGEND_LOCATIONS if loc != prefer]
    for loc in order:
        leg = ax.legend(loc=loc, **kw)
        bb = leg.get_window_extent(renderer)
        if not _hits(pts, bb, 2.0) and not any(bb.overlaps(t) for t in texts):
            return leg
    # no free place: make head-room above the data (a quarter of the view at a time) and
    # put the legend there
    tops = [loc for loc in order if loc.startswith("upper")]
    for _ in range(4):
        lo, hi = ax.get_ylim()
        if ax.get_yscale() == "log":
            ax.set_ylim(lo, hi * (hi / lo) ** 0.25)
        else:
            ax.set_ylim(lo, hi + 0.25 * (hi - lo))
        fig.draw_without_rendering()
        pts = display_points(ax)
        texts = _text_boxes(ax, renderer)
        for loc in tops:
            leg = ax.legend(loc=loc, **kw)
            bb = leg.get_window_extent(renderer)
            if not _hits(pts, bb, 2.0) and not any(bb.overlaps(t) for t in texts):
                return leg
    return legend_outside(ax, **kw)


def place_note(ax: Any, text: Any, *, candidates: int = 19) -> bool:
    """Move the text ``text`` (in axes coordinates) to the first height, right- then
    left-aligned, where it covers no data point and no legend; returns False (and leaves it
    where it was) when no such place exists."""
    import numpy as np

    fig = ax.figure
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer() if hasattr(fig.canvas, "get_renderer") \
        else fig._get_renderer()
    pts = display_points(ax)
    leg = ax.get_legend()
    blocks = [leg.get_window_extent(renderer)] if leg is not None else []
    blocks += _text_boxes(ax, renderer, skip=text)
    x0, y0 = text.get_position()
    ha0, va0 = text.get_ha(), text.get_va()
    start = float(y0)
    ys = sorted(np.linspace(0.04, 0.96, candidates), key=lambda y: abs(y - start))
    for y in ys:
        for x, ha in ((0.98, "right"), (0.02, "left")):
            text.set_position((x, y))
            text.set_ha(ha)
            text.set_va("center")
            bb = text.get_window_extent(renderer)
            if not _hits(pts, bb, 2.0) and not any(bb.overlaps(b) for b in blocks):
                return True
    text.set_position((x0, y0))
    text.set_ha(ha0)
    text.set_va(va0)
    return False
