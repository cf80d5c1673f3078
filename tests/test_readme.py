"""The README's Python examples run as written (docs with runnable examples)."""

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
    code = _blocks()[0].replace("meta_steps=300", "meta_steps=30")
    exec(compile(code, "README.md", "exec"), {})
    assert "post-adaptation loss" in capsys.readouterr().out


def test_custom_claim_example_registers_and_runs(monkeypatch):
    from maml_depth.validation import CLAIMS, Budget, RunContext, run_claim

    code = _blocks()[1]
    mod = types.ModuleType("my_claims")
    monkeypatch.setitem(sys.modules, "my_claims", mod)
    monkeypatch.setattr("maml_depth.validation.claims.CLAIMS", CLAIMS)
    exec(compile(code, "README.md", "exec"), mod.__dict__)
    try:
        assert "wider-helps" in CLAIMS
        b = Budget("t", cases=1, mc_tasks=1, meta_steps=20, population_steps=1, seeds=1,
                   eval_tasks=10, nonlinear=False)
        r = run_claim(CLAIMS["wider-helps"], RunContext("wider-helps", b))
        assert r.verdict in ("pass", "fail", "inconclusive"), r.summary
        assert r.ci is not None and r.n == 4000
    finally:
        CLAIMS.pop("wider-helps", None)


@pytest.mark.parametrize("cmd", ["derive --depth 3 --adapt 1,3 --steps 1 --text"])
def test_readme_cli_examples(cmd, capsys):
    from maml_depth.cli import main

    assert main(cmd.split()) == 0
