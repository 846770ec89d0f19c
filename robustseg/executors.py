"""Executors: where runs execute. Both call the same ``runner.execute_run``, so results are identical.

- ``LocalExecutor``: in this process, one run after another, with rich progress over runs and epochs.
- ``DaskExecutor``: sends each run to an existing Dask cluster (``--scheduler tcp://host:8786``; for
  example one started by dask-jobqueue on Slurm). Workers need the package installed and the runs
  folder and data on a shared file system.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from robustseg.errors import InputError
from robustseg.plan import RunSpec
from robustseg.runner import execute_run

Progress = Callable[[RunSpec, dict[str, Any]], None]


class LocalExecutor:
    """Runs in-process, sequentially. ``on_epoch(spec, epoch, max_epochs, metrics)`` drives progress bars."""

    def __init__(self, threads: int = 0, on_epoch: Callable[..., None] | None = None) -> None:
        self.threads = threads
        self.on_epoch = on_epoch

    def map(self, specs: Sequence[RunSpec], runs_dir: Path) -> Iterator[dict[str, Any]]:
        for spec in specs:
            callback = None
            if self.on_epoch is not None:
                def callback(epoch: int, max_epochs: int, metrics: dict[str, float], _s: RunSpec = spec) -> None:
                    self.on_epoch(_s, epoch, max_epochs, metrics)
            yield execute_run(spec, runs_dir, threads=self.threads, progress=callback)


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
