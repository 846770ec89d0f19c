"""Executors: where runs execute. All call the same ``runner.execute_run``, so results are identical.

Every executor follows :class:`Executor`: ``map(specs, runs_dir, on_event)`` yields one
:class:`RunResult` per spec as runs finish, and ``close()`` releases its resources.

- ``LocalExecutor``: in this process, one run after another; forwards per-epoch events.
- ``PoolExecutor``: ``execution.workers > 1`` local processes side by side (events per finished run).
- ``DaskExecutor``: sends each run to an existing Dask cluster (``--scheduler tcp://host:8786``; for
  example one started by dask-jobqueue on Slurm). Workers need the package installed and the runs
  folder and data on a shared file system.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from robustseg.errors import InputError
from robustseg.pipeline.artifacts import RunResult, RunStatus
from robustseg.pipeline.events import OnEvent
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
        for spec in specs:
            yield execute_run(spec, runs_dir, threads=self.threads, on_event=on_event)

    def close(self) -> None:
        pass


class PoolExecutor:
    """Runs ``workers`` runs at a time in separate local processes (spawned), each with ``threads`` threads.

    On small CPUs several single-threaded runs side by side beat one run using every core (no OpenMP
    spin-waiting between tiny kernels). Results equal those of ``LocalExecutor`` with the same threads.
    """

    def __init__(self, workers: int, threads: int = 1) -> None:
        self.workers = workers
        self.threads = threads or 1

    def map(self, specs: Sequence[RunSpec], runs_dir: Path, on_event: OnEvent | None = None) -> Iterator[RunResult]:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx) as pool:
            futures = {pool.submit(execute_run, spec, Path(runs_dir), threads=self.threads): spec for spec in specs}
            for future in as_completed(futures):
                try:
                    yield future.result()
                except Exception as exc:  # the worker process died (killed, out of memory): record, go on
                    yield _lost(futures[future].run_id, exc, "worker process")

    def close(self) -> None:
        pass


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

    def map(self, specs: Sequence[RunSpec], runs_dir: Path, on_event: OnEvent | None = None) -> Iterator[RunResult]:
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
                yield _lost(future.key.removeprefix("robustseg-"), exc, "worker")

    def close(self) -> None:
        self.client.close()
