"""``robustseg study --cluster slurm``: the job script from ``[execution.slurm]``, the one-line errors, and a
4-run study on a real single-node SLURM (started on loopback by ``tests/_slurm.py``) that must give the same
tables as the in-process executor."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from robustseg.config import load_study
from robustseg.errors import InputError
from robustseg.pipeline.study import collect_tables, run_study
from tests import _slurm
from tests._tiny import tiny_study

pytest.importorskip("dask_jobqueue")


def _study(tmp: Path, name: str, executor: str = "local", slurm: str = "") -> Path:
    """The tiny study with 2 folds x 2 seeds = 4 runs, its own runs folder, one shared phantom."""
    text = tiny_study("sl", seeds="[0, 1]", phantom_n=24, max_epochs=2, bootstrap=20).replace("folds = [0]\n", "")
    text = text.replace('source = "phantom"\n', f'source = "phantom"\npath = "{tmp}/phantom"\n')
    text += f'executor = "{executor}"\nruns_dir = "{tmp}/runs-{name}"\nreports_dir = "{tmp}/reports-{name}"\n'
    path = tmp / f"{name}.toml"
    path.write_text(text + (f"[execution.slurm]\n{slurm}" if slurm else ""))
    return path


SLURM_TABLE = 'jobs = 2\ncpus_per_job = 1\nmemory = "3GB"\nwalltime = "00:30:00"\ninterface = "lo"\n'


def test_job_script_follows_the_slurm_table(tmp_path: Path) -> None:
    """What ``[execution.slurm]`` becomes in the sbatch script (no SLURM needed to write it)."""
    from dask_jobqueue import SLURMCluster

    from robustseg.pipeline.slurm import cluster_options

    study = load_study(_study(tmp_path, "script", "slurm", 'partition = "gpu"\naccount = "lab"\nqos = "long"\n'
                              'cpus_per_job = 8\ngpus_per_job = 2\nruns_per_job = 2\nmemory = "32GB"\n'
                              'walltime = "1-00:00:00"\njob_script_prologue = ["module load cuda"]\n'
                              'job_extra_directives = ["--constraint=a100"]\ninterface = "lo"\n'))
    options = cluster_options(study.execution.slurm, tmp_path / "runs-script" / "sl", study.name)
    cluster = SLURMCluster(**options)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for line in ("#SBATCH -J robustseg-sl", "#SBATCH -p gpu", "#SBATCH -A lab", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --mem=30G", "#SBATCH -t 1-00:00:00", "#SBATCH --constraint=a100", "#SBATCH --gres=gpu:2",
                 "#SBATCH --qos=long", f"#SBATCH -o {tmp_path}/runs-script/sl/slurm-logs/robustseg-sl-%J.out",
                 "module load cuda"):
        assert line in script.splitlines(), (line, script)
    worker = script.splitlines()[-1]
    assert worker.startswith(f"{sys.executable} -m distributed.cli.dask_worker tcp://127.0.0.1:")
    assert "--nthreads 2" in worker and "--interface lo" in worker  # runs_per_job runs side by side


def test_cluster_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study = load_study(_study(tmp_path, "err", "local", SLURM_TABLE))
    with pytest.raises(InputError, match="--cluster and --scheduler: give one of them"):
        run_study(study, scheduler="tcp://127.0.0.1:1", cluster="slurm")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    with pytest.raises(InputError, match="'sbatch' not found; run the study on a SLURM login node"):
        run_study(study, cluster="slurm")
    assert not (tmp_path / "runs-err").exists()


@pytest.fixture(scope="module")
def local_slurm():
    try:
        slurm = _slurm.start()
    except _slurm.SlurmUnavailable as exc:
        pytest.skip(f"no local SLURM: {exc}")
    try:
        yield slurm
    finally:
        slurm.stop()


@pytest.mark.slurm
def test_a_study_through_slurm_gives_the_local_tables(local_slurm, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in local_slurm.env.items():
        monkeypatch.setenv(key, value)
    bad = load_study(_study(tmp_path, "bad", "slurm", SLURM_TABLE + 'partition = "nope"\n'))
    with pytest.raises(InputError, match=r"SLURM refuses the job script \(sbatch: error: invalid partition"):
        run_study(bad, report=False)
    assert not (tmp_path / "runs-bad").exists()  # refused before any work

    on_slurm = run_study(load_study(_study(tmp_path, "slurm", "slurm", SLURM_TABLE)), report=False)
    local = run_study(load_study(_study(tmp_path, "local")), report=False)
    assert not on_slurm.failures and not local.failures and len(on_slurm.results) == 4
    assert sorted(r.run_id for r in on_slurm.results) == sorted(r.run_id for r in local.results)
    jobs = {json.loads((on_slurm.runs_dir / r.run_id / "complete.json").read_text())["slurm_job_id"]
            for r in on_slurm.results}
    assert "" not in jobs and jobs <= {str(j) for j in range(1, 100)}  # every run executed inside a SLURM job
    assert {json.loads((local.runs_dir / r.run_id / "complete.json").read_text())["slurm_job_id"]
            for r in local.results} == {""}
    assert list((on_slurm.runs_dir / "slurm-logs").glob("robustseg-sl-*.err"))
    a, b = collect_tables(on_slurm.runs_dir), collect_tables(local.runs_dir)
    for name in ("per_image", "features"):
        pd.testing.assert_frame_equal(a[name], b[name])
    pd.testing.assert_frame_equal(a["history"].drop(columns="seconds"), b["history"].drop(columns="seconds"))
