"""Executors: where runs execute. All call the same ``runner.execute_run``, so results are identical.

Every executor follows :class:`Executor`: ``map(specs, runs_dir, on_event)`` yields one
:class:`RunResult` per spec as runs finish, and ``close()`` releases its resources.

- ``LocalExecutor``: in this process, one run after another; forwards per-epoch events.
- ``PoolExecutor``: ``execution.workers > 1`` local processes side by side; their epoch events are
  forwarded through a queue, and they die with the study process (kill -9 included).
- ``DaskExecutor``: sends each run to an existing Dask cluster (``--scheduler tcp://host:8786``), or to
  SLURM jobs it starts (``--cluster slurm``, :mod:`robustseg.pipeline.slurm`). Workers need the package
  installed and the runs folder and data on a shared file system.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from robustseg._extras import require
from robustseg._warnings import logged
from robustseg.errors import InputError
from robustseg.pipeline import workerenv
from robustseg.pipeline.artifacts import RunResult, RunStatus
from robustseg.pipeline.events import Event, OnEvent, ignore
from robustseg.pipeline.plan import RunSpec
from robustseg.pipeline.runner import execute_run


class Executor(Protocol):
    def map(self, specs: Sequence[RunSpec], runs_dir: Path, on_event: OnEvent | None = None) -> Iterator[RunResult]:
        ...

    def close(self) -> None:
        ...


def _lost(run_id: str, exc: BaseException, what: str) -> RunResult:
    return RunResult(run_id, RunStatus.FAILED, error=f"{what} lost: {type(exc).__name__}: {exc}")


class LocalExecutor:
    """Runs in-process, sequentially; per-epoch events reach ``on_event``."""

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads

    def map(self, specs: Sequence[RunSpec], runs_dir: Path, on_event: OnEvent | None = None) -> Iterator[RunResult]:
        if any(workerenv.malloc_helps(_size(s)) for s in specs):
            workerenv.tune_malloc_in_process()
        with workerenv.compile_cache(runs_dir):  # torch.compile's caches in the runs folder
            for spec in specs:
                yield execute_run(spec, runs_dir, threads=self.threads, on_event=on_event)

    def close(self) -> None:
        pass


PR_SET_PDEATHSIG = 1
WATCHDOG_POLL_S = 0.5


def _die_with_parent(parent_pid: int) -> None:
    """Make this worker process die when ``parent_pid`` does (kill -9 of the study included).

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, so the kernel kills the worker when its parent exits.
    Everywhere (and as a fallback): a daemon thread polls ``os.getppid()`` and kills the worker once it
    has been re-parented. A worker that outlived its study would otherwise hold run locks and memory.
    """
    import signal
    import sys
    import threading

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watchdog below still applies
            pass
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os.kill(os.getpid(), signal.SIGKILL)

    def watch() -> None:
        while True:
            time.sleep(WATCHDOG_POLL_S)
            if os.getppid() != parent_pid:
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="robustseg-parent-watchdog", daemon=True).start()


_EVENTS: Any = None
"""In a pool worker: the queue that carries progress events back to the study process."""


def _worker_init(parent_pid: int, events: Any) -> None:
    global _EVENTS
    _die_with_parent(parent_pid)
    events.cancel_join_thread()  # a worker never hangs at exit on undelivered progress events
    _EVENTS = events


def _forward(event: Event) -> None:
    if _EVENTS is not None:
        try:
            _EVENTS.put(event)
        except Exception:  # progress is best effort: a closed queue must not fail the run
            pass


def _pool_run(spec: RunSpec, runs_dir: Path, threads: int) -> RunResult:
    with logged(runs_dir, f"run {spec.run_id}"):  # a worker's stderr is the user's terminal: log instead
        return execute_run(spec, runs_dir, threads=threads, on_event=_forward)


def _remote_run(spec: RunSpec, runs_dir: Path, threads: int) -> RunResult:
    """A run on a Dask worker, its Python warnings logged to the study's run folder."""
    with logged(runs_dir, f"run {spec.run_id}"):
        return execute_run(spec, runs_dir, threads=threads)


class PoolExecutor:
    """Runs ``workers`` runs at a time in separate local processes (spawned), each with ``threads`` threads.

    On small CPUs several single-threaded runs side by side beat one run using every core (no OpenMP
    spin-waiting between tiny kernels). Results equal those of ``LocalExecutor`` with the same threads.
    Workers die with the study process (see :func:`_die_with_parent`) and send their progress events
    (epochs, waiting for a locked run) back through a queue.
    """

    def __init__(self, workers: int, threads: int = 1) -> None:
        self.workers = workers
        self.threads = threads or 1

    def map(self, specs: Sequence[RunSpec], runs_dir: Path, on_event: OnEvent | None = None) -> Iterator[RunResult]:
        import multiprocessing
        import queue
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        on_event = on_event or ignore
        ctx = multiprocessing.get_context("spawn")
        events = ctx.Queue()
        # Worker environment (malloc settings, compile cache) is read when a worker starts: set it while
        # the pool spawns its workers (on the first submits), then restore this process's environment.
        size = max((_size(s) or 0 for s in specs), default=0) or None

        def drain() -> None:
            while True:
                try:
                    event = events.get_nowait()
                except queue.Empty:
                    return
                except Exception:  # a worker killed mid-message: progress is best effort, results are not
                    return
                on_event(event)

        try:
            with ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=_worker_init,
                                     initargs=(os.getpid(), events)) as pool:
                with workerenv.worker_environment(runs_dir, size):
                    futures = {pool.submit(_pool_run, spec, Path(runs_dir), self.threads): spec for spec in specs}
                pending = set(futures)
                try:
                    while pending:
                        done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                        drain()
                        for future in done:
                            try:
                                result = future.result()
                            except Exception as exc:  # the worker died (killed, out of memory): record, go on
                                result = _lost(futures[future].run_id, exc, "worker process")
                            yield result
                    drain()
                except BaseException:  # SIGTERM, Ctrl-C, the caller gave up: stop the workers now, not after
                    _stop(pool)        # their runs (a finished run's files are complete; others are re-run)
                    raise
        finally:
            events.close()
            events.join_thread()

    def close(self) -> None:
        pass


def _stop(pool: Any) -> None:
    """Kill the worker processes of a ``ProcessPoolExecutor`` and shut it down without waiting for their runs."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            process.kill()
        except Exception:  # already gone
            pass
    pool.shutdown(wait=False, cancel_futures=True)


class DaskExecutor:
    """Submits every run to a Dask distributed scheduler and yields results as they complete.

    ``address``: a running scheduler (``--scheduler``). ``cluster``: a cluster this executor owns and closes
    (:class:`robustseg.pipeline.slurm.SlurmExecutor` starts dask-jobqueue's ``SLURMCluster`` into it).
    """

    cluster: Any = None

    def __init__(self, address: str, threads: int = 0) -> None:
        Client = require("distributed", "a Dask scheduler (--scheduler, execution.executor = 'dask')").Client
        try:
            self.client = Client(address, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise InputError(f"--scheduler {address}: cannot connect to a Dask scheduler ({exc})") from None
        self.threads = threads

    def map(self, specs: Sequence[RunSpec], runs_dir: Path, on_event: OnEvent | None = None) -> Iterator[RunResult]:
        from distributed import as_completed

        runs_dir = Path(runs_dir).resolve()
        futures = [
            self.client.submit(_remote_run, spec, runs_dir, self.threads, key=f"robustseg-{spec.run_id}", pure=False)
            for spec in specs
        ]
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as exc:  # the worker died (killed, out of memory): record, go on
                yield _lost(future.key.removeprefix("robustseg-"), exc, "worker")

    def close(self) -> None:
        """Close the client, and the cluster it owns (its jobs end); idempotent."""
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None


def _size(spec: RunSpec) -> int | None:
    """Input size (px) of a run, where the spec records it."""
    size = spec.payload.get("data", {}).get("size") if isinstance(spec.payload, dict) else None
    return int(size) if isinstance(size, int | float) else None
