"""One matplotlib style for every paper figure.

Readable fonts, light grids, no top/right spines, the Okabe–Ito colour-blind-safe palette of
:mod:`maml_depth.common.plots` (with fixed roles: shallow/MAML orange, deep blue, …),
theory drawn as lines (dashed/dotted), measurements as markers with 95% error bars or bands.
Figures are :class:`matplotlib.figure.Figure` objects created without pyplot (no global
state), drawn inside :func:`context`, and written atomically as PNG and PDF by :func:`save`
at :data:`DPI`, so a figure of ``w × h`` inches is exactly ``round(w·DPI) × round(h·DPI)``
pixels.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.legend import Legend

from maml_depth._io import atomic_write_bytes
from maml_depth.common.plots import COLORS, PALETTE, place_legend, place_note, plain_log_axis

__all__ = [
    "COLORS",
    "DPI",
    "FORMATS",
    "LOSS_LABEL",
    "PALETTE",
    "RC",
    "STEP_LABEL",
    "band",
    "context",
    "errorbars",
    "finish",
    "label_panel",
    "new_figure",
    "note",
    "panel_label",
    "pixel_size",
    "plain_log_axis",
    "save",
    "theory_line",
    "two_panels",
]

#: resolution of the PNG files (PDF is vector)
DPI = 150
FORMATS: tuple[str, ...] = ("png", "pdf")

#: axis labels shared by the panels that plot a loss along meta-training
STEP_LABEL = "meta-training step (outer iterations)"
LOSS_LABEL = "post-adaptation loss (½·squared error)"
#: colour of the small explanatory notes inside a panel
NOTE_COLOR = "#444444"

RC: dict[str, Any] = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "lines.linewidth": 1.8,
    "lines.markersize": 5,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": cycler(color=PALETTE),
    "image.cmap": "viridis",
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "pdf.fonttype": 42,  # TrueType in PDF (editable text)
    "svg.fonttype": "none",
}


@contextlib.contextmanager
def context() -> Iterator[None]:
    """The paper-figure rc parameters (draw *and* save inside this context)."""
    rc: Any = RC
    with mpl.rc_context(rc):
        yield


def new_figure(size: tuple[float, float], ncols: int = 1, nrows: int = 1,
               **kw: Any) -> tuple[Figure, Any]:
    """A constrained-layout figure of ``size`` inches with a grid of axes (no pyplot)."""
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def two_panels(size: tuple[float, float], **kw: Any) -> tuple[Figure, Axes, Axes]:
    """A :func:`new_figure` of two panels side by side: ``(fig, left, right)``."""
    fig, axes = new_figure(size, ncols=2, **kw)
    left, right = axes[0]
    return fig, left, right


def pixel_size(size: tuple[float, float]) -> tuple[int, int]:
    """``(width, height)`` in pixels of a PNG of ``size`` inches."""
    return round(size[0] * DPI), round(size[1] * DPI)


def save(fig: Figure, out_dir: str | Path, stem: str,
         formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write ``out_dir/stem.{png,pdf}`` atomically; returns the paths. Metadata without
    dates, so that unchanged data gives unchanged files."""
    paths = []
    for fmt in formats:
        buf = io.BytesIO()
        meta: dict[str, Any] = ({"Software": None} if fmt == "png"
                                else {"CreationDate": None, "Creator": None, "Producer": None})
        fig.savefig(buf, format=fmt, dpi=DPI, metadata=meta)
        path = atomic_write_bytes(Path(out_dir) / f"{stem}.{fmt}", buf.getvalue())
        os.chmod(path, 0o666 & ~_umask())  # ordinary file permissions, not mkstemp's 0600
        paths.append(path)
    return paths


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- drawing helpers ------------------------------------------------------------------------
def theory_line(ax: Axes, y: float, label: str, color: str, ls: str = "--") -> None:
    """A horizontal theory asymptote."""
    ax.axhline(y, ls=ls, lw=1.4, color=color, label=label, zorder=1)


def band(ax: Axes, x: Any, mean: Any, low: Any, high: Any, *, color: str, label: str,
         marker: str | None = None) -> None:
    """Mean line with a shaded 95% band."""
    ax.plot(x, mean, color=color, label=label, marker=marker, ms=3)
    ax.fill_between(x, low, high, color=color, alpha=0.2, lw=0)


def errorbars(ax: Axes, x: Any, mean: Any, low: Any, high: Any, *, color: str,
              label: str | None,
              marker: str = "o", offset: float = 0.0, log_offset: bool = False,
              filled: bool = True) -> None:
    """Measured points with asymmetric 95% error bars (``low``/``high`` are the interval
    ends, not widths). ``offset`` shifts the points horizontally (multiplicatively when
    ``log_offset``) so that overlapping series stay readable."""
    x = np.asarray(x, dtype=float)
    xs = x * (1 + offset) if log_offset else x + offset
    mean, low, high = (np.asarray(v, dtype=float) for v in (mean, low, high))
    yerr = np.vstack([np.maximum(mean - low, 0), np.maximum(high - mean, 0)])
    ax.errorbar(xs, mean, yerr=yerr, fmt=marker, color=color, label=label, capsize=3,
                ms=5, lw=1.2, mfc=color if filled else "white", zorder=3)


def panel_label(ax: Axes, letter: str) -> None:
    """``(a)``, ``(b)`` … in the upper-left corner, outside the axes."""
    ax.set_title(f"({letter})", loc="left", fontweight="bold", fontsize=11)


def label_panel(ax: Axes, letter: str, *, title: str, xlabel: str | None = None,
                ylabel: str | None = None, legend: str | None = None,
                legend_title: str | None = None, **legend_kw: Any) -> Legend | None:
    """Finish a panel: axis labels, ``title``, :func:`panel_label` ``letter`` and, when
    ``legend`` names a location, the legend there (``legend_kw`` go to
    :meth:`~matplotlib.axes.Axes.legend`; call this after drawing). Returns the legend.
    ``legend_title`` (e.g. a note on how the curves were measured) heads the legend.
    :func:`finish` later moves the legend to where it covers no data (``legend`` is tried
    first)."""
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend_title is not None:
        legend_kw = {"title": legend_title, "title_fontsize": 7.5, **legend_kw}
    leg = ax.legend(**{"loc": legend, **legend_kw}) if legend is not None else None
    if legend is not None:
        _LEGEND_REQUESTS[id(ax)] = (legend, dict(legend_kw))
    panel_label(ax, letter)
    return leg


#: legends asked for by :func:`label_panel`, by ``id(axes)``: ``(location, legend kwargs)``
_LEGEND_REQUESTS: dict[int, tuple[str, dict[str, Any]]] = {}


def finish(fig: Figure) -> Figure:
    """Keep legends and notes off the data: each legend of :func:`label_panel` goes to the
    first location (its requested one first) whose box covers no data point and no note
    (outside the axes when none is free), then each :func:`note` to the nearest height where
    it covers neither data nor legend (:func:`maml_depth.common.plots.place_legend`,
    :func:`~maml_depth.common.plots.place_note`). Call last in ``render``; returns ``fig``."""
    for _ in range(3):  # a legend moved outside changes the layout: settle again
        for ax in fig.axes:
            req = _LEGEND_REQUESTS.get(id(ax))
            if req is not None:
                place_legend(ax, req[0], **req[1])
        for ax in fig.axes:
            for t in list(ax.texts):
                if t.get_gid() == "note" and not place_note(ax, t):
                    req = _LEGEND_REQUESTS.get(id(ax))
                    if req is None:
                        continue
                    # no free place inside the axes: the note becomes the legend's title
                    t.remove()
                    req[1]["title"] = t.get_text()
                    req[1].setdefault("title_fontsize", 7.5)
                    place_legend(ax, req[0], **req[1])
    for ax in fig.axes:
        _LEGEND_REQUESTS.pop(id(ax), None)
    return fig


def note(ax: Axes, text: str, *, y: float, va: str = "baseline") -> None:
    """A small grey explanatory note, right-aligned at height ``y`` (axes fraction)."""
    ax.text(0.98, y, text, transform=ax.transAxes, ha="right", va=va, fontsize=7.5,
            color=NOTE_COLOR, gid="note")
