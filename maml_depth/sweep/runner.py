"""Running one sweep point: build its tasks and network, meta-train, measure, compare.

:func:`measure` is the sweep's grid task: the executors run it on a worker through
:func:`~maml_depth.common.executors.run_task` (:func:`run_point` is that call), which never
writes files and never raises for a failing point: divergence or any exception becomes
``status = "failed"`` with the error, so the sweep goes on. Torch is limited to
``threads`` (default 1) threads while it runs, so a pool of workers does not oversubscribe
the cores.

A point (see :mod:`maml_depth.sweep.config`) is built as follows, with independent
generators for the family, the initialisation, training and evaluation, each seeded from
``sha256(f"{seed}:{purpose}")``:

- Σ = Q diag(s) Qᵀ, ``s`` log-spaced in ``[1, anisotropy]`` and scaled to mean 1;
  Λ = τ² R diag(1,…,1,0,…,0) Rᵀ of rank ``lam_rank``; Q, R Haar-random when ``rotation``
  (else identity); W̄ = 0, or rows of norm ``w_bar`` drawn in the range of Λ
  (:func:`maml_depth.common.settings.w_bar_in_range`, the package's one such draw);
- a :class:`~maml_depth.numerics.DeepLinear` of widths ``(d, width…, m)``;
- ``meta_train`` with the inner and outer settings of the point, then the post-adaptation
  loss on ``eval_tasks`` fresh tasks (real adaptation with autograd), from its own seed.

The ``result`` of an ``ok`` record has the fields of :data:`RESULT_FIELDS`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

from maml_depth.common.executors import run_task
from maml_depth.sweep.config import RESULT_FIELDS, adapted_layers, hidden_widths, layer_dims

#: evaluation tasks are drawn in chunks of this many (fixed: it determines the tasks drawn)
EVAL_CHUNK = 512


def sub_seed(seed: int, purpose: str) -> int:
    """An independent 63-bit seed for ``purpose`` derived from the point's seed."""
    h = hashlib.sha256(f"{int(seed)}:{purpose}".encode()).hexdigest()
    return int(h[:15], 16)


def build_family(point: Mapping[str, Any]) -> Any:
    """The point's :class:`~maml_depth.numerics.LinearRegressionTasks`."""
    import torch

    from maml_depth.common.settings import w_bar_in_range
    from maml_depth.numerics import LinearRegressionTasks, resolve_dtype

    dtype = resolve_dtype(point["dtype"])
    d, m = point["d"], point["m"]
    gen = torch.Generator().manual_seed(sub_seed(point["seed"], "family"))
    kappa = float(point["anisotropy"])
    eigs = torch.logspace(0.0, math.log10(kappa), d, dtype=torch.float64) if d > 1 else \
        torch.ones(1, dtype=torch.float64)
    eigs = eigs / eigs.mean()
    r = d if point["lam_rank"] == "full" else int(point["lam_rank"])
    lam = [point["tau"] ** 2] * r + [0.0] * (d - r)
    n_query = None if point["n_query"] == "population" else int(point["n_query"])
    fam = LinearRegressionTasks.from_spectrum(
        eigs.tolist(), lam, m=m, sigma=point["noise"], n_support=point["shots"],
        n_query=n_query, rotate=bool(point["rotation"]), generator=gen, dtype=torch.float64)
    if point["w_bar"] > 0:
        W_bar = w_bar_in_range(fam.Lam, generator=gen, rows=m, norm=point["w_bar"])
        fam = LinearRegressionTasks(fam.Sigma, W_bar, fam.Lam, fam.sigma, fam.n_support,
                                    fam.n_query)
    return fam.to(dtype=dtype)


def build_model(point: Mapping[str, Any]) -> Any:
    """The point's :class:`DeepLinear` network: its widths, initialisation scheme and scale and
    dtype, drawn from the point's seed (sub-seed ``"init"``)."""
    import torch

    from maml_depth.numerics import DeepLinear, resolve_dtype

    gen = torch.Generator().manual_seed(sub_seed(point["seed"], "init"))
    return DeepLinear(layer_dims(point), init=point["init"], scale=point["init_scale"],
                      generator=gen, dtype=resolve_dtype(point["dtype"]))


def _np(t: Any) -> Any:
    import torch

    return t.detach().to("cpu", dtype=torch.float64).numpy()


def theory_fields(point: Mapping[str, Any], family: Any, params: Mapping[str, Any]
                  ) -> dict[str, Any]:
    """Theory prediction and extracted-preconditioner statistics
    (docs/theory/expected-loss.md#closed-form,
    docs/theory/expected-loss.md#optimal-preconditioner)."""
    import numpy as np

    out: dict[str, Any] = {k: None for k in ("theory_loss", "theory_kind", "theory_note",
                                             "theory_loss_at_weights", "precond_rel_err",
                                             "precond_alignment")}
    L, d, alpha = point["depth"], point["d"], float(point["alpha"])
    top_only = adapted_layers(point) == (L,)
    plain = point["optimizer"] == "maml"
    reasons = []
    if not plain:
        reasons.append(f"optimizer {point['optimizer']!r}")
    if not top_only:
        reasons.append("adapted layers other than the top one")
    if point["inner_steps"] != 1:
        reasons.append("inner_steps > 1")
    if point["first_order"]:
        reasons.append("first_order")
    if L > 1 and min(hidden_widths(point)) < d:
        reasons.append("a hidden width below d")
    from maml_depth.theory import expected_loss, optimal_preconditioner

    S, Lam, Wb = _np(family.Sigma), _np(family.Lam), _np(family.W_bar)
    sigma, n = float(family.sigma), int(family.n_support)
    P_star, _ = optimal_preconditioner(S, Lam, sigma, n, kind="full")
    P_star = np.asarray(P_star, dtype=np.float64)
    if reasons:
        out["theory_note"] = "no closed form for " + ", ".join(reasons)
    elif L == 1:
        out["theory_loss"] = float(expected_loss(Wb, W_bar=Wb, Sigma=S, Lam=Lam, sigma=sigma,
                                                 n=n, alpha=alpha))
        out["theory_kind"] = "shallow: E L(alpha I)"
    else:
        out["theory_loss"] = float(expected_loss(Wb, W_bar=Wb, Sigma=S, Lam=Lam, sigma=sigma,
                                                 n=n, alpha=1.0, R=P_star))
        out["theory_kind"] = "deep: E L(P*)"
    if top_only and plain:
        ws = [_np(params[f"layers.{j}.weight"]) for j in range(L)]
        B = np.eye(d)
        for w in ws[:-1]:
            B = w @ B
        BtB = B.T @ B
        P = alpha * BtB
        nP, nS = float(np.linalg.norm(P)), float(np.linalg.norm(P_star))
        if nS > 0:
            out["precond_rel_err"] = float(np.linalg.norm(P - P_star)) / nS
            if nP > 0:
                out["precond_alignment"] = float(np.sum(P * P_star)) / (nP * nS)
        if point["inner_steps"] == 1:
            W = ws[-1] @ B
            out["theory_loss_at_weights"] = float(expected_loss(
                W, W_bar=Wb, Sigma=S, Lam=Lam, sigma=sigma, n=n, alpha=alpha,
                R=None if L == 1 else BtB))
    return out


def _pre_loss(model: Any, params: Any, family: Any, num_tasks: int, seed: int,
              chunk: int = EVAL_CHUNK) -> float:
    """Pre-adaptation loss on the tasks :func:`~maml_depth.numerics.evaluate` draws with the
    same seed and chunking."""
    import torch

    from maml_depth.numerics import pre_adaptation_losses

    gen = torch.Generator().manual_seed(int(seed))
    vals, left = [], num_tasks
    with torch.no_grad():
        while left > 0:
            T = min(chunk, left)
            vals.append(pre_adaptation_losses(model, params, family.sample(T, gen), family))
            left -= T
    return float(torch.cat(vals).to(torch.float64).mean())


def measure(point: Mapping[str, Any]) -> dict[str, Any]:
    """Meta-train and measure one point; raises on failure (see :func:`run_point`)."""
    from maml_depth.errors import DivergenceError
    from maml_depth.numerics import InnerConfig, OuterConfig, evaluate, meta_train

    family = build_family(point)
    model = build_model(point)
    inner = InnerConfig(alpha=point["alpha"], adapt=adapted_layers(point),
                        steps=point["inner_steps"], first_order=point["first_order"],
                        preconditioner=point["optimizer"])
    outer = OuterConfig(meta_steps=point["meta_steps"], meta_batch=point["meta_batch"],
                        lr=point["lr"], optimizer=point["outer_optimizer"],
                        log_every=max(1, point["meta_steps"] // 50))
    res = meta_train(model, family, inner, outer, seed=sub_seed(point["seed"], "train"),
                     engine="auto", on_divergence="raise", progress=False)
    eval_seed = sub_seed(point["seed"], "eval")
    mean, se, n_eval = evaluate(model, res.params, family, inner, num_tasks=point["eval_tasks"],
                                seed=eval_seed, precond_state=res.precond_state,
                                chunk=EVAL_CHUNK)
    if not math.isfinite(mean):
        raise DivergenceError(f"post-adaptation loss on fresh tasks is {mean}")
    out: dict[str, Any] = {
        "post_loss": mean,
        "post_loss_se": se,
        "pre_loss": _pre_loss(model, res.params, family, point["eval_tasks"], eval_seed),
        "eval_tasks": n_eval,
        "steps_done": res.steps_done,
        "train_post_loss": res.history.post_loss[-1] if res.history.post_loss else None,
        "w_dist": float((model.end_to_end(res.params) - family.W_bar).norm()),
    }
    out.update(theory_fields(point, family, res.params))
    tl = out["theory_loss"]
    out["theory_gap"] = None if tl is None else mean - tl
    return {k: out.get(k) for k in RESULT_FIELDS}


def run_point(point: Mapping[str, Any], threads: int | None = 1) -> dict[str, Any]:
    """Run one point (:func:`measure` under
    :func:`~maml_depth.common.executors.run_task`); returns ``{"status", "error",
    "result", "timing"}`` (never raises for a failing point; ``KeyboardInterrupt`` still
    propagates)."""
    return run_task(measure, point, threads)
