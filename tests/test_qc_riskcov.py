"""Risk-coverage metrics against hand-computed examples (with ties), an independent brute force, and a
simulation with known ranking quality."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from robustseg.errors import InputError
from robustseg.qc import riskcov as rc

# Hand example: confidences with a tie at 0.8, binary risks.
#   kept by threshold:  >=0.9 -> {0}        coverage 1/4, risk 0
#                       >=0.8 -> {0, 1, 0}  coverage 3/4, risk 1/3   (the tied pair enters together)
#                       >=0.1 -> all        coverage 1,   risk 1/2
#   curve (0, 0) (1/4, 0) (3/4, 1/3) (1, 1/2)
#   AURC = 1/4 * 0 + 1/2 * (0 + 1/3) / 2 + 1/4 * (1/3 + 1/2) / 2 = 1/12 + 5/48 = 9/48 = 0.1875
#   oracle (score -risk: the two 0s tied, the two 1s tied): (0,0) (1/2,0) (1,1/2) = 1/2 * (1/2) / 2 = 6/48
#   random = 1/2; e-AURC = 9/48 - 6/48 = 1/16; nAURC = (1/2 - 9/48) / (1/2 - 6/48) = 15/18 = 5/6
CONF = [0.9, 0.8, 0.8, 0.1]
RISK = [0.0, 1.0, 0.0, 1.0]


def test_hand_example_with_ties() -> None:
    assert rc.aurc(CONF, RISK) == pytest.approx(9 / 48)
    assert rc.optimal_aurc(RISK) == pytest.approx(6 / 48)
    assert rc.random_aurc(RISK) == pytest.approx(0.5)
    m = rc.risk_metrics(CONF, RISK, np.asarray(RISK) > 0.5)
    assert m["eaurc"][0] == pytest.approx(1 / 16)
    assert m["naurc"][0] == pytest.approx(5 / 6)
    assert m["failure_auroc"][0] == pytest.approx(0.875)


def test_tie_order_does_not_matter_and_breaking_ties_changes_the_curve() -> None:
    # the tied pair in the other input order gives the same value
    assert rc.aurc([0.9, 0.8, 0.8, 0.1], [0, 0, 1, 1]) == pytest.approx(rc.aurc(CONF, RISK))
    # breaking the tie in favour of the success (0.81) adds the point (1/2, 0): 1/2*0 + 1/4*(1/3)/2 + 1/4*(5/6)/2
    assert rc.aurc([0.9, 0.8, 0.81, 0.1], RISK) == pytest.approx(7 / 48)
    # continuous risk, all tied: a flat curve at the mean risk
    assert rc.aurc([1, 1, 1], [0.2, 0.4, 0.9]) == pytest.approx(0.5)


def test_constant_score_is_random_and_oracle_is_one() -> None:
    rng = np.random.default_rng(0)
    risk = rng.random(50)
    m = rc.risk_metrics(np.zeros(50), risk, risk > 0.5)
    assert m["naurc"][0] == pytest.approx(0.0)
    assert m["failure_auroc"][0] == pytest.approx(0.5)
    m = rc.risk_metrics(-risk, risk, risk > 0.5)
    assert m["naurc"][0] == pytest.approx(1.0)
    assert m["failure_auroc"][0] == pytest.approx(1.0)
    assert np.isnan(rc.risk_metrics([1, 2], [0.3, 0.3], [False, False])["naurc"][0])


def test_against_brute_force_trapezoid_without_ties() -> None:
    rng = np.random.default_rng(1)
    c, r = rng.random(30), rng.random(30)
    order = np.argsort(-c)
    sel = np.cumsum(r[order]) / np.arange(1, 31)
    cov = np.arange(1, 31) / 30
    brute = np.trapezoid(np.r_[sel[0], sel], np.r_[0.0, cov])
    assert rc.aurc(c, r) == pytest.approx(brute)


def test_weights_equal_repeating_rows() -> None:
    c = np.array([0.9, 0.5, 0.5, 0.2, 0.1])
    r = np.array([0.1, 0.7, 0.2, 0.9, 0.4])
    w = np.array([[2.0, 0.0, 1.0, 3.0, 1.0]])
    rep = np.repeat(np.arange(5), w[0].astype(int))
    assert rc.aurc(c, r, w)[0] == pytest.approx(rc.aurc(c[rep], r[rep]))
    assert rc.optimal_aurc(r, w)[0] == pytest.approx(rc.optimal_aurc(r[rep]))
    f = r > 0.5
    assert rc.failure_auroc(c, f, w)[0] == pytest.approx(rc.failure_auroc(c[rep], f[rep]))
    # zero weight on the most confident image: the curve starts at the next one
    w0 = np.array([[0.0, 1, 1, 1, 1]])
    assert rc.aurc(c, r, w0)[0] == pytest.approx(rc.aurc(c[1:], r[1:]))


def test_auroc_matches_mann_whitney() -> None:
    from robustseg.stats import ranks

    rng = np.random.default_rng(2)
    c = np.round(rng.random(40), 1)  # many ties
    f = rng.random(40) < 0.4
    assert rc.failure_auroc(c, f) == pytest.approx(ranks.auroc(-c, f))


def test_selective_risk_at_review_fractions() -> None:
    out = rc.selective_risk_at(CONF, RISK, [0.25, 0.5, 0.75, 1.0])
    assert out.tolist() == pytest.approx([0.0, 0.25, 1 / 3, 0.5])


def test_bad_input() -> None:
    with pytest.raises(InputError, match="equal length"):
        rc.aurc([1, 2], [0.1])
    with pytest.raises(InputError, match="finite"):
        rc.aurc([1, np.nan], [0.1, 0.2])
    with pytest.raises(InputError, match="lacks column"):
        rc.evaluate_scores(pd.DataFrame({"a": [1]}), ["s"], by=("class",))


def _simulated(n_pat: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for run in ("r0", "r1"):
        for p in range(n_pat):
            for k in range(2):
                risk = float(rng.beta(1, 3))
                rows.append({"run_id": run, "patient_id": f"P{p}", "image_id": f"P{p}_{k}", "class": "csp",
                             "risk": risk, "failure": risk > 0.5,
                             "good": -risk + rng.normal(0, 0.05), "noise": rng.random()})
    return pd.DataFrame(rows)


def test_evaluate_ranks_informative_above_noise_with_covering_cis() -> None:
    t = _simulated()
    out = rc.evaluate_scores(t, ["good", "noise"], by=("class",), n_boot=300).set_index("score")
    assert out.loc["good", "naurc"] > 0.7
    assert out.loc["noise", "naurc_ci_low"] < 0 < out.loc["noise", "naurc_ci_high"]
    assert out.loc["good", "naurc_ci_low"] > out.loc["noise", "naurc_ci_high"]
    assert out.loc["good", "n_units"] == 2 and out.loc["good", "n_images"] == 240
    d = rc.paired_difference(t, "good", "noise", by=("class",), n_boot=300)
    assert d["ci_low"].iloc[0] > 0
    rev = rc.review_table(t, ["good", "noise"], by=("class",))
    good = rev[(rev["score"] == "good") & (rev["review"] == 0.2)].iloc[0]
    noise = rev[(rev["score"] == "noise") & (rev["review"] == 0.2)].iloc[0]
    assert good["failure_rate_kept"] < noise["failure_rate_kept"]
    assert good["failures_caught"] > 0.5


def test_random_score_ci_covers_zero_at_nominal_rate() -> None:
    """Coverage check with known truth: a pure-noise score has true nAURC 0; its 90% CI should cover 0 in
    roughly 90% of simulated studies (loose bound: few replicates)."""
    covered = 0
    n_sim = 40
    for s in range(n_sim):
        t = _simulated(n_pat=30, seed=100 + s)
        out = rc.evaluate_scores(t, ["noise"], by=("class",), n_boot=200, alpha=0.1, seed=s)
        covered += bool(out["naurc_ci_low"].iloc[0] <= 0 <= out["naurc_ci_high"].iloc[0])
    assert covered / n_sim >= 0.75
