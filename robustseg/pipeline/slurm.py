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
from pathlib import Path
from typing import Any

from robustseg._extras import require
from robustseg.config.schema import SlurmTable
from robustseg.errors import InputError

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


def start_slurm_cluster(slurm: SlurmTable, runs_dir: Path, study_name: str, where: str) -> Any:
    """A running ``SLURMCluster`` scaled to ``slurm.jobs`` jobs.

    Before any job is submitted, ``sbatch --test-only`` checks the job script against the cluster (partition,
    account, QOS, limits): a refusal is one ``InputError`` line with sbatch's reason, before any work.
    """
    jobqueue = require("dask_jobqueue", f"{where}: --cluster slurm")
    if shutil.which("sbatch") is None:
        raise InputError(f"{where}: --cluster slurm: 'sbatch' not found; run the study on a SLURM login node "
                         "(sbatch, squeue and scancel on PATH)")
    options = cluster_options(slurm, runs_dir, study_name)
    Path(options["log_directory"]).mkdir(parents=True, exist_ok=True)
    try:
        cluster = jobqueue.SLURMCluster(**options)
    except Exception as exc:  # noqa: BLE001 - a bad interface or option: one line, before any work
        raise InputError(f"{where}: [execution.slurm]: cannot start the Dask scheduler for SLURM "
                         f"({type(exc).__name__}: {exc})") from None
    try:
        check = subprocess.run(["sbatch", "--test-only"], input=cluster.job_script(), capture_output=True,
                               text=True, timeout=SBATCH_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        cluster.close()
        raise InputError(f"{where}: [execution.slurm]: sbatch --test-only failed ({type(exc).__name__}: {exc})") from None
    if check.returncode != 0:
        cluster.close()
        lines = [line.strip() for line in (check.stderr or check.stdout).splitlines() if line.strip()]
        reason = lines[0] if lines else f"exit code {check.returncode}"
        raise InputError(f"{where}: [execution.slurm]: SLURM refuses the job script ({reason})")
    cluster.scale(jobs=slurm.jobs)
    return cluster
