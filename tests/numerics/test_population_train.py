"""train_population on the exact objective for any adapted layers and inner steps within the
engine's reach (maml_depth.theory.expected_deep_loss): it lowers the objective, its recorded
losses are the objective at the returned weights, and a structure beyond the reach is
refused before any training."""

from __future__ import annotations

import pytest
import torch

from maml_depth.numerics.networks import DeepLinear
from maml_depth.numerics.population_train import population_objective, train_population
from maml_depth.numerics.tasks import LinearRegressionTasks
from maml_depth.theory import TermLimitError, expected_deep_loss, population_maml_loss


def _family(d: int = 3, m: int = 1) -> LinearRegressionTasks:
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    Sigma = q @ torch.diag(torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)) @ q.T
    Lam = 0.3 * torch.eye(d, dtype=torch.float64)
    W_bar = 0.5 * torch.randn(m, d, generator=g, dtype=torch.float64)
    return LinearRegressionTasks(Sigma, W_bar, Lam, 0.5, 5)


def _model(dims: tuple[int, ...]) -> DeepLinear:
    return DeepLinear(dims, generator=torch.Generator().manual_seed(1), scale=0.7)


@pytest.mark.parametrize(("adapt", "steps"), [("all", 1), ("top", 2), ((1,), 2)])
def test_train_population_any_adapt_and_steps(adapt: object, steps: int) -> None:
    fam = _family()
    model = _model((3, 3, 1))
    with torch.no_grad():
        before = float(population_objective(model, dict(model.named_parameters()), fam, 0.2,
                                            adapt, steps))
    res = train_population(model, fam, alpha=0.2, adapt=adapt, steps=steps, iterations=2,
                           max_eval=10)
    ws = [res.params[k] for k in model.weight_names]
    at = expected_deep_loss(ws, adapt=adapt, steps=steps, W_bar=fam.W_bar, Sigma=fam.Sigma,
                            Lam=fam.Lam, sigma=fam.sigma, n=fam.n_support, alpha=0.2)
    assert res.losses[-1] == pytest.approx(float(at), rel=1e-12)
    assert res.losses[-1] < before


def test_one_layer_one_step_objective_is_the_closed_form() -> None:
    fam = _family()
    model = _model((3, 4, 1))
    params = dict(model.named_parameters())
    ws = [params[k] for k in model.weight_names]
    closed = population_maml_loss(ws, adapt="top", W_bar=fam.W_bar, Sigma=fam.Sigma,
                                  Lam=fam.Lam, sigma=fam.sigma, n=fam.n_support, alpha=0.2)
    obj = population_objective(model, params, fam, 0.2, "top", 1)
    assert float(obj.detach()) == pytest.approx(float(closed.detach()), rel=1e-14)


def test_beyond_reach_is_refused_before_training() -> None:
    fam = _family()
    model = _model((3, 3, 1))
    with pytest.raises(TermLimitError, match="monte_carlo_deep_loss"):
        train_population(model, fam, alpha=0.2, adapt="all", steps=2, iterations=1)
