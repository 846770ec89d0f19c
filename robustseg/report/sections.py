"""The Markdown sections of the report, each a pure function of the computed results."""

from __future__ import annotations

import pandas as pd

from robustseg.labels import display_list, display_name
from robustseg.report import alt
from robustseg.report import markdown as md
from robustseg.report.compute import Results
from robustseg.report.ensembles import RANGE_Z
from robustseg.report.figures import COLOR_NAMES, class_colors

SECTIONS = (
    "Summary",
    "Seed and fold spread",
    "Robustness to perturbations and external test sets",
    "Reproducibility and agreement (ICC, Bland-Altman)",
    "Ensembles vs members",
    "Arm comparison",
    "What this study can claim",
    "Anomaly scores and structure measurements",
    "Qualitative examples",
    "Post-processing: raw vs post-processed",
    "Training curves",
    "Reproducibility",
)
"""Section headings, in order (every report has all of them; empty ones say why)."""
SECTION_KEYS = {"Summary": "summary", "Seed and fold spread": "spread",
                "Robustness to perturbations and external test sets": "robustness",
                "Reproducibility and agreement (ICC, Bland-Altman)": "agreement", "Ensembles vs members": "ensembles",
                "Arm comparison": "arms", "Anomaly scores and structure measurements": "anomaly",
                "Qualitative examples": "qualitative", "Post-processing: raw vs post-processed": "post",
                "Training curves": "training", "Reproducibility": "repro"}
"""Short names of :data:`SECTIONS` that the findings link to (a section without one is named by its anchor)."""


def section_titles() -> dict[str, str]:
    """Key -> heading text (``summary`` -> ``1. Summary``), including the QC subsection (``qc``)."""
    from robustseg.report.markdown import anchor
    from robustseg.report.qc_section import TITLE

    return {SECTION_KEYS.get(t, anchor(t)): f"{i + 1}. {t}" for i, t in enumerate(SECTIONS)} | {"qc": TITLE}


def heading(i: int) -> str:
    return f"## {i + 1}. {SECTIONS[i]}\n"


def _foreground(res: Results) -> str:
    """The foreground classes, small structures first: ``CSP/LV/brain``."""
    names = [*res.inputs.small, *(c for c in res.inputs.class_names[1:] if c not in res.inputs.small)]
    return "/".join(display_name(c) for c in names)


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


def title(res: Results) -> str:
    return f"# robustseg report: {res.inputs.study.get('name', res.inputs.runs_dir.name)}\n"


def header(res: Results) -> str:
    """What the numbers are (after the findings): study, test set, intervals, resolution, empty policy."""
    inp = res.inputs
    s = inp.study
    n_test = len(inp.reference.image_id) if inp.reference is not None else 0
    n_runs = res.clean["run_id"].nunique() if not res.clean.empty else 0
    seeds = sorted(res.clean["seed"].unique().tolist()) if n_runs else []
    folds = sorted(res.clean["fold"].unique().tolist()) if n_runs else []
    lines = [
        "## About these numbers\n",
        f"Study hash `{inp.study_hash}`; data source `{s.get('data', {}).get('source', '?')}`; "
        f"{n_test} held-out test images; arms {', '.join(f'`{a}`' for a in res.arms)} "
        f"(baseline `{res.baseline}`); folds {folds}; seeds {seeds}; {n_runs} completed runs.\n",
        "Unless a table says otherwise, numbers are for the clean held-out test set with raw (not "
        "post-processed) predictions. *Global* Dice pools the pixels of all test images of a run; "
        "*per-image* Dice averages over images. SD (seeds) is the pooled within-fold SD across seeds. "
        "Every Dice estimate carries two 95 % intervals, named for what they cover: the **recipe** interval "
        "covers new training runs *and* new patients (what another lab training this recipe would get; the "
        "headline), the **test-set** interval only new patients for these trained models. "
        f"{_ci_text()}\n",
        _resolution(res),
        _policy(res),
    ]
    return "\n".join(lines) + "\n" + failed_runs(res)


def _ci_text() -> str:
    return ("Both come from one decomposition of the pooled estimate (patients x runs, runs nested in folds: "
            "patient, fold, seed and residual variance components); each is a t interval on the logit scale, so "
            "it never leaves [0, 1]. The test-set interval is also widened for zero scores (missed structures, "
            "false alarms) that a test set of this size cannot rule out: with none in 40 images the rate can "
            "still be ~6 %. `benchmarks/calibration.py` measures their coverage on simulated studies with known "
            "truth. Full table: `tables/intervals.csv`.")


def _resolution(res: Results) -> str:
    """Where the per-image numbers were measured (the runs' ``resolution`` column)."""
    values = sorted(res.clean["resolution"].dropna().unique()) if "resolution" in res.clean.columns else []
    if values == ["native"]:
        return ("**Resolution**: every metric, distance and area is measured at each test image's native size and "
                "pixel size (probabilities un-padded and resized bilinearly before the argmax), as nnU-Net's "
                "evaluate_folder does; ensembles and mismatch scores too. Qualitative panels and the seed "
                "disagreement use the model-size probabilities.\n")
    if values == ["model"]:
        return ("**Resolution**: metrics are measured at the network's letterboxed input size with the pixel size "
                "scaled (`eval.resolution = \"model\"`); HD95, NSD and areas are not comparable with published "
                "native-resolution numbers.\n")
    return f"**Resolution**: mixed ({', '.join(values)}).\n" if values else ""


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
            "gci": ("Global Dice [recipe 95% CI]", lambda r: _pooled(r, "global"), True),
            "gt": ("Test-set 95% CI", lambda r: md.interval(r["global_test_low"], r["global_test_high"]), True),
            "g": ("Global, mean ± SD (seeds)", lambda r: md.pm(r["global_mean"], r["global_sd_seed"]), True),
            "pci": ("Per-image Dice [recipe 95% CI]", lambda r: _pooled(r, "per_image"), True),
            "pt": ("Test-set 95% CI", lambda r: md.interval(r["per_image_test_low"], r["per_image_test_high"]), True),
            "p": ("Per-image, mean ± SD (seeds)", lambda r: md.pm(r["per_image_mean"], r["per_image_sd_seed"]), True),
            "pres": ("Presence both/ref/pred/neither", _presence, True),
            "icc": ("ICC seeds (Dice, structure present) [95% CI]", lambda r: _with_ci(r["icc_dice"], r["icc_ci_low"], r["icc_ci_high"]),
                    True),
            "icc_reading": "Koo-Li reading (from the CI)"}
    return (heading(0) + "\n" + md.table(t, cols) + collapsed_runs(res) +
            _interval_notes(t) +
            "\n*Global / Per-image Dice*: the value over all image x run rows of the arm (global: pixels summed over "
            "every run; per-image: mean of every image x run value) with its **recipe** interval (new training "
            "runs and new patients); *test-set 95% CI*: the same value's interval for new patients with these "
            "trained models. *Mean ± SD*: over the runs of the arm (SD across seeds within folds). ICC(A,1) across seeds, seeds nested in folds "
            "(per-fold variance components pooled), targets = test images whose reference has the structure; the "
            "Koo & Li reading is taken from the CI, as they recommend. Full table: `tables/summary.csv`.\n")


def collapsed_runs(res: Results) -> str:
    """How many completed runs collapsed on each structure (``collapsed`` in their complete.json), per arm."""
    counts: dict[tuple[str, str], int] = {}
    totals: dict[str, int] = {}
    for done in res.inputs.completes.values():
        arm = str(done.get("arm", "?"))
        totals[arm] = totals.get(arm, 0) + 1
        for name in done.get("collapsed", []) or []:
            counts[(arm, str(name))] = counts.get((arm, str(name)), 0) + 1
    if not counts:
        return ("\n**Collapsed runs**: none (no run missed a structure present in >= 3 validation images on "
                "every one of them).\n" if totals else "")
    parts = [f"{name} {n} of {totals[arm]} runs" + (f" (arm `{arm}`)" if len(totals) > 1 else "")
             for (arm, name), n in sorted(counts.items())]
    return ("\n**Collapsed runs** (a structure present in >= 3 validation images never predicted on validation; "
            "they stay in every statistic, as real outcomes): " + "; ".join(parts) + ".\n")


def _pooled(r: pd.Series, agg: str) -> str:
    return _with_ci(r[f"{agg}_estimate"], r[f"{agg}_recipe_low"], r[f"{agg}_recipe_high"])


def _interval_notes(t: pd.DataFrame) -> str:
    """One line per distinct caveat of the summary's intervals (one run, one fold, widened for zero scores)."""
    if t.empty:
        return ""
    notes: dict[str, list[str]] = {}
    for r in t.to_dict("records"):
        for agg in ("global", "per_image"):
            for kind in ("recipe", "test"):
                note = r.get(f"{agg}_{kind}_note")
                if isinstance(note, str) and note:
                    label = f"{display_name(r['class'])}" + (f" ({r['arm']})" if "arm" in r else "")
                    notes.setdefault(f"{'recipe' if kind == 'recipe' else 'test-set'} interval: {note}", []
                                     ).append(label)
    return "".join(f"\n*{text}*: {', '.join(dict.fromkeys(who))}." for text, who in sorted(notes.items()))


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
        out += md.figure(f"figures/{fig}", alt.spread(res)) + "\n"
    return out + ("SD folds is the SD over folds of the seed-averaged value; CV = SD over all runs / mean. "
                  "HD95 in mm, lower is better. IoU and every other value: `tables/spread.csv`.\n\n" + md.table(t, cols))


def robustness(res: Results, fig: str | None, damage_fig: str | None = None) -> str:
    out = heading(2) + "\n"
    ret = res.tables.get("retention", pd.DataFrame())
    if ret.empty:
        return out + "_(the study has no perturbation suite and no external test set)_\n"
    if fig:
        out += md.figure(f"figures/{fig}", alt.robustness(res)) + "\n"
    ret = ret[ret["class"] != "background"]
    ce = res.tables.get("corruption_error", pd.DataFrame())
    if not ce.empty:
        ret = ret.merge(ce[["arm", "class", "perturbation", "ce", "relative_ce"]], on=["arm", "class", "perturbation"],
                        how="left")
    deg = res.tables.get("degradation", pd.DataFrame())
    if not deg.empty:
        ret = ret.merge(deg[["arm", "class", "perturbation", "wm_dice_mean", "degradation_mean"]],
                        on=["arm", "class", "perturbation"], how="left")
    cols = {**_arm_cols(res), "class": "Class", "perturbation": "Condition",
            "dice": ("Mean Dice over severities", md.fixed(3)), "retention": ("Retention", md.fixed(3)),
            "n_severities": ("Severities", md.integer)}
    if "degradation_mean" in ret.columns:
        cols |= {"wm_dice_mean": ("Weighted Dice (ROOD)", md.fixed(3)),
                 "degradation_mean": ("Degradation (ROOD)", md.fixed(3))}
    if "ce" in ret.columns and len(res.arms) > 1:
        cols |= {"ce": ("CE vs baseline", md.fixed(3)), "relative_ce": ("Relative CE", md.fixed(3))}
    out += ("Retention = perturbed Dice / the same run's clean Dice on a fixed image set (the images whose reference "
            "has the structure), averaged per run, then over runs and severities; it cannot exceed 1 when every image "
            "got worse. ROOD-style (Boone et al. 2023) severity weights 2/3^s: *weighted Dice* includes the clean "
            "value with weight 1, *degradation* is the weighted mean loss of Dice against clean (0 = unaffected). "
            "External test sets appear as conditions `external: NAME` (severity 0; their own images with the "
            "structure).\n\n" + md.table(ret, cols))
    mce = res.tables.get("mce", pd.DataFrame())
    if not mce.empty and len(res.arms) > 1:
        mce = mce[mce["class"] != "background"]
        out += (f"\nmCE (ImageNet-C style, error = 1 - Dice, relative to baseline arm `{res.baseline}`; < 1 = more "
                "robust):\n\n" + md.table(mce, {"arm": "Arm", "class": "Class", "mce": ("mCE", md.fixed(3)),
                                              "relative_mce": ("Relative mCE", md.fixed(3)),
                                              "n_perturbations": ("Perturbations", md.integer)}))
    out += "\nPer-severity values: `tables/robustness.csv`; CE per perturbation: `tables/corruption_error.csv`.\n"
    return out + image_damage(res, damage_fig)


def _stage_text(res: Results) -> str:
    pt = res.inputs.study.get("perturb", {}) or {}
    stage = pt.get("stage", "model")
    if stage == "native":
        return ("Perturbations were applied to each test image at its native resolution, as a scanner makes its "
                "artefacts, and the result was preprocessed exactly like the clean image (`perturb.stage = "
                "\"native\"`); the ultrasound artefacts follow each image's probe geometry "
                f"(`perturb.geometry = \"{pt.get('geometry', 'auto')}\"`).")
    return ("Perturbations were applied to the network's letterboxed input, after resizing (`perturb.stage = "
            "\"model\"`): noise and blur act at model resolution, which no scanner does.")


def image_damage(res: Results, fig: str | None = None) -> str:
    """How much each perturbation damaged this study's own test images (in-fan SSIM / PSNR per severity) and the
    ranking of the perturbations by Dice retention at matched damage (:func:`robustseg.qc.robustness.matched_damage`)."""
    dmg = res.tables.get("damage", pd.DataFrame())
    if dmg.empty:
        return "\n" + _stage_text(res) + " No image-damage table was saved (runs of an earlier version).\n"
    out = ("\n### Image damage per perturbation and severity\n\n" + _stage_text(res) + " In-fan SSIM and PSNR of "
           "each perturbed test image against the clean one, at the resolution it was perturbed at, averaged over "
           "the test images (severities are calibrated so that SSIM is about 0.95 / 0.90 / 0.80 / 0.70 / 0.60 on "
           "phantom images; `docs/perturbations.md`). Local artefacts also give SSIM inside the region they darken and "
           "the region's share of the fan.\n\n")
    cols = {"perturbation": "Perturbation", "severity": ("Severity", md.integer),
            "ssim_fan": ("In-fan SSIM", md.fixed(3)), "psnr_fan": ("In-fan PSNR (dB)", md.fixed(1)),
            "n_images": ("Images", md.integer)}
    if dmg["local"].any():
        cols |= {"ssim_region": ("SSIM in region", md.fixed(3)),
                 "region_fraction": ("Region (share of fan)", md.fixed(2))}
    out += md.table(dmg, cols)
    matched = res.tables.get("matched_damage", pd.DataFrame())
    if matched.empty:
        return out
    from robustseg.qc.robustness import DAMAGE_LEVEL

    small = [c for c in res.inputs.small if c in set(matched["class"])]
    m = matched[(matched["level"] == DAMAGE_LEVEL) & matched["class"].isin(small)].copy()
    m["class"] = m["class"].map(display_name)
    out += (f"\n### Ranking at matched image damage (SSIM {DAMAGE_LEVEL:g})\n\nThe per-severity view above compares "
            "perturbations at their own severity scales; here each perturbation's Dice retention (per run, "
            "interpolated between the clean point and its severities along their mean SSIM) is read at the same "
            f"image damage, SSIM {DAMAGE_LEVEL:g} (in the fan; for a local artefact inside the region it acts on, the "
            "measure its severities are calibrated by), so the ranking says which artefact costs the small structures "
            "most *per unit of image damage*. Rank 1 = the most damaging. A perturbation whose strongest severity "
            "stays above that SSIM is not ranked (*not reached*). Levels 0.9 and 0.7: `tables/matched_damage.csv`."
            "\n\n")
    if fig:
        out += md.figure(f"figures/{fig}", alt.damage(res)) + "\n"
    cols = {**_arm_cols(res), "class": "Class", "rank": ("Rank", md.integer), "perturbation": "Perturbation",
            "measure": "SSIM in",
            "retention": ("Retention at matched SSIM", lambda r: md.pm(r["retention_mean"], r["retention_sd"])
                          if r["reached"] else "not reached", True),
            "ssim_min": ("Strongest damage (min SSIM)", md.fixed(3))}
    return out + md.table(m, cols)


def _icc_cols(res: Results, extra: dict | None = None) -> dict:
    return {**(extra or {}), **_arm_cols(res), "class": "Class", "icc": ("ICC", md.fixed(3)),
            "ci": ("95% CI", lambda r: md.interval(r["ci_low"], r["ci_high"]), True), "reading": "Koo-Li (CI)",
            "n_targets": ("Images", md.integer)}


def agreement(res: Results, fig: str | None) -> str:
    out = heading(3) + "\n"
    seed = res.tables.get("icc_seed", pd.DataFrame())
    if seed.empty:
        out += "Seed reproducibility needs at least two seeds in a fold; this study has one.\n\n"
    else:
        seed = seed[seed["class"] != "background"]
        cols = _icc_cols(res, {"measure": "Measure"}) | {
            "n_dropped": ("Images left out", md.integer), "n_runs": ("Runs", md.integer),
            "n_folds": ("Folds", md.integer)}
        out += ("**Seed reproducibility** (ICC(A,1), seeds nested in folds: each fold's images x seeds table gives "
                "variance components, pooled over folds, so seed labels do not matter and a failed run removes only "
                "itself; targets = test images, CI with images - 1 df). Dice only on images whose reference has the "
                "structure; predicted area only on images where the reference or some seed of the fold has it (an "
                "image empty for every seed and the reference agrees trivially, 0 vs 0). *Images left out* counts "
                "the others and any incomplete ones. Per fold: "
                "`tables/icc_seed_per_fold.csv`.\n\n" + md.table(seed, cols) + "\n")
    kappa = res.tables.get("presence_kappa", pd.DataFrame())
    if not kappa.empty:
        cols = {**_arm_cols(res), "class": "Class", "kappa": ("Fleiss' kappa", md.fixed(3)),
                "n_disagree": ("Images x folds where seeds disagree", md.integer),
                "n_subjects": ("Images x folds", md.integer), "n_all_present": ("All seeds: present", md.integer),
                "n_all_absent": ("All seeds: absent", md.integer)}
        out += ("**Presence agreement across seeds** (does the model find the structure at all?): Fleiss' kappa "
                "of the seeds of each fold on predicted presence, subjects = image x fold (n/a when the seeds never "
                "disagree).\n\n" + md.table(kappa, cols) + "\n")
    ref = res.tables.get("icc_reference", pd.DataFrame())
    ba = res.tables.get("bland_altman", pd.DataFrame())
    if not ref.empty:
        u = res.area_unit
        run_range = lambda r: (f"{md.num(r['icc_min'])} to {md.num(r['icc_max'])}"  # noqa: E731
                               if r["prediction"] == "single run" else "")
        cols = _icc_cols(res, {"prediction": "Prediction"}) | {
            "range": ("Range over runs", run_range, True), "n_both_absent": ("Both absent (left out)", md.fixed(1))}
        out += (f"**Predicted vs reference area** ({u}; ICC(A,1), targets = test images where the reference or the "
                "prediction has the structure; images where both are empty agree trivially and are counted apart). "
                "*Single run*: every trained model on its own, mean over the arm's runs (range alongside; per run: "
                "`tables/icc_reference_runs.csv`). *Ensemble*: the mean softmax of all the arm's runs. The "
                "reference study targeted ICC >= 0.9.\n\n" + md.table(ref, cols) + "\n")
        cols = {"prediction": "Prediction", **_arm_cols(res), "class": "Class", "bias": (f"Bias ({u})", md.fixed(2)),
                "ci": ("Bias 95% CI", lambda r: md.interval(r["bias_ci_low"], r["bias_ci_high"], 2), True),
                "loa": ("Limits of agreement [95% CIs]", lambda r: (
                    f"{md.num(r['loa_low'], 2)} {md.interval(r['loa_low_ci_low'], r['loa_low_ci_high'], 2)} to "
                    f"{md.num(r['loa_high'], 2)} {md.interval(r['loa_high_ci_low'], r['loa_high_ci_high'], 2)}"), True),
                "slope": ("Proportional bias: slope", md.fixed(3)),
                "slope_p": ("p (single run: runs with p < 0.05)", lambda r: md.pvalue(r["slope_p"])
                            if r["prediction"] != "single run"
                            else f"{md.integer(r['n_runs_proportional_bias'])} of {md.integer(r['n_runs'])} runs", True),
                "n": ("n", md.fixed(1))}
        out += ("Bland-Altman (predicted - reference, same images; single run: mean over runs of each run's values). "
                "Limits of agreement with exact 95% CIs; proportional bias = slope of the difference regressed on "
                "the **reference** area with a heteroscedasticity-robust (HC3) SE (regressed on the mean of the two, "
                "a prediction that is merely noisier than the reference would be flagged as biased).\n\n" + md.table(ba, cols) + "\n")
    if fig:
        out += md.figure(f"figures/{fig}", alt.bland_altman(res))
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
        out += md.figure(f"figures/{fig}", alt.ensembles(res)) + "\n"
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
        return out + "_(one arm: nothing to compare; section 7 says what differences this design could detect)_\n"
    from robustseg.stats.design import DESIGNS

    cols = {"class": "Class", "pair": ("Arms (a vs b)", lambda r: f"{r['arm_a']} vs {r['arm_b']}", True),
            "m": ("Mean a / b", lambda r: f"{md.num(r['mean_a'])} / {md.num(r['mean_b'])}", True),
            "d": ("Diff a-b [95% CI]", lambda r: f"{md.num(r['diff'])} {md.interval(r['ci_low'], r['ci_high'])}", True),
            "design": ("Design", lambda v: DESIGNS.get(str(v), str(v))),
            "runs": ("Runs a / b", lambda r: f"{md.integer(r['n_runs_a'])} / {md.integer(r['n_runs_b'])}", True),
            "p_holm": ("p (Holm)", md.pvalue), "mdd": ("MDD (80% power)", md.mdd),
            "p_a_better_runs": ("P(run a > run b)", md.fixed(2)),
            "decision": (f"Decision (margin ±{res.margin:g})", str),
            "flag": ("Flag", lambda v: "" if not isinstance(v, str) else v)}
    n_flag = int((t["flag"].fillna("") != "").sum())
    out += ("Measure: per-image Dice over **every** test image, with an empty reference and an empty prediction "
            "counted as 1 (for this comparison only), so a false positive on an image without the structure counts "
            "as Dice 0 against the arm. Each run contributes one value (its mean over the test images), so the test "
            "sees seed noise. The test follows the design: **k folds x n seeds**: Welch t blocked by fold "
            "(difference = mean over folds of the per-fold differences; SE from the seed-to-seed variance within "
            "folds); **1 fold x n seeds**: Welch t; **k folds x 1 seed** (nnU-Net's design): paired t on the "
            f"per-fold differences, k - 1 df. Holm over every row (all arm pairs x {_foreground(res)}). "
            "*MDD*: the smallest true difference this row would call with 80 % power at the level of Holm's "
            f"first step. *Decision*: **equivalent** when the two one-sided tests (TOST, Holm-adjusted) put the "
            f"difference inside ±{res.margin:g} (`compare.margin`), else **a better / b better** when the "
            "difference is significant (Holm), else **inconclusive** (the data allow both a difference and none: "
            "read the MDD). *Flag*: a run of either arm that collapsed (predicted the structure on no test image, "
            "or on no validation image) or failed; its verdict leans on fewer usable runs than it seems. "
            "*P(run a > run b)*: share of same-fold run pairs where a's run is better. Full table (with P(a > b) "
            "under a patient bootstrap and the TOST p-values): `tables/arm_comparison.csv`.\n\n"
            + md.table(t, cols))
    if n_flag:
        out += f"\n**{n_flag} of {len(t)} rows are flagged** (collapsed or failed runs).\n"
    rk = res.tables.get("arm_ranking", pd.DataFrame())
    if not rk.empty:
        cols = {"class": "Class", "arm": "Arm", "value": ("Mean Dice (all images)", md.fixed(3)),
                "rank": ("Rank", md.fixed(1)), "mean_rank_boot": ("Mean rank, bootstrap", md.fixed(2)),
                "p_first": ("P(rank 1)", md.fixed(2)), "kendall_tau_mean": ("Kendall tau (mean)", md.fixed(2)),
                "kendall_tau_q05": ("Kendall tau (5%)", md.fixed(2))}
        out += ("\n**Ranking stability** (as challengeR): arms ranked on the test set and on patient-bootstrap "
                "replicates; Kendall tau between the two rankings (1 = the ranking never changes).\n\n"
                + md.table(rk, cols))
    return out


def anomaly(res: Results, figs: dict[str, str | None]) -> str:
    out = heading(7) + "\n"
    mm = res.tables.get("mismatch", pd.DataFrame())
    if not mm.empty:
        out += ("**Mismatch score** `|pred XOR ref| / |ref|` per class over every run's clean test predictions "
                "(empty reference: predicted area over the median training area of the class).\n\n")
        if figs.get("mismatch"):
            out += md.figure(f"figures/{figs['mismatch']}", alt.mismatch(res)) + "\n"
    st = res.tables.get("structures", pd.DataFrame())
    if not st.empty:
        out += ("**Structure measurements** of reference masks (one per test image) and of predicted masks (every run "
                f"of arm `{res.baseline}`), by group; an absent structure has area 0 and no axis.\n\n")
        if figs.get("structures"):
            out += md.figure(f"figures/{figs['structures']}", alt.structures(res)) + "\n"
        out += md.table(st, {"class": "Class", "measure": "Measure", "group": "Group", "source": "Mask",
                             "median": ("Median", md.fixed(2)),
                             "iqr": ("IQR", lambda r: md.interval(r["q1"], r["q3"], 2), True), "n": ("n", md.integer)})
        out += "\n"
    gf = res.tables.get("gt_free_checks", pd.DataFrame())
    if gf.empty:
        return out + "Ground-truth-free score: needs at least two seeds with saved probabilities.\n"
    out += ("**Ground-truth-free anomaly score** (no reference mask needed): the mean percentile rank over test "
            f"images of (a) the seed ensemble's disagreement on {display_list(res.inputs.small)} (1 - mean pairwise Dice "
            "of the seeds' masks, averaged over folds) and (b) the largest robust z-score of the ensemble's "
            f"{'/'.join(display_name(c) for c in res.inputs.small)} measurements against "
            f"the training masks (|z| > {RANGE_Z:g} = out of range). Checked against the mismatch score (Spearman) "
            "and, where the data label abnormal cases, by AUROC.\n\n")
    if figs.get("gt_free"):
        out += md.figure(f"figures/{figs['gt_free']}", alt.gt_free(res)) + "\n"
    cols = {**_arm_cols(res), "score": "Score", "spearman_rho": ("Spearman rho vs mismatch", md.fixed(3)),
            "spearman_p": ("p", md.pvalue), "n": ("Images", md.integer)}
    if "auroc" in gf.columns:
        cols |= {"auroc": ("AUROC abnormal [95% CI]", lambda r: _with_ci(r["auroc"], r.get("auroc_ci_low"),
                                                                         r.get("auroc_ci_high")), True),
                 "np": ("abnormal / normal", lambda r: f"{md.integer(r['n_pos'])} / {md.integer(r['n_neg'])}", True)}
    scores = res.tables.get("gt_free", pd.DataFrame())
    n_out = int(scores["out_of_range"].sum()) if "out_of_range" in scores else 0
    return out + md.table(gf, cols) + f"\n{n_out} image x arm rows have a measurement out of range. Per image: `tables/gt_free.csv`.\n"


def qualitative(res: Results, fig: str | None) -> str:
    out = heading(8) + "\n"
    if not fig:
        return out + "_(needs saved probabilities and reference masks)_\n"
    names = res.inputs.class_names
    colors = class_colors(names)
    overlay = ", ".join(f"{display_name(c)} {COLOR_NAMES.get(colors[c], colors[c])}" for c in names[1:])
    return out + (f"Best and median test image by mean foreground Dice of arm `{res.baseline}`'s ensemble "
                  f"(all its runs), then the worst image for each small structure (lowest "
                  f"{display_list(res.inputs.small)} Dice). Reference and prediction overlays: {overlay}.\n\n"
                  + md.figure(f"figures/{fig}", alt.qualitative(res)))


def postprocessing(res: Results) -> str:
    out = heading(9) + "\n"
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
    out = heading(10) + "\n"
    if not fig:
        return out + "_(no training history saved)_\n"
    return out + md.figure(f"figures/{fig}", alt.training(res))
