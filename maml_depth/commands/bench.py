"""``maml-depth bench``: benchmark tables (peers compared in the same run, as ratios)."""

from __future__ import annotations

import argparse

from maml_depth.commands._common import DEVICE_HELP, check_device, check_out_file

HELP = "benchmark the MAML engines against peers (or the theory with --theory)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the options of ``maml-depth bench`` (see docs/benchmarks.md) to ``p``."""
    p.add_argument("--theory", action="store_true",
                   help="benchmark theory/ (symbolic derivation, closed form vs Monte Carlo)")
    p.add_argument("--four-layers", action="store_true",
                   help="with --theory: add the row of four adapted layers (one step; its "
                        "exact derivation takes minutes once and is kept in the disk cache)")
    p.add_argument("--configs", default=None,
                   help="engine configs, e.g. small,large (None: every config)")
    p.add_argument("--peers", default=None,
                   help="engine peers, e.g. factorized,loop,vmap,higher,torchopt (None: every "
                        "installed peer)")
    p.add_argument("--repeats", type=int, default=20, help="timed meta-steps per peer (≥ 20)")
    p.add_argument("--rounds", type=int, default=1,
                   help="rounds of separate per-peer measurements (time, memory, FLOPs); each "
                        "peer's fastest round is kept (≥ 1)")
    p.add_argument("--paired-rounds", type=int, default=15,
                   help="minimum rounds of the interleaved timing that gives the speed ratios "
                        "and their 95%% confidence intervals (≥ 6)")
    p.add_argument("--paired-seconds", type=float, default=10.0,
                   help="minimum seconds of interleaved timing per config (≥ 0)")
    p.add_argument("--timeout", type=float, default=900.0,
                   help="seconds each measurement's subprocess may run before it is reported "
                        "as timed out (> 0)")
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)
    p.add_argument("--out", default=None, help="also write the tables (Markdown) to this file")


def run(args: argparse.Namespace) -> int:
    """Run ``maml-depth bench``: the engine tables (or the theory tables with ``--theory``),
    printed and optionally written to ``--out``; returns the exit status.

    References: docs/benchmarks.md."""
    from maml_depth import _checks
    from maml_depth._io import atomic_write_text
    from maml_depth.benchmarks import engine
    from maml_depth.benchmarks.table import Table, render
    from maml_depth.errors import InvalidArgumentError
    from maml_depth.numerics import resolve_device

    if args.repeats < 20:
        raise InvalidArgumentError(f"--repeats must be ≥ 20 for a median, got {args.repeats}")
    _checks.positive_int("--rounds", args.rounds)
    engine.check_paired_rounds("--paired-rounds", args.paired_rounds)
    _checks.finite_float("--timeout", args.timeout, positive=True)
    _checks.finite_float("--paired-seconds", args.paired_seconds, nonneg=True)
    check_device("--device", args.device)
    check_out_file("--out", args.out)
    tables: list[Table] = []
    if args.theory:
        from maml_depth.benchmarks import expected_loss, update_rule

        tables += update_rule.run()
        tables += expected_loss.run(four_layers=args.four_layers)
    else:
        configs = args.configs.split(",") if args.configs else None
        peers = args.peers.split(",") if args.peers else None
        for c in configs or []:
            if c not in engine.CONFIGS:
                raise InvalidArgumentError(
                    f"--configs: unknown config {c!r}; choose from {sorted(engine.CONFIGS)}")
        for p in peers or []:
            if p not in engine.PEERS:
                raise InvalidArgumentError(
                    f"--peers: unknown peer {p!r}; choose from {list(engine.PEERS)}")
        device = str(resolve_device(args.device))
        tables = engine.run(configs, peers, device=device, repeats=args.repeats,
                            rounds=args.rounds, paired_rounds=args.paired_rounds,
                            paired_s=args.paired_seconds, timeout=args.timeout)
    text = render(tables)
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
    return 0
