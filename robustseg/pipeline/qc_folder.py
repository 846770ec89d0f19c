"""``robustseg qc RUN_DIR IMAGE_DIR``: score a folder of unlabelled images with a finished study's ensemble.

Every completed run of one arm (default: the baseline) predicts each image at the study's input size; the
ensemble (mean softmax) gives the segmentation and its measurements, the members give the ground-truth-free
scores of ``robustseg.qc.scores``. The review flag marks an image x structure whose confidence (score
``score``, default :data:`robustseg.qc.scores.DEFAULT_SCORE`) is below the threshold fitted on the study's own
held-out test set: the ``review`` quantile of the same score there, so that about that fraction of test-like
images would be sent for review. Writes ``qc.csv``; torch is imported only when predicting.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from robustseg._io import write_csv
from robustseg._outdir import claim_output_file, expand, first_line
from robustseg.errors import InputError
from robustseg.labels import CLASS_NAMES
from robustseg.qc import anomaly
from robustseg.qc import scores as qs

QC_COLUMNS = ("image", "structure", "pairwise_dice", "mutual_info", "entropy", "sdc", "range_z", "composite",
              "area_mm2", "major_axis_mm", "minor_axis_mm", "pixel_mm_known", "review_score", "review_confidence",
              "review_threshold", "review")
"""Columns of ``qc.csv`` (measurements in px where the pixel size is unknown: ``pixel_mm_known`` False)."""


def _list_images(image_dir: Path) -> list[Path]:
    from robustseg.data.index import IMAGE_EXTS, list_images

    if not image_dir.is_dir():
        raise InputError(f"{image_dir}: image folder not found")
    files = list_images(image_dir)
    if not files:
        raise InputError(f"{image_dir}: no images ({', '.join(IMAGE_EXTS)}) found")
    return files


def _read(files: Sequence[Path], size: int, frame: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed uint8 images (N, S, S) and the longest side of each original (for the pixel size)."""
    from robustseg.data.io import read_image
    from robustseg.data.transforms import preprocess

    images = np.zeros((len(files), size, size), dtype=np.uint8)
    longest = np.zeros(len(files))
    for i, f in enumerate(files):
        try:
            img = read_image(f, frame)
        except InputError:
            raise
        except Exception as exc:  # unreadable file: bad input, one line
            raise InputError(f"{f}: cannot read image ({type(exc).__name__}); expected a PNG/JPEG/BMP/TIFF") from exc
        images[i] = preprocess(img, None, size)[0]
        longest[i] = max(img.shape[:2])
    return images, longest


def _runs(run_dir: Path, arm: str | None) -> tuple[dict, list[Path], str, tuple[str, ...], tuple[str, ...]]:
    """Study dict, checkpoints of the arm's completed runs, the arm, the data set's class names and small
    structures."""
    import json

    from robustseg.pipeline.inputs import saved_classes

    for name in ("study.json", "plan.json", "reference.npz"):
        if not (run_dir / name).is_file():
            raise InputError(f"{run_dir}: not a finished study run folder (missing {name})")
    saved = json.loads((run_dir / "study.json").read_text())
    study = saved.get("study", {})
    names, small = saved_classes(saved)
    plan = pd.DataFrame(json.loads((run_dir / "plan.json").read_text()), columns=["run_id", "arm", "fold", "seed"])
    arms = list(dict.fromkeys(plan["arm"]))
    arm = arms[0] if arm is None else arm
    if arm not in arms:
        raise InputError(f"--arm {arm!r}: not an arm of {run_dir}; expected one of {', '.join(arms)}")
    ckpts = [run_dir / r / "checkpoint.pt" for r in plan.loc[plan["arm"] == arm, "run_id"]
             if (run_dir / r / "complete.json").is_file() and (run_dir / r / "checkpoint.pt").is_file()]
    if not ckpts:
        raise InputError(f"{run_dir}: arm {arm!r} has no completed run with a checkpoint")
    return study, ckpts, arm, names, small


def ensemble_scores(member_probs: np.ndarray, ids: Sequence[str], pixel_mm: np.ndarray,
                    ranges: pd.DataFrame | None, class_names: Sequence[str] = CLASS_NAMES,
                    structures: Sequence[str] = qs.STRUCTURES) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores per image x structure (``structures`` of ``class_names``) of an ensemble (``(M, N, C, S, S)``) and
    its mean prediction's features."""
    kw = {"class_names": tuple(class_names), "structures": tuple(structures)}
    mean = member_probs.mean(axis=0)
    single = qs.single_model_scores(mean, ids, **kw).drop(columns=["entropy"])
    pred = mean.argmax(axis=1).astype(np.uint8)
    feats = anomaly.structure_features(pred, image_ids=list(ids), pixel_mm=pixel_mm, class_names=tuple(class_names),
                                       classes=list(structures))
    out = single
    if len(member_probs) >= 2:
        out = out.merge(qs.pairwise_dice(member_probs.argmax(axis=2).astype(np.uint8), ids, **kw),
                        on=["image_id", "class"])
        out = out.merge(qs.mutual_information(member_probs, ids, **kw), on=["image_id", "class"])
    else:
        out = out.merge(qs.single_model_scores(mean, ids, **kw)[["image_id", "class", "entropy"]],
                        on=["image_id", "class"])
        out["pairwise_dice"] = np.nan
        out["mutual_info"] = np.nan
    if ranges is not None:
        out = out.merge(qs.range_scores(feats, ranges, structures), on=["image_id", "class"], how="left")
    else:
        out["range_z"] = np.nan
    return out, feats


def _combined(t: pd.DataFrame, structures: Sequence[str] = qs.STRUCTURES) -> pd.DataFrame:
    cols = ["pairwise_dice", "mutual_info", "entropy", "sdc", "range_z"]
    agg = {c: ("max" if c == "range_z" else "mean") for c in cols}
    comb = t.groupby("image_id", sort=False).agg(agg).reset_index().assign(
        **{"class": qs.combined_name(structures)})
    return pd.concat([t, comb], ignore_index=True)


def _predict_all(ckpts: Sequence[Path], batches: Sequence[np.ndarray], device: str, batch_size: int
                 ) -> list[np.ndarray]:
    from robustseg.nn.predict import inference_model, load_model, predict_proba

    out: list[list[np.ndarray]] = [[] for _ in batches]
    for ck in ckpts:
        model, cfg = load_model(ck, device)
        model = inference_model(model)
        for k, b in enumerate(batches):
            out[k].append(predict_proba(model, b, batch_size=batch_size, amp=cfg.amp))
    return [np.stack(o) for o in out]


def qc_folder(run_dir: str | Path, image_dir: str | Path, output: str | Path | None = None, *,
              score: str = qs.DEFAULT_SCORE, review: float = 0.10, pixel_size_csv: str | Path | None = None,
              arm: str | None = None, device: str = "auto", batch_size: int = 16,
              force: bool = False, frame: int | None = None) -> tuple[pd.DataFrame, Path]:
    """Score every image of ``image_dir`` (no masks needed) and write ``qc.csv``; returns (table, path).

    ``pixel_size_csv`` (``Label``, ``Pixel in mm``) gives mm per pixel by file stem; without it measurements
    are in pixels and the out-of-range score is not available. ``output`` defaults to
    ``<image_dir>/../qc.csv``. It is checked before any work (a file name, outside the image and run folders;
    an existing file is replaced only when it is an earlier ``qc.csv``, or with ``force``) and written
    atomically: a full disk leaves the previous file, never a truncated one.
    """
    run_dir, image_dir = expand(run_dir), expand(image_dir)
    if score not in qs.HIGHER_IS_CONFIDENT:
        raise InputError(f"--score {score!r}: expected one of {', '.join(qs.HIGHER_IS_CONFIDENT)}")
    if not 0.0 < float(review) < 1.0:
        raise InputError(f"--review {review!r}: expected a fraction between 0 and 1")
    path = claim_output_file(output if output else image_dir.resolve().parent / "qc.csv", "qc", force=force,
                             inputs=(image_dir, run_dir), signature=is_qc_table)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: run folder not found")
    study, ckpts, arm, names, small = _runs(run_dir, arm)
    if score in qs.ENSEMBLE_SCORES and len(ckpts) < 2:
        raise InputError(f"--score {score}: needs at least two completed runs of arm {arm!r}; found {len(ckpts)}")
    files = _list_images(image_dir)
    size = int(study.get("data", {}).get("size", 256))
    images, longest = _read(files, size, frame)
    ids = [f.stem for f in files]
    if len(set(ids)) != len(ids):
        raise InputError(f"{image_dir}: two images share a name stem; expected unique names")
    mm = np.full(len(files), np.nan)
    if pixel_size_csv is not None:
        from robustseg.data.index import read_pixel_csv

        sizes = read_pixel_csv(pixel_size_csv)
        mm = np.array([sizes.get(i, np.nan) for i in ids], dtype=np.float64) * longest / size
    with np.load(run_dir / "reference.npz", allow_pickle=False) as z:
        ref_images, ref_ids, ref_mm = z["images"], list(map(str, z["image_id"])), z["pixel_mm"].astype(np.float64)
    rf_path = run_dir / "reference_features.csv.gz"
    ranges = anomaly.fit_reference_ranges(pd.read_csv(rf_path)) if rf_path.is_file() else None

    new_probs, ref_probs = _predict_all(ckpts, [images, ref_images], device, batch_size)
    new, feats = ensemble_scores(new_probs, ids, mm, ranges if np.isfinite(mm).any() else None, names, small)
    ref, _ = ensemble_scores(ref_probs, ref_ids, ref_mm, ranges, names, small)
    new, ref = _combined(new, small), _combined(ref, small)
    rows = []
    for cls, g in new.groupby("class", sort=False):
        r = ref[ref["class"] == cls]
        g = g.copy()
        g["composite"] = qs.composite(g["pairwise_dice"], g["range_z"], ref_pairwise=r["pairwise_dice"].to_numpy(),
                                      ref_range_z=r["range_z"].to_numpy())
        r_comp = qs.composite(r["pairwise_dice"], r["range_z"])
        ref_conf = qs.confidence(r_comp if score == "composite" else r[score], score)
        ref_conf = ref_conf[np.isfinite(ref_conf)]
        thr = float(np.quantile(ref_conf, review)) if ref_conf.size else np.nan
        conf = qs.confidence(g[score], score)
        g["review_score"] = score
        g["review_confidence"] = conf
        g["review_threshold"] = thr
        g["review"] = np.where(np.isfinite(conf), conf < thr, True)  # unscorable -> review
        rows.append(g)
    out = pd.concat(rows, ignore_index=True)
    f = feats[["image_id", "class", "area_mm2", "major_axis_mm", "minor_axis_mm", "pixel_mm_known"]]
    out = out.merge(f, on=["image_id", "class"], how="left").rename(columns={"image_id": "image", "class": "structure"})
    out["pixel_mm_known"] = out["pixel_mm_known"].fillna(bool(np.isfinite(mm).all())).astype(bool)
    out = out[list(QC_COLUMNS)]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_csv(path, out)
    return out, path


def is_qc_table(path: Path) -> bool:
    """Whether ``path`` is a table written by ``robustseg qc`` (its header is :data:`QC_COLUMNS`)."""
    return first_line(path) == ",".join(QC_COLUMNS)
