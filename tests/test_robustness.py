"""Robustness summaries on hand-made per-image tables with hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from robustseg.errors import InputError
from robustseg.qc import robustness as R

# (arm, seed, perturbation, severity) -> per-image Dice of class csp; fold is 0 throughout
DICE = {
    ("A", 0, "none", 0): [0.8, 0.6, np.nan],
    ("A", 0, "speckle", 1): [0.6, 0.6],
    ("A", 0, "speckle", 2): [0.4, 0.4],
    ("A", 0, "jpeg", 1): [0.5, 0.5],
    ("A", 1, "none", 0): [0.9, 0.7],
    ("A", 1, "speckle", 1): [0.7, 0.5],
    ("A", 1, "speckle", 2): [0.4, 0.2],
    ("A", 1, "jpeg", 1): [0.5, 0.5],
    ("B", 0, "none", 0): [0.8, 0.8],
    ("B", 0, "speckle", 1): [0.7, 0.7],
    ("B", 0, "speckle", 2): [0.5, 0.5],
    ("B", 0, "jpeg", 1): [0.75, 0.75],
    ("B", 1, "none", 0): [0.8, 0.8],
    ("B", 1, "speckle", 1): [0.7, 0.7],
    ("B", 1, "speckle", 2): [0.5, 0.5],
    ("B", 1, "jpeg", 1): [0.75, 0.75],
}
HD = {("A", 0, "none", 0): [2.0, math.inf, 9.0], ("A", 1, "none", 0): [4.0, 6.0]}


@pytest.fixture()
def table() -> pd.DataFrame:
    rows = []
    for (arm, seed, pert, sev), dices in DICE.items():
        hds = HD.get((arm, seed, pert, sev), [1.0] * len(dices))
        for i, (d, h) in enumerate(zip(dices, hds, strict=True)):
            for cls, dice in (("csp", d), ("lv", 1.0 if np.isnan(d) else d / 2)):
                rows.append(
                    {"image_id": f"img{i}", "arm": arm, "seed": seed, "fold": 0, "class": cls, "perturbation": pert,
                     "severity": sev, "dice": dice, "hd95_mm": h}
                )
    return pd.DataFrame(rows)


def _row(df: pd.DataFrame, **keys) -> pd.Series:
    sel = np.ones(len(df), bool)
    for k, v in keys.items():
        sel &= (df[k] == v).to_numpy()
    assert sel.sum() == 1, keys
    return df[sel].iloc[0]


def test_run_means_skip_undefined(table):
    runs = R.run_means(table)
    r = _row(runs, arm="A", seed=0, **{"class": "csp"}, perturbation="none")
    assert r["dice"] == pytest.approx(0.7) and r["n_images"] == 2
    assert r["hd95_mm"] == pytest.approx(5.5)  # inf left out, NaN-Dice row's HD95 (9.0) kept


def test_summary_mean_sd_and_retention(table):
    s = R.robustness_summary(table)
    assert list(s.columns) == ["arm", "class", "perturbation", "severity", "n_runs", "dice_mean", "dice_sd",
                               "hd95_mm_mean", "hd95_mm_sd", "retention_mean", "retention_sd", "n_missing",
                               "dice_fixed_mean", "n_fixed"]
    clean = _row(s, arm="A", **{"class": "csp"}, perturbation="none")
    assert clean["dice_mean"] == pytest.approx(0.75)
    assert clean["dice_sd"] == pytest.approx(np.std([0.7, 0.8], ddof=1))
    assert clean["retention_mean"] == pytest.approx(1.0) and clean["retention_sd"] == pytest.approx(0.0)
    assert clean["hd95_mm_mean"] == pytest.approx((5.5 + 5.0) / 2)
    s1 = _row(s, arm="A", **{"class": "csp"}, perturbation="speckle", severity=1)
    assert s1["n_runs"] == 2 and s1["dice_mean"] == pytest.approx(0.6) and s1["dice_sd"] == pytest.approx(0.0)
    ret = [0.6 / 0.7, 0.6 / 0.8]
    assert s1["retention_mean"] == pytest.approx(np.mean(ret))
    assert s1["retention_sd"] == pytest.approx(np.std(ret, ddof=1))
    lv = _row(s, arm="A", **{"class": "lv"}, perturbation="speckle", severity=2)
    assert lv["dice_mean"] == pytest.approx((0.2 + 0.15) / 2)


def test_summary_without_condition_has_no_retention(table):
    s = R.robustness_summary(table, by=("arm", "class"))
    assert len(s) == 4 and s["retention_mean"].isna().all()
    with pytest.raises(InputError, match="seed"):
        R.robustness_summary(table, by=("arm", "seed"))
    with pytest.raises(InputError, match="missing columns"):
        R.robustness_summary(table.drop(columns="fold"))


def test_severity_mean(table):
    m = R.severity_mean(table)
    assert set(m["perturbation"]) == {"speckle", "jpeg"}
    r = _row(m, arm="A", **{"class": "csp"}, perturbation="speckle")
    assert r["n_severities"] == 2 and r["n_runs"] == 2
    assert r["dice_mean"] == pytest.approx(0.475)
    assert r["dice_sd"] == pytest.approx(np.std([0.5, 0.45], ddof=1))
    assert r["retention_mean"] == pytest.approx(np.mean([0.5 / 0.7, (0.75 + 0.375) / 2]))
    with pytest.raises(InputError, match="severity"):
        R.severity_mean(table, by=("arm", "class", "perturbation", "severity"))


def test_corruption_error_by_hand(table):
    ce = R.corruption_error(table, "B")
    a = _row(ce, arm="A", **{"class": "csp"}, perturbation="speckle")
    assert a["error"] == pytest.approx(0.4 + 0.65) and a["baseline_error"] == pytest.approx(0.3 + 0.5)
    assert a["ce"] == pytest.approx(1.05 / 0.8)
    assert a["relative_ce"] == pytest.approx((0.15 + 0.4) / (0.1 + 0.3))
    b = _row(ce, arm="B", **{"class": "csp"}, perturbation="jpeg")
    assert b["ce"] == pytest.approx(1.0) and b["relative_ce"] == pytest.approx(1.0)
    m = R.mean_corruption_error(table, "B")
    am = _row(m, arm="A", **{"class": "csp"})
    assert am["n_perturbations"] == 2
    assert am["mce"] == pytest.approx((1.05 / 0.8 + 0.5 / 0.25) / 2)
    assert am["relative_mce"] == pytest.approx((0.55 / 0.4 + 0.25 / 0.05) / 2)


def test_corruption_error_undefined_and_unknown_baseline(table):
    flat = table.copy()
    flat.loc[flat["arm"] == "B", "dice"] = 1.0  # a perfect baseline has no error: CE undefined
    ce = R.corruption_error(flat, "B")
    assert ce.loc[ce["arm"] == "A", "ce"].isna().all()
    with pytest.raises(InputError, match=r"\['A', 'B'\]"):
        R.corruption_error(table, "C")


def test_retention_on_fixed_image_set_cannot_exceed_one_when_every_image_got_worse():
    # image i0/i1 have CSP; i2/i3 do not. Under the perturbation every CSP image gets worse, and the false
    # positives on i2/i3 (Dice 0 under the nan policy) vanish (NaN): the defined set shrinks to the CSP images.
    rows = []
    clean = {"i0": (100, 0.9), "i1": (100, 0.5), "i2": (0, 0.0), "i3": (0, 0.0)}
    pert = {"i0": 0.85, "i1": 0.45, "i2": np.nan, "i3": np.nan}
    for img, (ref, d) in clean.items():
        rows.append({"image_id": img, "arm": "A", "seed": 0, "fold": 0, "class": "csp", "perturbation": "none",
                     "severity": 0, "ref_pixels": ref, "dice": d, "hd95_mm": 1.0})
        rows.append({"image_id": img, "arm": "A", "seed": 0, "fold": 0, "class": "csp", "perturbation": "blur",
                     "severity": 1, "ref_pixels": ref, "dice": pert[img], "hd95_mm": 1.0})
    s = R.robustness_summary(pd.DataFrame(rows))
    blur = _row(s, perturbation="blur")
    naive = blur["dice_mean"] / _row(s, perturbation="none")["dice_mean"]
    assert naive == pytest.approx(0.65 / 0.35)  # 1.86: what a ratio of means over changing image sets reports
    assert blur["retention_mean"] == pytest.approx(0.65 / 0.7) and blur["retention_mean"] < 1
    assert blur["n_fixed"] == 2 and blur["dice_fixed_mean"] == pytest.approx(0.65)


def test_severity_weighted_rood_by_hand(table):
    out = R.severity_weighted(table)
    r = _row(out, arm="A", **{"class": "csp"}, perturbation="speckle")
    w1, w2 = 2 / 3, 4 / 9
    runs = [(0.7, 0.6, 0.4), (0.8, 0.6, 0.3)]  # clean (fixed set), severity 1, severity 2 per seed
    deg = [(w1 * (c - a) + w2 * (c - b)) / (w1 + w2) for c, a, b in runs]
    wm = [(c + w1 * a + w2 * b) / (1 + w1 + w2) for c, a, b in runs]
    assert r["degradation_mean"] == pytest.approx(np.mean(deg)) and r["wm_dice_mean"] == pytest.approx(np.mean(wm))
    assert r["degradation_sd"] == pytest.approx(np.std(deg, ddof=1)) and r["n_severities"] == 2 and r["n_runs"] == 2
    b = _row(out, arm="B", **{"class": "csp"}, perturbation="jpeg")
    assert b["degradation_mean"] == pytest.approx(0.05) and b["weight_base"] == pytest.approx(2 / 3)
    with pytest.raises(InputError, match="perturbation"):
        R.severity_weighted(table, by=("arm", "class"))
