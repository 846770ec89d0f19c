"""Study orchestration: prepare data and splits, plan runs, execute them, collect tables, write the report.

This module wires the pieces; it holds no maths. Layout of ``runs/<study>/``:

- ``study.json``          the resolved study (defaults + file + overrides), its hash, and the data set's
                          ``class_names`` (label order) and ``small_structures``, which the report uses
- ``index.csv``           the data index (one row per image, with patient and metadata)
- ``splits-<fp>.csv``     image -> fold (-1 = held-out test), named by its fingerprint
- ``plan.json``           the runs of the current plan (run id, arm, fold, seed)
- ``reference.npz``       held-out test images and masks at input size, and the pixel sizes, so that
                          ensembles and figures can be rebuilt without the data folder; with native
                          evaluation (``eval.resolution``, default) also the test masks at native size
                          (``native_masks``, ``native_hw``, ``native_pixel_mm``), which the report scores
                          ensembles and QC against, like the runs' tables
- ``reference_features.csv.gz``  structure measurements of the training/validation reference masks
                          (the normal range for the ground-truth-free anomaly score), at the tables' resolution
- ``<run_id>/``           one folder per run (see ``robustseg.pipeline.runner``)
- ``tables/``             the collected per-image, feature, history and run tables
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustseg._io import atomic_write, read_json, write_csv, write_json
from robustseg._outdir import Output, claim_output_dir, claim_report_dir, expand
from robustseg._paths import check_component, check_output_dir, clean_stale_temp
from robustseg._warnings import logged
from robustseg.config import Study
from robustseg.errors import InputError
from robustseg.pipeline.artifacts import COMPLETE, RunResult, RunStatus, read_failure, run_state, verify_run
from robustseg.pipeline.events import OnEvent, ReportWritten, RunFinished, RunInvalid, RunStarted, ignore
from robustseg.pipeline.inputs import LoadedData, fingerprint, load_data
from robustseg.pipeline.perturbed import DAMAGE_FILE
from robustseg.pipeline.plan import DataSpec, RunSpec, plan_runs, split_fingerprint
from robustseg.pipeline.runner import execute_run
from robustseg.track import open_tracker


@dataclass
class StudyOutcome:
    runs_dir: Path
    results: list[RunResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    """Runs that completed with finite but absurd validation losses (``complete.json`` ``diverged``)."""
    report: Path | None = None
    seconds: float = 0.0
    tracking_errors: list[str] = field(default_factory=list)
    """What the tracker (``execution.tracking``) could not log; the study itself went on."""


@dataclass(frozen=True)
class Prepared:
    study: Study
    runs_dir: Path
    data: DataSpec
    splits: pd.DataFrame
    suite: list[tuple[str, int]]
    external: list[tuple[str, DataSpec]]
    runs: list[RunSpec]


def _phantom_style(study: Study) -> str:
    """``data.phantom_style``, checked (before anything is written)."""
    from robustseg.data.phantom import get_style

    try:
        get_style(study.data.phantom_style)
    except InputError as exc:
        raise InputError(f"{study.path or 'study'}: key 'data.phantom_style': {exc}") from None
    return study.data.phantom_style


def _phantom_path(study: Study, runs_dir: Path) -> Path:
    """Generate the study's phantom once (into a temporary folder renamed into place)."""
    from robustseg.data.phantom import generate_phantom

    d = study.data
    style = _phantom_style(study)
    tag = "" if style == "default" else f"-{style}"
    target = expand(d.path) if d.path else runs_dir / "data" / f"phantom{tag}-n{d.phantom_n}-s{d.phantom_seed}"
    if target.parent.is_dir():  # phantoms half-written by a killed process
        clean_stale_temp(target.parent, depth=1, prefix=f"{target.name}.tmp-")
    if not target.exists():
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        generate_phantom(tmp, n=d.phantom_n, seed=d.phantom_seed, style=style)  # nothing left on failure
        try:
            tmp.rename(target)
        except OSError:  # another process generated the same phantom meanwhile (same recipe, same files)
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_suite(study: Study) -> list[tuple[str, int]]:
    """The (perturbation, severity) pairs of the study, restricted to ``perturb.severities``."""
    from robustseg.perturb import resolve_suite as resolve

    spec = study.perturb.suite
    if spec in ("", "none", []):
        return []
    keep = set(study.perturb.severities)
    return [(n, int(s)) for n, s in resolve(spec) if int(s) in keep]


def check_geometry(study: Study, loaded: LoadedData, splits: pd.DataFrame) -> None:
    """Where the study sets the probe geometry (``perturb.geometry`` / ``apex`` / ``opening_deg``) or the data give it
    per image (``meta.csv`` column), resolve it for every test image now, so a setting that does not fit the images
    fails before any training (one line naming the image)."""
    from robustseg.data.check import geometry_image
    from robustseg.data.geometry import GeometrySetting, resolve_geometry
    from robustseg.data.io import read_image
    from robustseg.data.splits import folds_for

    pt = study.perturb
    setting = GeometrySetting(pt.geometry, tuple(pt.apex) if pt.apex else None, pt.opening_deg or None,
                              pt.geometry_column)
    per_image = setting.column in loaded.index.columns
    if setting.mode == "auto" and setting.apex is None and setting.opening_deg is None and not per_image:
        return  # estimated from each image by the runs; estimation always gives a geometry
    test = loaded.index.iloc[np.flatnonzero(folds_for(loaded.index["image_id"], splits) == -1)]
    for i in range(len(test)):
        row = test.iloc[i]
        try:
            resolve_geometry(geometry_image(test, i, read_image), setting, row.get(setting.column))
        except InputError as exc:
            raise InputError(f"{study.path or 'study'}: perturb.geometry: {row['image_path']}: {exc}") from None


def study_classes(study: Study) -> tuple[str, ...]:
    """The class names of the study's data set (dataset.json of an nnU-Net data set; the fetal four otherwise)."""
    from robustseg.data.index import dataset_classes
    from robustseg.labels import CLASS_NAMES

    d = study.data
    if d.source != "nnunet" or not d.path:  # no path: 'data.path is required' is raised by prepare
        return CLASS_NAMES
    try:
        return dataset_classes(d.source, d.path)
    except InputError as exc:
        raise InputError(f"{study.path or 'study'}: key 'data.path': {exc}") from None


def validate_arms(study: Study, class_names: tuple[str, ...] | None = None) -> None:
    """Build every arm's training config, loss and model once (for the data set's ``class_names``; by default
    :func:`study_classes`), so a bad option fails before any training."""
    from robustseg.nn import losses, models
    from robustseg.pipeline.runner import train_config

    where = study.path or "study"
    check_seeds(study.seeds, f"{where}: seeds")
    names = study_classes(study) if class_names is None else tuple(class_names)
    size = study.data.size
    for arm in study.arms:
        try:
            cfg = train_config(arm.to_dict(), seed=0, size=size, class_names=names)
            kw = dict(cfg.loss_kwargs)
            if losses.uses_class_weights(cfg.loss) and "class_weights" not in kw:
                kw["class_weights"] = [1.0] * len(names)
            losses.create(cfg.loss, **kw)
            model = models.create(cfg.model, in_channels=1, num_classes=len(names), **cfg.model_kwargs)
        except InputError as exc:
            raise InputError(f"{where} [arms.{arm.name}]: {exc}") from None
        divisor = int(getattr(model, "size_divisor", 1))
        if size % divisor:
            depth = getattr(model, "depth", "?")
            lower, upper = size - size % divisor, size + divisor - size % divisor
            raise InputError(f"{where} [arms.{arm.name}]: data.size = {size} is not a multiple of {divisor}, "
                             f"which model {cfg.model!r} with depth {depth} needs (e.g. {lower or upper} or {upper})")


def check_seeds(seeds: list[int], what: str) -> None:
    """Seeds are integers in 0 .. 2**32 - 1 (what NumPy and torch accept alike)."""
    for seed in seeds:
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
            raise InputError(f"{what}: seed {seed!r}; expected an integer in 0..{2**32 - 1}")


def _legacy_runs(folder: Path) -> list[str] | None:
    """A study's run folder written before output markers existed (it holds ``study.json``, ``plan.json`` or the
    default tuning storage ``tune.db``)."""
    return [] if any((folder / name).is_file() for name in ("study.json", "plan.json", "tune.db")) else None


def claim_outputs(study: Study, force: bool = False) -> tuple[Output, Output]:
    """The study's ``runs_dir/<name>`` and ``reports_dir/<name>``, claimed before any work (writes nothing): the
    name is one safe path component; each folder is new, empty or one robustseg made for this study (else refused
    unless ``force``), writable, outside the data folders, and the two do not overlap."""
    where = study.path or "study"
    name = check_component(study.name, f"{where}: name")
    ex = study.execution
    inputs = [study.data.path or None, *(e.path for e in study.external)]
    runs = claim_output_dir(Path(ex.runs_dir) / name, "study", force=force, inputs=inputs,
                            what=f"{where}: execution.runs_dir", legacy=_legacy_runs)
    reports = claim_report_dir(Path(ex.reports_dir) / name, runs.path, force=force, inputs=inputs,
                               what=f"{where}: execution.reports_dir")
    return runs, reports


def output_dirs(study: Study, force: bool = False) -> tuple[Path, Path]:
    """``(runs_dir/<name>, reports_dir/<name>)``, checked before any work (:func:`claim_outputs`)."""
    runs, reports = claim_outputs(study, force)
    return runs.path, reports.path


def prepare(study: Study, force: bool = False) -> Prepared:
    """Everything before training: data, splits, perturbation list, plan; saved under runs/<study>/.

    ``force``: use output folders that are not empty and were not made by robustseg (see :func:`claim_outputs`).
    """
    from robustseg.data.index import dataset_classes
    from robustseg.data.splits import make_splits

    runs_out, reports_out = claim_outputs(study, force)
    validate_arms(study)
    for folder in (runs_out.path, reports_out.path):  # what a killed earlier process left behind
        clean_stale_temp(folder)
    runs_dir = runs_out.path
    d = study.data
    if not d.path and d.source != "phantom":
        raise InputError(f"{study.path or 'study'}: key 'data.path' is required for source {d.source!r}")
    if d.source == "phantom" and not d.path:
        _phantom_style(study)
        runs_out.create()  # the generated phantom goes inside: the folder (and its marker) first
    path = _phantom_path(study, runs_dir) if d.source == "phantom" else expand(d.path)
    from robustseg.data.io import LABELS

    small = tuple(d.small_structures)
    colormap = LABELS if d.source == "nnunet" else d.colormap  # nnU-Net masks hold class indices
    data = DataSpec(d.source, str(path.resolve()), d.plane, colormap, d.size, small, d.frame)
    loaded = load_data(data)  # bad data fails here, before anything is written under runs/
    _check_classes_present(study, loaded.index)
    s = study.split
    strata = tuple(f"has_{name}" for name in small)  # patients stratified on the data set's small structures
    splits = make_splits(loaded.index, test_fraction=s.test_fraction, k_folds=s.k_folds, seed=s.seed,
                         strata=strata)
    external = [(e.name, DataSpec(e.source, str(expand(e.path).resolve()), e.plane, e.colormap, d.size, small, e.frame))
                for e in study.external]
    if data.source == "dicom":
        from robustseg.data.dicom_seg import require_highdicom

        require_highdicom()  # test-set predictions of DICOM images are written as DICOM SEG too
    for name, spec in external:  # validate external sets before any training
        names = dataset_classes(spec.source, spec.path)
        if names != loaded.class_names:
            raise InputError(f"{study.path or 'study'}: external test set {name!r} has the classes "
                             f"{', '.join(names)}; expected those of the data set ({', '.join(loaded.class_names)})")
        load_data(spec)
    suite = resolve_suite(study)
    if suite:
        check_geometry(study, loaded, splits)
    prints = {"data": fingerprint(loaded)} | {name: fingerprint(load_data(spec)) for name, spec in external}
    runs = plan_runs(study, data, splits, suite, external, prints)

    runs_out.create()
    fp = split_fingerprint(splits)
    _write_csv_once(runs_dir / f"splits-{fp}.csv", splits)
    write_json(runs_dir / "study.json", {"study": study.raw, "hash": study.file_hash,
                                                "file": str(study.path) if study.path else None,
                                                "class_names": list(loaded.class_names),
                                                "small_structures": list(small)})
    write_json(runs_dir / "plan.json", [{"run_id": r.run_id, "arm": r.arm, "fold": r.fold, "seed": r.seed}
                                               for r in runs])
    write_csv(runs_dir / "index.csv", loaded.index)
    _save_reference(runs_dir, loaded, splits, study.eval.resolution, colormap)
    return Prepared(study, runs_dir, data, splits, suite, external, runs)


def _check_classes_present(study: Study, index: pd.DataFrame) -> None:
    """A data set in which a foreground class appears in no mask (or every mask is empty) is an InputError unless
    ``data.allow_absent_classes``: training on it would report a structure that was never there."""
    from robustseg.data.check import absent_classes_text

    text = absent_classes_text(index)
    if text and not study.data.allow_absent_classes:
        raise InputError(f"{study.path or 'study'}: data set {study.data.path or 'phantom'}: {text}; set "
                         "data.allow_absent_classes = true to run anyway")


def _write_csv_once(path: Path, df: pd.DataFrame) -> None:
    if not path.exists():
        write_csv(path, df)


def _save_reference(runs_dir: Path, loaded: LoadedData, splits: pd.DataFrame, resolution: str = "native",
                    colormap: Any = "pascal") -> None:
    """``reference.npz`` (test set) and ``reference_features.csv.gz`` (train/val masks) at the tables' resolution.

    ``images`` / ``masks`` / ``pixel_mm`` are always the model-size arrays (figures); with native evaluation the
    file also holds ``native_masks`` (zero-padded to the largest image), ``native_hw`` and ``native_pixel_mm``,
    and the reference features are measured on the native masks, as the runs' tables are.
    """
    from robustseg.data.splits import folds_for
    from robustseg.pipeline.native import mask_features, pack_masks, read_native
    from robustseg.qc.anomaly import structure_features

    folds = folds_for(loaded.index["image_id"], splits)
    test = np.flatnonzero(folds == -1)
    trainval = np.flatnonzero(folds != -1)
    ids = loaded.index["image_id"].to_numpy().astype(str)
    extra: dict[str, np.ndarray] = {"resolution": np.asarray(resolution)}
    if resolution == "native":
        native = read_native(loaded.index.iloc[test], colormap)
        extra["native_masks"], extra["native_hw"] = pack_masks(native)
        extra["native_pixel_mm"] = native.pixel_mm

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, image_id=ids[test], images=loaded.images[test], masks=loaded.masks[test],
                                pixel_mm=loaded.pixel_mm[test], **extra)

    atomic_write(runs_dir / "reference.npz", save)
    if resolution == "native":  # a few images at a time: native masks are large
        rows = loaded.index.iloc[trainval]
        feats = pd.concat([mask_features(read_native(rows.iloc[k:k + 64], colormap), class_names=loaded.class_names)
                           for k in range(0, len(rows), 64)], ignore_index=True)
    else:
        feats = structure_features(loaded.masks[trainval], pixel_mm=loaded.pixel_mm[trainval],
                                   image_ids=list(ids[trainval]), class_names=loaded.class_names)
    write_csv(runs_dir / "reference_features.csv.gz", feats)


CLUSTERS = ("slurm",)
"""Clusters ``robustseg study --cluster`` can start (dask-jobqueue)."""


def _executor(study: Study, scheduler: str | None, cluster: str | None = None) -> Any:
    from robustseg.pipeline.executors import DaskExecutor, LocalExecutor, PoolExecutor

    ex = study.execution
    where = str(study.path or "study")
    if cluster is not None and cluster not in CLUSTERS:
        raise InputError(f"--cluster {cluster!r}: expected one of {', '.join(CLUSTERS)}")
    if cluster is not None and scheduler:
        raise InputError("--cluster and --scheduler: give one of them (--cluster starts its own scheduler)")
    if cluster == "slurm" or (ex.executor == "slurm" and not scheduler):
        from robustseg.pipeline.slurm import SlurmExecutor

        return SlurmExecutor(ex.slurm, study.name, where, threads=ex.threads)  # jobs start with the first runs
    address = scheduler or (ex.scheduler if ex.executor == "dask" else "")
    if ex.executor == "dask" and not address:
        raise InputError(f"{study.path or 'study'}: executor 'dask' needs 'execution.scheduler' or --scheduler ADDRESS")
    if address:
        return DaskExecutor(address, threads=ex.threads)
    if ex.workers > 1:
        return PoolExecutor(ex.workers, threads=ex.threads)
    return LocalExecutor(threads=ex.threads)


def run_study(study: Study, *, scheduler: str | None = None, cluster: str | None = None,
              on_event: OnEvent | None = None, report: bool = True, force: bool = False) -> StudyOutcome:
    """Run every pending run of the plan, then collect tables and write the report.

    Finished runs (``complete.json``) are always reused; partial or failed ones are run again.
    ``on_event`` receives :mod:`robustseg.pipeline.events` (run counts, epochs, finished runs).
    ``force``: write into output folders that are not empty and were not made by robustseg.
    ``scheduler``: a running Dask scheduler's address; ``cluster = "slurm"``: start SLURM jobs as Dask workers
    (``[execution.slurm]``, :mod:`robustseg.pipeline.slurm`).
    """
    on_event = on_event or ignore
    started = time.time()
    runs_dir, _ = output_dirs(study, force)  # claimed, nothing written yet
    with warnings.catch_warnings(record=True) as early:  # kept for runs_dir/warnings.log once prepare made it
        warnings.simplefilter("always")
        tracker = open_tracker(study, runs_dir)  # a missing extra or store, an unreachable scheduler: before any work
        if tracker is not None:
            on_event = _both(on_event, tracker)
        try:
            executor = _executor(study, scheduler, cluster)
        except BaseException:
            if tracker is not None:
                tracker.close(ok=False)
            raise
    ok = prepared = False
    try:
        prep = prepare(study, force)
        prepared = True
        with logged(prep.runs_dir, "study"):
            for w in early:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        outcome = StudyOutcome(prep.runs_dir)
        states = {r.run_id: run_state(prep.runs_dir / r.run_id) for r in prep.runs}
        pending = [r for r in prep.runs if states[r.run_id] != "complete"]
        on_event(RunStarted(total=len(prep.runs), done=len(prep.runs) - len(pending)))
        for r in pending:
            if states[r.run_id] == "corrupt":  # reported, then run again: never trusted
                on_event(RunInvalid(r.run_id, verify_run(prep.runs_dir / r.run_id) or "changed"))
        with logged(prep.runs_dir, "study"):  # Python warnings go to runs_dir/warnings.log, not the terminal
            for result in executor.map(pending, prep.runs_dir, on_event):
                outcome.results.append(result)
                on_event(RunFinished(result))
            executor.close()  # a cluster's jobs end before the report is built
            collect_tables(prep.runs_dir)
        outcome.failures = [f"{r.run_id}: {r.error or '?'}" for r in outcome.results if r.status is RunStatus.FAILED]
        outcome.diverged = [f"{r.run_id}: {r.summary.get('diverged_reason')}" for r in outcome.results
                            if r.ok and r.summary.get("diverged")]
        if report:
            outcome.report = write_report(prep.runs_dir, study, force=force)
            with logged(prep.runs_dir, "tracking"):
                on_event(ReportWritten(outcome.report))
        ok = True
    finally:
        executor.close()
        if tracker is not None:  # its warnings go to the study's log once prepare made the folder, else nowhere
            with logged(runs_dir, "tracking") if prepared else warnings.catch_warnings(record=True):
                tracker.close(ok=ok)
    if tracker is not None:
        outcome.tracking_errors = list(tracker.errors)
    outcome.seconds = time.time() - started
    return outcome


def _both(first: OnEvent, second: OnEvent) -> OnEvent:
    """One ``on_event`` that calls ``first`` (progress) and then ``second`` (the tracker)."""

    def call(event: Any) -> None:
        first(event)
        second(event)

    return call


def collect_tables(runs_dir: Path) -> dict[str, pd.DataFrame]:
    """Concatenate the tables of the plan's finished runs into ``runs_dir/tables/``."""
    plan = _read_saved(runs_dir, "plan.json")
    per_image, features, history, damage, runs = [], [], [], [], []
    for entry in plan:
        run_dir = runs_dir / entry["run_id"]
        state = run_state(run_dir)  # "complete" only when every file verifies against complete.json
        info = {**entry, "status": state}
        if state == "complete":
            done = read_json(run_dir / COMPLETE)
            info.update({k: v for k, v in done.items() if not isinstance(v, dict | list)})
            info["collapsed"] = ";".join(done.get("collapsed", []))  # structures never predicted on validation
            per_image.append(pd.read_csv(run_dir / "per_image.csv.gz"))
            features.append(pd.read_csv(run_dir / "features.csv.gz"))
            history.append(pd.read_csv(run_dir / "history.csv").assign(**entry))
            if (run_dir / DAMAGE_FILE).is_file():
                damage.append(pd.read_csv(run_dir / DAMAGE_FILE, dtype={"image_id": str}))
        elif state == "failed":
            info["error"] = read_failure(run_dir)
        elif state == "corrupt":
            info["error"] = f"corrupt: {verify_run(run_dir)}"
        runs.append(info)
    out_dir = runs_dir / "tables"
    out_dir.mkdir(exist_ok=True)
    tables = {"runs": pd.DataFrame(runs)}
    if per_image:
        tables.update({"per_image": pd.concat(per_image, ignore_index=True),
                       "features": pd.concat(features, ignore_index=True),
                       "history": pd.concat(history, ignore_index=True)})
    if damage:  # every run replays the same conditions: one row per image and condition
        tables["damage"] = (pd.concat(damage, ignore_index=True).drop(columns="run_id", errors="ignore")
                            .drop_duplicates(["image_id", "perturbation", "severity", "stage"]).reset_index(drop=True))
    for name in ("per_image", "features", "history", "damage"):  # never leave tables of an earlier plan behind
        (out_dir / f"{name}.csv.gz").unlink(missing_ok=True)
    for name, df in tables.items():
        write_csv(out_dir / f"{name}.csv.gz" if name != "runs" else out_dir / "runs.csv", df)
    return tables


def _read_saved(runs_dir: Path, name: str) -> Any:
    """A study-level JSON file of ``runs_dir``; a missing or damaged one is an InputError naming it."""
    import json

    path = runs_dir / name
    try:
        return read_json(path)
    except FileNotFoundError:
        raise InputError(f"{path}: missing; expected a study run folder written by 'robustseg study'") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: damaged ({type(exc).__name__}); run 'robustseg study' again to rewrite it") from None


def _reports_dir(runs_dir: Path, force: bool = False) -> Path:
    """The report folder that ``runs_dir/study.json`` names, claimed (checked, nothing written)."""
    saved = _read_saved(runs_dir, "study.json")
    try:
        raw = saved["study"]
        name = check_component(raw["name"], f"{runs_dir / 'study.json'}: name")
        reports_dir = expand(raw["execution"]["reports_dir"]) / name
        data = raw.get("data", {})
        inputs = [data.get("path") or None, *(e.get("path") for e in (data.get("external") or {}).values())]
    except (KeyError, TypeError, AttributeError):
        raise InputError(f"{runs_dir / 'study.json'}: damaged (no study name or reports_dir); "
                         "run 'robustseg study' again to rewrite it") from None
    return claim_report_dir(reports_dir, runs_dir, force=force, inputs=inputs,
                            what=f"{runs_dir / 'study.json'}: execution.reports_dir").path


def write_report(runs_dir: Path, study: Study | None = None, *, force: bool = False) -> Path:
    """Build ``reports/<study>/report.md`` from the saved tables of ``runs_dir``."""
    from robustseg.report import build_report

    reports_dir = _reports_dir(runs_dir, force)
    _check_reference(runs_dir)
    return build_report(runs_dir, reports_dir, force=force)


def _check_reference(runs_dir: Path) -> None:
    """``reference.npz`` (held-out test images and masks) must be there and readable for a report."""
    from robustseg.report.load import load_reference

    load_reference(runs_dir)


def report_from_run_dir(run_dir: str | Path, *, force: bool = False) -> Path:
    """``robustseg report RUN_DIR``: rebuild the report from saved tables, without training. Every output folder
    is checked before anything is written."""
    runs_dir = expand(run_dir)
    if not (runs_dir / "study.json").is_file() or not (runs_dir / "plan.json").is_file():
        raise InputError(f"{runs_dir}: not a study run folder (expected study.json and plan.json, "
                         "as written by 'robustseg study')")
    _check_reference(runs_dir)
    check_output_dir(runs_dir / "tables", f"{runs_dir}: tables")
    _reports_dir(runs_dir, force)
    collect_tables(runs_dir)
    return write_report(runs_dir, force=force)


def train_one(study: Study, *, arm: str | None = None, fold: int = 0, seed: int | None = None,
              on_event: OnEvent | None = None, force: bool = False) -> RunResult:
    """``robustseg train``: prepare the study and execute the one run (arm, fold, seed)."""
    arm_name = arm or study.arms[0].name
    study.arm(arm_name)  # validates the name
    if fold not in study.folds:
        raise InputError(f"--fold {fold}: expected one of {study.folds}")
    seed = study.seeds[0] if seed is None else seed
    check_seeds([seed], "--seed")
    prep = prepare(study, force)
    matches = [r for r in prep.runs if r.arm == arm_name and r.fold == fold and r.seed == seed]
    if not matches:  # a seed outside the study's list: plan it on the fly
        from dataclasses import replace
        config = study.config.model_copy(update={"seeds": [seed]})
        matches = [r for r in plan_runs(replace(study, config=config), prep.data, prep.splits, prep.suite, prep.external,
                                        prep.runs[0].payload["data_fingerprints"])
                   if r.arm == arm_name and r.fold == fold]
    spec = matches[0]
    result = execute_run(spec, prep.runs_dir, threads=study.execution.threads, on_event=on_event)
    if result.status is RunStatus.FAILED:
        from robustseg.errors import RunError
        raise RunError(f"run {spec.run_id} failed: {result.error}")
    return result
