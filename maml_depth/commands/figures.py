"""``maml-depth figures``: regenerate the paper's figures (PNG and PDF per figure).

Theory curves come from :mod:`maml_depth.theory`, measured points from meta-training and
real adaptation with :mod:`maml_depth.numerics`; each figure's data is computed once and
cached (``.npz`` + ``.json`` keyed by figure, budget and version), so re-rendering takes
seconds. Exit 0 on success, 2 for bad usage.
"""

from __future__ import annotations

import argparse

from maml_depth.commands._common import check_out_dir, check_out_file

HELP = "regenerate the paper figures (theory curves + measured points), PNG and PDF"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the options of ``maml-depth figures`` (figures, budget, output and cache folders,
    gallery README) to ``p``."""
    p.add_argument("--only", default=None, metavar="N,…",
                   help="comma-separated figure numbers, e.g. 1,3 (None: all six); with "
                        "--readme only their gallery entries are replaced")
    p.add_argument("--budget", default="quick",
                   help="tiny (seconds, for tests) | quick (minutes on 2 CPU cores) "
                        "| full (more seeds, steps and tasks)")
    p.add_argument("--out", default="results/figures", help="output folder of the PNG/PDF")
    p.add_argument("--cache", default="results/figures-cache", metavar="DIR",
                   help="cache folder of the figure data, keyed by figure, budget and "
                        "version")
    p.add_argument("--recompute", action="store_true",
                   help="ignore cached data and compute it again")
    p.add_argument("--readme", default=None, metavar="PATH",
                   help="also update a markdown gallery (e.g. paper_figures/README.md): the "
                        "entries of the figures built in this run are replaced, the others "
                        "kept")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (1: the networks are tiny, and more "
                        "threads only contend for the cores)")
    p.add_argument("--list", action="store_true", help="list the figures and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``maml-depth figures``: regenerate the selected paper figures (PNG and PDF) at the
    chosen budget, from the cache where it holds the data; returns the exit status."""
    import time
    from pathlib import Path

    import torch
    from tqdm.auto import tqdm

    from maml_depth.errors import ConfigError
    from maml_depth.paper_figures.budget import get_budget
    from maml_depth.paper_figures.registry import (
        FIGURES,
        build_figure,
        parse_only,
        write_gallery,
    )

    if args.list:
        for num, spec in FIGURES.items():
            print(f"{num}  {spec.name:30s} {spec.title}")
        return 0
    numbers = parse_only(args.only)
    budget = get_budget(args.budget)
    if args.threads < 1:
        raise ConfigError(f"--threads must be ≥ 1, got {args.threads}")
    check_out_dir("--out", args.out)
    check_out_dir("--cache", args.cache)
    check_out_file("--readme", args.readme)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    cache = Path(args.cache)
    progress = not args.no_progress
    t0 = time.perf_counter()
    results = []
    bar = tqdm(numbers, desc="figures", unit="fig", disable=not progress, dynamic_ncols=True)
    for num in bar:
        bar.set_postfix(fig=FIGURES[num].name)
        r = build_figure(num, budget, out, cache_dir=cache, recompute=args.recompute,
                         progress=progress)
        results.append(r)
        how = "from cache" if r.cached else f"computed in {r.compute_seconds:.1f} s"
        files = ", ".join(str(p) for p in r.paths)
        tqdm.write(f"figure {num} ({r.spec.name}): data {how}, rendered in "
                   f"{r.render_seconds:.1f} s -> {files}")
    if args.readme:
        only = f" --only {','.join(map(str, numbers))}" if args.only else ""
        command = (f"maml-depth figures{only} --budget {budget.name} --out {args.out} "
                   f"--readme {args.readme}")
        path = write_gallery(results, args.readme, budget, command=command)
        print(f"wrote gallery {path}")
    print(f"{len(results)} figure(s), budget {budget.name}, {time.perf_counter() - t0:.1f} s")
    return 0
