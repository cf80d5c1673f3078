"""Bad input gets a specific error whose message names the field."""

from __future__ import annotations

import math

import pytest
import torch

from maml_depth.errors import InvalidArgumentError, ShapeError
from maml_depth.numerics import (
    MLP,
    DeepLinear,
    InnerConfig,
    LinearRegressionTasks,
    OuterConfig,
    get_params,
    inner_adapt,
)


@pytest.mark.parametrize("dims", [(3, 0, 1), (3, -2), (3,), "34", (3, 2.5)])
def test_bad_dims(dims):
    with pytest.raises(InvalidArgumentError, match="dims"):
        DeepLinear(dims)
    with pytest.raises(InvalidArgumentError, match="dims"):
        MLP(dims)


@pytest.mark.parametrize("alpha", [math.nan, math.inf, "fast"])
def test_bad_alpha(alpha):
    with pytest.raises(InvalidArgumentError, match="alpha"):
        InnerConfig(alpha=alpha)


@pytest.mark.parametrize("adapt", [0, 4, [1, 9], "1,x", [], "bottom"])
def test_unknown_layer_index(adapt):
    model = DeepLinear((2, 3, 3, 1))
    X, Y = torch.zeros(4, 2, dtype=torch.float64), torch.zeros(4, 1, dtype=torch.float64)
    with pytest.raises(InvalidArgumentError, match="adapt"):
        inner_adapt(model, get_params(model), X, Y, alpha=0.1, adapt=adapt)


def test_mismatched_shapes():
    model = DeepLinear((2, 3, 1))
    p = get_params(model)
    with pytest.raises(ShapeError, match="X has 3 features"):
        inner_adapt(model, p, torch.zeros(4, 3, dtype=torch.float64),
                    torch.zeros(4, 1, dtype=torch.float64), alpha=0.1)
    with pytest.raises(ShapeError, match="samples"):
        inner_adapt(model, p, torch.zeros(4, 2, dtype=torch.float64),
                    torch.zeros(5, 1, dtype=torch.float64), alpha=0.1)
    with pytest.raises(ShapeError, match="Sigma"):
        f64 = torch.float64
        LinearRegressionTasks(torch.eye(3, dtype=f64), torch.zeros(1, 2, dtype=f64),
                              torch.eye(2, dtype=f64), 0.1, 5)


@pytest.mark.parametrize(("field", "kwargs"), [
    ("sigma", {"sigma": math.nan}), ("sigma", {"sigma": -1.0}),
    ("n_support", {"n_support": 0}), ("n_query", {"n_query": -3}),
])
def test_bad_task_family(field, kwargs):
    with pytest.raises(InvalidArgumentError, match=field):
        LinearRegressionTasks.isotropic(3, 1, **kwargs)


def test_not_spd():
    with pytest.raises(InvalidArgumentError, match="Sigma must be positive definite"):
        LinearRegressionTasks(torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64)),
                              torch.zeros(1, 2, dtype=torch.float64),
                              torch.eye(2, dtype=torch.float64), 0.0, 3)


@pytest.mark.parametrize(("field", "kwargs"), [
    ("meta_steps", {"meta_steps": 0}), ("lr", {"lr": math.nan}), ("lr", {"lr": -1}),
    ("meta_batch", {"meta_batch": 0}), ("optimizer", {"optimizer": "rmsprop"}),
])
def test_bad_outer_config(field, kwargs):
    with pytest.raises(InvalidArgumentError, match=field):
        OuterConfig(**kwargs)
