"""maml_depth.numerics — torch networks, task families and batched MAML engines.

Conventions: rows are samples (a batch of T tasks is ``(T, n, d)`` inputs, ``(T, n, m)``
targets); layers are numbered 1 (input) … L (output); ``adapt="all"`` adapts every layer.
"""

from maml_depth.numerics.engines import (
    ENGINES,
    InnerConfig,
    TaskFamily,
    post_adaptation_losses,
    pre_adaptation_losses,
    select_engine,
)
from maml_depth.numerics.inner_loop import inner_adapt, inner_adapt_autograd
from maml_depth.numerics.losses import mse_loss
from maml_depth.numerics.meta_train import (
    History,
    MetaTrainResult,
    OuterConfig,
    evaluate,
    evaluate_losses,
    meta_train,
    resolve_device,
    resolve_dtype,
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
    Preconditioner,
    get_preconditioner,
    register,
)
from maml_depth.numerics.tasks import LinearRegressionTasks, TaskBatch, random_rotation

# --- Monte Carlo twins of the closed forms (issue 5) ----------------------------------------
from maml_depth.numerics.monte_carlo import (  # noqa: E402
    MonteCarloEstimate,
    deep_linear_adapted_maps,
    monte_carlo_deep_loss,
    monte_carlo_loss,
    preconditioned_adapted_maps,
)

_MC_ALL: list[str] = [
    "MonteCarloEstimate",
    "deep_linear_adapted_maps",
    "monte_carlo_deep_loss",
    "monte_carlo_loss",
    "preconditioned_adapted_maps",
]

# --- meta-optimizers and nonlinear task families (issue 6) ----------------------------------
from maml_depth.numerics.meta_optimizers import (  # noqa: E402, F401  (registers the optimizers)
    KFO,
    META_CURVATURE,
    META_OPTIMIZERS,
    META_SGD,
    preconditioner_matrix,
    state_key,
    step_matrix,
)
from maml_depth.numerics.models import ConvNet, LinNetMLP  # noqa: E402, F401
from maml_depth.numerics.task_families import (  # noqa: E402, F401
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

_META_OPT_ALL: list[str] = [
    "DIGITS_TEST_CLASSES",
    "DIGITS_TRAIN_CLASSES",
    "KFO",
    "META_CURVATURE",
    "META_OPTIMIZERS",
    "META_SGD",
    "ConvNet",
    "DigitsFewShot",
    "LinNetMLP",
    "LogisticTasks",
    "SineTasks",
    "binary_accuracy",
    "classification_accuracy",
    "cross_entropy_loss",
    "digits_classes",
    "logistic_loss",
    "preconditioner_matrix",
    "state_key",
    "step_matrix",
]

# --- factorized fast-weight engine (issue 10) ------------------------------------------------
from maml_depth.numerics.engines import EngineChoice  # noqa: E402, F401
from maml_depth.numerics.factorized import (  # noqa: E402, F401
    factorized_post_adaptation_losses,
    factorized_support,
    kronecker_factors,
    register_kronecker,
)

_FACTORIZED_ALL: list[str] = [
    "EngineChoice",
    "factorized_post_adaptation_losses",
    "factorized_support",
    "kronecker_factors",
    "register_kronecker",
]

__all__ = [
    "ENGINES",
    "IDENTITY",
    "MLP",
    "PRECONDITIONERS",
    "DeepLinear",
    "History",
    "InnerConfig",
    "LinearRegressionTasks",
    "MetaTrainResult",
    "OuterConfig",
    "Params",
    "PopulationResult",
    "Preconditioner",
    "TaskBatch",
    "TaskFamily",
    "adapted_names",
    "balanced_factors",
    "evaluate",
    "evaluate_losses",
    "get_params",
    "get_preconditioner",
    "inner_adapt",
    "inner_adapt_autograd",
    "layer_groups",
    "meta_train",
    "mse_loss",
    "population_objective",
    "post_adaptation_losses",
    "pre_adaptation_losses",
    "random_rotation",
    "register",
    "resolve_device",
    "resolve_dtype",
    "select_engine",
    "train_population",
    *_MC_ALL,
    *_META_OPT_ALL,
    *_FACTORIZED_ALL,
]
