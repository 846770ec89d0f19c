"""The Markdown sections of the report, each a pure function of the computed results."""

from __future__ import annotations

import pandas as pd

from robustseg.report import markdown as md
from robustseg.report.compute import Results
from robustseg.report.ensembles import RANGE_Z

SECTIONS = (
    "Summary",
    "Seed and fold spread",
    "Robustness to perturbations and external test sets",
    "Reproducibility and agreement (ICC, Bland-Altman)",
    "Ensembles vs members",
    "Arm comparison",
    "Anomaly scores and structure measurements",
    "Qualitative examples",
    "Post-processing: raw vs post-processed",
    "Training curves",
    "Reproducibility",
)
"""Section headings, in order (every report has all of them; empty ones say why)."""


def heading(i: int) -> str:
    return f"## {i + 1}. {SECTIONS[i]}\n"


def _arm_cols(res: Results) -> dict:
    return {"arm": "Arm"} if len(res.arms) > 1 else {}


def _presence(r: pd.Series) -> str:
    return f"{int(r['both'])} / {int(r['ref_only'])} / {int(r['pred_only'])} / {int(r['neither'])}"


def failed_runs(res: Results) -> str:
    runs = res.inputs.runs
    if runs.empty or "status" not in runs.columns:
        return ""
    bad = runs[runs["status"] != "complete"]
    if bad.empty:
        return ""
    cols = {"run_id": "Run", "arm": "Arm", "fold": ("Fold", md.integer), "seed": ("Seed", md.integer),
            "status": "Status"}
    if "error" in bad.columns:
        cols["error"] = ("Error", lambda v: "" if pd.isna(v) else str(v))
    return (f"> **Warning: {len(bad)} of {len(runs)} planned runs did not complete.** They are left out of every "
            "number below.\n\n" + md.table(bad, cols) + "\n")


def header(res: Results) -> str:
    inp = res.inputs
    s = inp.study
    n_test = len(inp.reference.image_id) if inp.reference is not None else 0
    n_runs = res.clean["run_id"].nunique() if not res.clean.empty else 0
    seeds = sorted(res.clean["seed"].unique().tolist()) if n_runs else []
    folds = sorted(res.clean["fold"].unique().tolist()) if n_runs else []
    lines = [
        f"# robustseg report: {s.get('name', inp.runs_dir.name)}\n",
        f"Study hash `{inp.study_hash}`; data source `{s.get('data', {}).get('source', '?')}`; "
        f"{n_test} held-out test images; arms {', '.join(f'`{a}`' for a in res.arms)} "
        f"(baseline `{res.baseline}`); folds {folds}; seeds {seeds}; {n_runs} completed runs.\n",
        "Unless a table says otherwise, numbers are for the clean held-out test set with raw (not "
        "post-processed) predictions. *Global* Dice pools the pixels of all test images of a run; "
        "*per-image* Dice averages over images. SD (seeds) is the pooled within-fold SD across seeds; "
        f"confidence intervals are 95 % percentile intervals of a patient-level bootstrap ({res.n_boot} "
        "replicates, patients resampled with all their images and runs). These intervals cover the sampling "
        "of patients only, with the trained models held fixed; seed-to-seed variation is what the SD "
        "columns show.\n",
        _policy(res),
    ]
    return "\n".join(lines) + "\n" + failed_runs(res)


def _policy(res: Results) -> str:
    from robustseg.metrics.folder import POLICY_TEXT

    policy = res.inputs.study.get("eval", {}).get("empty_policy", "nan")
    text = POLICY_TEXT.get(policy, f"policy {policy!r}")
    return (f"**Empty structures** (policy `{policy}`): {text} The presence column counts image x run rows as "
            "both / reference only / prediction only / neither; per-image means use only the rows with a defined "
            "value.\n")


def summary(res: Results) -> str:
    t = res.tables.get("summary", pd.DataFrame())
    cols = {**_arm_cols(res), "class": "Class",
            "g": ("Global Dice, mean ± SD (seeds)", lambda r: md.pm(r["global_mean"], r["global_sd_seed"]), True),
            "gci": ("Global, pooled [95% CI]", lambda r: _pooled(r, "global"), True),
            "p": ("Per-image Dice, mean ± SD (seeds)", lambda r: md.pm(r["per_image_mean"], r["per_image_sd_seed"]), True),
            "pci": ("Per-image, pooled [95% CI]", lambda r: _pooled(r, "per_image"), True),
            "pres": ("Presence both/ref/pred/neither", _presence, True),
            "icc": ("ICC seeds (per-image Dice) [95% CI]", lambda r: _with_ci(r["icc_dice"], r["icc_ci_low"], r["icc_ci_high"]),
                    True),
            "icc_reading": "Koo-Li reading"}
    return (heading(0) + "\n" + md.table(t, cols) +
            "\n*Mean ± SD*: over the runs of the arm (SD across seeds within folds). *Pooled [95% CI]*: the value "
            "over all image x run rows of the arm (global: pixels summed over every run; per-image: mean of every "
            "image x run value) with its patient-bootstrap interval. ICC(A,1) across seeds, targets = test image "
            "within fold. Full table: `tables/summary.csv`.\n")


def _pooled(r: pd.Series, agg: str) -> str:
    return _with_ci(r[f"{agg}_estimate"], r[f"{agg}_ci_low"], r[f"{agg}_ci_high"])


def _with_ci(value: object, low: object, high: object) -> str:
    if md.num(value) == "n/a":
        return "n/a"
    return f"{md.num(value)} {md.interval(low, high)}"


def spread(res: Results, fig: str | None) -> str:
    t = res.tables.get("spread", pd.DataFrame())
    if t.empty:
        return heading(1) + "\n_(no completed runs)_\n"
    keep = ((t["aggregate"] == "global") & (t["metric"] == "dice")) | (
        (t["aggregate"] == "per_image") & t["metric"].isin(["dice", "hd95_mm", "nsd"]))
    t = t[(t["class"] != "background") & keep]
    cols = {**_arm_cols(res), "class": "Class", "aggregate": "Aggregate", "metric": "Metric",
            "mean": ("Mean", md.fixed(3)), "sd_seed": ("SD seeds", md.fixed(4)), "sd_fold": ("SD folds", md.fixed(4)),
            "cv": ("CV", md.fixed(3)), "n_runs": ("Runs", md.integer)}
    out = heading(1) + "\n"
    if fig:
        out += md.figure(f"figures/{fig}", "Run-level Dice per class, one point per run") + "\n"
    return out + ("SD folds is the SD over folds of the seed-averaged value; CV = SD over all runs / mean. "
                  "HD95 in mm, lower is better. IoU and every other value: `tables/spread.csv`.\n\n" + md.table(t, cols))


def robustness(res: Results, fig: str | None) -> str:
    out = heading(2) + "\n"
    ret = res.tables.get("retention", pd.DataFrame())
    if ret.empty:
        return out + "_(the study has no perturbation suite and no external test set)_\n"
    if fig:
        out += md.figure(f"figures/{fig}", "Dice vs severity per perturbation") + "\n"
    ret = ret[ret["class"] != "background"]
    ce = res.tables.get("corruption_error", pd.DataFrame())
    if not ce.empty:
        ret = ret.merge(ce[["arm", "class", "perturbation", "ce", "relative_ce"]], on=["arm", "class", "perturbation"],
                        how="left")
    cols = {**_arm_cols(res), "class": "Class", "perturbation": "Condition",
            "dice": ("Mean Dice over severities", md.fixed(3)), "retention": ("Retention", md.fixed(3)),
            "n_severities": ("Severities", md.integer)}
    if "ce" in ret.columns and len(res.arms) > 1:
        cols |= {"ce": ("CE vs baseline", md.fixed(3)), "relative_ce": ("Relative CE", md.fixed(3))}
    out += ("Retention = perturbed Dice / the same run's clean Dice (averaged per run, then over runs and severities). "
            "External test sets appear as conditions `external: NAME` (severity 0).\n\n" + md.table(ret, cols))
    mce = res.tables.get("mce", pd.DataFrame())
    if not mce.empty and len(res.arms) > 1:
        mce = mce[mce["class"] != "background"]
        out += (f"\nmCE (ImageNet-C style, error = 1 - Dice, relative to baseline arm `{res.baseline}`; < 1 = more "
                "robust):\n\n" + md.table(mce, {"arm": "Arm", "class": "Class", "mce": ("mCE", md.fixed(3)),
                                              "relative_mce": ("Relative mCE", md.fixed(3)),
                                              "n_perturbations": ("Perturbations", md.integer)}))
    return out + "\nPer-severity values: `tables/robustness.csv`; CE per perturbation: `tables/corruption_error.csv`.\n"


def _icc_cols(res: Results, extra: dict | None = None) -> dict:
    return {**_arm_cols(res), **(extra or {}), "class": "Class", "icc": ("ICC", md.fixed(3)),
            "ci": ("95% CI", lambda r: md.interval(r["ci_low"], r["ci_high"]), True), "reading": "Koo-Li",
            "n_targets": ("Targets", md.integer), "n_raters": ("Raters", md.integer)}


def agreement(res: Results, fig: str | None) -> str:
    out = heading(3) + "\n"
    seed = res.tables.get("icc_seed", pd.DataFrame())
    if seed.empty:
        out += "Seed reproducibility needs at least two seeds; this study has one.\n\n"
    else:
        seed = seed[seed["class"] != "background"]
        out += ("**Seed reproducibility** (ICC(A,1): targets = test image within fold, raters = seeds). Per fold: "
                "`tables/icc_seed_per_fold.csv`.\n\n" + md.table(seed, _icc_cols(res, {"measure": "Measure"})) + "\n")
    ref = res.tables.get("icc_reference", pd.DataFrame())
    ba = res.tables.get("bland_altman", pd.DataFrame())
    if not ref.empty:
        u = res.area_unit
        out += (f"**Predicted vs reference area** ({u}; ICC(A,1), targets = test images, the prediction "
                "being each image's predicted area averaged over the arm's runs; the reference study targeted "
                "ICC >= 0.9).\n\n" + md.table(ref, _icc_cols(res)) + "\n")
        cols = {**_arm_cols(res), "class": "Class", "bias": (f"Bias ({u})", md.fixed(2)),
                "ci": ("Bias 95% CI", lambda r: md.interval(r["bias_ci_low"], r["bias_ci_high"], 2), True),
                "loa": ("Limits of agreement", lambda r: md.interval(r["loa_low"], r["loa_high"], 2), True),
                "n": ("n", md.integer)}
        out += "Bland-Altman (predicted - reference):\n\n" + md.table(ba, cols) + "\n"
    if fig:
        out += md.figure(f"figures/{fig}", "Bland-Altman plot of predicted vs reference area")
    return out


def ensembles(res: Results, fig: str | None) -> str:
    out = heading(4) + "\n"
    t = res.tables.get("ensembles", pd.DataFrame())
    if t.empty:
        return out + "_(needs saved probabilities of at least two runs per fold or arm)_\n"
    out += ("Mean softmax over the seeds of a fold (*seeds*) and over every run of an arm (*seeds+folds*), scored "
            "like a single model; global Dice below, per-image Dice in `tables/ensembles.csv`. Rank 1 = better than "
            "every member.\n\n")
    if fig:
        out += md.figure(f"figures/{fig}", "Global Dice of members and ensembles") + "\n"
    t = t[(t["class"] != "background") & (t["aggregate"] == "global")]
    cols = {"kind": "Ensemble", **_arm_cols(res), "fold": ("Fold", lambda v: "all" if int(v) < 0 else str(int(v))),
            "class": "Class", "aggregate": "Aggregate", "ensemble": ("Ensemble Dice", md.fixed(3)),
            "m": ("Members mean ± SD", lambda r: md.pm(r["member_mean"], r["member_sd"]), True),
            "mm": ("Members min-max", lambda r: f"{md.num(r['member_min'])}-{md.num(r['member_max'])}", True),
            "rank": ("Rank", lambda r: f"{md.integer(r['rank'])} of {int(r['n_ranked'])}", True)}
    missing = res.ensembles.missing
    note = f"\nRuns without saved probabilities (left out): {', '.join(missing)}.\n" if missing else ""
    return out + md.table(t, cols) + note


def arm_comparison(res: Results) -> str:
    out = heading(5) + "\n"
    t = res.tables.get("arm_comparison", pd.DataFrame())
    if len(res.arms) < 2 or t.empty:
        return out + "_(one arm: nothing to compare)_\n"
    t = t[t["class"] != "background"]
    cols = {"class": "Class", "metric": "Metric", "pair": ("Arms (a vs b)", lambda r: f"{r['arm_a']} vs {r['arm_b']}", True),
            "d": ("Mean diff a-b [95% CI]", lambda r: f"{md.num(r['mean_diff'])} "
                  f"{md.interval(r['mean_diff_ci_low'], r['mean_diff_ci_high'])}", True),
            "n_pairs": ("Images", md.integer), "pval": ("p (Wilcoxon)", md.pvalue), "p_holm": ("p (Holm)", md.pvalue),
            "rbc": ("Rank-biserial", md.fixed(2)), "seed_sd_diff": ("Seed-noise SD", md.fixed(3)), "verdict": "Verdict"}
    return out + ("Paired per image (each arm's value averaged over its runs), two-sided Wilcoxon signed-rank, Holm "
                  "across classes per metric pair; a difference counts only if also larger than twice the "
                  "seed-to-seed SD of the difference.\n\n" + md.table(t, cols))


def anomaly(res: Results, figs: dict[str, str | None]) -> str:
    out = heading(6) + "\n"
    mm = res.tables.get("mismatch", pd.DataFrame())
    if not mm.empty:
        out += ("**Mismatch score** `|pred XOR ref| / |ref|` per class over every run's clean test predictions "
                "(empty reference: predicted area over the median training area of the class).\n\n")
        if figs.get("mismatch"):
            out += md.figure(f"figures/{figs['mismatch']}", "Mismatch score per class") + "\n"
    st = res.tables.get("structures", pd.DataFrame())
    if not st.empty:
        out += ("**Structure measurements** of reference masks (one per test image) and of predicted masks (every run "
                f"of arm `{res.baseline}`), by group; an absent structure has area 0 and no axis.\n\n")
        if figs.get("structures"):
            out += md.figure(f"figures/{figs['structures']}", "Structure measurements, normal vs abnormal") + "\n"
        out += md.table(st, {"class": "Class", "measure": "Measure", "group": "Group", "source": "Mask",
                             "median": ("Median", md.fixed(2)),
                             "iqr": ("IQR", lambda r: md.interval(r["q1"], r["q3"], 2), True), "n": ("n", md.integer)})
        out += "\n"
    gf = res.tables.get("gt_free_checks", pd.DataFrame())
    if gf.empty:
        return out + "Ground-truth-free score: needs at least two seeds with saved probabilities.\n"
    out += ("**Ground-truth-free anomaly score** (no reference mask needed): the mean percentile rank over test "
            "images of (a) the seed ensemble's disagreement on CSP and LV (1 - mean pairwise Dice of the seeds' masks, "
            "averaged over folds) and (b) the largest robust z-score of the ensemble's CSP/LV measurements against "
            f"the training masks (|z| > {RANGE_Z:g} = out of range). Checked against the mismatch score (Spearman) "
            "and, where the data label abnormal cases, by AUROC.\n\n")
    if figs.get("gt_free"):
        out += md.figure(f"figures/{figs['gt_free']}", "GT-free score vs mismatch score") + "\n"
    cols = {**_arm_cols(res), "score": "Score", "spearman_rho": ("Spearman rho vs mismatch", md.fixed(3)),
            "spearman_p": ("p", md.pvalue), "n": ("Images", md.integer)}
    if "auroc" in gf.columns:
        cols |= {"auroc": ("AUROC abnormal", md.fixed(3)),
                 "np": ("abnormal / normal", lambda r: f"{md.integer(r['n_pos'])} / {md.integer(r['n_neg'])}", True)}
    scores = res.tables.get("gt_free", pd.DataFrame())
    n_out = int(scores["out_of_range"].sum()) if "out_of_range" in scores else 0
    return out + md.table(gf, cols) + f"\n{n_out} image x arm rows have a measurement out of range. Per image: `tables/gt_free.csv`.\n"


def qualitative(res: Results, fig: str | None) -> str:
    out = heading(7) + "\n"
    if not fig:
        return out + "_(needs saved probabilities and reference masks)_\n"
    return out + (f"Best and median test image by mean foreground Dice of arm `{res.baseline}`'s ensemble "
                  "(all its runs), then the worst image for each small structure (lowest CSP and LV Dice). "
                  "Reference and prediction overlays: brain blue, CSP green, LV red.\n\n"
                  + md.figure(f"figures/{fig}", "Best, median and worst-per-structure test images"))


def postprocessing(res: Results) -> str:
    out = heading(8) + "\n"
    t = res.tables.get("postprocessing", pd.DataFrame())
    if t.empty:
        return out + "_(no post-processed predictions saved)_\n"
    t = t[t["class"] != "background"]
    runs = res.inputs.runs
    kept = ""
    if "postprocess_applied" in runs.columns:
        done = runs[runs["status"] == "complete"]
        kept = (f"The validation-fold rule (keep only if no class gets worse) kept post-processing in "
                f"{int(done['postprocess_applied'].astype(bool).sum())} of {len(done)} runs. ")
    cols = {**_arm_cols(res), "class": "Class", "aggregate": "Aggregate", "raw": ("Raw Dice", md.fixed(3)),
            "post": ("Post-processed Dice", md.fixed(3)), "post_minus_raw": ("Post - raw", md.fixed(4))}
    return out + kept + "Mean over runs, clean test set.\n\n" + md.table(t, cols)


def training(res: Results, fig: str | None) -> str:
    out = heading(9) + "\n"
    if not fig:
        return out + "_(no training history saved)_\n"
    return out + md.figure(f"figures/{fig}", "Training and validation loss per run")
