"""End-to-end study at a tiny size: plan, run, resume after kill -9, failures, Dask executor."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from _tiny import tiny_study

from robustseg.cli import main
from robustseg.config import build_study, load_study
from robustseg.pipeline.study import run_study

TINY = tiny_study(boundary=True)


def _write_study(tmp: Path, extra: str = "") -> Path:
    path = tmp / "tiny.toml"
    text = TINY + f'runs_dir = "{tmp / "runs"}"\nreports_dir = "{tmp / "reports"}"\n' + extra
    path.write_text(text)
    return path


def _per_image(runs_dir: Path) -> pd.DataFrame:
    df = pd.read_csv(runs_dir / "tables" / "per_image.csv.gz")
    return df.sort_values(["run_id", "testset", "perturbation", "severity", "postprocessed", "image_id", "class"],
                          ignore_index=True)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("ref")
    study = load_study(_write_study(tmp))
    outcome = run_study(study, report=False)
    assert not outcome.failures, outcome.failures
    return outcome.runs_dir


def test_study_writes_every_run_and_table(reference_run: Path) -> None:
    plan = json.loads((reference_run / "plan.json").read_text())
    assert len(plan) == 2
    for entry in plan:
        run = reference_run / entry["run_id"]
        assert (run / "complete.json").is_file()
        assert (run / "checkpoint.pt").is_file() and (run / "probs.npz").is_file()
    df = _per_image(reference_run)
    assert set(df["perturbation"]) == {"none", "gaussian_noise"}
    assert set(df["seed"]) == {0, 1}
    splits = pd.read_csv(next(reference_run.glob("splits-*.csv")))
    test_ids = set(splits.loc[splits["fold"] == -1, "image_id"])
    assert set(df["image_id"]) == test_ids
    # perturbed at native resolution by default; the damage of every image and condition is saved
    damage = pd.read_csv(reference_run / "tables" / "damage.csv.gz")
    assert set(damage["image_id"]) == test_ids and len(damage) == len(test_ids)
    assert set(damage["stage"]) == {"native"} and damage["ssim_fan"].between(0, 1).all()
    for entry in plan:
        assert json.loads((reference_run / entry["run_id"] / "complete.json").read_text())["perturb_stage"] == "native"


def test_rerun_skips_finished_runs(reference_run: Path) -> None:
    study = load_study(reference_run.parent.parent / "tiny.toml")
    before = {p: p.stat().st_mtime_ns for p in reference_run.glob("*/complete.json")}
    outcome = run_study(study, report=False)
    assert outcome.results == []
    assert {p: p.stat().st_mtime_ns for p in reference_run.glob("*/complete.json")} == before


def test_kill_minus_nine_then_resume_gives_identical_tables(reference_run: Path, tmp_path: Path) -> None:
    path = _write_study(tmp_path)
    runs_dir = tmp_path / "runs" / "tiny"
    cmd = [sys.executable, "-m", "robustseg.cli", "study", str(path)]
    for _ in range(3):  # the second run can finish before the kill lands: then try again
        shutil.rmtree(runs_dir, ignore_errors=True)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline and not list(runs_dir.glob("*/complete.json")):
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if len(list(runs_dir.glob("*/complete.json"))) == 1:
            break
    assert len(list(runs_dir.glob("*/complete.json"))) == 1, "expected to kill the study between its two runs"
    assert main(["study", str(path)]) == 0  # finished runs are always reused
    pd.testing.assert_frame_equal(_per_image(runs_dir), _per_image(reference_run))


def test_failed_run_is_recorded_and_study_exits_nonzero(tmp_path: Path) -> None:
    path = _write_study(tmp_path, extra="")
    text = path.read_text().replace("lr = 3e-3", "lr = 1e12")
    path.write_text(text)
    code = main(["study", str(path)])
    assert code == 1
    runs_dir = tmp_path / "runs" / "tiny"
    failed = list(runs_dir.glob("*/failed.json"))
    assert failed, "a diverging run must leave failed.json"
    info = json.loads(failed[0].read_text())
    assert "RunError" in info["error"] or "finite" in info["error"].lower()
    runs = pd.read_csv(runs_dir / "tables" / "runs.csv")
    assert set(runs["status"]) <= {"failed", "complete"} and (runs["status"] == "failed").any()


def test_dask_executor_gives_the_same_tables(reference_run: Path, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        study = load_study(_write_study(tmp_path))
        outcome = run_study(study, scheduler=cluster.scheduler_address, report=False)
    assert not outcome.failures
    pd.testing.assert_frame_equal(_per_image(outcome.runs_dir), _per_image(reference_run))


def test_bad_inputs_exit_2(tmp_path: Path) -> None:
    assert main(["study", str(tmp_path / "nope.toml")]) == 2
    path = _write_study(tmp_path)
    assert main(["study", str(path), "--set", "train.lrr=1"]) == 2
    assert main(["train", str(path), "--arm", "nope"]) == 2
    assert not (tmp_path / "runs" / "tiny").exists() or not list((tmp_path / "runs" / "tiny").glob("*/spec.json"))


def test_run_ids_change_with_the_config() -> None:
    from robustseg.pipeline.plan import DataSpec, plan_runs

    splits = pd.DataFrame({"image_id": ["a", "b", "c"], "patient_id": ["p", "q", "r"], "fold": [-1, 0, 1]})
    data = DataSpec("folder", "/x", "Trans-thalamic", "pascal", 32)
    a = plan_runs(build_study({"seeds": [0]}), data, splits, [])
    b = plan_runs(build_study({"seeds": [0], "train": {"lr": 1e-3}}), data, splits, [])
    c = plan_runs(build_study({"seeds": [0]}), data, splits.assign(fold=[0, -1, 1]), [])
    assert len({a[0].run_id, b[0].run_id, c[0].run_id}) == 3
    assert a[0].run_id == plan_runs(build_study({"seeds": [0]}), data, splits, [])[0].run_id


@pytest.mark.parametrize(("extra", "fragment"), [
    ("[arms.bad]\nloss.name = 'hybrid'\nloss.a = 0.9\nloss.b = 0.5\n", "[arms.bad]: hybrid loss a=0.9, b=0.5"),
    ("[arms.bad]\nmodel.widthh = 3\n", "[arms.bad]: model 'attention_unet': unknown option(s) widthh (valid: "),
    ("[arms.bad]\nloss.name = 'dicee'\n", "[arms.bad]: key 'loss.name' = 'dicee'; expected one of "),
])
def test_bad_arm_options_fail_before_training(tmp_path: Path, extra: str, fragment: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_study(tmp_path, extra=extra)
    assert main(["study", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert fragment in err
    assert not list((tmp_path / "runs").glob("*/*/spec.json"))


def test_bad_data_folder_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_study(tmp_path)
    assert main(["study", str(path), "--set", "data.source=folder", "--set", f"data.path={tmp_path / 'nope'}"]) == 2
    assert "nope" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_external_test_set_is_scored_like_the_test_set(tmp_path: Path) -> None:
    from robustseg.data.phantom import generate_phantom
    from robustseg.report import build_report

    ext = generate_phantom(tmp_path / "ext", n=8, seed=5, size=(320, 220))
    extra = f'[data.external.scanner_b]\nsource = "fetal_head"\npath = "{ext}"\n'
    study = load_study(_write_study(tmp_path, extra=extra), overrides=["seeds=[0]"])
    outcome = run_study(study, report=False)
    assert not outcome.failures
    df = pd.read_csv(outcome.runs_dir / "tables" / "per_image.csv.gz")
    ext_rows = df[df["testset"] == "scanner_b"]
    assert ext_rows["image_id"].nunique() == 8 and set(ext_rows["perturbation"]) == {"none"}
    assert set(df.loc[df["testset"] == "test", "perturbation"]) == {"none", "gaussian_noise"}
    report = build_report(outcome.runs_dir, tmp_path / "reports").read_text()
    assert "scanner_b" in report
