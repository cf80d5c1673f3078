"""The prepared device run (tools/device_check.sh), on the CPU: it assembles the package in
its installed layout, runs the GPU tests (skipped here) and the bench, and writes its files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_device_check_runs_on_cpu_and_writes_its_files(tmp_path):
    env = dict(os.environ, DEVICE="cpu", CONFIGS="small", OUT=str(tmp_path),
               PYTHON=sys.executable)
    out = subprocess.run(["bash", str(ROOT / "tools" / "device_check.sh")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    env_txt = (tmp_path / "env.txt").read_text()
    # the package ran from the script's own copy, not from this checkout or an install
    line = next(ln for ln in env_txt.splitlines() if ln.startswith("maml_depth.numerics from"))
    assert str(ROOT) not in line and line.endswith("maml_depth/numerics/__init__.py")
    assert "skipped" in (tmp_path / "gpu_tests.log").read_text()
    bench = (tmp_path / "bench.md").read_text()
    assert "targets of the factorized engine" in bench and "| factorized |" in bench
