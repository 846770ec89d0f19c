"""Study-level tables of the report: summary, spread, ICC, Bland-Altman, robustness, arm comparison.

Every function takes the saved per-image table (plus the index where patients are needed) and returns a
tidy DataFrame; the maths lives in ``robustseg.stats``, ``robustseg.metrics`` and ``robustseg.qc.robustness``.
Nothing is rounded here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from robustseg import stats
from robustseg.labels import CLASS_NAMES, SMALL_CLASSES
from robustseg.qc.robustness import corruption_error, mean_corruption_error, robustness_summary

RUN = ("arm", "fold", "seed")
SPREAD_METRICS = ("dice", "iou", "hd95_mm", "nsd")
SMALL = tuple(CLASS_NAMES[i] for i in SMALL_CLASSES)
BOOT_SEED = 0


def order_classes(df: pd.DataFrame, arms: list[str] | None = None, first: tuple[str, ...] = ()) -> pd.DataFrame:
    """Sort rows by the ``first`` columns (order of appearance), then arm (plan order), then class (label order)."""
    if df.empty:
        return df.reset_index(drop=True)
    keys: dict[str, dict] = {c: {v: i for i, v in enumerate(pd.unique(df[c]))} for c in first if c in df.columns}
    if arms is not None and "arm" in df.columns:
        keys["arm"] = {a: i for i, a in enumerate(arms)}
    if "class" in df.columns:
        keys["class"] = {c: i for i, c in enumerate(CLASS_NAMES)}
    if not keys:
        return df.reset_index(drop=True)
    tmp = df.assign(**{f"_o_{c}": df[c].map(m).astype(float).fillna(len(m)) for c, m in keys.items()})
    tmp = tmp.sort_values([f"_o_{c}" for c in keys], kind="stable")
    return tmp.drop(columns=[f"_o_{c}" for c in keys]).reset_index(drop=True)


def run_level(clean: pd.DataFrame) -> pd.DataFrame:
    """One value per run, class, aggregate (global / per_image) and metric."""
    metrics = [m for m in SPREAD_METRICS if m in clean.columns]
    return stats.run_level_metrics(clean, runs=RUN, per_image_metrics=metrics)


def spread_table(levels: pd.DataFrame) -> pd.DataFrame:
    """Mean and SD across seeds / folds of every run-level value."""
    return stats.spread(levels, by=("arm", "class", "aggregate", "metric"))


def area_columns(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Add ``pred_area`` / ``ref_area`` in mm² (pixels where any pixel size is unknown); returns the unit."""
    known = bool(table["pixel_mm_known"].astype(bool).all()) if len(table) else False
    scale = table["pixel_mm"].to_numpy(dtype=np.float64) ** 2 if known else 1.0
    out = table.assign(pred_area=table["pred_pixels"].to_numpy() * scale, ref_area=table["ref_pixels"].to_numpy() * scale)
    return out, ("mm²" if known else "px")


def seed_icc(clean: pd.DataFrame, per_fold: bool = False) -> pd.DataFrame:
    """ICC(A,1) across seeds of per-image Dice and of predicted CSP / LV area.

    Targets are (fold, image): seeds are replicates only within one fold's training data. With
    ``per_fold`` one ICC per fold instead. Column ``measure`` says which value.
    """
    if clean.empty or clean["seed"].nunique() < 2:
        return pd.DataFrame()
    with_area, unit = area_columns(clean)
    by = ("arm", "fold", "class") if per_fold else ("arm", "class")
    targets = ("image_id",) if per_fold else ("fold", "image_id")
    parts = []
    dice = stats.icc(clean, targets=targets, raters="seed", ratings="dice", by=by,
                     kind=stats.SEED_REPRODUCIBILITY_KIND)
    parts.append(dice.assign(measure="dice"))
    small = with_area[with_area["class"].isin(SMALL)]
    area = stats.icc(small, targets=targets, raters="seed", ratings="pred_area", by=by,
                     kind=stats.SEED_REPRODUCIBILITY_KIND)
    parts.append(area.assign(measure=f"predicted area ({unit})"))
    out = pd.concat(parts, ignore_index=True)
    return out[["measure", *[c for c in out.columns if c != "measure"]]]


def run_mean_areas(clean: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Per arm, class and test image: the predicted CSP / LV area averaged over the arm's runs, and the
    reference area (one row per image, so agreement statistics count images, not image x run)."""
    with_area, unit = area_columns(clean[clean["class"].isin(SMALL)])
    if with_area.empty:
        return with_area, unit
    out = (with_area.groupby(["arm", "class", "image_id"], sort=False)
           .agg(pred_area=("pred_area", "mean"), ref_area=("ref_area", "first"), n_runs=("pred_area", "size"))
           .reset_index())
    return out, unit


def reference_agreement(clean: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    """ICC(A,1) and Bland-Altman of predicted (mean over the arm's runs) vs reference CSP / LV area per image;
    also returns the ``run_mean_areas`` table they were computed from, and its unit."""
    areas, unit = run_mean_areas(clean)
    if areas.empty:
        return pd.DataFrame(), pd.DataFrame(), areas, unit
    icc = stats.reference_agreement_icc(areas, pred="pred_area", ref="ref_area", by=("arm", "class"),
                                        targets=("image_id",))
    ba = stats.bland_altman(areas, pred="pred_area", ref="ref_area", by=("arm", "class"))
    return icc, ba, areas, unit


def summary_table(clean: pd.DataFrame, index: pd.DataFrame, levels: pd.DataFrame, n_boot: int,
                  icc_table: pd.DataFrame, arms: list[str], presence: pd.DataFrame) -> pd.DataFrame:
    """Per arm and class: global and per-image Dice (mean, seed SD, fold SD over runs), pooled estimate
    with patient-bootstrap CI, seed ICC of per-image Dice with its Koo-Li reading, presence counts
    (``presence``: the ``presence_table`` of ``clean``)."""
    with_pat = stats.attach_patients(clean, index)
    spreads = spread_table(levels[levels["metric"] == "dice"])
    rows = []
    for aggregate, statistic in (("global", "global_dice"), ("per_image", "mean")):
        sp = spreads[spreads["aggregate"] == aggregate][["arm", "class", "mean", "sd_seed", "sd_fold", "n_runs"]]
        ci = stats.patient_bootstrap_ci(with_pat, value="dice", by=("arm", "class"), n_boot=max(n_boot, 1),
                                        seed=BOOT_SEED, statistic=statistic)
        ci = ci[["arm", "class", "estimate", "ci_low", "ci_high", "n_patients", "n_images"]]
        part = sp.merge(ci, on=["arm", "class"], how="left")
        part.columns = ["arm", "class", *[f"{aggregate}_{c}" for c in part.columns[2:]]]
        rows.append(part)
    out = rows[0].merge(rows[1], on=["arm", "class"], how="outer")
    if not icc_table.empty:
        icc = icc_table[icc_table["measure"] == "dice"][["arm", "class", "icc", "ci_low", "ci_high", "reading"]]
        icc = icc.rename(columns={"icc": "icc_dice", "ci_low": "icc_ci_low", "ci_high": "icc_ci_high",
                                  "reading": "icc_reading"})
        out = out.merge(icc, on=["arm", "class"], how="left")
    else:
        out = out.assign(icc_dice=np.nan, icc_ci_low=np.nan, icc_ci_high=np.nan, icc_reading="n/a (one seed)")
    out = out.merge(presence, on=["arm", "class"], how="left")
    return order_classes(out, arms)


def presence_table(clean: pd.DataFrame) -> pd.DataFrame:
    """Presence-case counts per arm and class, over all image x run rows (``images x runs``)."""
    from robustseg.metrics import presence_counts

    return presence_counts(clean, by=("arm",))


def robustness_tables(per_image: pd.DataFrame, baseline: str) -> dict[str, pd.DataFrame]:
    """Dice per severity (perturbed and external test sets next to clean), retention and (m)CE."""
    raw = per_image[~per_image["postprocessed"].astype(bool)]
    test = raw[raw["testset"] == "test"]
    external = raw[raw["testset"] != "test"]
    ext = external.assign(perturbation="external: " + external["testset"].astype(str), severity=0)
    curves = robustness_summary(pd.concat([test, ext], ignore_index=True))
    out = {"robustness": curves}
    if (test["perturbation"] != "none").any():
        out["corruption_error"] = corruption_error(test, baseline)
        out["mce"] = mean_corruption_error(test, baseline)
    return out


def retention_table(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean retention per arm, class and condition over its severities (clean excluded)."""
    cond = curves[curves["perturbation"] != "none"]
    if cond.empty:
        return pd.DataFrame()
    return (cond.groupby(["arm", "class", "perturbation"], sort=True)
            .agg(retention=("retention_mean", "mean"), dice=("dice_mean", "mean"), n_severities=("severity", "nunique"))
            .reset_index())


def arm_comparisons(clean: pd.DataFrame, index: pd.DataFrame, arms: list[str], n_boot: int) -> pd.DataFrame:
    """Paired per-image comparison of every arm against the baseline (first arm), per class and metric."""
    if len(arms) < 2:
        return pd.DataFrame()
    with_pat = stats.attach_patients(clean, index)
    parts = []
    for other in arms[1:]:
        for metric in ("dice", "hd95_mm"):
            if metric not in with_pat.columns or with_pat[metric].notna().sum() == 0:
                continue
            parts.append(stats.compare_arms(with_pat, value=metric, arm_a=other, arm_b=arms[0], by=("class",),
                                            patient_col="patient_id", n_boot=max(n_boot, 1), seed=BOOT_SEED))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def postprocessing_table(per_image: pd.DataFrame, arms: list[str]) -> pd.DataFrame:
    """Raw vs post-processed global and per-image Dice on the clean test set, mean over runs."""
    both = per_image[(per_image["testset"] == "test") & (per_image["perturbation"] == "none")]
    if both.empty or both["postprocessed"].nunique() < 2:
        return pd.DataFrame()
    levels = stats.run_level_metrics(both.assign(postprocessed=both["postprocessed"].map({False: "raw", True: "post"})),
                                     runs=(*RUN, "postprocessed"), per_image_metrics=("dice",))
    levels = levels[levels["metric"] == "dice"]
    mean = levels.groupby(["arm", "class", "aggregate", "postprocessed"], sort=False)["value"].mean().unstack("postprocessed")
    mean = mean.reset_index()
    mean["post_minus_raw"] = mean["post"] - mean["raw"]
    mean.columns.name = None
    return order_classes(mean[["arm", "class", "aggregate", "raw", "post", "post_minus_raw"]], arms)
