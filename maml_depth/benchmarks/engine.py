"""Engine benchmark: meta-steps per second of second-order MAML, peers in one run.

Peers (same model, same maths, gradients checked equal in float64 before timing):

- ``loop``: a Python loop over tasks with ``torch.autograd.grad(create_graph=True)``
  (:func:`maml_depth.numerics.inner_adapt_autograd`), the way learn2learn and higher work;
- ``vmap``: our batched engine (``torch.func.vmap`` of ``torch.func.grad``);
- ``higher``: ``higher.innerloop_ctx`` with a differentiable SGD, as in its README;
- ``torchopt``: ``torchopt.MetaSGD`` with ``extract_state_dict``/``recover_state_dict``, as
  in its MAML examples.

Each (config, peer) runs in a fresh subprocess, so a peer that fails to import or run is
reported as unavailable with the reason, and peak memory is that process's own: on CPU the
growth of the process's peak resident set from just before the model and data are built
to the end of the timed steps (model, data, autograd graphs, allocator slack), on CUDA
``torch.cuda.max_memory_allocated``. Timing: warm-up steps, then the median of ≥ 20 steps.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from maml_depth.benchmarks.table import Table, machine_description


@dataclass(frozen=True)
class EngineConfig:
    """A deep linear (or ReLU MLP) net ``d → hidden ×(depth−1) → 1``, ``tasks`` tasks of
    ``shots`` support and ``shots`` query samples, ``steps`` inner steps, all layers adapted."""

    name: str
    d: int
    hidden: int
    depth: int
    tasks: int
    shots: int
    steps: int = 1
    mlp: bool = False
    alpha: float = 0.01

    @property
    def dims(self) -> tuple[int, ...]:
        return (self.d, *([self.hidden] * (self.depth - 1)), 1)


CONFIGS: dict[str, EngineConfig] = {
    "small": EngineConfig("small", d=16, hidden=32, depth=4, tasks=32, shots=10),
    "large": EngineConfig("large", d=64, hidden=256, depth=4, tasks=256, shots=10),
}
PEERS: tuple[str, ...] = ("loop", "vmap", "higher", "torchopt")


def _build(cfg: EngineConfig, dtype: Any, device: Any, seed: int = 0) -> tuple[Any, Any, Any]:
    import torch

    from maml_depth.numerics import MLP, DeepLinear, LinearRegressionTasks

    g = torch.Generator().manual_seed(seed)
    model: torch.nn.Module
    if cfg.mlp:
        model = MLP(cfg.dims, "relu", generator=g, dtype=dtype, device=device)
    else:
        model = DeepLinear(cfg.dims, init="gaussian", generator=g, dtype=dtype, device=device)
    fam = LinearRegressionTasks.isotropic(cfg.d, 1, sigma=0.1, n_support=cfg.shots,
                                          n_query=cfg.shots, dtype=dtype).to(device=device)
    gd = torch.Generator(device=device).manual_seed(seed + 1)
    batch = fam.sample(cfg.tasks, gd)
    return model, fam, batch


def _meta_loss_fn(peer: str, cfg: EngineConfig, model: Any, fam: Any, batch: Any
                  ) -> Callable[[], Any]:
    """A closure computing the meta-loss and calling ``backward`` (grads on model params)."""
    import torch

    from maml_depth.numerics import InnerConfig, mse_loss, post_adaptation_losses

    inner = InnerConfig(alpha=cfg.alpha, adapt="all", steps=cfg.steps)
    T = cfg.tasks
    if peer in ("loop", "vmap"):
        params = dict(model.named_parameters())

        def step() -> Any:
            loss = post_adaptation_losses(model, params, batch, fam, inner, engine=peer).mean()
            loss.backward()
            return loss

        return step
    if peer == "higher":
        import higher  # type: ignore[import-not-found]

        inner_opt = torch.optim.SGD(model.parameters(), lr=cfg.alpha)

        def step() -> Any:
            total = 0.0
            for t in range(T):
                with higher.innerloop_ctx(model, inner_opt, copy_initial_weights=False) as (
                        fmodel, diffopt):
                    for _ in range(cfg.steps):
                        diffopt.step(mse_loss(fmodel(batch.X[t]), batch.Y[t]))
                    q = mse_loss(fmodel(batch.Xq[t]), batch.Yq[t]) / T
                    q.backward()
                    total += float(q.detach())
            return total

        return step
    if peer == "torchopt":
        import torchopt  # type: ignore[import-not-found]

        meta_opt = torchopt.MetaSGD(model, lr=cfg.alpha)

        def step() -> Any:
            state = torchopt.extract_state_dict(model)
            total = 0.0
            for t in range(T):
                for _ in range(cfg.steps):
                    meta_opt.step(mse_loss(model(batch.X[t]), batch.Y[t]))
                q = mse_loss(model(batch.Xq[t]), batch.Yq[t]) / T
                q.backward()
                total += float(q.detach())
                torchopt.recover_state_dict(model, state)
            return total

        return step
    raise ValueError(f"unknown peer {peer!r}")


def _meta_gradient(peer: str, cfg: EngineConfig) -> list[Any]:
    """The meta-gradient of a peer on a float64 CPU copy of the problem."""
    import torch

    model, fam, batch = _build(cfg, torch.float64, "cpu")
    _meta_loss_fn(peer, cfg, model, fam, batch)()
    return [p.grad.detach().clone() for p in model.parameters()]


def measure(peer: str, cfg: EngineConfig, device: str, repeats: int = 20, warmup: int = 3,
            threads: int = 2) -> dict[str, Any]:
    """Time ``repeats`` meta-steps (meta-loss, backward, Adam step) of ``peer`` (in-process)."""
    import torch

    torch.set_num_threads(threads)
    # initialise torch's and the peer's lazy state on a tiny problem, so that the peak-memory
    # baseline below excludes it
    tiny = EngineConfig("tiny", d=2, hidden=2, depth=cfg.depth, tasks=2, shots=2,
                        steps=cfg.steps, mlp=cfg.mlp)
    _meta_gradient(peer, tiny)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    dev = torch.device(device)
    model, fam, batch = _build(cfg, torch.float32, dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    step = _meta_loss_fn(peer, cfg, model, fam, batch)

    def one() -> None:
        opt.zero_grad(set_to_none=True)
        step()
        opt.step()

    for _ in range(warmup):
        one()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        one()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    if dev.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    # correctness: the peer's float64 meta-gradient against the loop reference (after
    # timing, so that it does not inflate the peak memory)
    err = 0.0
    if peer != "loop":
        ref, got = _meta_gradient("loop", cfg), _meta_gradient(peer, cfg)
        err = max(float((a - b).norm() / b.norm().clamp_min(1e-300))
                  for a, b in zip(got, ref, strict=True))
        if not err <= 1e-8:
            return {"status": f"meta-gradient differs from the loop (rel. error {err:.2e})"}
    return {"status": "ok", "ms": 1e3 * statistics.median(times),
            "ms_min": 1e3 * min(times), "peak_mb": peak_mb, "grad_rel_err": err,
            "repeats": repeats}


def _measure_in_subprocess(peer: str, cfg: EngineConfig, device: str, repeats: int,
                           timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "maml_depth.benchmarks.engine", "--peer", peer,
           "--config", json.dumps(asdict(cfg)), "--device", device, "--repeats", str(repeats)]
    env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"status": f"unavailable: timed out after {timeout:.0f} s"}
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        err = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": f"unavailable: {err[:160]}"}
    return dict(json.loads(lines[-1]))


def run(configs: list[str] | None = None, peers: list[str] | None = None, device: str = "cpu",
        repeats: int = 20, timeout: float = 900.0, progress: bool = True) -> list[Table]:
    """Measure every peer on every config; one table per config, ratios against ``vmap``."""
    from tqdm.auto import tqdm

    cfgs = [CONFIGS[c] for c in (configs or list(CONFIGS))]
    peers = list(peers or PEERS)
    tables = []
    jobs = [(c, p) for c in cfgs for p in peers]
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for c, p in tqdm(jobs, desc="bench", disable=not progress):
        results[(c.name, p)] = _measure_in_subprocess(p, c, device, repeats, timeout)
    for c in cfgs:
        t = Table(
            f"Second-order MAML meta-step, {c.name}: dims {'-'.join(map(str, c.dims))}, "
            f"{c.tasks} tasks × {c.shots} shots, {c.steps} inner step(s), "
            f"{'ReLU MLP' if c.mlp else 'deep linear'}, float32, {device}",
            ["peer", "ms/step (median)", "steps/s", "peak mem (MB)", "speed vs this row → vmap",
             "grad rel. err (float64)", "status"])
        base = results[(c.name, "vmap")].get("ms") if (c.name, "vmap") in results else None
        for p in peers:
            r = results[(c.name, p)]
            ms = r.get("ms", float("nan"))
            ratio = (ms / base) if base and r.get("status") == "ok" else float("nan")
            t.add(p, ms, 1e3 / ms if ms == ms else float("nan"), r.get("peak_mb", float("nan")),
                  ratio, r.get("grad_rel_err", float("nan")), r.get("status", "?"))
        t.notes.append(f"machine: {machine_description()}")
        t.notes.append(f"median of {repeats} steps after 3 warm-up steps; 'speed vs this row' "
                       "= this peer's ms / vmap's ms (> 1: vmap is that many times faster)")
        tables.append(t)
    return tables


def _main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--peer", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args(argv)
    cfg = EngineConfig(**json.loads(a.config))
    print(json.dumps(measure(a.peer, cfg, a.device, a.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
