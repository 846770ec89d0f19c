"""MLflow backend (``execution.tracking = "mlflow"``, extra ``robustseg[mlflow]``).

One MLflow experiment per study (``execution.tracking_experiment``, default the study's name). The study is
a parent run (``study <name>``) holding the report folder as artifacts; each robustseg run is a child run
named by its run id (tag ``robustseg.run_id``), with the spec as parameters, per-epoch metrics at step =
epoch and the final per-class metrics. A run executed again (killed earlier, or corrupt) marks the
earlier MLflow run of the same run id that was left RUNNING as KILLED.

The tracking store is ``execution.tracking_uri``, or MLflow's default (``MLFLOW_TRACKING_URI``, else the
working directory: ``mlflow.db`` with artifacts in ``mlruns/`` in MLflow 3, ``mlruns/`` in MLflow 2).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from robustseg._extras import require
from robustseg.errors import InputError
from robustseg.pipeline.artifacts import RunResult, RunStatus
from robustseg.track.base import Tracker

BATCH = 100
"""Params / metrics per ``log_batch`` call (MLflow accepts up to 100 params and 1000 metrics)."""

STATUS = {RunStatus.COMPLETE: "FINISHED", RunStatus.SKIPPED: "FINISHED", RunStatus.FAILED: "FAILED"}


class MlflowTracker(Tracker):
    def __init__(self, study: Any, runs_dir: Path) -> None:
        super().__init__(study, runs_dir)
        where = f"{study.path or 'study'}: execution.tracking = 'mlflow'"
        self._mlflow = require("mlflow", where)
        for logger in ("mlflow", "alembic"):  # store set-up chatter ("Creating initial MLflow database tables")
            logging.getLogger(logger).setLevel(logging.WARNING)
        from mlflow.tracking import MlflowClient

        uri = study.execution.tracking_uri or self._mlflow.get_tracking_uri()
        name = study.execution.tracking_experiment or study.name
        try:
            self.client = MlflowClient(tracking_uri=uri)
            found = self.client.get_experiment_by_name(name)
            self.experiment_id = found.experiment_id if found is not None else self.client.create_experiment(name)
        except Exception as exc:  # noqa: BLE001 - any store error: one line before any work
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise InputError(f"{study.path or 'study'}: key 'execution.tracking_uri' = {uri!r}: cannot open the "
                             f"MLflow tracking store ({type(exc).__name__}: {first})") from None
        self.uri = uri
        self._study_run: str | None = None
        self._runs: dict[str, str] = {}  # robustseg run id -> MLflow run id

    def _tags(self, **extra: str) -> dict[str, str]:
        return {"robustseg.study": self.study.name, **extra}

    def _open_study(self, total: int, done: int) -> None:
        from mlflow.entities import Param

        run = self.client.create_run(self.experiment_id, run_name=f"study {self.study.name}",
                                     tags=self._tags(**{"robustseg.kind": "study"}))
        self._study_run = run.info.run_id
        params = {"study": self.study.name, "study_hash": self.study.file_hash, "runs_planned": str(total),
                  "runs_already_complete": str(done), "arms": ",".join(a.name for a in self.study.arms),
                  "folds": str(self.study.folds), "seeds": str(self.study.seeds)}
        self.client.log_batch(self._study_run, params=[Param(k, v) for k, v in params.items()])

    def _open_run(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        for stale in self.client.search_runs([self.experiment_id], f"tags.`robustseg.run_id` = '{run_id}' "
                                             "and attributes.status = 'RUNNING'"):
            self.client.set_terminated(stale.info.run_id, "KILLED")
        tags = self._tags(**{"robustseg.kind": "run", "robustseg.run_id": run_id})
        if self._study_run is not None:
            tags["mlflow.parentRunId"] = self._study_run
        run = self.client.create_run(self.experiment_id, run_name=run_id, tags=tags)
        self._runs[run_id] = run.info.run_id
        items = [Param(k, v) for k, v in params.items()]
        for k in range(0, len(items), BATCH):
            self.client.log_batch(run.info.run_id, params=items[k:k + BATCH])

    def _log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v in metrics.items()]
        for k in range(0, len(items), BATCH):
            self.client.log_batch(self._runs[run_id], metrics=items[k:k + BATCH])

    def _close_run(self, run_id: str, result: RunResult) -> None:
        mlflow_id = self._runs.pop(run_id)
        self.client.set_tag(mlflow_id, "robustseg.status", result.status.value)
        if result.error:
            self.client.set_tag(mlflow_id, "robustseg.error", result.error[:5000])
        self.client.set_terminated(mlflow_id, STATUS[result.status])

    def _log_report(self, path: Path) -> None:
        if self._study_run is None:
            return
        self.client.log_artifacts(self._study_run, str(path.parent), artifact_path="report")
        self.client.set_tag(self._study_run, "robustseg.report", str(path.resolve()))
        self.client.set_terminated(self._study_run, "FINISHED")
        self._study_run = None

    def _close_all(self, ok: bool) -> None:
        for mlflow_id in list(self._runs.values()):
            self.client.set_terminated(mlflow_id, "KILLED")
        self._runs.clear()
        if self._study_run is not None:
            self.client.set_terminated(self._study_run, "FINISHED" if ok else "FAILED")
            self._study_run = None
