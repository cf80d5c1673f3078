"""A small sweep on a Dask LocalCluster, killed midway with SIGKILL — a worker, and
separately the driver — then resumed: every point is stored exactly once."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from maml_depth.sweep import load_config, run_sweep

from .common import TINY, deterministic, load_records, record_files, tiny_config, write_toml

distributed = pytest.importorskip("distributed")

#: points that take a little while, so that a kill lands mid-sweep
SLOWER = {"meta_steps": 60}
GRID = {"depth": [1, 2, 3], "seed": [0, 1]}


def _wait_for_records(out: Path, n: int, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while len(record_files(out)) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {n} records in {out} after {timeout} s")
        time.sleep(0.02)


def _exactly_once(out: Path, cfg) -> dict:
    points = cfg.expand()
    recs = load_records(out)
    assert sorted(recs) == sorted(p.key for p in points)  # file name = key: no duplicates
    assert all(r["status"] == "ok" for r in recs.values())
    assert not list((out / "store").glob(".*"))  # no debris of interrupted writes
    return recs


def test_killed_dask_worker_loses_nothing(tmp_path):
    cfg = tiny_config(grid=GRID, **SLOWER)
    out = tmp_path / "dask"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None,
                                  silence_logs=logging.ERROR) as cluster, \
            distributed.Client(cluster) as client:
        pids = list(client.run(os.getpid).values())
        killed: list[int] = []

        def killer() -> None:
            try:
                _wait_for_records(out, 1)
            except AssertionError:
                return
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

        t = threading.Thread(target=killer, daemon=True)
        t.start()
        rep = run_sweep(cfg, out=out, executor=client, progress=False)
        t.join(5)
        assert killed, "the worker was not killed"
        assert rep.failed == 0 and rep.computed == len(cfg.expand())
        recs = _exactly_once(out, cfg)
        rep = run_sweep(cfg, out=out, executor=client, resume=True, progress=False)
        assert (rep.computed, rep.skipped) == (0, len(recs))
    # same records as a serial run in this process: identical, timings excluded
    serial = tmp_path / "serial"
    run_sweep(cfg, out=serial, executor="serial", progress=False, summary=False)
    ref = load_records(serial)
    for k, r in recs.items():
        assert deterministic(r) == deterministic(ref[k])


def test_killed_driver_resumes_where_it_stopped(tmp_path):
    toml = write_toml(tmp_path / "sweep.toml", TINY | SLOWER, GRID)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "maml_depth.cli", "sweep", str(toml), "--executor", "dask",
           "--workers", "2", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        _wait_for_records(out, 1)
        os.kill(proc.pid, signal.SIGKILL)  # the driver only
        proc.wait(30)
    finally:
        try:  # then the workers it left behind (all in the session we started)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    stored = {p.stem for p in record_files(out)}
    cfg = load_config(toml)
    total = len(cfg.expand())
    assert 1 <= len(stored) < total, "the driver finished before it was killed"
    rep = run_sweep(cfg, out=out, executor="serial", resume=True, progress=False)
    assert (rep.skipped, rep.computed) == (len(stored), total - len(stored))
    recs = _exactly_once(out, cfg)
    assert stored <= set(recs)
