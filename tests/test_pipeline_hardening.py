"""Regression tests for the pipeline-side defects of issue 15: verified runs, output locations checked
before any work, stale temporary files, waiting for runs locked by another process, diverged runs,
bad seeds / sizes / names, and reports of damaged study folders."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from _tiny import tiny_study

from robustseg._outdir import MARKER
from robustseg.cli import main
from robustseg.config import load_study
from robustseg.pipeline import runner
from robustseg.pipeline.artifacts import COMPLETE, RunStatus, run_state, verify_run
from robustseg.pipeline.events import RunInvalid, RunWaiting
from robustseg.pipeline.plan import RunSpec
from robustseg.pipeline.study import collect_tables, prepare, run_study

TINY = tiny_study(seeds="[0]")


def write_study(tmp: Path, extra: str = "", runs: Path | None = None) -> Path:
    path = tmp / "tiny.toml"
    runs = runs or tmp / "runs"
    path.write_text(TINY + f'runs_dir = "{runs}"\nreports_dir = "{tmp / "reports"}"\n' + extra)
    return path


def per_image(runs_dir: Path) -> pd.DataFrame:
    df = pd.read_csv(runs_dir / "tables" / "per_image.csv.gz")
    return df.sort_values(["run_id", "testset", "perturbation", "severity", "postprocessed", "image_id", "class"],
                          ignore_index=True)


@pytest.fixture(scope="module")
def one_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-run tiny study; tests copy its folder before damaging anything."""
    tmp = tmp_path_factory.mktemp("one")
    outcome = run_study(load_study(write_study(tmp)), report=False)
    assert not outcome.failures, outcome.failures
    return outcome.runs_dir


def copy_study(one_run: Path, tmp: Path) -> tuple[Path, Path]:
    """A copy of the study folder under ``tmp/runs/tiny`` and a study file pointing at it."""
    runs_dir = tmp / "runs" / "tiny"
    shutil.copytree(one_run, runs_dir)
    return write_study(tmp), runs_dir


def the_run(runs_dir: Path) -> Path:
    return runs_dir / json.loads((runs_dir / "plan.json").read_text())[0]["run_id"]


# --- (c) a run is complete only if its files verify -------------------------------------------------


def test_complete_json_holds_a_manifest_of_every_file(one_run: Path) -> None:
    info = json.loads((the_run(one_run) / COMPLETE).read_text())
    files = info["files"]
    assert {"checkpoint.pt", "history.csv", "per_image.csv.gz", "features.csv.gz", "probs.npz", "spec.json"} <= set(files)
    for name, meta in files.items():
        assert meta["size"] == (the_run(one_run) / name).stat().st_size and len(meta["sha256"]) == 64
    assert info["diverged"] is False


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "truncated per_image.csv.gz": lambda run: _truncate(run / "per_image.csv.gz"),
    "broken complete.json": lambda run: (run / COMPLETE).write_text('{"status": "comp'),
    "truncated probs.npz": lambda run: _truncate(run / "probs.npz"),
    "deleted checkpoint.pt": lambda run: (run / "checkpoint.pt").unlink(),
    "same size, other bytes": lambda run: (run / "history.csv").write_bytes(
        (run / "history.csv").read_bytes()[::-1]),
    "v0.1 marker without manifest": lambda run: (run / COMPLETE).write_text(json.dumps(
        {k: v for k, v in json.loads((run / COMPLETE).read_text()).items() if k != "files"})),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_run_is_reported_not_trusted(one_run: Path, tmp_path: Path, damage: str, capsys) -> None:
    _, runs_dir = copy_study(one_run, tmp_path)
    run = the_run(runs_dir)
    DAMAGE[damage](run)
    assert run_state(run) == "corrupt" and verify_run(run)
    tables = collect_tables(runs_dir)  # no EOFError / JSONDecodeError / BadZipFile
    assert tables["runs"]["status"].tolist() == ["corrupt"]
    assert tables["runs"]["error"].iloc[0].startswith("corrupt: ")
    assert "per_image" not in tables
    assert main(["report", str(runs_dir)]) == 0  # a report of no completed runs, not a traceback
    from robustseg.report.load import load_inputs

    assert load_inputs(runs_dir).completes == {}


def test_damaged_run_is_run_again_with_identical_tables(one_run: Path, tmp_path: Path) -> None:
    path, runs_dir = copy_study(one_run, tmp_path)
    _truncate(the_run(runs_dir) / "per_image.csv.gz")
    events = []
    outcome = run_study(load_study(path), report=False, on_event=events.append)
    assert [type(e) for e in events if isinstance(e, RunInvalid)] == [RunInvalid]
    assert "per_image.csv.gz" in next(e for e in events if isinstance(e, RunInvalid)).reason
    assert [r.status for r in outcome.results] == [RunStatus.COMPLETE]
    pd.testing.assert_frame_equal(per_image(runs_dir), per_image(one_run))


# --- defect 6 and the report's study path -------------------------------------------------------------


def test_deleted_reference_npz_is_exit_2_not_an_empty_report(one_run: Path, tmp_path: Path, capsys) -> None:
    _, runs_dir = copy_study(one_run, tmp_path)
    (runs_dir / "reference.npz").unlink()
    assert main(["report", str(runs_dir)]) == 2
    err = capsys.readouterr().err
    assert "reference.npz: missing" in err and "robustseg study" in err


def test_broken_study_json_is_exit_2(one_run: Path, tmp_path: Path, capsys) -> None:
    _, runs_dir = copy_study(one_run, tmp_path)
    (runs_dir / "study.json").write_text("{")
    assert main(["report", str(runs_dir)]) == 2
    assert "study.json: damaged" in capsys.readouterr().err


def test_report_shows_a_relative_study_path_and_worst_per_structure(one_run: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from robustseg.report.compute import compute
    from robustseg.report.load import load_inputs
    from robustseg.report.repro import shown_path

    _, runs_dir = copy_study(one_run, tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(runs_dir)]) == 0
    saved = json.loads((runs_dir / "study.json").read_text())["study"]["execution"]["reports_dir"]
    text = (Path(saved) / "tiny" / "report.md").read_text()
    assert str(one_run.parent.parent) not in text and "(file `tiny.toml`)" in text
    assert shown_path(str(tmp_path / "a" / "s.toml"), cwd=tmp_path) == "a/s.toml"
    assert shown_path("/elsewhere/s.toml", cwd=tmp_path) == "s.toml"
    labels = " ".join(label for label, _, _ in compute(load_inputs(runs_dir)).picks)
    assert "worst CSP" in labels and "worst LV" in labels and "best" in labels


# --- (d) output locations and names, checked before any work ---------------------------------------


def test_name_escaping_runs_dir_is_exit_2(tmp_path: Path, capsys) -> None:
    (tmp_path / "a").mkdir()
    path = write_study(tmp_path / "a")
    assert main(["study", str(path), "--set", "name=../../x"]) == 2
    assert "name = '../../x'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"] and sorted(os.listdir(tmp_path / "a")) == ["tiny.toml"]


@pytest.mark.parametrize("target", ["runs", "reports"])
def test_output_folder_that_is_a_file_is_exit_2_before_training(tmp_path: Path, target: str, capsys) -> None:
    path = write_study(tmp_path)
    (tmp_path / target).write_text("a file, not a folder")
    assert main(["study", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"execution.{target}_dir" in err and "is a file" in err
    assert not list(tmp_path.glob("runs/**/spec.json"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_reports_dir_is_exit_2_before_training(tmp_path: Path, capsys) -> None:
    path = write_study(tmp_path)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports").chmod(0o555)
    try:
        assert main(["study", str(path)]) == 2
    finally:
        (tmp_path / "reports").chmod(0o755)
    assert "execution.reports_dir" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_unwritable_reports_dir_is_exit_2_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys) -> None:
    """Root passes permission bits, so the refusal of a read-only mount is simulated at the probe write."""
    import tempfile

    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kw):  # noqa: A002 - tempfile's own keyword
        if dir is not None and Path(dir).name == "reports":
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    path = write_study(tmp_path)
    (tmp_path / "reports").mkdir()
    assert main(["study", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "execution.reports_dir" in err and "Permission denied" in err
    assert not (tmp_path / "runs").exists()


def test_size_not_a_multiple_of_the_model_divisor_is_exit_2_up_front(tmp_path: Path, capsys) -> None:
    path = write_study(tmp_path)
    assert main(["study", str(path), "--set", "data.size=17"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "data.size = 17 is not a multiple of 8" in err and "depth 3" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "reports").exists()


def test_train_with_a_negative_seed_is_exit_2(tmp_path: Path, capsys) -> None:
    path = write_study(tmp_path)
    assert main(["train", str(path), "--seed", "-1"]) == 2
    assert "--seed: seed -1" in capsys.readouterr().err
    assert not list(tmp_path.glob("runs/**/failed.json")) and not list(tmp_path.glob("runs/**/spec.json"))


def test_colour_map_table_via_set_prepares(tmp_path: Path) -> None:
    path = write_study(tmp_path)
    study = load_study(path, overrides=['data.colormap={"128,0,0"=1, "0,128,0"=2, "128,128,0"=3}'])
    prep = prepare(study)  # v0.1: TypeError: unhashable type: 'dict'
    assert prep.runs and isinstance(prep.data.colormap, tuple)


def test_bad_tune_storage_writes_nothing(tmp_path: Path, capsys) -> None:
    path = write_study(tmp_path)
    assert main(["tune", str(path), "--storage", "notaurl", "--trials", "1"]) == 2
    assert "notaurl" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


# --- (e) stale temporary files -------------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temp_files_and_phantom_folders_are_removed_on_start(tmp_path: Path) -> None:
    path = write_study(tmp_path)
    study_dir = tmp_path / "runs" / "tiny"
    dead = _dead_pid()
    stale = [study_dir / f".plan.json.tmp-{dead}", study_dir / "somerun" / f".checkpoint.pt.tmp-{dead}",
             study_dir / "data" / f"phantom-n30-s0.tmp-{dead}" / "big.png",
             tmp_path / "reports" / "tiny" / f".report.md.tmp-{dead}"]
    live = study_dir / f".notes.txt.tmp-{os.getpid()}"
    for p in [*stale, live]:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * 100)
    # the output marker is the first thing a study writes into its folder, so a killed study leaves it too
    (study_dir / MARKER).write_text('{"made_by": "robustseg study", "command": "study", "files": []}')
    prepare(load_study(path))
    assert not any(p.exists() for p in stale)
    assert not (study_dir / "data" / f"phantom-n30-s0.tmp-{dead}").exists()
    assert live.exists()  # a live process's temporary file is left alone


# --- diverged runs ------------------------------------------------------------------------------------------


def _fake_execute(losses: list[float]):
    def execute(spec, run_dir, *, threads, progress):
        pd.DataFrame({"epoch": range(1, len(losses) + 1), "val_loss": losses}).to_csv(run_dir / "history.csv",
                                                                                      index=False)
        (run_dir / "per_image.csv.gz").write_bytes(b"stand-in")
        return {"best_val_loss": min(losses)}
    return execute


def _spec(run_id: str = "a-f0-s0-0000000000") -> RunSpec:
    return RunSpec("tiny", "a", 0, 0, run_id, {"stand": "in"})


@pytest.mark.parametrize(("losses", "diverged"), [([1.3, 0.9, 0.8], False), ([4e13, 3e13], True),
                                                   ([1.2, 50.0, 2e3], True)])
def test_diverged_but_finite_runs_are_flagged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, losses, diverged) -> None:
    monkeypatch.setattr(runner, "_execute", _fake_execute(losses))
    result = runner.execute_run(_spec(), tmp_path)
    assert result.status is RunStatus.COMPLETE
    info = json.loads((tmp_path / result.run_id / COMPLETE).read_text())
    assert info["diverged"] is diverged and bool(info["diverged_reason"]) is diverged
    assert run_state(tmp_path / result.run_id) == "complete"


# --- (b) a run locked by another process is waited for, then its result used ------------------------


def test_a_locked_run_is_waited_for_and_its_result_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl

    monkeypatch.setattr(runner, "_execute", _fake_execute([1.0, 0.5]))
    monkeypatch.setattr(runner, "LOCK_POLL_S", 0.05)
    spec = _spec()
    lock_path = tmp_path / f".{spec.run_id}.lock"
    holder = open(lock_path, "a+")  # "another process": a separate open file description
    fcntl.flock(holder, fcntl.LOCK_EX)
    holder.write("otherhost pid 4242\n")
    holder.flush()
    events: list = []
    out: list = []
    waiter = threading.Thread(target=lambda: out.append(runner.execute_run(spec, tmp_path, on_event=events.append)))
    waiter.start()
    deadline = time.time() + 10
    while not events and time.time() < deadline:
        time.sleep(0.02)
    assert events and isinstance(events[0], RunWaiting) and "otherhost pid 4242" in events[0].holder
    assert waiter.is_alive()  # waiting, not failing
    first = runner._attempt(spec, tmp_path / spec.run_id, 0, lambda e: None)  # the holder finishes the run
    fcntl.flock(holder, fcntl.LOCK_UN)
    holder.close()
    waiter.join(10)
    assert out and out[0].status is RunStatus.SKIPPED and out[0].ok
    assert out[0].summary["files"] == first.summary["files"]


# --- plain-text progress (stdout not a terminal) -------------------------------------------------------------


def test_plain_progress_names_waiting_corrupt_and_diverged_runs() -> None:
    import io

    from rich.console import Console

    from robustseg.cli.progress import ProgressRenderer
    from robustseg.pipeline.artifacts import RunResult
    from robustseg.pipeline.events import RunFinished, RunStarted

    out, err = io.StringIO(), io.StringIO()
    with ProgressRenderer(Console(file=out), Console(file=err)) as progress:
        assert progress.plain  # a StringIO is not a terminal
        progress(RunStarted(total=2, done=0))
        progress(RunWaiting("a-f0-s0-x", "host pid 7"))
        progress(RunInvalid("a-f0-s1-y", "probs.npz missing"))
        progress(RunFinished(RunResult("a-f0-s1-y", RunStatus.COMPLETE,
                                       summary={"diverged": True, "diverged_reason": "best validation loss 4e+13"})))
    text = out.getvalue()
    assert "waiting for run a-f0-s0-x locked by another process (host pid 7)" in text
    assert "run 1/2 complete a-f0-s1-y" in text
    assert "run a-f0-s1-y is corrupt (probs.npz missing); running it again" in err.getvalue()
    assert "diverged a-f0-s1-y: best validation loss 4e+13" in err.getvalue()


def test_a_dask_worker_waits_for_a_locked_run_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Dask path runs the same ``execute_run``: a locked run is waited for, then its result used."""
    import fcntl

    distributed = pytest.importorskip("distributed")
    from robustseg.pipeline.executors import DaskExecutor

    monkeypatch.setattr(runner, "_execute", _fake_execute([1.0, 0.5]))  # threads: the patch reaches the worker
    monkeypatch.setattr(runner, "LOCK_POLL_S", 0.05)
    spec = _spec()
    holder = open(tmp_path / f".{spec.run_id}.lock", "a+")
    fcntl.flock(holder, fcntl.LOCK_EX)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        executor = DaskExecutor(cluster.scheduler_address)
        try:
            results = executor.map([spec], tmp_path)
            out: list = []
            waiter = threading.Thread(target=lambda: out.extend(results))
            waiter.start()
            time.sleep(1.0)
            assert waiter.is_alive() and not out  # waiting, not "failed: locked"
            runner._attempt(spec, tmp_path / spec.run_id, 0, lambda e: None)
            fcntl.flock(holder, fcntl.LOCK_UN)
            waiter.join(30)
        finally:
            executor.close()
            holder.close()
    assert [r.status for r in out] == [RunStatus.SKIPPED]
