"""Hypothesis profiles: ``ci`` (default, fast, derandomised) and ``thorough``.

Select with ``HYPOTHESIS_PROFILE=thorough`` (``make test-all`` does).
"""

from __future__ import annotations

import os

import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Two CPU cores on CI: keep torch from oversubscribing them.
torch.set_num_threads(min(2, torch.get_num_threads()))

# The exact engine keeps slow derivations in a disk cache (theory.exact_expectation):
# tests use a private one unless the caller names one (MAML_DEPTH_CACHE).
if "MAML_DEPTH_CACHE" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _cache = tempfile.mkdtemp(prefix="maml-depth-test-cache-")
    os.environ["MAML_DEPTH_CACHE"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
