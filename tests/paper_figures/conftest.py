"""One tiny-budget build of all six figures, shared by the tests of this folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def figure_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("figures")
    return root / "out", root / "cache"


@pytest.fixture(scope="session")
def built(figure_dirs: tuple[Path, Path]) -> dict[int, Any]:
    """``{number: BuildResult}`` of every figure on the tiny budget (computed once)."""
    import torch

    from maml_depth.paper_figures import FIGURES, build_figure

    out, cache = figure_dirs
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: a second thread only contends for the cores
    try:
        return {num: build_figure(num, "tiny", out, cache_dir=cache) for num in FIGURES}
    finally:
        torch.set_num_threads(before)
