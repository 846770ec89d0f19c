"""Compute every table of the report from the saved inputs (no files written here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from robustseg._warnings import LOG_NAME, read_log
from robustseg.labels import CLASS_NAMES, display_name
from robustseg.report import aggregate as agg
from robustseg.report.ensembles import (
    EnsembleResults,
    build_ensembles,
    ensemble_vs_members,
    gt_free_checks,
    gt_free_scores,
)
from robustseg.report.load import StudyInputs, clean_rows
from robustseg.report.planning import Plan, plan_tables, study_flags
from robustseg.report.repro import environment_table
from robustseg.stats.runlevel import DEFAULT_MARGIN

STRUCTURE_MEASURES = (("csp", "area_mm2", "area (mm²)"), ("lv", "area_mm2", "area (mm²)"),
                      ("lv", "minor_axis_mm", "minor axis ≈ atrial width (mm)"))
"""The fetal clinical measurements (class, feature column, label): reported only for the classes a data set has."""


def structure_measures(class_names: Sequence[str]) -> list[tuple[str, str, str]]:
    """The entries of :data:`STRUCTURE_MEASURES` whose class is one of ``class_names`` (none for other data sets)."""
    return [m for m in STRUCTURE_MEASURES if m[0] in set(class_names)]


@dataclass
class Results:
    inputs: StudyInputs
    arms: list[str]
    baseline: str
    n_boot: int
    clean: pd.DataFrame
    levels: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    area_unit: str = "px"
    areas: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Predicted vs reference area of the small structures (CSP / LV) per arm, class and image of the
    Bland-Altman figure (the all-runs
    ensemble's where there is one, else every run's; ``aggregate.reference_agreement``)."""
    areas_label: str = ""
    n_patients: int = 0
    """Distinct patients among the clean test images."""
    ensembles: EnsembleResults = field(default_factory=EnsembleResults)
    picks: list[tuple[str, int, str]] = field(default_factory=list)
    structures: pd.DataFrame = field(default_factory=pd.DataFrame)
    margin: float = DEFAULT_MARGIN
    """Equivalence margin of the arm comparisons (``compare.margin``)."""
    plan: Plan | None = None
    """What the study can claim and what a claim would need (``report.planning``)."""


def _picks(inputs: StudyInputs, ens: EnsembleResults, arm: str) -> tuple[list[tuple[str, int, str]], pd.DataFrame]:
    """Best and median test image of ``arm``'s ensemble by mean foreground Dice, then the worst image per
    small structure (lowest Dice of each of ``inputs.small``, e.g. CSP and LV; a structure's failure is hidden in
    a mean over classes). Ties: image id. An image picked twice is shown once, with both labels."""
    from robustseg.report.ensembles import score_probs

    if arm not in ens.panel_probs or inputs.reference is None:
        return [], pd.DataFrame()
    table = score_probs(inputs, ens.panel_probs[arm])
    fg = table[table["class"] != inputs.class_names[0]]
    per = fg.groupby("image_id", sort=True)["dice"].mean().dropna().rename("mean_fg_dice").reset_index()
    if per.empty:
        return [], per
    per = per.sort_values(["mean_fg_dice", "image_id"], kind="stable").reset_index(drop=True)
    pos = {k: i for i, k in enumerate(inputs.reference.image_id)}
    chosen = [(f"best (Dice {per.iloc[-1].mean_fg_dice:.2f})", per.iloc[-1].image_id),
              (f"median (Dice {per.iloc[(len(per) - 1) // 2].mean_fg_dice:.2f})", per.iloc[(len(per) - 1) // 2].image_id)]
    for name in inputs.small:
        cls = table[table["class"] == name].dropna(subset=["dice"]).sort_values(["dice", "image_id"], kind="stable")
        if not cls.empty:
            worst = cls.iloc[0]
            chosen.append((f"worst {display_name(name)} (Dice {worst.dice:.2f})", worst.image_id))
    labels: dict[str, list[str]] = {}
    for label, image_id in chosen:
        labels.setdefault(image_id, []).append(label)
    picks = [("; ".join(labs), pos[image_id], image_id) for image_id, labs in labels.items()]
    return picks, per.assign(arm=arm)


def _structures(inputs: StudyInputs, baseline: str) -> pd.DataFrame:
    """Reference (one row per image) and predicted (every run of the baseline arm) structure measurements,
    with ``group`` normal / abnormal from the index (``all`` where the data do not say)."""
    f = inputs.features
    if f.empty:
        return f
    ref = f[f["source"] == "ref"].drop_duplicates(["image_id", "class"])
    pred = f[(f["source"] == "pred") & (f["arm"] == baseline)]
    out = pd.concat([ref, pred], ignore_index=True)
    index = inputs.index.set_index("image_id")
    if "abnormal" in index.columns and index["abnormal"].notna().any():
        flag = out["image_id"].map(index["abnormal"].astype("boolean"))
        group = flag.map({True: "abnormal", False: "normal"})
        if "abnormality" in index.columns:  # name the kind (e.g. absent_csp, enlarged_lv) where the data do
            kind = out["image_id"].map(index["abnormality"].astype("string"))
            named = (kind.notna() & kind.ne("none")).fillna(False).astype(bool)  # NA-safe with pyarrow strings too
            group = group.where(~(flag.fillna(False).astype(bool) & named), kind)
        out["group"] = group.fillna("all").astype(str)
    else:
        out["group"] = "all"
    return out


def structure_summary(structures: pd.DataFrame, class_names: Sequence[str] = CLASS_NAMES) -> pd.DataFrame:
    """Median and IQR of each measurement (:func:`structure_measures` of ``class_names``) per class, group and
    source (absent structures: area 0, axes NaN)."""
    rows = []
    for cls, col, label in structure_measures(class_names):
        if structures.empty or col not in structures.columns:
            continue
        sub = structures[structures["class"] == cls]
        for (group, source), g in sub.groupby(["group", "source"], sort=True):
            v = g[col].dropna().to_numpy(dtype=float)
            q = np.percentile(v, [25, 50, 75]) if v.size else [np.nan] * 3
            rows.append({"class": cls, "measure": label, "group": group, "source": source, "n": int(v.size),
                         "median": q[1], "q1": q[0], "q3": q[2]})
    return pd.DataFrame(rows)


def test_sets(per_image: pd.DataFrame, index: pd.DataFrame) -> pd.DataFrame:
    """Images (and patients, where the index knows them) of the held-out test set and of each external set."""
    if per_image.empty:
        return pd.DataFrame(columns=["testset", "n_images", "n_patients"])
    rows = []
    patients = index.set_index("image_id")["patient_id"] if {"image_id", "patient_id"} <= set(index.columns) else None
    for name, g in per_image.groupby("testset", sort=False):
        ids = pd.unique(g["image_id"])
        known = patients.reindex(ids).dropna() if patients is not None and name == "test" else pd.Series(dtype=str)
        rows.append({"testset": str(name), "n_images": len(ids), "n_patients": known.nunique() if len(known) else np.nan})
    out = pd.DataFrame(rows)
    return out.assign(_o=out["testset"] != "test").sort_values(["_o", "testset"], kind="stable").drop(columns="_o") \
        .reset_index(drop=True)


def compute(inputs: StudyInputs) -> Results:
    arms = inputs.arms
    n_boot = int(inputs.study.get("execution", {}).get("bootstrap", 2000))
    clean = clean_rows(inputs.per_image)
    res = Results(inputs, arms, arms[0], n_boot, clean, pd.DataFrame())
    res.tables.update(runs=inputs.runs, environment=environment_table(inputs.completes),
                      test_sets=test_sets(inputs.per_image, inputs.index),
                      warnings=read_log(inputs.runs_dir / LOG_NAME))  # Python warnings of the runs
    if clean.empty:
        return res
    arms = [a for a in arms if a in set(clean["arm"])]
    res.arms, res.baseline = arms, arms[0]
    res.levels = agg.run_level(clean)
    t = res.tables
    t["run_level"] = res.levels
    names, small = inputs.class_names, inputs.small
    t["spread"] = agg.order_classes(agg.spread_table(res.levels), arms, classes=names)
    t["icc_seed"] = agg.seed_icc(clean, small=small)
    t["icc_seed_per_fold"] = agg.seed_icc(clean, per_fold=True, small=small)
    t["presence_kappa"] = agg.presence_kappa(clean, small)
    res.n_patients = agg.n_test_patients(clean, inputs.index)
    presence = agg.presence_table(clean)
    t["intervals"] = agg.interval_table(clean, inputs.index, names)
    t["summary"] = agg.summary_table(t["intervals"], res.levels, t["icc_seed"], arms, presence, names)
    t["presence"] = agg.order_classes(presence, arms, classes=names)
    t.update(agg.robustness_tables(inputs.per_image, res.baseline, inputs.damage))
    t["retention"] = agg.retention_table(t["robustness"])
    res.margin = float(inputs.study.get("compare", {}).get("margin", DEFAULT_MARGIN))
    flags = study_flags(inputs.completes, inputs.runs)
    t["arm_comparison"] = agg.arm_comparisons(clean, inputs.index, arms, n_boot, res.margin, flags)
    k = inputs.study.get("split", {}).get("k_folds")
    res.plan = plan_tables(clean, inputs.index, arms, flags=flags, intervals=t["intervals"],
                           k_folds=int(k) if k else None, margin=res.margin)
    t.update(res.plan.tables)
    t["arm_ranking"] = agg.arm_ranking(clean, inputs.index, arms, n_boot)
    t["postprocessing"] = agg.postprocessing_table(inputs.per_image, arms, names)
    complete = inputs.plan[inputs.plan["run_id"].isin(set(clean["run_id"]))]
    res.ensembles = build_ensembles(inputs, complete)
    t["ensembles"] = ensemble_vs_members(res.levels, res.ensembles)
    t["ensemble_per_image"] = res.ensembles.per_image
    ref_agree = agg.reference_agreement(clean, res.ensembles.per_image, small)
    t["icc_reference"], t["bland_altman"] = ref_agree["icc"], ref_agree["bland_altman"]
    t["icc_reference_runs"], t["bland_altman_runs"] = ref_agree["icc_runs"], ref_agree["bland_altman_runs"]
    res.areas, res.area_unit = ref_agree["areas"], ref_agree["unit"]
    res.areas_label = ("all-runs ensemble" if "kind" in res.areas.columns else "every run") if not res.areas.empty else ""
    t["mismatch"] = res.ensembles.mismatch
    t["disagreement"] = res.ensembles.disagreement
    t["gt_free"] = gt_free_scores(inputs, res.ensembles)
    t["gt_free_checks"] = gt_free_checks(t["gt_free"])
    res.structures = _structures(inputs, res.baseline)
    t["structures"] = structure_summary(res.structures, names)
    res.picks, t["qualitative"] = _picks(inputs, res.ensembles, res.baseline)
    from robustseg.report import qc_section  # GT-free QC as failure detection (risk-coverage)

    t.update(qc_section.tables(inputs, set(clean["run_id"]), n_boot))
    firsts = {"intervals": ("statistic", "interval"), "icc_seed": ("measure",), "icc_seed_per_fold": ("measure",), "ensembles": ("kind",),
              "gt_free_checks": ("score",), "icc_reference": ("prediction",), "bland_altman": ("prediction",)}
    for name, df in t.items():
        if (isinstance(df, pd.DataFrame) and not df.empty and "arm" in df.columns
                and name not in ("run_level", "arm_ranking", "runs", "environment")):
            t[name] = agg.order_classes(df, arms, firsts.get(name, ()), classes=names)
    return res
