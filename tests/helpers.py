"""The one tolerance helper of the test-suite.

``assert_close(actual, expected)`` compares by *relative* error
``‖actual − expected‖ / max(‖expected‖, atol)`` with per-dtype defaults, and prints both
values (and the error) on failure. Works for torch tensors, numpy arrays, sympy numbers and
Python scalars.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

#: default relative tolerances by dtype; float64 compares to round-off.
RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4, np.dtype(np.float16): 1e-2}
#: floor of the denominator, so that an expected 0 compares absolutely.
ATOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-6, np.dtype(np.float16): 1e-3}


def to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if str(x.dtype) == "torch.float32":
            return x.numpy().astype(np.float32)
        return x.numpy()
    if hasattr(x, "tolist") and not isinstance(x, np.ndarray):  # sympy Matrix
        x = np.array(x.tolist(), dtype=float)
    arr = np.asarray(x)
    if arr.dtype == object:
        arr = arr.astype(float)
    return arr


def _dtype_of(*xs: np.ndarray) -> np.dtype:
    kinds = [x.dtype for x in xs if np.issubdtype(x.dtype, np.floating)]
    if not kinds:
        return np.dtype(np.float64)
    # the least precise float present sets the tolerance
    return max(kinds, key=lambda d: float(np.finfo(d).eps))


def relative_error(actual: Any, expected: Any, atol: float = 0.0) -> float:
    a, e = to_numpy(actual).astype(np.float64), to_numpy(expected).astype(np.float64)
    return float(np.linalg.norm(a - e) / max(float(np.linalg.norm(e)), atol, 1e-300))


def assert_close(
    actual: Any,
    expected: Any,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    what: str = "",
) -> None:
    """Assert ``‖actual − expected‖ ≤ rtol · max(‖expected‖, atol)`` (Frobenius norms)."""
    a, e = to_numpy(actual), to_numpy(expected)
    if a.shape != e.shape:
        raise AssertionError(f"{what or 'value'}: shape {a.shape} != expected shape {e.shape}")
    dt = _dtype_of(a, e)
    rtol = RTOL.get(dt, 1e-10) if rtol is None else rtol
    atol = ATOL.get(dt, 1e-12) if atol is None else atol
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(e))):
        raise AssertionError(f"{what or 'value'}: non-finite entries\nactual={a}\nexpected={e}")
    err = relative_error(a, e, atol)
    if not err <= rtol:
        raise AssertionError(
            f"{what or 'value'}: relative error {err:.3e} > rtol {rtol:.1e} ({dt})\n"
            f"actual=\n{a}\nexpected=\n{e}"
        )


#: above this size a post-adaptation loss means the inner loop diverged (step size too
#: large for the drawn weights): values like 1e180 differ by cancellation, not by the code
#: under test, so a property test draws again instead of comparing them.
DIVERGED = 1e8


def assume_not_diverged(*values: Any) -> None:
    """``hypothesis.assume`` that every value is finite and at most :data:`DIVERGED` in size
    (inside a property test: a diverged draw is replaced); in a test with fixed inputs a
    diverged value is an error of the test's own set-up, so it fails."""
    from hypothesis import assume
    from hypothesis.control import currently_in_test_context

    for v in values:
        arr = to_numpy(v).astype(np.float64)
        ok = bool(np.all(np.isfinite(arr))) and float(np.max(np.abs(arr), initial=0.0)) <= DIVERGED
        if currently_in_test_context():
            assume(ok)
        else:
            assert ok, f"diverged (|value| > {DIVERGED:g} or not finite): fix the test's inputs"


# -- figures ----------------------------------------------------------------------------------
def _densify(pts: np.ndarray, step: float, connected: bool) -> np.ndarray:
    """Display-coordinate points of a polyline: its vertices and, when ``connected``, points
    every ``step`` pixels along each segment (so a line crossing a box is caught even when
    no vertex lies inside it). Rows with NaN are dropped (they break a line in matplotlib)."""
    if not connected or len(pts) < 2:
        return pts[np.all(np.isfinite(pts), axis=1)]
    out = [pts[:1]]
    for a, b in itertools.pairwise(pts):
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            continue
        k = max(1, int(np.ceil(np.linalg.norm(b - a) / step)))
        t = np.linspace(0.0, 1.0, k + 1)[1:, None]
        out.append(a + t * (b - a))
    pts = np.vstack(out)
    return pts[np.all(np.isfinite(pts), axis=1)]


def data_points_display(ax: Any, step: float = 2.0) -> list[tuple[str, np.ndarray]]:
    """Every drawn data point of ``ax`` in display (pixel) coordinates, per artist: the
    vertices of its lines (and points every ``step`` px along their segments), of its
    collections' paths and offsets (bands, error bars, scatter) and of its patches (bars),
    restricted to the axes' box (matplotlib clips what lies outside). Call after a draw."""
    from matplotlib.collections import Collection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    box = ax.get_window_extent()
    found: list[tuple[str, np.ndarray]] = []

    def keep(name: str, pts: np.ndarray) -> None:
        pts = np.asarray(pts, dtype=float).reshape(-1, 2)
        inside = ((pts[:, 0] >= box.x0) & (pts[:, 0] <= box.x1)
                  & (pts[:, 1] >= box.y0) & (pts[:, 1] <= box.y1))
        if inside.any():
            found.append((name, pts[inside]))

    for art in ax.get_children():
        if not art.get_visible():
            continue
        if isinstance(art, Line2D):
            xy = art.get_transform().transform(np.asarray(art.get_xydata(), dtype=float))
            connected = art.get_linestyle() not in ("None", "", " ", "none")
            keep(f"line {art.get_label()!r}", _densify(xy, step, connected))
        elif isinstance(art, Collection):
            tr = art.get_transform()
            for path in art.get_paths():
                if len(path.vertices):
                    keep(f"collection {art.get_label()!r}",
                         _densify(tr.transform(path.vertices), step, True))
            offsets = np.asarray(art.get_offsets(), dtype=float)
            if offsets.size and np.ma.count(offsets):
                keep(f"collection offsets {art.get_label()!r}",
                     art.get_offset_transform().transform(offsets))
        elif (isinstance(art, Patch) and art is not ax.patch
              and all(art is not sp for sp in ax.spines.values())):
            path = art.get_path()
            keep(f"patch {art.get_label()!r}",
                 _densify(art.get_transform().transform(path.vertices), step, True))
    return found


def overlaps_in_boxes(fig: Any, *, texts: bool = False, step: float = 2.0) -> list[str]:
    """Which data points of ``fig`` lie inside a legend's box (and, with ``texts``, inside a
    text placed in an axes, e.g. a note): one line per offending artist, empty when none.

    Draws the figure first (without rendering), then compares, in display coordinates, each
    legend's :meth:`~matplotlib.legend.Legend.get_window_extent` with
    :func:`data_points_display` of its axes (for a figure legend: of every axes)."""
    fig.draw_without_rendering()
    problems: list[str] = []
    for ax in fig.axes:
        boxes: list[tuple[str, Any]] = []
        leg = ax.get_legend()
        if leg is not None and leg.get_visible():
            boxes.append(("legend", leg.get_window_extent()))
        for fleg in fig.legends:
            boxes.append(("figure legend", fleg.get_window_extent()))
        if texts:
            boxes += [(f"text {t.get_text()[:30]!r}", t.get_window_extent())
                      for t in ax.texts if t.get_visible() and t.get_text().strip()]
        if not boxes:
            continue
        points = data_points_display(ax, step)
        for what, bb in boxes:
            for name, pts in points:
                inside = ((pts[:, 0] > bb.x0) & (pts[:, 0] < bb.x1)
                          & (pts[:, 1] > bb.y0) & (pts[:, 1] < bb.y1))
                if inside.any():
                    problems.append(f"axes {ax.get_title()!r}: {int(inside.sum())} points of "
                                    f"{name} inside the {what}")
    return problems
