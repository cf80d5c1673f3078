"""``maml-depth validate``: run the paper's claims as checks and write a report.

Exit 0 only when every selected claim passes; 1 when any fails, is inconclusive or not
available; 2 for bad usage.

The claims that run a grid (the full-budget ones, e.g. ``meta-optimizers-nonlinear``) run it
where ``--executor`` / ``--scheduler`` say (the local process pool by default, Dask on a
``LocalCluster`` or on a running scheduler) and keep every finished point in a resumable store
(``--store DIR``; default ``OUT/stores/<claim id>``): a killed run, started again with the same
``--out`` or ``--store``, skips the points already stored. Claims that run no grid ignore them.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

from maml_depth.commands._common import DEVICE_HELP, check_device, check_out_dir, nonneg_int
from maml_depth.errors import ConfigError

HELP = "validate the paper's claims (docs/theory/paper-claims.md) and write report.md / report.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the options of ``maml-depth validate`` (claims, suite, budget, seed, device, output,
    plugins) to ``p``."""
    p.add_argument("--claims", default=None,
                   help="comma-separated claim ids (None: every claim of --suite and --budget)")
    p.add_argument("--suite", default="paper",
                   help="paper|neighbours|all: which claims run when --claims is not given")
    p.add_argument("--budget", default="quick", help="quick|full")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed (≥ 0)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--out", default="results/validate", help="output folder")
    p.add_argument("--plugin", action="append", default=[],
                   help="a module (importable, or in the current folder) or a file path like "
                        "./my_claims.py, imported first so that it may register claims; "
                        "repeatable")
    p.add_argument("--executor", default=None,
                   help="local|dask|serial: where the grid of a full-budget claim runs (None: "
                        "the local process pool, or dask when --scheduler is given)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="address of a running Dask scheduler, e.g. tcp://10.0.0.1:8786 (implies "
                        "--executor dask; its workers need maml-depth installed)")
    p.add_argument("--store", metavar="DIR", default=None,
                   help="folder of the grid claims' resumable store, one sub-folder per claim "
                        "(None: OUT/stores); a re-run with the same store skips stored points")
    p.add_argument("--list", action="store_true", help="list the registered claims and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


#: a Dask scheduler address: ``protocol://host[:port]``
_SCHEDULER = re.compile(r"(tcp|tls|ucx|ws|wss|inproc)://[^\s/]+")


def check_grid_options(executor: str | None, scheduler: str | None, store: str | None
                       ) -> str | None:
    """Check ``--executor``, ``--scheduler`` and ``--store`` up front (one
    :class:`ConfigError` naming the option) and return the executor the grid claims get:
    ``executor``, or ``"dask"`` when only ``scheduler`` is given, or None (their default)."""
    from maml_depth.common.executors import check_options

    if scheduler is not None and not _SCHEDULER.fullmatch(scheduler):
        raise ConfigError(f"--scheduler must be a Dask scheduler address like "
                          f"tcp://host:8786, got {scheduler!r}")
    resolved = executor if executor is not None else ("dask" if scheduler else None)
    if resolved is not None:
        check_options(resolved, scheduler=scheduler)
    check_out_dir("--store", store)
    return resolved


def load_plugin(spec: str) -> ModuleType:
    """Import ``spec``: a file path (``./my_claims.py``) or a module name, looked up on
    ``sys.path`` and in the current folder. Any failure is one :class:`ConfigError` line."""
    path = Path(spec)
    try:
        if spec.endswith(".py") or "/" in spec or "\\" in spec:
            if not path.is_file():
                raise ConfigError(f"--plugin: no such file {spec!r}")
            name = path.stem
            if not name.isidentifier():
                raise ConfigError(f"--plugin: {spec!r} is not a valid module file name")
            mspec = importlib.util.spec_from_file_location(name, path.resolve())
            if mspec is None or mspec.loader is None:
                raise ConfigError(f"--plugin: cannot load {spec!r} as a Python module")
            module = importlib.util.module_from_spec(mspec)
            sys.modules[name] = module
            try:
                mspec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
            return module
        cwd = str(Path.cwd())
        added = cwd not in sys.path
        if added:
            sys.path.insert(0, cwd)
        try:
            return importlib.import_module(spec)
        finally:
            if added:
                sys.path.remove(cwd)
    except ConfigError:
        raise
    except ModuleNotFoundError as exc:
        if exc.name == spec:
            raise ConfigError(f"--plugin: no module {spec!r} (not importable, not in the "
                              f"current folder; a file needs its path, e.g. ./{spec}.py)"
                              ) from None
        raise ConfigError(f"--plugin: importing {spec!r} failed: {exc}") from None
    except Exception as exc:  # the plugin's own code failed: name it, one line
        text = " ".join(str(exc).split())
        raise ConfigError(f"--plugin: importing {spec!r} raised {type(exc).__name__}: "
                          f"{text}") from None


def run(args: argparse.Namespace) -> int:
    """Run ``maml-depth validate``: run the selected claims, write ``report.md`` and
    ``report.json`` into ``--out``; exit status 0 only when every claim passes.

    References: docs/theory/paper-claims.md."""
    import time

    from tqdm.auto import tqdm

    from maml_depth.numerics import resolve_device
    from maml_depth.validation import (
        BUDGETS,
        CLAIMS,
        SUITES,
        RunContext,
        run_claim,
        write_report,
    )

    for mod in args.plugin:
        load_plugin(mod)
    if args.suite not in (*SUITES, "all"):
        raise ConfigError(f"--suite must be one of {[*SUITES, 'all']}, got {args.suite!r}")
    suites = SUITES if args.suite == "all" else (args.suite,)
    if args.list:
        for c in sorted(CLAIMS.values(), key=lambda c: (c.number is None, c.number or 0)):
            if c.suite in suites:
                print(f"{c.id:28s} {c.title}  [suite: {c.suite}; budgets: "
                      f"{', '.join(c.budgets)}]")
        return 0
    if args.budget not in BUDGETS:
        raise ConfigError(f"--budget must be one of {sorted(BUDGETS)}, got {args.budget!r}")
    ordered = sorted(CLAIMS.values(),
                     key=lambda c: (SUITES.index(c.suite), c.number is None, c.number or 0, c.id))
    if args.claims:
        ids = [c.strip() for c in args.claims.split(",")]
    else:  # every claim that runs in this budget, in the order of docs/theory/paper-claims.md
        ids = [c.id for c in ordered if args.budget in c.budgets and c.suite in suites]
    unknown = [c for c in ids if c not in CLAIMS]
    if unknown:
        raise ConfigError(f"--claims: unknown claim id(s) {unknown}; known: {list(CLAIMS)}")
    device = str(resolve_device(check_device("--device", args.device)))
    check_out_dir("--out", args.out)
    executor = check_grid_options(args.executor, args.scheduler, args.store)
    budget = BUDGETS[args.budget]
    t0 = time.perf_counter()
    results = []
    bar = tqdm(ids, desc="validate", unit="claim", disable=args.no_progress)
    for cid in bar:
        bar.set_postfix(claim=cid)
        ctx = RunContext(cid, budget, seed=args.seed, device=device,
                         out_dir=Path(args.out) / "figures", progress=not args.no_progress,
                         executor=executor, scheduler=args.scheduler,
                         store=Path(args.store) / cid if args.store else None)
        r = run_claim(CLAIMS[cid], ctx)
        results.append(r)
        tqdm.write(f"{r.verdict:>13s}  {cid}: {r.summary}")
    meta = {"suite": args.suite, "budget": budget.name, "seed": args.seed, "device": device,
            "claims": ids, "seconds": time.perf_counter() - t0}
    # where the grid claims ran, recorded only when asked for (a default run's report is as before)
    meta.update({k: v for k, v in (("executor", executor), ("scheduler", args.scheduler),
                                   ("store", args.store)) if v is not None})
    j, m = write_report(args.out, results, meta)
    print(f"wrote {m} and {j}")
    return 0 if all(r.verdict == "pass" for r in results) else 1
