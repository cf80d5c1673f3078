"""``maml-depth train``: meta-train a deep linear network on Gaussian linear-regression tasks
and print its post-adaptation loss on fresh tasks beside the theory's value.

Tasks: ``Σ`` with eigenvalues log-spaced in ``[1, κ]`` (``--condition``), scaled to mean 1 and
Haar-rotated; ``Λ = I`` (rotated), ``W̄ = 0``; ``n`` support samples (``--n-support``), label
noise σ (``--sigma``), exact population query loss unless ``--n-query``.

Theory (docs/theory/index.md; :func:`maml_depth.theory.reference_losses`): with one inner step
and the plain MAML update, a shallow model (depth 1, all adapted) meta-trains to
``E ℒ(αI)``; a deep model adapting only its top layer, with hidden widths ≥ d, reaches the
best preconditioner, ``E ℒ(P*)``. The same holds for Meta-Curvature/KFO at depth 1
(``E ℒ(P*)``). Other configurations have no closed form; the command says so.

``--demo`` meta-trains a shallow (``d_0 → d_L``, all adapted) and a deep
(``d_0, 2d_0, 2d_0, d_L``, top adapted) network on the same tasks and prints both beside
``E ℒ(αI)`` and ``E ℒ(P*)``: the measured 95% CI should contain the theory value (or lie
within 2% of it).
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from typing import Any

from maml_depth.commands._common import (
    DEVICE_HELP,
    check_device,
    check_out_file,
    nonneg_int,
)
from maml_depth.errors import InvalidArgumentError

HELP = "meta-train a (deep) linear network with MAML on linear-regression tasks"

#: the relative tolerance of "agrees with theory" (besides the CI containing the value)
AGREE_REL = 0.02
ENGINES = ("auto", "factorized", "vmap", "loop")
PRECONDITIONER_NAMES = ("maml", "meta-sgd", "meta-curvature", "kfo")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the options of ``maml-depth train`` (widths, adapted layers, α, tasks, budget, …) to
    ``p``."""
    p.add_argument("--demo", action="store_true",
                   help="meta-train a shallow (d_0→d_L, all layers adapted) and a deep "
                        "(d_0,2d_0,2d_0,d_L, top layer adapted) network on the same tasks; "
                        "overrides --dims (keeps only d_0 and d_L) and --adapt")
    p.add_argument("--dims", default="8,16,16,1", help="layer widths d_0,...,d_L")
    p.add_argument("--adapt", default="top",
                   help="adapted layers: 'all', 'top' (the output layer) or indices like '1,3' "
                        "(1 = input layer)")
    p.add_argument("--alpha", type=float, default=0.1, help="inner step size α")
    p.add_argument("--steps", "--inner-steps", dest="steps", type=int, default=1,
                   help="inner steps k")
    p.add_argument("--first-order", action="store_true", help="FOMAML")
    p.add_argument("--preconditioner", "--optimizer", dest="preconditioner", default="maml",
                   help=f"meta-optimizer of the inner update: {'|'.join(PRECONDITIONER_NAMES)}")
    p.add_argument("--meta-steps", type=int, default=2000, help="outer steps")
    p.add_argument("--meta-batch", type=int, default=64, help="tasks per outer step")
    p.add_argument("--lr", type=float, default=1e-2, help="outer (Adam) learning rate")
    p.add_argument("--schedule", default="cosine", choices=["cosine", "constant"],
                   help="outer learning-rate schedule")
    p.add_argument("--init", default="gaussian", choices=["gaussian", "balanced", "identity"],
                   help="initialisation (balanced factors of a rank-1 map stay rank 1 for "
                        "m = 1: a saddle)")
    p.add_argument("--init-scale", type=float, default=1.0, help="initialisation scale")
    p.add_argument("--n-support", "--shots", dest="n_support", type=int, default=10,
                   help="support shots n per task")
    p.add_argument("--n-query", type=int, default=None,
                   help="query samples (None: the exact population query loss)")
    p.add_argument("--sigma", type=float, default=0.1, help="label noise std σ")
    p.add_argument("--condition", "--anisotropy", dest="condition", type=float, default=10.0,
                   help="input-covariance condition number κ of Σ (eigenvalues log-spaced, "
                        "rotated)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed (≥ 0)")
    p.add_argument("--eval-tasks", type=int, default=20000,
                   help="fresh tasks for the post-adaptation loss")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"],
                   help="precision")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--engine", default="auto", help="|".join(ENGINES))
    p.add_argument("--out", default=None,
                   help="write the result (data, theory values, convergence) as JSON, "
                        "atomically")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _parse_dims(text: str) -> tuple[int, ...]:
    from maml_depth import _checks

    try:
        values = [int(x) for x in text.split(",")]
    except ValueError:
        raise InvalidArgumentError(
            f"--dims must be comma-separated integers, got {text!r}"
        ) from None
    return _checks.dims("--dims", values)


def _check_args(args: argparse.Namespace) -> tuple[int, ...]:
    """Every option, up front (one line naming the option on failure)."""
    from maml_depth import _checks

    dims = _parse_dims(args.dims)
    _checks.finite_float("--alpha", args.alpha, positive=True)
    _checks.positive_int("--steps", args.steps)
    _checks.positive_int("--meta-steps", args.meta_steps)
    _checks.positive_int("--meta-batch", args.meta_batch)
    _checks.finite_float("--lr", args.lr, positive=True)
    _checks.finite_float("--init-scale", args.init_scale, positive=True)
    _checks.positive_int("--n-support", args.n_support)
    if args.n_query is not None:
        _checks.positive_int("--n-query", args.n_query)
    _checks.finite_float("--sigma", args.sigma, nonneg=True)
    cond = _checks.finite_float("--condition", args.condition)
    if cond < 1:
        raise InvalidArgumentError(f"--condition must be ≥ 1, got {args.condition}")
    if args.eval_tasks < 2:
        raise InvalidArgumentError(f"--eval-tasks must be ≥ 2, got {args.eval_tasks}")
    if args.engine not in ENGINES:
        raise InvalidArgumentError(f"--engine must be one of {'|'.join(ENGINES)}, "
                                   f"got {args.engine!r}")
    key = args.preconditioner.strip().lower().replace("_", "-")
    if key not in PRECONDITIONER_NAMES:
        raise InvalidArgumentError(f"--preconditioner must be one of "
                                   f"{'|'.join(PRECONDITIONER_NAMES)}, got {args.preconditioner!r}")
    args.preconditioner = key
    if not args.demo:
        _checks.resolve_adapt(args.adapt, len(dims) - 1, name="--adapt")
    check_device("--device", args.device)
    check_out_file("--out", args.out)
    return dims


def theory_target(ref: Any, dims: tuple[int, ...], adapt: tuple[int, ...], *, steps: int,
                  first_order: bool, preconditioner: str) -> tuple[str | None, float | None, str]:
    """``(label, value, note)``: the loss theory predicts after meta-training this model, or
    ``(None, None, why not)`` where no closed form exists."""
    L, d = len(dims) - 1, dims[0]
    why = []
    if steps != 1:
        why.append("k > 1 inner steps")
    if first_order:
        why.append("first-order MAML")
    if why:
        return None, None, "no closed form for " + ", ".join(why)
    if L == 1 and preconditioner == "maml":
        return "E L(alpha I)", ref.loss_alpha, "shallow MAML: W = W̄, step αI"
    if L == 1 and preconditioner in ("meta-curvature", "kfo"):
        return "E L(P*)", ref.loss_P_star, "a full learned preconditioner reaches P*"
    if L > 1 and preconditioner == "maml" and adapt == (L,):
        if min(dims[1:-1]) < d:
            return None, None, "no closed form: a hidden width below d limits rank(P)"
        return "E L(P*)", ref.loss_P_star, "deep net adapting its top layer: P = α BᵀB → P*"
    return None, None, (f"no closed form for preconditioner {preconditioner!r} with "
                        f"adapted layers {list(adapt)} of depth {L}")


def _num(x: float) -> str:
    """4 decimals for ordinary losses, 4 significant digits for huge ones."""
    return f"{x:.4f}" if abs(x) < 1e4 else f"{x:.4g}"


def agrees(mean: float, half_width: float, theory: float) -> bool:
    """The 95% CI ``mean ± half_width`` contains ``theory`` or lies within 2% of it."""
    if abs(mean - theory) <= half_width:
        return True
    nearest = mean - half_width if mean > theory else mean + half_width
    return abs(nearest - theory) <= AGREE_REL * abs(theory)


def run(args: argparse.Namespace) -> int:
    """Run ``maml-depth train``: meta-train a deep linear network on Gaussian linear-regression
    tasks (or, with ``--demo``, a shallow and a deep one on the same tasks) and print the
    measured post-adaptation loss beside the theory where a closed form applies; returns the
    exit status.

    References: docs/theory/expected-loss.md#closed-form."""
    import torch

    from maml_depth import _checks
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
    from maml_depth.theory import reference_losses

    dims = _check_args(args)
    device, dtype = resolve_device(args.device), resolve_dtype(args.dtype)
    d, m = dims[0], dims[-1]
    gen = torch.Generator().manual_seed(args.seed)
    eigs = torch.logspace(0, math.log10(args.condition), d, dtype=torch.float64)
    eigs = eigs / eigs.mean()
    family = LinearRegressionTasks.from_spectrum(
        eigs.tolist(), m=m, sigma=args.sigma, n_support=args.n_support,
        n_query=args.n_query, generator=gen, dtype=torch.float64)
    ref = reference_losses(family.Sigma, family.Lam, args.sigma, args.n_support, args.alpha,
                           m=m)
    family = family.to(device=device, dtype=dtype)
    outer = OuterConfig(meta_steps=args.meta_steps, meta_batch=args.meta_batch, lr=args.lr,
                        schedule=args.schedule)
    runs: list[tuple[str, tuple[int, ...], Any]]
    if args.demo:
        h = 2 * d
        runs = [("shallow", (d, m), "all"), ("deep", (d, h, h, m), "top")]
    else:
        runs = [("model", dims, args.adapt)]
    config = {k: v for k, v in vars(args).items()
              if not k.startswith("_") and isinstance(v, str | int | float | bool | None)}
    report: dict[str, Any] = {"config": config | {"device": str(device)},
                              "theory": ref.as_dict(), "models": {}}
    print(f"theory (m = {m}, n = {args.n_support}, σ = {args.sigma}, κ = {args.condition}): "
          f"E L(alpha I) = {_num(ref.loss_alpha)} at alpha = {ref.alpha:g}; "
          f"alpha* = {ref.alpha_star:.4f}, E L(alpha* I) = {ref.loss_alpha_star:.4f}; "
          f"E L(P*) = {ref.loss_P_star:.4f}")
    failed = False
    for name, mdims, adapt in runs:
        layers = _checks.resolve_adapt(adapt, len(mdims) - 1, name="--adapt")
        model = DeepLinear(mdims, init=args.init, scale=args.init_scale,
                           generator=torch.Generator().manual_seed(args.seed + 1),
                           dtype=dtype, device=device)
        inner = InnerConfig(alpha=args.alpha, adapt=adapt, steps=args.steps,
                            first_order=args.first_order, preconditioner=args.preconditioner)
        with warnings.catch_warnings():  # divergence is reported below, once
            warnings.simplefilter("ignore", RuntimeWarning)
            res = meta_train(model, family, inner, outer, seed=args.seed, engine=args.engine,
                             progress=not args.no_progress)
        mean, se, n = evaluate(model, res.params, family, inner, num_tasks=args.eval_tasks,
                               seed=args.seed + 10_000, precond_state=res.precond_state)
        label, target, note = theory_target(ref, mdims, layers, steps=args.steps,
                                            first_order=args.first_order,
                                            preconditioner=args.preconditioner)
        hw = 1.96 * se
        if res.diverged:
            vs = "theory: not compared, meta-training diverged (the last good state is shown)"
            ok = None
        elif target is None:
            vs = f"theory: {note}"
            ok = None
        else:
            ok = agrees(mean, hw, target)
            vs = (f"theory {label} = {target:.4f} "
                  f"({'agrees' if ok else 'DISAGREES'}: {(mean - target) / target:+.2%})")
        print(f"{name:8s} dims={','.join(map(str, mdims)):12s} adapt={adapt!s:4s} "
              f"post-adaptation loss {_num(mean)} ± {_num(hw)} (95% CI, {n} fresh tasks) vs {vs}")
        conv = res.convergence
        print(f"{'':8s} {res.steps_done} meta-steps in {res.seconds:.1f} s "
              f"[{res.engine}, {res.device}]; "
              + (conv.summary() if conv is not None else "diverged"))
        if res.diverged:
            print(f"{name}: {res.diverged}", file=sys.stderr)
            failed = True
        elif conv is not None and not conv.converged:
            print(f"{name}: not converged ({conv.reason}): more --meta-steps or another --lr",
                  file=sys.stderr)
        report["models"][name] = {
            "dims": list(mdims), "adapt": adapt, "post_loss": mean, "stderr": se,
            "ci95": [mean - hw, mean + hw], "eval_tasks": n,
            "theory": {"label": label, "value": target, "note": note, "agrees": ok},
            "convergence": conv.as_dict() if conv is not None else None,
            "steps_done": res.steps_done, "diverged": res.diverged,
            "history": {"step": res.history.step[-50:], "post": res.history.post_loss[-50:]},
            "seconds": res.seconds,
        }
    if args.out:
        atomic_write_json(args.out, report)
        print(f"wrote {args.out}")
    return 1 if failed else 0
