"""Up-front argument validation shared by theory/, numerics/ and the CLI.

Every function raises a specific :mod:`maml_depth.errors` type whose one-line message names
the field, shows the bad value and says what would be accepted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from maml_depth.errors import InvalidArgumentError, ShapeError

AdaptSpec = str | int | Iterable[int]


def positive_int(name: str, value: Any) -> int:
    """Return ``value`` as an int ≥ 1, or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise InvalidArgumentError(f"{name} must be a positive integer (≥ 1), got {value!r}")
    return int(value)


def dims(name: str, value: Any, *, min_len: int = 2) -> tuple[int, ...]:
    """Layer widths ``(d_0, d_1, …, d_L)``: a sequence of ≥ ``min_len`` positive integers."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidArgumentError(
            f"{name} must be a sequence of layer widths like (d_0, d_1, ..., d_L), got {value!r}"
        )
    if len(value) < min_len:
        raise InvalidArgumentError(
            f"{name} needs at least {min_len} widths (input and output), got {list(value)!r}"
        )
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InvalidArgumentError(
                f"{name}[{i}] must be a positive integer width, got {v!r} in {list(value)!r}"
            )
        out.append(int(v))
    return tuple(out)


def finite_float(name: str, value: Any, *, positive: bool = False, nonneg: bool = False) -> float:
    """A finite real number (optionally > 0 or ≥ 0)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(x):
        raise InvalidArgumentError(f"{name} must be finite, got {value!r}")
    if positive and x <= 0:
        raise InvalidArgumentError(f"{name} must be > 0, got {value!r}")
    if nonneg and x < 0:
        raise InvalidArgumentError(f"{name} must be ≥ 0, got {value!r}")
    return x


def resolve_adapt(adapt: AdaptSpec, depth: int, *, name: str = "adapt") -> tuple[int, ...]:
    """Normalise an adapted-layer spec to a sorted tuple of 1-based layer indices.

    Accepts ``"all"``, one index, an iterable of indices, or a comma list such as ``"1,3"``.
    Layers are numbered from 1 (the input layer, ``W_1``) to ``depth`` (the output layer).
    """
    if isinstance(adapt, str):
        text = adapt.strip().lower()
        if text == "all":
            return tuple(range(1, depth + 1))
        if text in ("top", "anil"):
            return (depth,)
        try:
            items: list[Any] = [int(p) for p in text.split(",") if p.strip()]
        except ValueError:
            raise InvalidArgumentError(
                f"{name} must be 'all', 'top' or comma-separated layer indices like '1,3', "
                f"got {adapt!r}"
            ) from None
    elif isinstance(adapt, int) and not isinstance(adapt, bool):
        items = [adapt]
    else:
        try:
            items = list(adapt)  # type: ignore[arg-type]
        except TypeError:
            raise InvalidArgumentError(
                f"{name} must be 'all', 'top', a layer index or a list of indices, got {adapt!r}"
            ) from None
    if not items:
        raise InvalidArgumentError(f"{name} is empty: name at least one layer (1..{depth})")
    for j in items:
        if isinstance(j, bool) or not isinstance(j, int) or int(j) != j:
            raise InvalidArgumentError(f"{name} contains a non-integer layer index {j!r}")
        if not 1 <= j <= depth:
            raise InvalidArgumentError(
                f"{name} names layer {j}, but layers are numbered 1..{depth} "
                f"(1 = input layer, {depth} = output layer)"
            )
    return tuple(sorted(set(int(j) for j in items)))


def shape(name: str, actual: Sequence[int], expected: Sequence[int | None]) -> None:
    """Raise :class:`ShapeError` unless ``actual`` matches ``expected`` (None = any size)."""
    ok = len(actual) == len(expected) and all(
        e is None or a == e for a, e in zip(actual, expected, strict=False)
    )
    if not ok:
        want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise ShapeError(f"{name} has shape {tuple(actual)}, expected {want}")
