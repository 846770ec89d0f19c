"""Per-image, ground-truth-free confidence scores of a segmentation (higher = more confident unless noted).

Computed from softmax probabilities ``(N, C, H, W)`` of one model, or from the argmax masks / probabilities of
an ensemble's members, per small structure (CSP and LV by default); no reference mask is read. Scores and their direction:

* ``pairwise_dice`` (ensemble, Roy et al. 2019; the strong baseline of Zenk et al. 2025): mean Dice over all
  pairs of members' argmax masks of the structure; a pair where both predict nothing agrees (1).
* ``entropy`` (single model or ensemble mean; *lower* = more confident): predictive entropy (nats) of the
  softmax, averaged over the structure's region (see :func:`structure_region`).
* ``mutual_info`` (ensemble; lower = more confident): entropy of the mean minus the mean member entropy
  (the epistemic part), averaged over the same region.
* ``sdc`` Soft Dice Confidence (Borges et al. 2024, arXiv:2402.10665): ``2 sum(p * y) / (sum(p) + sum(y))``
  with ``p`` the structure's probability and ``y`` the hard (argmax) mask: the Dice between the prediction and
  the model's own soft map. Where the structure is predicted absent we use the expected Dice under the same
  pixel-independence model with the "both empty = 1" rule, the chance that the structure is truly absent,
  ``prod(1 - p)`` over its candidate pixels (``p >= CANDIDATE_P``; the product over all pixels would be driven
  to 0 by thousands of faint background probabilities), instead of the paper's 0: absence is the normal case
  for CSP/LV in trans-thalamic images.
* ``range_z`` (lower = more confident): largest robust z of the predicted structure's measurements against the
  training masks (``robustseg.qc.anomaly.out_of_range_scores``); 0 where not scorable (absent, usually absent).
* ``composite`` (lower = more confident): today's ground-truth-free anomaly score, the mean percentile rank of
  ``1 - pairwise_dice`` and ``range_z`` over the images scored together (see :func:`composite`).

Images as seen by a run (clean and perturbed test sets) are summarised by :func:`condition_scores` inside the
run and saved with :func:`write_run_qc` as ``qc.csv.gz`` (single-model scores) and ``masks.npz`` (argmax
masks, so that the report can compute members' pairwise Dice on perturbed sets whose probabilities are not
saved). numpy / pandas only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from robustseg.errors import InputError
from robustseg.labels import CLASS_NAMES, SMALL_STRUCTURES

STRUCTURES: tuple[str, ...] = SMALL_STRUCTURES
"""Structures that get scores by default (the small, clinically measured ones: CSP, LV). A study scores the
small structures of its data set (``data.small_structures``)."""


def combined_name(structures: Sequence[str]) -> str:
    """Name of the per-image combination of ``structures`` (mean score; max for ``range_z``): ``"csp+lv"``."""
    return "+".join(structures)


COMBINED = combined_name(STRUCTURES)
"""Name of the combination of the default structures, ``"csp+lv"``."""

CANDIDATE_P = 0.1
"""Where a structure is predicted absent, its region is the pixels with probability >= this (missed candidates)."""

HIGHER_IS_CONFIDENT: dict[str, bool] = {
    "pairwise_dice": True, "sdc": True, "entropy": False, "mutual_info": False, "range_z": False,
    "composite": False,
}
"""Direction of every score: True when a higher value means a more trustworthy segmentation."""

ENSEMBLE_SCORES: tuple[str, ...] = ("pairwise_dice", "mutual_info", "composite")
"""Scores that need at least two members."""

DEFAULT_SCORE = "pairwise_dice"
"""The score ``robustseg qc`` flags with unless told otherwise: pairwise Dice of the seed ensemble's members.

On the quickstart study (clean + every perturbation x severity, 6 runs) it beat the composite in normalised
AURC for CSP (0.520 vs 0.490, paired difference -0.030 [-0.065, -0.002]) and CSP+LV (0.547 vs 0.515,
-0.032 [-0.063, -0.012]) and tied on LV (0.610 vs 0.605); the composite ranked the clean set better but the
clean set held only 3-9 failures. On a harder phantom (``--abnormal-fraction 0.3 --difficulty 0.25``, 30
epochs) the composite won (mean nAURC 0.591 vs 0.554): the ranking depends on the study, and the report
shows it for every study."""

_EPS = 1e-12


def confidence(values: np.ndarray | pd.Series, score: str) -> np.ndarray:
    """The score turned into a confidence (higher = more trustworthy): negated where lower is better."""
    if score not in HIGHER_IS_CONFIDENT:
        raise InputError(f"unknown QC score {score!r}; expected one of {', '.join(HIGHER_IS_CONFIDENT)}")
    v = np.asarray(values, dtype=np.float64)
    return v if HIGHER_IS_CONFIDENT[score] else -v


def _check_probs(probs: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float32)
    if p.ndim != 4 or p.shape[1] != len(class_names):
        raise InputError(f"probabilities must be (N, C={len(class_names)}, H, W); got shape {p.shape}")
    return p


def pixel_entropy(probs: np.ndarray) -> np.ndarray:
    """Predictive entropy (nats) per pixel of ``(N, C, H, W)`` probabilities -> ``(N, H, W)``."""
    p = np.asarray(probs, dtype=np.float32)
    return -(p * np.log(p + _EPS)).sum(axis=1)


def structure_region(probs: np.ndarray, c: int) -> np.ndarray:
    """``(N, H, W)`` region of class ``c``: its argmax pixels, or where there are none, the pixels with
    ``p_c >= CANDIDATE_P`` (a missed structure's candidates; empty when the model is sure it is absent)."""
    pred = probs.argmax(axis=1) == c
    cand = probs[:, c] >= CANDIDATE_P
    has = pred.reshape(len(pred), -1).any(axis=1)
    return np.where(has[:, None, None], pred, cand)


def _region_mean(values: np.ndarray, region: np.ndarray) -> np.ndarray:
    n = region.reshape(len(region), -1).sum(axis=1)
    s = (values * region).reshape(len(region), -1).sum(axis=1)
    return np.where(n > 0, s / np.maximum(n, 1), 0.0)


def soft_dice_confidence(probs: np.ndarray, c: int) -> np.ndarray:
    """Soft Dice Confidence of class ``c`` per image (see the module docstring for the empty rule).

    >>> p = np.zeros((1, 2, 1, 4), dtype=np.float32); p[0, 1, 0] = [0.9, 0.8, 0.2, 0.0]; p[0, 0] = 1 - p[0, 1]
    >>> round(float(soft_dice_confidence(p, 1)[0]), 4)  # 2 * 1.7 / (1.9 + 2)
    0.8718
    """
    p = np.asarray(probs[:, c], dtype=np.float64).reshape(len(probs), -1)
    y = (np.asarray(probs).argmax(axis=1) == c).reshape(len(probs), -1)
    inter = (p * y).sum(axis=1)
    den = p.sum(axis=1) + y.sum(axis=1)
    cand = np.where(p >= CANDIDATE_P, np.clip(p, 0.0, 1.0 - 1e-7), 0.0)
    absent = np.exp(np.log1p(-cand).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        sdc = np.where(den > 0, 2.0 * inter / den, 1.0)
    return np.where(y.any(axis=1), sdc, absent)


def single_model_scores(probs: np.ndarray, image_ids: Sequence[str], *, class_names: Sequence[str] = CLASS_NAMES,
                        structures: Sequence[str] = STRUCTURES) -> pd.DataFrame:
    """Scores of one model's probabilities: ``image_id, class, pred_pixels, entropy, sdc`` per structure."""
    p = _check_probs(probs, class_names)
    if len(image_ids) != len(p):
        raise InputError(f"image_ids: got {len(image_ids)} ids for {len(p)} images")
    ent = pixel_entropy(p)
    pred = p.argmax(axis=1)
    parts = []
    for name in structures:
        c = list(class_names).index(name)
        parts.append(pd.DataFrame({
            "image_id": pd.array([str(i) for i in image_ids], dtype="str"), "class": name,
            "pred_pixels": (pred == c).reshape(len(p), -1).sum(axis=1).astype(np.int64),
            "entropy": _region_mean(ent, structure_region(p, c)).astype(np.float64),
            "sdc": soft_dice_confidence(p, c).astype(np.float64),
        }))
    out = pd.concat(parts, ignore_index=True)
    out["class"] = out["class"].astype("str")
    return out


def pairwise_dice(member_masks: np.ndarray, image_ids: Sequence[str], *, class_names: Sequence[str] = CLASS_NAMES,
                  structures: Sequence[str] = STRUCTURES) -> pd.DataFrame:
    """Mean pairwise Dice of members' label maps ``(M >= 2, N, H, W)``: ``image_id, class, pairwise_dice``.

    >>> a = np.zeros((2, 1, 2, 2), dtype=np.uint8); a[0, 0, 0, :] = 2; a[1, 0, 0, 0] = 2
    >>> round(float(pairwise_dice(a, ["x"], structures=["csp"])["pairwise_dice"][0]), 4)  # 2 * 1 / (2 + 1)
    0.6667
    """
    m = np.asarray(member_masks)
    if m.ndim != 4 or m.shape[0] < 2 or m.shape[1] != len(image_ids):
        raise InputError(f"member masks must be (M>=2, N={len(image_ids)}, H, W); got shape {m.shape}")
    k, n = m.shape[:2]
    iu = np.triu_indices(k, 1)
    parts = []
    for name in structures:
        c = list(class_names).index(name)
        a = (m == c).reshape(k, n, -1).astype(np.float32)  # M,N,P
        inter = np.einsum("inp,jnp->nij", a, a)
        size = a.sum(-1).T  # N,M
        den = size[:, :, None] + size[:, None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            dice = np.where(den > 0, 2 * inter / den, 1.0)
        parts.append(pd.DataFrame({"image_id": pd.array([str(i) for i in image_ids], dtype="str"), "class": name,
                                   "pairwise_dice": dice[:, iu[0], iu[1]].mean(-1).astype(np.float64)}))
    out = pd.concat(parts, ignore_index=True)
    out["class"] = out["class"].astype("str")
    return out


def mutual_information(member_probs: np.ndarray, image_ids: Sequence[str], *,
                       class_names: Sequence[str] = CLASS_NAMES, structures: Sequence[str] = STRUCTURES,
                       ) -> pd.DataFrame:
    """Ensemble scores from member probabilities ``(M >= 2, N, C, H, W)``: ``image_id, class, entropy,
    mutual_info`` (entropy of the mean and mutual information, averaged over the mean's structure region)."""
    p = np.asarray(member_probs, dtype=np.float32)
    if p.ndim != 5 or p.shape[0] < 2 or p.shape[2] != len(class_names) or p.shape[1] != len(image_ids):
        raise InputError(f"member probabilities must be (M>=2, N={len(image_ids)}, C={len(class_names)}, H, W); "
                         f"got shape {p.shape}")
    mean = p.mean(axis=0)
    ent_mean = pixel_entropy(mean)
    mi = ent_mean - np.mean([pixel_entropy(q) for q in p], axis=0)
    parts = []
    for name in structures:
        region = structure_region(mean, list(class_names).index(name))
        parts.append(pd.DataFrame({"image_id": pd.array([str(i) for i in image_ids], dtype="str"), "class": name,
                                   "entropy": _region_mean(ent_mean, region).astype(np.float64),
                                   "mutual_info": _region_mean(mi, region).astype(np.float64)}))
    out = pd.concat(parts, ignore_index=True)
    out["class"] = out["class"].astype("str")
    return out


def percentile_rank(values: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Percentile rank in (0, 1] of each value among ``reference`` (itself if None), ties averaged.

    Against itself this equals ``pandas.Series.rank(pct=True)``; against a reference sample it is the mid-rank
    empirical CDF ``(#ref < v + (#ref <= v)) / (2 n_ref)`` (for new images scored against the study's test set).
    NaN stays NaN.
    """
    v = np.asarray(values, dtype=np.float64)
    if reference is None:
        return pd.Series(v).rank(pct=True).to_numpy()
    ref = np.sort(np.asarray(reference, dtype=np.float64)[np.isfinite(reference)])
    if ref.size == 0:
        return np.full(v.shape, np.nan)
    lo = np.searchsorted(ref, v, side="left")
    hi = np.searchsorted(ref, v, side="right")
    return np.where(np.isfinite(v), (lo + hi) / (2.0 * ref.size), np.nan)


def composite(pairwise: np.ndarray, range_z: np.ndarray, *, ref_pairwise: np.ndarray | None = None,
              ref_range_z: np.ndarray | None = None) -> np.ndarray:
    """Today's GT-free anomaly score: mean percentile rank of ``1 - pairwise_dice`` and ``range_z``.

    Ranks are over the given images (as in the report) or, with ``ref_*``, against a reference sample (the
    study's test set, for new images). A component that is NaN is left out of the mean.
    """
    dis = 1.0 - np.asarray(pairwise, dtype=np.float64)
    rz = np.asarray(range_z, dtype=np.float64)
    r1 = percentile_rank(dis, None if ref_pairwise is None else 1.0 - np.asarray(ref_pairwise, dtype=np.float64))
    r2 = percentile_rank(rz, ref_range_z)
    with np.errstate(invalid="ignore"):
        return np.nanmean(np.vstack([r1, r2]), axis=0) if len(dis) else np.array([], dtype=np.float64)


def range_scores(features: pd.DataFrame, ranges: pd.DataFrame, structures: Sequence[str] = STRUCTURES
                 ) -> pd.DataFrame:
    """``image_id, class, range_z`` from :func:`robustseg.qc.anomaly.structure_features` of predicted masks.

    ``range_z`` is the largest |robust z| over area and axes (0 where not scorable: an absent structure that
    is usually absent, or a degenerate range).
    """
    from robustseg.qc.anomaly import max_abs_z, out_of_range_scores

    f = features[features["class"].isin(list(structures))]
    z = max_abs_z(out_of_range_scores(f, ranges))
    out = z[["image_id", "class"]].copy()
    out["range_z"] = z["max_abs_z"].fillna(0.0).to_numpy(dtype=np.float64)
    return out


# --------------------------------------------------------------------------------------------------
# Inside a run: single-model scores per condition, saved next to the per-image table
# --------------------------------------------------------------------------------------------------

QC_FILE = "qc.csv.gz"
MASKS_FILE = "masks.npz"


def condition_scores(probs: np.ndarray, image_ids: Sequence[str], perturbation: str, severity: int, *,
                     class_names: Sequence[str] = CLASS_NAMES, structures: Sequence[str] = STRUCTURES,
                     ) -> tuple[pd.DataFrame, str, np.ndarray]:
    """One condition of a run: (single-model score table with ``perturbation, severity``, mask key, argmax)."""
    table = single_model_scores(probs, image_ids, class_names=class_names, structures=structures).assign(
        perturbation=str(perturbation), severity=int(severity))
    return table, f"{perturbation}@{int(severity)}", np.asarray(probs).argmax(axis=1).astype(np.uint8)


def write_run_qc(run_dir: str | Path, parts: Sequence[tuple[pd.DataFrame, str, np.ndarray]],
                 image_ids: Sequence[str]) -> None:
    """Write ``qc.csv.gz`` (scores of every condition) and ``masks.npz`` (argmax maps, key ``perturbation@sev``)."""
    from robustseg._io import atomic_write, write_csv

    run_dir = Path(run_dir)
    write_csv(run_dir / QC_FILE, pd.concat([p[0] for p in parts], ignore_index=True))

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, image_ids=np.asarray(image_ids, dtype=str), **{key: masks for _, key, masks in parts})

    atomic_write(run_dir / MASKS_FILE, save)


def load_run_masks(path: str | Path) -> tuple[list[str], dict[tuple[str, int], np.ndarray]]:
    """Read :func:`write_run_qc`'s ``masks.npz``: ``(image_ids, {(perturbation, severity): (N, H, W) uint8})``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: mask file not found")
    with np.load(path, allow_pickle=False) as z:
        if "image_ids" not in z.files:
            raise InputError(f"{path}: not a QC mask file (lacks image_ids)")
        ids = list(map(str, z["image_ids"]))
        masks = {}
        for key in z.files:
            if key == "image_ids":
                continue
            name, _, sev = key.rpartition("@")
            masks[(name, int(sev))] = z[key]
    return ids, masks
