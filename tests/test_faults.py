"""Fault injection: kill the study at random points (the parent alone, or its whole process group) with two
workers, check that no worker outlives it, resume, and compare every table with an uninterrupted run.
Also: two studies started at once on one folder both finish, sharing the runs instead of failing them.

Tiny sizes (phantom of 30 images at 32 px, two epochs) so that CI runs it; the extra seeds are ``slow``.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from _tiny import tiny_study

STUDY = tiny_study("faults", seeds="[0, 1, 2]", workers=2, bootstrap=20)

RUN_COLUMNS = ["run_id", "arm", "fold", "seed", "status", "best_epoch", "best_val_loss", "epochs_run", "n_train",
               "n_val", "n_test", "postprocess_applied", "stopped_early", "diverged"]
SORT = {"per_image": ["run_id", "testset", "perturbation", "severity", "postprocessed", "image_id", "class"],
        "features": ["run_id", "source", "image_id", "class"], "history": ["run_id", "epoch"]}


def write_study(tmp: Path) -> Path:
    path = tmp / "faults.toml"
    path.write_text(STUDY + f'runs_dir = "{tmp / "runs"}"\nreports_dir = "{tmp / "reports"}"\n')
    return path


def command(path: Path) -> list[str]:
    return [sys.executable, "-m", "robustseg.cli", "study", str(path)]


def env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


def tables(runs_dir: Path) -> dict[str, pd.DataFrame]:
    """Every table of the study, without wall-clock columns, in a canonical row order."""
    out = {}
    for name, keys in SORT.items():
        df = pd.read_csv(runs_dir / "tables" / f"{name}.csv.gz")
        out[name] = df.drop(columns=[c for c in df.columns if "seconds" in c]).sort_values(keys, ignore_index=True)
    runs = pd.read_csv(runs_dir / "tables" / "runs.csv")
    out["runs"] = runs[RUN_COLUMNS].sort_values("run_id", ignore_index=True)
    return out


def assert_same_tables(runs_dir: Path, reference: Path) -> None:
    got, want = tables(runs_dir), tables(reference)
    for name in want:
        pd.testing.assert_frame_equal(got[name], want[name], obj=name)


def _ppids() -> dict[int, int]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            out[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def descendants(pid: int) -> set[int]:
    """Every living process below ``pid`` (Linux ``/proc``)."""
    ppids = _ppids()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in ppids.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def mentions(text: str) -> list[int]:
    """Living processes whose command line mentions ``text`` (other than this test process)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd and alive(int(entry)):
                out.append(int(entry))
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """An uninterrupted run (two workers, no report) and the wall time of its runs."""
    from robustseg.config import load_study
    from robustseg.pipeline.study import run_study

    tmp = tmp_path_factory.mktemp("uninterrupted")
    started = time.time()
    events: list = []
    outcome = run_study(load_study(write_study(tmp)), report=False, on_event=events.append)
    assert not outcome.failures, outcome.failures
    # the pool forwards its workers' epochs, so a log (stdout not a terminal) shows progress between runs
    assert {type(e).__name__ for e in events} >= {"RunStarted", "EpochEnd", "RunFinished"}
    return outcome.runs_dir, time.time() - started


def start_and_kill(path: Path, delay: float, group: bool) -> tuple[subprocess.Popen, set[int]]:
    """Start the study CLI, wait for its workers, then ``delay`` seconds, and SIGKILL it (or its group)."""
    proc = subprocess.Popen(command(path), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    seen: set[int] = set()
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and len(seen) < 2:  # wait for the spawn workers
        seen |= descendants(proc.pid)
        time.sleep(0.05)
    deadline = time.time() + delay
    while time.time() < deadline and proc.poll() is None:
        seen |= descendants(proc.pid)
        time.sleep(0.05)
    if proc.poll() is None:
        seen |= descendants(proc.pid)
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            os.kill(proc.pid, signal.SIGKILL)  # the parent alone: its workers must notice and die
    proc.wait()
    return proc, seen


def kill_and_resume(reference: tuple[Path, float], tmp: Path, seed: int, group: bool) -> None:
    """Start the study (a CLI process, two workers), kill it at a random point after its workers started,
    check that nothing outlives it, resume in this process and compare every table with the uninterrupted
    run."""
    from robustseg.config import load_study
    from robustseg.pipeline.study import run_study

    ref_dir, seconds = reference
    path = write_study(tmp)
    fraction = random.Random(seed).uniform(0.0, 0.8)  # seeds 0-3, 5, 6: 0.68, 0.11, 0.76, 0.19, 0.5, 0.63
    for _ in range(4):  # a faster machine may finish first: then kill earlier on a fresh folder
        shutil.rmtree(tmp / "runs", ignore_errors=True)
        proc, seen = start_and_kill(path, fraction * seconds, group)
        if proc.returncode == -signal.SIGKILL:
            break
        fraction /= 2
    assert proc.returncode == -signal.SIGKILL, "the study finished before the kill landed"
    completed = sorted(tmp.glob("runs/faults/*/complete.json"))
    deadline = time.time() + 15
    while time.time() < deadline and (any(alive(p) for p in seen) or mentions(str(tmp))):
        time.sleep(0.1)
    survivors = [p for p in seen if alive(p)] + mentions(str(tmp))
    assert not survivors, f"processes outlived the killed study: {survivors}"
    assert sorted(tmp.glob("runs/faults/*/complete.json")) == completed, "a run finished after its study was killed"

    events: list = []  # the resume, in this process (runs equal across executors; saves two worker starts)
    outcome = run_study(load_study(path, overrides=["execution.workers=1"]), report=False, on_event=events.append)
    assert not outcome.failures, outcome.failures
    assert not [e for e in events if type(e).__name__ == "RunWaiting"], "a run was still locked by an orphan"
    assert not list(outcome.runs_dir.rglob("*.tmp-*")), "temporary files left after the resume"
    assert_same_tables(outcome.runs_dir, ref_dir)


SLEEPING_POOL = """
import os, sys, time
from robustseg.pipeline import executors
from robustseg.pipeline.plan import RunSpec


def sleeper(spec, runs_dir, threads):
    time.sleep(120)


if __name__ == "__main__":
    executors._pool_run = sleeper  # workers sleep instead of training: only their lifetime matters here
    specs = [RunSpec("s", "a", 0, k, f"run{k}", {}) for k in range(2)]
    print("started", flush=True)
    for _ in executors.PoolExecutor(2).map(specs, sys.argv[1]):
        pass
"""


def test_pool_workers_die_with_their_parent(tmp_path: Path) -> None:
    """v0.1: kill -9 of the study left its spawn workers running (re-parented to PID 1)."""
    script = tmp_path / "pool.py"
    script.write_text(SLEEPING_POOL)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env(), stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    workers: set[int] = set()
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        deadline = time.time() + 120
        while time.time() < deadline and len(workers) < 2:  # two spawn workers (plus multiprocessing's tracker)
            workers = {p for p in descendants(proc.pid)
                       if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes() and alive(p)}
            time.sleep(0.05)
        assert len(workers) >= 2, "the pool never started its workers"
        time.sleep(3)  # let the initializers arm the death signal and the watchdog
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 10
        while time.time() < deadline and any(alive(p) for p in workers):
            time.sleep(0.05)
        assert not [p for p in workers if alive(p)], "pool workers outlived their killed parent"
    finally:  # never leave sleepers behind, whatever failed
        for p in workers | descendants(proc.pid):
            if alive(p):
                os.kill(p, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)])
def test_kill_parent_alone_then_resume(reference, tmp_path: Path, seed: int) -> None:
    kill_and_resume(reference, tmp_path, seed, group=False)


@pytest.mark.parametrize("seed", [3, pytest.param(5, marks=pytest.mark.slow), pytest.param(6, marks=pytest.mark.slow)])
def test_kill_process_group_then_resume(reference, tmp_path: Path, seed: int) -> None:
    kill_and_resume(reference, tmp_path, seed, group=True)


@pytest.mark.slow
def test_two_studies_on_one_folder_share_runs(reference, tmp_path: Path) -> None:
    """v0.1: both exited 1, each listing the other's runs as failed ("running in another process")."""
    path = write_study(tmp_path)
    procs = [subprocess.Popen(command(path), env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-1500:] for o in outs)
    assert "failed" not in " ".join(outs)
    assert_same_tables(tmp_path / "runs" / "faults", reference[0])
