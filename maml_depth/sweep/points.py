"""Points of a sweep and their keys (re-exports).

A point is a complete parameter dict of :data:`~maml_depth.sweep.config.PARAMS`; its
expansion from a config lives with the config (:func:`~maml_depth.sweep.config.expand_points`)
and its key with the shared store (:func:`~maml_depth.common.store.point_key`).
"""

from maml_depth.common.store import canonical_json, package_version, point_key, sha256_hex
from maml_depth.sweep.config import Point, expand_points, varying_params

__all__ = [
    "Point",
    "canonical_json",
    "expand_points",
    "package_version",
    "point_key",
    "sha256_hex",
    "varying_params",
]
