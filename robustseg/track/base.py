"""What a tracker logs, read from a run folder, and the event handling every tracker shares.

A backend implements five hooks: ``_open_study`` (the plan), ``_open_run`` (parameters and run id),
``_log_metrics`` (epoch or final metrics at a step), ``_close_run`` (the run's status) and ``_log_report``.
:class:`Tracker` turns the study's events into those calls, logs each epoch once (live from ``EpochEnd``,
or replayed from ``history.csv`` when the run finishes) and records, never raises, what fails to log.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from robustseg._io import read_json
from robustseg.pipeline.artifacts import COMPLETE, SPEC, RunResult, RunStatus
from robustseg.pipeline.events import EpochEnd, Event, ReportWritten, RunFinished, RunStarted

PARAM_MAX_CHARS = 500
"""Longest parameter value logged (MLflow's limit); longer values are cut and end in '...'."""

HISTORY_RENAME = {"seconds": "epoch_seconds"}


def flatten(obj: Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts as ``{"a.b.c": "value"}`` strings (lists as JSON), cut at :data:`PARAM_MAX_CHARS`.

    >>> flatten({"arm": {"model": "unet", "train": {"lr": 0.001}}, "seeds": [0, 1]})
    {'arm.model': 'unet', 'arm.train.lr': '0.001', 'seeds': '[0, 1]'}
    """
    out: dict[str, str] = {}
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    text = json.dumps(obj) if isinstance(obj, list | tuple) else str(obj)
    if len(text) > PARAM_MAX_CHARS:
        text = text[:PARAM_MAX_CHARS - 3] + "..."
    return {prefix[:-1]: text}


def run_params(spec: Mapping[str, Any], run_id: str) -> dict[str, str]:
    """The parameters of a run: its run id, arm, fold, seed, and the spec's settings (``spec.json``)."""
    params = {"run_id": run_id, "fold": str(spec.get("fold")), "seed": str(spec.get("seed"))}
    for key in ("arm", "split", "eval", "plugins"):
        if key in spec:
            params.update(flatten({key: spec[key]}) if key != "plugins" else
                          {f"plugin.{p['kind']}": f"{p['object']} ({p['distribution']} {p['version']})"
                           for p in spec[key]})
    data = spec.get("data", {})
    params.update({f"data.{k}": str(data[k]) for k in ("source", "size", "plane") if k in data})
    pairs = spec.get("perturb", {}).get("pairs", [])
    params["perturb.conditions"] = str(len(pairs))
    params["perturb.names"] = flatten({"x": sorted({p[0] for p in pairs})})["x"]
    params["version"] = str(spec.get("version"))
    return params


def epoch_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    """One epoch's finite numbers (``history.csv`` row or ``EpochEnd.metrics``), without the epoch itself."""
    out = {}
    for key, value in row.items():
        if key == "epoch" or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            out[HISTORY_RENAME.get(key, key)] = float(value)
    return out


def final_metrics(run_dir: Path) -> dict[str, float]:
    """Per-class metrics of the clean held-out test set (raw predictions) and the run's summary numbers.

    ``test/global_dice/<class>`` (pixels pooled over images), ``test/per_image_dice/<class>``,
    ``test/hd95_mm/<class>`` and ``test/nsd/<class>`` (per-image means; images where the metric is NaN
    left out), and from ``complete.json``: best epoch, epochs run, best validation loss, seconds.
    """
    from robustseg.metrics.table import aggregate_global, aggregate_per_image

    out: dict[str, float] = {}
    table = pd.read_csv(run_dir / "per_image.csv.gz")
    clean = table[(table["testset"] == "test") & (table["perturbation"] == "none") & (~table["postprocessed"])]
    pooled = aggregate_global(clean)
    for cls, value in zip(pooled["class"], pooled["dice"], strict=True):
        out[f"test/global_dice/{cls}"] = float(value)
    per_image = aggregate_per_image(clean)
    for metric, name in (("dice_mean", "per_image_dice"), ("hd95_mm_mean", "hd95_mm"), ("nsd_mean", "nsd")):
        if metric in per_image.columns:
            for cls, value in zip(per_image["class"], per_image[metric], strict=True):
                out[f"test/{name}/{cls}"] = float(value)
    summary = read_json(run_dir / COMPLETE)
    for key in ("best_epoch", "epochs_run", "best_val_loss", "train_seconds", "eval_seconds"):
        if isinstance(summary.get(key), int | float) and not isinstance(summary.get(key), bool):
            out[f"run/{key}"] = float(summary[key])
    return {k: v for k, v in out.items() if math.isfinite(v)}


class Tracker:
    """Event callback shared by the backends (see module docstring). ``errors``: what could not be logged."""

    def __init__(self, study: Any, runs_dir: Path) -> None:
        self.study = study
        self.runs_dir = Path(runs_dir)
        self.errors: list[str] = []
        self._open: set[str] = set()
        self._logged: dict[str, set[int]] = {}

    # --- events ------------------------------------------------------------------------------------
    def __call__(self, event: Event) -> None:
        try:
            if isinstance(event, RunStarted):
                self._open_study(event.total, event.done)
            elif isinstance(event, EpochEnd):
                self._ensure_run(event.run_id)
                self._epoch(event.run_id, event.epoch, event.metrics)
            elif isinstance(event, RunFinished):
                self._finish(event.result)
            elif isinstance(event, ReportWritten):
                self._log_report(Path(event.path))
        except Exception as exc:  # noqa: BLE001 - tracking never stops a study; recorded, printed at the end
            self.errors.append(f"{type(event).__name__}: {type(exc).__name__}: {exc}")

    def _ensure_run(self, run_id: str) -> None:
        if run_id in self._open:
            return
        spec_path = self.runs_dir / run_id / SPEC
        spec = read_json(spec_path) if spec_path.is_file() else {}
        self._open_run(run_id, run_params(spec, run_id))
        self._open.add(run_id)
        self._logged[run_id] = set()

    def _epoch(self, run_id: str, epoch: int, metrics: Mapping[str, Any]) -> None:
        if epoch in self._logged[run_id]:
            return
        self._log_metrics(run_id, epoch_metrics(metrics), step=int(epoch))
        self._logged[run_id].add(epoch)

    def _finish(self, result: RunResult) -> None:
        run_id = result.run_id
        run_dir = self.runs_dir / run_id
        self._ensure_run(run_id)
        try:
            history = run_dir / "history.csv"
            if history.is_file():  # epochs a remote worker did not report live
                for row in pd.read_csv(history).to_dict("records"):
                    self._epoch(run_id, int(row["epoch"]), row)
            if result.status is not RunStatus.FAILED:
                metrics = final_metrics(run_dir)
                self._log_metrics(run_id, metrics, step=int(metrics.get("run/epochs_run", 0)))
        finally:
            self._close_run(run_id, result)
            self._open.discard(run_id)

    def close(self, ok: bool = True) -> None:
        """End what is still open (``ok``: the study finished; else it stopped on an error); errors are
        recorded, not raised."""
        try:
            self._close_all(ok)
        except Exception as exc:  # noqa: BLE001
            self.errors.append(f"close: {type(exc).__name__}: {exc}")

    # --- backend hooks -----------------------------------------------------------------------------
    def _open_study(self, total: int, done: int) -> None:
        raise NotImplementedError

    def _open_run(self, run_id: str, params: dict[str, str]) -> None:
        raise NotImplementedError

    def _log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def _close_run(self, run_id: str, result: RunResult) -> None:
        raise NotImplementedError

    def _log_report(self, path: Path) -> None:
        raise NotImplementedError

    def _close_all(self, ok: bool) -> None:
        raise NotImplementedError
