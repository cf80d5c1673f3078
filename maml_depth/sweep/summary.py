"""Summary of a sweep: a table of means with 95% confidence intervals per group, and a plot
of the hypothesis (post-adaptation loss against one parameter, theory vs measured).

Groups are the values of ``[sweep] group_by`` (default: every parameter that varies between
points except ``seed``), so the records of a group differ only by seed. Per group the table
has ``n_points`` (points of the sweep), ``n_ok``, ``n_failed``, ``n_missing`` (not stored
yet), ``n_converged`` (ok points whose meta-training converged, with the reasons of the
others in ``convergence_note``), and for each measured quantity its mean over ``ok``
records with a 95% CI half-width: Student-t over the group's records when it has ≥ 2,
else ``1.96 ×`` the evaluation's own standard error (``ci_method`` says which). Theory
columns are means of the per-record predictions (they differ between seeds only through
the seed's random rotations).

All files are written atomically. Nothing here depends on timings, so the summary of a
sweep is reproducible too.
"""

from __future__ import annotations

import io
import itertools
import math
from pathlib import Path
from typing import Any

from maml_depth._io import atomic_write_bytes, atomic_write_text
from maml_depth.common import stats
from maml_depth.sweep.config import Point, SweepConfig, varying_params
from maml_depth.sweep.store import load_frame, records_to_rows

#: result columns summarised with mean and 95% CI
MEASURED = ("post_loss", "pre_loss", "theory_gap", "precond_rel_err", "precond_alignment")
#: result columns summarised with their mean only
MEAN_ONLY = ("theory_loss", "theory_loss_at_weights")


def group_keys(cfg: SweepConfig, points: list[Point]) -> list[str]:
    """The parameters the summary groups seeds by: the sweep's ``group_by``, or else every
    varying parameter except ``seed``."""
    if cfg.group_by is not None:
        return list(cfg.group_by)
    return [k for k in varying_params(points) if k != "seed"]


def _is_true(v: Any) -> bool:
    """A stored ``converged`` flag (bool, numpy bool, None or NaN) as a bool."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return False
    return bool(v)


def _ci(values: list[float], se_single: float | None) -> tuple[float, float, str]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return math.nan, math.nan, ""
    if len(vals) >= 2:
        mean, half = stats.mean_halfwidth(vals)
        return mean, half, "t over seeds"
    mean = vals[0]
    if se_single is not None and math.isfinite(se_single):
        return mean, 1.96 * se_single, "1.96 eval stderr"
    return mean, math.nan, ""


def summarize(frame: Any, points: list[Point], keys: list[str]) -> Any:
    """The summary table (a :class:`pandas.DataFrame`) of ``frame`` grouped by ``keys``."""
    import pandas as pd

    point_rows = pd.DataFrame(records_to_rows(
        {"key": p.key, "point": p.params, "status": "", "error": None, "result": None,
         "timing": {}, "package_version": ""} for p in points))
    gk = list(keys)
    rows = []
    groups = point_rows.groupby(gk, sort=False, dropna=False) if gk else [((), point_rows)]
    have = frame.set_index("key") if len(frame) else None
    for gval, gpts in groups:
        gval = gval if isinstance(gval, tuple) else (gval,)
        row: dict[str, Any] = dict(zip(gk, gval, strict=True))
        recs = have.loc[have.index.intersection(gpts["key"])] if have is not None else None
        n_rec = 0 if recs is None else len(recs)
        ok = recs[recs["status"] == "ok"] if recs is not None else None
        row["n_points"] = len(gpts)
        row["n_ok"] = 0 if ok is None else len(ok)
        row["n_failed"] = n_rec - row["n_ok"]
        row["n_missing"] = len(gpts) - n_rec
        for col in MEASURED:
            vals = [] if ok is None else [float(v) for v in ok[col]]
            se = None
            if col == "post_loss" and ok is not None and len(ok) == 1:
                se = float(ok["post_loss_se"].iloc[0])
            mean, half, method = _ci(vals, se)
            row[f"{col}_mean"] = mean
            row[f"{col}_ci95"] = half
            if col == "post_loss":
                row["ci_method"] = method
        conv = [] if ok is None else [_is_true(c) for c in ok["converged"]]
        row["n_converged"] = sum(conv)
        reasons = [] if ok is None else sorted(
            {str(r) for r, c in zip(ok["convergence_reason"], conv, strict=True)
             if not c and isinstance(r, str) and r})
        row["convergence_note"] = "; ".join(reasons)
        for col in MEAN_ONLY:
            vals = [] if ok is None else [float(v) for v in ok[col] if math.isfinite(float(v))]
            row[col] = sum(vals) / len(vals) if vals else math.nan
        if ok is not None and len(ok):
            kinds = sorted({str(k) for k in ok["theory_kind"] if isinstance(k, str)})
            row["theory_kind"] = "; ".join(kinds)
            notes = sorted({str(k) for k in ok.get("theory_note", []) if isinstance(k, str)})
            row["theory_note"] = "; ".join(notes) or "no closed form recorded"
        else:
            row["theory_kind"] = ""
            row["theory_note"] = "no finished point"
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def to_markdown(table: Any, keys: list[str]) -> str:
    """A compact Markdown view of the summary table (the CSV has every column)."""

    def pm(r: Any, col: str) -> str:
        m, h = r[f"{col}_mean"], r[f"{col}_ci95"]
        if math.isnan(m):
            return ""
        return f"{m:.4g}" + ("" if math.isnan(h) else f" ± {h:.2g}")

    cols = [*keys, "ok/points", "converged", "post-adaptation loss", "theory", "gap",
            "at weights", "P rel. err", "P alignment"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        cells = [_fmt(r[k]) for k in keys]
        theory = _fmt(r["theory_loss"]) or f"— ({r.get('theory_note', '')})"
        conv = f"{r['n_converged']}/{r['n_ok']}"
        if r.get("convergence_note"):
            conv += f" ({r['convergence_note']})"
        at_w = _fmt(r["theory_loss_at_weights"])
        if at_w and "Monte Carlo" in str(r.get("theory_kind", "")):
            at_w += " (MC estimate)"
        cells += [f"{r['n_ok']}/{r['n_points']}", conv, pm(r, "post_loss"), theory,
                  pm(r, "theory_gap"), at_w, _fmt(r["precond_rel_err_mean"]),
                  _fmt(r["precond_alignment_mean"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _as_numbers(values: list[Any]) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None


#: theory markers of the series, in order (distinct shapes, so that two series whose theory
#: coincides at one x stay visible side by side)
THEORY_MARKERS = ("_", "x", "+", "1", "4", "3", "2")


def series_offsets(n_series: int, xs: list[float]) -> list[float]:
    """Horizontal offsets of ``n_series`` series at the x values ``xs``: spread over a
    quarter of the smallest gap between neighbouring x values, centred on 0, so that the
    error bars and theory markers of different series at one x never coincide."""
    if n_series < 2:
        return [0.0] * n_series
    u = sorted(set(xs))
    gap = min((b - a for a, b in itertools.pairwise(u)), default=1.0) or 1.0
    width = 0.25 * gap
    return [width * (i / (n_series - 1) - 0.5) for i in range(n_series)]


def hypothesis_figure(cfg: SweepConfig, points: list[Point], frame: Any,
                      keys: list[str]) -> Any:
    """The :class:`~matplotlib.figure.Figure` of :func:`plot_hypothesis`.

    Per series (one combination of the group keys other than ``cfg.x``): the measured mean
    post-adaptation loss with its 95% CI — the summary's Student-t (or evaluation-stderr)
    interval, its lower end clipped at 0 because a loss is ≥ 0 — and the closed-form theory
    as one marker at each measured x (a prediction exists only at the grid's values, so
    nothing is interpolated between them). Series are offset horizontally
    (:func:`series_offsets`) and their theory markers differ (:data:`THEORY_MARKERS`); the
    legend sits outside the axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from maml_depth.common.plots import PALETTE

    x = cfg.x or (keys[0] if keys else "seed")
    series_keys = [k for k in keys if k != x]
    table = summarize(frame, points, [*series_keys, x])
    fig = Figure(figsize=(8.4, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    xs_all = list(dict.fromkeys(table[x]))
    numeric = _as_numbers(xs_all)
    pos = {v: (numeric[i] if numeric is not None else float(i)) for i, v in enumerate(xs_all)}
    groups = list(table.groupby(series_keys, sort=False, dropna=False)) if series_keys \
        else [((), table)]
    offsets = series_offsets(len(groups), list(pos.values()))
    for i, (sval, sub) in enumerate(groups):
        sval = sval if isinstance(sval, tuple) else (sval,)
        label = ", ".join(f"{k}={v}" for k, v in zip(series_keys, sval, strict=True))
        color = PALETTE[i % len(PALETTE)]
        sub = sub.assign(_x=[pos[v] + offsets[i] for v in sub[x]]).sort_values("_x")
        mean = [float(v) for v in sub["post_loss_mean"]]
        half = [0.0 if math.isnan(v) else float(v) for v in sub["post_loss_ci95"]]
        lower = [min(h, max(m, 0.0)) if math.isfinite(m) else 0.0
                 for m, h in zip(mean, half, strict=True)]  # the interval clipped at 0
        ax.errorbar(sub["_x"], mean, yerr=[lower, half], fmt="o", color=color, capsize=3,
                    ms=5, label=f"measured {label}".strip(), zorder=3)
        th = sub[[not math.isnan(v) for v in sub["theory_loss"]]]
        if len(th):
            ax.plot(th["_x"], th["theory_loss"], ls="none", color=color,
                    marker=THEORY_MARKERS[i % len(THEORY_MARKERS)],
                    ms=14 if i % len(THEORY_MARKERS) == 0 else 9, mew=2.0,
                    label=f"theory {label}".strip(), zorder=4, gid="theory")
    if numeric is None:
        ax.set_xticks([pos[v] for v in xs_all], [str(v) for v in xs_all])
    elif all(float(v).is_integer() for v in numeric):
        ax.set_xticks(sorted(set(numeric)))
    ax.set_ylim(bottom=0.0)
    ax.set_xlabel(x)
    ax.set_ylabel("post-adaptation loss (mean, 95% CI clipped at 0)")
    ax.set_title(f"{cfg.name}: post-adaptation loss vs {x}")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    return fig


def plot_hypothesis(cfg: SweepConfig, points: list[Point], frame: Any, keys: list[str]) -> bytes:
    """PNG bytes of :func:`hypothesis_figure`: mean post-adaptation loss (95% CI) against
    ``cfg.x``, one series per combination of the other group keys, with the theory
    prediction as markers at the grid's x values."""
    fig = hypothesis_figure(cfg, points, frame, keys)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    return buf.getvalue()


def write_summary(cfg: SweepConfig, points: list[Point], out: str | Path) -> dict[str, Path]:
    """Write ``summary.csv``, ``summary.md`` and ``hypothesis.png`` into ``out``
    (atomically); returns their paths."""
    out = Path(out)
    frame = load_frame(out, [p.key for p in points])
    keys = group_keys(cfg, points)
    table = summarize(frame, points, keys)
    paths = {
        "csv": atomic_write_text(out / "summary.csv", table.to_csv(index=False)),
        "md": atomic_write_text(
            out / "summary.md",
            f"# Sweep `{cfg.name}`\n\n{cfg.description}\n\n"
            "Mean over the group's points ± 95% CI half-width; converged = points whose "
            "meta-training converged (meta_train's report); theory = closed-form "
            "prediction at the meta-training optimum; at weights = the expected loss of the "
            "trained weights (exact, or a Monte Carlo estimate where marked); P = the "
            "extracted preconditioner α B_LᵀB_L against P*. All columns: summary.csv.\n\n"
            + to_markdown(table, keys)),
        "png": atomic_write_bytes(out / "hypothesis.png",
                                  plot_hypothesis(cfg, points, frame, keys)),
    }
    return paths
