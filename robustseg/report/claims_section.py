"""The report section "What this study can claim" (tables from ``report.planning``; text only here)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from robustseg.labels import display_name
from robustseg.report import markdown as md
from robustseg.report.planning import DIFFERENCES, Plan


def _count(v: object, missing: str = "n/a") -> str:
    return missing if v is None or pd.isna(v) else str(int(v))


def _pct(v: object) -> str:
    return "n/a" if v is None or pd.isna(v) else f"{100 * float(v):.0f}%"


def _name(c: object) -> str:
    return display_name(str(c))


def section(heading: str, plan: Plan | None, n_arms: int) -> str:
    """Markdown of the section: what the current design detects, what a claim would need, gap vs CI width."""
    out = heading + "\n"
    if plan is None or plan.tables.get("plan_claims", pd.DataFrame()).empty:
        return out + "_(no completed runs with a run-to-run variance: nothing to plan from)_\n"
    t = plan.tables
    claims = t["plan_claims"]
    out += (f"From this study's own variance components (arm `{plan.arm}`: {plan.n_folds} fold(s) x "
            f"{plan.seeds_per_fold:g} seed(s), {plan.n_patients} test patients; seed-to-seed and fold-to-fold "
            "variance of the run values, patient, fold, seed and residual variance of the pooled Dice, the rate of "
            "collapsed runs), simulated through the same tests the report runs. A one-arm study plans as if a "
            "second arm varied like this one. The same tables: `robustseg plan RUNS_DIR`, and "
            "`tables/plan_*.csv`.\n\n")
    cols = {"class": ("Structure", _name), "design": "Design (folds x seeds)",
            "mdd": ("MDD (80% power)", md.mdd),
            **{f"power_{d:g}": (f"Power at {d:g}", _pct) for d in DIFFERENCES},
            "equivalence_margin": ("Equivalence provable within (80%)", lambda v: f"±{md.num(v)}"),
            "ci": ("Recipe CI of global Dice (half-width)", lambda r: f"{md.num(r['estimate'])} "
                   f"{md.interval(r['recipe_low'], r['recipe_high'])} (±{md.num(r['half_width'])})", True),
            "col": ("Collapsed runs (rate not ruled out)", lambda r: f"{int(r['n_collapsed'])} of {int(r['n_runs'])} "
                    f"(up to {100 * r['collapse_upper']:.0f}%)", True)}
    out += ("**What the current design can detect** (a comparison of two arms run like this one; differences in "
            "the arm comparison's measure, mean Dice over every test image). *MDD*: the smallest true difference "
            "found in 80 % of studies; *equivalence provable within*: the smallest margin the two one-sided tests "
            f"establish in 80 % of studies when the arms are equal (the study's margin is ±{plan.margin:g}).\n\n"
            + md.table(claims, cols))
    low = claims[~(claims["mdd"] <= plan.margin)]
    if not low.empty:
        out += (f"\n**Power below 80 % at the margin (±{plan.margin:g})** for "
                + ", ".join(_name(c) for c in low["class"]) + ": a difference that small would usually go unseen, "
                "and an *inconclusive* verdict there says little.\n")
    no_var = claims[~np.isfinite(claims["sd_seed"].to_numpy(dtype=float))]
    if not no_var.empty:
        out += ("\nNo run-to-run variance for " + ", ".join(_name(c) for c in no_var["class"]) + " (fewer than two "
                "runs that did not collapse): nothing to plan from there.\n")
    if claims["seed_from_folds"].any():
        out += ("\nWith one run per fold the seed-to-seed variance cannot be told from the fold-to-fold variance: "
                "the plan uses their sum (conservative for a blocked design).\n")
    if (claims["n_collapsed"] == 0).any():
        out += ("\nNo collapse was seen in some structures, but with this many runs a collapse rate up to the "
                "percentage shown cannot be ruled out (Jeffreys 95 % bound); power and intervals assume the "
                "observed rate, and every collapse widens them a lot.\n")
    runs = t.get("plan_runs", pd.DataFrame())
    if not runs.empty:
        wide = runs.pivot_table(index=["class", "difference"], columns="folds", values="seeds_per_fold",
                                aggfunc="first", sort=False, dropna=False)
        wide = wide.reset_index()
        folds = [c for c in wide.columns if c not in ("class", "difference")]
        cols = {"class": ("Structure", _name), "difference": ("Difference", md.fixed(2)),
                **{f: (f"{f} fold{'s' if f > 1 else ''}", lambda v: _count(v, "> 30")) for f in folds}}
        out += ("\n**Seeds per fold for 80 % power** (per arm; k x 1 designs are paired by fold, k x n blocked by fold, "
                f"1 x n Welch; '> 30': not within 30 seeds; folds tried: {', '.join(map(str, folds))}).\n\n"
                + md.table(wide, cols))
    pats = t.get("plan_patients", pd.DataFrame())
    if not pats.empty:
        cols = {"class": ("Structure", _name), "half_width": ("Recipe CI half-width", lambda v: f"±{v:g}"),
                "patients": (f"Test patients with {plan.n_folds} x {plan.seeds_per_fold:g} runs",
                             lambda v: _count(v, "not reachable")),
                "patients_5x5": ("with 5 x 5 runs", lambda v: _count(v, "not reachable"))}
        out += ("\n**Test patients for a recipe interval of global Dice this narrow** (*not reachable*: run-to-run "
                "variation alone is wider, more runs are needed first; El Jurdi et al. 2023: a CI 1 % wide needs "
                "about 100-200 test cases).\n\n" + md.table(pats, cols))
    gap = t.get("plan_gap", pd.DataFrame())
    if n_arms > 1 and not gap.empty:
        cols = {"class": ("Structure", _name), "pair": ("Arms", lambda r: f"{r['arm_a']} vs {r['arm_b']}", True),
                "gap": ("Gap in global Dice", md.fixed(3)), "ci_width": ("Recipe CI width (mean)", md.fixed(3)),
                "width_over_gap": ("Width / gap", md.fixed(1)),
                "overlap": ("Intervals overlap", lambda v: "yes" if bool(v) else "no")}
        out += ("\n**Gap between arms against the interval width** (Christodoulou et al. 2024 found the median CI "
                "width of segmentation papers three times the gap between first and second place): a width/gap above "
                "1 means the ranking of these two arms is within the recipe's own uncertainty.\n\n"
                + md.table(gap, cols))
    elif n_arms == 1:
        out += "\nOne arm: no gap to set against the interval width (run a second arm to compare).\n"
    return out

