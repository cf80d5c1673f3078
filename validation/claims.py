"""The claims registry: each claim of docs/theory/paper-claims.md (or a user's own hypothesis) is
a function
``run(ctx) -> ClaimResult`` registered under an id with a statement and a reference.

Register your own in about ten lines::

    from maml_depth.validation import claim, stats

    @claim("wide-helps", title="Wider hidden layers adapt no worse",
           statement="post-adaptation loss of width 2d ≤ width d", reference="my notebook")
    def wide_helps(ctx):
        losses = ...                      # meta-train and evaluate with maml_depth.numerics
        iv = stats.mean_interval(losses)  # 95% CI over seeds
        return ctx.result(measured=iv.estimate, theory=0.0, interval=iv,
                          verdict=stats.verdict_below(iv, 0.0), effect="loss difference")

and run it with ``maml-depth validate --claims wide-helps`` (after importing your module,
e.g. ``--plugin mymodule``).
"""

from __future__ import annotations

import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maml_depth.common.budgets import CLAIM_BUDGETS as BUDGETS
from maml_depth.common.budgets import Budget
from maml_depth.common.stats import LEVEL, VERDICTS, Interval
from maml_depth.errors import InvalidArgumentError

#: Claim suites: ``paper`` (the paper's claims, run by ``make validate``) and ``neighbours``
#: (neighbouring results of the field). ``--suite all`` selects both.
SUITES: tuple[str, ...] = ("paper", "neighbours")


@dataclass
class ClaimResult:
    """What a claim run returns (and what report.json lists)."""

    id: str
    verdict: str
    measured: float | None
    theory: float | None
    ci: list[float] | None
    ci_level: float
    n: int | None
    effect: str
    summary: str
    config: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    title: str = ""
    statement: str = ""
    reference: str = ""

    def to_json(self) -> dict[str, Any]:
        """The result as a plain dict (for ``report.json``)."""
        from dataclasses import asdict

        return asdict(self)


@dataclass
class RunContext:
    """What a claim receives: the budget, a seed, a device, an output folder for figures,
    and for claims that run a grid (the full-budget ones) where it runs: ``executor``
    (``"local"``, ``"dask"``, ``"serial"``; None: the claim's default), ``scheduler`` (a
    Dask scheduler address, ``tcp://…``) and ``store`` (the resumable store's folder; None:
    ``<out_dir>/../stores/<claim id>`` when ``out_dir`` is set, else a temporary one)."""

    claim_id: str
    budget: Budget
    seed: int = 0
    device: str = "cpu"
    out_dir: Path | None = None
    progress: bool = False
    executor: str | None = None
    scheduler: str | None = None
    store: Path | None = None

    def store_dir(self) -> Path | None:
        """The folder of this claim's resumable grid store (None: a temporary one)."""
        if self.store is not None:
            return Path(self.store)
        if self.out_dir is not None:
            return Path(self.out_dir).parent / "stores" / self.claim_id
        return None

    def result(
        self,
        *,
        verdict: str,
        measured: float | None,
        theory: float | None,
        interval: Interval | None = None,
        effect: str = "",
        summary: str = "",
        config: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
        figures: list[str] | None = None,
    ) -> ClaimResult:
        """The :class:`ClaimResult` of the claim being run, with this context's id, title and
        budget: ``verdict`` (pass, fail, inconclusive, error or not available), ``measured``
        against ``theory``, the confidence ``interval``, what the ``effect`` is and a
        ``summary``."""
        if verdict not in VERDICTS:
            raise InvalidArgumentError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
        return ClaimResult(
            id=self.claim_id, verdict=verdict, measured=measured, theory=theory,
            ci=interval.as_list() if interval else None,
            ci_level=interval.level if interval else LEVEL,
            n=interval.n if interval else None, effect=effect, summary=summary,
            config=dict(config or {}), details=dict(details or {}), figures=list(figures or []),
        )

    def not_available(self, why: str) -> ClaimResult:
        """A result with verdict "not available" and the reason ``why`` (no measurement, no
        theory)."""
        return self.result(verdict="not available", measured=None, theory=None, summary=why)


@dataclass(frozen=True)
class Claim:
    """A registered claim: its id, number (paper claims), title, statement, reference, the
    function that runs it, the budgets it runs at and its suite (``"paper"`` or
    ``"neighbours"``)."""
    id: str
    number: int | None
    title: str
    statement: str
    reference: str
    run: Callable[[RunContext], ClaimResult]
    budgets: tuple[str, ...] = ("quick", "full")
    suite: str = "paper"


CLAIMS: dict[str, Claim] = {}


def claim(
    id: str, *, title: str, statement: str, reference: str, number: int | None = None,
    budgets: tuple[str, ...] = ("quick", "full"), suite: str = "paper",
) -> Callable[[Callable[[RunContext], ClaimResult]], Callable[[RunContext], ClaimResult]]:
    """Decorator registering ``fn(ctx) -> ClaimResult`` as a claim.

    ``budgets``: the budgets whose default run includes the claim (a claim too expensive
    for ``quick`` names only ``("full",)``; selecting it explicitly with a smaller budget
    reports "not available"). ``suite``: one of :data:`SUITES` (``--suite`` selects by it).
    """
    if suite not in SUITES:
        raise InvalidArgumentError(f"suite must be one of {SUITES}, got {suite!r}")

    def deco(fn: Callable[[RunContext], ClaimResult]) -> Callable[[RunContext], ClaimResult]:
        if id in CLAIMS:
            raise InvalidArgumentError(f"a claim with id {id!r} is already registered")
        CLAIMS[id] = Claim(id, number, title, statement, reference, fn, tuple(budgets), suite)
        return fn

    return deco


def versions() -> dict[str, str]:
    """Versions of the package, Python and the main dependencies, for reports."""
    import numpy
    import scipy
    import sympy
    import torch

    from maml_depth import __version__

    return {"maml_depth": __version__, "python": platform.python_version(),
            "torch": torch.__version__, "numpy": numpy.__version__, "sympy": sympy.__version__,
            "scipy": scipy.__version__, "platform": platform.platform()}


def run_claim(c: Claim, ctx: RunContext) -> ClaimResult:
    """Run one claim. A claim that raises gets the verdict ``error`` with its traceback in
    ``details`` — a crash is neither a refutation (``fail``) nor a pass."""
    t0 = time.perf_counter()
    try:
        if ctx.budget.name in BUDGETS and ctx.budget.name not in c.budgets:
            res = ctx.not_available(
                f"runs only with --budget {' or '.join(c.budgets)} (this run: {ctx.budget.name})")
        else:
            res = c.run(ctx)
    except Exception as exc:  # a crash is an error, reported with its traceback
        res = ctx.result(verdict="error", measured=None, theory=None,
                         summary=f"crashed: {type(exc).__name__}: {exc}",
                         details={"traceback": traceback.format_exc()})
    res.seconds = time.perf_counter() - t0
    res.versions = versions()
    res.title, res.statement, res.reference = c.title, c.statement, c.reference
    res.config = {"budget": ctx.budget.name, "seed": ctx.seed, "device": ctx.device,
                  **res.config}
    return res
