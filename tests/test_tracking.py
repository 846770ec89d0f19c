"""Experiment tracking: a tiny study logs to a real local MLflow store and to real TensorBoard event files, and
both are read back (MlflowClient, EventAccumulator) and compared with the run folders' own tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustseg.config import load_study
from robustseg.pipeline.artifacts import RunResult, RunStatus
from robustseg.pipeline.events import EpochEnd, ReportWritten, RunFinished, RunStarted
from robustseg.pipeline.study import prepare, run_study
from robustseg.track.base import Tracker, final_metrics
from tests._tiny import tiny_study

pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")

EPOCHS = 2


def _study_file(tmp: Path, tracking: str, extra: str = "") -> Path:
    path = tmp / f"{tracking}.toml"
    text = tiny_study("trk", seeds="[0, 1]", phantom_n=24, max_epochs=EPOCHS, bootstrap=20)
    text = text.replace('source = "phantom"\n', f'source = "phantom"\npath = "{tmp}/phantom"\n')  # generated once
    path.write_text(text + f'tracking = "{tracking}"\nruns_dir = "{tmp}/runs-{tracking}"\n'
                           f'reports_dir = "{tmp}/reports-{tracking}"\n{extra}')
    return path


def _global_dice(run_dir: Path) -> dict[str, float]:
    """Pooled Dice per class of the clean test set, from the per-image table (independently of robustseg)."""
    t = pd.read_csv(run_dir / "per_image.csv.gz")
    t = t[(t["testset"] == "test") & (t["perturbation"] == "none") & (~t["postprocessed"])]
    s = t.groupby("class")[["tp", "fp", "fn"]].sum()
    return {c: float(2 * r.tp / (2 * r.tp + r.fp + r.fn)) for c, r in s.iterrows() if 2 * r.tp + r.fp + r.fn > 0}


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny study with MLflow (MLflow's default local store in the working directory) and with
    TensorBoard (two local worker processes: epochs arrive through the pool's event queue)."""
    import os

    tmp = tmp_path_factory.mktemp("tracking")
    old = os.getcwd()
    saved_uri = os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.chdir(tmp)
    try:
        ml = run_study(load_study(_study_file(tmp, "mlflow")))
        tb = run_study(load_study(_study_file(tmp, "tensorboard", "workers = 2\n")))
        import mlflow

        uri = mlflow.get_tracking_uri()  # what the study used: MLflow's default in this folder
        plain = prepare(load_study(_study_file(tmp, "none")))
    finally:
        os.chdir(old)
        if saved_uri is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved_uri
    return {"tmp": tmp, "mlflow": ml, "tensorboard": tb, "uri": uri, "plain_ids": sorted(r.run_id for r in plain.runs)}


def test_tracking_does_not_change_run_ids_or_results(tracked: dict) -> None:
    ml, tb = tracked["mlflow"], tracked["tensorboard"]
    assert not ml.failures and not tb.failures and not ml.tracking_errors and not tb.tracking_errors
    ids = sorted(r.run_id for r in ml.results)
    assert ids == sorted(r.run_id for r in tb.results) == tracked["plain_ids"] and len(ids) == 2
    for run_id in ids:
        a = pd.read_csv(ml.runs_dir / run_id / "per_image.csv.gz")
        b = pd.read_csv(tb.runs_dir / run_id / "per_image.csv.gz")
        pd.testing.assert_frame_equal(a, b)


def test_mlflow_records_read_back(tracked: dict) -> None:
    from mlflow.tracking import MlflowClient

    ml = tracked["mlflow"]
    client = MlflowClient(tracking_uri=tracked["uri"])
    assert tracked["uri"].startswith(("sqlite:", "file:")) and str(tracked["tmp"]) in tracked["uri"]
    experiment = client.get_experiment_by_name("trk")
    runs = client.search_runs([experiment.experiment_id])
    study_runs = [r for r in runs if r.data.tags.get("robustseg.kind") == "study"]
    child = {r.data.tags["robustseg.run_id"]: r for r in runs if r.data.tags.get("robustseg.kind") == "run"}
    assert len(study_runs) == 1 and sorted(child) == sorted(r.run_id for r in ml.results)
    study_run = study_runs[0]
    assert study_run.info.status == "FINISHED" and study_run.data.params["runs_planned"] == "2"
    artifacts = {a.path for a in client.list_artifacts(study_run.info.run_id, "report")}
    assert "report/report.md" in artifacts
    for run_id, run in child.items():
        run_dir = ml.runs_dir / run_id
        spec = json.loads((run_dir / "spec.json").read_text())
        assert run.info.status == "FINISHED" and run.info.run_name == run_id
        assert run.data.tags["mlflow.parentRunId"] == study_run.info.run_id
        params = run.data.params
        assert params["run_id"] == run_id and params["seed"] == str(spec["seed"])
        assert params["arm.model"] == "attention_unet" and params["arm.train.lr"] == str(spec["arm"]["train"]["lr"])
        history = pd.read_csv(run_dir / "history.csv")
        logged = client.get_metric_history(run.info.run_id, "val_loss")
        assert [m.step for m in logged] == list(range(1, EPOCHS + 1))  # every epoch once
        np.testing.assert_allclose([m.value for m in logged], history["val_loss"], rtol=1e-12)
        for cls, dice in _global_dice(run_dir).items():
            assert run.data.metrics[f"test/global_dice/{cls}"] == pytest.approx(dice, abs=1e-12)
        assert run.data.metrics["run/epochs_run"] == EPOCHS


def test_tensorboard_event_files_read_back(tracked: dict) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = tracked["tensorboard"]
    logdir = tb.runs_dir / "tensorboard"
    for result in tb.results:
        run_dir = tb.runs_dir / result.run_id
        acc = EventAccumulator(str(logdir / result.run_id))
        acc.Reload()
        history = pd.read_csv(run_dir / "history.csv")
        for column in ("val_loss", "train_loss", "lr", "val_dice_csp"):
            events = acc.Scalars(column)
            assert [e.step for e in events] == list(range(1, EPOCHS + 1))
            np.testing.assert_allclose([e.value for e in events], history[column], rtol=1e-6)  # float32 in TB
        for cls, dice in _global_dice(run_dir).items():
            assert acc.Scalars(f"test/global_dice/{cls}")[-1].value == pytest.approx(dice, abs=1e-6)
        texts = acc.Tags()["tensors"]
        assert "run_id/text_summary" in texts and "params/text_summary" in texts
        (run_id_text,) = acc.Tensors("run_id/text_summary")
        assert run_id_text.tensor_proto.string_val[0].decode() == result.run_id
    study = EventAccumulator(str(logdir / "_study"))
    study.Reload()
    (report,) = study.Tensors("report/text_summary")
    assert "# " in report.tensor_proto.string_val[0].decode()  # the report's Markdown


class _Broken(Tracker):
    """Logs nothing and fails on metrics: what a tracking server going away mid-study looks like."""

    def __init__(self, runs_dir: Path) -> None:
        super().__init__(None, runs_dir)
        self.closed: list[str] = []

    def _open_study(self, total: int, done: int) -> None:
        pass

    def _open_run(self, run_id: str, params: dict[str, str]) -> None:
        pass

    def _log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        raise ConnectionError("tracking server went away")

    def _close_run(self, run_id: str, result: RunResult) -> None:
        self.closed.append(run_id)

    def _log_report(self, path: Path) -> None:
        pass

    def _close_all(self, ok: bool) -> None:
        pass


def test_a_failing_tracker_is_recorded_never_raised(tracked: dict) -> None:
    ml = tracked["mlflow"]
    run_id = ml.results[0].run_id
    tracker = _Broken(ml.runs_dir)
    tracker(RunStarted(1, 0))
    tracker(EpochEnd(run_id, 1, EPOCHS, {"val_loss": 1.0}))
    tracker(RunFinished(RunResult(run_id, RunStatus.COMPLETE)))
    tracker(ReportWritten(ml.report))
    assert tracker.closed == [run_id]  # the run is still closed
    assert len(tracker.errors) == 2 and all("tracking server went away" in e for e in tracker.errors)


def test_mlflow_file_store_replay(tracked: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that sent no epoch events (a Dask or SLURM worker) is logged in full from its folder, here into
    an MLflow file store (``mlruns/``; MLflow 3 needs MLFLOW_ALLOW_FILE_STORE for it)."""
    from mlflow.tracking import MlflowClient

    from robustseg.track.mlflow_tracker import MlflowTracker

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    ml = tracked["mlflow"]
    uri = (tmp_path / "mlruns").as_uri()
    study = load_study(_study_file(tracked["tmp"], "mlflow"), overrides=[f'execution.tracking_uri="{uri}"'])
    tracker = MlflowTracker(study, ml.runs_dir)
    result = ml.results[0]
    tracker(RunStarted(1, 0))
    tracker(RunFinished(result))
    tracker.close()
    assert not tracker.errors
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("trk").experiment_id],
                                "tags.`robustseg.kind` = 'run'")
    history = pd.read_csv(ml.runs_dir / result.run_id / "history.csv")
    assert [m.value for m in client.get_metric_history(run.info.run_id, "val_loss")] == list(history["val_loss"])
    assert run.data.metrics == pytest.approx({**run.data.metrics, **final_metrics(ml.runs_dir / result.run_id)})


def test_an_unusable_tracking_store_is_one_line_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from robustseg.cli import main

    study = _study_file(tmp_path, "mlflow", 'tracking_uri = "bogus-scheme://nowhere"\n')
    assert main(["study", str(study)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "key 'execution.tracking_uri' = 'bogus-scheme://nowhere'" in err
    assert not (tmp_path / "runs-mlflow").exists()
