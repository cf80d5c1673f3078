"""``maml-depth train``: meta-train a deep linear network on Gaussian linear-regression tasks.

``--demo`` meta-trains a shallow (depth 1) and a deep linear network (top layer adapted) on
the same tasks and prints their post-adaptation losses on fresh tasks.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any

from maml_depth.errors import InvalidArgumentError

HELP = "meta-train a (deep) linear network with MAML on linear-regression tasks"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--demo", action="store_true",
                   help="shallow vs deep on the same tasks (ignores --dims/--adapt)")
    p.add_argument("--dims", default="8,16,16,1",
                   help="layer widths d_0,...,d_L (default 8,16,16,1)")
    p.add_argument("--adapt", default="top", help="adapted layers: 'all', 'top' or '1,3'")
    p.add_argument("--alpha", type=float, default=0.1, help="inner step size α")
    p.add_argument("--steps", type=int, default=1, help="inner steps k")
    p.add_argument("--first-order", action="store_true", help="FOMAML")
    p.add_argument("--preconditioner", default="maml", help="inner-update preconditioner")
    p.add_argument("--meta-steps", type=int, default=1500)
    p.add_argument("--meta-batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3, help="outer (Adam) learning rate")
    p.add_argument("--n-support", type=int, default=10)
    p.add_argument("--n-query", type=int, default=None,
                   help="query samples (default: exact population query loss)")
    p.add_argument("--sigma", type=float, default=0.1, help="label noise std σ")
    p.add_argument("--condition", type=float, default=10.0,
                   help="condition number of Σ (eigenvalues log-spaced, rotated)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-tasks", type=int, default=2000)
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--engine", default="auto", help="auto|vmap|loop")
    p.add_argument("--out", default=None, help="write the result as JSON (atomically)")
    p.add_argument("--no-progress", action="store_true")


def _parse_dims(text: str) -> tuple[int, ...]:
    from maml_depth import _checks

    try:
        values = [int(x) for x in text.split(",")]
    except ValueError:
        raise InvalidArgumentError(
            f"--dims must be comma-separated integers, got {text!r}"
        ) from None
    return _checks.dims("--dims", values)


def run(args: argparse.Namespace) -> int:
    import torch

    from maml_depth._io import atomic_write_json
    from maml_depth.numerics import (
        DeepLinear,
        InnerConfig,
        LinearRegressionTasks,
        OuterConfig,
        evaluate,
        meta_train,
        resolve_device,
        resolve_dtype,
    )

    device, dtype = resolve_device(args.device), resolve_dtype(args.dtype)
    dims = _parse_dims(args.dims)
    if args.condition < 1 or args.condition != args.condition:
        raise InvalidArgumentError(f"--condition must be ≥ 1, got {args.condition}")
    d = dims[0]
    gen = torch.Generator().manual_seed(args.seed)
    eigs = torch.logspace(0, float(torch.log10(torch.tensor(args.condition))), d,
                          dtype=torch.float64)
    eigs = eigs / eigs.mean()
    family = LinearRegressionTasks.from_spectrum(
        eigs.tolist(), m=dims[-1], sigma=args.sigma, n_support=args.n_support,
        n_query=args.n_query, generator=gen, dtype=dtype).to(device=device)
    outer = OuterConfig(meta_steps=args.meta_steps, meta_batch=args.meta_batch, lr=args.lr)
    runs: list[tuple[str, tuple[int, ...], Any]] = []
    if args.demo:
        h = 2 * d
        runs = [("shallow", (d, dims[-1]), "all"), ("deep", (d, h, h, dims[-1]), "top")]
    else:
        runs = [("model", dims, args.adapt)]
    report: dict[str, Any] = {"config": vars(args) | {"device": str(device)}, "models": {}}
    failed = False
    for name, mdims, adapt in runs:
        model = DeepLinear(mdims, init="balanced", scale=0.5,
                           generator=torch.Generator().manual_seed(args.seed + 1),
                           dtype=dtype, device=device)
        inner = InnerConfig(alpha=args.alpha, adapt=adapt, steps=args.steps,
                            first_order=args.first_order, preconditioner=args.preconditioner)
        with warnings.catch_warnings():  # divergence is reported below, once
            warnings.simplefilter("ignore", RuntimeWarning)
            res = meta_train(model, family, inner, outer, seed=args.seed, engine=args.engine,
                             progress=not args.no_progress)
        mean, se, n = evaluate(model, res.params, family, inner, num_tasks=args.eval_tasks,
                               seed=args.seed + 10_000)
        print(f"{name:8s} dims={','.join(map(str, mdims)):14s} adapt={adapt!s:4s} "
              f"post-adaptation loss {mean:.5f} ± {1.96 * se:.5f} (95% CI, {n} fresh tasks), "
              f"{res.steps_done} steps in {res.seconds:.1f} s [{res.engine}, {res.device}]")
        if res.diverged:
            print(f"{name}: {res.diverged}", file=sys.stderr)
            failed = True
        report["models"][name] = {
            "dims": list(mdims), "adapt": adapt, "post_loss": mean, "stderr": se,
            "eval_tasks": n, "steps_done": res.steps_done, "diverged": res.diverged,
            "history": {"step": res.history.step[-50:], "post": res.history.post_loss[-50:]},
            "seconds": res.seconds,
        }
    if args.out:
        atomic_write_json(args.out, report)
        print(f"wrote {args.out}")
    return 1 if failed else 0
