"""Exception types shared by every layer of the package.

Each error carries a one-line message that names the offending field and suggests the fix;
the CLI turns any of them into that line on stderr and exit code 2 (bad input) — never a
traceback.
"""

from __future__ import annotations


class MamlDepthError(Exception):
    """Base class of the package's own errors."""


class InvalidArgumentError(MamlDepthError, ValueError):
    """An argument has a wrong value (non-positive size, NaN step size, unknown layer, ...)."""


class ShapeError(InvalidArgumentError):
    """Arrays whose shapes do not fit together."""


class ConfigError(InvalidArgumentError):
    """An unreadable or inconsistent configuration file or CLI option."""


class DivergenceError(MamlDepthError, FloatingPointError):
    """Meta-training produced a non-finite loss or gradient."""
