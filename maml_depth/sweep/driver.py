"""The sweep driver: decide what to run, submit it, store each result as it arrives.

Output folder layout (``out``)::

    out/config.toml        the sweep file as given (atomically written)
    out/points.json        the expanded points: [{"key", "index", "point"}, ...]
    out/store/<key>.json   one record per point (see maml_depth.sweep.store)
    out/summary.csv        mean and 95% CI per group (see maml_depth.sweep.summary)
    out/summary.md         the same, as a Markdown table
    out/hypothesis.png     post-adaptation loss against the x parameter: theory vs measured

Only the driver writes, under an exclusive lock on ``out/.lock``. Each record is written
(atomically) the moment its point completes, so an interruption — Ctrl-C, a killed worker,
a killed driver — loses at most the points in flight; ``resume=True`` then skips every
valid stored record (a corrupt one is recomputed). A point whose worker dies is resubmitted
up to ``max_attempts`` times in all, then recorded as failed.
"""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maml_depth._io import atomic_write_json, atomic_write_text
from maml_depth.errors import ConfigError
from maml_depth.sweep.config import SweepConfig
from maml_depth.sweep.executors import check_options, make_pool
from maml_depth.sweep.points import Point, package_version
from maml_depth.sweep.store import Store, make_record


@dataclass
class SweepReport:
    """What :func:`run_sweep` did."""

    out: Path
    total: int
    skipped: int = 0
    computed: int = 0
    failed: int = 0
    lost: int = 0
    corrupt: dict[str, str] = field(default_factory=dict)
    executor: str = ""
    summary: dict[str, Path] = field(default_factory=dict)
    failed_keys: list[str] = field(default_factory=list)


#: error prefix of a point recorded as failed because its worker kept dying
LOST = "WorkerLost"


def _rerun(record: dict[str, Any], retry_failed: bool) -> bool:
    """Whether a stored record is run again on resume: failed points with
    ``retry_failed``, and always those whose workers died (not the point's own error)."""
    if record["status"] != "failed":
        return False
    return retry_failed or str(record["error"]).startswith(LOST)


def default_out(cfg: SweepConfig) -> Path:
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
    """Run every point of ``cfg`` that the store of ``out`` does not hold yet.

    Args:
        executor: ``"local"`` (process pool), ``"dask"``, ``"serial"``, a
            :class:`concurrent.futures.Executor` or a :class:`distributed.Client`.
        scheduler: address of an existing Dask scheduler (``executor="dask"``).
        workers: processes of the local pool / the Dask LocalCluster (default: CPU count,
            at most the number of points to run).
        resume: skip stored points (except ``WorkerLost`` failures). Without it, a store
            that already holds points of this sweep is an error (nothing is overwritten).
        retry_failed: with ``resume``, recompute every point stored as failed.
        threads: torch threads per point (1 avoids oversubscribing the cores).

    Raises:
        ConfigError: bad options, a store already in use, or stored points without
            ``resume`` — all before anything runs.
    """
    log = log if log is not None else sys.stderr
    points = cfg.expand()
    out_dir = Path(out) if out is not None else default_out(cfg)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out: {str(out_dir)!r} exists and is not a folder")
    if max_attempts < 1:
        raise ConfigError(f"max_attempts must be ≥ 1, got {max_attempts}")
    check_options(executor, scheduler=scheduler, workers=workers)
    store = Store(out_dir)
    report = SweepReport(out=out_dir, total=len(points))
    with store.lock():
        store.clean_temporaries()
        valid, corrupt = store.scan(p.key for p in points)
        if valid and not resume:
            raise ConfigError(
                f"--resume: {out_dir} already holds {len(valid)} of this sweep's "
                f"{len(points)} points; pass --resume to skip them (or choose another --out)")
        report.corrupt = corrupt
        for key, reason in corrupt.items():
            print(f"sweep: stored record {key[:12]}… is corrupt ({reason}): recomputing it",
                  file=log)
        todo = [p for p in points if p.key not in valid or _rerun(valid[p.key], retry_failed)]
        report.skipped = len(points) - len(todo)
        _write_manifest(cfg, points, out_dir)
        if todo:
            n_workers = workers
            if isinstance(executor, str) and scheduler is None:
                n_workers = min(workers or (os.cpu_count() or 1), len(todo))
            pool = make_pool(executor, workers=n_workers, scheduler=scheduler,
                             threads=threads)
            report.executor = pool.describe()
            try:
                _drive(pool, todo, store, report, progress=progress,
                       max_attempts=max_attempts, skipped=report.skipped, log=log)
            except BaseException:
                pool.close(cancel=True)
                raise
            pool.close()
        if summary:
            from maml_depth.sweep.summary import write_summary

            report.summary = write_summary(cfg, points, out_dir)
    return report


def _drive(pool: Any, todo: list[Point], store: Store, report: SweepReport, *,
           progress: bool, max_attempts: int, skipped: int, log: Any) -> None:
    from tqdm.auto import tqdm

    version = package_version()
    queue = list(reversed(todo))  # pop() from the end = submission order
    in_flight: dict[Any, tuple[Point, int]] = {}
    attempts: dict[str, int] = {}
    bar = tqdm(total=len(todo) + skipped, initial=skipped, disable=not progress,
               desc="sweep", unit="pt", dynamic_ncols=True, file=log)

    def submit_more() -> None:
        cap = pool.capacity()
        while queue and len(in_flight) < cap:
            pt = queue.pop()
            attempts[pt.key] = attempts.get(pt.key, 0) + 1
            tag = f"maml-depth-point-{pt.key[:16]}-{uuid.uuid4().hex[:8]}"
            in_flight[pool.submit(pt.params, tag)] = (pt, attempts[pt.key])

    try:
        submit_more()
        while in_flight:
            fut = pool.next_done()
            pt, attempt = in_flight.pop(fut)
            ok, outcome = pool.outcome(fut)
            if not ok:
                report.lost += 1
                pool.recover(fut, outcome)
                err = f"{type(outcome).__name__}: {outcome}".strip().splitlines()[0]
                if attempt < max_attempts:
                    print(f"sweep: point {pt.index} lost ({err}); resubmitting", file=log)
                    queue.append(pt)
                    submit_more()
                    continue
                outcome = {"status": "failed",
                           "error": f"{LOST}: its worker died {attempt} times ({err})",
                           "result": None, "timing": {}}
            rec = make_record(pt.key, pt.params, outcome, version=version, attempts=attempt)
            store.write(rec)
            report.computed += 1
            if rec["status"] == "failed":
                report.failed += 1
                report.failed_keys.append(pt.key)
                bar.write(f"sweep: point {pt.index} failed: {rec['error']}", file=log)
            bar.set_postfix(failed=report.failed, refresh=False)
            bar.update(1)
            submit_more()
    finally:
        bar.close()
