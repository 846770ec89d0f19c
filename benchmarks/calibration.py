"""Calibration of the report's statistics on simulated studies with known truth; prints one table per check.

The studies (``robustseg.stats.scenarios``) have patient, image, fold, seed and residual effects on the logit
scale of Dice, false positives on structure-absent images, and the irregularities of real studies, each on
its own and all together (``audit``): heavy-tailed patient and image effects, missed structures,
collapsed runs, unequal folds, 1-4 images per patient and failed runs. Every check runs the public
functions the report calls (``robustseg.stats.calibrate``):

1. ``recipe``: coverage of the recipe interval of pooled Dice (global and per-image) of the expected Dice
   over new patients and new training runs. Targets: >= 90 % at 2 folds x 3 seeds, 20 patients; >= 93 % at
   3 x 5. ``test-set`` column: the same check for the test-set interval (what "pooled [95% CI]" used to be).
2. ``test-set``: coverage of the test-set interval for one fixed model at 20 and 40 patients when on average
   0, 1 or 2 images per test set miss the structure; never outside [0, 1]. Target >= 93 %. For contrast, the
   studentized patient bootstrap and how often its bounds leave [0, 1].
3. ``comparison``: null rate (same recipe, other seeds) and power (true difference 2 x seed SD) of the arm
   comparison for k x 1 (paired by fold), k x n (blocked by fold) and 1 x n (Welch), Holm over 3 structures.
   Target: null <= 6 %.
4. ``equivalence`` at 2 x 5: "equivalent" rate when the arms are equal (target >= 70 %) and when the true
   difference equals the margin (target <= 5 %), at margin 0.01 and at the margin the plan says 2 x 5 can
   establish.
5. ``plan``: predicted power (from one-arm 2 x 3 pilots) at three design points within +/- 7 points of the
   simulated power; predicted (median) recipe half-width at 40 patients within 15 % of the simulated median.
6. ``bland-altman``: false proportional-bias flags at n = 8, 15, 40 with a prediction noisier than the
   reference and no proportional bias. Target <= 6 %.
7. ``seed ICC``: coverage of the pooled seed-ICC interval (unchanged; target >= 90 % at 3 x 5).

Run: ``python benchmarks/calibration.py [--studies 300] [--interval-studies 1000] [--quick] [--only recipe,plan]``.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import pandas as pd

from robustseg.stats import calibrate as cal
from robustseg.stats.power import equivalence_margin, run_components
from robustseg.stats.scenarios import SCENARIOS, scenario, simulate
from robustseg.stats.simulate import icc_coverage

CHECKS = ("recipe", "test-set", "comparison", "equivalence", "plan", "bland-altman", "seed-icc")


def _summary(r: pd.DataFrame, kind: str) -> dict:
    """Worst and mean coverage over structures and statistics of one interval kind, widths, bounds outside [0, 1]."""
    k = r[r["interval"] == kind]
    worst = k.loc[k["coverage"].idxmin()]
    return {"coverage_min": worst["coverage"], "worst": f"{worst['class']} {worst['statistic']}",
            "coverage_mean": k["coverage"].mean(), "width_mean": k["mean_width"].mean(),
            "outside_unit": k["outside_unit"].max()}


def recipe(n: int) -> pd.DataFrame:
    rows = []
    configs = [("base", 2, 3), ("base", 3, 5), ("audit", 2, 3), ("audit", 3, 5)]
    configs += [(name, 2, 3) for name in SCENARIOS if name not in ("base", "audit")]
    for i, (name, f, s) in enumerate(configs):
        scn = scenario(name)
        r = cal.interval_coverage(scn, n, n_patients=20, n_folds=f, n_seeds=s, seed=100 + i)
        design = r["design"].iloc[0] if scn.seeds_per_fold is None else f"folds of {scn.seeds_per_fold} seeds"
        for kind in ("recipe", "test-set"):
            rows.append({"scenario": name, "design": design, "interval": kind, "n_studies": n, **_summary(r, kind)})
    out = pd.DataFrame(rows)
    target = np.where(out["design"] == "3 x 5", 0.93, 0.90)
    out["target"] = np.where(out["interval"] == "recipe", target, np.nan)
    out["pass"] = np.where(out["interval"] == "recipe", out["coverage_min"] >= out["target"], np.nan)
    return out


def test_set(n: int) -> pd.DataFrame:
    rows = []
    for i, (p, m) in enumerate([(p, m) for p in (20, 40) for m in (0, 1, 2)]):
        r = cal.interval_coverage(scenario("base"), n, n_patients=p, fixed_model=True, expected_misses=m,
                                  old_method="studentized", n_boot=1000, seed=200 + i)
        for kind, label in (("test-set", "test-set (report)"), ("studentized", "studentized bootstrap")):
            rows.append({"patients": p, "expected_misses": m, "interval": label, "n_studies": n, **_summary(r, kind)})
    out = pd.DataFrame(rows)
    out["pass"] = np.where(out["interval"].str.startswith("test-set"),
                           (out["coverage_min"] >= 0.93) & (out["outside_unit"] == 0), np.nan)
    return out


def comparison(n: int) -> pd.DataFrame:
    rows = []
    base = scenario("base")
    sds = cal.seed_sd(base)
    power_diff = {c: 2 * v for c, v in sds.items()}
    configs = [("base", 5, 1), ("base", 2, 3), ("base", 2, 5), ("base", 1, 5), ("audit", 2, 5), ("collapses", 2, 5),
               ("audit", 5, 1)]
    for i, (name, f, s) in enumerate(configs):
        scn = scenario(name)
        null = cal.comparison_rates(scn, n, n_folds=f, n_seeds=s, seed=300 + i)
        pw = cal.comparison_rates(scn, n, n_folds=f, n_seeds=s, diff=power_diff, seed=400 + i)
        for a, b in zip(null.itertuples(index=False), pw.itertuples(index=False), strict=True):
            rows.append({"scenario": name, "design": f"{f} x {s}", "test": a.design_label, "class": a[0],
                         "n_studies": n, "null_rate": a.verdict_rate, "power_2sd": b.power, "diff_2sd": b.diff,
                         "flagged_rate": b.flagged_rate, "pass": a.verdict_rate <= 0.06})
    return pd.DataFrame(rows)


def equivalence(n: int) -> pd.DataFrame:
    rows = []
    scn = scenario("base")
    big = simulate(7, scn, n_patients=20, n_folds=20, n_seeds=10, arms={"a": 0.0})
    comps = run_components(big, by=("class",)).set_index("class")
    for i, cls in enumerate(scn.structures):
        provable = round(float(equivalence_margin(comps.loc[cls].to_dict(), 2, 5)), 3)
        for margin in sorted({0.01, provable}):
            one = type(scn)(name=scn.name, structures={cls: scn.structures[cls]})
            eq0 = cal.comparison_rates(one, n, n_folds=2, n_seeds=5, margin=margin, seed=500 + i).iloc[0]
            eqm = cal.comparison_rates(one, n, n_folds=2, n_seeds=5, margin=margin, diff=margin, seed=600 + i).iloc[0]
            rows.append({"class": cls, "margin": margin, "plan_provable_margin": provable, "n_studies": n,
                         "equivalent_at_diff_0": eq0["equivalent_rate"], "equivalent_at_margin": eqm["equivalent_rate"],
                         "pass": (eq0["equivalent_rate"] >= 0.70) & (eqm["equivalent_rate"] <= 0.05)})
    return pd.DataFrame(rows)


def plan(n: int) -> pd.DataFrame:
    parts = []
    for i, cls in enumerate(("lv", "csp")):
        r = cal.plan_check(scenario("base"), max(n // 6, 30), n, cls=cls, seed=700 + i)
        parts.append(r.assign(**{"class": cls}))
    out = pd.concat(parts, ignore_index=True)
    is_power = out["quantity"].str.startswith("power")
    err = np.where(is_power, out["predicted_large"] - out["truth"], out["predicted_large"] / out["truth"] - 1)
    out["error_large"] = err
    err_med = np.where(is_power, out["predicted_median"] - out["truth"], out["predicted_median"] / out["truth"] - 1)
    out["error_pilot_median"] = err_med
    out["pass"] = np.where(is_power, np.abs(err) <= 0.07, np.abs(err) <= 0.15)
    return out


def bland_altman_rates(n: int) -> pd.DataFrame:
    parts = []
    for i, size in enumerate((8, 15, 40)):
        parts.append(cal.proportional_bias_rates(size, max(n, 1000), seed=800 + i).assign(reference="exact"))
        parts.append(cal.proportional_bias_rates(size, max(n, 1000), sd_ref=1.5, seed=900 + i)
                     .assign(reference="own error SD 1.5 (true SD 10)"))
    out = pd.concat(parts, ignore_index=True)
    out["pass"] = np.where(out["reference"] == "exact", out["new"] <= 0.06, np.nan)
    return out


def seed_icc(n: int) -> pd.DataFrame:
    rows = []
    for f, s in ((3, 5), (2, 3), (5, 5)):
        r = icc_coverage(n, n_images=30, n_folds=f, n_seeds=s, seed=3).iloc[0]
        rows.append({"design": f"{f} x {s}", "n_studies": n, "coverage": r["coverage"],
                     "pass": r["coverage"] >= 0.90 if (f, s) == (3, 5) else np.nan})
    return pd.DataFrame(rows)


RUNNERS = {"recipe": recipe, "test-set": test_set, "comparison": comparison, "equivalence": equivalence, "plan": plan,
           "bland-altman": bland_altman_rates, "seed-icc": seed_icc}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=300, help="simulated studies per rate (default 300)")
    ap.add_argument("--interval-studies", type=int, default=1000,
                    help="simulated studies per coverage rate of the recipe and test-set checks (default 1000)")
    ap.add_argument("--quick", action="store_true", help="30 studies per rate (a smoke run, not a calibration)")
    ap.add_argument("--only", default="", help=f"comma-separated checks among {', '.join(CHECKS)}")
    ap.add_argument("--csv", default="", help="also write every table to this folder")
    args = ap.parse_args()
    n = 30 if args.quick else args.studies
    n_int = 30 if args.quick else args.interval_studies
    only = [c for c in args.only.split(",") if c] or list(CHECKS)
    print(f"{platform.processor() or platform.machine()}; {n} simulated studies per rate ({n_int} per coverage)")
    for name in only:
        start = time.process_time()
        table = RUNNERS[name](n_int if name in ("recipe", "test-set") else n)
        with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 40):
            print(f"\n== {name} ({time.process_time() - start:.0f} s CPU)")
            print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        if args.csv:
            from pathlib import Path

            Path(args.csv).mkdir(parents=True, exist_ok=True)
            table.to_csv(Path(args.csv) / f"{name}.csv", index=False)


if __name__ == "__main__":
    main()
