"""maml_depth.paper_figures — the paper's analytic figures, regenerated: theory curves from
:mod:`maml_depth.theory`, measured points from :mod:`maml_depth.numerics` (meta-training and
real adaptation on fresh tasks), one module per figure, data cached.

Build them with ``maml-depth figures [--only N,…] [--budget tiny|quick|full] [--out DIR]``
or :func:`build_figure`; the gallery is ``paper_figures/README.md``.

Import direction: this package may import the shared layer :mod:`maml_depth.common`,
numerics/ and theory/ (never validation/ or another peer); nothing but the command line
imports it.
"""

from maml_depth.paper_figures.budget import BUDGETS, FigureBudget, get_budget
from maml_depth.paper_figures.cache import FigureCache, FigureData, cache_key
from maml_depth.paper_figures.registry import (
    FIGURES,
    BuildResult,
    FigureSpec,
    build_figure,
    gallery_markdown,
    parse_only,
    write_gallery,
)

__all__ = [
    "BUDGETS",
    "FIGURES",
    "BuildResult",
    "FigureBudget",
    "FigureCache",
    "FigureData",
    "FigureSpec",
    "build_figure",
    "cache_key",
    "gallery_markdown",
    "get_budget",
    "parse_only",
    "write_gallery",
]
