"""Every sub-command's argument parsing and validation, driven by generated argument lists.

For each generated command line: the exit code is 0, 1 or 2; nothing raises out of
``main`` (no traceback); exit 2 prints exactly one line on stderr, naming an option of the
command line (or the command's required option). Work is stopped right after validation:
the function each command calls first to do its work is replaced by one that raises
``_Stop`` (counted as "validation passed"); ``derive`` runs for real at depth ≤ 3.
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maml_depth.cli import main

ROOT = Path(__file__).resolve().parents[2]
TMP = Path(tempfile.mkdtemp(prefix="cli-fuzz-"))
(TMP / "plug_ok.py").write_text("VALUE = 1\n")
(TMP / "plug_boom.py").write_text("raise RuntimeError('boom')\n")
(TMP / "bad.toml").write_text("[grid\nx=1\n")
FORBIDDEN = "/proc/forbidden/out"


class _Stop(BaseException):
    """Raised where a command would start its real work."""


def _stop(*args, **kwargs):
    raise _Stop


OUTS = [str(TMP / "o" / "run.json"), FORBIDDEN, str(TMP)]
DEVICES = ["cpu", "auto", "gpu", "tpu", "cuda:x", "cuda"]
SEEDS = ["0", "3", "-1", "x"]

SPECS: dict[str, dict[str, list[str] | None]] = {
    "train": {
        "--demo": None, "--first-order": None, "--no-progress": None,
        "--dims": ["3,4,4,1", "3,1", "0,1", "x", "3,-1", "4", "3,2,2"],
        "--adapt": ["top", "all", "1", "1,2", "7", "x", ""],
        "--alpha": ["0.1", "nan", "-1", "0", "inf", "x"],
        "--steps": ["1", "2", "0", "-3", "x"], "--inner-steps": ["1", "0"],
        "--preconditioner": ["maml", "meta-sgd", "kfo", "meta-curvature", "foo"],
        "--optimizer": ["maml", "bar"],
        "--meta-steps": ["1", "0", "-1"], "--meta-batch": ["2", "0"],
        "--lr": ["0.01", "0", "nan", "-1"], "--schedule": ["cosine", "sideways"],
        "--init": ["gaussian", "balanced", "nope"], "--init-scale": ["1", "0", "nan"],
        "--n-support": ["5", "0", "x"], "--shots": ["3", "-2"], "--n-query": ["3", "0"],
        "--sigma": ["0.1", "-1", "nan"], "--condition": ["1", "10", "0.5", "nan"],
        "--anisotropy": ["2", "0"], "--seed": SEEDS, "--eval-tasks": ["10", "1", "0"],
        "--device": DEVICES, "--engine": ["auto", "vmap", "loop", "factorized", "bogus"],
        "--dtype": ["float64", "float16"], "--out": OUTS,
    },
    "validate": {
        "--list": None, "--no-progress": None,
        "--claims": ["update-rule", "nope", "update-rule,nope"],
        "--suite": ["paper", "all", "neighbours", "x"], "--budget": ["quick", "full", "huge"],
        "--seed": SEEDS, "--device": DEVICES, "--out": [str(TMP / "v"), FORBIDDEN],
        "--plugin": [str(TMP / "plug_ok.py"), "no_such_module_xyz", "./missing.py",
                     str(TMP / "plug_boom.py")],
    },
    "figures": {
        "--list": None, "--recompute": None, "--no-progress": None,
        "--only": ["1", "1,3", "9", "x", ""], "--budget": ["tiny", "quick", "huge"],
        "--out": [str(TMP / "f"), FORBIDDEN], "--cache": [str(TMP / "c"), FORBIDDEN],
        "--readme": [str(TMP / "f" / "README.md"), FORBIDDEN + "/R.md"],
        "--threads": ["1", "0", "x"],
    },
    "bench": {
        "--theory": None,
        "--repeats": ["20", "3", "x"], "--rounds": ["1", "0"],
        "--paired-rounds": ["6", "5"], "--paired-seconds": ["0", "nan"],
        "--timeout": ["10", "0"], "--configs": ["small", "medium"],
        "--peers": ["vmap", "nope"], "--device": DEVICES, "--out": OUTS[:2],
    },
    "derive": {
        "--text": None, "--latex": None, "--scalar": None,
        "--depth": ["1", "2", "3", "0", "-1", "x"],
        "--adapt": ["all", "top", "1", "1,3", "5", "x"], "--steps": ["1", "2", "0", "x"],
    },
    "sweep": {
        "--resume": None, "--retry-failed": None, "--dry-run": None, "--no-progress": None,
        "--executor": ["local", "serial", "dask", "bogus"], "--scheduler": ["tcp://x:1"],
        "--workers": ["1", "0", "x"], "--out": [str(TMP / "s"), FORBIDDEN],
    },
}
POSITIONAL = {"sweep": [str(ROOT / "examples" / "sweep_depth.toml"), str(TMP / "missing.toml"),
                        str(TMP / "bad.toml")]}
REQUIRED = {"derive": ["--depth"], "sweep": ["CONFIG"]}
#: old spellings: their errors name the one current name of the concept
ALIASES = {"--anisotropy": "--condition", "--shots": "--n-support",
           "--inner-steps": "--steps", "--optimizer": "--preconditioner"}


@st.composite
def command_lines(draw, cmd: str) -> list[str]:
    """Options with their first (valid) value, and at most one option drawn from all of
    its values (valid or not), so that a bad value reaches its own check."""
    spec = SPECS[cmd]
    names = draw(st.lists(st.sampled_from(sorted(spec)), unique=True, max_size=5))
    argv = [cmd]
    # the simplest draws (what hypothesis starts from) are complete command lines
    if cmd in POSITIONAL and draw(st.integers(0, 9)) < 9:
        argv.append(draw(st.sampled_from(POSITIONAL[cmd])))
    if cmd == "derive" and "--depth" not in names and not draw(st.booleans()):
        names.append("--depth")
    with_values = [n for n in names if spec[n] is not None]
    mutated = draw(st.sampled_from(with_values)) if with_values else None
    for name in names:
        values = spec[name]
        argv.append(name)
        if values is not None:
            argv.append(draw(st.sampled_from(values)) if name == mutated else values[0])
    if draw(st.integers(0, 19)) == 19:
        argv.append("--bogus-option")
    return argv


def _field_names(argv: list[str], cmd: str) -> set[str]:
    names: set[str] = set(REQUIRED.get(cmd, []))
    for a in argv:
        if a.startswith("--"):
            for n in (a, ALIASES.get(a, a)):
                names |= {n, n[2:], n[2:].replace("-", "_")}
    names.add("CONFIG")
    return names


@pytest.fixture
def stopped(monkeypatch):
    import maml_depth.benchmarks.engine as engine
    import maml_depth.numerics as numerics
    import maml_depth.paper_figures.registry as registry
    import maml_depth.sweep.driver as driver
    import maml_depth.validation as validation

    monkeypatch.setattr(numerics, "meta_train", _stop)
    monkeypatch.setattr(validation, "run_claim", _stop)
    monkeypatch.setattr(registry, "build_figure", _stop)
    monkeypatch.setattr(engine, "run", _stop)
    monkeypatch.setattr(driver, "run_sweep", _stop)
    for mod in ("update_rule", "expected_loss"):
        try:
            m = __import__(f"maml_depth.benchmarks.{mod}", fromlist=["run"])
        except ModuleNotFoundError:
            continue
        monkeypatch.setattr(m, "run", _stop)
    # plugins register nothing; keep sys.modules clean between examples
    yield
    for name in ("plug_ok", "plug_boom"):
        sys.modules.pop(name, None)


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse: --help, usage errors
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
        except _Stop:
            code = 0
    return int(code), out.getvalue(), err.getvalue()


def _check(cmd: str, argv: list[str]) -> int:
    code, out, err = _run(argv)
    assert code in (0, 1, 2), (argv, code, err)
    assert "Traceback" not in err and "Traceback" not in out, (argv, err)
    if code == 2:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1, (argv, err)
        assert any(f in lines[0] for f in _field_names(argv, cmd)), (argv, lines[0])
    assert not Path(FORBIDDEN).exists()
    return code


@pytest.mark.parametrize("cmd", sorted(SPECS))
def test_every_value_of_every_option(cmd, stopped):
    """Each value alone on an otherwise minimal command line reaches its own check."""
    base = [cmd, *POSITIONAL.get(cmd, [])[:1], *(["--depth", "2"] if cmd == "derive" else [])]
    codes = set()
    for name, values in SPECS[cmd].items():
        for v in values if values is not None else [None]:
            argv = [*base, name] + ([] if v is None else [v])
            if name == "--depth":
                argv = [cmd, name, str(v)]
            codes.add(_check(cmd, argv))
    assert codes == {0, 2}, codes  # the tables hold valid and invalid values


@pytest.mark.parametrize("cmd", sorted(SPECS))
def test_generated_command_lines(cmd, stopped):
    @settings(max_examples=max(settings.default.max_examples, 40))
    @given(argv=command_lines(cmd))
    def check(argv):
        _check(cmd, argv)

    check()
