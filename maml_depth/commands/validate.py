"""``maml-depth validate``: run the paper's claims as checks and write a report.

Exit 0 only when every selected claim passes; 1 when any fails, is inconclusive or not
available; 2 for bad usage.
"""

from __future__ import annotations

import argparse

HELP = "validate the paper's claims (MATH.md §5) and write report.md / report.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--claims", default=None, help="comma-separated claim ids (default: all)")
    p.add_argument("--suite", default="paper",
                   help="paper|neighbours|all: which claims run by default (default: paper)")
    p.add_argument("--budget", default="quick", help="quick|full")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--out", default="results/validate", help="output folder")
    p.add_argument("--plugin", action="append", default=[],
                   help="import this module first (it may register claims); repeatable")
    p.add_argument("--list", action="store_true", help="list the registered claims and exit")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    import importlib
    import time
    from pathlib import Path

    from tqdm.auto import tqdm

    from maml_depth.errors import ConfigError
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
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            raise ConfigError(f"--plugin: cannot import {mod!r}: {exc}") from None
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
    else:  # every claim that runs in this budget, in the order of MATH.md §5
        ids = [c.id for c in ordered if args.budget in c.budgets and c.suite in suites]
    unknown = [c for c in ids if c not in CLAIMS]
    if unknown:
        raise ConfigError(f"--claims: unknown claim id(s) {unknown}; known: {list(CLAIMS)}")
    device = str(resolve_device(args.device))
    budget = BUDGETS[args.budget]
    t0 = time.perf_counter()
    results = []
    bar = tqdm(ids, desc="validate", unit="claim", disable=args.no_progress)
    for cid in bar:
        bar.set_postfix(claim=cid)
        ctx = RunContext(cid, budget, seed=args.seed, device=device,
                         out_dir=Path(args.out) / "figures", progress=not args.no_progress)
        r = run_claim(CLAIMS[cid], ctx)
        results.append(r)
        tqdm.write(f"{r.verdict:>13s}  {cid}: {r.summary}")
    meta = {"suite": args.suite, "budget": budget.name, "seed": args.seed, "device": device,
            "claims": ids, "seconds": time.perf_counter() - t0}
    j, m = write_report(args.out, results, meta)
    print(f"wrote {m} and {j}")
    return 0 if all(r.verdict == "pass" for r in results) else 1
