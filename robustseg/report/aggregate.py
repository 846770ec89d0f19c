"""Study-level tables of the report: summary, spread, ICC, Bland-Altman, robustness, arm comparison.

Every function takes the saved per-image table (plus the index where patients are needed) and returns a
tidy DataFrame; the maths lives in ``robustseg.stats``, ``robustseg.metrics`` and ``robustseg.qc.robustness``.
Nothing is rounded here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from robustseg import stats
from robustseg.labels import CLASS_NAMES, SMALL_STRUCTURES
from robustseg.qc.robustness import (
    corruption_error,
    damage_summary,
    matched_damage,
    mean_corruption_error,
    robustness_summary,
    severity_weighted,
)

RUN = ("arm", "fold", "seed")
SPREAD_METRICS = ("dice", "iou", "hd95_mm", "nsd")
SMALL = SMALL_STRUCTURES
"""The default small structures (CSP, LV); a study's report uses those of its data set (``data.small_structures``)."""
BOOT_SEED = 0
ALPHA = 0.05
"""Significance level of the report's tests and intervals."""
FEW_PATIENTS = 30
"""Below this many test patients the report says that the test set limits what can be concluded."""


def order_classes(df: pd.DataFrame, arms: list[str] | None = None, first: tuple[str, ...] = (),
                  classes: Sequence[str] = CLASS_NAMES) -> pd.DataFrame:
    """Sort rows by the ``first`` columns (order of appearance), then arm (plan order), then class (label order
    of ``classes``, the data set's class names; others after them)."""
    if df.empty:
        return df.reset_index(drop=True)
    keys: dict[str, dict] = {c: {v: i for i, v in enumerate(pd.unique(df[c]))} for c in first if c in df.columns}
    if arms is not None and "arm" in df.columns:
        keys["arm"] = {a: i for i, a in enumerate(arms)}
    if "class" in df.columns:
        keys["class"] = {c: i for i, c in enumerate(classes)}
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


def seed_icc(clean: pd.DataFrame, per_fold: bool = False, small: Sequence[str] = SMALL) -> pd.DataFrame:
    """ICC(A,1) across seeds of per-image Dice and of the predicted area of the ``small`` structures (CSP / LV),
    per arm and class.

    Seeds are nested in folds (``stats.pooled_seed_icc``: per-fold variance components pooled, targets =
    test images, a failed run removes only itself). Dice uses only images whose reference has the
    structure (elsewhere Dice is undefined or 0/1 by convention): ``n_ref_absent`` counts the images left
    out for that reason, ``n_dropped`` every image left out. The predicted area uses only the images where
    the reference or some seed of the fold has the structure: an image where every seed predicts nothing and
    the reference is empty agrees trivially (0 vs 0) and would inflate the ICC; ``n_all_empty`` counts the
    images left out for that reason in every fold. With ``per_fold`` one ICC per fold instead
    (``stats.icc``). Column ``measure`` says which value.
    """
    if clean.empty or clean.groupby("fold")["seed"].nunique().max() < 2:
        return pd.DataFrame()
    with_area, unit = area_columns(clean)
    present = clean[clean["ref_pixels"] > 0]
    n_all = clean.groupby(["arm", "class"])["image_id"].nunique()
    n_present = present.groupby(["arm", "class"])["image_id"].nunique().reindex(n_all.index, fill_value=0)
    absent = (n_all - n_present).rename("n_ref_absent").reset_index()
    small_rows = with_area[with_area["class"].isin(list(small))]
    keys = ["arm", "class", "fold", "image_id"]
    some = ((small_rows["pred_pixels"] > 0) | (small_rows["ref_pixels"] > 0)).groupby(
        [small_rows[k] for k in keys]).transform("any")
    area_rows = small_rows[some.to_numpy(dtype=bool)]
    kept = area_rows.groupby(["arm", "class"])["image_id"].nunique()
    n_small = small_rows.groupby(["arm", "class"])["image_id"].nunique()
    empty = (n_small - kept.reindex(n_small.index, fill_value=0)).rename("n_all_empty").reset_index()
    if per_fold:
        dice = stats.icc(present, targets="image_id", raters="seed", ratings="dice", by=("arm", "fold", "class"),
                         kind=stats.SEED_REPRODUCIBILITY_KIND)
        area = stats.icc(area_rows, targets="image_id", raters="seed", ratings="pred_area",
                         by=("arm", "fold", "class"), kind=stats.SEED_REPRODUCIBILITY_KIND)
    else:
        dice = stats.pooled_seed_icc(present, value="dice", by=("arm", "class"))
        area = stats.pooled_seed_icc(area_rows, value="pred_area", by=("arm", "class"))
    dice = dice.merge(absent, on=["arm", "class"], how="left")
    dice["n_dropped"] = dice["n_dropped"] + dice["n_ref_absent"]
    dice["n_all_empty"] = 0
    area = area.merge(empty, on=["arm", "class"], how="left")
    area["n_all_empty"] = area["n_all_empty"].fillna(0).astype(int)
    area["n_ref_absent"] = 0
    if not per_fold:
        area["n_dropped"] = area["n_dropped"] + area["n_all_empty"]
    out = pd.concat([dice.assign(measure="dice (reference present)"),
                     area.assign(measure=f"predicted area ({unit}; images where a seed or the reference has it)")],
                    ignore_index=True)
    return out[["measure", *[c for c in out.columns if c != "measure"]]]


def presence_kappa(clean: pd.DataFrame, small: Sequence[str] = SMALL) -> pd.DataFrame:
    """Fleiss' kappa of the seeds of each fold on the presence of the ``small`` structures (CSP / LV;
    ``stats.presence_agreement``)."""
    small = clean[clean["class"].isin(list(small))]
    if small.empty or small.groupby("fold")["seed"].nunique().max() < 2:
        return pd.DataFrame()
    return stats.presence_agreement(small, by=("arm", "class"))


def _area_rows(table: pd.DataFrame, small: Sequence[str] = SMALL) -> tuple[pd.DataFrame, str]:
    """Rows of the small structures (CSP / LV) with areas; flags the rows where reference or prediction has
    the structure."""
    with_area, unit = area_columns(table[table["class"].isin(list(small))])
    return with_area.assign(_any=(with_area["ref_pixels"] > 0) | (with_area["pred_pixels"] > 0)), unit


def reference_agreement(clean: pd.DataFrame, ensemble: pd.DataFrame | None = None, small: Sequence[str] = SMALL
                        ) -> dict[str, pd.DataFrame | str]:
    """ICC(A,1) and Bland-Altman of predicted vs reference area of the ``small`` structures (CSP / LV), per
    single run and for the ensemble.

    Only images where the reference or the prediction has the structure count (``n_both_absent`` counts
    the rest, which agree trivially). *Single run*: the statistics of every run on its own (one trained
    model, as a user would deploy), summarised as mean, min and max over the arm's runs
    (``tables/icc_reference_runs.csv`` and ``bland_altman_runs.csv`` per run). *Ensemble*: the all-runs
    ensemble of ``ensemble`` (the per-image table of kind ``seeds+folds``) when there is one.

    Returns ``icc``, ``bland_altman`` (summary rows; column ``prediction``), ``icc_runs``,
    ``bland_altman_runs``, ``areas`` (the points of the Bland-Altman figure: the ensemble's where it
    exists, else every run's), ``unit``. Single-run summary rows hold the mean over runs of every column
    (``icc_min``/``icc_max``, ``bias_min``/``bias_max``, ``loa_low_min``/``loa_high_max``: extremes over runs)
    except ``slope_p``, which is NaN there: ``n_runs_proportional_bias`` counts the runs with
    ``slope_p < 0.05``.
    """
    rows, unit = _area_rows(clean, small)
    empty = {"icc": pd.DataFrame(), "bland_altman": pd.DataFrame(), "icc_runs": pd.DataFrame(),
             "bland_altman_runs": pd.DataFrame(), "areas": pd.DataFrame(), "unit": unit}
    if rows.empty:
        return empty
    both_absent = (~rows["_any"]).groupby([rows[c] for c in RUN + ("class",)]).sum().rename("n_both_absent")
    used = rows[rows["_any"]]
    by_run = ("arm", "fold", "seed", "class")
    icc_runs = stats.reference_agreement_icc(used, pred="pred_area", ref="ref_area", by=by_run, targets=("image_id",))
    ba_runs = stats.bland_altman(used, pred="pred_area", ref="ref_area", by=by_run)
    icc_runs = icc_runs.merge(both_absent.reset_index(), on=list(by_run), how="left")
    ba_runs = ba_runs.merge(both_absent.reset_index(), on=list(by_run), how="left")
    icc_sum = _summarise_runs(icc_runs, ["icc", "ci_low", "ci_high", "n_targets", "n_both_absent"])
    ba_sum = _summarise_runs(ba_runs, ["bias", "sd", "loa_low", "loa_high", "bias_ci_low", "bias_ci_high",
                                       "loa_low_ci_low", "loa_low_ci_high", "loa_high_ci_low", "loa_high_ci_high",
                                       "slope", "slope_p", "n", "n_both_absent"])
    icc_sum["reading"] = [stats.koo_li_interval(lo, hi) for lo, hi in zip(icc_sum["ci_low"], icc_sum["ci_high"],
                                                                          strict=True)]
    icc_parts, ba_parts, areas = [icc_sum.assign(prediction="single run")], [ba_sum.assign(prediction="single run")], used
    if ensemble is not None and not ensemble.empty and {"pixel_mm", "pred_pixels"} <= set(ensemble.columns):
        e = ensemble[ensemble["kind"] == "seeds+folds"] if "kind" in ensemble.columns else ensemble
        e_rows, _ = _area_rows(e, small)
        if not e_rows.empty:
            absent_e = (~e_rows["_any"]).groupby([e_rows["arm"], e_rows["class"]]).sum().rename("n_both_absent")
            e_used = e_rows[e_rows["_any"]]
            icc_e = stats.reference_agreement_icc(e_used, pred="pred_area", ref="ref_area", by=("arm", "class"),
                                                  targets=("image_id",))
            ba_e = stats.bland_altman(e_used, pred="pred_area", ref="ref_area", by=("arm", "class"))
            icc_parts.append(icc_e.merge(absent_e.reset_index(), on=["arm", "class"], how="left")
                             .assign(prediction="ensemble (all runs)", n_runs=1))
            ba_parts.append(ba_e.merge(absent_e.reset_index(), on=["arm", "class"], how="left")
                            .assign(prediction="ensemble (all runs)", n_runs=1))
            areas = e_used
    icc_out = pd.concat(icc_parts, ignore_index=True)
    ba_out = pd.concat(ba_parts, ignore_index=True)
    front = ["prediction", "arm", "class"]
    return {"icc": icc_out[front + [c for c in icc_out.columns if c not in front]],
            "bland_altman": ba_out[front + [c for c in ba_out.columns if c not in front]],
            "icc_runs": icc_runs, "bland_altman_runs": ba_runs,
            "areas": areas.drop(columns="_any"), "unit": unit}


def _summarise_runs(per_run: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Mean over an arm's runs of each column, with ``<col>_min`` / ``<col>_max`` for the statistic itself."""
    g = per_run.groupby(["arm", "class"], sort=False)
    out = g[cols].mean()
    head = cols[0]
    out[f"{head}_min"], out[f"{head}_max"] = g[head].min(), g[head].max()
    if "loa_low" in cols:
        out["loa_low_min"], out["loa_high_max"] = g["loa_low"].min(), g["loa_high"].max()
    if "slope_p" in cols:  # a mean of p-values means nothing: count the runs with a proportional bias instead
        out["slope_p"] = np.nan
        out["n_runs_proportional_bias"] = g["slope_p"].apply(lambda p: int((p < ALPHA).sum()))
    out["n_runs"] = g.size()
    return out.reset_index()


def interval_table(clean: pd.DataFrame, index: pd.DataFrame, classes: Sequence[str] = CLASS_NAMES) -> pd.DataFrame:
    """Recipe and test-set intervals of pooled global and per-image Dice per arm and class
    (``stats.dice_intervals``; two statistics x two intervals per group, long format)."""
    with_pat = stats.attach_patients(clean, index)
    parts = [stats.dice_intervals(with_pat, statistic=st, by=("arm", "class"), alpha=ALPHA)
             for st in ("global_dice", "mean")]
    return order_classes(pd.concat(parts, ignore_index=True), classes=classes)


def summary_table(intervals: pd.DataFrame, levels: pd.DataFrame, icc_table: pd.DataFrame, arms: list[str],
                  presence: pd.DataFrame, classes: Sequence[str] = CLASS_NAMES) -> pd.DataFrame:
    """Per arm and class: global and per-image Dice (mean, seed SD, fold SD over runs), the pooled estimate with
    its **recipe** interval (new training runs and new patients) and its **test-set** interval (new patients,
    these trained models) from ``intervals`` (:func:`interval_table`), seed ICC of per-image Dice with its
    Koo-Li reading, presence counts (``presence``: the ``presence_table`` of the clean rows)."""
    spreads = spread_table(levels[levels["metric"] == "dice"])
    rows = []
    for aggregate, statistic in (("global", "global_dice"), ("per_image", "mean")):
        sp = spreads[spreads["aggregate"] == aggregate][["arm", "class", "mean", "sd_seed", "sd_fold", "n_runs"]]
        iv = intervals[intervals["statistic"] == statistic]
        rec = iv[iv["interval"] == "recipe"][["arm", "class", "estimate", "ci_low", "ci_high", "note", "n_patients",
                                              "n_images"]]
        rec = rec.rename(columns={"ci_low": "recipe_low", "ci_high": "recipe_high", "note": "recipe_note"})
        test = iv[iv["interval"] == "test-set"][["arm", "class", "ci_low", "ci_high", "note"]]
        test = test.rename(columns={"ci_low": "test_low", "ci_high": "test_high", "note": "test_note"})
        part = sp.merge(rec, on=["arm", "class"], how="left").merge(test, on=["arm", "class"], how="left")
        part.columns = ["arm", "class", *[f"{aggregate}_{c}" for c in part.columns[2:]]]
        rows.append(part)
    out = rows[0].merge(rows[1], on=["arm", "class"], how="outer")
    if not icc_table.empty:
        icc = icc_table[icc_table["measure"].str.startswith("dice")][["arm", "class", "icc", "ci_low", "ci_high",
                                                                      "reading"]]
        icc = icc.rename(columns={"icc": "icc_dice", "ci_low": "icc_ci_low", "ci_high": "icc_ci_high",
                                  "reading": "icc_reading"})
        out = out.merge(icc, on=["arm", "class"], how="left")
    else:
        out = out.assign(icc_dice=np.nan, icc_ci_low=np.nan, icc_ci_high=np.nan, icc_reading="n/a (one seed)")
    out = out.merge(presence, on=["arm", "class"], how="left")
    return order_classes(out, arms, classes=classes)


def presence_table(clean: pd.DataFrame) -> pd.DataFrame:
    """Presence-case counts per arm and class, over all image x run rows (``images x runs``)."""
    from robustseg.metrics import presence_counts

    return presence_counts(clean, by=("arm",))


def robustness_tables(per_image: pd.DataFrame, baseline: str, damage: pd.DataFrame | None = None
                      ) -> dict[str, pd.DataFrame]:
    """Dice per severity (perturbed and external test sets next to clean), retention, (m)CE, the ROOD-style
    severity-weighted Dice and degradation (``degradation``), and with a ``damage`` table the in-fan SSIM / PSNR
    per perturbation and severity (``damage``) and the Dice retention at matched image damage (``matched_damage``)."""
    raw = per_image[~per_image["postprocessed"].astype(bool)]
    test = raw[raw["testset"] == "test"]
    external = raw[raw["testset"] != "test"]
    ext = external.assign(perturbation="external: " + external["testset"].astype(str), severity=0)
    curves = robustness_summary(pd.concat([test, ext], ignore_index=True))
    out = {"robustness": curves}
    if (test["perturbation"] != "none").any():
        out["corruption_error"] = corruption_error(test, baseline)
        out["mce"] = mean_corruption_error(test, baseline)
        out["degradation"] = severity_weighted(test)
        if damage is not None and not damage.empty:
            out["damage"] = damage_summary(damage)
            out["matched_damage"] = matched_damage(test, damage)
    return out


def retention_table(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean retention per arm, class and condition over its severities (clean excluded)."""
    cond = curves[curves["perturbation"] != "none"]
    if cond.empty:
        return pd.DataFrame()
    return (cond.groupby(["arm", "class", "perturbation"], sort=True)
            .agg(retention=("retention_mean", "mean"), dice=("dice_mean", "mean"), n_severities=("severity", "nunique"))
            .reset_index())


def arm_comparisons(clean: pd.DataFrame, index: pd.DataFrame, arms: list[str], n_boot: int,
                    margin: float = stats.DEFAULT_MARGIN, flags: pd.DataFrame | None = None) -> pd.DataFrame:
    """Run-level comparison of every pair of arms on every foreground class (``stats.compare_runs``).

    Measure: per-image Dice over every test image with both-empty = 1 (``stats.dice_all_images``), so a
    false positive on a structure-absent image counts; each run's value is its mean over the test
    images; the test of the runs' design (k x n blocked by fold, 1 x n Welch, k x 1 paired by fold); Holm
    over every row (all arm pairs x the foreground classes; background left out); MDD, equivalence within
    ``margin`` and a decision per row; ``flags`` (collapsed and failed runs) marked on the rows they touch.
    """
    if len(arms) < 2:
        return pd.DataFrame()
    with_pat = stats.attach_patients(clean[clean["class"] != "background"], index)
    return stats.compare_runs(with_pat, arms=arms, by=("class",), patient_col="patient_id",
                              n_boot=max(n_boot, 1), seed=BOOT_SEED, margin=margin, flags=flags, alpha=ALPHA)


def arm_ranking(clean: pd.DataFrame, index: pd.DataFrame, arms: list[str], n_boot: int) -> pd.DataFrame:
    """Arm ranking per structure and its stability under a patient bootstrap (``stats.ranking_stability``)."""
    if len(arms) < 2:
        return pd.DataFrame()
    with_pat = stats.attach_patients(clean[clean["class"] != "background"], index)
    return stats.ranking_stability(with_pat, arms=arms, by=("class",), patient_col="patient_id",
                                   n_boot=max(n_boot, 1), seed=BOOT_SEED)


def n_test_patients(clean: pd.DataFrame, index: pd.DataFrame) -> int:
    """Distinct patients among the clean test images."""
    if clean.empty:
        return 0
    return int(stats.attach_patients(clean.drop_duplicates("image_id")[["image_id"]], index)["patient_id"].nunique())


def postprocessing_table(per_image: pd.DataFrame, arms: list[str], classes: Sequence[str] = CLASS_NAMES
                         ) -> pd.DataFrame:
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
    return order_classes(mean[["arm", "class", "aggregate", "raw", "post", "post_minus_raw"]], arms, classes=classes)
