"""Claim 1 — the exact update rule and its first-order Kronecker term.

For random depths L ∈ 1..6, widths 1..5, adapted subsets S, inner steps k ∈ 1..3, step sizes
and data, the symbolic exact update of theory/ (``exact_update``) equals a real torch
network adapted by autograd (numerics/ ``inner_adapt``) to float64 round-off (relative error
≤ 1e-10), and ``∂W'/∂α`` at α = 0 — computed by autograd through the network's inner loop —
equals ``−P vec G`` with the Kronecker sum ``P = Σ_{j∈S} (B_jᵀB_j) ⊗ (A_jA_jᵀ)`` of theory/.

References: docs/theory/update-rules.md#one-step, docs/theory/paper-claims.md#claim-1; Arnold,
Iqbal, Sha (AISTATS 2021), §3.
"""

from __future__ import annotations

import numpy as np
import torch

from maml_depth.common import stats
from maml_depth.numerics import DeepLinear, inner_adapt
from maml_depth.theory import exact_update, first_order_preconditioner
from maml_depth.validation.claims import ClaimResult, RunContext, claim

RTOL_UPDATE = 1e-10  # float64 round-off for products of ≤ 6 layers and ≤ 3 steps
RTOL_FIRST_ORDER = 1e-9  # a derivative through k = 1 steps: a few more roundings


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b)) / max(float(np.linalg.norm(b)), 1e-300)


def check_case(rng: np.random.Generator) -> dict[str, float | int | list[int]]:
    """One random case; returns its configuration and both relative errors."""
    L = int(rng.integers(1, 7))
    dims = [int(x) for x in rng.integers(1, 6, size=L + 1)]
    S = sorted(int(j) for j in rng.choice(np.arange(1, L + 1), size=rng.integers(1, L + 1),
                                           replace=False))
    k = int(rng.integers(1, 4))
    n = int(rng.integers(1, 8))
    alpha = float(rng.uniform(0.01, 0.3))
    model = DeepLinear(dims, generator=torch.Generator().manual_seed(int(rng.integers(2**31))))
    params = {name: p.detach() for name, p in model.named_parameters()}
    X = torch.from_numpy(rng.standard_normal((n, dims[0])))
    Y = torch.from_numpy(rng.standard_normal((n, dims[-1])))
    # numerics: autograd through the network
    W_num = model.end_to_end(inner_adapt(model, params, X, Y, alpha=alpha, adapt=S, steps=k))
    # theory: the compiled symbolic rule (columns are samples there)
    weights = [params[nm].numpy() for nm in model.weight_names]
    W_th = exact_update(weights, X.T.numpy(), Y.T.numpy(), alpha, S, k)
    err_update = _rel(np.asarray(W_th), W_num.detach().numpy())

    # first order: d W'/dα at α = 0 by autograd through inner_adapt vs −P vec G
    def w_of(a: torch.Tensor) -> torch.Tensor:
        return model.end_to_end(inner_adapt(model, params, X, Y, alpha=a, adapt=S, steps=1))

    dW = torch.func.jacrev(w_of)(torch.zeros((), dtype=torch.float64))
    W = model.end_to_end(params)
    G = (W @ X.T - Y.T) @ X / n
    P = np.asarray(first_order_preconditioner(weights, S))
    vecG = G.detach().numpy().reshape(-1, order="F")
    vec_dW = dW.detach().numpy().reshape(-1, order="F")
    err_first = _rel(vec_dW, -P @ vecG) if np.linalg.norm(P @ vecG) > 0 else float(
        np.linalg.norm(vec_dW))
    return {"depth": L, "dims": dims, "adapt": S, "steps": k, "n": n,
            "err_update": err_update, "err_first_order": err_first}


@claim("update-rule", number=1, title="Exact update rule",
       statement="The symbolic exact update (any L, widths, S, k) equals autograd on a real "
                 "torch network to float64 round-off; the first-order term is the Kronecker "
                 "sum Σ_j (B_jᵀB_j) ⊗ (A_jA_jᵀ).",
       reference="docs/theory/update-rules.md#one-step, docs/theory/paper-claims.md#claim-1; "
                 "paper §3")
def run(ctx: RunContext) -> ClaimResult:
    """Claim 1: on random cases (depth, widths, adapted set S, steps k), the symbolic exact
    update equals autograd on a real network and the first-order rule matches to ``O(α²)``;
    the failure rate with its Clopper–Pearson interval.

    References: docs/theory/paper-claims.md#claim-1,
    docs/theory/update-rules.md#exact-update."""
    rng = np.random.default_rng(ctx.seed)
    cases = [check_case(rng) for _ in range(ctx.budget.cases)]
    eu = np.array([c["err_update"] for c in cases])
    ef = np.array([c["err_first_order"] for c in cases])
    failures = int(np.sum(~(eu <= RTOL_UPDATE)) + np.sum(~(ef <= RTOL_FIRST_ORDER)))
    n = 2 * len(cases)
    iv = stats.clopper_pearson(failures, n)
    verdict = "pass" if failures == 0 else "fail"
    worst = max(cases, key=lambda c: float(c["err_update"]))  # type: ignore[arg-type]
    return ctx.result(
        verdict=verdict, measured=float(eu.max()), theory=0.0, interval=iv,
        effect="failure rate over cases (update and first-order checks)",
        summary=(f"{len(cases)} random networks: max relative error of W' {eu.max():.1e} "
                 f"(tol {RTOL_UPDATE:g}), of ∂W'/∂α vs −P vec G {ef.max():.1e} "
                 f"(tol {RTOL_FIRST_ORDER:g}); {failures} of {n} checks failed"),
        config={"cases": len(cases), "depth": "1-6", "widths": "1-5", "steps": "1-3"},
        details={"max_err_update": float(eu.max()), "max_err_first_order": float(ef.max()),
                 "median_err_update": float(np.median(eu)), "worst_case": worst},
    )
