"""Engine benchmark: meta-steps per second of second-order MAML, peers in one run.

Peers (same model, same maths, gradients checked equal in float64 before timing):

- ``loop``: a Python loop over tasks with ``torch.autograd.grad(create_graph=True)``
  (:func:`maml_depth.numerics.inner_adapt_autograd`), the way learn2learn and higher work;
- ``vmap``: our batched engine (``torch.func.vmap`` of ``torch.func.grad``);
- ``factorized``: factorized fast weights (:mod:`maml_depth.numerics.factorized`, docs/theory/
  §6), the default engine wherever it applies;
- ``higher``: ``higher.innerloop_ctx`` with a differentiable SGD, as in its README;
- ``torchopt``: ``torchopt.MetaSGD`` with ``extract_state_dict``/``recover_state_dict``, as
  in its MAML examples.

Each (config, peer) runs in a fresh subprocess, so a peer that fails to import or run is
reported as unavailable with the reason, and peak memory is that process's own: on CPU the
growth of the process's peak resident set from just before the model and data are built
to the end of the timed steps (model, data, autograd graphs, allocator slack; torch's lazy
imports, e.g. the ~40 MB the first ``torch.optim.Adam`` pulls in, are triggered before the
baseline), on CUDA ``torch.cuda.max_memory_allocated``. On CPU a second, exact reading is
the peak of the C heap in use during one extra meta-step above its value before it (glibc
``mallinfo2``, sampled after every torch operation: allocated bytes, no allocator slack).
Timing: warm-up steps, then the median of ≥ 20 steps and ≥ 1 s of steps (``rounds``
such measurements per peer, default 1, the fastest kept). The speed *ratios* come from a
second phase, :func:`paired`: the peers that ran, interleaved in one process, round after
round (each round one block of steps per peer), so that a drift of the machine's speed
(other processes' load on a shared machine) slows every peer of a round alike; each ratio
is the median over rounds with a distribution-free 95 % interval, and a target counts as
met only when the whole interval lies above it.
The Adam step that ends each meta-step is the fused implementation where torch has one.

FLOP rate: the floating-point operations of one meta-step (meta-loss and backward) are
counted by ``torch.utils.flop_counter.FlopCounterMode`` (matrix products; elementwise work
is not counted) and divided by the median step time; the reference is a plain float32
matrix product of the engines' dominant shape, ``(tasks·shots × hidden) @ (hidden ×
hidden)``, timed in the same process with the same threads.
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from maml_depth import _checks
from maml_depth.benchmarks.table import Table, machine_description
from maml_depth.errors import InvalidArgumentError


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
        """Layer widths ``(d, hidden, …, hidden, 1)`` of the config's network: ``depth`` layers."""
        return (self.d, *([self.hidden] * (self.depth - 1)), 1)


CONFIGS: dict[str, EngineConfig] = {
    "small": EngineConfig("small", d=16, hidden=32, depth=4, tasks=32, shots=10),
    "large": EngineConfig("large", d=64, hidden=256, depth=4, tasks=256, shots=10),
    "small-k5": EngineConfig("small-k5", d=16, hidden=32, depth=4, tasks=32, shots=10, steps=5),
    "small-mlp": EngineConfig("small-mlp", d=16, hidden=32, depth=4, tasks=32, shots=10,
                              mlp=True),
    "large-mlp": EngineConfig("large-mlp", d=64, hidden=256, depth=4, tasks=256, shots=10,
                              mlp=True),
}
PEERS: tuple[str, ...] = ("loop", "vmap", "factorized", "higher", "torchopt")

#: Targets of the factorized engine: minimum speed-ups over the loop and vmap,
#: and the maximum peak memory as a fraction of vmap's.
TARGETS: dict[str, dict[str, float]] = {
    "small": {"loop": 10.0, "vmap": 2.0},
    "large": {"loop": 5.0, "vmap": 5.0, "mem": 0.2},
}


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
    if peer in ("loop", "vmap", "factorized"):
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
    raise InvalidArgumentError(f"peer must be one of {list(PEERS)}, got {peer!r}")


def _meta_gradient(peer: str, cfg: EngineConfig) -> list[Any]:
    """The meta-gradient of a peer on a float64 CPU copy of the problem."""
    import torch

    model, fam, batch = _build(cfg, torch.float64, "cpu")
    _meta_loss_fn(peer, cfg, model, fam, batch)()
    return [p.grad.detach().clone() for p in model.parameters()]


def _matmul_gflops(cfg: EngineConfig, dev: Any, repeats: int = 30) -> float:
    """GFLOP/s of a plain float32 ``(tasks·shots × hidden) @ (hidden × hidden)`` product."""
    import torch

    a = torch.randn(cfg.tasks * cfg.shots, cfg.hidden, device=dev)
    b = torch.randn(cfg.hidden, cfg.hidden, device=dev)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return 2.0 * a.shape[0] * cfg.hidden * cfg.hidden / statistics.median(times) / 1e9


def _peak_heap_mb(run: Callable[[], Any]) -> float:
    """Peak of the C heap in use (glibc ``mallinfo2``: allocated bytes, no allocator slack)
    while ``run()`` executes, above its value just before, sampled after every torch
    operation; NaN where glibc's ``mallinfo2`` is not available."""
    import ctypes

    from torch.utils._python_dispatch import TorchDispatchMode

    try:
        libc = ctypes.CDLL("libc.so.6")
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return float("nan")

    class _Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    mallinfo2.restype = _Info

    def in_use() -> int:
        m = mallinfo2()
        return int(m.uordblks + m.hblkhd)

    class _Peak(TorchDispatchMode):
        peak = 0

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                               kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            self.peak = max(self.peak, in_use())
            return out

    base = in_use()
    with _Peak() as mode:
        run()
    return max(mode.peak - base, 0) / 2**20


def _adam(params: list[Any], lr: float = 1e-3) -> Any:
    """Adam, the fused implementation where torch has one for these tensors (one kernel for
    all parameters: ~45 µs instead of ~160 µs per step on the small config, a fixed cost in
    every peer's meta-step that would otherwise blur the ratios)."""
    import torch

    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(params, lr=lr)


def _meta_step(peer: str, cfg: EngineConfig, dev: Any
               ) -> tuple[Callable[[], None], Callable[[], Any], Any]:
    """``(one, loss_step, opt)`` for ``peer`` on a fresh float32 copy of ``cfg`` on ``dev``:
    ``loss_step()`` computes the meta-loss and its backward, ``one()`` is a whole timed
    meta-step (zero the gradients, ``loss_step``, the Adam step of ``opt``, and on CUDA
    waiting for the device)."""
    import torch

    model, fam, batch = _build(cfg, torch.float32, dev)
    opt = _adam(list(model.parameters()), lr=1e-4)
    loss_step = _meta_loss_fn(peer, cfg, model, fam, batch)

    def one() -> None:
        opt.zero_grad(set_to_none=True)
        loss_step()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    return one, loss_step, opt


def measure(peer: str, cfg: EngineConfig, device: str, repeats: int = 20, warmup: int = 3,
            threads: int = 2, min_time_s: float = 1.0, max_repeats: int = 2000
            ) -> dict[str, Any]:
    """Time meta-steps (meta-loss, backward, Adam step) of ``peer`` (in-process): at least
    ``repeats`` of them and, up to ``max_repeats``, at least ``min_time_s`` seconds of them;
    the median and the minimum step time."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(threads)
    # initialise torch's and the peer's lazy state on a tiny problem, so that the peak-memory
    # baseline below excludes it
    tiny = EngineConfig("tiny", d=2, hidden=2, depth=cfg.depth, tasks=2, shots=2,
                        steps=cfg.steps, mlp=cfg.mlp)
    _meta_gradient(peer, tiny)
    # constructing the first torch.optim.Adam imports torch._dynamo & co. (~40 MB of
    # resident modules): do it here too, so that it is not counted as the peer's memory
    w = torch.zeros(1, requires_grad=True)
    w.sum().backward()
    _adam([w]).step()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    dev = torch.device(device)
    one, step, opt = _meta_step(peer, cfg, dev)
    for _ in range(warmup):
        one()  # (on CUDA, one() waits for the device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times: list[float] = []
    start = time.perf_counter()
    # at least `repeats` steps and at least `min_time_s` of stepping: a step of 1 ms would
    # otherwise be timed over 20 ms, shorter than one burst of load from another process
    while len(times) < repeats or (time.perf_counter() - start < min_time_s
                                   and len(times) < max_repeats):
        t0 = time.perf_counter()
        one()
        times.append(time.perf_counter() - t0)
    if dev.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    # FLOPs of one meta-step (after timing and the memory reading: the counter's own
    # bookkeeping must not count), and the reference matrix-product rate
    flops = float("nan")
    try:
        with FlopCounterMode(display=False) as counter:
            opt.zero_grad(set_to_none=True)
            step()
        flops = float(counter.get_total_flops())
    except Exception:  # a peer whose operations the counter cannot follow
        pass
    mm_gflops = _matmul_gflops(cfg, dev)
    heap_mb = float("nan")
    if dev.type == "cpu":
        opt.zero_grad(set_to_none=True)
        heap_mb = _peak_heap_mb(step)
    # correctness: the peer's float64 meta-gradient against the loop reference (after
    # timing, so that it does not inflate the peak memory)
    err = 0.0
    if peer != "loop":
        ref, got = _meta_gradient("loop", cfg), _meta_gradient(peer, cfg)
        err = max(float((a - b).norm() / b.norm().clamp_min(1e-300))
                  for a, b in zip(got, ref, strict=True))
        if not err <= 1e-8:
            return {"status": f"meta-gradient differs from the loop (rel. error {err:.2e})"}
    ms = 1e3 * statistics.median(times)
    return {"status": "ok", "ms": ms, "ms_min": 1e3 * min(times), "peak_mb": peak_mb,
            "heap_mb": heap_mb, "grad_rel_err": err, "repeats": len(times),
            "gflop_per_step": flops / 1e9,
            "gflops": flops / 1e9 / (ms / 1e3), "matmul_gflops": mm_gflops}


#: fewest interleaved rounds: with fewer, no pair of order statistics covers the median
#: with 95 % confidence (``1 − 2·2^{−n} < 0.95`` for n < 6)
MIN_PAIRED_ROUNDS = 6


def check_paired_rounds(name: str, value: Any) -> int:
    """``value`` as a number of interleaved rounds (an integer ≥ :data:`MIN_PAIRED_ROUNDS`),
    or raise naming ``name``."""
    n = _checks.positive_int(name, value)
    if n < MIN_PAIRED_ROUNDS:
        raise InvalidArgumentError(
            f"{name} must be ≥ {MIN_PAIRED_ROUNDS} (fewer rounds give no 95 % interval of the "
            f"median), got {n}")
    return n


def paired(peers: list[str], cfg: EngineConfig, device: str, threads: int = 2,
           min_rounds: int = 15, min_time_s: float = 10.0, max_time_s: float = 600.0,
           block_s: float = 0.05, warmup: int = 3) -> dict[str, Any]:
    """Interleaved timing of several peers in one process, for their speed *ratios*.

    Each round times one block of every peer in turn (the order rotated each round, so
    that each peer takes every position): a block is at least one meta-step and at least
    ``block_s`` seconds of meta-steps, and gives its median step time. Rounds continue
    until there are ``min_rounds`` of them and ``min_time_s`` seconds have passed (or
    ``max_time_s``, with at least :data:`MIN_PAIRED_ROUNDS` rounds). A change of the
    machine's speed that lasts longer than a round (load from other processes on a shared
    machine) then slows every peer of that round alike, and the per-round ratio
    ``t_a / t_b`` does not see it.
    Returns each peer's block medians in ms, round by round."""
    import torch

    torch.set_num_threads(threads)
    dev = torch.device(device)
    steps: dict[str, Callable[[], None]] = {}
    for p in peers:
        steps[p] = _meta_step(p, cfg, dev)[0]
        for _ in range(warmup):
            steps[p]()
    blocks: dict[str, list[float]] = {p: [] for p in peers}
    start = time.perf_counter()
    r = 0
    while True:
        for p in peers[r % len(peers):] + peers[:r % len(peers)]:
            times: list[float] = []
            t_block = time.perf_counter()
            while not times or time.perf_counter() - t_block < block_s:
                t0 = time.perf_counter()
                steps[p]()
                times.append(time.perf_counter() - t0)
            blocks[p].append(1e3 * statistics.median(times))
        r += 1
        elapsed = time.perf_counter() - start
        if (r >= min_rounds and elapsed >= min_time_s) or (
                r >= MIN_PAIRED_ROUNDS and elapsed >= max_time_s):
            break
    return {"status": "ok", "rounds": r, "seconds": time.perf_counter() - start,
            "block_ms": blocks}


def paired_speedups(block_ms: dict[str, list[float]], ref: str, level: float = 0.95
                    ) -> dict[str, Any]:
    """How many times faster than ``ref`` each peer is, from interleaved blocks
    (:func:`paired`): the median over rounds of ``t_ref / t_peer`` with its distribution-free
    confidence interval (:func:`maml_depth.common.stats.median_interval`)."""
    from maml_depth.common.stats import median_interval

    base = block_ms[ref]
    return {p: median_interval([a / b for a, b in zip(base, ms, strict=True)], level)
            for p, ms in block_ms.items()}


def largest_fitting(fits: Callable[[int], bool], start: int, limit: int,
                    rel_precision: float = 0.05) -> int:
    """The largest ``T`` in ``[start, limit]`` with ``fits(T)``, assuming that fitting is
    monotone (if T fits, every smaller T fits): doubling from ``start`` until ``fits`` fails
    (or ``limit``), then bisection between the last fit and the first failure until they are
    within ``rel_precision`` of each other. 0 when ``start`` itself does not fit."""
    if start < 1 or limit < start:
        raise InvalidArgumentError(f"need 1 ≤ start ≤ limit, got start={start}, limit={limit}")
    lo, T = 0, start  # lo: the largest size known to fit (0: none)
    while T <= limit and fits(T):
        lo, T = T, 2 * T
    if lo == 0:
        return 0
    if T <= limit:
        hi = T  # the first size that did not fit
    elif lo == limit or fits(limit):
        return limit  # every doubling up to the limit fitted, and the limit too
    else:
        hi = limit
    while hi - lo > max(1, int(rel_precision * lo)):
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def largest_task_batch(peer: str, cfg: EngineConfig, device: str = "cuda",
                       max_tasks: int = 1 << 20, repeats: int = 10) -> dict[str, Any]:
    """GPU capacity: the largest number of tasks of ``cfg`` (to 5 %, by doubling from
    ``cfg.tasks`` and then bisection, :func:`largest_fitting`) for which a meta-step of
    ``peer`` runs without running out of memory, and its meta-steps per second (CUDA)."""
    import torch

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    oom: tuple[type[BaseException], ...] = (torch.cuda.OutOfMemoryError,) if cuda else (
        MemoryError,)
    timings: dict[int, dict[str, Any]] = {}

    def fits(T: int) -> bool:
        c = EngineConfig(**{**asdict(cfg), "tasks": T})
        model = fam = batch = step = None
        try:
            model, fam, batch = _build(c, torch.float32, dev)
            step = _meta_loss_fn(peer, c, model, fam, batch)
            step()
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(repeats):
                model.zero_grad(set_to_none=True)
                step()
            if cuda:
                torch.cuda.synchronize()
            timings[T] = {"steps_per_s": repeats / (time.perf_counter() - t0),
                          "peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda
                          else float("nan")}
            return True
        except oom:
            return False
        finally:
            del model, fam, batch, step
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()

    T = largest_fitting(fits, cfg.tasks, max_tasks)
    return {"tasks": T, **timings.get(T, {"steps_per_s": float("nan"),
                                          "peak_mb": float("nan")})}


def _in_subprocess(args: list[str], timeout: float) -> dict[str, Any]:
    """Run this module with ``args`` in a fresh process (2 threads); its last JSON line."""
    cmd = [sys.executable, "-m", "maml_depth.benchmarks.engine", *args]
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


def _measure_in_subprocess(peer: str, cfg: EngineConfig, device: str, repeats: int,
                           timeout: float, capacity: bool = False) -> dict[str, Any]:
    return _in_subprocess(["--peer", peer, "--config", json.dumps(asdict(cfg)), "--device",
                           device, "--repeats", str(repeats)]
                          + (["--capacity"] if capacity else []), timeout)


def _paired_in_subprocess(peers: list[str], cfg: EngineConfig, device: str, timeout: float,
                          min_rounds: int, min_time_s: float) -> dict[str, Any]:
    return _in_subprocess(["--paired", ",".join(peers), "--config", json.dumps(asdict(cfg)),
                           "--device", device, "--min-rounds", str(min_rounds),
                           "--min-time", str(min_time_s),
                           "--max-time", str(max(600.0, min_time_s))], timeout)


def _ratio(num: Any, den: Any) -> float:
    try:
        return float(num) / float(den)
    except (TypeError, ValueError, ZeroDivisionError):
        return float("nan")


def _target_note(name: str, res: dict[str, dict[str, Any]],
                 speed: dict[str, dict[str, Any]] | None = None) -> str | None:
    """Whether the factorized engine met its issue-10 targets on this config.

    ``speed[ref][peer]``: the interleaved speed-up of ``peer`` over ``ref`` with its
    confidence interval (:func:`paired_speedups`); a target is then ``met`` when the whole
    interval lies above it, ``MISSED`` when it lies wholly below, else ``inconclusive``.
    Without it (the interleaved run failed) the ratio of the separate medians is used."""
    from maml_depth.common.stats import LEVEL, verdict_above

    tg = TARGETS.get(name)
    f = res.get("factorized", {})
    if tg is None or f.get("status") != "ok":
        return None
    parts = []
    words = {"pass": "met", "fail": "MISSED", "inconclusive": "inconclusive"}
    for peer in ("loop", "vmap"):
        if peer not in tg or res.get(peer, {}).get("status") != "ok":
            continue
        iv = (speed or {}).get(peer, {}).get("factorized")
        if iv is not None:
            # an interval below the stated level (too few rounds) decides nothing
            verdict = verdict_above(iv, tg[peer]) if iv.level >= LEVEL else "inconclusive"
            parts.append(f"≥ {tg[peer]:g}× {peer}: {iv.estimate:.2f}× [{iv.low:.2f}, "
                         f"{iv.high:.2f}] ({100 * iv.level:.4g} % CI, n = {iv.n}; "
                         f"{words[verdict]})")
        else:
            got = _ratio(res[peer]["ms"], f["ms"])
            parts.append(f"≥ {tg[peer]:g}× {peer}: {got:.2f}× "
                         f"({'met' if got >= tg[peer] else 'MISSED'})")
    if "mem" in tg and res.get("vmap", {}).get("status") == "ok":
        for key, what in (("peak_mb", "peak memory (RSS growth)"), ("heap_mb", "peak heap")):
            frac = _ratio(f.get(key), res["vmap"].get(key))
            if not math.isnan(frac):  # no reading (e.g. no heap reading off glibc)
                parts.append(f"{what} ≤ {tg['mem']:g} × vmap's: {frac:.3f} × "
                             f"({'met' if frac <= tg['mem'] else 'MISSED'})")
    return "targets of the factorized engine: " + "; ".join(parts)


def _speedup(speed: dict[str, dict[str, Any]], res: dict[str, dict[str, Any]], ref: str,
             peer: str) -> float:
    """How many times faster than ``ref`` ``peer`` is: the interleaved estimate where there
    is one, else the ratio of the separate medians (NaN where either did not run)."""
    iv = speed.get(ref, {}).get(peer)
    if iv is not None:
        return float(iv.estimate)
    a, b = res.get(ref, {}), res.get(peer, {})
    if a.get("status") != "ok" or b.get("status") != "ok":
        return float("nan")
    return _ratio(a.get("ms"), b.get("ms"))


def _faster(a: dict[str, Any] | None, b: dict[str, Any]) -> dict[str, Any]:
    """Of two measurements of one peer, the one with the lower median (a successful one
    over a failed one)."""
    if a is None:
        return b
    if b.get("status") != "ok":
        return a
    if a.get("status") != "ok" or b["ms"] < a["ms"]:
        return b
    return a


def run(configs: list[str] | None = None, peers: list[str] | None = None, device: str = "cpu",
        repeats: int = 20, timeout: float = 900.0, progress: bool = True,
        rounds: int = 1, paired_rounds: int = 15, paired_s: float = 10.0) -> list[Table]:
    """Measure every peer on every config; one table per config, speed ratios against the
    loop and vmap, memory against vmap, FLOP rate against a plain matrix product.

    Two phases per config:

    1. each peer alone in its own subprocess (``rounds`` times, the round with the lowest
       median kept): its step time, peak memory, FLOP rate and float64 gradient check
       (:func:`measure`);
    2. the peers that ran, interleaved in one subprocess (:func:`paired`, at least
       ``paired_rounds`` rounds and ``paired_s`` seconds): the speed ratios, each the
       median over rounds with its 95 % confidence interval (:func:`paired_speedups`). On a
       shared machine whose speed drifts with other processes' load, ratios taken this way
       do not depend on which peer's subprocess met the load.
    """
    from tqdm.auto import tqdm

    from maml_depth.common.stats import Interval

    rounds = _checks.positive_int("rounds", rounds)
    paired_rounds = check_paired_rounds("paired_rounds", paired_rounds)
    paired_s = _checks.finite_float("paired_s", paired_s, nonneg=True)
    cfgs = [CONFIGS[c] for c in (configs or list(CONFIGS))]
    peers = list(peers or PEERS)
    tables = []
    results: dict[tuple[str, str], dict[str, Any]] = {}
    speed: dict[str, dict[str, dict[str, Interval]]] = {}
    pairing: dict[str, dict[str, Any]] = {}
    load: dict[str, tuple[float, float]] = {}
    bar = tqdm(total=len(cfgs) * (rounds * len(peers) + 1), desc="bench", disable=not progress)

    def loadavg(name: str, before: float) -> None:
        lo, hi = load.get(name, (before, before))
        load[name] = (min(lo, before), max(hi, before, os.getloadavg()[0]))

    for c in cfgs:
        for _ in range(rounds):
            for p in peers:
                before = os.getloadavg()[0]
                results[(c.name, p)] = _faster(
                    results.get((c.name, p)), _measure_in_subprocess(p, c, device, repeats,
                                                                     timeout))
                loadavg(c.name, before)
                bar.update()
        ran = [p for p in peers if results[(c.name, p)].get("status") == "ok"]
        # the ratios are against the loop and vmap: nothing to interleave without either
        if len(ran) >= 2 and {"loop", "vmap"} & set(ran):
            before = os.getloadavg()[0]
            pairing[c.name] = pr = _paired_in_subprocess(ran, c, device, timeout, paired_rounds,
                                                         paired_s)
            loadavg(c.name, before)
            if pr.get("status") == "ok":
                speed[c.name] = {ref: paired_speedups(pr["block_ms"], ref)
                                 for ref in ("loop", "vmap") if ref in ran}
        bar.update()
    bar.close()
    for c in cfgs:
        res = {p: results[(c.name, p)] for p in peers}
        sp = speed.get(c.name, {})
        t = Table(
            f"Second-order MAML meta-step, {c.name}: dims {'-'.join(map(str, c.dims))}, "
            f"{c.tasks} tasks × {c.shots} shots, {c.steps} inner step(s), "
            f"{'ReLU MLP' if c.mlp else 'deep linear'}, float32, {device}",
            ["peer", "ms/step (median)", "ms/step (min)", "steps/s", "× faster than loop",
             "× faster than vmap", "× vmap, CI",
             "peak mem (MB)", "mem / vmap's", "peak heap (MB)", "heap / vmap's", "GFLOP/step",
             "GFLOP/s", "% of matmul rate",
             "grad rel. err (float64)", "status"])
        vmap = res.get("vmap", {}) if res.get("vmap", {}).get("status") == "ok" else {}
        mm_rates = [float(r["matmul_gflops"]) for r in res.values()
                    if r.get("status") == "ok" and r.get("matmul_gflops") is not None]
        mm_rate = statistics.median(mm_rates) if mm_rates else float("nan")

        for p in peers:
            r = res[p]
            ok = r.get("status") == "ok"
            ms = r.get("ms", float("nan")) if ok else float("nan")
            gf = r.get("gflops", float("nan")) if ok else float("nan")
            ms_min = r.get("ms_min", float("nan")) if ok else float("nan")
            iv = sp.get("vmap", {}).get(p)
            t.add(p, ms, ms_min, _ratio(1e3, ms), _speedup(sp, res, "loop", p),
                  _speedup(sp, res, "vmap", p),
                  f"[{iv.low:.3g}, {iv.high:.3g}]" if iv is not None else "n/a",
                  r.get("peak_mb", float("nan")), _ratio(r.get("peak_mb"), vmap.get("peak_mb")),
                  r.get("heap_mb", float("nan")), _ratio(r.get("heap_mb"), vmap.get("heap_mb")),
                  r.get("gflop_per_step", float("nan")), gf,
                  100 * _ratio(gf, mm_rate),
                  r.get("grad_rel_err", float("nan")), r.get("status", "?"))
        note = _target_note(c.name, res, sp)
        if note:
            t.notes.append(note)
        done = pairing.get(c.name)
        if done is not None and done.get("status") == "ok":
            n = int(done["rounds"])
            levels = {iv.level for by_ref in sp.values() for iv in by_ref.values()}
            level = f"{100 * min(levels):.4g} %" if levels else "no"
            t.notes.append(
                f"'× faster than X' and the CI: interleaved timing of the peers that ran, in "
                f"one process ({n} rounds, {done['seconds']:.0f} s; each round one block of "
                f"≥ 1 step and ≥ 50 ms per peer, order rotated); the median over rounds of "
                f"X's block median / this peer's, and its distribution-free {level} interval "
                f"(order statistics, n = {n}); a target is met when the whole interval "
                f"lies above it")
        else:
            why = ("fewer than two peers ran, or neither the loop nor vmap" if done is None
                   else done.get("status", "?"))
            t.notes.append(f"no interleaved timing ({why}): '× faster than X' is the ratio "
                           f"of the separate medians")
        if mm_rates:
            t.notes.append(
                f"plain float32 matmul ({c.tasks * c.shots}×{c.hidden}) @ ({c.hidden}×"
                f"{c.hidden}) on this machine: {mm_rate:.1f} GFLOP/s (median over the "
                f"peers' processes; the '% of matmul rate' column divides by it); FLOPs "
                f"counted by torch.utils.flop_counter (matrix products only)")
        t.notes.append(f"machine: {machine_description()}")
        lo, hi = load.get(c.name, (float("nan"), float("nan")))
        counts = [int(r["repeats"]) for r in res.values() if r.get("status") == "ok"]
        span = f"{min(counts)}–{max(counts)}" if counts else "no"
        t.notes.append(f"ms/step, memory, FLOPs: each peer alone in its own process, median "
                       f"over ≥ {repeats} steps and ≥ 1 s of steps ({span} steps per "
                       f"peer) after 3 warm-up steps, 2 threads, the "
                       f"fastest of {rounds} round(s) per peer (Adam fused where available); "
                       "1-minute load average of the machine while this table ran: "
                       f"{lo:.1f}–{hi:.1f} (on {os.cpu_count()} logical CPUs)")
        tables.append(t)
    if device.startswith("cuda"):
        tables.append(_capacity_table([p for p in ("factorized", "vmap") if p in peers],
                                      device, timeout))
    return tables


def _capacity_table(peers: list[str], device: str, timeout: float) -> Table:
    """Largest task batch of the large config that fits on the GPU, per engine."""
    cfg = CONFIGS["large"]
    t = Table(f"GPU capacity, large config (dims {'-'.join(map(str, cfg.dims))}, "
              f"{cfg.shots} shots, second order, float32): the most tasks that fit (to 5 %: "
              f"doubled from {cfg.tasks} until out of memory, then bisected)",
              ["peer", "largest task batch", "meta-steps/s", "peak mem (MB)", "status"])
    for p in peers:
        r = _measure_in_subprocess(p, cfg, device, 20, timeout, capacity=True)
        t.add(p, r.get("tasks", 0), r.get("steps_per_s", float("nan")),
              r.get("peak_mb", float("nan")), r.get("status", "ok"))
    t.notes.append(f"machine: {machine_description()}")
    return t


def _main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser()
    who = ap.add_mutually_exclusive_group(required=True)
    who.add_argument("--peer", help="measure one peer (time, memory, FLOPs, gradient check)")
    who.add_argument("--paired", help="comma-separated peers, timed interleaved (ratios)")
    ap.add_argument("--config", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--capacity", action="store_true")
    ap.add_argument("--min-rounds", type=int, default=15)
    ap.add_argument("--min-time", type=float, default=10.0)
    ap.add_argument("--max-time", type=float, default=600.0)
    a = ap.parse_args(argv)
    cfg = EngineConfig(**json.loads(a.config))
    if a.paired:
        print(json.dumps(paired(a.paired.split(","), cfg, a.device, min_rounds=a.min_rounds,
                                min_time_s=a.min_time, max_time_s=a.max_time)))
    elif a.capacity:
        print(json.dumps(largest_task_batch(a.peer, cfg, a.device)))
    else:
        print(json.dumps(measure(a.peer, cfg, a.device, a.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
