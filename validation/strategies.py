"""Re-export of :mod:`maml_depth.common.strategies` (the public hypothesis strategies live
in the shared layer; this name stays importable)."""

from maml_depth.common.strategies import (
    ELEMENTWISE_ACTIVATIONS,
    activations,
    adapt_subsets,
    deep_linear_weights,
    layer_dims,
    linear_data,
    orthogonal_matrices,
    param_shapes,
    preconditioner_names,
    psd_matrices,
    rngs,
    spd_matrices,
)

__all__ = [
    "ELEMENTWISE_ACTIVATIONS",
    "activations",
    "adapt_subsets",
    "deep_linear_weights",
    "layer_dims",
    "linear_data",
    "orthogonal_matrices",
    "param_shapes",
    "preconditioner_names",
    "psd_matrices",
    "rngs",
    "spd_matrices",
]
