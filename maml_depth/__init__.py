"""maml-depth: computer-checked theory of MAML with deep (linear) networks.

Arnold, Iqbal, Sha — "When MAML Can Adapt Fast and How to Assist When It Cannot",
AISTATS 2021.

Sub-packages (imported lazily, so ``import maml_depth`` stays cheap):

- :mod:`maml_depth.theory` — sympy derivations, closed forms, compiled to numpy/torch;
- :mod:`maml_depth.numerics` — torch networks, task families, batched MAML engines;
- :mod:`maml_depth.validation` — the paper's claims as executable checks;
- :mod:`maml_depth.paper_figures` — the analytic plots.
"""

from __future__ import annotations

import importlib
from typing import Any

from maml_depth.errors import (
    ConfigError,
    DivergenceError,
    InvalidArgumentError,
    MamlDepthError,
    ShapeError,
)

__version__ = "0.1.0"

_SUBPACKAGES = ("theory", "numerics", "validation", "paper_figures")

__all__ = [
    "ConfigError",
    "DivergenceError",
    "InvalidArgumentError",
    "MamlDepthError",
    "ShapeError",
    "__version__",
    *_SUBPACKAGES,
]


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"maml_depth.{name}")
    raise AttributeError(f"module 'maml_depth' has no attribute {name!r}")
