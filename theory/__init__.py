"""maml_depth.theory — sympy derivations of MAML with deep linear networks, compiled to
numpy and torch.

theory/ never imports numerics/: it compiles its own expressions to torch.
"""

# --- update rules (MATH.md §1) ------------------------------------------------------------
# --- expected loss and preconditioners (MATH.md §2–4) ---------------------------------------
from maml_depth.theory.expected_loss import (
    derive_expected_loss,
    expected_loss,
    expected_loss_general_prior,
    expected_loss_symbolic,
    isotropic_symbols,
)
from maml_depth.theory.moments import (
    GaussianMoments,
    RegressionMoments,
    gaussian_moment,
    isserlis_moment,
    verify_moment_identities,
)
from maml_depth.theory.population import layer_factors, population_maml_loss
from maml_depth.theory.preconditioners import (
    KroneckerPreconditioner,
    OptimalPreconditioner,
    fixed_step_loss,
    optimal_kronecker_preconditioner,
    optimal_preconditioner,
    preconditioned_loss,
)
from maml_depth.theory.reference import reference_losses as reference_losses
from maml_depth.theory.scalar import (
    ScalarSymbols,
    scalar_layer_updates,
    scalar_maml_objective,
    scalar_objective_function,
    scalar_symbols,
    scalar_task_objective,
    scalar_update,
    scalar_update_function,
)
from maml_depth.theory.update_rule import (
    RuleSymbols,
    UpdateRule,
    exact_update,
    first_order_preconditioner,
    first_order_preconditioner_symbolic,
    rule_symbols,
    update_rule,
)

__all__ = [
    "GaussianMoments",
    "KroneckerPreconditioner",
    "OptimalPreconditioner",
    "RegressionMoments",
    "RuleSymbols",
    "ScalarSymbols",
    "UpdateRule",
    "derive_expected_loss",
    "exact_update",
    "expected_loss",
    "expected_loss_general_prior",
    "expected_loss_symbolic",
    "first_order_preconditioner",
    "first_order_preconditioner_symbolic",
    "fixed_step_loss",
    "gaussian_moment",
    "isotropic_symbols",
    "isserlis_moment",
    "layer_factors",
    "optimal_kronecker_preconditioner",
    "optimal_preconditioner",
    "population_maml_loss",
    "preconditioned_loss",
    "rule_symbols",
    "scalar_layer_updates",
    "scalar_maml_objective",
    "scalar_objective_function",
    "scalar_symbols",
    "scalar_task_objective",
    "scalar_update",
    "scalar_update_function",
    "update_rule",
    "verify_moment_identities",
]
