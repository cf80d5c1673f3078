"""The results pipeline of ``python -m maml_depth.experiments.meta_optimizers`` on a tiny
budget: jobs, paired statistics, the markdown document and the command line."""

from __future__ import annotations

import json
from dataclasses import replace

from maml_depth.experiments import meta_optimizers as exp
from tests.helpers import assert_close

TINY_DOMAIN = exp.DomainBudget(meta_steps=2, meta_batch=2, lr=1e-3, alpha=0.01, inner_steps=1,
                               eval_episodes=3, n_query_train=2, n_query_test=3,
                               models=("mlp",))
TINY = exp.ExperimentBudget("tiny", seeds=2, sine=TINY_DOMAIN,
                  digits=replace(TINY_DOMAIN, alpha=0.1, models=("cnn",)))


def test_jobs_cover_every_cell_and_seed():
    jobs = exp.jobs_for(exp.BUDGETS["quick"])
    assert len(jobs) == 3 * 2 * 4 * 5  # domains × models × optimizers × seeds
    assert len(set(jobs)) == len(jobs)


def test_summary_pairs_by_seed_and_states_the_verdict():
    res = []
    for seed, (base, other) in enumerate([(0.50, 0.60), (0.55, 0.66), (0.52, 0.61)]):
        for opt, acc in (("maml", base), ("kfo", other), ("meta-sgd", base + 0.001 * (-1) ** seed)):
            res.append({"domain": "digits-1shot", "model": "cnn", "optimizer": opt,
                        "seed": seed, "metric": acc, "loss": 1.0, "episodes": 10,
                        "diverged": None})
    rows = {r.optimizer: r for r in exp.summarize(res)}
    assert rows["kfo"].verdict == "beats MAML"
    assert_close(rows["kfo"].delta, 0.1, what="mean paired difference")
    assert rows["meta-sgd"].verdict == "no significant difference"
    # for a loss (sine MSE) lower is better
    for r in res:
        r["domain"] = "sine"
    assert {r.optimizer: r for r in exp.summarize(res)}["kfo"].verdict == "worse than MAML"


def test_tiny_run_writes_the_document(tmp_path):
    results = exp.run_experiment(TINY, domains=("sine", "digits-1shot"))
    assert len(results) == 2 * 4 * 2
    assert all(r["episodes"] == 3 and r["diverged"] is None for r in results)
    text = exp.render_markdown(results, TINY, wall_s=1.0, command="cmd", device="cpu",
                               workers=1)
    for needle in ("Sine regression", "Digits 5-way 1-shot", "Δ vs MAML",
                   "Where the claim holds", "meta-curvature", "95% CI", "2 × 3"):
        assert needle in text
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps({"results": results, "wall_s": 1.0, "workers": 1}))
    out = tmp_path / "results.md"
    assert exp.main(["--from-raw", str(raw), "--out", str(out)]) == 0
    assert "Digits 5-way 1-shot" in out.read_text()


def test_bad_command_line_input_is_one_line_and_exit_2(capsys):
    assert exp.main(["--domains", "omniglot"]) == 2
    assert "--domains" in capsys.readouterr().err


def test_results_do_not_depend_on_the_number_of_worker_processes():
    """Every job is seeded and single-threaded: 2 spawned workers give the same numbers."""
    kw = dict(domains=("sine",), optimizers=("maml", "meta-sgd"))
    one = exp.run_experiment(TINY, workers=1, **kw)
    two = exp.run_experiment(TINY, workers=2, **kw)

    def key(r):
        return (r["domain"], r["model"], r["optimizer"], r["seed"])

    assert sorted(map(key, one)) == sorted(map(key, two))
    by_key = {key(r): r for r in two}
    for r in one:
        assert r["metric"] == by_key[key(r)]["metric"], key(r)


def test_a_killed_run_resumes_from_the_shared_store(tmp_path):
    """The experiment runs through the shared grid driver and store: stored jobs are not
    recomputed on --resume, a lost one is, and the numbers are those of a fresh run."""
    import pytest

    from maml_depth.errors import ConfigError

    kw = dict(domains=("sine",), optimizers=("maml", "kfo"), executor="serial")
    first = exp.run_experiment(TINY, store=tmp_path, **kw)
    records = sorted((tmp_path / "store").glob("*.json"))
    assert len(records) == len(first) == 2 * 2
    with pytest.raises(ConfigError, match="--resume"):
        exp.run_experiment(TINY, store=tmp_path, **kw)
    records[0].unlink()  # the job that was in flight when the run was killed
    mtimes = {p.name: p.stat().st_mtime_ns for p in records[1:]}
    again = exp.run_experiment(TINY, store=tmp_path, resume=True, **kw)
    assert {p.name: p.stat().st_mtime_ns for p in records[1:]} == mtimes  # not recomputed
    assert records[0].exists()
    assert [r["metric"] for r in again] == [r["metric"] for r in first]
