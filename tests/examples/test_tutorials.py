"""The tutorials (examples/tutorial_*.py) run, and what they print as theory agrees with
what they measure.

Each tutorial is executed in this process (``runpy``, as ``__main__``) with
``MAML_DEPTH_TUTORIAL_BUDGET=tiny`` and ``MAML_DEPTH_TUTORIAL_OUT`` in a temporary folder;
it writes its rows ``{theory, measured, se}`` to ``theory_vs_measurement.json``. A row
agrees when ``|measured − theory| ≤ z·se`` with ``z`` the two-sided Bonferroni bound for the
tutorial's number of rows at family-wise 95% (99.9% for the claim of tutorial 1, its own
level; each row a Monte Carlo mean over ``n`` ≥
10 000 tasks, so the normal approximation holds). The seeds are fixed, so a run is
deterministic; the check fails when theory and measurement part (e.g. a wrong closed form).
The full-size runs are slow-marked.
"""

from __future__ import annotations

import importlib.util
import json
import runpy
import sys
from pathlib import Path
from types import ModuleType

import pytest
from scipy.stats import norm

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TUTORIALS = sorted(p.name for p in EXAMPLES.glob("tutorial_*.py"))
FAST = ["tutorial_verify_a_claim.py", "tutorial_your_own_hypothesis.py",
        "tutorial_theory_of_a_task_family.py"]


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_tutorials_hook",
                                                  ROOT / "docs" / "_tooling" / "tutorials.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_tutorial(name: str, budget: str, out: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Run ``examples/<name>`` as ``__main__``; return its theory_vs_measurement.json."""
    from maml_depth.validation import CLAIMS

    monkeypatch.setenv("MAML_DEPTH_TUTORIAL_BUDGET", budget)
    monkeypatch.setenv("MAML_DEPTH_TUTORIAL_OUT", str(out))
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / name)])
    before = set(CLAIMS)
    try:
        runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    finally:
        for cid in set(CLAIMS) - before:  # claims a tutorial registered
            CLAIMS.pop(cid)
    return json.loads((out / "theory_vs_measurement.json").read_text())


def assert_theory_agrees(data: dict, level: float = 0.95) -> None:
    rows = [r for r in data["rows"] if r.get("theory") is not None]
    assert len(rows) >= 3, data
    z = float(norm.ppf(1 - (1 - level) / (2 * len(rows))))
    for r in rows:
        assert r["se"] > 0 and r["n"] >= 10_000, r
        assert abs(r["measured"] - r["theory"]) <= z * r["se"], (
            f"{data['tutorial']}: {r['what']}: measured {r['measured']} vs theory "
            f"{r['theory']} (se {r['se']}, bound {z:.2f} se)")


def check(name: str, data: dict) -> None:
    """What each tutorial must show, beyond running."""
    if name == "tutorial_verify_a_claim.py":
        # the claim's own criterion: Bonferroni at family-wise 99.9% (its cases include
        # n = 3 support samples, whose losses are heavy-tailed); the same bound it reports
        assert_theory_agrees(data, level=0.999)
        n_rows = len(data["rows"])
        assert data["z_bound"] == pytest.approx(float(norm.ppf(1 - 0.001 / (2 * n_rows))))
        assert data["verdict"] == "pass" and data["cli_verdict"] == "pass"
        assert data["cli_exit_code"] == 0
    elif name == "tutorial_your_own_hypothesis.py":
        assert_theory_agrees(data)
        assert len(data["verdicts"]) == 2
        for cid, verdict in data["verdicts"].items():
            row = next(r for r in data["rows"] if r["what"].startswith(cid))
            # the registered claim's verdict is the sign the exact theory predicts
            assert verdict == ("pass" if row["theory"] > 0 else "fail"), (cid, verdict, row)
    elif name == "tutorial_theory_of_a_task_family.py":
        assert_theory_agrees(data)
    elif name == "tutorial_sweep_local_and_dask.py":
        n = len(data["rows"])
        assert n >= 2 and data["ran"] == {"local": n, "resume": 0, "dask": n}
        for r in data["rows"]:
            # every point is seeded: the pool and Dask measure the same number
            assert r["measured"] == r["measured_dask"], r
            assert r["steps_done"] == data["meta_steps"] and r["theory"] > 0 and r["se"] > 0
    else:  # pragma: no cover - a new tutorial needs its check here
        pytest.fail(f"no check for {name}")


def test_the_tutorials_are_the_four_of_the_docs():
    assert set(FAST) < set(TUTORIALS)
    assert len(TUTORIALS) == 4


@pytest.mark.parametrize("name", FAST)
def test_tutorial_runs_tiny(name, tmp_path, monkeypatch, capsys):
    data = run_tutorial(name, "tiny", tmp_path, monkeypatch)
    out = capsys.readouterr().out
    assert "theory" in out and data["budget"] == "tiny"
    check(name, data)


@pytest.mark.slow
def test_sweep_tutorial_runs_tiny(tmp_path, monkeypatch):
    """Process pool and Dask LocalCluster start-up: 15-20 s on 2 shared cores."""
    name = "tutorial_sweep_local_and_dask.py"
    check(name, run_tutorial(name, "tiny", tmp_path, monkeypatch))


@pytest.mark.slow
@pytest.mark.parametrize("name", TUTORIALS)
def test_tutorial_runs_full_size(name, tmp_path, monkeypatch):
    data = run_tutorial(name, "default", tmp_path, monkeypatch)
    assert data["budget"] == "default"
    check(name, data)


def test_bad_budget_names_the_variable(tmp_path, monkeypatch):
    from maml_depth.errors import ConfigError

    with pytest.raises(ConfigError, match=r"MAML_DEPTH_TUTORIAL_BUDGET.*'huge'"):
        run_tutorial("tutorial_theory_of_a_task_family.py", "huge", tmp_path, monkeypatch)


@pytest.mark.parametrize("name", TUTORIALS)
def test_page_has_every_cell_and_site_links(name):
    hook = _hook()
    text = (EXAMPLES / name).read_text()
    cells = hook.split_cells(text)
    kinds = [k for k, _ in cells]
    assert kinds[0] == "markdown" and kinds.count("code") >= 3 and kinds.count("markdown") >= 3
    page = hook.percent_to_markdown(text, script=f"examples/{name}")
    assert page.startswith("# ") and f"python examples/{name}" in page
    for kind, source in cells:
        if kind == "code":
            assert f"```python\n{source}\n```" in page
    # links written for the repository point to the site's pages
    assert "](../docs/" in text and "](../docs/" not in page
    assert "# %%" not in page and "jupytext:" not in page


def test_split_cells_refuses_an_unclosed_header():
    with pytest.raises(ValueError, match="header"):
        _hook().split_cells("# ---\n# jupyter:\n# %%\nx = 1\n")


@pytest.mark.parametrize("name", TUTORIALS)
def test_jupytext_reads_the_same_cells(name):
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(EXAMPLES / name, fmt="py:percent")
    ours = _hook().split_cells((EXAMPLES / name).read_text())
    assert [c.cell_type for c in nb.cells] == [k for k, _ in ours]
    assert [c.source.strip() for c in nb.cells if c.cell_type == "code"] == [
        s.strip() for k, s in ours if k == "code"]


def test_every_tutorial_is_listed_in_readme_docs_and_nav():
    hook = _hook()
    readme = (ROOT / "README.md").read_text()
    index = (ROOT / "docs" / "tutorials" / "index.md").read_text()
    nav = (ROOT / "mkdocs.yml").read_text()
    for name in TUTORIALS:
        assert f"python examples/{name}" in readme, name
        assert f"examples/{name}" in index, name
        page = hook.page_name(EXAMPLES / name)
        assert f"- {page}" in nav, page
        assert f"]({page.removeprefix('tutorials/')})" in index, page
