"""Faults that need a real process: a closed standard output (``robustseg check-data DIR | head -1``), SIGTERM
during a study with worker processes, and a study file piped to ``/dev/stdin``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _tiny import tiny_study
from corpus.build import real_looking_dataset

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
       "OMP_NUM_THREADS": "1"}
CLI = [sys.executable, "-m", "robustseg.cli"]


def test_closed_stdout_is_a_quiet_exit_0(tmp_path: Path) -> None:
    """The reader of the pipe is gone before robustseg writes (head -1 after its line): exit 0, nothing on stderr."""
    data = real_looking_dataset(tmp_path / "fhb")
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write now fails with EPIPE
    try:
        proc = subprocess.run([*CLI, "check-data", str(data)], stdout=write_end, stderr=subprocess.PIPE, env=ENV,
                              timeout=180, text=True)
    finally:
        os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr


def test_head_of_check_data_is_exit_0(tmp_path: Path) -> None:
    data = real_looking_dataset(tmp_path / "fhb")
    cmd = " ".join([*CLI, "check-data", f"'{data}'"]) + " | head -1; exit ${PIPESTATUS[0]}"
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=ENV, timeout=180)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 1 and proc.stderr == "", proc


def test_study_file_piped_to_dev_stdin(tmp_path: Path) -> None:
    text = 'name = "piped"\n[train]\nlr = 0\n'
    for arg in ("-", "/dev/stdin"):
        proc = subprocess.run([*CLI, "study", arg], input=text, capture_output=True, text=True, env=ENV, timeout=180,
                              cwd=tmp_path)
        assert proc.returncode == 2 and "<stdin>: key 'train.lr' = 0" in proc.stderr, proc.stderr
    assert not any(tmp_path.iterdir())


SIG_STUDY = tiny_study("sig", max_epochs=200, bootstrap=None, workers=2, suite='"none"',
                       data='phantom_style = "small-thin"')


@pytest.mark.slow
def test_sigterm_during_a_two_worker_study_is_quiet(tmp_path: Path) -> None:
    """SIGTERM while two worker processes train: exit 143, stderr says 'terminated' and nothing else (no
    resource_tracker 'leaked semaphore' warning), no worker left behind."""
    (tmp_path / "s.toml").write_text(SIG_STUDY)
    proc = subprocess.Popen([*CLI, "study", "s.toml"], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    seen = ""
    while time.time() < deadline:  # wait until the workers are training (an epoch line)
        line = proc.stdout.readline()
        seen += line
        if "epoch" in line or not line:
            break
    assert "epoch" in seen, seen
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    time.sleep(1.0)  # the resource tracker writes its warning after the parent is gone
    assert "leaked" not in err and "Traceback" not in err, err
    assert err.strip() == "terminated", err
    time.sleep(1.0)  # workers die with their parent (PR_SET_PDEATHSIG)
    assert children and not [pid for pid in children if Path(f"/proc/{pid}").exists()], children
