"""maml_depth.numerics — torch networks, task families and batched MAML engines.

Conventions: rows are samples (a batch of T tasks is ``(T, n, d)`` inputs, ``(T, n, m)``
targets); layers are numbered 1 (input) … L (output); ``adapt="all"`` adapts every layer.
"""

from maml_depth.numerics.empirical_maml import (
    maml_estimator_autograd,
    pooled_estimator_autograd,
)
from maml_depth.numerics.engines import (
    ENGINES,
    EngineChoice,
    InnerConfig,
    TaskFamily,
    post_adaptation_losses,
    pre_adaptation_losses,
    select_engine,
)
from maml_depth.numerics.factorized import (
    factorized_post_adaptation_losses,
    factorized_support,
    kronecker_factors,
    register_kronecker,
)
from maml_depth.numerics.inner_loop import (
    inner_adapt,
    inner_adapt_autograd,
)
from maml_depth.numerics.interpolation import (
    gd_to_interpolation,
)
from maml_depth.numerics.losses import (
    mse_loss,
)
from maml_depth.numerics.meta_optimizers import (
    KFO,
    META_CURVATURE,
    META_OPTIMIZERS,
    META_SGD,
    preconditioner_matrix,
    state_for_step_matrix,
    state_key,
    step_matrix,
)
from maml_depth.numerics.meta_train import (
    Convergence,
    History,
    MetaTrainResult,
    OuterConfig,
    convergence_report,
    evaluate,
    evaluate_losses,
    meta_train,
    resolve_device,
    resolve_dtype,
)
from maml_depth.numerics.models import (
    ConvNet,
    LinNetMLP,
)
from maml_depth.numerics.monte_carlo import (
    MonteCarloEstimate,
    deep_linear_adapted_maps,
    monte_carlo_deep_loss,
    monte_carlo_loss,
    preconditioned_adapted_maps,
)
from maml_depth.numerics.networks import (
    MLP,
    DeepLinear,
    Params,
    adapted_names,
    balanced_factors,
    get_params,
    layer_groups,
)
from maml_depth.numerics.population_train import (
    PopulationResult,
    population_objective,
    train_population,
)
from maml_depth.numerics.preconditioners import (
    IDENTITY,
    PRECONDITIONERS,
    FactorFn,
    Preconditioner,
    TheoryClass,
    get_preconditioner,
    register,
)
from maml_depth.numerics.representation import (
    anil_population_step_autograd,
)
from maml_depth.numerics.task_families import (
    DIGITS_TEST_CLASSES,
    DIGITS_TRAIN_CLASSES,
    DigitsFewShot,
    LogisticTasks,
    SineTasks,
    binary_accuracy,
    classification_accuracy,
    cross_entropy_loss,
    digits_classes,
    logistic_loss,
)
from maml_depth.numerics.tasks import (
    LinearRegressionTasks,
    TaskBatch,
    random_rotation,
)

__all__ = [
    "DIGITS_TEST_CLASSES",
    "DIGITS_TRAIN_CLASSES",
    "ENGINES",
    "IDENTITY",
    "KFO",
    "META_CURVATURE",
    "META_OPTIMIZERS",
    "META_SGD",
    "MLP",
    "PRECONDITIONERS",
    "ConvNet",
    "Convergence",
    "DeepLinear",
    "DigitsFewShot",
    "EngineChoice",
    "FactorFn",
    "History",
    "InnerConfig",
    "LinNetMLP",
    "LinearRegressionTasks",
    "LogisticTasks",
    "MetaTrainResult",
    "MonteCarloEstimate",
    "OuterConfig",
    "Params",
    "PopulationResult",
    "Preconditioner",
    "SineTasks",
    "TaskBatch",
    "TaskFamily",
    "TheoryClass",
    "adapted_names",
    "anil_population_step_autograd",
    "balanced_factors",
    "binary_accuracy",
    "classification_accuracy",
    "convergence_report",
    "cross_entropy_loss",
    "deep_linear_adapted_maps",
    "digits_classes",
    "evaluate",
    "evaluate_losses",
    "factorized_post_adaptation_losses",
    "factorized_support",
    "gd_to_interpolation",
    "get_params",
    "get_preconditioner",
    "inner_adapt",
    "inner_adapt_autograd",
    "kronecker_factors",
    "layer_groups",
    "logistic_loss",
    "maml_estimator_autograd",
    "meta_train",
    "monte_carlo_deep_loss",
    "monte_carlo_loss",
    "mse_loss",
    "pooled_estimator_autograd",
    "population_objective",
    "post_adaptation_losses",
    "pre_adaptation_losses",
    "preconditioned_adapted_maps",
    "preconditioner_matrix",
    "random_rotation",
    "register",
    "register_kronecker",
    "resolve_device",
    "resolve_dtype",
    "select_engine",
    "state_for_step_matrix",
    "state_key",
    "step_matrix",
    "train_population",
]
