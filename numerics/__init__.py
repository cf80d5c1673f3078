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
from maml_depth.numerics.preconditioners import (
    IDENTITY,
    PRECONDITIONERS,
    Preconditioner,
    get_preconditioner,
    register,
)
from maml_depth.numerics.tasks import LinearRegressionTasks, TaskBatch, random_rotation

# --- Monte Carlo twins of the closed forms (issue 5) ----------------------------------------
_MC_ALL: list[str] = []

# --- meta-optimizers and nonlinear task families (issue 6) ----------------------------------
_META_OPT_ALL: list[str] = []

# --- factorized fast-weight engine (issue 10) ------------------------------------------------
_FACTORIZED_ALL: list[str] = []

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
    "Preconditioner",
    "TaskBatch",
    "TaskFamily",
    "adapted_names",
    "balanced_factors",
    "evaluate",
    "get_params",
    "get_preconditioner",
    "inner_adapt",
    "inner_adapt_autograd",
    "layer_groups",
    "meta_train",
    "mse_loss",
    "post_adaptation_losses",
    "pre_adaptation_losses",
    "random_rotation",
    "register",
    "resolve_device",
    "resolve_dtype",
    "select_engine",
    *_MC_ALL,
    *_META_OPT_ALL,
    *_FACTORIZED_ALL,
]
