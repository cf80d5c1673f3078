"""``maml-depth derive``: print the symbolic MAML update rule of a deep linear network.

Examples::

    maml-depth derive --depth 3 --adapt 1,3            # rule and its α-coefficients
    maml-depth derive --depth 2 --adapt all --latex    # as a LaTeX aligned block
    maml-depth derive --depth 2 --steps 2 --scalar     # k = 2; scalar case as a polynomial

References: docs/theory/update-rules.md#one-step.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from types import ModuleType

HELP = "print the symbolic MAML update rule of a deep linear network and its α-coefficients"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``maml-depth derive`` (depth L, adapted layers, inner steps k, format)
    to ``parser``."""
    parser.add_argument("--depth", type=int, required=True, help="number of layers L ≥ 1")
    parser.add_argument(
        "--adapt",
        default="all",
        help="adapted layers: 'all', 'top' (the output layer L) or 1-based indices "
        "(1 = input layer) like '1,3'",
    )
    parser.add_argument("--steps", "--inner-steps", dest="steps", type=int, default=1,
                        help="inner steps k ≥ 1")
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--text", dest="format", action="store_const", const="text",
                     help="plain text, sympy notation (the default format)")
    fmt.add_argument("--latex", dest="format", action="store_const", const="latex",
                     help="a LaTeX aligned block")
    parser.add_argument(
        "--scalar",
        action="store_true",
        help="also print the scalar case (all widths 1) as an expanded polynomial",
    )
    parser.set_defaults(format="text")


def _symbolic_modules() -> tuple[ModuleType, ModuleType]:
    """``maml_depth.theory.update_rule`` and ``.scalar`` — without the rest of the package.

    Both need only sympy and numpy, but ``import maml_depth.theory`` also imports its
    numeric half (torch: 1–3 s of a command that otherwise takes a fraction of a second).
    When the package is not imported yet, the two modules are loaded under a temporary
    parent that has the package's path but does not run its ``__init__``; the parent is
    then removed again, so a later ``import maml_depth.theory`` is the full package (and
    reuses these two modules).
    """
    name = "maml_depth.theory"
    if name not in sys.modules:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations is not None:
            stub = ModuleType(name)
            stub.__path__ = list(spec.submodule_search_locations)
            stub.__package__ = name
            sys.modules[name] = stub
            try:
                importlib.import_module(f"{name}.update_rule")
                importlib.import_module(f"{name}.scalar")
            finally:
                if sys.modules.get(name) is stub:
                    del sys.modules[name]
    return (importlib.import_module(f"{name}.update_rule"),
            importlib.import_module(f"{name}.scalar"))


def run(args: argparse.Namespace) -> int:
    """Run ``maml-depth derive``: print the exact update rule of the chosen depth, adapted
    layers and steps, its first-order preconditioner ``Σ_j (B_jᵀB_j) ⊗ (A_jA_jᵀ)`` and the
    scalar case, as text or LaTeX; returns the exit status.

    References: docs/theory/update-rules.md#exact-update,
    docs/theory/update-rules.md#first-order."""
    rules, scalar = _symbolic_modules()
    update_rule = rules.update_rule
    first_order_preconditioner_symbolic = rules.first_order_preconditioner_symbolic
    matrix_latex, matrix_str = rules.matrix_latex, rules.matrix_str
    scalar_update = scalar.scalar_update

    rule = update_rule(args.depth, args.adapt, args.steps)
    latex = args.format == "latex"
    print(rule.latex() if latex else rule.text())
    if rule.steps == 1:
        P = first_order_preconditioner_symbolic(rule.depth, rule.adapt)
        print()
        if latex:
            print(f"P = {matrix_latex(P)}")
        else:
            print("first order: vec W' = vec W - alpha * P * vec G + O(alpha**2), "
                  "column-major vec,")
            print("  (KroneckerProduct(B, A) = B ⊗ A; I = identity of width d_0 or d_L)")
            print(f"  P = {matrix_str(P)}")
    if args.scalar:
        w = scalar_update(rule.depth, rule.adapt, rule.steps)
        print()
        label = "scalar case (widths 1), s_xx = sum x^2/n, s_xy = sum x*y/n:"
        print(label if not latex else f"% {label}")
        print(f"w' = {matrix_latex(w) if latex else matrix_str(w)}")
    return 0
