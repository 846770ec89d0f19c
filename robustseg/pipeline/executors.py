"""Executors: where runs execute. Both call the same ``runner.execute_run``, so results are identical.

- ``LocalExecutor``: in this process, one run after another, with rich progress over runs and epochs.
- ``PoolExecutor``: ``execution.workers > 1`` local processes side by side (progress over runs).
- ``DaskExecutor``: sends each run to an existing Dask cluster (``--scheduler tcp://host:8786``; for
  example one started by dask-jobqueue on Slurm). Workers need the package installed and the runs
  folder and data on a shared file system.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from robustseg.errors import InputError
from robustseg.pipeline import workerenv
from robustseg.pipeline.plan import RunSpec
from robustseg.pipeline.runner import execute_run

Progress = Callable[[RunSpec, dict[str, Any]], None]


class LocalExecutor:
    """Runs in-process, sequentially. ``on_epoch(spec, epoch, max_epochs, metrics)`` drives progress bars."""

    def __init__(self, threads: int = 0, on_epoch: Callable[..., None] | None = None) -> None:
        self.threads = threads
        self.on_epoch = on_epoch

    def map(self, specs: Sequence[RunSpec], runs_dir: Path) -> Iterator[dict[str, Any]]:
        if any(workerenv.malloc_helps(_size(s)) for s in specs):
            workerenv.tune_malloc_in_process()
        with workerenv.compile_cache(runs_dir):  # torch.compile's caches in the runs folder
            for spec in specs:
                callback = None
                if self.on_epoch is not None:
                    def callback(epoch: int, max_epochs: int, metrics: dict[str, float], _s: RunSpec = spec) -> None:
                        self.on_epoch(_s, epoch, max_epochs, metrics)
                yield execute_run(spec, runs_dir, threads=self.threads, progress=callback)


class PoolExecutor:
    """Runs ``workers`` runs at a time in separate local processes (spawned), each with ``threads`` threads.

    On small CPUs several single-threaded runs side by side beat one run using every core (no OpenMP
    spin-waiting between tiny kernels). Results equal those of ``LocalExecutor`` with the same threads.
    """

    def __init__(self, workers: int, threads: int = 1) -> None:
        self.workers = workers
        self.threads = threads or 1

    def map(self, specs: Sequence[RunSpec], runs_dir: Path) -> Iterator[dict[str, Any]]:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = multiprocessing.get_context("spawn")
        # Worker environment (malloc settings, compile cache) is read when a worker starts: set it while
        # the pool spawns its workers (on the first submits), then restore this process's environment.
        size = max((_size(s) or 0 for s in specs), default=0) or None
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx) as pool:
            with workerenv.worker_environment(runs_dir, size):
                futures = {pool.submit(execute_run, spec, Path(runs_dir), threads=self.threads): spec
                           for spec in specs}
            for future in as_completed(futures):
                try:
                    yield future.result()
                except Exception as exc:  # the worker process died (killed, out of memory): record, go on
                    yield {"run_id": futures[future].run_id, "status": "failed",
                           "error": f"worker process lost: {type(exc).__name__}: {exc}"}


class DaskExecutor:
    """Submits every run to a Dask distributed scheduler and yields results as they complete."""

    def __init__(self, address: str, threads: int = 0) -> None:
        try:
            from distributed import Client
        except ImportError as exc:  # pragma: no cover - dask is a dependency
            raise InputError("--scheduler needs the 'distributed' package (pip install 'dask[distributed]')") from exc
        try:
            self.client = Client(address, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise InputError(f"--scheduler {address}: cannot connect to a Dask scheduler ({exc})") from None
        self.threads = threads

    def map(self, specs: Sequence[RunSpec], runs_dir: Path) -> Iterator[dict[str, Any]]:
        from distributed import as_completed

        runs_dir = Path(runs_dir).resolve()
        futures = [
            self.client.submit(execute_run, spec, runs_dir, threads=self.threads, key=f"robustseg-{spec.run_id}", pure=False)
            for spec in specs
        ]
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as exc:  # the worker died (killed, out of memory): record, go on
                yield {"run_id": future.key.removeprefix("robustseg-"), "status": "failed",
                       "error": f"worker lost: {type(exc).__name__}: {exc}"}

    def close(self) -> None:
        self.client.close()


def _size(spec: RunSpec) -> int | None:
    """Input size (px) of a run, where the spec records it."""
    size = spec.payload.get("data", {}).get("size") if isinstance(spec.payload, dict) else None
    return int(size) if isinstance(size, int | float) else None
