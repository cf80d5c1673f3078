"""Running a grid of points: decide what to run, submit it, store each result as it arrives.

The one grid driver of the package: sweeps (:mod:`maml_depth.sweep`), the nonlinear
meta-optimizer experiment and the full-budget claim run through :func:`run_grid`, on any
executor of :mod:`maml_depth.common.executors` (a local process pool, Dask — also a remote
scheduler — or serially), with the resumable store of :mod:`maml_depth.common.store`.

Only the driver writes, under an exclusive lock on ``out/.lock``. Each record is written
(atomically) the moment its point completes, so an interruption — Ctrl-C, a killed worker,
a killed driver — loses at most the points in flight; ``resume=True`` then skips every
valid stored record (a corrupt one is recomputed). A point whose worker dies is resubmitted
up to ``max_attempts`` times in all, then recorded as failed (error prefix :data:`LOST`).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from maml_depth import _checks
from maml_depth.common.executors import Task, check_options, make_pool
from maml_depth.common.store import Store, make_record, package_version
from maml_depth.errors import ConfigError, InvalidArgumentError

__all__ = ["LOST", "GridItem", "GridReport", "run_grid"]

#: error prefix of a point recorded as failed because its worker kept dying
LOST = "WorkerLost"


class GridItem(Protocol):
    """A point of a grid: its store ``key``, its ``params`` and its position ``index``."""

    @property
    def key(self) -> str:
        """The point's store key (sha256 of its configuration and the package version)."""

    @property
    def params(self) -> dict[str, Any]:
        """The point's parameters, as passed to the task."""

    @property
    def index(self) -> int:
        """The point's position in the grid."""


@dataclass
class GridReport:
    """What :func:`run_grid` did."""

    out: Path
    total: int
    skipped: int = 0
    computed: int = 0
    failed: int = 0
    lost: int = 0
    corrupt: dict[str, str] = field(default_factory=dict)
    executor: str = ""
    failed_keys: list[str] = field(default_factory=list)


def _rerun(record: dict[str, Any], retry_failed: bool) -> bool:
    """Whether a stored record is run again on resume: failed points with
    ``retry_failed``, and always those whose workers died (not the point's own error)."""
    if record["status"] != "failed":
        return False
    return retry_failed or str(record["error"]).startswith(LOST)


def run_grid(
    items: Sequence[GridItem],
    task: Task,
    out: str | Path,
    *,
    report: GridReport | None = None,
    executor: Any = "local",
    scheduler: str | None = None,
    workers: int | None = None,
    resume: bool = False,
    retry_failed: bool = False,
    progress: bool = True,
    max_attempts: int = 3,
    threads: int = 1,
    log: Any = None,
    desc: str = "grid",
    before: Callable[[], None] | None = None,
    after: Callable[[], None] | None = None,
) -> GridReport:
    """Run ``task`` on every item of ``items`` that the store of ``out`` does not hold yet.

    Args:
        items: the points (distinct keys).
        task: a picklable top-level function ``task(params) -> result``.
        report: filled in and returned (default: a new :class:`GridReport`).
        executor: ``"local"`` (process pool), ``"dask"``, ``"serial"``, a
            :class:`concurrent.futures.Executor` or a :class:`distributed.Client`.
        scheduler: address of an existing Dask scheduler (``executor="dask"``).
        workers: processes of the local pool / the Dask LocalCluster (default: CPU count,
            at most the number of points to run).
        resume: skip stored points (except :data:`LOST` failures). Without it, a store that
            already holds points of this grid is an error (nothing is overwritten).
        retry_failed: with ``resume``, recompute every point stored as failed.
        threads: torch threads per point (1 avoids oversubscribing the cores).
        before, after: called under the store's lock before the first and after the last
            point (e.g. to write a manifest and a summary).

    Raises:
        ConfigError: bad options, a store already in use, or stored points without
            ``resume`` — all before anything runs.
    """
    log = log if log is not None else sys.stderr
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out: {str(out_dir)!r} exists and is not a folder")
    try:
        max_attempts = _checks.integer("max_attempts", max_attempts)
    except InvalidArgumentError as exc:
        raise ConfigError(str(exc)) from None
    check_options(executor, scheduler=scheduler, workers=workers)
    store = Store(out_dir)
    rep = report if report is not None else GridReport(out=out_dir, total=len(items))
    with store.lock():
        store.clean_temporaries()
        valid, corrupt = store.scan(p.key for p in items)
        if valid and not resume:
            raise ConfigError(
                f"--resume: {out_dir} already holds {len(valid)} of this run's "
                f"{len(items)} points; pass --resume to skip them (or choose another --out)")
        rep.corrupt = corrupt
        for key, reason in corrupt.items():
            print(f"{desc}: stored record {key[:12]}… is corrupt ({reason}): recomputing it",
                  file=log)
        todo = [p for p in items if p.key not in valid or _rerun(valid[p.key], retry_failed)]
        rep.skipped = len(items) - len(todo)
        if before is not None:
            before()
        if todo:
            n_workers = workers
            if isinstance(executor, str) and scheduler is None:
                n_workers = min(workers or (os.cpu_count() or 1), len(todo))
            pool = make_pool(task, executor, workers=n_workers, scheduler=scheduler,
                             threads=threads)
            rep.executor = pool.describe()
            try:
                _drive(pool, todo, store, rep, progress=progress, max_attempts=max_attempts,
                       log=log, desc=desc)
            except BaseException:
                pool.close(cancel=True)
                raise
            pool.close()
        if after is not None:
            after()
    return rep


def _drive(pool: Any, todo: list[GridItem], store: Store, report: GridReport, *,
           progress: bool, max_attempts: int, log: Any, desc: str) -> None:
    from tqdm.auto import tqdm

    version = package_version()
    queue = list(reversed(todo))  # pop() from the end = submission order
    in_flight: dict[Any, tuple[GridItem, int]] = {}
    attempts: dict[str, int] = {}
    bar = tqdm(total=len(todo) + report.skipped, initial=report.skipped, disable=not progress,
               desc=desc, unit="pt", dynamic_ncols=True, file=log)

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
                    print(f"{desc}: point {pt.index} lost ({err}); resubmitting", file=log)
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
                bar.write(f"{desc}: point {pt.index} failed: {rec['error']}", file=log)
            bar.set_postfix(failed=report.failed, refresh=False)
            bar.update(1)
            submit_more()
    finally:
        bar.close()
