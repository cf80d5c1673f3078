"""Benchmarks behind ``maml-depth bench``: each compares peers *in the same run* (ratios).

Each module exposes ``run(...) -> list[Table]``; :func:`maml_depth.benchmarks.table.render`
prints them. They are measurements, never timed tests.
"""
