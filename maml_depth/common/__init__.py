"""maml_depth.common — the shared layer under the peers (validation, paper_figures, sweep,
experiments, benchmarks). It may import the base (``maml_depth.errors``, ``_checks``,
``_io``), theory and numerics, never a peer; the peers import it and never each other.

Modules (import them by name; this package imports nothing on its own, so that loading one
piece — the plot palette, say — does not load sympy, hypothesis or the claims):

- statistics and verdicts: :mod:`maml_depth.common.stats`
- budgets of every kind of run: :mod:`maml_depth.common.budgets`
- the standard linear settings and task-family builders: :mod:`maml_depth.common.settings`
- the nonlinear meta-optimizer setting (sine, digits) and its jobs:
  :mod:`maml_depth.common.nonlinear`
- the palette and the claims' figures: :mod:`maml_depth.common.plots`
- public hypothesis strategies: :mod:`maml_depth.common.strategies`
"""
