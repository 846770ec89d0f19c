"""Calibration of the report's statistics against simulated studies with known truth (``benchmarks/calibration.py``).

Each function runs ``n_studies`` studies of a :class:`robustseg.stats.scenarios.Scenario` through the same
public functions the report calls and returns a tidy table of rates; ``seed`` fixes everything.

- :func:`interval_coverage`: coverage of the recipe and test-set intervals of pooled Dice
  (:func:`robustseg.stats.dice_intervals`) against the expected Dice over new patients and new runs (the
  recipe truth) or over new patients for one fixed model (the test-set truth).
- :func:`comparison_rates`: verdict rates of the run-level arm comparison
  (:func:`robustseg.stats.compare_runs`, Holm over the structures) for a design and a true difference: the
  null rate and the power; and the equivalence rate of the same rows.
- :func:`plan_check`: predicted power and recipe half-width from one-arm pilot studies
  (``robustseg.stats.power``) against the simulated power and half-width at other designs.
- :func:`proportional_bias_rates`: false flags of the Bland-Altman proportional-bias test when the
  prediction is noisier than the reference and no proportional bias exists (old: slope on the mean).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from robustseg.stats.bootstrap import patient_bootstrap_ci
from robustseg.stats.icc import bland_altman
from robustseg.stats.intervals import dice_intervals
from robustseg.stats.power import predict_half_width, run_components, simulated_power
from robustseg.stats.runlevel import compare_runs, run_values
from robustseg.stats.scenarios import Scenario, shift_for_difference, simulate, truth


def _seeds(seed: int, n: int) -> list[int]:
    rng = np.random.default_rng(seed)
    return [int(s) for s in rng.integers(0, 2**31, n)]


def interval_coverage(scn: Scenario, n_studies: int, *, n_patients: int = 20, n_folds: int = 2, n_seeds: int = 3,
                      fixed_model: bool = False, expected_misses: float | None = None, old_method: str | None = None,
                      n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
                      classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Coverage of the recipe and test-set 95 % intervals per structure and statistic.

    ``fixed_model``: one run (fold and seed effects 0, no collapse) per study and the test-set truth; else
    ``n_folds x n_seeds`` runs and the recipe truth. ``expected_misses``: set every structure's miss rate
    so that a test set misses that many images on average. ``old_method``: also the coverage of
    :func:`robustseg.stats.patient_bootstrap_ci` with that method (e.g. ``studentized``) and
    how often its bounds leave [0, 1]. Returns ``class, statistic, interval, n_patients, design, n_studies,
    truth, coverage, below, above, mean_width, outside_unit, alpha``.

    Examples
    --------
    >>> from robustseg.stats.scenarios import scenario
    >>> r = interval_coverage(scenario("base"), 3, n_patients=8, classes=["lv"])
    >>> sorted(set(r["interval"])), bool(r["coverage"].between(0, 1).all())
    (['recipe', 'test-set'], True)
    """
    names = list(classes) if classes is not None else list(scn.structures)
    if expected_misses is not None:
        ipp = (scn.images_per_patient[0] + scn.images_per_patient[1]) / 2
        scn = scn.with_structures(miss_rate=expected_misses / (n_patients * ipp))
    stats_ = ("global_dice", "mean")
    tr = {(c, st): truth(scn.structures[c], st, fixed_model=fixed_model) for c in names for st in stats_}
    rec: dict[tuple, list] = {}
    for s in _seeds(seed, n_studies):
        d = simulate(s, scn, n_patients=n_patients, n_folds=n_folds, n_seeds=n_seeds, arms={"a": 0.0},
                     classes=names, fixed_model=fixed_model)
        for st in stats_:
            r = dice_intervals(d, statistic=st, by=("class",), alpha=alpha)
            for row in r.itertuples(index=False):
                t = tr[(row[0], st)]
                rec.setdefault((row[0], st, row.interval), []).append(
                    (row.ci_low <= t <= row.ci_high, t < row.ci_low, t > row.ci_high, row.ci_high - row.ci_low,
                     row.ci_low < 0 or row.ci_high > 1))
            if old_method:
                r = patient_bootstrap_ci(d, by=("class",), statistic=st, method=old_method, n_boot=n_boot,
                                         alpha=alpha, seed=s % 100000)
                for row in r.itertuples(index=False):
                    t = tr[(row[0], st)]
                    rec.setdefault((row[0], st, old_method), []).append(
                        (row.ci_low <= t <= row.ci_high, t < row.ci_low, t > row.ci_high, row.ci_high - row.ci_low,
                         row.ci_low < 0 or row.ci_high > 1))
    design = "fixed model" if fixed_model else f"{n_folds} x {n_seeds}"
    rows = []
    for (cls, st, kind), v in rec.items():
        a = np.array(v, dtype=np.float64)
        rows.append({"class": cls, "statistic": st, "interval": kind, "n_patients": n_patients, "design": design,
                     "n_studies": n_studies, "truth": tr[(cls, st)], "coverage": a[:, 0].mean(),
                     "below": a[:, 1].mean(), "above": a[:, 2].mean(), "mean_width": float(np.nanmean(a[:, 3])),
                     "outside_unit": a[:, 4].mean(), "alpha": alpha})
    return pd.DataFrame(rows)


def seed_sd(scn: Scenario, *, n_patients: int = 20, seed: int = 0) -> dict[str, float]:
    """Seed-to-seed SD (pooled within folds) of the run value (mean ``dice_all_images``) per structure, from one
    large simulated study of ``scn`` without collapses: the unit of the power checks' effect size.

    Examples
    --------
    >>> from robustseg.stats.scenarios import scenario
    >>> sds = seed_sd(scenario("base"))
    >>> sorted(sds), all(0 < v < 0.1 for v in sds.values())
    (['brain', 'csp', 'lv'], True)
    """
    big = simulate(seed, scn.with_structures(collapse_rate=0.0), n_patients=n_patients, n_folds=30, n_seeds=10,
                   arms={"a": 0.0})
    rv = run_values(big)
    return {str(c): float(np.sqrt(g.groupby("fold")["value"].var(ddof=1).mean())) for c, g in rv.groupby("class")}


def comparison_rates(scn: Scenario, n_studies: int, *, n_folds: int, n_seeds: int, diff: dict[str, float] | float = 0.0,
                     n_patients: int = 20, margin: float = 0.01, alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Rates of the arm comparison's outcomes for arms ``a`` and ``b`` where ``b`` is better by ``diff`` (per
    structure, in the comparison's measure: expected ``dice_all_images``; 0 = the null).

    Returns per structure: ``class, design, n_folds, n_seeds, diff, n_studies, verdict_rate`` (a difference
    called, either way), ``power`` (called the right way), ``equivalent_rate`` (decision "equivalent within
    +/- margin"), ``flagged_rate`` (rows with a collapsed-run flag), ``design_label`` (the test used).

    Examples
    --------
    >>> from robustseg.stats.scenarios import scenario
    >>> r = comparison_rates(scenario("base"), 3, n_folds=5, n_seeds=1)
    >>> r["design_label"].unique().tolist(), bool(r["verdict_rate"].between(0, 1).all())
    (['paired'], True)
    """
    names = list(scn.structures)
    diffs = diff if isinstance(diff, dict) else dict.fromkeys(names, float(diff))
    shifts = {c: shift_for_difference(scn.structures[c], diffs[c]) if diffs[c] else 0.0 for c in names}
    hits = {c: np.zeros(4) for c in names}
    designs: dict[str, set] = {c: set() for c in names}
    for s in _seeds(seed, n_studies):
        parts = [simulate(s + i, scn, n_patients=n_patients, n_folds=n_folds, n_seeds=n_seeds,
                          arms={"a": 0.0, "b": shifts[c]}, classes=[c]) for i, c in enumerate(names)]
        t = pd.concat(parts, ignore_index=True)
        if "patient_id" in t:  # one test set per structure: keep patient ids apart between structures
            t["patient_id"] = t["class"] + "/" + t["patient_id"].astype(str)
        res = compare_runs(t, arms=["a", "b"], n_boot=1, alpha=alpha, margin=margin)
        for r in res.itertuples(index=False):
            c = r[0]
            called = r.verdict.endswith("better")
            hits[c] += (called, r.verdict == "b better", r.decision.startswith("equivalent"), "collapsed" in r.flag)
            designs[c].add(r.design)
    return pd.DataFrame([{"class": c, "design": f"{n_folds} x {n_seeds}", "n_folds": n_folds, "n_seeds": n_seeds,
                          "diff": diffs[c], "n_studies": n_studies, "verdict_rate": hits[c][0] / n_studies,
                          "power": hits[c][1] / n_studies, "equivalent_rate": hits[c][2] / n_studies,
                          "flagged_rate": hits[c][3] / n_studies, "design_label": "/".join(sorted(designs[c]))}
                         for c in names])


def plan_check(scn: Scenario, n_pilots: int, n_studies: int, *, pilot: tuple[int, int] = (2, 3), n_patients: int = 20,
               points: Sequence[tuple[int, int]] = ((2, 3), (2, 5), (5, 1)), diff_in_sd: float = 2.0,
               half_width_patients: int = 40, cls: str = "lv", alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Planning predictions from one-arm pilot studies against simulation, for one structure.

    Power: for each design point ``(folds, seeds)``, the power predicted from the components of each pilot
    (:func:`robustseg.stats.power.simulated_power`, the median over pilots and its 10-90 % range, and from a
    large pilot of 10 folds x 10 seeds: the model's own error) against the power of
    ``n_studies`` simulated two-arm studies (:func:`robustseg.stats.compare_runs`, one structure, level
    ``alpha``) at a true difference of ``diff_in_sd`` seed SDs. The large pilot has as many test patients as
    the studies (run values vary less on a larger test set). Half-width: the recipe-interval half-width
    predicted for ``half_width_patients`` patients at the pilot's design against the median simulated one.
    Returns ``quantity, design, truth, predicted_median, predicted_p10, predicted_p90, predicted_large,
    n_pilots, n_studies``.
    """
    one = scn.with_structures()
    m = one.structures[cls]
    sd = seed_sd(scn, n_patients=n_patients)[cls]
    diff = diff_in_sd * sd
    shift = shift_for_difference(m, diff)
    pilots = []
    for s in _seeds(seed, n_pilots):
        d = simulate(s, scn, n_patients=n_patients, n_folds=pilot[0], n_seeds=pilot[1], arms={"a": 0.0}, classes=[cls])
        comp = run_components(d, by=("class",)).iloc[0].to_dict()
        ci = dice_intervals(d, by=("class",)).query("interval == 'recipe'").iloc[0].to_dict()
        pilots.append((comp, ci))
    big = simulate(seed + 1, scn, n_patients=n_patients, n_folds=10, n_seeds=10, arms={"a": 0.0}, classes=[cls])
    big_comp = run_components(big, by=("class",)).iloc[0].to_dict()
    rows = []
    for f, s_ in points:
        pred = [simulated_power(c, diff, f, s_, alpha=alpha) for c, _ in pilots]
        hit = 0
        for s in _seeds(seed + 7 * f + s_, n_studies):
            t = simulate(s, scn, n_patients=n_patients, n_folds=f, n_seeds=s_, arms={"a": 0.0, "b": shift},
                         classes=[cls])
            r = compare_runs(t, arms=["a", "b"], n_boot=1, alpha=alpha).iloc[0]
            hit += r.verdict == "b better"
        rows.append({"quantity": f"power at {diff:.3f} ({diff_in_sd:g} seed SD)", "design": f"{f} x {s_}",
                     "truth": hit / n_studies, "predicted_median": float(np.median(pred)),
                     "predicted_p10": float(np.quantile(pred, 0.1)), "predicted_p90": float(np.quantile(pred, 0.9)),
                     "predicted_large": simulated_power(big_comp, diff, f, s_, alpha=alpha), "n_pilots": n_pilots,
                     "n_studies": n_studies})
    pred_w = [predict_half_width(ci, half_width_patients, *pilot, alpha) for _, ci in pilots]
    widths = []
    for s in _seeds(seed + 99, n_studies):
        d = simulate(s, scn, n_patients=half_width_patients, n_folds=pilot[0], n_seeds=pilot[1], arms={"a": 0.0},
                     classes=[cls])
        r = dice_intervals(d, by=("class",)).query("interval == 'recipe'").iloc[0]
        widths.append((r["ci_high"] - r["ci_low"]) / 2)
    big_ci = dice_intervals(big, by=("class",)).query("interval == 'recipe'").iloc[0].to_dict()
    rows.append({"quantity": f"recipe half-width at {half_width_patients} patients", "design": f"{pilot[0]} x {pilot[1]}",
                 "truth": float(np.median(widths)), "predicted_median": float(np.median(pred_w)),
                 "predicted_p10": float(np.quantile(pred_w, 0.1)), "predicted_p90": float(np.quantile(pred_w, 0.9)),
                 "predicted_large": predict_half_width(big_ci, half_width_patients, *pilot, alpha),
                 "n_pilots": n_pilots, "n_studies": n_studies})
    return pd.DataFrame(rows)


def proportional_bias_rates(n: int, n_studies: int, *, sd_true: float = 10.0, sd_pred: float = 5.0,
                            sd_ref: float = 0.0, relative: bool = True, alpha: float = 0.05, seed: int = 0
                            ) -> pd.DataFrame:
    """False-flag rate of the Bland-Altman proportional-bias test with no proportional bias: true areas
    ``N(100, sd_true)``, reference = truth + ``N(0, sd_ref)``, prediction = truth + ``N(0, sd_pred)`` (scaled
    by truth / 100 when ``relative``: errors that grow with the area). ``new``: :func:`bland_altman`'s slope on
    the reference with HC3; ``old``: the least-squares slope of the difference on the mean.

    Examples
    --------
    >>> r = proportional_bias_rates(8, 50).iloc[0]
    >>> int(r["n"]), bool(0 <= r["new"] <= 1)
    (8, True)
    """
    rng = np.random.default_rng(seed)
    new = old = 0
    for _ in range(n_studies):
        true = rng.normal(100, sd_true, n)
        err = rng.normal(0, sd_pred, n) * (true / 100 if relative else 1.0)
        ref, pred = true + rng.normal(0, sd_ref, n), true + err
        d = pred - ref
        old += sps.linregress((pred + ref) / 2, d).pvalue < alpha
        new += bland_altman(pd.DataFrame({"p": pred, "r": ref}), "p", "r", alpha=alpha)["slope_p"].iloc[0] < alpha
    return pd.DataFrame([{"n": n, "n_studies": n_studies, "sd_pred": sd_pred, "sd_ref": sd_ref, "relative": relative,
                          "new": new / n_studies, "old": old / n_studies, "alpha": alpha}])
