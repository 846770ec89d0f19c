"""Execute one run of a study: train, then evaluate on the held-out test set(s), clean and perturbed.

A run folder ``<runs_dir>/<run_id>/`` holds:

- ``spec.json``            everything that changed the result (the run id hashes it)
- ``checkpoint.pt``, ``history.csv``   from training
- ``per_image.csv.gz``     one row per test image x class x condition (see docs/architecture.md); the
                           ``resolution`` column says where it was scored: ``native`` (default,
                           ``eval.resolution``): probabilities un-padded, resized bilinearly to each
                           image's original size, then argmax, against the masks read at native size with
                           the native pixel size; ``model``: at the network's letterboxed input size
- ``features.csv.gz``      structure measurements of predicted and reference masks (clean test set), at the
                           same resolution (``resolution`` column)
- ``predictions/``         the clean test-set predictions (raw argmax, not post-processed) as palette PNGs
                           at native size, one ``<image_id>.png`` each (nnU-Net convention), coloured with
                           the data set's colour map: ``robustseg evaluate-folder`` re-scores them
- ``probs.npz``            clean test-set probabilities at model input size (letterboxed), uint8-quantised,
                           for ensembles and ground-truth-free uncertainty (the report maps them to native
                           size itself)
- ``qc.csv.gz``, ``masks.npz``  single-model GT-free QC scores and argmax masks of the clean and perturbed
                           test sets (``robustseg.qc.scores``)
- ``damage.csv.gz``        per test image and perturbation condition the in-fan SSIM / PSNR of the perturbed image
                           against the clean one (``robustseg.pipeline.perturbed``; perturbed at native resolution
                           by default, ``perturb.stage``)
- ``postprocess.json``     the validation-set decision on post-processing
- ``complete.json``        written last and atomically: the run is finished; holds a manifest (size and
                           SHA-256 of every other file) checked on every load, and ``diverged``
- ``failed.json``          instead of ``complete.json`` when the run failed (error + traceback)

The function is self-contained (it loads what it needs from the spec) so a Dask worker can call it.
"""

from __future__ import annotations

import fcntl
import functools
import os
import platform
import shutil
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustseg._io import read_json, write_csv, write_json
from robustseg.labels import CLASS_NAMES, SMALL_CLASSES
from robustseg.pipeline.artifacts import (
    COMPLETE,
    FAILED,
    SPEC,
    RunResult,
    RunStatus,
    divergence,
    file_manifest,
    run_state,
)
from robustseg.pipeline.events import EpochEnd, OnEvent, RunWaiting, ignore
from robustseg.pipeline.inputs import LoadedData, load_data
from robustseg.pipeline.native import (
    PREDICTIONS,
    PREDICTIONS_SEG,
    NativeSet,
    evaluate_probs,
    read_native,
    seg_writer,
    write_predictions,
)
from robustseg.pipeline.perturbed import DAMAGE_FILE, perturb_settings, perturbed_test_set
from robustseg.pipeline.plan import DataSpec, RunSpec


def train_config(arm: dict[str, Any], seed: int, size: int, class_names: tuple[str, ...] = CLASS_NAMES,
                 small_classes: tuple[int, ...] = SMALL_CLASSES) -> Any:
    """The ``TrainConfig`` of an arm (``ArmSpec.to_dict()``, as in a run's spec.json) for one seed, input size and class list."""
    from robustseg.nn.train import TrainConfig

    return TrainConfig(
        model=arm["model"], model_kwargs=dict(arm["model_kwargs"]), loss=arm["loss"], loss_kwargs=dict(arm["loss_kwargs"]),
        class_weight_smoothing=arm["class_weight_smoothing"], oversampling=arm["oversampling"],
        seed=seed, size=size, class_names=tuple(class_names), small_classes=tuple(small_classes), **arm["train"],
    )


def score(probs: np.ndarray, masks: np.ndarray, image_ids: list[str], pixel_mm: np.ndarray,
          ev: dict[str, Any], *, postprocess: bool = False, class_names: tuple[str, ...] = CLASS_NAMES,
          small_classes: tuple[int, ...] = SMALL_CLASSES) -> pd.DataFrame:
    """Per-image table of argmax predictions (optionally post-processed: ``small_classes``) against reference
    masks; ``class_names``: the data set's classes."""
    from robustseg.metrics import per_image_table
    from robustseg.metrics.postprocess import postprocess as postprocess_labels

    pred = probs.argmax(axis=1).astype(np.uint8)
    if postprocess:
        pred = postprocess_labels(pred, classes=small_classes, min_size=ev["min_component_px"])
    return per_image_table(
        pred, masks, image_ids=image_ids, pixel_mm=pixel_mm, class_names=tuple(class_names),
        empty_policy=ev["empty_policy"], boundary=ev["boundary"], nsd_tolerance_mm=ev["nsd_tolerance_mm"],
    )


LOCK_POLL_S = 0.5
"""How often a process waiting for a run locked by another process retries the lock."""


def _lock_path(runs_dir: Path, run_id: str) -> Path:
    return runs_dir / f".{run_id}.lock"


def _acquire(lock: Any, path: Path, run_id: str, on_event: OnEvent) -> None:
    """Take the run's exclusive lock; while another process holds it, say so once and wait for it."""
    announced = False
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if not announced:
                try:
                    holder = path.read_text().strip()
                except OSError:
                    holder = ""
                on_event(RunWaiting(run_id, holder))
                announced = True
            time.sleep(LOCK_POLL_S)


def execute_run(spec: RunSpec, runs_dir: str | Path, *, threads: int = 0,
                on_event: OnEvent | None = None) -> RunResult:
    """Run ``spec`` into ``runs_dir/run_id``; never raises for failures inside the run.

    A finished run (its files verify) is skipped (:attr:`RunStatus.SKIPPED`); a failure is written to
    ``failed.json`` and returned as :attr:`RunStatus.FAILED`. ``on_event`` receives an :class:`EpochEnd` per
    training epoch, and a :class:`RunWaiting` when another process (a second study on the same folder, a
    Dask worker) is executing this run: this call then waits for it and uses its result.
    """
    on_event = on_event or ignore
    run_dir = Path(runs_dir) / spec.run_id
    if run_state(run_dir) == "complete":
        return RunResult(spec.run_id, RunStatus.SKIPPED, summary=read_json(run_dir / COMPLETE))
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    path = _lock_path(run_dir.parent, spec.run_id)
    with open(path, "a+") as lock:  # one process per run; "a+": never truncate the holder's note
        _acquire(lock, path, spec.run_id, on_event)
        lock.seek(0)
        lock.truncate()
        lock.write(f"{platform.node()} pid {os.getpid()}\n")
        lock.flush()
        if run_state(run_dir) == "complete":  # finished by the other process meanwhile: use its result
            return RunResult(spec.run_id, RunStatus.SKIPPED, summary=read_json(run_dir / COMPLETE))
        return _attempt(spec, run_dir, threads, on_event)


def _attempt(spec: RunSpec, run_dir: Path, threads: int, on_event: OnEvent) -> RunResult:
    if run_dir.exists():  # a partial, failed or corrupt earlier attempt: start clean
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    write_json(run_dir / SPEC, spec.payload)
    started = time.time()

    small = tuple(spec.payload.get("data", {}).get("small_structures", ()))

    def progress(epoch: int, max_epochs: int, metrics: dict[str, float]) -> None:
        on_event(EpochEnd(spec.run_id, epoch, max_epochs, dict(metrics), small))

    try:
        summary = _execute(spec, run_dir, threads=threads, progress=progress)
    except Exception as exc:  # recorded, never swallowed: the caller lists failures and exits non-zero
        error = f"{type(exc).__name__}: {exc}"
        seconds = time.time() - started
        failure = {"run_id": spec.run_id, "status": "failed", "error": error,
                   "traceback": traceback.format_exc(), "seconds": seconds}
        write_json(run_dir / FAILED, failure)
        return RunResult(spec.run_id, RunStatus.FAILED, error=error, seconds=seconds, summary=failure)
    seconds = time.time() - started
    history = pd.read_csv(run_dir / "history.csv") if (run_dir / "history.csv").is_file() else None
    diverged = divergence(history)
    summary.update({"run_id": spec.run_id, "status": "complete", "seconds": seconds,
                    "arm": spec.arm, "fold": spec.fold, "seed": spec.seed, "host": platform.node(),
                    "slurm_job_id": os.environ.get("SLURM_JOB_ID", ""),  # provenance: the job that ran it (if any)
                    "diverged": diverged is not None, "diverged_reason": diverged or ""})
    summary["files"] = file_manifest(run_dir)  # what "complete" promises: checked on every load
    write_json(run_dir / COMPLETE, summary)
    return RunResult(spec.run_id, RunStatus.COMPLETE, seconds=seconds, summary=summary)


def _version() -> str:
    from robustseg import __version__

    return __version__


def _execute(spec: RunSpec, run_dir: Path, *, threads: int,
             progress: Callable[[int, int, dict[str, float]], None] | None) -> dict[str, Any]:
    import torch

    from robustseg.data.splits import folds_for, load_splits
    from robustseg.metrics.postprocess import decide_postprocessing
    from robustseg.nn.device import select_device
    from robustseg.nn.environment import environment_record
    from robustseg.nn.predict import inference_model, load_model, predict_proba
    from robustseg.nn.train import train_run
    from robustseg.qc import scores as qc_scores
    from robustseg.qc.anomaly import save_heatmaps
    from robustseg.qc.collapse import collapsed_classes

    if threads:
        torch.set_num_threads(threads)
    p = spec.payload
    ev = p["eval"]
    data = load_data(DataSpec(**p["data"]))
    folds = folds_for(data.index["image_id"], load_splits(run_dir.parent / f"splits-{p['split']['fingerprint']}.csv"))
    train_idx = np.flatnonzero((folds != -1) & (folds != spec.fold))
    val_idx = np.flatnonzero(folds == spec.fold)
    test_idx = np.flatnonzero(folds == -1)

    cfg = train_config(p["arm"], spec.seed, p["data"]["size"], data.class_names, data.small_classes)
    t0, c0 = time.time(), time.process_time()
    result = train_run(cfg, (data.images[train_idx], data.masks[train_idx]), (data.images[val_idx], data.masks[val_idx]),
                       run_dir, progress=progress)
    train_seconds, train_cpu = time.time() - t0, time.process_time() - c0
    t1, c1 = time.time(), time.process_time()  # evaluation: everything after training

    device = select_device(cfg.device)
    model = inference_model(load_model(result.checkpoint, device)[0], device)  # folded once for every prediction
    bs = ev["batch_size"]
    predict = functools.partial(predict_proba, model, batch_size=bs, device=device, amp=cfg.amp)

    resolution = ev.get("resolution", "native")
    colormap = p["data"]["colormap"]

    def reference(loaded: LoadedData, idx: np.ndarray, cmap: Any = colormap) -> NativeSet:
        """The masks a run is scored against (native size from disk, or the model-size arrays), with their
        outlines extracted once for every condition they are scored under."""
        if resolution == "native":
            ref = read_native(loaded.index.iloc[idx], cmap)
        else:
            ref = NativeSet(loaded.index["image_id"].iloc[idx].astype(str).tolist(), list(loaded.masks[idx]),
                            loaded.pixel_mm[idx])
        return ref.prepared(len(loaded.class_names)) if ev["boundary"] else ref

    def evaluate(probs: np.ndarray, ref: NativeSet, **kw: Any) -> tuple[dict[bool, pd.DataFrame], pd.DataFrame]:
        return evaluate_probs(probs, ref, ev, class_names=data.class_names, small_classes=data.small_classes, **kw)

    # Post-processing decided on the validation fold (nnU-Net's rule: keep only if no class gets worse).
    val_probs = predict(data.images[val_idx])
    val_tables, _ = evaluate(val_probs, reference(data, val_idx), postprocess=(False, True))
    raw_val, post_val = val_tables[False], val_tables[True]
    collapsed = collapsed_classes(raw_val, background=data.class_names[0])
    decided = decide_postprocessing(raw_val, post_val)
    decision = {"apply": bool(decided.apply) if ev["postprocess"] == "auto" else ev["postprocess"] == "on",
                "rule_says": bool(decided.apply), "setting": ev["postprocess"], "reason": decided.reason,
                "comparison": decided.comparison.to_dict("records")}
    write_json(run_dir / "postprocess.json", decision)
    del val_probs

    tables = []
    test_ids = data.index["image_id"].iloc[test_idx].tolist()
    test_imgs = data.images[test_idx]
    test_ref = reference(data, test_idx)
    clean = predict(test_imgs)
    clean_tables, feats = evaluate(clean, test_ref, postprocess=(False, True), features=True)
    for post, t in clean_tables.items():
        tables.append(t.assign(testset="test", perturbation="none", severity=0, postprocessed=post))
    shapes = list(zip(data.index["height"].iloc[test_idx], data.index["width"].iloc[test_idx], strict=True))
    seg = None  # DICOM images: the same predictions as DICOM SEG next to the PNGs
    if p["data"]["source"] == "dicom":
        seg = seg_writer(run_dir / PREDICTIONS_SEG, data.index.iloc[test_idx], data.class_names, spec.run_id,
                         _version())
    write_predictions(run_dir / PREDICTIONS, clean, test_ids, shapes, colormap, also=seg)

    structures = [data.class_names[k] for k in data.small_classes]  # GT-free QC scores (robustseg.qc)
    qc = functools.partial(qc_scores.condition_scores, class_names=data.class_names, structures=structures)
    qc_parts = [qc(clean, test_ids, "none", 0)]
    pert = perturbed_test_set(DataSpec(**p["data"]), test_idx, p["perturb"]) if p["perturb"]["pairs"] else None
    for k, (name, severity) in enumerate(pert.pairs if pert is not None else []):
        perturbed = predict(pert.images[k])
        qc_parts.append(qc(perturbed, test_ids, name, severity))
        t = evaluate(perturbed, test_ref)[0][False]
        tables.append(t.assign(testset="test", perturbation=name, severity=int(severity), postprocessed=False))

    for ext in p["external"]:
        ext_data = load_data(DataSpec(**ext["data"]))
        ext_ref = reference(ext_data, np.arange(len(ext_data.index)), ext["data"]["colormap"])
        t = evaluate(predict(ext_data.images), ext_ref)[0][False]
        tables.append(t.assign(testset=ext["name"], perturbation="none", severity=0, postprocessed=False))

    per_image = pd.concat(tables, ignore_index=True).assign(
        resolution=resolution, arm=spec.arm, fold=spec.fold, seed=spec.seed, run_id=spec.run_id)
    write_csv(run_dir / "per_image.csv.gz", per_image)
    write_csv(run_dir / "features.csv.gz",
              feats.assign(resolution=resolution, arm=spec.arm, fold=spec.fold, seed=spec.seed, run_id=spec.run_id))
    if ev["save_probabilities"]:
        save_heatmaps(run_dir / "probs.npz", clean, test_ids, class_names=data.class_names)
    qc_scores.write_run_qc(run_dir, qc_parts, test_ids)
    eval_seconds, eval_cpu = time.time() - t1, time.process_time() - c1
    if pert is not None:
        write_csv(run_dir / DAMAGE_FILE, pert.damage.assign(run_id=spec.run_id))
    return {
        "train_seconds": train_seconds, "eval_seconds": eval_seconds, "train_cpu_seconds": train_cpu,
        "eval_cpu_seconds": eval_cpu, "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run, "stopped_early": result.stopped_early,
        "perturb_stage": perturb_settings(p["perturb"])["stage"],
        "perturb_cpu_seconds": round(sum(pert.cpu_seconds.values()), 3) if pert is not None else 0.0,
        "best_val_loss": result.best_val_loss, "postprocess_applied": decision["apply"], "collapsed": collapsed,
        "device": str(device), "torch_threads": torch.get_num_threads(),
        "python_version": platform.python_version(), "torch_version": torch.__version__,
        "numpy_version": np.__version__, "robustseg_version": _version(),
        "n_train": int(train_idx.size), "n_val": int(val_idx.size), "n_test": int(test_idx.size),
        "disk_bytes": sum(f.stat().st_size for f in run_dir.rglob("*") if f.is_file()),
        "environment": environment_record(),
    }
