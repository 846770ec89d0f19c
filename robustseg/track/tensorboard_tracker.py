"""TensorBoard backend (``execution.tracking = "tensorboard"``, extra ``robustseg[tensorboard]``).

Event files under ``execution.tracking_uri`` (default ``<runs_dir>/<study>/tensorboard``), one folder per
run id: the parameters and run id as text, per-epoch scalars at step = epoch, the final per-class metrics
at step = the last epoch. The study folder (``_study``) holds the plan and the report (``report.md`` as
text, and its path). View with ``tensorboard --logdir <folder>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from robustseg._extras import require
from robustseg._paths import check_output_dir
from robustseg.pipeline.artifacts import RunResult
from robustseg.track.base import Tracker

STUDY_FOLDER = "_study"


def _table(params: dict[str, str]) -> str:
    """Parameters as a Markdown table (TensorBoard renders text summaries as Markdown)."""
    rows = [f"| {k} | {v.replace('|', '/')} |" for k, v in sorted(params.items())]
    return "\n".join(["| parameter | value |", "|---|---|", *rows])


class TensorBoardTracker(Tracker):
    def __init__(self, study: Any, runs_dir: Path) -> None:
        super().__init__(study, runs_dir)
        require("tensorboard", f"{study.path or 'study'}: execution.tracking = 'tensorboard'")
        from torch.utils.tensorboard import SummaryWriter

        self._writer_class = SummaryWriter
        folder = study.execution.tracking_uri or str(Path(runs_dir) / "tensorboard")
        self.logdir = check_output_dir(folder, f"{study.path or 'study'}: execution.tracking_uri")
        self._writers: dict[str, Any] = {}
        self._study_writer: Any = None

    def _open_study(self, total: int, done: int) -> None:
        self._study_writer = self._writer_class(log_dir=str(self.logdir / STUDY_FOLDER))
        self._study_writer.add_text("study", _table({
            "study": self.study.name, "study_hash": self.study.file_hash, "runs_planned": str(total),
            "runs_already_complete": str(done), "arms": ",".join(a.name for a in self.study.arms)}))

    def _open_run(self, run_id: str, params: dict[str, str]) -> None:
        writer = self._writer_class(log_dir=str(self.logdir / run_id))
        writer.add_text("run_id", run_id)
        writer.add_text("params", _table(params))
        self._writers[run_id] = writer

    def _log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        writer = self._writers[run_id]
        for key, value in metrics.items():
            writer.add_scalar(key, value, global_step=step)
        writer.flush()

    def _close_run(self, run_id: str, result: RunResult) -> None:
        writer = self._writers.pop(run_id)
        writer.add_text("status", result.status.value + (f": {result.error}" if result.error else ""))
        writer.close()

    def _log_report(self, path: Path) -> None:
        if self._study_writer is None:
            self._study_writer = self._writer_class(log_dir=str(self.logdir / STUDY_FOLDER))
        self._study_writer.add_text("report_path", str(path.resolve()))
        self._study_writer.add_text("report", path.read_text(encoding="utf-8"))
        self._study_writer.flush()

    def _close_all(self, ok: bool) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        if self._study_writer is not None:
            self._study_writer.close()
            self._study_writer = None
