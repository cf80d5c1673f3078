"""The figure-data cache, budgets, ``--only`` parsing and the gallery (no training)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from maml_depth.errors import ConfigError
from maml_depth.paper_figures import (
    BUDGETS,
    FIGURES,
    FigureCache,
    FigureData,
    cache_key,
    get_budget,
    parse_only,
)


def test_round_trip_and_key(tmp_path: Path) -> None:
    cache = FigureCache(tmp_path)
    data = FigureData({"x": np.arange(5.0), "m": np.eye(3)}, {"seeds": 3, "note": "é"})
    key = cache_key("fig9_test", BUDGETS["tiny"], 2)
    assert key.startswith("fig9_test-tiny-v2-")
    assert cache.load(key) is None
    cache.save(key, data)
    back = cache.load(key)
    assert back is not None
    np.testing.assert_array_equal(back["m"], np.eye(3))
    assert back.meta == {"seeds": 3, "note": "é"}


def test_key_changes_with_budget_numbers_and_version() -> None:
    tiny = BUDGETS["tiny"]
    keys = {cache_key("f", tiny, 1), cache_key("f", tiny, 2),
            cache_key("f", replace(tiny, seeds=tiny.seeds + 1), 1)}
    assert len(keys) == 3


def test_corrupt_or_mismatched_cache_is_a_miss(tmp_path: Path) -> None:
    cache = FigureCache(tmp_path)
    key = cache_key("f", BUDGETS["tiny"], 1)
    npz, js = cache.save(key, FigureData({"a": np.ones(3)}))
    npz.write_bytes(npz.read_bytes()[:-3] + b"xyz")
    assert cache.load(key) is None
    cache.save(key, FigureData({"a": np.ones(3)}))
    js.write_text("{not json")
    assert cache.load(key) is None
    assert not list(tmp_path.glob("*.tmp"))


def test_parse_only() -> None:
    assert parse_only(None) == sorted(FIGURES)
    assert parse_only("3, 1,fig2,3") == [1, 2, 3]
    for bad in ("7", "a", ",", "1;2"):
        with pytest.raises(ConfigError):
            parse_only(bad)


def test_budgets() -> None:
    assert set(BUDGETS) == {"tiny", "quick", "full"}
    assert get_budget("quick") is BUDGETS["quick"]
    with pytest.raises(ConfigError, match="budget must be one of"):
        get_budget("huge")
    for b in BUDGETS.values():
        assert b.seeds >= 2  # a t-interval over seeds needs two
        assert 1 in b.depths


def test_every_figure_module_has_the_interface() -> None:
    for num, spec in FIGURES.items():
        mod = spec.module()
        assert mod.NUMBER == num and mod.NAME == spec.name
        assert callable(mod.compute) and callable(mod.render) and callable(mod.caption)
        w, h = spec.pixel_size()
        assert 800 <= w <= 2000 and 400 <= h <= 1000
