"""The command line: exit codes, one-line errors naming the field, no traceback."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from maml_depth.cli import main


def test_help_and_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert "maml-depth" in capsys.readouterr().out
    assert main([]) == 2


@pytest.mark.parametrize(("argv", "field"), [
    (["train", "--dims", "3,0,1", "--meta-steps", "1"], "dims"),
    (["train", "--dims", "3,x", "--meta-steps", "1"], "--dims"),
    (["train", "--alpha", "nan", "--meta-steps", "1"], "alpha"),
    (["train", "--adapt", "7", "--meta-steps", "1"], "adapt"),
    (["train", "--meta-steps", "0"], "--meta-steps"),
    (["train", "--sigma", "-1", "--meta-steps", "1"], "sigma"),
    (["validate", "--claims", "no-such-claim"], "--claims"),
    (["validate", "--budget", "huge"], "--budget"),
    (["bench", "--repeats", "3"], "--repeats"),
    (["bench", "--rounds", "0"], "--rounds"),
    (["bench", "--paired-rounds", "0"], "--paired-rounds"),
    (["bench", "--paired-rounds", "5"], "--paired-rounds"),
    (["bench", "--timeout", "0"], "--timeout"),
    (["bench", "--paired-seconds", "nan"], "--paired-seconds"),
    (["bench", "--configs", "medium"], "--configs"),
])
def test_bad_input_is_one_line_exit_2(argv, field, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert field in err and "Traceback" not in err


def test_usage_error_exit_2_without_traceback():
    out = subprocess.run([sys.executable, "-m", "maml_depth", "train", "--dims", "3,-1"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "dims" in out.stderr
    out = subprocess.run([sys.executable, "-m", "maml_depth", "train", "--no-such-flag"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1


def test_train_writes_json_atomically(tmp_path, capsys):
    out = tmp_path / "sub" / "run.json"
    code = main(["train", "--dims", "3,4,1", "--meta-steps", "20", "--eval-tasks", "50",
                 "--no-progress", "--out", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["models"]["model"]["eval_tasks"] == 50
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_train_divergence_exit_1(capsys):
    code = main(["train", "--dims", "3,8,8,1", "--adapt", "all", "--steps", "3", "--alpha", "5",
                 "--lr", "1", "--meta-steps", "300", "--eval-tasks", "10", "--no-progress"])
    assert code == 1
    assert "diverged" in capsys.readouterr().err


def test_validate_list(capsys):
    assert main(["validate", "--list"]) == 0
    out = capsys.readouterr().out
    assert "depth-helps" in out and "update-rule" in out


FORBIDDEN = "/proc/forbidden/out"
TINY = ["--dims", "3,4,1", "--meta-steps", "3", "--eval-tasks", "10", "--no-progress"]


@pytest.mark.parametrize("argv", [
    ["train", "--device", "gpu"], ["train", "--device", "tpu"],
    ["validate", "--device", "gpu", "--claims", "update-rule"], ["bench", "--device", "tpu"],
    ["train", "--seed", "-1"], ["validate", "--seed", "-1"],
    ["train", "--out", FORBIDDEN + "/r.json"], ["validate", "--out", FORBIDDEN],
    ["figures", "--out", FORBIDDEN], ["figures", "--readme", FORBIDDEN + "/R.md"],
    ["validate", "--plugin", "./no_such_plugin.py"],
])
def test_issue_bad_inputs_one_line_exit_2(argv, capsys):
    """The bad inputs seen by a first-time user: one line naming the option, exit 2,
    nothing written (a bad seed is a bad argument, never a claim that fails)."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own checks
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert argv[1] in err
    assert not Path(FORBIDDEN).exists()


def test_adapt_error_lists_top(capsys):
    assert main(["train", "--adapt", "bottom", *TINY]) == 2
    assert "'top'" in capsys.readouterr().err


@pytest.mark.parametrize("pre", ["meta-sgd", "meta-curvature", "kfo"])
@pytest.mark.parametrize("adapt", ["top", "all"])
def test_train_builds_the_meta_optimizer_state(pre, adapt, capsys):
    assert main(["train", "--preconditioner", pre, "--adapt", adapt, *TINY]) == 0, \
        capsys.readouterr().err
    assert "post-adaptation loss" in capsys.readouterr().out


def test_old_spellings_are_aliases_of_the_new_names():
    from maml_depth.cli import build_parser

    p = build_parser()
    old = p.parse_args(["train", "--shots", "7", "--anisotropy", "3", "--inner-steps", "2",
                        "--optimizer", "kfo"])
    new = p.parse_args(["train", "--n-support", "7", "--condition", "3", "--steps", "2",
                        "--preconditioner", "kfo"])
    for k in ("n_support", "condition", "steps", "preconditioner"):
        assert getattr(old, k) == getattr(new, k)


def test_train_out_json_is_data_with_theory_and_convergence(tmp_path, capsys):
    from maml_depth.theory import reference_losses

    out = tmp_path / "r.json"
    assert main(["train", *TINY, "--dims", "3,1", "--adapt", "all", "--out", str(out)]) == 0
    text = out.read_text()
    assert "<function" not in text and "_run" not in text
    data = json.loads(text)
    model = data["models"]["model"]
    assert set(model["convergence"]) >= {"converged", "rel_change", "grad_drift", "reason"}
    assert model["theory"]["label"] == "E L(alpha I)"
    assert model["theory"]["value"] == data["theory"]["loss_alpha"]
    th = data["theory"]
    assert th["loss_P_star"] <= th["loss_alpha_star"] <= th["loss_alpha"] + 1e-12
    # the theory values are those of the command's own task family (rebuilt here)
    import math

    import torch

    from maml_depth.numerics import LinearRegressionTasks

    eigs = torch.logspace(0, math.log10(10.0), 3, dtype=torch.float64)
    fam = LinearRegressionTasks.from_spectrum((eigs / eigs.mean()).tolist(), m=1, sigma=0.1,
                                              n_support=10,
                                              generator=torch.Generator().manual_seed(0))
    ref = reference_losses(fam.Sigma, fam.Lam, 0.1, 10, 0.1)
    assert th["loss_alpha"] == pytest.approx(ref.loss_alpha, rel=1e-12)
    assert th["loss_P_star"] == pytest.approx(ref.loss_P_star, rel=1e-12)


def test_demo_prints_theory_beside_measured(capsys):
    """Tiny budget: the structure (both models, both theory values, the verdict words)."""
    code = main(["train", "--demo", "--dims", "3,1", "--meta-steps", "20", "--eval-tasks",
                 "50", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "E L(alpha I) =" in out and "E L(P*) =" in out
    shallow = next(ln for ln in out.splitlines() if ln.startswith("shallow"))
    deep = next(ln for ln in out.splitlines() if ln.startswith("deep"))
    assert "theory E L(alpha I)" in shallow and "theory E L(P*)" in deep
    assert ("agrees" in deep) or ("DISAGREES" in deep)


@pytest.mark.slow
def test_demo_reaches_theory(tmp_path, capsys):
    """The default demo (as `make demo` runs it): the 95% CI of each measured loss contains
    its theory value or lies within 2% of it (20 000 fresh tasks each)."""
    from maml_depth.commands.train import agrees

    out = tmp_path / "demo.json"
    assert main(["train", "--demo", "--no-progress", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    for name, key in (("shallow", "loss_alpha"), ("deep", "loss_P_star")):
        m = data["models"][name]
        lo, hi = m["ci95"]
        theory = data["theory"][key]
        assert m["theory"]["value"] == theory
        assert agrees(m["post_loss"], (hi - lo) / 2, theory), (name, m["post_loss"], theory)
        assert m["convergence"]["converged"], m["convergence"]
    # and the depth effect is the paper's: the deep net beats the shallow one by far
    assert data["models"]["deep"]["ci95"][1] < data["models"]["shallow"]["ci95"][0]


def test_agrees_criterion():
    from maml_depth.commands.train import agrees

    assert agrees(1.0, 0.1, 1.05)            # inside the CI
    assert agrees(1.0, 0.01, 1.025)          # CI edge 1.01 within 2% of 1.025
    assert not agrees(1.0, 0.01, 1.05)       # 1.01 is 3.8% below 1.05


def test_finite_divergence_is_exit_1_with_hint(capsys):
    assert main(["train", "--alpha", "1e6", *TINY]) == 1
    assert "lower --alpha" in capsys.readouterr().err
    assert main(["train", "--lr", "1e9", "--meta-steps", "20", "--dims", "3,4,1",
                 "--eval-tasks", "10", "--no-progress"]) == 1
    assert "diverged" in capsys.readouterr().err


def test_every_help_shows_defaults():
    """Every option with a default shows it in --help, as "(default: value)"."""
    from maml_depth.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        text = " ".join(p.format_help().split())
        for a in p._actions:
            if a.option_strings and a.default not in (None, False, argparse.SUPPRESS):
                assert f"(default: {a.default})" in text, (name, a.option_strings[0])
    train = sub.choices["train"].format_help()
    assert "factorized" in train and "overrides" in train


def test_derive_into_a_closed_pipe_is_quiet():
    """`maml-depth derive --depth 9 | head -2`: no BrokenPipeError traceback."""
    p = subprocess.Popen([sys.executable, "-m", "maml_depth", "derive", "--depth", "9"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read().decode()
    p.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert p.returncode in (0, 1)


def test_derive_printer_is_sympys_text():
    """The fast printers give exactly sympy's text and LaTeX (small depths, all forms)."""
    import sympy as sp

    from maml_depth.theory import update_rule

    mod = sys.modules["maml_depth.theory.update_rule"]
    for L in (1, 2, 3):
        for adapt in ("all", "1", str(L)):
            for k in (1, 2):
                r = update_rule(L, adapt, k)
                assert r._equations(mod.matrix_str) == r._equations(sp.sstr)
                assert r._equations(mod.matrix_latex) == r._equations(sp.latex)


@pytest.mark.slow
@pytest.mark.parametrize(("depth", "limit"), [(8, 2.0), (10, 5.0)])
def test_derive_whole_process_cpu_time(depth, limit):
    """`maml-depth derive --depth 8` was 14 s as a whole process (13 s in sympy's printer):
    now under 2 s, depth 10 under 5 s — CPU time of the whole process, imports included
    (CPU rather than wall time, so that a shared machine does not decide it)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-m", "maml_depth", "derive", "--depth", str(depth)],
                         capture_output=True, text=True, timeout=300)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert out.returncode == 0 and len(out.stdout) > 10_000
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < limit, f"depth {depth}: {cpu:.2f} s CPU"


def test_derive_does_not_import_torch_and_leaves_the_full_package_importable():
    """derive loads only the sympy half of maml_depth.theory; afterwards `import
    maml_depth.theory` is the full package (functions, not the same-named submodules)."""
    code = ("import sys; from maml_depth.cli import main; main(['derive', '--depth', '2']); "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "import maml_depth.theory as t; from maml_depth.theory import update_rule; "
            "assert callable(t.expected_loss) and callable(update_rule); "
            "assert callable(t.reference_losses); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr


def _plugin_text(claim_id: str) -> str:
    return (
        "from maml_depth.validation import claim\n"
        f"@claim({claim_id!r}, title='t', statement='s', reference='r')\n"
        "def c(ctx):\n"
        "    return ctx.result(verdict='pass', measured=0.0, theory=0.0, summary='ok')\n")


@pytest.mark.parametrize("form", ["file", "cwd-module"])
def test_validate_plugin_file_and_cwd_module(form, tmp_path, monkeypatch, capsys):
    from maml_depth.validation import CLAIMS

    cid = f"plugin-{form}"
    name = f"my_plugin_{form.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(_plugin_text(cid))
    monkeypatch.chdir(tmp_path)
    spec = f"./{name}.py" if form == "file" else name
    try:
        code = main(["validate", "--plugin", spec, "--claims", cid, "--out",
                     str(tmp_path / "v"), "--no-progress"])
        out = capsys.readouterr()
        assert code == 0, out.err
        assert cid in (tmp_path / "v" / "report.md").read_text()
    finally:
        CLAIMS.pop(cid, None)
        sys.modules.pop(name, None)


def test_plugin_that_raises_is_one_line(tmp_path, capsys):
    (tmp_path / "boom.py").write_text("raise RuntimeError('boom')\n")
    assert main(["validate", "--plugin", str(tmp_path / "boom.py"), "--list"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--plugin" in err and "boom" in err


def test_figures_subset_keeps_other_gallery_entries(tmp_path):
    """A gallery written for figures 1 and 2, then updated with --only 2: figure 1's entry
    is kept as it was, figure 2's replaced, and the subset's command (with --only) is
    recorded."""
    from types import SimpleNamespace

    from maml_depth.paper_figures.budget import get_budget
    from maml_depth.paper_figures.registry import FIGURES, write_gallery

    def result(num, caption):
        png = tmp_path / "g" / f"{FIGURES[num].name}.png"
        return SimpleNamespace(spec=FIGURES[num], paths=[png], caption=caption,
                               data=SimpleNamespace(meta={"budget": "tiny"}))

    readme = tmp_path / "README.md"
    b = get_budget("tiny")
    write_gallery([result(1, "first one"), result(2, "second old")], readme, b)
    write_gallery([result(2, "second new")], readme, b,
                  command="maml-depth figures --only 2 --budget tiny")
    text = readme.read_text()
    assert "first one" in text and "second new" in text and "second old" not in text
    assert text.index("## Figure 1") < text.index("## Figure 2")
    assert "--only 2" in text


def test_sweep_new_names_and_why_theory_is_empty(tmp_path, capsys):
    """A sweep file with the user-facing names (n_support, condition, steps,
    preconditioner) runs; the summary's theory column says why it is empty (k = 2)."""
    cfg = tmp_path / "s.toml"
    cfg.write_text(
        '[sweep]\nname = "names"\n[fixed]\nd = 3\nwidth = 4\nn_support = 5\ncondition = 4.0\n'
        'preconditioner = "maml"\nmeta_steps = 3\nmeta_batch = 4\neval_tasks = 20\n'
        '[grid]\nsteps = [1, 2]\n')
    out = tmp_path / "out"
    code = main(["sweep", str(cfg), "--executor", "serial", "--out", str(out),
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    md = (out / "summary.md").read_text()
    rows = [ln for ln in md.splitlines() if ln.startswith("| 2 ")]
    assert rows and "no closed form" in rows[0], md
    base = ('[fixed]\nd = 3\nwidth = 4\nmeta_steps = 3\nmeta_batch = 4\neval_tasks = 20\n'
            '{extra}[grid]\ninner_steps = [1, 2]\n')
    cfg.write_text(base.format(extra='shots = 5\nanisotropy = 4.0\noptimizer = "maml"\n'))
    assert main(["sweep", str(cfg), "--dry-run"]) == 0  # the old spellings still work
    cfg.write_text(base.format(extra="shots = 5\nn_support = 5\n"))
    assert main(["sweep", str(cfg), "--dry-run"]) == 2
    assert "name the same parameter" in capsys.readouterr().err


def test_meta_optimizers_experiment_writes_under_results_by_default(capsys):
    from maml_depth.experiments import meta_optimizers

    with pytest.raises(SystemExit):
        meta_optimizers.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default: results/meta_optimizers/results.md" in text


def test_make_bench_installs_the_bench_extra_first():
    text = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    recipe = text.split("\nbench:", 1)[1].split("\n\n", 1)[0]
    install = recipe.find("bench]")
    assert 0 <= install < recipe.find("maml-depth bench"), recipe


@pytest.mark.parametrize("cid", ["depth-helps", "bottom-layers-represent",
                                 "meta-optimizers-linear"])
def test_claim_with_unconverged_networks_is_inconclusive_saying_why(cid, tmp_path):
    """30 meta-steps cannot be shown converged: never a pass or a fail, and the summary
    says which network did not converge."""
    from maml_depth.validation import CLAIMS, Budget, RunContext, run_claim

    b = Budget("t", cases=1, mc_tasks=1, meta_steps=30, population_steps=100, seeds=2,
               eval_tasks=200, nonlinear=False)
    r = run_claim(CLAIMS[cid], RunContext(cid, b, out_dir=tmp_path))
    assert r.verdict == "inconclusive", (r.verdict, r.summary)
    assert "not converged" in r.summary
