"""Where the points of a grid run: any ``concurrent.futures``-style executor, or Dask
distributed — the one way the package runs grids (sweeps, the nonlinear experiment, the
full-budget claims).

A grid's *task* is a picklable top-level function ``task(params) -> result`` (a JSON-able
dict) that raises when the point fails. The pools run :func:`run_task` ``(task, params,
threads)`` on a worker, which never raises for a failing point: it returns the outcome
``{"status", "error", "result", "timing"}``. The driver (:mod:`maml_depth.common.grid`)
only submits and collects; queueing, placement and retries on other workers belong to the
executor (no home-made scheduler). Backends:

- ``"local"`` (default): a :class:`concurrent.futures.ProcessPoolExecutor` (``spawn``
  start method; workers ignore SIGINT and run torch with one thread). A killed worker
  breaks the pool: the pool is rebuilt and the points that were in flight resubmitted.
- ``"dask"``: a :class:`distributed.Client` on a new :class:`distributed.LocalCluster`
  (one thread per worker process), or on an existing scheduler (``scheduler="tcp://…"``;
  its workers need ``maml-depth`` installed). Work goes through ``client.submit`` and
  :class:`distributed.as_completed`; Dask itself reruns the tasks of a killed worker.
- ``"serial"``: in the driver's process, one point at a time (debugging, tests).
- any :class:`concurrent.futures.Executor` instance you pass (not shut down by the sweep).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import datetime as _dt
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from maml_depth.errors import ConfigError

EXECUTORS = ("local", "dask", "serial")

#: a grid's task: the point's parameters -> its result (raises when the point fails)
Task = Callable[[Mapping[str, Any]], dict[str, Any]]


def one_line(exc: BaseException) -> str:
    """``"<ExceptionType>: <first line of the message>"``."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Limit torch to ``threads`` intra-op threads inside the block (``None`` or 0: leave it
    as it is), restoring the previous number afterwards; also a decorator
    (``@torch_threads(1)``), limiting each call."""
    import torch

    prev = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        if threads:
            torch.set_num_threads(prev)


def run_task(task: Task, params: Mapping[str, Any], threads: int | None = 1
             ) -> dict[str, Any]:
    """Run ``task(params)`` with torch limited to ``threads`` threads; returns
    ``{"status": "ok"|"failed", "error", "result", "timing"}`` (never raises for a failing
    point; ``KeyboardInterrupt`` still propagates)."""

    t0 = time.perf_counter()
    with torch_threads(threads):
        try:
            result: dict[str, Any] | None = task(params)
            status, error = "ok", None
        except Exception as exc:
            result, status, error = None, "failed", one_line(exc)
    return {
        "status": status,
        "error": error,
        "result": result,
        "timing": {
            "seconds": time.perf_counter() - t0,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
    }


def _exit_with_parent(parent: int, every: float = 1.0) -> None:
    while True:
        time.sleep(every)
        if os.getppid() != parent:  # the driver died (even by SIGKILL): don't linger
            os._exit(1)


def init_worker(threads: int = 1) -> None:
    """Process-pool initializer: one torch thread, Ctrl-C left to the driver, and exit
    when the driver dies."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True,
                     name="maml-depth-parent-watch").start()
    import torch

    torch.set_num_threads(threads)


class Pool:
    """The driver's view of an executor: submit points, take them as they complete. Every
    point runs :func:`run_task` ``(self.task, params, self.threads)``."""

    name = "pool"
    task: Task
    threads: int = 1

    def submit(self, params: dict[str, Any], tag: str) -> Any:
        """Submit one point (its ``params``; ``tag`` names it) and return its future."""
        raise NotImplementedError

    def next_done(self) -> Any:
        """Block until a submitted future completes; return it."""
        raise NotImplementedError

    def outcome(self, fut: Any) -> tuple[bool, Any]:
        """``(True, runner outcome)`` or ``(False, exception)`` when the point was lost
        (its worker died, the pool broke, the task was cancelled)."""
        raise NotImplementedError

    def recover(self, fut: Any, exc: BaseException) -> None:
        """Called after ``fut`` was lost with ``exc``, before resubmitting its point."""

    def capacity(self) -> int:
        """How many points to keep submitted at once."""
        return 2

    def close(self, *, cancel: bool = False) -> None:
        """Release the executor; ``cancel`` drops queued work and stops running work."""

    def describe(self) -> str:
        """A one-line description of the executor, for the run's log and summary."""
        return self.name


class FuturesPool(Pool):
    """Any :class:`concurrent.futures.Executor`; ``factory`` rebuilds it when it breaks."""

    def __init__(self, executor: cf.Executor, task: Task, *, workers: int,
                 name: str = "executor", factory: Callable[[], cf.Executor] | None = None,
                 threads: int = 1) -> None:
        self.task = task
        self.executor = executor
        self.workers = max(1, workers)
        self.name = name
        self.factory = factory
        self.threads = threads
        self._pending: set[cf.Future[Any]] = set()
        self._ready: deque[cf.Future[Any]] = deque()
        self._origin: dict[cf.Future[Any], cf.Executor] = {}

    def submit(self, params: dict[str, Any], tag: str) -> cf.Future[Any]:
        """Submit one point to the process pool and return its future."""
        fut = self.executor.submit(run_task, self.task, params, self.threads)
        self._pending.add(fut)
        self._origin[fut] = self.executor
        return fut

    def next_done(self) -> cf.Future[Any]:
        """The next completed future, in completion order (blocks until one is done)."""
        while not self._ready:
            if not self._pending:
                raise RuntimeError("next_done() with nothing submitted")
            done, _ = cf.wait(self._pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
            for f in done:
                self._pending.discard(f)
                self._ready.append(f)
        return self._ready.popleft()

    def outcome(self, fut: cf.Future[Any]) -> tuple[bool, Any]:
        """``(True, result)`` of a completed point, or ``(False, exception)`` when the pool
        failed (a broken or cancelled worker; errors of the point itself are in its result)."""
        try:
            out = fut.result()
        except (cf.CancelledError, cf.BrokenExecutor) as exc:
            return False, exc
        except Exception as exc:  # run_task catches point errors: this is infrastructure
            self._origin.pop(fut, None)
            return False, exc
        self._origin.pop(fut, None)
        return True, out

    def recover(self, fut: Any, exc: BaseException) -> None:
        """Rebuild the process pool when ``exc`` says that the pool ``fut`` ran on broke (a
        worker died)."""
        if self.factory is None or not isinstance(exc, cf.BrokenExecutor):
            return
        if self._origin.pop(fut, None) is self.executor:  # the current pool broke: rebuild
            self._kill()
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = self.factory()

    def capacity(self) -> int:
        """How many points may be in flight at once: twice the number of workers."""
        return 2 * self.workers

    def _kill(self) -> None:
        procs = getattr(self.executor, "_processes", None) or {}
        for p in list(procs.values()):
            try:
                p.terminate()
            except (OSError, AttributeError, ValueError):  # pragma: no cover
                pass

    def close(self, *, cancel: bool = False) -> None:
        """Shut the pool down (waiting for running points, or cancelling them with ``cancel``);
        a pool passed in by the caller is left running."""
        if self.factory is None:  # a caller's executor: not ours to shut down
            if cancel:
                for f in self._pending:
                    f.cancel()
            return
        if cancel:
            self._kill()
        self.executor.shutdown(wait=not cancel, cancel_futures=cancel)

    def describe(self) -> str:
        """``"<name> (<n> workers)"``."""
        return f"{self.name} ({self.workers} worker{'s' * (self.workers != 1)})"


class SerialPool(Pool):
    """Runs each point at submission, in this process."""

    name = "serial"

    def __init__(self, task: Task, threads: int = 1) -> None:
        self.task = task
        self.threads = threads
        self._ready: deque[cf.Future[Any]] = deque()

    def submit(self, params: dict[str, Any], tag: str) -> cf.Future[Any]:
        """Run the point now, in this process, and return its completed future."""
        fut: cf.Future[Any] = cf.Future()
        fut.set_result(run_task(self.task, params, self.threads))
        self._ready.append(fut)
        return fut

    def next_done(self) -> cf.Future[Any]:
        """The next completed future (points complete in submission order)."""
        return self._ready.popleft()

    def outcome(self, fut: cf.Future[Any]) -> tuple[bool, Any]:
        """``(True, result)``: a serial point's own errors are in its result."""
        return True, fut.result()

    def capacity(self) -> int:
        """One point in flight at a time."""
        return 1


class DaskPool(Pool):
    """A :class:`distributed.Client`. ``owned``: the client (and ``cluster``) were made for
    this sweep and are closed with it; a caller's client is left open."""

    name = "dask"

    def __init__(self, client: Any, task: Task, cluster: Any = None, *, threads: int = 1,
                 owned: bool = True) -> None:
        from distributed import as_completed

        self.task = task
        self.client = client
        self.cluster = cluster
        self.owned = owned
        self.threads = threads
        self._ac = as_completed()
        self._futures: list[Any] = []

    def submit(self, params: dict[str, Any], tag: str) -> Any:
        """Submit one point to the Dask cluster (``tag`` is its task key) and return its future."""
        fut = self.client.submit(run_task, self.task, params, self.threads, key=tag,
                                 pure=False)
        self._futures.append(fut)
        self._ac.add(fut)
        return fut

    def next_done(self) -> Any:
        """The next completed Dask future, in completion order."""
        fut = next(self._ac)
        self._futures = [f for f in self._futures if f is not fut]
        return fut

    def outcome(self, fut: Any) -> tuple[bool, Any]:
        """``(True, result)``, or ``(False, exception)`` when the cluster lost the point (a
        killed worker, a cancelled future, a worker without the package)."""
        try:
            return True, fut.result()
        except Exception as exc:  # KilledWorker, CancelledError, a worker without the package
            return False, exc

    def capacity(self) -> int:
        """How many points may be in flight: twice the cluster's threads (at least 2)."""
        try:
            n = sum(self.client.nthreads().values())
        except Exception:  # pragma: no cover - scheduler gone: keep going slowly
            n = 1
        return max(2, 2 * n)

    def close(self, *, cancel: bool = False) -> None:
        """Cancel outstanding points with ``cancel``; close the client and cluster when this
        pool created them."""
        if cancel and self._futures:
            try:
                self.client.cancel(self._futures)
            except Exception:  # pragma: no cover
                pass
        if not self.owned:
            return
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def describe(self) -> str:
        """``"dask (<where>, <n> workers)"``: a LocalCluster or the scheduler's address."""
        where = "LocalCluster" if self.cluster is not None else str(self.client.scheduler.address)
        try:
            n = len(self.client.scheduler_info().get("workers", {}))
        except Exception:  # pragma: no cover
            n = 0
        return f"dask ({where}, {n} worker{'s' * (n != 1)})"


def check_options(executor: Any, *, scheduler: str | None = None,
                  workers: int | None = None) -> None:
    """Reject bad executor options up front (:class:`ConfigError` naming the option)."""
    if isinstance(executor, str):
        if executor not in EXECUTORS:
            raise ConfigError(f"--executor must be one of {list(EXECUTORS)}, got {executor!r}")
        if scheduler is not None and executor != "dask":
            raise ConfigError("--scheduler needs --executor dask")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ConfigError(f"--workers must be a positive integer, got {workers!r}")


def make_pool(task: Task, executor: str | cf.Executor | Any = "local", *,
              workers: int | None = None, scheduler: str | None = None,
              threads: int = 1) -> Pool:
    """The :class:`Pool` running ``task`` on ``executor``: ``"local"``, ``"dask"``,
    ``"serial"``, a :class:`concurrent.futures.Executor`, or a :class:`distributed.Client`."""
    if isinstance(executor, cf.Executor):
        n = int(getattr(executor, "_max_workers", workers or 1) or 1)
        return FuturesPool(executor, task, workers=n, name=type(executor).__name__,
                           threads=threads)
    if not isinstance(executor, str):
        from distributed import Client

        if isinstance(executor, Client):
            return DaskPool(executor, task, threads=threads, owned=False)
        raise ConfigError(
            f"--executor must be one of {list(EXECUTORS)}, a concurrent.futures.Executor or "
            f"a distributed.Client, got {executor!r}")
    check_options(executor, scheduler=scheduler, workers=workers)
    n = workers or (os.cpu_count() or 1)
    if executor == "serial":
        return SerialPool(task, threads)
    if executor == "local":
        ctx = multiprocessing.get_context("spawn")

        def factory() -> cf.Executor:
            return cf.ProcessPoolExecutor(max_workers=n, mp_context=ctx,
                                          initializer=init_worker, initargs=(threads,))

        return FuturesPool(factory(), task, workers=n, name="local process pool",
                           factory=factory, threads=threads)
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"--scheduler: cannot connect to {scheduler!r} ({exc})") from None
        return DaskPool(client, task, threads=threads)
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.ERROR)
    return DaskPool(Client(cluster), task, cluster, threads=threads)
