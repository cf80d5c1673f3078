"""The ``maml-depth`` command line.

Each sub-command lives in :mod:`maml_depth.commands` as a module with ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; heavy imports happen inside ``run``, so
``maml-depth --help`` is instant.

Exit codes: 0 success, 1 a check failed (or training diverged), 2 bad usage or bad input
(a one-line message naming the field; no traceback).
"""

from __future__ import annotations

import argparse
import importlib
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
    parser = _Parser(
        prog="maml-depth",
        description="Derive, compute and check the theory of MAML with deep linear networks.",
    )
    parser.add_argument("--version", action="version", version=f"maml-depth {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, mod in _available_commands().items():
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args._run(args))
    except (MamlDepthError, ValueError) as exc:
        # MamlDepthError covers bad input; a plain ValueError from argument checking too.
        code = EXIT_FAIL if isinstance(exc, FloatingPointError) else EXIT_USAGE
        print(f"maml-depth {args.command}: error: {exc}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print(f"maml-depth {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
