"""The README's examples run as written (docs with runnable examples)."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples():
    assert len(_blocks()) >= 2


def test_meta_training_example_runs(capsys):
    """Tiny budget: it runs and prints the measured loss beside the theory values."""
    code = _blocks()[0]
    assert "meta_steps=2000" in code and "num_tasks=20000" in code
    code = code.replace("meta_steps=2000", "meta_steps=30").replace("num_tasks=20000",
                                                                    "num_tasks=100")
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "post-adaptation loss" in out and "E L(P*) =" in out and "E L(alpha I) =" in out


@pytest.mark.slow
def test_meta_training_example_reaches_theory_as_written():
    """As written: the 95% CI of the measured loss contains E L(P*) or lies within 2% of it,
    and the run is reported converged."""
    from maml_depth.commands.train import agrees

    ns: dict = {}
    exec(compile(_blocks()[0], "README.md", "exec"), ns)
    assert agrees(ns["mean"], 1.96 * ns["stderr"], ns["ref"].loss_P_star), \
        (ns["mean"], ns["stderr"], ns["ref"].loss_P_star)
    assert ns["result"].convergence.converged
    # the numbers the README quotes are the theory's
    text = README.read_text()
    assert f"E ℒ(P*) = {ns['ref'].loss_P_star:.4f}" in text
    assert f"E ℒ(αI) = {ns['ref'].loss_alpha:.4f}" in text


def test_custom_claim_example_registers_runs_and_is_seeded(monkeypatch):
    from maml_depth.validation import CLAIMS, Budget, RunContext, run_claim

    code = _blocks()[1]
    mod = types.ModuleType("my_claims")
    monkeypatch.setitem(sys.modules, "my_claims", mod)
    exec(compile(code, "README.md", "exec"), mod.__dict__)
    try:
        assert "bottleneck-hurts" in CLAIMS
        b = Budget("t", cases=1, mc_tasks=1, meta_steps=30, population_steps=1, seeds=1,
                   eval_tasks=10, nonlinear=False)
        runs = [run_claim(CLAIMS["bottleneck-hurts"], RunContext("bottleneck-hurts", b,
                                                                 seed=s))
                for s in (0, 0, 1)]
        for r in runs:
            assert r.verdict in ("pass", "fail", "inconclusive"), r.summary
            assert r.summary  # a summary always
        # 30 steps cannot be called converged: inconclusive, saying why
        assert runs[0].verdict == "inconclusive" and "converge" in runs[0].summary
        assert (runs[0].verdict, runs[0].summary) == (runs[1].verdict, runs[1].summary)
    finally:
        CLAIMS.pop("bottleneck-hurts", None)


@pytest.mark.slow
def test_custom_claim_passes_via_plugin_file_path(tmp_path, monkeypatch, capsys):
    """`maml-depth validate --plugin ./my_claims.py --claims bottleneck-hurts` as the README
    says, at the quick budget: pass, and the same verdict and estimate for the same seed."""
    import json

    from maml_depth.cli import main
    from maml_depth.validation import CLAIMS

    (tmp_path / "my_claims.py").write_text(_blocks()[1])
    monkeypatch.chdir(tmp_path)
    measured = []
    try:
        for i in range(2):
            CLAIMS.pop("bottleneck-hurts", None)
            sys.modules.pop("my_claims", None)
            code = main(["validate", "--plugin", "./my_claims.py", "--claims",
                         "bottleneck-hurts", "--seed", "0", "--out", f"v{i}", "--no-progress"])
            rep = json.loads((tmp_path / f"v{i}" / "report.json").read_text())
            res = rep["results"][0] if "results" in rep else rep["claims"][0]
            assert code == 0 and res["verdict"] == "pass", res
            measured.append(res["measured"])
        assert measured[0] == measured[1]
    finally:
        CLAIMS.pop("bottleneck-hurts", None)
        sys.modules.pop("my_claims", None)


@pytest.mark.parametrize("cmd", ["derive --depth 3 --adapt 1,3 --steps 1 --text",
                                 "validate --list"])
def test_readme_cli_examples(cmd, capsys):
    from maml_depth.cli import main

    assert main(cmd.split()) == 0
