"""``maml-depth derive``: prints the update rule and its α-coefficients; bad input → exit 2."""

from __future__ import annotations

from maml_depth.cli import main


def test_derive_prints_rule_and_coefficients(capsys):
    assert main(["derive", "--depth", "3", "--adapt", "1,3", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "S = {1, 3}" in out and "degree 2 in alpha" in out
    assert "C_0 = W_3*W_2*W_1" in out
    assert "C_1 = -(G*W_1.T*W_2.T*W_2*W_1 + W_3*W_2*W_2.T*W_3.T*G)" in out
    assert "C_2" in out and "C_3" not in out
    assert "KroneckerProduct" in out  # the first-order preconditioner


def test_derive_latex_all_layers_and_scalar(capsys):
    assert main(["derive", "--depth", "2", "--adapt", "all", "--latex", "--scalar"]) == 0
    out = capsys.readouterr().out
    assert "\\begin{aligned}" in out and "C_{2}" in out and "w' =" in out


def test_derive_several_steps_has_no_coefficients(capsys):
    assert main(["derive", "--depth", "2", "--steps", "2", "--text"]) == 0
    out = capsys.readouterr().out
    assert "W_1^(t+1)" in out and "coefficients exist only for steps=1" in out
    assert "C_1" not in out


def test_derive_bad_input_exits_2_with_one_line(capsys):
    assert main(["derive", "--depth", "3", "--adapt", "7"]) == 2
    err = capsys.readouterr().err.strip()
    assert "adapt names layer 7" in err and len(err.splitlines()) == 1
    assert main(["derive", "--depth", "0"]) == 2
    assert "depth" in capsys.readouterr().err
    assert main(["derive", "--depth", "2", "--steps", "0"]) == 2
    assert "steps" in capsys.readouterr().err
