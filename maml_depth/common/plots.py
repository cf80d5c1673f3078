"""Plotting shared by the claims and the paper figures: the palette, its colour roles, and
the claims' quick figures (matplotlib, Agg backend), written atomically as PNG."""

from __future__ import annotations

import io
from collections.abc import Callable
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


def save_figure(out_dir: Path | None, name: str, draw: Callable[[Any], None],
                size: tuple[float, float] = (6.0, 4.0)) -> list[str]:
    """Draw with ``draw(ax)`` and write ``out_dir/name.png``; returns ``[path]`` (relative to
    the report folder) or ``[]`` when ``out_dir`` is None."""
    if out_dir is None:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context({"font.size": 11, "axes.prop_cycle": plt.cycler(color=PALETTE)}):
        fig, ax = plt.subplots(figsize=size, dpi=120)
        try:
            draw(ax)
            fig.tight_layout()
            buf = io.BytesIO()
            fig.savefig(buf, format="png")
        finally:
            plt.close(fig)
    path = atomic_write_bytes(Path(out_dir) / f"{name}.png", buf.getvalue())
    return [f"{path.parent.name}/{path.name}"]


def trajectory_figure(out_dir: Path | None, name: str, trajectory: list[tuple[int, float]], *,
                      label: str, tolerance: float, tol_label: str, ylabel: str, title: str,
                      log: bool = False) -> list[str]:
    """A quantity over meta-training steps with its tolerance line."""

    def draw(ax: Any) -> None:
        steps, vals = zip(*trajectory, strict=True) if trajectory else ((), ())
        (ax.semilogy if log else ax.plot)(steps, vals, marker="o", ms=3, label=label)
        ax.axhline(tolerance, ls="--", color="gray", label=tol_label)
        ax.set_xlabel("meta-training step")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend()

    return save_figure(out_dir, name, draw)
