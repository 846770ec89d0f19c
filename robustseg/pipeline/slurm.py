"""SLURM through dask-jobqueue: ``robustseg study --cluster slurm`` (or ``execution.executor = "slurm"``).

The study process starts a Dask scheduler and submits ``execution.slurm.jobs`` SLURM jobs, each running one
Dask worker (``SLURMCluster``, extra ``robustseg[slurm]``); :class:`~robustseg.pipeline.executors.DaskExecutor`
then sends every pending run to those workers, exactly as with ``--scheduler``. The jobs end when the study
ends (or when their walltime does: a run cut off that way is lost and executed again on the next start).
The compute nodes need robustseg installed for ``execution.slurm.python``, and the runs folder and the data
on a shared file system. Nothing here changes a result: runs are the same ``execute_run`` calls with the
same ``execution.threads``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from robustseg._extras import require
from robustseg.config.schema import SlurmTable
from robustseg.errors import InputError
from robustseg.pipeline.artifacts import RunResult
from robustseg.pipeline.events import OnEvent
from robustseg.pipeline.executors import DaskExecutor
from robustseg.pipeline.plan import RunSpec

SBATCH_TIMEOUT_S = 60
"""How long ``sbatch --test-only`` may take (a busy controller answers within seconds)."""


def cluster_options(slurm: SlurmTable, runs_dir: Path, study_name: str) -> dict[str, Any]:
    """Keyword arguments of ``dask_jobqueue.SLURMCluster`` for ``[execution.slurm]``.

    One worker process per job with ``runs_per_job`` threads (``cores``), ``cpus_per_job`` CPUs requested
    (``job_cpu``), ``gpus_per_job`` as ``--gres=gpu:N``; the dashboard on a free port.
    """
    directives = list(slurm.job_extra_directives)
    if slurm.gpus_per_job:
        directives.append(f"--gres=gpu:{slurm.gpus_per_job}")
    if slurm.qos:
        directives.append(f"--qos={slurm.qos}")
    options: dict[str, Any] = {
        "cores": slurm.runs_per_job,
        "processes": 1,
        "job_cpu": slurm.cpus_per_job,
        "memory": slurm.memory,
        "walltime": slurm.walltime,
        "job_name": f"robustseg-{study_name}",
        "python": slurm.python or sys.executable,
        "job_extra_directives": directives,
        "job_script_prologue": list(slurm.job_script_prologue),
        "log_directory": slurm.log_directory or str(Path(runs_dir) / "slurm-logs"),
        "scheduler_options": {"dashboard_address": ":0"},
    }
    for key, value in (("queue", slurm.partition), ("account", slurm.account), ("interface", slurm.interface),
                       ("local_directory", slurm.local_directory)):
        if value:
            options[key] = value
    return options


def check_slurm(slurm: SlurmTable, study_name: str, where: str) -> None:
    """Everything that can be checked before any work, without submitting a job or writing a file:
    dask-jobqueue installed, ``sbatch`` on PATH, and the job script accepted by ``sbatch --test-only``
    (partition, account, QOS, limits). A problem is one ``InputError`` line with SLURM's reason."""
    jobqueue = require("dask_jobqueue", f"{where}: --cluster slurm")
    if shutil.which("sbatch") is None:
        raise InputError(f"{where}: --cluster slurm: 'sbatch' not found; run the study on a SLURM login node "
                         "(sbatch, squeue and scancel on PATH)")
    options = cluster_options(slurm, Path("."), study_name)
    options.pop("scheduler_options")  # a cluster option; the job needs only an address to write the script
    options.update(log_directory=None, scheduler="tcp://127.0.0.1:8786", name="robustseg-check")
    try:
        script = jobqueue.slurm.SLURMJob(**options).job_script()
    except Exception as exc:  # noqa: BLE001 - an option dask-jobqueue rejects
        raise InputError(f"{where}: [execution.slurm]: cannot write the job script ({type(exc).__name__}: {exc})") from None
    try:
        check = subprocess.run(["sbatch", "--test-only"], input=script, capture_output=True, text=True,
                               timeout=SBATCH_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"{where}: [execution.slurm]: sbatch --test-only failed ({type(exc).__name__}: {exc})") from None
    if check.returncode != 0:
        lines = [line.strip() for line in (check.stderr or check.stdout).splitlines() if line.strip()]
        reason = lines[0] if lines else f"exit code {check.returncode}"
        raise InputError(f"{where}: [execution.slurm]: SLURM refuses the job script ({reason})")


class SlurmExecutor(DaskExecutor):
    """The Dask executor on SLURM jobs it starts itself: checked when built (:func:`check_slurm`, before any
    work), started on the first :meth:`map` with pending runs (the job logs go into the claimed runs folder),
    closed (jobs cancelled) by :meth:`close`."""

    def __init__(self, slurm: SlurmTable, study_name: str, where: str, threads: int = 0) -> None:
        check_slurm(slurm, study_name, where)
        self.slurm, self.study_name, self.where = slurm, study_name, where
        self.threads = threads
        self.client: Any = None
        self.cluster: Any = None

    def map(self, specs: Sequence[RunSpec], runs_dir: Path, on_event: OnEvent | None = None) -> Iterator[RunResult]:
        if specs and self.client is None:
            from distributed import Client

            self.cluster = start_slurm_cluster(self.slurm, Path(runs_dir), self.study_name, self.where)
            self.client = Client(self.cluster, timeout="20s")
        yield from super().map(specs, runs_dir, on_event)


def start_slurm_cluster(slurm: SlurmTable, runs_dir: Path, study_name: str, where: str) -> Any:
    """A running ``SLURMCluster`` scaled to ``slurm.jobs`` jobs (submitted with ``sbatch`` now)."""
    jobqueue = require("dask_jobqueue", f"{where}: --cluster slurm")
    options = cluster_options(slurm, runs_dir, study_name)
    Path(options["log_directory"]).mkdir(parents=True, exist_ok=True)
    try:
        cluster = jobqueue.SLURMCluster(**options)
    except Exception as exc:  # noqa: BLE001 - e.g. an interface this machine does not have
        raise InputError(f"{where}: [execution.slurm]: cannot start the Dask scheduler for SLURM "
                         f"({type(exc).__name__}: {exc})") from None
    cluster.scale(jobs=slurm.jobs)
    return cluster
