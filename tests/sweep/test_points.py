"""Expanding grids and lists into points; the canonical key."""

from __future__ import annotations

import hashlib
import json

from maml_depth import __version__
from maml_depth.sweep import canonical_json, parse_config, point_key
from maml_depth.sweep.config import defaults


def test_grid_is_a_cartesian_product_in_file_order():
    cfg = parse_config({"grid": {"depth": [1, 2, 3], "seed": [0, 1]}})
    pts = cfg.expand()
    assert [(p.params["depth"], p.params["seed"]) for p in pts] == [
        (1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1)]
    assert [p.index for p in pts] == list(range(6))
    assert len({p.key for p in pts}) == 6


def test_list_times_grid_and_overrides():
    cfg = parse_config({"fixed": {"alpha": 0.2, "depth": 3},
                        "grid": {"seed": [0, 1]},
                        "points": [{"adapt": "top"}, {"adapt": "all", "alpha": 0.05}]})
    pts = cfg.expand()
    assert [(p.params["adapt"], p.params["alpha"], p.params["seed"]) for p in pts] == [
        ("top", 0.2, 0), ("top", 0.2, 1), ("all", 0.05, 0), ("all", 0.05, 1)]


def test_every_point_is_complete_and_duplicates_are_dropped():
    cfg = parse_config({"grid": {"alpha": [1, 1.0, 0.5], "depth": [2, 2]}})
    pts = cfg.expand()
    assert [p.params["alpha"] for p in pts] == [1.0, 0.5]
    assert set(pts[0].params) == set(defaults())


def test_key_is_sha256_of_canonical_point_and_version():
    p = parse_config({"fixed": {"depth": 2}}).expand()[0]
    text = json.dumps({"package_version": __version__, "point": p.params}, sort_keys=True,
                      separators=(",", ":"))
    assert p.key == hashlib.sha256(text.encode()).hexdigest()
    assert canonical_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'
    assert point_key(p.params, "0.0.0") != p.key
    shuffled = dict(reversed(list(p.params.items())))
    assert point_key(shuffled) == p.key


def test_spellings_of_one_setting_share_a_key():
    a = parse_config({"fixed": {"adapt": "1,3", "depth": 3, "alpha": 1}}).expand()[0]
    b = parse_config({"fixed": {"adapt": [3, 1], "depth": 3, "alpha": 1.0}}).expand()[0]
    assert a.key == b.key
