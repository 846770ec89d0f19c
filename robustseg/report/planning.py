"""What a study can claim, and what a claim would need: ``robustseg plan RUNS_DIR`` and the report's section.

Every table is computed from the saved per-image table of a study (clean test set, raw predictions), with
the models of ``robustseg.stats.power``: run-level variance components for arm comparisons (seed within
fold, fold, collapse rate), and the variance components of the recipe interval (patient, fold, seed,
patient x run, and the rate of zero scores). A one-arm pilot study is enough: the plan assumes a second arm
would vary as this one does. The planning arm is the baseline (the study's first arm).

Also here, for the report's Findings box: small pure functions over the saved tables
(:func:`headline_intervals`, :func:`verdicts`, :func:`underpowered`).
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


# --- for the report's Findings box: pure functions over the saved tables --------------------------


def headline_intervals(summary: pd.DataFrame, aggregate: str = "global") -> pd.DataFrame:
    """The headline interval per arm and structure from ``tables/summary.csv``: columns ``arm, class,
    estimate, recipe_low, recipe_high, test_low, test_high`` of ``aggregate`` (``global`` or ``per_image``)
    Dice. The recipe interval covers new training runs and new patients; the test-set interval new patients
    with these trained models.

    Examples
    --------
    >>> s = pd.DataFrame({"arm": ["a"], "class": ["lv"], "global_estimate": [0.8], "global_recipe_low": [0.7],
    ...                   "global_recipe_high": [0.85], "global_test_low": [0.75], "global_test_high": [0.84]})
    >>> headline_intervals(s).values.tolist()
    [['a', 'lv', 0.8, 0.7, 0.85, 0.75, 0.84]]
    """
    cols = {f"{aggregate}_{c}": c for c in ("estimate", "recipe_low", "recipe_high", "test_low", "test_high")}
    return summary[["arm", "class", *cols]].rename(columns=cols).reset_index(drop=True)


def verdicts(arm_comparison: pd.DataFrame) -> pd.DataFrame:
    """Every decision of ``tables/arm_comparison.csv`` with what it rests on: columns ``class, arm_a, arm_b,
    decision, diff, ci_low, ci_high, p_holm, mdd, margin, design, flag``.

    Examples
    --------
    >>> t = pd.DataFrame({"class": ["lv"], "arm_a": ["a"], "arm_b": ["b"], "decision": ["inconclusive"],
    ...                   "diff": [0.01], "ci_low": [-0.02], "ci_high": [0.04], "p_holm": [0.4], "mdd": [0.05],
    ...                   "margin": [0.01], "design": ["blocked"], "flag": [""]})
    >>> verdicts(t)[["decision", "mdd"]].values.tolist()
    [['inconclusive', 0.05]]
    """
    cols = ["class", "arm_a", "arm_b", "decision", "diff", "ci_low", "ci_high", "p_holm", "mdd", "margin", "design",
            "flag"]
    if arm_comparison.empty:
        return pd.DataFrame(columns=cols)
    out = arm_comparison[cols].copy()
    out["flag"] = out["flag"].fillna("")
    return out.reset_index(drop=True)


def underpowered(arm_comparison: pd.DataFrame, plan_claims: pd.DataFrame, difference: float | None = None,
                 target: float = TARGET_POWER) -> pd.DataFrame:
    """Where the design has power below ``target`` for a difference of ``difference`` Dice (default: each
    row's equivalence margin): comparison rows whose MDD exceeds it (``source = "comparison"``), and, for the
    planning arm, structures whose design MDD exceeds it (``source = "design"``). Columns ``source, class,
    arm_a, arm_b, difference, mdd``.

    Examples
    --------
    >>> cmp = pd.DataFrame({"class": ["lv", "csp"], "arm_a": "a", "arm_b": "b", "mdd": [0.05, 0.005],
    ...                     "margin": 0.01})
    >>> plan = pd.DataFrame({"class": ["lv"], "arm": ["a"], "mdd": [0.04], "margin": [0.01]})
    >>> underpowered(cmp, plan)[["source", "class", "mdd"]].values.tolist()
    [['comparison', 'lv', 0.05], ['design', 'lv', 0.04]]
    """
    rows = []
    if not {"mdd", "margin"} <= set(arm_comparison.columns):
        arm_comparison = pd.DataFrame()
    if not {"mdd", "margin"} <= set(plan_claims.columns):
        plan_claims = pd.DataFrame()
    for r in arm_comparison.to_dict("records") if not arm_comparison.empty else []:
        d = float(difference if difference is not None else r["margin"])
        if not (np.isfinite(r["mdd"]) and r["mdd"] <= d):
            rows.append({"source": "comparison", "class": r["class"], "arm_a": r["arm_a"], "arm_b": r["arm_b"],
                         "difference": d, "mdd": float(r["mdd"])})
    for r in plan_claims.to_dict("records") if not plan_claims.empty else []:
        d = float(difference if difference is not None else r["margin"])
        if not (np.isfinite(r["mdd"]) and r["mdd"] <= d):
            rows.append({"source": "design", "class": r["class"], "arm_a": r["arm"], "arm_b": "",
                         "difference": d, "mdd": float(r["mdd"])})
    return pd.DataFrame(rows, columns=["source", "class", "arm_a", "arm_b", "difference", "mdd"])
