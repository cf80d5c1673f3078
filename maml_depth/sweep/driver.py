"""The sweep driver: decide what to run, submit it, store each result as it arrives.

Output folder layout (``out``)::

    out/config.toml        the sweep file as given (atomically written)
    out/points.json        the expanded points: [{"key", "index", "point"}, ...]
    out/store/<key>.json   one record per point (see maml_depth.sweep.store)
    out/summary.csv        mean and 95% CI per group (see maml_depth.sweep.summary)
    out/summary.md         the same, as a Markdown table
    out/hypothesis.png     post-adaptation loss against the x parameter: theory vs measured

The points run through the shared grid driver :func:`maml_depth.common.grid.run_grid`:
only the driver writes, under an exclusive lock on ``out/.lock``; each record is written
(atomically) the moment its point completes, so an interruption — Ctrl-C, a killed worker,
a killed driver — loses at most the points in flight; ``resume=True`` then skips every
valid stored record (a corrupt one is recomputed). A point whose worker dies is resubmitted
up to ``max_attempts`` times in all, then recorded as failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maml_depth._io import atomic_write_json, atomic_write_text
from maml_depth.common.grid import LOST, GridReport, run_grid
from maml_depth.common.store import package_version
from maml_depth.sweep import runner
from maml_depth.sweep.config import Point, SweepConfig

__all__ = ["LOST", "SweepReport", "default_out", "run_sweep"]


@dataclass
class SweepReport(GridReport):
    """What :func:`run_sweep` did (a :class:`~maml_depth.common.grid.GridReport` and the
    summary files)."""

    summary: dict[str, Path] = field(default_factory=dict)


def default_out(cfg: SweepConfig) -> Path:
    """The default output folder of a sweep: ``results/sweeps/<name>``."""
    return Path("results") / "sweeps" / cfg.name


def _write_manifest(cfg: SweepConfig, points: list[Point], out: Path) -> None:
    if cfg.text is not None:
        atomic_write_text(out / "config.toml", cfg.text)
    atomic_write_json(out / "points.json",
                      {"name": cfg.name, "package_version": package_version(),
                       "x": cfg.x, "group_by": list(cfg.group_by) if cfg.group_by else None,
                       "points": [{"key": p.key, "index": p.index, "point": p.params}
                                  for p in points]})


def run_sweep(
    cfg: SweepConfig,
    *,
    out: str | Path | None = None,
    executor: Any = "local",
    scheduler: str | None = None,
    workers: int | None = None,
    resume: bool = False,
    retry_failed: bool = False,
    progress: bool = True,
    summary: bool = True,
    max_attempts: int = 3,
    threads: int = 1,
    log: Any = None,
) -> SweepReport:
    """Run every point of ``cfg`` that the store of ``out`` does not hold yet
    (:func:`~maml_depth.sweep.runner.measure` on each, through
    :func:`~maml_depth.common.grid.run_grid`; see there for the options), then write the
    summary.

    Raises:
        ConfigError: bad options, a store already in use, or stored points without
            ``resume`` — all before anything runs.
    """
    points = cfg.expand()
    out_dir = Path(out) if out is not None else default_out(cfg)
    report = SweepReport(out=out_dir, total=len(points))

    def after() -> None:
        if summary:
            from maml_depth.sweep.summary import write_summary

            report.summary = write_summary(cfg, points, out_dir)

    run_grid(points, runner.measure, out_dir, report=report, executor=executor,
             scheduler=scheduler, workers=workers, resume=resume, retry_failed=retry_failed,
             progress=progress, max_attempts=max_attempts, threads=threads, log=log,
             desc="sweep", before=lambda: _write_manifest(cfg, points, out_dir), after=after)
    return report
