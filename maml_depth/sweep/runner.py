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

- Σ = Q diag(s) Qᵀ, ``s`` log-spaced in ``[1, condition]`` and scaled to mean 1;
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
from maml_depth.common.store import finite_or_none
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
    kappa = float(point["condition"])
    eigs = torch.logspace(0.0, math.log10(kappa), d, dtype=torch.float64) if d > 1 else \
        torch.ones(1, dtype=torch.float64)
    eigs = eigs / eigs.mean()
    r = d if point["lam_rank"] == "full" else int(point["lam_rank"])
    lam = [point["tau"] ** 2] * r + [0.0] * (d - r)
    n_query = None if point["n_query"] == "population" else int(point["n_query"])
    fam = LinearRegressionTasks.from_spectrum(
        eigs.tolist(), lam, m=m, sigma=point["sigma"], n_support=point["n_support"],
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
    """Theory predictions and extracted-preconditioner statistics of one trained point.

    - ``theory_loss``: the loss at the meta-training optimum where a closed form exists
      (MAML, the top layer adapted, one step, hidden widths ≥ d):
      :func:`maml_depth.theory.reference_losses` — ``E ℒ(αI)`` for the shallow model,
      ``E ℒ(P*)`` for a deep one (docs/theory/expected-loss.md#optimal-preconditioner);
      otherwise ``theory_note`` says why there is none.
    - ``theory_loss_at_weights``: the expected post-adaptation loss of the *trained* weights,
      exact (:func:`maml_depth.theory.expected_deep_loss`, any adapted layers and steps,
      docs/theory/exact-expectation.md) inside the engine's reach; beyond it
      (:class:`~maml_depth.theory.TermLimitError`) a Monte Carlo estimate
      (:func:`maml_depth.numerics.monte_carlo_deep_loss`, ``MC_TASKS`` tasks), labelled as
      such in ``theory_kind`` / ``theory_note``. None for meta-optimizers other than MAML
      (their update is not the gradient step the engine expands).
    """
    import numpy as np

    out: dict[str, Any] = {k: None for k in ("theory_loss", "theory_kind", "theory_note",
                                             "theory_loss_at_weights",
                                             "theory_loss_at_weights_se", "precond_rel_err",
                                             "precond_alignment")}
    L, d, alpha = point["depth"], point["d"], float(point["alpha"])
    layers = adapted_layers(point)
    top_only = layers == (L,)
    plain = point["preconditioner"] == "maml"
    reasons = []
    if not plain:
        reasons.append(f"preconditioner {point['preconditioner']!r}")
    if not top_only:
        reasons.append("adapted layers other than the top one")
    if point["steps"] != 1:
        reasons.append("steps > 1")
    if point["first_order"]:
        reasons.append("first_order")
    if L > 1 and min(hidden_widths(point)) < d:
        reasons.append("a hidden width below d")
    from maml_depth.theory import reference_losses

    S, Lam = _np(family.Sigma), _np(family.Lam)
    sigma, n = float(family.sigma), int(family.n_support)
    ref = reference_losses(S, Lam, sigma, n, alpha, m=int(point["m"]))
    P_star = np.asarray(ref.P_star, dtype=np.float64)
    notes = []
    kinds = []
    if reasons:
        notes.append("no closed form at the optimum for " + ", ".join(reasons))
    elif L == 1:
        out["theory_loss"] = ref.loss_alpha
        kinds.append("shallow: E L(alpha I)")
    else:
        out["theory_loss"] = ref.loss_P_star
        kinds.append("deep: E L(P*)")
    ws = [_np(params[f"layers.{j}.weight"]) for j in range(L)]
    if top_only and plain:
        B = np.eye(d)
        for w in ws[:-1]:
            B = w @ B
        P = alpha * (B.T @ B)
        nP, nS = float(np.linalg.norm(P)), float(np.linalg.norm(P_star))
        if nS > 0:
            out["precond_rel_err"] = float(np.linalg.norm(P - P_star)) / nS
            if nP > 0:
                out["precond_alignment"] = float(np.sum(P * P_star)) / (nP * nS)
    if plain:
        value, se, kind, note = loss_at_weights(point, family, ws, layers)
        out["theory_loss_at_weights"] = value
        out["theory_loss_at_weights_se"] = se
        kinds.append(kind)
        if note:
            notes.append(note)
    else:
        notes.append(f"no expected loss at the weights for preconditioner "
                     f"{point['preconditioner']!r}")
    out["theory_kind"] = "; ".join(kinds) or None
    out["theory_note"] = "; ".join(notes) or None
    return out


#: Monte Carlo tasks of the at-weights reference beyond the exact engine's reach
MC_TASKS = 20_000


def loss_at_weights(point: Mapping[str, Any], family: Any, ws: list[Any],
                    layers: tuple[int, ...]) -> tuple[float, float, str, str]:
    """``(value, se, kind, note)``: the expected post-adaptation loss of the network ``ws``
    adapting ``layers`` for the point's steps — exact
    (:func:`maml_depth.theory.expected_deep_loss`) inside the engine's reach, else a Monte
    Carlo estimate with its standard error ``se`` (0 when exact), also stated in ``note``."""
    from maml_depth.theory import TermLimitError, expected_deep_loss

    S, Lam, Wb = _np(family.Sigma), _np(family.Lam), _np(family.W_bar)
    sigma, n, alpha = float(family.sigma), int(family.n_support), float(point["alpha"])
    steps = int(point["steps"])
    try:
        value = float(expected_deep_loss(ws, adapt=layers, steps=steps, W_bar=Wb, Sigma=S,
                                         Lam=Lam, sigma=sigma, n=n, alpha=alpha))
        return value, 0.0, "at weights: exact expected_deep_loss", ""
    except TermLimitError as exc:
        import torch

        from maml_depth.numerics import monte_carlo_deep_loss

        fam64 = family.to(dtype=torch.float64)
        est = monte_carlo_deep_loss(
            fam64, [torch.from_numpy(w) for w in ws], alpha=alpha, adapt=layers, steps=steps,
            num_tasks=MC_TASKS, seed=sub_seed(point["seed"], "theory-mc"))
        why = str(exc).split(";")[0].split(". ")[0]
        return (float(est.mean), float(est.stderr), "at weights: Monte Carlo estimate",
                f"theory_loss_at_weights is a Monte Carlo estimate ({est.num_tasks} tasks, "
                f"s.e. {float(est.stderr):.2g}): beyond the exact engine's reach ({why})")


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
                        steps=point["steps"], first_order=point["first_order"],
                        preconditioner=point["preconditioner"])
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
        "converged": None if res.convergence is None else bool(res.convergence.converged),
        "convergence": None if res.convergence is None else finite_or_none(
            res.convergence.as_dict()),  # NaN (too few steps to tell) → null
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
