"""maml_depth.common — the shared layer under the peers (validation, paper_figures, sweep,
experiments, benchmarks): statistics and verdicts, standard settings, budgets, plotting
style, strategies, grid executors and the resumable store. It may import the base
(``maml_depth.errors``, ``_checks``, ``_io``), theory and numerics, never a peer."""
