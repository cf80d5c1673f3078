"""``maml-depth validate --executor/--scheduler/--store``: checked up front (one line, exit 2,
naming the option) and handed to every claim's RunContext (the grid claims read them).
``maml-depth bench --theory`` runs both theory benchmark modules (no import guard)."""

from __future__ import annotations

import json

import pytest

from maml_depth.cli import main

FORBIDDEN = "/proc/forbidden/store"


@pytest.fixture
def recorder():
    """A registered claim that records the RunContext it receives."""
    from maml_depth.validation import CLAIMS, claim

    cid = "test-records-grid-options"
    seen: list = []

    @claim(cid, title="records", statement="s", reference="r")
    def _run(ctx):
        seen.append({"executor": ctx.executor, "scheduler": ctx.scheduler, "store": ctx.store,
                     "store_dir": ctx.store_dir()})
        return ctx.result(verdict="pass", measured=0.0, theory=0.0, summary="ok")

    try:
        yield cid, seen
    finally:
        CLAIMS.pop(cid, None)


@pytest.mark.parametrize(("extra", "field"), [
    (["--executor", "gpu"], "--executor"),
    (["--executor", "local", "--scheduler", "tcp://127.0.0.1:8786"], "--scheduler"),
    (["--scheduler", "127.0.0.1:8786"], "--scheduler"),
    (["--scheduler", "tcp://"], "--scheduler"),
    (["--store", FORBIDDEN], "--store"),
])
def test_bad_grid_options_are_one_line_exit_2_before_any_claim_runs(extra, field, recorder,
                                                                     tmp_path, capsys):
    cid, seen = recorder
    code = main(["validate", "--claims", cid, "--out", str(tmp_path / "v"), "--no-progress",
                 *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and field in err and "Traceback" not in err
    assert seen == [] and not (tmp_path / "v" / "report.json").exists()


def test_grid_options_reach_the_claims_run_context(recorder, tmp_path, capsys):
    cid, seen = recorder
    store = tmp_path / "stores"
    code = main(["validate", "--claims", cid, "--out", str(tmp_path / "v"), "--no-progress",
                 "--executor", "serial", "--store", str(store)])
    assert code == 0, capsys.readouterr().err
    # one store folder per claim under --store, so that a re-run resumes each claim's grid
    assert seen == [{"executor": "serial", "scheduler": None, "store": store / cid,
                     "store_dir": store / cid}]
    meta = json.loads((tmp_path / "v" / "report.json").read_text())["meta"]
    assert meta["executor"] == "serial" and meta["store"] == str(store)


def test_scheduler_alone_means_dask(recorder, tmp_path, capsys):
    cid, seen = recorder
    address = "tcp://10.0.0.1:8786"
    assert main(["validate", "--claims", cid, "--out", str(tmp_path / "v"), "--no-progress",
                 "--scheduler", address]) == 0, capsys.readouterr().err
    assert seen[0]["executor"] == "dask" and seen[0]["scheduler"] == address


def test_defaults_leave_the_claims_defaults(recorder, tmp_path, capsys):
    cid, seen = recorder
    out = tmp_path / "v"
    assert main(["validate", "--claims", cid, "--out", str(out), "--no-progress"]) == 0
    assert seen == [{"executor": None, "scheduler": None, "store": None,
                     "store_dir": out / "stores" / cid}]
    meta = json.loads((out / "report.json").read_text())["meta"]
    assert not {"executor", "scheduler", "store"} & set(meta)


def test_bench_theory_runs_both_theory_benchmarks(monkeypatch, capsys):
    from maml_depth.benchmarks import expected_loss, update_rule

    called: list[str] = []
    monkeypatch.setattr(update_rule, "run", lambda: called.append("update_rule") or [])
    monkeypatch.setattr(expected_loss, "run",
                        lambda **kw: called.append(f"expected_loss {kw}") or [])
    assert main(["bench", "--theory"]) == 0
    assert called == ["update_rule", "expected_loss {'four_layers': False}"]
    assert "not available" not in capsys.readouterr().out
    called.clear()
    assert main(["bench", "--theory", "--four-layers"]) == 0
    assert called == ["update_rule", "expected_loss {'four_layers': True}"]


def test_bench_theory_does_not_hide_a_broken_benchmark(monkeypatch):
    """A benchmark module that fails to import is a crash, never a silent skip."""
    import sys

    monkeypatch.delitem(sys.modules, "maml_depth.benchmarks.update_rule", raising=False)
    monkeypatch.setitem(sys.modules, "maml_depth.benchmarks.update_rule", None)
    import maml_depth.benchmarks as pkg

    monkeypatch.delattr(pkg, "update_rule", raising=False)
    with pytest.raises(ImportError):
        main(["bench", "--theory"])

