"""Anomaly scores, probability heatmaps, structure measurements and ground-truth-free scores.

Ground-truth based (reference study, eq. 3.10): per class the mismatch map is ``pred XOR ref`` and the
score ``|pred XOR ref| / |ref|``. When the reference is empty the ratio is undefined; we define:

* reference and prediction empty: score 0 (nothing mismatched);
* reference empty, prediction not: ``|pred| / typical_ref``, where ``typical_ref`` is the median
  reference area of that class over the images that contain it (from ``typical_ref_pixels`` or, if not
  given, from the batch itself). A hallucinated structure of typical size thus scores 1, like a missed
  structure of any size. With no reference area to compare against, the score is ``inf``.

The ``denominator`` column always says which number divided the mismatch, so every score is recomputable.
The overall score per image is ``|pixels where pred != ref| / |reference foreground pixels|`` (the
"anomaly fraction" of the study's figures), with the same empty-reference rule over all foreground.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from skimage.measure import regionprops

from robustseg.errors import InputError
from robustseg.labels import CLASS_NAMES
from robustseg.metrics._common import _check_labels, _pixel_sizes
from robustseg.metrics.boundary import foreground_box
from robustseg.metrics.overlap import confusion_counts

VENTRICULOMEGALY_MM = 10.0
"""Atrial width (LV minor axis) at or above which the LV counts as dilated."""


def _ids(image_ids: Sequence[str] | None, n: int) -> list[str]:
    ids = [str(i) for i in range(n)] if image_ids is None else [str(i) for i in image_ids]
    if len(ids) != n:
        raise InputError(f"image_ids: got {len(ids)} ids for {n} images")
    return ids


def mismatch_maps(pred: np.ndarray, ref: np.ndarray, num_classes: int) -> np.ndarray:
    """Boolean ``(N, C, H, W)`` per-class mismatch maps ``(pred == c) XOR (ref == c)``."""
    pred, ref = _check_labels(pred, ref, num_classes)
    cls = np.arange(num_classes, dtype=pred.dtype)[None, :, None, None]
    return (pred[:, None] == cls) ^ (ref[:, None] == cls)


def anomaly_scores(
    pred: np.ndarray,
    ref: np.ndarray,
    *,
    image_ids: Sequence[str] | None = None,
    class_names: Sequence[str] = CLASS_NAMES,
    typical_ref_pixels: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Per image and class: ``image_id, class, mismatch_pixels, ref_pixels, pred_pixels, denominator, score``."""
    counts = confusion_counts(pred, ref, len(class_names))
    n = counts.shape[0]
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    ref_px, pred_px, mismatch = tp + fn, tp + fp, fp + fn
    typical = np.empty(len(class_names))
    for c, name in enumerate(class_names):
        if typical_ref_pixels is not None and name in typical_ref_pixels:
            typical[c] = float(typical_ref_pixels[name])
        else:
            present = ref_px[:, c][ref_px[:, c] > 0]
            typical[c] = float(np.median(present)) if present.size else np.nan
    denom = np.where(ref_px > 0, ref_px, typical[None, :]).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = mismatch / denom
    score = np.where((ref_px == 0) & (pred_px == 0), 0.0, score)
    score = np.where((ref_px == 0) & (pred_px > 0) & ~np.isfinite(denom), np.inf, score)
    return pd.DataFrame(
        {
            "image_id": pd.array(np.repeat(_ids(image_ids, n), len(class_names)), dtype="str"),
            "class": pd.array(np.tile(np.asarray(class_names, dtype=object), n), dtype="str"),
            "mismatch_pixels": mismatch.ravel(),
            "ref_pixels": ref_px.ravel(),
            "pred_pixels": pred_px.ravel(),
            "denominator": denom.ravel(),
            "score": score.ravel(),
        }
    )


def overall_anomaly_scores(
    pred: np.ndarray, ref: np.ndarray, *, image_ids: Sequence[str] | None = None, background: int = 0
) -> pd.DataFrame:
    """Per image: ``image_id, mismatch_pixels, ref_foreground_pixels, score`` over all classes.

    Empty reference foreground: 0 when the prediction has none either, else ``inf``.
    """
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise InputError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    if pred.ndim == 2:
        pred, ref = pred[None], ref[None]
    n = pred.shape[0]
    mismatch = np.count_nonzero((pred != ref).reshape(n, -1), axis=1)
    fg = np.count_nonzero((ref != background).reshape(n, -1), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(fg > 0, mismatch / np.maximum(fg, 1), np.where(mismatch > 0, np.inf, 0.0))
    return pd.DataFrame(
        {
            "image_id": pd.array(_ids(image_ids, n), dtype="str"),
            "mismatch_pixels": mismatch,
            "ref_foreground_pixels": fg,
            "score": score,
        }
    )


# --------------------------------------------------------------------------------------------------
# Probability heatmaps
# --------------------------------------------------------------------------------------------------


def save_heatmaps(path: str | Path, probs: np.ndarray, image_ids: Sequence[str], class_names: Sequence[str] = CLASS_NAMES) -> Path:
    """Save probabilities ``(N, C, H, W)`` in [0, 1] as uint8 ``round(p * 255)`` in a compressed ``.npz``."""
    probs = np.asarray(probs)
    if probs.ndim != 4 or probs.shape[1] != len(class_names) or probs.shape[0] != len(image_ids):
        raise InputError(
            f"probabilities must be (N={len(image_ids)}, C={len(class_names)}, H, W); got shape {probs.shape}"
        )
    if probs.size and (np.nanmin(probs) < -1e-6 or np.nanmax(probs) > 1 + 1e-6 or np.isnan(probs).any()):
        raise InputError("probabilities must lie in [0, 1] without NaN")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    q = np.rint(np.clip(probs, 0.0, 1.0) * 255.0).astype(np.uint8)
    from robustseg._io import atomic_write

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, probs_u8=q, image_ids=np.asarray(image_ids, dtype=str),
                                class_names=np.asarray(class_names, dtype=str))

    atomic_write(path, save)
    return path


def load_heatmaps(path: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """Read :func:`save_heatmaps` output: ``(image_ids, class_names, float32 probs (N, C, H, W))``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: heatmap file not found")
    with np.load(path, allow_pickle=False) as z:
        missing = {"probs_u8", "image_ids", "class_names"} - set(z.files)
        if missing:
            raise InputError(f"{path}: not a heatmap file (lacks {', '.join(sorted(missing))})")
        return list(map(str, z["image_ids"])), list(map(str, z["class_names"])), z["probs_u8"].astype(np.float32) / 255.0


# --------------------------------------------------------------------------------------------------
# Structure measurements
# --------------------------------------------------------------------------------------------------

FEATURE_COLUMNS: tuple[str, ...] = (
    "image_id", "class", "present", "n_components", "area_px", "area_mm2", "centroid_row", "centroid_col",
    "bbox_min_row", "bbox_min_col", "bbox_max_row", "bbox_max_col", "orientation", "eccentricity",
    "major_axis_mm", "minor_axis_mm", "pixel_mm", "pixel_mm_known", "ventriculomegaly",
)  # fmt: skip


def structure_features(
    labels: np.ndarray,
    *,
    image_ids: Sequence[str] | None = None,
    class_names: Sequence[str] = CLASS_NAMES,
    classes: Sequence[str] | None = None,
    pixel_mm: float | Sequence[float] | np.ndarray | None = None,
    lv_class: str = "lv",
    ventriculomegaly_mm: float = VENTRICULOMEGALY_MM,
) -> pd.DataFrame:
    """Shape measurements per image and class (all components of a class measured as one region).

    Columns :data:`FEATURE_COLUMNS`. Axis lengths are those of the ellipse with the region's second moments
    (skimage ``regionprops``), in mm (in pixels when the pixel size is unknown, ``pixel_mm_known`` False);
    ``orientation`` in radians as skimage defines it. The LV minor axis approximates the atrial width:
    ``ventriculomegaly`` is ``minor_axis_mm >= ventriculomegaly_mm`` for ``lv_class`` with a known pixel size,
    NA otherwise (a fetal measurement: all NA for a data set without a class of that name). An absent structure has area 0 and NaN shape values. ``classes`` defaults to all but the first.
    """
    lab = np.asarray(labels)
    if lab.ndim == 2:
        lab = lab[None]
    if lab.ndim != 3:
        raise InputError(f"label maps must be (H, W) or (N, H, W); got shape {lab.shape}")
    n = lab.shape[0]
    ids = _ids(image_ids, n)
    px = _pixel_sizes(pixel_mm, n)
    names = list(class_names[1:]) if classes is None else list(classes)
    unknown = [c for c in names if c not in class_names]
    if unknown:
        raise InputError(f"classes: unknown class {unknown[0]!r}; expected one of {', '.join(class_names)}")
    from scipy import ndimage

    rows = []
    for i in range(n):
        scale = px[i] if np.isfinite(px[i]) else 1.0
        for name in names:
            c = class_names.index(name)
            mask = lab[i] == c
            row: dict[str, object] = {"image_id": ids[i], "class": name, "pixel_mm": px[i], "pixel_mm_known": bool(np.isfinite(px[i]))}
            extent = foreground_box(mask)
            if extent is None:
                row |= {"present": False, "n_components": 0, "area_px": 0, "area_mm2": 0.0}
            else:
                # measured on the class's bounding box: regionprops works on that box anyway, so every value
                # is the full image's (the offset puts the centroid in image coordinates)
                top, bottom, left, right = extent
                box = mask[top:bottom, left:right]
                area = int(box.sum())
                props = regionprops(box.astype(np.uint8), offset=(top, left))[0]
                r0, c0, r1, c1 = (v + o for v, o in zip(props.bbox, (top, left, top, left), strict=True))
                row |= {
                    "present": True,
                    "n_components": int(ndimage.label(box, structure=np.ones((3, 3)))[1]),
                    "area_px": area,
                    "area_mm2": area * scale * scale,
                    "centroid_row": float(props.centroid[0]),
                    "centroid_col": float(props.centroid[1]),
                    "bbox_min_row": r0, "bbox_min_col": c0, "bbox_max_row": r1, "bbox_max_col": c1,
                    "orientation": float(props.orientation),
                    "eccentricity": float(props.eccentricity),
                    "major_axis_mm": float(props.axis_major_length) * scale,
                    "minor_axis_mm": float(props.axis_minor_length) * scale,
                }  # fmt: skip
            rows.append(row)
    out = pd.DataFrame(rows).reindex(columns=list(FEATURE_COLUMNS))
    for col in ("bbox_min_row", "bbox_min_col", "bbox_max_row", "bbox_max_col"):
        out[col] = out[col].astype("Int64")
    out["present"] = out["present"].astype(bool)
    out["pixel_mm_known"] = out["pixel_mm_known"].astype(bool)
    for col in ("area_mm2", "centroid_row", "centroid_col", "orientation", "eccentricity", "major_axis_mm", "minor_axis_mm", "pixel_mm"):
        out[col] = out[col].astype(np.float64)
    flag = pd.array([pd.NA] * len(out), dtype="boolean")
    is_lv = (out["class"] == lv_class).to_numpy() & out["pixel_mm_known"].to_numpy() & out["present"].to_numpy()
    flag[is_lv] = out.loc[is_lv, "minor_axis_mm"].to_numpy() >= ventriculomegaly_mm
    out["ventriculomegaly"] = flag
    for col in ("image_id", "class"):
        out[col] = out[col].astype("str")
    return out


# --------------------------------------------------------------------------------------------------
# Ground-truth-free scores
# --------------------------------------------------------------------------------------------------


def ensemble_disagreement(
    member_probs: np.ndarray,
    *,
    image_ids: Sequence[str] | None = None,
    class_names: Sequence[str] = CLASS_NAMES,
    eps: float = 1e-12,
) -> pd.DataFrame:
    """Disagreement of an ensemble from member probabilities ``(M, N, C, H, W)`` (M >= 2), per image and class.

    Columns ``image_id, class, ensemble_pixels, dice_disagreement, mean_entropy, mean_mutual_info``:

    * ``dice_disagreement`` = 1 - mean pairwise Dice of the members' argmax masks of the class (a pair of
      members that both predict nothing agrees: Dice 1); NaN never occurs.
    * ``mean_entropy`` = predictive entropy (nats) of the mean probabilities, averaged over the pixels the
      ensemble (argmax of the mean) assigns to the class; NaN where it assigns none.
    * ``mean_mutual_info`` = mutual information (entropy of the mean minus mean member entropy, the
      epistemic part) averaged over the same pixels.
    """
    p = np.asarray(member_probs, dtype=np.float32)
    if p.ndim != 5 or p.shape[0] < 2 or p.shape[2] != len(class_names):
        raise InputError(f"member probabilities must be (M>=2, N, C={len(class_names)}, H, W); got shape {p.shape}")
    m, n, c = p.shape[:3]
    hw = p.shape[3] * p.shape[4]
    p = p.reshape(m, n, c, hw)
    # pairwise Dice of member argmax masks: one matrix product per image and class (no pixel loop)
    onehot = (p.argmax(axis=2)[:, :, None, :] == np.arange(c)[None, None, :, None]).astype(np.float32)  # M,N,C,P
    a = np.moveaxis(onehot, 0, 2)  # N,C,M,P
    inter = a @ np.swapaxes(a, -1, -2)  # N,C,M,M
    sizes = a.sum(-1)  # N,C,M
    denom = sizes[..., :, None] + sizes[..., None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        dice = np.where(denom > 0, 2 * inter / denom, 1.0)
    iu = np.triu_indices(m, k=1)
    pair_dice = dice[..., iu[0], iu[1]].mean(-1)

    mean = p.mean(axis=0)  # N,C,P
    ent_mean = -(mean * np.log(mean + eps)).sum(axis=1)  # N,P
    ent_members = -(p * np.log(p + eps)).sum(axis=2).mean(axis=0)  # N,P
    mi = ent_mean - ent_members
    ens = mean.argmax(axis=1)  # N,P
    region = ens[:, None, :] == np.arange(c)[None, :, None]  # N,C,P
    npx = region.sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_ent = (region * ent_mean[:, None, :]).sum(-1) / npx
        mean_mi = (region * mi[:, None, :]).sum(-1) / npx
    return pd.DataFrame(
        {
            "image_id": pd.array(np.repeat(_ids(image_ids, n), c), dtype="str"),
            "class": pd.array(np.tile(np.asarray(class_names, dtype=object), n), dtype="str"),
            "ensemble_pixels": npx.ravel().astype(np.int64),
            "dice_disagreement": (1.0 - pair_dice).ravel().astype(np.float64),
            "mean_entropy": mean_ent.ravel().astype(np.float64),
            "mean_mutual_info": mean_mi.ravel().astype(np.float64),
        }
    )


RANGE_FEATURES: tuple[str, ...] = ("area_mm2", "major_axis_mm", "minor_axis_mm")


def fit_reference_ranges(train_features: pd.DataFrame, features: Sequence[str] = RANGE_FEATURES) -> pd.DataFrame:
    """Normal ranges per class and feature from training-mask features (:func:`structure_features`).

    Fitted on images where the structure is present. Columns ``class, feature, median, mad, n, presence_rate``
    where ``mad`` is the scaled median absolute deviation (1.4826 * MAD, a robust standard deviation).
    """
    missing = [c for c in ["class", "present", *features] if c not in train_features.columns]
    if missing:
        raise InputError(f"training features lack column(s) {', '.join(missing)}")
    rows = []
    for name, df in train_features.groupby("class", sort=False):
        present = df[df["present"].astype(bool)]
        for feat in features:
            x = present[feat].to_numpy(dtype=np.float64)
            x = x[np.isfinite(x)]
            med = float(np.median(x)) if x.size else np.nan
            mad = float(1.4826 * np.median(np.abs(x - med))) if x.size else np.nan
            rows.append({"class": name, "feature": feat, "median": med, "mad": mad, "n": int(x.size),
                         "presence_rate": float(len(present) / len(df)) if len(df) else np.nan})  # fmt: skip
    out = pd.DataFrame(rows)
    out["class"] = out["class"].astype("str")
    out["feature"] = out["feature"].astype("str")
    return out


def out_of_range_scores(features: pd.DataFrame, ranges: pd.DataFrame, *,
                        min_presence_rate: float = 0.9) -> pd.DataFrame:
    """Robust z-scores of measurements against :func:`fit_reference_ranges` output.

    Long table ``image_id, class, feature, value, median, mad, robust_z`` with
    ``robust_z = (value - median) / mad`` (NaN when the value is NaN, e.g. the axis of an absent structure,
    or when the range is degenerate, ``mad == 0``). An absent structure (``present`` False) is scored only
    when the structure is normally there (training ``presence_rate >= min_presence_rate``): its area 0 then
    gives a large negative z. Where absence is common (CSP and LV are missing from most trans-thalamic
    images) an absent structure is not out of range and gets NaN. Use :func:`max_abs_z` for one score per
    image and class.
    """
    need = {"image_id", "class"}
    if not need <= set(features.columns):
        raise InputError("features lack column(s) image_id and/or class")
    feats = [f for f in pd.unique(ranges["feature"]) if f in features.columns]
    if not feats:
        raise InputError(f"features hold none of the ranged features {', '.join(pd.unique(ranges['feature']))}")
    long = features.melt(id_vars=["image_id", "class"], value_vars=feats, var_name="feature", value_name="value")
    long["feature"] = long["feature"].astype("str")
    if "present" in features.columns:
        long = long.merge(features[["image_id", "class", "present"]], on=["image_id", "class"], how="left")
    cols = ["class", "feature", "median", "mad", *(["presence_rate"] if "presence_rate" in ranges.columns else [])]
    out = long.merge(ranges[cols], on=["class", "feature"], how="left")
    value = out["value"].to_numpy(dtype=np.float64)
    mad = out["mad"].to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(mad > 0, (value - out["median"].to_numpy(dtype=np.float64)) / mad, np.nan)
    if "present" in out.columns and "presence_rate" in out.columns:
        absent = ~out["present"].fillna(True).astype(bool).to_numpy()
        usual = out["presence_rate"].to_numpy(dtype=np.float64) >= min_presence_rate
        z = np.where(absent & ~usual, np.nan, z)
    out["value"] = value
    out["robust_z"] = z
    return out.drop(columns=[c for c in ("present", "presence_rate") if c in out.columns])


def max_abs_z(scores: pd.DataFrame) -> pd.DataFrame:
    """Per image and class the largest ``|robust_z|`` over features (NaN if none is finite) and its feature."""
    s = scores.assign(abs_z=scores["robust_z"].abs())
    idx = s.dropna(subset=["abs_z"]).groupby(["image_id", "class"], sort=False)["abs_z"].idxmax()
    best = s.loc[idx, ["image_id", "class", "feature", "abs_z"]].rename(columns={"abs_z": "max_abs_z", "feature": "worst_feature"})
    keys = s[["image_id", "class"]].drop_duplicates()
    return keys.merge(best, on=["image_id", "class"], how="left").reset_index(drop=True)
