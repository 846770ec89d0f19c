"""Recipe and test-set intervals, the design of each arm comparison, equivalence, planning, and the fixes of
the area ICC, the Bland-Altman slope (in test_stats.py) and retention. Simulations here are small; the
calibration at >= 300 studies per rate is ``benchmarks/calibration.py``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from robustseg.errors import InputError
from robustseg.stats import (
    compare_runs,
    design_test,
    dice_intervals,
    patient_bootstrap_ci,
    run_level_test,
    tost,
)
from robustseg.stats.intervals import crossed_components, ratio_intervals
from robustseg.stats.power import (
    design_mdd,
    patients_needed,
    predict_half_width,
    run_components,
    simulated_power,
)
from robustseg.stats.scenarios import STRUCTURES, scenario, simulate, truth


def _one_miss_table(seed: int = 0) -> pd.DataFrame:
    """10 patients, one image each, Dice ~0.89, one image misses the structure (the audit's case)."""
    rng = np.random.default_rng(seed)
    d = np.clip(rng.normal(0.89, 0.02, 10), 0, 1)
    d[3] = 0.0
    return pd.DataFrame({"patient_id": np.arange(10), "image_id": np.arange(10), "dice": d, "fold": 0, "seed": 0})


def test_one_miss_interval_stays_in_unit_range():
    """10 patients at Dice ~0.89 with one miss: the studentized bootstrap went to [-0.90, 0.93]; the test-set
    interval stays inside [0, 1], below the no-miss values, and no narrower than the percentile bootstrap."""
    for seed in range(3):
        df = _one_miss_table(seed)
        old = patient_bootstrap_ci(df, by=(), n_boot=2000, method="studentized").iloc[0]
        assert old["ci_low"] < 0  # the failure this replaces
        pct = patient_bootstrap_ci(df, by=(), n_boot=2000, method="percentile").iloc[0]
        r = dice_intervals(df, statistic="mean", by=()).set_index("interval")
        test = r.loc["test-set"]
        assert 0 <= test["ci_low"] < test["estimate"] < test["ci_high"] <= 1
        assert 0.45 < test["ci_low"] < 0.65 and test["ci_high"] < 0.95
        assert test["ci_high"] - test["ci_low"] >= pct["ci_high"] - pct["ci_low"]
        # without the miss, the interval is still widened for misses 10 images cannot rule out
        df.loc[3, "dice"] = 0.9
        clean = dice_intervals(df, statistic="mean", by=()).set_index("interval").loc["test-set"]
        assert clean["ci_low"] < clean["estimate"] - 0.1 and "cannot rule out" in clean["note"]


def test_test_set_interval_equals_cluster_robust_t_on_logit_scale():
    rng = np.random.default_rng(3)
    pat = np.repeat(np.arange(25), 2)
    df = pd.DataFrame({"patient_id": pat, "image_id": np.arange(50), "fold": 0, "seed": 0,
                       "dice": np.clip(0.7 + rng.normal(0, 0.1, 25)[pat] + rng.normal(0, 0.05, 50), 0.01, 0.99)})
    r = dice_intervals(df, statistic="mean", by=()).set_index("interval").loc["test-set"]
    per = df.groupby("patient_id")["dice"].agg(["sum", "count"])
    est = per["sum"].sum() / per["count"].sum()
    se = np.sqrt(25 / 24 * ((per["sum"] - est * per["count"]) ** 2).sum()) / per["count"].sum()
    assert r["se"] == pytest.approx(se) and r["df"] == 24
    q = sps.t.ppf(0.975, 24) * se / (est * (1 - est))
    lo, hi = (1 / (1 + np.exp(-(np.log(est / (1 - est)) + s * q))) for s in (-1, 1))
    assert r["ci_low"] <= lo + 1e-12 and r["ci_high"] == pytest.approx(hi)


def test_recipe_components_recover_known_variances():
    """A crossed patients x runs table with known components: the method-of-moments estimates are close."""
    rng = np.random.default_rng(5)
    est = {"s2_patient": [], "s2_seed": [], "s2_resid": []}
    for _ in range(200):
        z = (rng.normal(0, 1.0, (40, 1)) + rng.normal(0, 0.5, (1, 8)) + rng.normal(0, 0.3, (40, 8)))
        c = crossed_components(z, [0] * 4 + [1] * 4)
        for k in est:
            est[k].append(c[k])
    assert np.mean(est["s2_patient"]) == pytest.approx(1.0, rel=0.1)
    assert np.mean(est["s2_seed"]) == pytest.approx(0.25, rel=0.2)
    assert np.mean(est["s2_resid"]) == pytest.approx(0.09, rel=0.05)


def test_recipe_interval_covers_training_randomness():
    """Small version of the calibration: at 2 folds x 3 seeds, 20 patients, the recipe interval covers the
    expected Dice over new runs and patients far more often than the test-set interval (which was read as
    the recipe's)."""
    scn = scenario("base")
    cls = "lv"
    t = truth(scn.structures[cls], "global_dice", n=200_000)
    rng = np.random.default_rng(8)
    hits = {"recipe": 0, "test-set": 0}
    n = 60
    for _ in range(n):
        d = simulate(int(rng.integers(2**31)), scn, n_patients=20, n_folds=2, n_seeds=3, arms={"a": 0.0},
                     classes=[cls])
        r = dice_intervals(d, by=("class",))
        for row in r.itertuples():
            hits[row.interval] += row.ci_low <= t <= row.ci_high
            assert 0 <= row.ci_low <= row.ci_high <= 1
    assert hits["recipe"] / n >= 0.85
    assert hits["recipe"] >= hits["test-set"]


def test_k_by_1_design_is_paired_by_fold():
    """5 folds x 1 seed, a constant 0.05 difference: 'not testable' before; paired by fold now (p ~ 1e-9)."""
    rng = np.random.default_rng(2)
    fold_effect = rng.normal(0, 0.05, 5)
    rows = []
    for arm, shift in (("a", 0.0), ("b", 0.05)):
        for f in range(5):
            for i in range(12):
                dice = 0.75 + fold_effect[f] + shift + 0.01 * np.sin(i + f) + 0.002 * rng.normal()
                rows.append({"arm": arm, "fold": f, "seed": 0, "class": "lv", "image_id": f"i{i}", "patient_id": i,
                             "dice": dice})
    res = compare_runs(pd.DataFrame(rows), value="dice", n_boot=50).iloc[0]
    assert res["design"] == "paired" and res["df"] == 4 and res["p_holm"] < 1e-6
    assert res["decision"] == "b better" and res["diff"] == pytest.approx(-0.05, abs=0.003)
    a = pd.DataFrame(rows).groupby(["arm", "fold"])["dice"].mean().unstack("arm")
    assert res["pval"] == pytest.approx(sps.ttest_rel(a["a"], a["b"]).pvalue)
    assert np.isfinite(res["mdd"]) and res["mdd"] < 0.05


def test_design_test_matches_scipy_and_run_level_test():
    rng = np.random.default_rng(9)
    a, b = rng.normal(0.8, 0.02, 6), rng.normal(0.78, 0.03, 5)
    welch = design_test(a[None, :], b[None, :])
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert str(welch["design"]) == "welch" and float(welch["p"]) == pytest.approx(ref.pvalue)
    # blocked, with a failed run (NaN) in arm b: the array core and the table API agree
    fa, fb = [0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1]
    r = run_level_test(a, b, folds_a=fa, folds_b=fb)
    grid_a = np.array([a[:3], a[3:]])
    grid_b = np.array([[b[0], b[1], np.nan], [b[2], b[3], b[4]]])
    arr = design_test(grid_a, grid_b)
    assert r["design"] == "blocked" and float(arr["p"]) == pytest.approx(r["p"]) and float(arr["se"]) == pytest.approx(r["se"])


def test_equivalence_calibration_small():
    """TOST on the run-level test at 2 folds x 5 seeds: equal arms are called equivalent in most studies when the
    margin is ~3 SEs; a true difference equal to the margin is called equivalent in <= alpha of studies."""
    rng = np.random.default_rng(4)
    sd, n = 0.005, 2000
    margin = 0.01
    eq = {}
    for diff in (0.0, margin):
        fold = rng.normal(0, 0.01, (n, 2, 1))
        a = 0.9 + fold + rng.normal(0, sd, (n, 2, 5))
        b = 0.9 + diff + fold + rng.normal(0, sd, (n, 2, 5))
        r = design_test(b, a)
        eq[diff] = float(np.mean(tost(r["diff"], r["se"], r["df"], margin) < 0.05))
    assert eq[0.0] >= 0.7 and eq[margin] <= 0.06, eq



def _interaction_study(rng: np.random.Generator, sd_int: float, diff: float = 0.0, n_p: int = 20) -> pd.DataFrame:
    """Two arms, 2 folds x 5 seeds, patients with 1-3 images; arm b gains ``diff`` on average but each patient by
    its own amount (SD ``sd_int``), plus seed, fold and patient x run noise."""
    m = rng.integers(1, 4, n_p)
    pat = np.repeat(np.arange(n_p), m)
    base = 0.8 + rng.normal(0, 0.05, n_p)[pat]
    gain = diff + rng.normal(0, sd_int, n_p)[pat]
    rows = []
    for arm in ("a", "b"):
        for f in range(2):
            fold = rng.normal(0, 0.01)
            for s in range(5):
                v = base + (gain if arm == "b" else 0) + fold + rng.normal(0, 0.005) + rng.normal(0, 0.02, len(pat))
                rows += [{"arm": arm, "fold": f, "seed": s, "class": "lv", "image_id": i, "patient_id": int(p),
                          "dice": float(x)} for i, (p, x) in enumerate(zip(pat, v, strict=True))]
    return pd.DataFrame(rows)


def test_equivalence_counts_the_patients_arm_x_patient_variance():
    """The run-level test holds the test patients fixed; how much arm b gains differs between patients, so the
    difference on 20 patients scatters around the recipes' difference. ``var_patient_diff`` estimates that
    scatter (unbiased, and ~0 without an interaction) and widens the TOST standard error."""
    from robustseg.stats.runlevel import patient_difference_variance

    rng = np.random.default_rng(12)
    for sd_int in (0.0, 0.03):
        est, actual = [], []
        for _ in range(40):
            d = _interaction_study(rng, sd_int).rename(columns={"dice": "_v"})
            est.append(patient_difference_variance(d, "a", "b"))
            img = d[(d["fold"] == 0) & (d["seed"] == 0) & (d["arm"] == "a")]
            actual.append(sd_int**2 * (img.groupby("patient_id").size() ** 2).sum() / len(img) ** 2)
        if sd_int == 0:
            assert np.mean(est) < 2e-6
        else:
            assert np.mean(est) == pytest.approx(np.mean(actual), rel=0.3)
    res = compare_runs(_interaction_study(rng, 0.03, diff=0.004), value="dice", n_boot=1, margin=0.01).iloc[0]
    assert res["var_patient_diff"] > 0
    se = np.sqrt(res["se"] ** 2 + res["var_patient_diff"])
    assert res["p_equivalent"] == pytest.approx(tost(res["diff"], se, res["df"], 0.01))

def test_compare_runs_decision_flags_and_margin():
    rows = []
    for arm in ("a", "b"):
        for f in range(2):
            for s in range(3):
                for i in range(6):
                    collapsed = arm == "b" and f == 1 and s == 2
                    tp = 0 if collapsed else 80 + s + (i % 3)
                    rows.append({"arm": arm, "fold": f, "seed": s, "class": "lv", "image_id": f"i{i}",
                                 "patient_id": i, "tp": tp, "fp": 0 if collapsed else 10, "fn": 100 - tp})
    df = pd.DataFrame(rows)
    flags = pd.DataFrame({"arm": ["a"], "fold": [0], "seed": [9], "flag": ["failed"]})
    res = compare_runs(df, n_boot=20, flags=flags).iloc[0]
    assert "collapsed: b f1 s2" in res["flag"] and "failed: a f0 s9" in res["flag"]
    assert res["decision"] in ("inconclusive", "a better", "b better")
    with pytest.raises(InputError, match="margin"):
        compare_runs(df, n_boot=20, margin=0)


def test_area_icc_left_out_images_where_every_seed_and_reference_are_empty():
    """Predicted-area ICC: images where every seed predicts nothing and the reference is empty agree 0 vs 0
    and inflate the ICC; they are left out and counted."""
    from robustseg.report.aggregate import seed_icc

    rng = np.random.default_rng(6)
    rows = []
    n_img, n_empty = 12, 30
    area = rng.uniform(50, 150, n_img)
    for f in range(2):
        for s in range(3):
            for i in range(n_img + n_empty):
                present = i < n_img
                pred = max(area[i] + rng.normal(0, 40), 1) if present else 0.0
                ref = area[i] if present else 0.0
                rows.append({"arm": "a", "fold": f, "seed": s, "class": "lv", "image_id": f"i{i}",
                             "ref_pixels": ref, "pred_pixels": pred, "dice": 0.8 if present else np.nan,
                             "pixel_mm": 0.2, "pixel_mm_known": True})
    df = pd.DataFrame(rows)
    out = seed_icc(df, small=("lv",))
    area_row = out[out["measure"].str.startswith("predicted area")].iloc[0]
    assert area_row["n_targets"] == n_img and area_row["n_all_empty"] == n_empty
    assert area_row["n_dropped"] >= n_empty
    from robustseg.stats import pooled_seed_icc

    everything = pooled_seed_icc(df.assign(pred_area=df["pred_pixels"]), value="pred_area", by=("arm", "class"))
    assert everything["icc"].iloc[0] > area_row["icc"] + 0.2


def test_retention_never_exceeds_one_when_every_image_got_worse():
    from robustseg.qc.robustness import robustness_summary

    base = {"arm": "a", "class": "csp", "seed": 0, "fold": 0, "hd95_mm": 1.0}
    # without ref_pixels: an image whose reference is empty has Dice 0 clean (false positive), NaN perturbed
    df = pd.DataFrame({**base, "image_id": ["i0", "i1", "i2"] * 2, "perturbation": ["none"] * 3 + ["noise"] * 3,
                       "severity": [0] * 3 + [1] * 3, "dice": [0.8, 0.0, 0.6, 0.7, np.nan, 0.5]})
    r = robustness_summary(df).set_index("perturbation")
    assert r.loc["noise", "retention_mean"] == pytest.approx(1.2 / 1.4)
    # a missing perturbed row: retention on the pairs only, the missing image reported
    df2 = pd.DataFrame({**base, "image_id": ["i0", "i1", "i0"], "perturbation": ["none", "none", "noise"],
                        "severity": [0, 0, 1], "ref_pixels": 10, "dice": [0.95, 0.6, 0.9]})
    r2 = robustness_summary(df2).set_index("perturbation")
    assert r2.loc["noise", "retention_mean"] == pytest.approx(0.9 / 0.95)
    assert r2.loc["noise", "n_missing"] == 1


def test_planning_model_predicts_power_and_width():
    """The planning functions are consistent: MDD has 80 % power, more seeds more power, more patients a
    narrower recipe interval, and the components of a simulated study are in the right range."""
    d = simulate(3, scenario("base"), n_patients=30, n_folds=2, n_seeds=5, arms={"a": 0.0})
    comp = run_components(d, by=("class",)).set_index("class")
    assert (comp["n_runs"] == 10).all() and (comp["var_seed"] > 0).all() and (comp["n_collapsed"] == 0).all()
    c = comp.loc["lv"].to_dict()
    m = design_mdd(c, 2, 5)
    assert simulated_power(c, m, 2, 5) >= 0.8 > simulated_power(c, 0.7 * m, 2, 5)
    assert simulated_power(c, m, 2, 10) > simulated_power(c, m, 2, 5)
    ci = dice_intervals(d, by=("class",)).query("interval == 'recipe' and `class` == 'lv'").iloc[0].to_dict()
    w20, w80 = predict_half_width(ci, 20, 2, 5), predict_half_width(ci, 80, 2, 5)
    assert w80 < w20 and w20 == pytest.approx(predict_half_width(ci, 20, 2, 5))
    need = patients_needed(ci, w80, 2, 5)
    assert need is not None and abs(need - 80) <= 3
    assert ratio_intervals  # the planning model and the report share the interval code


def test_simulator_truth_and_scenarios():
    m = STRUCTURES["csp"]
    assert 0 < truth(m, "global_dice", n=50_000) < 1
    with pytest.raises(InputError, match="unknown name"):
        scenario("nope")
    d = simulate(0, scenario("failed runs"), n_patients=5, n_folds=2, n_seeds=3)
    assert d.groupby("arm")[["fold", "seed"]].apply(lambda g: len(g.drop_duplicates())).tolist() == [5, 5]
