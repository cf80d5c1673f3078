"""Expanding a sweep config into points, and the key that names each point.

A point is a complete parameter dict (every key of
:data:`~maml_depth.sweep.config.PARAMS`, defaults filled in, values normalised by their
checkers so that ``alpha = 1`` and ``alpha = 1.0`` are the same point). Its key is

    sha256( canonical_json({"package_version": <version>, "point": <point>}) )

with :func:`canonical_json` = sorted keys, no whitespace, ASCII, finite floats only. Two
points with equal parameters (e.g. repeated grid values) are one point.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from maml_depth.errors import ConfigError
from maml_depth.sweep.config import check_point, defaults

if TYPE_CHECKING:
    from maml_depth.sweep.config import SweepConfig


def _check_finite(obj: Any) -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"canonical JSON needs finite numbers, got {obj!r}")
    if isinstance(obj, dict):
        for v in obj.values():
            _check_finite(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            _check_finite(v)


def canonical_json(obj: Any) -> str:
    """Sorted-key, whitespace-free, ASCII JSON (the form that is hashed)."""
    _check_finite(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def package_version() -> str:
    from maml_depth import __version__

    return __version__


def point_key(point: Mapping[str, Any], version: str | None = None) -> str:
    """The sha256 key of a point's canonical configuration plus the package version."""
    v = package_version() if version is None else version
    return sha256_hex(canonical_json({"package_version": v, "point": dict(point)}))


@dataclass(frozen=True)
class Point:
    """One point of a sweep: its ``key``, its complete ``params`` and its position."""

    key: str
    params: dict[str, Any]
    index: int

    def label(self, keys: list[str] | tuple[str, ...] | None = None) -> str:
        ks = keys if keys is not None else sorted(self.params)
        return ", ".join(f"{k}={self.params[k]}" for k in ks)


def expand_points(cfg: SweepConfig) -> list[Point]:
    """Every point of ``cfg`` in order: ``[[points]]`` entries outermost, then the grid in
    the file's key order (last key fastest); duplicates are dropped (first kept).

    Raises :class:`ConfigError` (naming the key and the point) for cross-parameter
    violations, e.g. an adapted layer beyond ``depth``.
    """
    grid_keys = list(cfg.grid)
    combos = list(itertools.product(*(cfg.grid[k] for k in grid_keys)))
    out: list[Point] = []
    seen: set[str] = set()
    version = package_version()
    for i, entry in enumerate(cfg.points):
        for combo in combos:
            params = defaults() | cfg.fixed | entry | dict(zip(grid_keys, combo, strict=True))
            varied = {k: params[k] for k in (*entry, *grid_keys)}
            where = ", ".join(f"{k}={v}" for k, v in varied.items()) or "every point"
            if len(cfg.points) > 1:
                where = f"points[{i}]: {where}"
            check_point(params, where)
            key = point_key(params, version)
            if key in seen:
                continue
            seen.add(key)
            out.append(Point(key=key, params=params, index=len(out)))
    if not out:  # pragma: no cover - every section is non-empty by construction
        raise ConfigError("the sweep has no points")
    return out


def varying_params(points: list[Point]) -> list[str]:
    """Parameters that take more than one value among ``points`` (schema order)."""
    if not points:
        return []
    keys = list(points[0].params)
    return [k for k in keys
            if len({canonical_json(p.params[k]) for p in points}) > 1]
