"""maml_depth.sweep — hypothesis tests over grids of settings, on a process pool or Dask,
with a resumable results store.

A sweep file (TOML, schema in :mod:`maml_depth.sweep.config`) expands into points (a grid
and/or a list, :mod:`maml_depth.sweep.points`); each point meta-trains a deep linear network
and records its post-adaptation loss, the closed-form prediction where one exists and the
statistics of its extracted preconditioner (:mod:`maml_depth.sweep.runner`), as one
checksummed JSON record keyed by the sha256 of the point and the package version (the
shared store :mod:`maml_depth.common.store`). Points run on any ``concurrent.futures``-style
executor or Dask (:mod:`maml_depth.common.executors`); :func:`run_sweep` drives them through
the shared grid driver :mod:`maml_depth.common.grid`, and
:mod:`maml_depth.sweep.summary` writes the table and plot. Command line:
``maml-depth sweep CONFIG.toml`` (docs/sweeps.md).
"""

from maml_depth.common.store import canonical_json, point_key
from maml_depth.sweep.config import (
    PARAMS,
    RESULT_FIELDS,
    Point,
    SweepConfig,
    expand_points,
    load_config,
    parse_config,
)
from maml_depth.sweep.driver import SweepReport, run_sweep
from maml_depth.sweep.runner import run_point
from maml_depth.sweep.store import (
    SCHEMA_VERSION,
    CorruptRecordWarning,
    Store,
    load_frame,
    make_record,
)
from maml_depth.sweep.summary import summarize, write_summary

__all__ = [
    "PARAMS",
    "RESULT_FIELDS",
    "SCHEMA_VERSION",
    "CorruptRecordWarning",
    "Point",
    "Store",
    "SweepConfig",
    "SweepReport",
    "canonical_json",
    "expand_points",
    "load_config",
    "load_frame",
    "make_record",
    "parse_config",
    "point_key",
    "run_point",
    "run_sweep",
    "summarize",
    "write_summary",
]
