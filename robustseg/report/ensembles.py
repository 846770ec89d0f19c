"""Ensembles from saved probabilities, per-run mismatch scores, and the ground-truth-free anomaly score.

Reads each run's clean test-set probabilities (``probs.npz``), averages them over the seeds of a fold
(seed ensemble) and over every run of an arm (seeds + folds), and scores the ensembles exactly like a
single model (argmax, then ``robustseg.metrics.per_image_table``; in a native-resolution study the
probabilities are first mapped back to each image's size, ``robustseg.pipeline.native``, and scored against
the native masks of ``reference.npz``, so ensembles and members are compared at one resolution). The
members' disagreement is computed on the saved model-size probabilities (ground-truth free; a ratio of
pixel counts, nearly independent of resolution). Memory
stays at one running sum per ensemble plus the members of one fold for the disagreement score.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from robustseg import stats
from robustseg.pipeline.native import evaluate_probs, map_native, native_features
from robustseg.qc import anomaly
from robustseg.report.load import StudyInputs, load_probs

CHUNK = 16
"""Images per call of ``anomaly.ensemble_disagreement`` (bounds memory: members x chunk x C x S x S)."""

RANGE_Z = 3.0
"""A measurement more than this many robust SDs (scaled MAD) from the training median counts as out of range."""


@dataclass
class EnsembleResults:
    per_image: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Per-image table of every ensemble: columns of the metrics table + ``arm, fold, seed, kind, n_members``."""
    mismatch: pd.DataFrame = field(default_factory=pd.DataFrame)
    """``anomaly.anomaly_scores`` of every run's clean prediction + ``arm, fold, seed``."""
    disagreement: pd.DataFrame = field(default_factory=pd.DataFrame)
    """``anomaly.ensemble_disagreement`` per (arm, fold) seed ensemble."""
    ensemble_features: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Structure features of each arm's all-runs ensemble prediction + ``arm``."""
    overall_mismatch: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Overall (all-foreground) mismatch score of each arm's all-runs ensemble + ``arm``."""
    panel_probs: dict[str, np.ndarray] = field(default_factory=dict)
    """Per arm: mean probabilities of the all-runs ensemble (float32 (N, C, S, S)) for the figures."""
    missing: list[str] = field(default_factory=list)
    """Run ids whose probabilities were not saved."""


def _typical_ref_pixels(inputs: StudyInputs) -> dict[str, float] | None:
    rf = inputs.reference_features
    if rf.empty or "area_px" not in rf.columns:
        return None
    present = rf[rf["present"].astype(bool)]
    return {str(c): float(v) for c, v in present.groupby("class")["area_px"].median().items()}


def score_probs(inputs: StudyInputs, probs: np.ndarray) -> pd.DataFrame:
    """Score ``probs`` (in the order of ``reference.npz``) against the reference masks."""
    from robustseg.pipeline.runner import score

    ref = inputs.reference
    assert ref is not None
    ev = dict(inputs.study.get("eval", {}))
    names = inputs.class_names
    if ref.native is not None:  # native-resolution study: mapped back and scored as the runs' tables
        return evaluate_probs(probs, ref.native, ev, class_names=names)[0][False]
    return score(probs, ref.masks, list(ref.image_id), ref.pixel_mm, ev, class_names=names)


def _aligned(inputs: StudyInputs, run_id: str) -> np.ndarray | None:
    """A run's probabilities in the order of ``reference.npz``."""
    loaded = load_probs(inputs, run_id)
    if loaded is None:
        return None
    ids, probs = loaded
    assert inputs.reference is not None
    pos = {k: i for i, k in enumerate(ids)}
    return probs[[pos[i] for i in inputs.reference.image_id]]


def _disagreement(members: list[np.ndarray], ids: np.ndarray, class_names: tuple[str, ...]) -> pd.DataFrame:
    parts = []
    for start in range(0, len(ids), CHUNK):
        stack = np.stack([m[start:start + CHUNK] for m in members])
        parts.append(anomaly.ensemble_disagreement(stack, image_ids=list(ids[start:start + CHUNK]),
                                                   class_names=class_names))
    return pd.concat(parts, ignore_index=True)


def build_ensembles(inputs: StudyInputs, runs: pd.DataFrame) -> EnsembleResults:
    """Score seed and seeds+folds ensembles of every arm; collect member mismatch and disagreement."""
    out = EnsembleResults()
    ref = inputs.reference
    if ref is None or runs.empty:
        return out
    ids = ref.image_id
    names = inputs.class_names
    typical = _typical_ref_pixels(inputs)
    tables, mismatch, disagree, feats, overall = [], [], [], [], []
    for arm, arm_runs in runs.groupby("arm", sort=False):
        arm_sum, arm_n = None, 0
        for fold, fold_runs in arm_runs.groupby("fold", sort=True):
            members = []
            for r in fold_runs.sort_values("seed").itertuples(index=False):
                probs = _aligned(inputs, r.run_id)
                if probs is None:
                    out.missing.append(r.run_id)
                    continue
                if ref.native is not None:
                    scores = map_native(anomaly.anomaly_scores, probs, ref.native, typical_ref_pixels=typical,
                                        class_names=names)
                else:
                    scores = anomaly.anomaly_scores(probs.argmax(axis=1).astype(np.uint8), ref.masks,
                                                    image_ids=list(ids), typical_ref_pixels=typical, class_names=names)
                mismatch.append(scores.assign(arm=arm, fold=fold, seed=r.seed))
                members.append(probs)
            if not members:
                continue
            fold_sum = np.sum(members, axis=0, dtype=np.float32)
            arm_sum = fold_sum if arm_sum is None else arm_sum + fold_sum
            arm_n += len(members)
            if len(members) >= 2:
                tables.append(score_probs(inputs, fold_sum / len(members))
                              .assign(arm=arm, fold=fold, seed=-1, kind="seeds", n_members=len(members)))
                disagree.append(_disagreement(members, ids, names).assign(arm=arm, fold=fold))
            del members
        if arm_sum is None:
            continue
        mean = arm_sum / arm_n
        if arm_n >= 2 and arm_runs["fold"].nunique() >= 2:
            tables.append(score_probs(inputs, mean).assign(arm=arm, fold=-1, seed=-1, kind="seeds+folds",
                                                      n_members=arm_n))
        if ref.native is not None:
            feats.append(native_features(mean, ref.native, class_names=names).assign(arm=arm))
            overall.append(map_native(anomaly.overall_anomaly_scores, mean, ref.native).assign(arm=arm))
        else:
            pred = mean.argmax(axis=1).astype(np.uint8)
            feats.append(anomaly.structure_features(pred, image_ids=list(ids), pixel_mm=ref.pixel_mm,
                                                    class_names=names).assign(arm=arm))
            overall.append(anomaly.overall_anomaly_scores(pred, ref.masks, image_ids=list(ids)).assign(arm=arm))
        out.panel_probs[str(arm)] = mean
    cat = lambda parts: pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()  # noqa: E731
    out.per_image, out.mismatch, out.disagreement = cat(tables), cat(mismatch), cat(disagree)
    out.ensemble_features, out.overall_mismatch = cat(feats), cat(overall)
    return out


def ensemble_vs_members(levels: pd.DataFrame, ens: EnsembleResults) -> pd.DataFrame:
    """Run-level global / per-image Dice of each ensemble against the distribution of its members."""
    if ens.per_image.empty:
        return pd.DataFrame()
    e_levels = stats.run_level_metrics(ens.per_image, runs=("arm", "fold", "seed", "kind"),
                                       per_image_metrics=("dice",))
    members = levels[levels["metric"] == "dice"]
    e_levels = e_levels[e_levels["metric"] == "dice"]
    parts = []
    seeds = e_levels[e_levels["kind"] == "seeds"]
    if not seeds.empty:
        by = ("arm", "fold", "class", "aggregate", "metric")
        parts.append(stats.ensemble_vs_members(members, seeds, by=by).assign(kind="seeds"))
    both = e_levels[e_levels["kind"] == "seeds+folds"]
    if not both.empty:
        by = ("arm", "class", "aggregate", "metric")
        parts.append(stats.ensemble_vs_members(members, both, by=by).assign(kind="seeds+folds", fold=-1))
    if not parts:
        return pd.DataFrame()
    res = pd.concat(parts, ignore_index=True)
    return res[["kind", "arm", "fold", "class", "aggregate", *[c for c in res.columns
                                                            if c not in ("kind", "arm", "fold", "class", "aggregate")]]]


def gt_free_scores(inputs: StudyInputs, ens: EnsembleResults) -> pd.DataFrame:
    """Ground-truth-free anomaly score per arm and test image, next to the mismatch score and labels.

    Components (the small structures ``inputs.small``, e.g. CSP and LV): ``disagreement`` = mean over folds and
    over the small structures of the seed ensemble's ``dice_disagreement``; ``range_z`` = largest robust z
    (``anomaly.out_of_range_scores``) of the all-runs ensemble's measurements of them against the training/validation reference masks; ``out_of_range`` =
    ``range_z > RANGE_Z``. ``gt_free_score`` = mean of the two components' percentile ranks over the test
    images (ties averaged), so neither scale dominates. ``mismatch`` = the ensemble's overall mismatch score.
    """
    if ens.disagreement.empty or ens.ensemble_features.empty:
        return pd.DataFrame()
    small = ens.disagreement[ens.disagreement["class"].isin(list(inputs.small))]
    dis = small.groupby(["arm", "image_id"], sort=False)["dice_disagreement"].mean().rename("disagreement")
    out = dis.reset_index()
    rf = inputs.reference_features
    if not rf.empty:
        ranges = anomaly.fit_reference_ranges(rf)
        feats = ens.ensemble_features[ens.ensemble_features["class"].isin(list(inputs.small))]
        parts = []
        for arm, f in feats.groupby("arm", sort=False):
            z = anomaly.max_abs_z(anomaly.out_of_range_scores(f.drop(columns="arm"), ranges))
            parts.append(z.assign(arm=arm))
        z = pd.concat(parts, ignore_index=True)
        zmax = z.groupby(["arm", "image_id"], sort=False)["max_abs_z"].max().fillna(0.0).rename("range_z")
        out = out.merge(zmax.reset_index(), on=["arm", "image_id"], how="left")
    else:
        out["range_z"] = np.nan
    out["out_of_range"] = out["range_z"] > RANGE_Z
    ranks = out.groupby("arm", sort=False)[["disagreement", "range_z"]].rank(pct=True)
    out["gt_free_score"] = ranks.mean(axis=1, skipna=True)
    overall = ens.overall_mismatch[["arm", "image_id", "score"]].rename(columns={"score": "mismatch"})
    out = out.merge(overall, on=["arm", "image_id"], how="left")
    if "abnormal" in inputs.index.columns:
        labels = inputs.index[["image_id", "abnormal", *(["abnormality"] if "abnormality" in inputs.index else [])]]
        out = out.merge(labels, on="image_id", how="left")
    return out


def gt_free_checks(scores: pd.DataFrame) -> pd.DataFrame:
    """Spearman correlation of each GT-free score with the mismatch score, and AUROC against ``abnormal`` with its
    DeLong CI on the logit scale (``auroc_ci_low``, ``auroc_ci_high``)."""
    if scores.empty:
        return pd.DataFrame()
    rows = []
    for col in ("gt_free_score", "disagreement", "range_z"):
        rc = stats.rank_correlation(scores, x=col, y="mismatch", by=("arm",))
        part = rc[["arm", "rho", "pval", "n"]].rename(columns={"rho": "spearman_rho", "pval": "spearman_p"})
        if "abnormal" in scores.columns and scores["abnormal"].notna().any():
            lab = scores.assign(abnormal=scores["abnormal"].astype("boolean"))
            au = stats.auroc_table(lab, score=col, label="abnormal", by=("arm",))
            au = au.rename(columns={"ci_low": "auroc_ci_low", "ci_high": "auroc_ci_high"})
            part = part.merge(au[["arm", "auroc", "auroc_ci_low", "auroc_ci_high", "n_pos", "n_neg"]], on="arm",
                              how="left")
        rows.append(part.assign(score=col))
    out = pd.concat(rows, ignore_index=True)
    return out[["arm", "score", *[c for c in out.columns if c not in ("arm", "score")]]]


__all__ = ["EnsembleResults", "build_ensembles", "ensemble_vs_members", "gt_free_checks",
           "gt_free_scores"]
