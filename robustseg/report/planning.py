"""What a study can claim, and what a claim would need: ``robustseg plan RUNS_DIR`` and the report's section.

Every table is computed from the saved per-image table of a study (clean test set, raw predictions), with
the models of ``robustseg.stats.power``: run-level variance components for arm comparisons (seed within
fold, fold, collapse rate), and the variance components of the recipe interval (patient, fold, seed,
patient x run, and the rate of zero scores). A one-arm pilot study is enough: the plan assumes a second arm
would vary as this one does. The planning arm is the baseline (the study's first arm).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from robustseg import stats
from robustseg.stats import power as pw
from robustseg.stats.runlevel import DEFAULT_MARGIN

DIFFERENCES = (0.01, 0.02, 0.05)
"""Differences in Dice (run-level mean over every test image) the plan sizes a design for."""
HALF_WIDTHS = (0.01, 0.02, 0.05)
"""Recipe-interval half-widths the plan sizes a test set for."""
FOLD_OPTIONS = (1, 2, 3, 5, 10)
"""Folds the plan tries (plus the study's own)."""
TARGET_POWER = 0.8
ALPHA = 0.05
PLAN_STATISTIC = "global_dice"
"""The headline statistic of the recipe-interval plan (pixels pooled over the test images and runs)."""


@dataclass
class Plan:
    """The planning tables of a study (each a tidy DataFrame; see :func:`plan_tables`)."""

    arm: str
    n_folds: int
    seeds_per_fold: float
    n_patients: int
    margin: float
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def _design(clean: pd.DataFrame, arm: str) -> tuple[int, float]:
    runs = clean.loc[clean["arm"] == arm, ["fold", "seed"]].drop_duplicates()
    n_f = int(runs["fold"].nunique())
    return n_f, len(runs) / max(n_f, 1)


def _fmt_int(v: object) -> object:
    return int(v) if v is not None else np.nan


def plan_tables(clean: pd.DataFrame, index: pd.DataFrame, arms: Sequence[str], *, flags: pd.DataFrame | None = None,
                intervals: pd.DataFrame | None = None, k_folds: int | None = None, margin: float = DEFAULT_MARGIN,
                alpha: float = ALPHA) -> Plan:
    """The planning tables of a study from its clean per-image rows (all arms; the first is the baseline).

    - ``plan_components``: run-level components per arm and structure (:func:`robustseg.stats.power.run_components`).
    - ``plan_claims``: per structure, the baseline's current design ``F x S`` and test patients: the MDD of a
      comparison of two such arms (80 % power, simulated), the power at 0.01 / 0.02 / 0.05, the smallest
      equivalence margin it can establish (80 % of studies when the arms are equal), the recipe-interval
      half-width, the collapse count and the rate it cannot rule out.
    - ``plan_runs``: per structure, difference and number of folds: the fewest seeds per fold for 80 % power.
    - ``plan_patients``: per structure and half-width: the fewest test patients for that recipe-interval
      half-width with the current runs, and with 5 folds x 5 seeds.
    - ``plan_gap``: per arm pair and structure, the gap between the arms' recipe estimates against their
      recipe-interval widths (Christodoulou et al. 2024: the median CI width was three times the gap between
      first and second place).
    """
    arms = [a for a in arms if a in set(clean["arm"].astype(str))]
    base = arms[0]
    fg = clean[clean["class"] != "background"]
    with_pat = stats.attach_patients(fg, index)
    n_f, spf = _design(fg, base)
    n_s = max(int(round(spf)), 1)
    if intervals is None:
        intervals = stats.dice_intervals(with_pat, statistic=PLAN_STATISTIC, by=("arm", "class"))
    rec = intervals[(intervals["interval"] == "recipe") & (intervals["statistic"] == PLAN_STATISTIC)]
    comps = pw.run_components(with_pat, by=("arm", "class"), flags=flags)
    n_pat = int(with_pat["patient_id"].nunique())
    classes = [c for c in pd.unique(fg["class"])]
    claims, runs_rows, pat_rows = [], [], []
    folds = sorted({*FOLD_OPTIONS, *([k_folds] if k_folds else []), n_f})
    for cls in classes:
        comp = comps[(comps["arm"] == base) & (comps["class"] == cls)]
        ci = rec[(rec["arm"] == base) & (rec["class"] == cls)]
        if comp.empty or ci.empty:
            continue
        comp, ci = comp.iloc[0].to_dict(), ci.iloc[0].to_dict()
        mdd = pw.design_mdd(comp, n_f, n_s, alpha=alpha)
        claims.append({
            "class": cls, "arm": base, "design": f"{n_f} x {n_s}", "n_runs": int(comp["n_runs"]),
            "n_patients": n_pat, "mdd": mdd,
            **{f"power_{d:g}": pw.simulated_power(comp, d, n_f, n_s, alpha=alpha) for d in DIFFERENCES},
            "equivalence_margin": pw.equivalence_margin(comp, n_f, n_s, alpha=alpha),
            "margin": margin,
            "estimate": ci["estimate"], "recipe_low": ci["ci_low"], "recipe_high": ci["ci_high"],
            "half_width": (ci["ci_high"] - ci["ci_low"]) / 2, "sd_seed": float(np.sqrt(comp["var_seed"])),
            "seed_from_folds": bool(comp["seed_from_folds"]), "n_collapsed": int(comp["n_collapsed"]),
            "collapse_upper": comp["collapse_upper"]})  # fmt: skip
        for d in DIFFERENCES:
            for f in folds:
                s = pw.seeds_needed(comp, d, f, alpha=alpha)
                runs_rows.append({"class": cls, "difference": d, "folds": f, "seeds_per_fold": _fmt_int(s),
                                  "runs_per_arm": _fmt_int(None if s is None else s * f)})
        for h in HALF_WIDTHS:
            pat_rows.append({"class": cls, "half_width": h, "design": f"{n_f} x {n_s}",
                             "patients": _fmt_int(pw.patients_needed(ci, h, n_f, n_s, alpha)),
                             "patients_5x5": _fmt_int(pw.patients_needed(ci, h, 5, 5, alpha))})
    gap_rows = []
    for a, b in combinations(arms, 2):
        for cls in classes:
            ra = rec[(rec["arm"] == a) & (rec["class"] == cls)]
            rb = rec[(rec["arm"] == b) & (rec["class"] == cls)]
            if ra.empty or rb.empty:
                continue
            ra, rb = ra.iloc[0], rb.iloc[0]
            gap = abs(float(ra["estimate"]) - float(rb["estimate"]))
            width = float(np.mean([ra["ci_high"] - ra["ci_low"], rb["ci_high"] - rb["ci_low"]]))
            gap_rows.append({"class": cls, "arm_a": a, "arm_b": b, "gap": gap, "ci_width": width,
                             "width_over_gap": width / gap if gap > 0 else np.inf,
                             "overlap": bool(max(ra["ci_low"], rb["ci_low"]) <= min(ra["ci_high"], rb["ci_high"]))})
    tables = {"plan_components": comps, "plan_claims": pd.DataFrame(claims), "plan_runs": pd.DataFrame(runs_rows),
              "plan_patients": pd.DataFrame(pat_rows), "plan_gap": pd.DataFrame(gap_rows)}
    return Plan(base, n_f, spf, n_pat, margin, tables)


def study_flags(completes: dict, runs: pd.DataFrame) -> pd.DataFrame:
    """Flags of runs for the comparison table: ``collapsed`` (the run's validation collapse flags in
    ``complete.json``, per structure) and ``failed`` (planned runs that did not complete). Columns ``arm, fold,
    seed, class, flag`` (``class`` NaN: every structure)."""
    rows = []
    for done in completes.values():
        for name in done.get("collapsed", []) or []:
            rows.append({"arm": str(done.get("arm")), "fold": done.get("fold"), "seed": done.get("seed"),
                         "class": str(name), "flag": "collapsed"})
    if not runs.empty and "status" in runs.columns:
        for r in runs[runs["status"] != "complete"].itertuples(index=False):
            rows.append({"arm": str(r.arm), "fold": r.fold, "seed": r.seed, "class": np.nan,
                         "flag": f"{r.status}" if str(r.status) not in ("", "nan") else "failed"})
    return pd.DataFrame(rows, columns=["arm", "fold", "seed", "class", "flag"])


def plan_study(runs_dir: str | Path, margin: float | None = None) -> Plan:
    """The planning tables of the study saved in ``runs_dir`` (``robustseg plan RUNS_DIR``).

    ``margin``: the equivalence margin (default: the study's ``compare.margin``).
    """
    from robustseg.errors import InputError
    from robustseg.report.load import clean_rows, load_inputs

    inputs = load_inputs(runs_dir)
    clean = clean_rows(inputs.per_image)
    if clean.empty:
        raise InputError(f"{runs_dir}: no completed runs to plan from; run 'robustseg study' first")
    if margin is None:
        margin = float(inputs.study.get("compare", {}).get("margin", DEFAULT_MARGIN))
    elif not (np.isfinite(margin) and 0 < margin <= 0.5):
        raise InputError(f"--margin {margin!r}: expected a number in (0, 0.5] (an equivalence margin in Dice)")
    k = inputs.study.get("split", {}).get("k_folds")
    return plan_tables(clean, inputs.index, inputs.arms, flags=study_flags(inputs.completes, inputs.runs),
                       k_folds=int(k) if k else None, margin=margin)
