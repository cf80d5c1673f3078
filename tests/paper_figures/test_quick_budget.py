"""On the quick budget the measured points land on the theory (slow: a few minutes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from maml_depth.paper_figures import build_figure
from maml_depth.paper_figures.runs import interval_arrays, log_interval_arrays

TOL = 0.05  # measured within 5% of the class optimum


@pytest.fixture
def one_thread() -> object:
    """Tiny networks: one torch thread is fastest (two contend on a loaded machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_quick_budget_measurements_match_theory(tmp_path: Path) -> None:
    r5 = build_figure(5, "quick", tmp_path, cache_dir=None)
    d = r5.data
    for kind, cls in (("shallow", "fixed"), ("meta-sgd", "diagonal"),
                      ("meta-curvature", "full"), ("kfo", "full"), ("deep-top", "full")):
        mean = float(interval_arrays(d[f"final_{kind}"])[0])
        theory = float(d[f"theory_{cls}"])
        assert abs(mean / theory - 1) < TOL, (kind, mean, theory)
    # the deep net beats the shallow one by about the predicted gap
    gap = float(np.mean(d["final_shallow"] - d["final_deep-top"]))
    assert abs(gap / float(d["theory_fixed"] - d["theory_full"]) - 1) < 2 * TOL

    r4 = build_figure(4, "quick", tmp_path, cache_dir=None)  # reuses the deep runs
    assert float(log_interval_arrays(r4.data["rel_error"])[0][-1]) < 0.3

    r6 = build_figure(6, "quick", tmp_path, cache_dir=None)
    assert float(np.nanmax(r6.data["angles_deg"][:, -1, :])) < 10.0
