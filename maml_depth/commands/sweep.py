"""``maml-depth sweep CONFIG.toml``: run a grid of meta-training experiments and test a
hypothesis about depth and adaptation (docs/sweeps.md).

Every point of the sweep file is meta-trained (on a local process pool by default, or on
Dask), stored as one record under ``OUT/store/`` as it completes, and summarised in
``OUT/summary.csv``, ``OUT/summary.md`` and ``OUT/hypothesis.png``. ``--resume`` skips the
points already stored. Exit codes: 0 all points ok, 1 some point failed (diverged or
raised; recorded, the others still ran), 2 bad config or options (nothing ran),
130 interrupted (finished points are kept: re-run with ``--resume``).
"""

from __future__ import annotations

import argparse
import sys

from maml_depth.commands._common import positive_int

HELP = "run a sweep of meta-training experiments from a TOML file (resumable; local or Dask)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the options of ``maml-depth sweep`` (the sweep file, executor, scheduler, workers, …)
    to ``p``.

    References: docs/sweeps.md."""
    p.add_argument("config", metavar="CONFIG.toml", help="sweep file (schema: docs/sweeps.md)")
    p.add_argument("--executor", choices=["local", "dask", "serial"], default=None,
                   help="local process pool (the default), Dask (a LocalCluster, or --scheduler), "
                        "or serial (in this process, for debugging)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="address of a running Dask scheduler, e.g. tcp://10.0.0.1:8786 "
                        "(implies --executor dask)")
    p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="worker processes of the local pool / Dask LocalCluster "
                        "(default: CPU count)")
    p.add_argument("--resume", action="store_true", help="skip the points already stored")
    p.add_argument("--retry-failed", action="store_true",
                   help="with --resume, recompute the points stored as failed")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output folder (None: results/sweeps/<name>)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the config, list the points and what is stored; run nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``maml-depth sweep``: run the grid of a sweep file on the chosen executor, storing
    one record per point (points already stored are skipped), then summarise; returns the
    exit status.

    References: docs/sweeps.md."""
    from maml_depth.common.executors import check_options
    from maml_depth.errors import ConfigError
    from maml_depth.sweep.config import load_config
    from maml_depth.sweep.driver import default_out, run_sweep
    from maml_depth.sweep.points import varying_params
    from maml_depth.sweep.store import Store

    executor = args.executor or ("dask" if args.scheduler else "local")
    check_options(executor, scheduler=args.scheduler, workers=args.workers)
    if args.retry_failed and not args.resume:
        raise ConfigError("--retry-failed needs --resume")
    cfg = load_config(args.config)
    points = cfg.expand()
    out = args.out if args.out is not None else default_out(cfg)
    if not args.dry_run:
        from maml_depth.commands._common import check_out_dir

        check_out_dir("--out", str(out))
    if args.dry_run:
        valid, corrupt = Store(out).scan(p.key for p in points)
        shown = [k for k in varying_params(points)] or ["seed"]
        for p in points:
            state = ("stored " + valid[p.key]["status"]) if p.key in valid else \
                ("corrupt" if p.key in corrupt else "to run")
            print(f"{p.index:4d} {p.key[:12]}  {state:13s} {p.label(shown)}")
        print(f"{len(points)} points, {len(valid)} stored, {len(corrupt)} corrupt -> {out}")
        return 0
    try:
        report = run_sweep(cfg, out=out, executor=executor, scheduler=args.scheduler,
                           workers=args.workers, resume=args.resume,
                           retry_failed=args.retry_failed, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"maml-depth sweep: interrupted; finished points are stored in {out} — "
              f"re-run with --resume to continue", file=sys.stderr)
        return 130
    print(f"sweep {cfg.name}: {report.total} points — {report.computed} computed "
          f"({report.failed} failed), {report.skipped} already stored"
          + (f", {len(report.corrupt)} corrupt recomputed" if report.corrupt else "")
          + (f" [{report.executor}]" if report.executor else ""))
    for path in report.summary.values():
        print(f"wrote {path}")
    if report.failed:
        print(f"maml-depth sweep: {report.failed} point(s) failed; their records in "
              f"{report.out}/store hold the error", file=sys.stderr)
        return 1
    return 0
