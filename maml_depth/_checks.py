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


def type_name(value: Any) -> str:
    """``"an integer"``, ``"a string"``, … : the kind of a bad value, for messages."""
    return {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def integer(name: str, value: Any, *, minimum: int = 1) -> int:
    """An ``int`` (not a bool, not a float such as ``2.0``) ≥ ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(
            f"{name} must be an integer ≥ {minimum}, got {type_name(value)} {value!r}")
    if value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer ≥ {minimum}"
        raise InvalidArgumentError(f"{name} must be {what}, got {value!r}")
    return int(value)


def number(name: str, value: Any, *, low: float | None = None, open_low: bool = False) -> float:
    """A finite ``int`` or ``float`` (not a bool, not a numeric string) with ``value ≥ low``
    (``> low`` when ``open_low``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgumentError(f"{name} must be a number, got {type_name(value)} {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise InvalidArgumentError(f"{name} must be finite, got {value!r}")
    if low is not None and (x <= low if open_low else x < low):
        raise InvalidArgumentError(f"{name} must be {'>' if open_low else '≥'} {low:g}, "
                                   f"got {value!r}")
    return x


def boolean(name: str, value: Any) -> bool:
    """``True`` or ``False`` (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise InvalidArgumentError(
            f"{name} must be true or false, got {type_name(value)} {value!r}")
    return value


def choice(name: str, value: Any, options: Sequence[str]) -> str:
    """One of ``options`` (case and surrounding blanks ignored), returned as listed."""
    if isinstance(value, str):
        text = value.strip().lower()
        for o in options:
            if o.lower() == text:
                return o
    raise InvalidArgumentError(f"{name} must be one of {list(options)}, got {value!r}")


def parse_adapt(name: str, value: Any, *, minimum: int | None = 1) -> str | int | list[int]:
    """The one parser of an adapted-layer spec, before the depth is known: ``"top"`` (also
    ``"anil"``: the output layer only), ``"all"``, one 1-based index, or a sorted list of
    distinct indices (from a list or a comma string such as ``"1,3"``). Indices must be
    ≥ ``minimum`` (None: any integer, left to :func:`resolve_adapt`'s range check)."""

    def index(where: str, j: Any) -> int:
        if isinstance(j, bool) or not isinstance(j, int):
            raise InvalidArgumentError(f"{name} contains a non-integer layer index {j!r}")
        return j if minimum is None else integer(where, j, minimum=minimum)

    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("top", "all", "anil"):
            return "top" if text == "anil" else text
        parts = [p.strip() for p in text.split(",")]
        if not all(p.lstrip("-").isdigit() for p in parts):
            raise InvalidArgumentError(
                f"{name} must be 'top', 'all', a layer index or a comma list like '1,3', "
                f"got {value!r}")
        return sorted({index(name, int(p)) for p in parts})
    if isinstance(value, int) and not isinstance(value, bool):
        return index(name, value)
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidArgumentError(
            f"{name} must be 'top', 'all', a layer index or a list of indices, "
            f"got {type_name(value)} {value!r}")
    items = list(value)
    if not items:
        raise InvalidArgumentError(f"{name} is an empty list: name at least one layer")
    return sorted({index(f"{name}[{i}]", j) for i, j in enumerate(items)})


def resolve_adapt(adapt: AdaptSpec, depth: int, *, name: str = "adapt") -> tuple[int, ...]:
    """Normalise an adapted-layer spec (:func:`parse_adapt`) to a sorted tuple of 1-based
    layer indices of a network of ``depth`` layers.

    Accepts ``"all"``, ``"top"``, one index, an iterable of indices, or a comma list such as
    ``"1,3"``. Layers are numbered from 1 (the input layer, ``W_1``) to ``depth`` (the
    output layer).
    """
    spec = parse_adapt(name, adapt, minimum=None)
    if spec == "all":
        return tuple(range(1, depth + 1))
    if spec == "top":
        return (depth,)
    items: list[int] = [spec] if isinstance(spec, int) else [int(j) for j in spec]
    for j in items:
        if not 1 <= j <= depth:
            raise InvalidArgumentError(
                f"{name} names layer {j}, but layers are numbered 1..{depth} "
                f"(1 = input layer, {depth} = output layer)"
            )
    return tuple(items)


def shape(name: str, actual: Sequence[int], expected: Sequence[int | None]) -> None:
    """Raise :class:`ShapeError` unless ``actual`` matches ``expected`` (None = any size)."""
    ok = len(actual) == len(expected) and all(
        e is None or a == e for a, e in zip(actual, expected, strict=False)
    )
    if not ok:
        want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise ShapeError(f"{name} has shape {tuple(actual)}, expected {want}")
