"""Calibration of the report's statistics on simulated studies with known truth; prints one table.

Rows (``robustseg.stats.simulate``):

- ``null``: two arms with the same recipe and different seeds (2 folds x 5 seeds, 20 patients); the share
  of studies with a difference verdict per structure (run-level comparison, Holm over the 3 structures).
  Target <= 6 %. ``v0.1`` column: the old per-image Wilcoxon verdict, for contrast.
- ``power``: arm b better by 2 x the seed SD of the run-level value; share found (and the right way
  round). Target >= 80 % at 2 folds x 5 seeds. ``v0.1``: the old verdict's rate (either direction).
- ``seed ICC``: coverage of the pooled seed-ICC 95 % CI at 3 folds x 5 seeds, 30 images (also 2 x 3 and
  5 x 5). Target >= 90 %. ``v0.1``: targets = image x fold, raters = seed labels.
- ``interval``: coverage of the patient-level 95 % intervals of global and per-image Dice at 20
  patients for every method of ``patient_bootstrap_ci``. Target >= 93 % for the report's method.

Run: ``nice -n 10 python benchmarks/calibration.py [--studies 300] [--interval-studies 1000] [--quick]``.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from robustseg.stats.bootstrap import DEFAULT_METHOD
from robustseg.stats.simulate import bootstrap_coverage, icc_coverage, verdict_rates


def run(studies: int, interval_studies: int, n_boot: int) -> pd.DataFrame:
    rows = []
    null = verdict_rates(studies, shift_in_seed_sd=0.0, n_folds=2, n_seeds=5, per_image_v01=True, seed=1)
    for r in null.itertuples(index=False):
        rows.append({"check": "null: difference verdict", "case": f"{r[0]}, 2 folds x 5 seeds", "n": r.n_studies,
                     "value": r.verdict_rate, "v0.1": r.verdict_rate_v01, "target": "<= 0.06",
                     "pass": r.verdict_rate <= 0.06})
    power = verdict_rates(studies, shift_in_seed_sd=2.0, n_folds=2, n_seeds=5, per_image_v01=True, seed=2)
    for r in power.itertuples(index=False):
        rows.append({"check": "power: 2 x seed SD found", "case": f"{r[0]}, 2 folds x 5 seeds", "n": r.n_studies,
                     "value": r.correct_direction_rate, "v0.1": r.verdict_rate_v01, "target": ">= 0.80",
                     "pass": r.correct_direction_rate >= 0.80})
    for folds, seeds in ((3, 5), (2, 3), (5, 5)):
        r = icc_coverage(studies, n_images=30, n_folds=folds, n_seeds=seeds, seed=3).iloc[0]
        rows.append({"check": "seed ICC: 95% CI coverage", "case": f"{folds} folds x {seeds} seeds, 30 images",
                     "n": studies, "value": r["coverage"], "v0.1": r["coverage_v01"],
                     "target": ">= 0.90" if (folds, seeds) == (3, 5) else "",
                     "pass": r["coverage"] >= 0.90})
    for cls, seed in (("csp", 4), ("lv", 5)):
        cov = bootstrap_coverage(interval_studies, n_patients=20, cls=cls, n_boot=n_boot, seed=seed)
        for r in cov.itertuples(index=False):
            main = r.method == DEFAULT_METHOD
            rows.append({"check": f"interval: 95% coverage ({r.method}{', report' if main else ''})",
                         "case": f"{cls} {r.statistic}, 20 patients", "n": r.n_studies, "value": r.coverage,
                         "v0.1": float("nan"), "target": ">= 0.93" if main else "",
                         "pass": r.coverage >= 0.93})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=300, help="simulated studies per null/power/ICC row")
    ap.add_argument("--interval-studies", type=int, default=1000, help="simulated test sets per interval row")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="30 studies per row (a smoke run, not a calibration)")
    args = ap.parse_args()
    studies, interval = (30, 30) if args.quick else (args.studies, args.interval_studies)
    start = time.perf_counter()
    table = run(studies, interval, args.n_boot)
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
