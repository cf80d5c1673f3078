"""Experiments that write result documents (each runnable with ``python -m``).

- :mod:`maml_depth.experiments.meta_optimizers` — MAML, Meta-SGD, Meta-Curvature and KFO on
  sine regression and digits few-shot classification, shallow and deeper models
  (``docs/results.md``).
"""
