"""The driver: store as points complete, resume, recompute corrupt records, keep going past
failures, identical records for identical configs."""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import os
import signal
import threading
import time

import pytest

from maml_depth import cli
from maml_depth.errors import ConfigError
from maml_depth.sweep import CorruptRecordWarning, load_frame, run_sweep

from .common import deterministic, load_records, record_files, tiny_config, write_toml


def _run(cfg, out, **kw):
    kw.setdefault("executor", "serial")
    kw.setdefault("progress", False)
    return run_sweep(cfg, out=out, **kw)


def test_sweep_stores_every_point_and_summarises(tmp_path):
    cfg = tiny_config()
    rep = _run(cfg, tmp_path)
    points = cfg.expand()
    assert (rep.total, rep.computed, rep.skipped, rep.failed) == (4, 4, 0, 0)
    assert [p.stem for p in record_files(tmp_path)] == sorted(p.key for p in points)
    frame = load_frame(tmp_path, [p.key for p in points])
    assert len(frame) == 4 and set(frame["status"]) == {"ok"}
    for name in ("summary.csv", "summary.md", "hypothesis.png", "points.json"):
        assert (tmp_path / name).stat().st_size > 0
    import pandas as pd

    table = pd.read_csv(tmp_path / "summary.csv")
    assert list(table["depth"]) == [1, 2] and list(table["n_ok"]) == [2, 2]
    assert table["post_loss_ci95"].notna().all()
    assert (tmp_path / "hypothesis.png").read_bytes()[:4] == b"\x89PNG"
    assert not list((tmp_path / "store").glob(".*"))


def test_same_config_and_seed_gives_identical_records(tmp_path):
    cfg = tiny_config()
    _run(cfg, tmp_path / "a")
    with cf.ThreadPoolExecutor(max_workers=2) as ex:  # any concurrent.futures executor
        _run(cfg, tmp_path / "b", executor=ex)
    a, b = load_records(tmp_path / "a"), load_records(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        assert deterministic(a[k]) == deterministic(b[k])
    assert (tmp_path / "a" / "summary.csv").read_text() == \
        (tmp_path / "b" / "summary.csv").read_text()


def test_resume_skips_stored_points_and_never_duplicates(tmp_path):
    cfg = tiny_config()
    _run(cfg, tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in record_files(tmp_path)}
    with pytest.raises(ConfigError, match="--resume"):
        _run(cfg, tmp_path)
    rep = _run(cfg, tmp_path, resume=True)
    assert (rep.computed, rep.skipped) == (0, 4)
    assert {p.name: p.stat().st_mtime_ns for p in record_files(tmp_path)} == before
    # a larger sweep on the same store only runs the new points
    bigger = tiny_config(grid={"depth": [1, 2], "seed": [0, 1, 2]})
    rep = _run(bigger, tmp_path, resume=True)
    assert (rep.computed, rep.skipped) == (2, 4)
    assert len(record_files(tmp_path)) == 6


def test_corrupt_records_are_recomputed(tmp_path):
    cfg = tiny_config()
    _run(cfg, tmp_path)
    good = load_records(tmp_path)
    files = record_files(tmp_path)
    files[0].write_text(files[0].read_text()[:100])            # truncated
    rec = json.loads(files[1].read_text())
    rec["result"]["post_loss"] = 0.0                            # silently edited
    files[1].write_text(json.dumps(rec))
    with pytest.warns(CorruptRecordWarning):
        assert len(load_frame(tmp_path)) == 2
    rep = _run(cfg, tmp_path, resume=True)
    assert (rep.computed, rep.skipped, len(rep.corrupt)) == (2, 2, 2)
    again = load_records(tmp_path)
    assert again.keys() == good.keys()
    for k in good:
        assert deterministic(again[k]) == deterministic(good[k])


def test_failed_points_are_recorded_and_do_not_stop_the_sweep(tmp_path, capsys):
    cfg = tiny_config(grid={"outer_optimizer": ["adam", "sgd"], "seed": [0]}, alpha=50.0,
                      depth=2)
    rep = _run(cfg, tmp_path)
    assert (rep.computed, rep.failed) == (2, 1)
    frame = load_frame(tmp_path)
    bad = frame[frame["status"] == "failed"]
    assert len(bad) == 1 and bad["error"].iloc[0].startswith("DivergenceError")
    # --retry-failed recomputes it (deterministically failing again); plain resume skips it
    assert _run(cfg, tmp_path, resume=True).computed == 0
    assert _run(cfg, tmp_path, resume=True, retry_failed=True).computed == 1
    # the CLI exits 1 when a point failed
    toml = write_toml(tmp_path / "s.toml", cfg.fixed, {k: v for k, v in cfg.grid.items()})
    code = cli.main(["sweep", str(toml), "--executor", "serial", "--no-progress",
                     "--out", str(tmp_path / "cli")])
    captured = capsys.readouterr()
    assert code == 1 and "1 point(s) failed" in captured.err
    assert "2 points — 2 computed (1 failed)" in captured.out


@pytest.mark.slow
def test_local_pool_survives_a_killed_worker(tmp_path):
    """SIGKILL one worker of the local process pool mid-sweep: the pool is rebuilt, the
    points in flight are resubmitted, every point ends up stored exactly once, and the
    records equal those of a serial run."""
    cfg = tiny_config(grid={"depth": [1, 2, 3], "seed": [0, 1]}, meta_steps=60)
    out = tmp_path / "pool"
    killed: list[int] = []

    def killer() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            if record_files(out):
                kids = [p for p in multiprocessing.active_children() if p.pid]
                if kids:
                    os.kill(kids[0].pid, signal.SIGKILL)
                    killed.append(kids[0].pid)
                    return
            time.sleep(0.02)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    rep = _run(cfg, out, executor="local", workers=2)
    t.join(5)
    assert killed, "no worker was killed (the sweep ended first?)"
    points = cfg.expand()
    assert sorted(p.stem for p in record_files(out)) == sorted(p.key for p in points)
    assert rep.failed == 0 and rep.lost >= 1 and rep.computed == len(points)
    serial = tmp_path / "serial"
    _run(cfg, serial)
    a, b = load_records(out), load_records(serial)
    for k in a:
        assert deterministic(a[k]) == deterministic(b[k])
    assert max(r["timing"]["attempts"] for r in a.values()) >= 2


class _FlakyExecutor(cf.ThreadPoolExecutor):
    """Any concurrent.futures executor; this one 'loses the worker' of seed-1 points."""

    def submit(self, fn, /, *args, **kwargs):
        if len(args) > 1 and args[1]["seed"] == 1:  # run_task(task, params, threads)
            fut: cf.Future = cf.Future()
            fut.set_exception(cf.BrokenExecutor("simulated dead worker"))
            return fut
        return super().submit(fn, *args, **kwargs)


def test_a_point_whose_worker_keeps_dying_is_failed_then_rerun_on_resume(tmp_path):
    cfg = tiny_config()
    with _FlakyExecutor(max_workers=1) as ex:
        rep = _run(cfg, tmp_path, executor=ex, max_attempts=2)
    assert (rep.computed, rep.failed, rep.lost) == (4, 2, 4)
    frame = load_frame(tmp_path)
    lost = frame[frame["status"] == "failed"]
    assert set(lost["seed"]) == {1}
    assert all(e.startswith("WorkerLost: its worker died 2 times") for e in lost["error"])
    rep = _run(cfg, tmp_path, resume=True)  # unlike a point's own failure: run again
    assert (rep.computed, rep.failed, rep.skipped) == (2, 0, 2)


def test_interrupt_keeps_finished_points(tmp_path, monkeypatch, capsys):
    from maml_depth.sweep import runner

    calls = []
    measure = runner.measure

    def interrupted(params):
        calls.append(params)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return measure(params)

    monkeypatch.setattr(runner, "measure", interrupted)
    cfg = tiny_config()
    toml = write_toml(tmp_path / "s.toml", cfg.fixed, dict(cfg.grid))
    out = tmp_path / "out"
    code = cli.main(["sweep", str(toml), "--executor", "serial", "--no-progress",
                     "--out", str(out)])
    assert code == 130 and "re-run with --resume" in capsys.readouterr().err
    assert len(record_files(out)) == 2
    monkeypatch.setattr(runner, "measure", measure)
    assert cli.main(["sweep", str(toml), "--executor", "serial", "--no-progress",
                     "--out", str(out), "--resume"]) == 0
    assert "2 computed (0 failed), 2 already stored" in capsys.readouterr().out
    assert len(record_files(out)) == 4
