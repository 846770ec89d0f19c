"""Experiment tracking (``execution.tracking``): MLflow or TensorBoard, fed by the study's progress events.

A tracker is one more ``on_event`` callback (:mod:`robustseg.pipeline.events`): it sees the plan
(``RunStarted``), every epoch (``EpochEnd``, from in-process and local-worker runs), every finished run
(``RunFinished``: the run folder is read for its spec, ``history.csv`` and per-image table, so runs on a
Dask or SLURM cluster, which send no epoch events, are logged in full too) and the report
(``ReportWritten``). Per run it logs the parameters (the run spec, flattened), the run id, every epoch's
losses, learning rate and validation Dice, and the final per-class metrics of the clean held-out test set;
the study logs its report folder.

Tracking changes no result, so ``execution.tracking*`` is not part of any run id. The tracker packages are
extras (``robustseg[mlflow]``, ``robustseg[tensorboard]``) imported only here, when a study asks for them.
A failure to log during the study never stops it: it is recorded (:attr:`Tracker.errors`) and the CLI
prints it at the end; a tracking store that cannot be opened is an ``InputError`` before any work.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from robustseg.config import Study
    from robustseg.track.base import Tracker

TRACKERS = ("none", "mlflow", "tensorboard")


def open_tracker(study: Study, runs_dir: Path) -> Tracker | None:
    """The tracker ``study.execution.tracking`` asks for (None for ``"none"``), opened and checked."""
    kind = study.execution.tracking
    if kind == "mlflow":
        from robustseg.track.mlflow_tracker import MlflowTracker

        return MlflowTracker(study, runs_dir)
    if kind == "tensorboard":
        from robustseg.track.tensorboard_tracker import TensorBoardTracker

        return TensorBoardTracker(study, runs_dir)
    return None
