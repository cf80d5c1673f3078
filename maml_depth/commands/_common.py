"""Argument types and up-front checks shared by the sub-commands.

Everything here runs before any work starts, so a bad argument ends the command with one
line naming the option (exit 2) and nothing half-written.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

from maml_depth.errors import ConfigError, InvalidArgumentError

DEVICE_HELP = "auto (CUDA when available, else CPU) | cpu | cuda | cuda:N"
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _int_at_least(text: str, minimum: int) -> int:
    """``int(text)`` if it is ≥ ``minimum``, else an argparse error saying what is accepted."""
    what = "a positive integer" if minimum == 1 else f"an integer ≥ {minimum}"
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if v < minimum:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return v


def nonneg_int(text: str) -> int:
    """argparse type: an integer ≥ 0 (seeds)."""
    return _int_at_least(text, 0)


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1 (counts such as workers)."""
    return _int_at_least(text, 1)


def check_device(option: str, value: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; anything else (``gpu``, ``tpu``) is refused."""
    if not isinstance(value, str) or not _DEVICE.fullmatch(value.strip().lower()):
        raise InvalidArgumentError(f"{option} must be one of {DEVICE_HELP}, got {value!r}")
    return value.strip().lower()


def _writable_dir(option: str, folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{option}: cannot create folder {str(folder)!r}: {exc.strerror or exc}") from None
    if not folder.is_dir():
        raise ConfigError(f"{option}: {str(folder)!r} is not a folder")
    try:  # os.access is not enough (read-only mounts, root): really try
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
    except OSError as exc:
        raise ConfigError(
            f"{option}: cannot write into {str(folder)!r}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)


def check_out_file(option: str, path: str | None) -> None:
    """Fail now (not after the work) when ``path`` cannot be written."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{option}: {path!r} is a folder; give a file name")
    _writable_dir(option, p.parent if str(p.parent) else Path("."))


def check_out_dir(option: str, path: str | None) -> None:
    """Fail now when the output folder ``path`` cannot be created or written."""
    if path is None:
        return
    _writable_dir(option, Path(path))
