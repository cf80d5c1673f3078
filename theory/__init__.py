"""maml_depth.theory — sympy derivations of MAML with deep linear networks, compiled to
numpy and torch.

theory/ never imports numerics/: it compiles its own expressions to torch.
"""

# --- neighbouring results (docs/theory/neighbours-*.md) -----------------------------------
from maml_depth.theory.balanced import (
    ach_end_to_end_step,
    ach_kronecker_preconditioner,
    ach_two_layer_exact_step,
)
from maml_depth.theory.empirical_maml import (
    BernacchiaSetting,
    GaoSenerSetting,
    bernacchia_estimator_error,
    bernacchia_test_loss,
    maml_estimator,
    pooled_estimator,
)

# --- update rules (docs/theory/update-rules.md#one-step)
# ------------------------------------------------------------
# --- expected loss and preconditioners (docs/theory/notation.md#task-family,
# docs/theory/expected-loss.md#closed-form, docs/theory/expected-loss.md#optimal-preconditioner)
# ---------------------------------------
from maml_depth.theory.exact_expectation import TermLimitError
from maml_depth.theory.expected_loss import (
    derive_expected_loss,
    expected_loss,
    expected_loss_general_prior,
    expected_loss_symbolic,
    isotropic_symbols,
)
from maml_depth.theory.interpolation import (
    expected_interpolation_error,
    min_norm_interpolant,
)
from maml_depth.theory.moments import (
    GaussianMoments,
    RegressionMoments,
    gaussian_moment,
    isserlis_moment,
    verify_moment_identities,
)
from maml_depth.theory.population import (
    expected_deep_loss,
    layer_factors,
    population_maml_loss,
)
from maml_depth.theory.preconditioners import (
    KroneckerPreconditioner,
    OptimalPreconditioner,
    fixed_step_loss,
    k_step_loss,
    optimal_kronecker_preconditioner,
    optimal_preconditioner,
    preconditioned_loss,
)
from maml_depth.theory.reference import reference_losses as reference_losses
from maml_depth.theory.representation import (
    anil_late_ratio,
    anil_population_step,
    subspace_distance,
)
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
    "BernacchiaSetting",
    "GaoSenerSetting",
    "GaussianMoments",
    "KroneckerPreconditioner",
    "OptimalPreconditioner",
    "RegressionMoments",
    "RuleSymbols",
    "ScalarSymbols",
    "TermLimitError",
    "UpdateRule",
    "ach_end_to_end_step",
    "ach_kronecker_preconditioner",
    "ach_two_layer_exact_step",
    "anil_late_ratio",
    "anil_population_step",
    "bernacchia_estimator_error",
    "bernacchia_test_loss",
    "derive_expected_loss",
    "exact_update",
    "expected_deep_loss",
    "expected_interpolation_error",
    "expected_loss",
    "expected_loss_general_prior",
    "expected_loss_symbolic",
    "first_order_preconditioner",
    "first_order_preconditioner_symbolic",
    "fixed_step_loss",
    "gaussian_moment",
    "isotropic_symbols",
    "isserlis_moment",
    "k_step_loss",
    "layer_factors",
    "maml_estimator",
    "min_norm_interpolant",
    "optimal_kronecker_preconditioner",
    "optimal_preconditioner",
    "pooled_estimator",
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
    "subspace_distance",
    "update_rule",
    "verify_moment_identities",
]
