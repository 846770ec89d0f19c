"""Study orchestration: prepare data and splits, plan runs, execute them, collect tables, write the report.

This module wires the pieces; it holds no maths. Layout of ``runs/<study>/``:

- ``study.json``          the resolved study (defaults + file + overrides) and its hash
- ``index.csv``           the data index (one row per image, with patient and metadata)
- ``splits-<fp>.csv``     image -> fold (-1 = held-out test), named by its fingerprint
- ``plan.json``           the runs of the current plan (run id, arm, fold, seed)
- ``reference.npz``       held-out test images and masks at input size, and the pixel sizes, so that
                          ensembles and figures can be rebuilt without the data folder
- ``reference_features.csv.gz``  structure measurements of the training/validation reference masks
                          (the normal range for the ground-truth-free anomaly score)
- ``<run_id>/``           one folder per run (see ``robustseg.pipeline.runner``)
- ``tables/``             the collected per-image, feature, history and run tables
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustseg.config import Study
from robustseg.errors import InputError
from robustseg.pipeline.plan import DataSpec, RunSpec, plan_runs, split_fingerprint
from robustseg.pipeline.runner import (
    COMPLETE,
    FAILED,
    LoadedData,
    execute_run,
    fingerprint,
    load_data,
    run_state,
    write_json_atomic,
)


@dataclass
class StudyOutcome:
    runs_dir: Path
    results: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    report: Path | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class Prepared:
    study: Study
    runs_dir: Path
    data: DataSpec
    splits: pd.DataFrame
    suite: list[tuple[str, int]]
    external: list[tuple[str, DataSpec]]
    runs: list[RunSpec]


def _phantom_path(study: Study, runs_dir: Path) -> Path:
    """Generate the study's phantom once (into a temporary folder renamed into place)."""
    from robustseg.data.phantom import generate_phantom, get_style

    d = study.raw["data"]
    style = d.get("phantom_style", "default")
    try:
        get_style(style)
    except InputError as exc:
        raise InputError(f"{study.path or 'study'}: key 'data.phantom_style': {exc}") from None
    tag = "" if style == "default" else f"-{style}"
    target = Path(d["path"]) if d["path"] else runs_dir / "data" / f"phantom{tag}-n{d['phantom_n']}-s{d['phantom_seed']}"
    if not target.exists():
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        generate_phantom(tmp, n=d["phantom_n"], seed=d["phantom_seed"], style=style)
        try:
            tmp.rename(target)
        except OSError:  # another process generated the same phantom meanwhile (same recipe, same files)
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_suite(study: Study) -> list[tuple[str, int]]:
    """The (perturbation, severity) pairs of the study, restricted to ``perturb.severities``."""
    from robustseg.perturb import resolve_suite as resolve

    spec = study.raw["perturb"]["suite"]
    if spec in ("", "none", []):
        return []
    keep = set(study.raw["perturb"]["severities"])
    return [(n, int(s)) for n, s in resolve(spec) if int(s) in keep]


def validate_arms(study: Study) -> None:
    """Build every arm's training config, loss and model once, so a bad option fails before any training."""
    from dataclasses import asdict

    from robustseg.labels import CLASS_NAMES
    from robustseg.nn import losses, models
    from robustseg.pipeline.runner import train_config

    where = study.path or "study"
    for arm in study.arms:
        try:
            cfg = train_config(asdict(arm), seed=0, size=int(study.raw["data"]["size"]))
            kw = dict(cfg.loss_kwargs)
            if cfg.loss in losses.USES_CLASS_WEIGHTS and "class_weights" not in kw:
                kw["class_weights"] = [1.0] * len(CLASS_NAMES)
            losses.create(cfg.loss, **kw)
            models.create(cfg.model, in_channels=1, num_classes=len(CLASS_NAMES), **cfg.model_kwargs)
        except InputError as exc:
            raise InputError(f"{where} [arms.{arm.name}]: {exc}") from None


def prepare(study: Study) -> Prepared:
    """Everything before training: data, splits, perturbation list, plan; saved under runs/<study>/."""
    from robustseg.data.splits import make_splits

    validate_arms(study)
    runs_dir = Path(study.raw["execution"]["runs_dir"]) / study.name
    d = study.raw["data"]
    if not str(d["path"]) and d["source"] != "phantom":
        raise InputError(f"{study.path or 'study'}: key 'data.path' is required for source {d['source']!r}")
    path = _phantom_path(study, runs_dir) if d["source"] == "phantom" else Path(d["path"])
    data = DataSpec(d["source"], str(path.resolve()), d["plane"], d["colormap"], int(d["size"]))
    loaded = load_data(data)  # bad data fails here, before anything is written under runs/
    s = study.raw["split"]
    splits = make_splits(loaded.index, test_fraction=s["test_fraction"], k_folds=s["k_folds"], seed=s["seed"])
    external = [(e.name, DataSpec(e.source, str(Path(e.path).resolve()), e.plane, e.colormap, int(d["size"])))
                for e in study.external]
    for _, spec in external:
        load_data(spec)  # validate external sets before any training
    suite = resolve_suite(study)
    prints = {"data": fingerprint(loaded)} | {name: fingerprint(load_data(spec)) for name, spec in external}
    runs = plan_runs(study, data, splits, suite, external, prints)

    runs_dir.mkdir(parents=True, exist_ok=True)
    fp = split_fingerprint(splits)
    _write_csv_once(runs_dir / f"splits-{fp}.csv", splits)
    write_json_atomic(runs_dir / "study.json", {"study": study.raw, "hash": study.file_hash,
                                                "file": str(study.path) if study.path else None})
    write_json_atomic(runs_dir / "plan.json", [{"run_id": r.run_id, "arm": r.arm, "fold": r.fold, "seed": r.seed}
                                               for r in runs])
    tmp_index = runs_dir / f"index.tmp-{os.getpid()}.csv"
    loaded.index.to_csv(tmp_index, index=False)
    tmp_index.replace(runs_dir / "index.csv")
    _save_reference(runs_dir, loaded, splits)
    return Prepared(study, runs_dir, data, splits, suite, external, runs)


def _write_csv_once(path: Path, df: pd.DataFrame) -> None:
    if not path.exists():
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        df.to_csv(tmp, index=False)
        tmp.replace(path)


def _save_reference(runs_dir: Path, loaded: LoadedData, splits: pd.DataFrame) -> None:
    from robustseg.data.splits import folds_for
    from robustseg.qc.anomaly import structure_features

    folds = folds_for(loaded.index["image_id"], splits)
    test = np.flatnonzero(folds == -1)
    trainval = np.flatnonzero(folds != -1)
    ids = loaded.index["image_id"].to_numpy().astype(str)
    tmp = runs_dir / f"reference.tmp-{os.getpid()}.npz"
    np.savez_compressed(tmp, image_id=ids[test], images=loaded.images[test], masks=loaded.masks[test],
                        pixel_mm=loaded.pixel_mm[test])
    tmp.replace(runs_dir / "reference.npz")
    feats = structure_features(loaded.masks[trainval], pixel_mm=loaded.pixel_mm[trainval], image_ids=list(ids[trainval]))
    tmp_csv = runs_dir / f"reference_features.tmp-{os.getpid()}.csv.gz"
    feats.to_csv(tmp_csv, index=False)
    tmp_csv.replace(runs_dir / "reference_features.csv.gz")


def _executor(study: Study, scheduler: str | None, console: Any) -> Any:
    from robustseg.pipeline.executors import DaskExecutor, LocalExecutor, PoolExecutor

    ex = study.raw["execution"]
    address = scheduler or (ex["scheduler"] if ex["executor"] == "dask" else "")
    if ex["executor"] == "dask" and not address:
        raise InputError(f"{study.path or 'study'}: executor 'dask' needs 'execution.scheduler' or --scheduler ADDRESS")
    if address:
        return DaskExecutor(address, threads=ex["threads"])
    if ex["workers"] > 1:
        return PoolExecutor(ex["workers"], threads=ex["threads"])
    return LocalExecutor(threads=ex["threads"])


def run_study(study: Study, *, resume: bool = True, scheduler: str | None = None, console: Any = None,
              report: bool = True) -> StudyOutcome:
    """Run every pending run of the plan, then collect tables and write the report.

    Finished runs (``complete.json``) are always skipped; partial or failed ones are run again.
    ``resume`` is accepted for the CLI contract (resuming is always on and always safe).
    """
    started = time.time()
    prep = prepare(study)
    outcome = StudyOutcome(prep.runs_dir)
    pending = [r for r in prep.runs if run_state(prep.runs_dir / r.run_id) != "complete"]
    executor = _executor(study, scheduler, console)
    try:
        results = _run_with_progress(executor, pending, prep.runs_dir, console, total=len(prep.runs))
    finally:
        if hasattr(executor, "close"):
            executor.close()
    outcome.results = results
    outcome.failures = [f"{r['run_id']}: {r.get('error', '?')}" for r in results if r.get("status") == "failed"]
    collect_tables(prep.runs_dir)
    if report:
        outcome.report = write_report(prep.runs_dir, study)
    outcome.seconds = time.time() - started
    return outcome


def _run_with_progress(executor: Any, pending: list[RunSpec], runs_dir: Path, console: Any, total: int) -> list[dict]:
    from robustseg.pipeline.executors import LocalExecutor

    if console is None:
        return list(executor.map(pending, runs_dir))
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    results = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as bar:
        runs_task = bar.add_task("runs", total=total, completed=total - len(pending))
        epoch_task = bar.add_task("epochs", total=1, visible=isinstance(executor, LocalExecutor))

        def on_epoch(spec: RunSpec, epoch: int, max_epochs: int, metrics: dict[str, float]) -> None:
            loss = metrics.get("val_loss", float("nan"))
            bar.update(epoch_task, total=max_epochs, completed=epoch,
                       description=f"{spec.run_id} val_loss {loss:.4f}")

        if isinstance(executor, LocalExecutor):
            executor.on_epoch = on_epoch
        for result in executor.map(pending, runs_dir):
            results.append(result)
            bar.advance(runs_task)
            status = result.get("status")
            if status == "failed":
                console.print(f"[red]failed[/red] {result['run_id']}: {result.get('error')}")
    return results


def collect_tables(runs_dir: Path) -> dict[str, pd.DataFrame]:
    """Concatenate the tables of the plan's finished runs into ``runs_dir/tables/``."""
    plan = json.loads((runs_dir / "plan.json").read_text())
    per_image, features, history, runs = [], [], [], []
    for entry in plan:
        run_dir = runs_dir / entry["run_id"]
        state = run_state(run_dir)
        info = {**entry, "status": state}
        if state == "complete":
            info.update({k: v for k, v in json.loads((run_dir / COMPLETE).read_text()).items()
                         if not isinstance(v, dict | list)})
            per_image.append(pd.read_csv(run_dir / "per_image.csv.gz"))
            features.append(pd.read_csv(run_dir / "features.csv.gz"))
            history.append(pd.read_csv(run_dir / "history.csv").assign(**entry))
        elif state == "failed":
            info["error"] = json.loads((run_dir / FAILED).read_text()).get("error")
        runs.append(info)
    out_dir = runs_dir / "tables"
    out_dir.mkdir(exist_ok=True)
    tables = {"runs": pd.DataFrame(runs)}
    if per_image:
        tables.update({"per_image": pd.concat(per_image, ignore_index=True),
                       "features": pd.concat(features, ignore_index=True),
                       "history": pd.concat(history, ignore_index=True)})
    for name in ("per_image", "features", "history"):  # never leave tables of an earlier plan behind
        (out_dir / f"{name}.csv.gz").unlink(missing_ok=True)
    for name, df in tables.items():
        df.to_csv(out_dir / f"{name}.csv.gz" if name != "runs" else out_dir / "runs.csv", index=False)
    return tables


def write_report(runs_dir: Path, study: Study | None = None) -> Path:
    """Build ``reports/<study>/report.md`` from the saved tables of ``runs_dir``."""
    from robustseg.report import build_report

    saved = json.loads((runs_dir / "study.json").read_text())["study"]
    reports_dir = Path(saved["execution"]["reports_dir"]) / saved["name"]
    return build_report(runs_dir, reports_dir)


def report_from_run_dir(run_dir: str | Path, console: Any = None) -> Path:
    """``robustseg report RUN_DIR``: rebuild the report from saved tables, without training."""
    runs_dir = Path(run_dir)
    if not (runs_dir / "study.json").is_file() or not (runs_dir / "plan.json").is_file():
        raise InputError(f"{runs_dir}: not a study run folder (expected study.json and plan.json, "
                         "as written by 'robustseg study')")
    collect_tables(runs_dir)
    return write_report(runs_dir)


def train_one(study: Study, *, arm: str | None = None, fold: int = 0, seed: int | None = None,
              console: Any = None) -> dict[str, Any]:
    """``robustseg train``: prepare the study and execute the one run (arm, fold, seed)."""
    arm_name = arm or study.arms[0].name
    study.arm(arm_name)  # validates the name
    if fold not in study.folds:
        raise InputError(f"--fold {fold}: expected one of {study.folds}")
    seed = study.seeds[0] if seed is None else seed
    prep = prepare(study)
    matches = [r for r in prep.runs if r.arm == arm_name and r.fold == fold and r.seed == seed]
    if not matches:  # a seed outside the study's list: plan it on the fly
        from dataclasses import replace
        raw = {**study.raw, "seeds": [seed]}
        matches = [r for r in plan_runs(replace(study, raw=raw), prep.data, prep.splits, prep.suite, prep.external,
                                        prep.runs[0].payload["data_fingerprints"])
                   if r.arm == arm_name and r.fold == fold]
    spec = matches[0]
    threads = study.raw["execution"]["threads"]
    if console is None:
        result = execute_run(spec, prep.runs_dir, threads=threads)
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as bar:
            task = bar.add_task(f"{spec.run_id} epochs", total=None)

            def on_epoch(epoch: int, max_epochs: int, metrics: dict[str, float]) -> None:
                small = " ".join(f"{c} {metrics.get(f'val_dice_{c}', float('nan')):.3f}" for c in ("csp", "lv"))
                bar.update(task, total=max_epochs, completed=epoch,
                           description=f"{spec.run_id} val_loss {metrics.get('val_loss', float('nan')):.4f} {small}")

            result = execute_run(spec, prep.runs_dir, threads=threads, progress=on_epoch)
    if result.get("status") == "failed":
        from robustseg.errors import RunError
        raise RunError(f"run {spec.run_id} failed: {result.get('error')}")
    return {**result, "run_dir": prep.runs_dir / spec.run_id}
