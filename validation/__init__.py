"""maml_depth.validation — the paper's claims (docs/theory/paper-claims.md) as executable checks.

Each claim is registered in :data:`CLAIMS` (see :func:`claim` to add your own) and returns a
:class:`ClaimResult` with a verdict (pass / fail / inconclusive / not available), the
measured quantity and its theoretical value, and a 95% confidence interval.
"""

# the claims of docs/theory/paper-claims.md, registered on import (one module each)
from maml_depth.validation import (
    claim_all_layers_exact,
    claim_bottom_layers,
    claim_depth_helps,
    claim_depth_helps_k_steps,
    claim_expected_loss,
    claim_meta_optimizers,
    claim_update_rule,
    claim_upper_layers,
    neighbours,
    stats,
    strategies,
)
from maml_depth.validation.claims import (
    BUDGETS,
    CLAIMS,
    SUITES,
    Budget,
    Claim,
    ClaimResult,
    RunContext,
    claim,
    run_claim,
    versions,
)
from maml_depth.validation.report import render_markdown, write_report

__all__ = [
    "BUDGETS",
    "CLAIMS",
    "SUITES",
    "Budget",
    "Claim",
    "ClaimResult",
    "RunContext",
    "claim",
    "claim_all_layers_exact",
    "claim_bottom_layers",
    "claim_depth_helps",
    "claim_depth_helps_k_steps",
    "claim_expected_loss",
    "claim_meta_optimizers",
    "claim_update_rule",
    "claim_upper_layers",
    "neighbours",
    "render_markdown",
    "run_claim",
    "stats",
    "strategies",
    "versions",
    "write_report",
]
