"""The frame of a figure's ``compute`` on a linear-regression setting.

Every such figure starts and ends its data the same way: :class:`LinearFrame` starts the
clock and stores the task family's ``Sigma`` and ``Lam`` as the first arrays of a fresh
:class:`~maml_depth.paper_figures.cache.FigureData`; :meth:`LinearFrame.finish` records, last,
the metadata the captions read — the setting, the budget's seeds and meta-training steps,
whatever the figure adds, and the seconds it took. In between, :meth:`LinearFrame.put_runs`
stores the training curves and final losses of a group of runs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from maml_depth.common.settings import LinearSetting
from maml_depth.paper_figures.budget import FigureBudget
from maml_depth.paper_figures.cache import FigureData
from maml_depth.paper_figures.runs import Run, final_means, linear_family, stack_curves

__all__ = ["SETTING_FIELDS", "LinearFrame"]

#: the fields of a :class:`LinearSetting` recorded in ``meta["setting"]``
SETTING_FIELDS: tuple[str, ...] = ("d", "n", "sigma", "alpha", "depth", "hidden")


class LinearFrame:
    """The data of one figure on ``setting``, being built.

    Attributes: ``setting``; ``family`` (its task family, :func:`runs.linear_family`);
    ``Sigma`` and ``Lam`` (the family's matrices, numpy, also stored in ``data``); ``data``.
    """

    def __init__(self, setting: LinearSetting) -> None:
        self.t0 = time.perf_counter()
        self.setting = setting
        self.family = linear_family(setting)
        self.Sigma: np.ndarray = self.family.Sigma.numpy()
        self.Lam: np.ndarray = self.family.Lam.numpy()
        self.data = FigureData()
        self.data.put("Sigma", self.Sigma)
        self.data.put("Lam", self.Lam)

    def put_runs(self, key: str, runs: Sequence[Run]) -> None:
        """``steps_<key>``, ``curves_<key>`` (seeds × checkpoints, NaN-padded) and
        ``final_<key>`` (per-seed mean loss of the final networks on fresh tasks)."""
        steps, curves = stack_curves(runs)
        self.data.put(f"steps_{key}", steps)
        self.data.put(f"curves_{key}", curves)
        self.data.put(f"final_{key}", final_means(runs))

    def finish(self, budget: FigureBudget, *, fields: Sequence[str] = SETTING_FIELDS,
               setting_extra: Mapping[str, Any] | None = None, **meta: Any) -> FigureData:
        """Set ``data.meta`` to ``{"setting": {fields…, setting_extra…}, "seeds",
        "meta_steps", meta…, "seconds"}`` and return the data."""
        s = self.setting
        self.data.meta = {
            "setting": {f: getattr(s, f) for f in fields} | dict(setting_extra or {}),
            "seeds": budget.seeds, "meta_steps": budget.meta_steps,
            **meta,
            "seconds": time.perf_counter() - self.t0,
        }
        return self.data
