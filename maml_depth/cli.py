"""The ``maml-depth`` command line.

Each sub-command lives in :mod:`maml_depth.commands` as a module with ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; heavy imports happen inside ``run``, so
``maml-depth --help`` is instant.

Exit codes: 0 success, 1 a check failed (or training diverged, or stdout was closed early,
as by ``| head``), 2 bad usage or bad input (a one-line message naming the field; no
traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from maml_depth import __version__
from maml_depth.errors import MamlDepthError

#: sub-command name -> module in maml_depth.commands
COMMANDS: dict[str, str] = {
    "train": "train",
    "bench": "bench",
    "derive": "derive",
    "validate": "validate",
    "figures": "figures",
    "sweep": "sweep",
}

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _available_commands() -> dict[str, Any]:
    return {name: importlib.import_module(f"maml_depth.commands.{mod}")
            for name, mod in COMMANDS.items()}


def build_parser() -> argparse.ArgumentParser:
    """The ``maml-depth`` argument parser: one sub-command per module of
    :mod:`maml_depth.commands` whose optional dependencies are installed."""
    parser = _Parser(
        prog="maml-depth",
        description="Derive, compute and check the theory of MAML with deep linear networks.",
    )
    parser.add_argument("--version", action="version", version=f"maml-depth {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, mod in _available_commands().items():
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _quiet_stdout() -> None:
    """After a closed pipe (``maml-depth derive | head``): send the rest to /dev/null so the
    interpreter's final flush does not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (tests)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``maml-depth`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit status.

    Exit status: 0 success, 1 a check failed or the run failed, 2 bad usage (a bad argument
    or configuration, reported in one line without a traceback)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except BrokenPipeError:  # --help piped into head
        _quiet_stdout()
        return EXIT_FAIL
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        code = int(args._run(args))
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_FAIL
    except (MamlDepthError, ValueError) as exc:
        # MamlDepthError covers bad input; a plain ValueError from argument checking too.
        code = EXIT_FAIL if isinstance(exc, FloatingPointError) else EXIT_USAGE
        print(f"maml-depth {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return code
    except OSError as exc:  # e.g. an output file that became unwritable mid-run
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"maml-depth {args.command}: error: {exc.strerror or exc}{where}",
              file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"maml-depth {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
