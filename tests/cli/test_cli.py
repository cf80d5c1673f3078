"""The command line: exit codes, one-line errors naming the field, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

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
    (["train", "--meta-steps", "0"], "meta_steps"),
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
