"""Sweep config: strict schema, one message naming the key, exit 2 before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from maml_depth import cli
from maml_depth.errors import ConfigError
from maml_depth.sweep import load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_loads():
    cfg = load_config(ROOT / "examples" / "sweep_depth.toml")
    points = cfg.expand()
    assert cfg.name == "depth" and cfg.x == "depth"
    assert len(points) == 9
    assert {p.params["depth"] for p in points} == {1, 2, 3}
    assert all(p.params["adapt"] == "top" and p.params["width"] == 8 for p in points)


@pytest.mark.parametrize(("data", "key"), [
    ({"sweeps": {}}, "'sweeps'"),                                    # unknown section
    ({"sweep": {"nmae": "x"}}, "'nmae'"),                            # unknown [sweep] key
    ({"fixed": {"dpeth": 2}}, "'dpeth'"),                            # unknown parameter
    ({"grid": {"widht": [4]}}, "'widht'"),
    ({"fixed": {"alpha": "fast"}}, "fixed.alpha"),                   # wrong type
    ({"fixed": {"depth": 2.0}}, "fixed.depth"),
    ({"fixed": {"depth": True}}, "fixed.depth"),
    ({"fixed": {"rotation": 1}}, "fixed.rotation"),
    ({"grid": {"depth": 3}}, "grid.depth"),                          # grid value not a list
    ({"grid": {"depth": []}}, "grid.depth"),                         # empty grid
    ({"grid": {"depth": [2, -1]}}, "grid.depth[1]"),                 # negative size
    ({"fixed": {"shots": 0}}, "fixed.shots"),                        # old spelling named
    ({"fixed": {"n_support": 0}}, "fixed.n_support"),
    ({"grid": {"noise": [0.1, -1.0]}}, "grid.noise[1]"),
    ({"fixed": {"width": [4, -4]}, "grid": {"depth": [3]}}, "fixed.width[1]"),
    ({"fixed": {"noise": -0.1}}, "fixed.noise"),
    ({"fixed": {"alpha": 0}}, "fixed.alpha"),
    ({"fixed": {"eval_tasks": 1}}, "fixed.eval_tasks"),
    ({"fixed": {"anisotropy": 0.5}}, "fixed.anisotropy"),
    ({"fixed": {"optimizer": "adamw"}}, "fixed.optimizer"),
    ({"fixed": {"seed": -1}}, "fixed.seed"),
    ({"fixed": {"depth": 2}, "grid": {"depth": [1]}}, "grid.depth"),  # set twice
    ({"grid": {"depth": [1]}, "points": [{"depth": 2}]}, "points[0].depth"),
    ({"points": []}, "points"),
    ({"fixed": {"adapt": 3, "depth": 2}}, "adapt"),                  # cross-key checks
    ({"grid": {"depth": [1, 2], "adapt": ["all", [2]]}}, "adapt"),
    ({"fixed": {"lam_rank": 5, "d": 4}}, "lam_rank"),
    ({"fixed": {"width": [4, 4], "depth": 2}}, "width"),
    ({"sweep": {"x": "depht"}}, "sweep.x"),
    ({"sweep": {"group_by": "depth"}}, "sweep.group_by"),
    ({"sweep": {"name": "a b"}}, "sweep.name"),
])
def test_bad_config_names_the_key(data, key):
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    msg = str(info.value)
    assert key in msg
    assert "\n" not in msg


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(ConfigError, match="did you mean 'depth'"):
        parse_config({"fixed": {"dpeth": 2}})


def _run_cli(argv, capsys):
    code = cli.main(argv)
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize(("text", "key"), [
    ("[grid]\ndepth = []\n", "grid.depth"),
    ("[fixed]\nmeta_steps = -5\n", "fixed.meta_steps"),
    ("[fixed]\nalpha = 'big'\n", "fixed.alpha"),
    ("[fixd]\nalpha = 0.1\n", "'fixd'"),
    ("[fixed\nalpha = 0.1\n", "not valid TOML"),
])
def test_cli_config_error_exits_2_before_running(tmp_path, capsys, text, key):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    out = tmp_path / "out"
    code, err = _run_cli(["sweep", str(cfg), "--out", str(out), "--executor", "serial"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert key in lines[0] and lines[0].startswith("maml-depth sweep: error:")
    assert not out.exists()


def test_cli_bad_options_exit_2(tmp_path, capsys):
    cfg = ROOT / "examples" / "sweep_depth.toml"
    out = tmp_path / "out"
    code, err = _run_cli(["sweep", str(cfg), "--executor", "local", "--scheduler",
                          "tcp://127.0.0.1:1", "--out", str(out)], capsys)
    assert code == 2 and "--scheduler" in err
    with pytest.raises(SystemExit) as info:
        cli.main(["sweep", str(cfg), "--workers", "0"])
    assert info.value.code == 2
    code, err = _run_cli(["sweep", str(tmp_path / "missing.toml")], capsys)
    assert code == 2 and "missing.toml" in err
    assert not out.exists()


def test_cli_dry_run_lists_points(tmp_path, capsys):
    cfg = ROOT / "examples" / "sweep_depth.toml"
    assert cli.main(["sweep", str(cfg), "--dry-run", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "9 points, 0 stored" in out
    assert out.count("to run") == 9
