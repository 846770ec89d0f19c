"""Findings and Read-with-care: every sentence function on small synthetic report tables (no training).

Each caution is tested both ways: a study that triggers its condition shows the sentence, one that does not
shows nothing. Each finding carries its number, its interval where it has one, and links to its section and
table.
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from robustseg.report import findings as fd
from robustseg.report.markdown import anchor
from robustseg.report.sections import section_titles

ARMS = ("hybrid", "ce")
CLASSES = ("background", "brain", "csp", "lv")
SMALL = ("csp", "lv")


def _summary(sd_seed: float | None = 0.015) -> pd.DataFrame:
    rows = []
    for arm, shift in zip(ARMS, (0.0, -0.2), strict=True):
        for cls, base in (("background", 0.99), ("brain", 0.97), ("csp", 0.84), ("lv", 0.83)):
            v = base + (shift if cls in SMALL else 0.0)
            rows.append({"arm": arm, "class": cls, "global_mean": v, "global_sd_seed": sd_seed, "global_n_runs": 6,
                         "global_estimate": v, "global_ci_low": v - 0.03, "global_ci_high": v + 0.02})
    return pd.DataFrame(rows)


def _runs(collapsed: dict[str, str] | None = None, failed: tuple[str, ...] = ()) -> pd.DataFrame:
    rows = []
    for arm in ARMS:
        for fold in (0, 1):
            for seed in (0, 1, 2):
                rid = f"{arm}-f{fold}-s{seed}"
                rows.append({"run_id": rid, "arm": arm, "fold": fold, "seed": seed,
                             "status": "failed" if rid in failed else "complete", "diverged": False,
                             "collapsed": (collapsed or {}).get(rid, np.nan), "device": "cpu"})
    return pd.DataFrame(rows)


def _environment(devices: dict[str, str] | None = None, nondet: dict[str, str] | None = None) -> pd.DataFrame:
    runs = _runs()
    dev = [(devices or {}).get(r, "cpu") for r in runs["run_id"]]
    kind = ["GPU X (CUDA 12) with EPYC CPU" if d.startswith("cuda") else "AMD EPYC CPU (2 logical cores), no GPU used"
            for d in dev]
    return pd.DataFrame({"run_id": runs["run_id"], "arm": runs["arm"], "device": dev, "machine_kind": kind,
                         "nondeterministic": [(nondet or {}).get(r, "") for r in runs["run_id"]]})


def _tables(**over: pd.DataFrame) -> dict[str, pd.DataFrame]:
    icc = pd.DataFrame([{"measure": "dice (reference present)", "arm": a, "class": c, "icc": icc, "ci_low": lo,
                         "ci_high": hi, "reading": reading}
                        for a in ARMS for c, icc, lo, hi, reading in (("csp", 0.23, -0.01, 0.56, "poor to moderate"),
                                                                       ("lv", 0.59, 0.34, 0.81, "poor to good"))])
    arm_cmp = pd.DataFrame([{"class": c, "arm_a": "hybrid", "arm_b": "ce", "diff": d, "ci_low": d - 0.05,
                             "ci_high": d + 0.05, "verdict": v}
                            for c, d, v in (("brain", 0.001, "no difference"), ("csp", 0.2, "hybrid better"),
                                            ("lv", -0.1, "ce better"))])
    ens = pd.DataFrame([{"kind": "seeds+folds", "arm": "hybrid", "fold": -1, "class": c, "aggregate": "global",
                         "metric": "dice", "n_members": 6, "member_min": 0.80, "member_max": 0.85, "ensemble": e,
                         "rank": 1, "n_ranked": 7} for c, e in (("csp", 0.861), ("lv", 0.852))])
    ref = pd.DataFrame([{"prediction": "ensemble (all runs)", "arm": "hybrid", "class": c, "icc": v, "ci_low": v - 0.05,
                         "ci_high": v + 0.02, "reading": "good to excellent"} for c, v in (("csp", 0.93), ("lv", 0.95))])
    retention = pd.DataFrame([{"arm": "hybrid", "class": c, "perturbation": p, "retention": r, "dice": r * 0.8,
                               "n_severities": 3}
                              for p, rs in (("speckle", (0.45, 0.60)), ("gamma_dark", (0.98, 0.99)),
                                            ("blur", (0.80, 0.85)))
                              for c, r in zip(SMALL, rs, strict=True)])
    robustness = pd.DataFrame([{"arm": "hybrid", "class": c, "perturbation": p, "severity": s, "dice_mean": 0.8}
                               for p in ("none", "speckle", "gamma_dark", "blur") for c in SMALL
                               for s in ((0,) if p == "none" else (1, 3, 5))])
    rc = pd.DataFrame([{"arm": "hybrid", "setting": "all", "class": c, "score": sc, "naurc": n, "naurc_ci_low": n - 0.1,
                        "naurc_ci_high": n + 0.1}
                       for c in ("csp", "lv", "csp+lv") for sc, n in (("pairwise_dice", 0.56), ("composite", 0.53))])
    review = pd.DataFrame([{"arm": "hybrid", "setting": "all", "class": "csp+lv", "score": sc, "review": x,
                            "failure_rate_kept": k, "failure_rate_all": 0.068, "failures_caught": c}
                           for sc, k, c in (("pairwise_dice", 0.028, 0.62), ("oracle", 0.0, 1.0))
                           for x in (0.05, 0.10, 0.20)])
    sets = pd.DataFrame({"testset": ["test"], "n_images": [41], "n_patients": [21]})
    t = {"summary": _summary(), "icc_seed": icc, "arm_comparison": arm_cmp, "ensembles": ens, "icc_reference": ref,
         "retention": retention, "robustness": robustness, "qc_riskcov": rc, "qc_review": review, "runs": _runs(),
         "environment": _environment(), "test_sets": sets}
    t.update(over)
    return t


def _facts(n_patients: int = 40, **over: pd.DataFrame) -> fd.Facts:
    return fd.Facts(tables=_tables(**over), baseline="hybrid", arms=ARMS, class_names=CLASSES, small=SMALL,
                    n_patients=n_patients, n_images=80, sections=section_titles())


def _links_ok(text: str) -> None:
    """A sentence ends with links to an existing section heading and to a saved table."""
    titles = {anchor(t) for t in section_titles().values()}
    anchors = re.findall(r"\]\(#([^)]+)\)", text)
    assert anchors and set(anchors) <= titles, text
    assert re.search(r"\]\(tables/[a-z_+]+\.csv\)", text), text


# --- findings ----------------------------------------------------------------------------------------------------


def test_every_finding_applies_to_a_full_study_with_links() -> None:
    facts = _facts()
    got = fd.sentences(facts, fd.FINDINGS)
    assert got["key"].tolist() == ["headline_dice", "seed_agreement", "run_health", "arm_verdicts", "ensemble_gain",
                                   "area_agreement", "perturbation_ranking", "review_catch", "machine"]
    for text in got["sentence"]:
        _links_ok(text)
    assert 8 <= len(got) <= 12


def test_headline_has_each_structure_with_its_interval() -> None:
    text = fd.headline_dice(_facts())
    assert "CSP 0.840 [0.810, 0.860]; LV 0.830 [0.800, 0.850]; brain 0.970 [0.940, 0.990]" in text
    assert "80 held-out test images from 40 patients" in text and "6 runs" in text
    assert fd.headline_dice(_facts(summary=pd.DataFrame())) is None


def test_seed_agreement_reads_the_icc() -> None:
    text = fd.seed_agreement(_facts())
    assert "0.015 (CSP)" in text and "0.23 [-0.01, 0.56] for CSP (poor to moderate)" in text
    assert "depends on its seed" in text  # a lower CI end below 0.5: single models do not reproduce
    good = _tables()["icc_seed"].assign(icc=0.9, ci_low=0.8, ci_high=0.95, reading="good to excellent")
    assert "one trained model's per-image results reproduce" in fd.seed_agreement(_facts(icc_seed=good))
    assert fd.seed_agreement(_facts(summary=_summary(sd_seed=np.nan))) is None  # one seed: nothing to say


def test_run_health_names_collapses_failures_or_says_none() -> None:
    assert fd.run_health(_facts()).startswith("All 12 planned runs completed; none collapsed")
    text = fd.run_health(_facts(runs=_runs({"ce-f0-s1": "lv", "ce-f1-s2": "csp;lv"}, failed=("hybrid-f1-s0",))))
    assert "2 of 11 completed runs collapsed (CSP: 1 run; LV: 2 runs" in text
    assert "1 of 12 planned runs did not complete" in text and "`hybrid-f1-s0`" in text


def test_arm_verdicts_better_worse_inconclusive() -> None:
    text = fd.arm_verdicts(_facts())
    assert "`hybrid` vs `ce`: CSP better (+0.200 [0.150, 0.250]), LV worse (-0.100 [-0.150, -0.050]), brain " \
           "inconclusive (+0.001 [-0.049, 0.051])" in text
    one_arm = replace(_facts(), arms=("hybrid",))
    assert fd.arm_verdicts(one_arm) is None


def test_ensemble_and_area_agreement() -> None:
    assert "CSP 0.861 against members 0.800-0.850 (rank 1 of 7)" in fd.ensemble_gain(_facts())
    assert "CSP ICC 0.93 [0.88, 0.95] (good to excellent)" in fd.area_agreement(_facts())
    assert fd.ensemble_gain(_facts(ensembles=pd.DataFrame())) is None


def test_perturbation_ranking_most_and_least_damaging() -> None:
    text = fd.perturbation_ranking(_facts())
    assert "`speckle` damages CSP and LV most (Dice retention 0.45 CSP, 0.60 LV" in text
    assert "`gamma_dark` least (0.98 CSP, 0.99 LV)" in text and "severities 1, 3, 5" in text
    assert fd.perturbation_ranking(_facts(retention=pd.DataFrame())) is None


def _matched() -> pd.DataFrame:
    rows = []
    for level in (0.9, 0.8, 0.7):
        for p, base in (("beam_width", 0.4), ("gaussian_noise", 0.9), ("contrast", 0.7), ("speckle_reduction", None)):
            for c, shift in (("csp", 0.0), ("lv", 0.05)):
                r = np.nan if base is None or (p == "contrast" and level == 0.7) else base + shift + (level - 0.8)
                rows.append({"arm": "hybrid", "class": c, "level": level, "perturbation": p, "measure": "fan",
                             "retention_mean": r, "retention_sd": 0.03, "n_runs": 6, "reached": not np.isnan(r)})
    return pd.DataFrame(rows)


def test_perturbation_ranking_at_matched_damage() -> None:
    text = fd.perturbation_ranking(_facts(matched_damage=_matched()))
    assert "At equal image damage (SSIM 0.8" in text
    assert "`beam_width` costs CSP and LV the most (Dice retention 0.40 ± 0.03 CSP, 0.45 ± 0.03 LV" in text
    assert "`gaussian_noise` the least (0.90 ± 0.03 CSP, 0.95 ± 0.03 LV), of 3 perturbations" in text
    assert "`speckle_reduction` never damages images that much" in text
    _links_ok(text)
    # without the matched table: the severity-based ranking, which says that it is not matched
    assert "not matched on image damage" in fd.perturbation_ranking(_facts())


def test_review_catch_uses_the_best_score() -> None:
    text = fd.review_catch(_facts())
    assert "ranked by the pairwise Dice of the seed ensemble" in text and "0.56 [0.46, 0.66]" in text
    assert "catch 62 % of the CSP+LV failures" in text and "from 6.8 % to 2.8 %" in text and "0.0 %" in text
    none_failed = _tables()["qc_review"].assign(failure_rate_all=0.0, failures_caught=np.nan)
    assert "nothing to catch" in fd.review_catch(_facts(qc_review=none_failed))
    assert fd.review_catch(_facts(qc_riskcov=pd.DataFrame())) is None


def test_machine_caveat_one_or_several_kinds() -> None:
    text = fd.machine(_facts())
    assert text.startswith("All 12 runs ran on one machine kind: AMD EPYC") and "0.015 CSP" in text
    mixed = fd.machine(_facts(environment=_environment(devices={"ce-f0-s0": "cuda:0"})))
    assert mixed.startswith("The runs ran on 2 machine kinds") and "(11 runs)" in mixed


def test_external_sets_finding() -> None:
    rob = pd.concat([_tables()["robustness"], pd.DataFrame(
        [{"arm": "hybrid", "class": c, "perturbation": "external: hospital-b", "severity": 0, "dice_mean": 0.61}
         for c in SMALL])], ignore_index=True)
    sets = pd.DataFrame({"testset": ["test", "hospital-b"], "n_images": [41, 55], "n_patients": [21, np.nan]})
    text = fd.external_sets(_facts(robustness=rob, test_sets=sets))
    assert "`hospital-b` (55 images): CSP 0.610 (held-out test 0.800)" in text
    assert fd.external_sets(_facts()) is None


# --- the recipe interval, decisions with MDD and equivalence (columns of the statistics tables) -----------------


def _recipe_summary() -> pd.DataFrame:
    s = _summary()
    return s.drop(columns=["global_ci_low", "global_ci_high"]).assign(
        global_recipe_low=s["global_estimate"] - 0.06, global_recipe_high=s["global_estimate"] + 0.05,
        global_test_low=s["global_ci_low"], global_test_high=s["global_ci_high"])


def _decided(mdd: float = 0.004, margin: float = 0.01) -> pd.DataFrame:
    t = _tables()["arm_comparison"]
    return t.assign(decision=["equivalent within ±0.01", "hybrid better", "inconclusive"], mdd=mdd, margin=margin,
                    flag=["", "", "collapsed: ce f0 s1"])


def test_headline_leads_with_the_recipe_interval() -> None:
    text = fd.headline_dice(_facts(summary=_recipe_summary()))
    assert "CSP 0.840 [0.780, 0.890]" in text and "95 % recipe intervals: new training runs and new patients" in text
    assert "[0.810, 0.860]" not in text  # the test-set interval stays in the summary table


def test_arm_decisions_with_mdd_equivalence_and_flags() -> None:
    text = fd.arm_verdicts(_facts(arm_comparison=_decided()))
    assert "brain equivalent (+0.001 [-0.049, 0.051], MDD 0.004)" in text
    assert "CSP better (+0.200 [0.150, 0.250], MDD 0.004)" in text
    assert "LV inconclusive (-0.100 [-0.150, -0.050], MDD 0.004, next to collapsed: ce f0 s1)" in text
    assert "within ±0.01 Dice by TOST" in text


def test_low_power_both_ways() -> None:
    weak = fd.low_power(_facts(arm_comparison=_decided(mdd=0.035)))
    assert weak.startswith("**Power below 80 %** for differences of ±0.01 Dice")
    assert "`hybrid` vs `ce`, CSP: MDD 0.035" in weak
    _links_ok(weak)
    assert fd.low_power(_facts(arm_comparison=_decided(mdd=0.004))) is None
    assert fd.low_power(_facts()) is None  # a table without MDDs says nothing about power
    plan = pd.DataFrame({"class": ["csp", "lv"], "arm": "hybrid", "mdd": [0.03, 0.008], "margin": 0.01})
    one_arm = replace(_facts(arm_comparison=pd.DataFrame(), plan_claims=plan), arms=("hybrid",))
    pilot = fd.low_power(one_arm)
    assert "a second arm like `hybrid`, CSP: MDD 0.030" in pilot and "LV" not in pilot


def _damage(ssim: float = 0.80, stage: str = "native", perturbation: str = "blur", severity: int = 3,
            region: float = np.nan) -> pd.DataFrame:
    """A damage summary (``tables/damage.csv``) of one perturbation at one severity."""
    return pd.DataFrame({"perturbation": [perturbation], "severity": [severity], "stage": [stage], "n_images": [41],
                         "ssim_fan": [ssim], "psnr_fan": [30.0], "ssim_region": [region],
                         "local": [bool(np.isfinite(region))]})


def test_uncalibrated_severity_names_each_reason() -> None:
    off = fd.uncalibrated_severity(_facts(damage=_damage(ssim=0.62)))
    assert "`blur` 3: SSIM 0.62 (target 0.80)" in off
    _links_ok(off)
    model = fd.uncalibrated_severity(_facts(damage=_damage(stage="model")))
    assert "applied to the network's input" in model
    limited = fd.uncalibrated_severity(_facts(damage=_damage(perturbation="speckle", severity=5, ssim=0.66)))
    assert "`speckle` 5 cannot reach its target by nature" in limited
    # a local artefact is judged inside its region, not over the whole fan
    assert fd.uncalibrated_severity(_facts(damage=_damage(perturbation="acoustic_shadow", ssim=0.97,
                                                          region=0.81))) is None
    many = pd.concat([_damage(ssim=0.5, severity=s, perturbation=p) for p in ("blur", "noise") for s in (2, 3, 4)])
    text = fd.uncalibrated_severity(_facts(damage=many))
    assert text.count("(target") == fd.CALIBRATION_LISTED and "and 2 more" in text


def test_low_power_lists_the_baselines_comparisons_first_and_counts_the_rest() -> None:
    other = _decided(mdd=2.48).assign(arm_a="ce", arm_b="focal")
    many = pd.concat([other, _decided(mdd=0.035), other.assign(arm_b="dice")], ignore_index=True)
    text = fd.low_power(_facts(arm_comparison=many))
    assert text.index("`hybrid` vs `ce`") < text.index("`ce` vs `dice`")
    assert text.count(": MDD") == fd.LOW_POWER_LISTED and f"and {len(many) - fd.LOW_POWER_LISTED} more comparisons" in text
    assert "MDD > 1" in text and "2.480" not in text  # no Dice difference above 1 is possible
    assert "MDD > 1" in fd.arm_verdicts(_facts(arm_comparison=_decided(mdd=1.07)))


# --- read with care: each condition both ways --------------------------------------------------------------------


@pytest.mark.parametrize(("key", "triggered", "quiet"), [
    ("few_patients", {"n_patients": 12}, {"n_patients": 30}),
    ("collapsed_run", {"runs": _runs({"ce-f0-s1": "lv"})}, {}),
    ("failed_run", {"runs": _runs(failed=("ce-f0-s1",))}, {}),
    ("one_seed", {"summary": _summary(sd_seed=np.nan)}, {}),
    ("small_external", {"test_sets": pd.DataFrame({"testset": ["test", "site-b"], "n_images": [41, 12]})},
     {"test_sets": pd.DataFrame({"testset": ["test", "site-b"], "n_images": [41, 20]})}),
    ("nondeterministic", {"environment": _environment(nondet={"ce-f0-s0": "cudnn.benchmark on"})}, {}),
    ("nondeterministic", {"warnings": pd.DataFrame({"context": ["run ce-f0-s0"], "category": ["UserWarning"],
                                                    "message": ["upsample_bilinear2d_backward_out_cuda does not have a "
                                                                "deterministic implementation"]})},
     {"warnings": pd.DataFrame({"context": ["run ce-f0-s0"], "category": ["UserWarning"], "message": ["other"]})}),
    ("low_power", {"arm_comparison": _decided(mdd=0.02)}, {"arm_comparison": _decided(mdd=0.009)}),
    ("uncalibrated_severity", {"damage": _damage(ssim=0.70)}, {"damage": _damage(ssim=0.78)}),
    ("device_mix", {"environment": _environment(devices={"ce-f0-s0": "cuda:0"})},
     {"environment": _environment(devices={r: "cuda:0" for r in _runs()["run_id"]})}),
])
def test_caution_appears_only_when_it_applies(key: str, triggered: dict, quiet: dict) -> None:
    fn = fd.CAUTIONS[key]
    on = _facts(**triggered)
    text = fn(on)
    assert text and text.startswith("**"), key
    _links_ok(text)
    assert fn(_facts(**quiet)) is None, key
    assert key in fd.sentences(on, fd.CAUTIONS)["key"].tolist()


def test_caution_texts_say_the_numbers() -> None:
    assert "**Only 12 test patients** (fewer than 30)" in fd.few_patients(_facts(n_patients=12))
    assert "LV in 1 run" in fd.collapsed_run(_facts(runs=_runs({"ce-f0-s1": "lv"})))
    assert "`site-b` (12 images)" in fd.small_external(
        _facts(test_sets=pd.DataFrame({"testset": ["test", "site-b"], "n_images": [41, 12]})))
    nondet = fd.nondeterministic(_facts(environment=_environment(nondet={"ce-f0-s0": "cudnn.benchmark on"})))
    assert "cudnn.benchmark on in 1 of 12 runs" in nondet
    assert "1 of 12 runs trained on a GPU" in fd.device_mix(_facts(environment=_environment(devices={"ce-f0-s0": "cuda"})))


def test_render_lists_findings_and_cautions() -> None:
    healthy = fd.render(fd.table(_facts()), fd.checked(_facts()))
    assert healthy.startswith("## Findings\n\n- Global Dice")
    assert "## Read with care\n\n- None of the conditions checked applies (fewer than 30 test patients" in healthy
    assert "power below 80 %" not in healthy  # no MDD in the tables: not checked, so not claimed
    assert "power below 80 %" in fd.render(fd.table(_facts(arm_comparison=_decided())), fd.checked(
        _facts(arm_comparison=_decided())))
    weak = fd.render(fd.table(_facts(n_patients=12)))
    assert "## Read with care\n\n- **Only 12 test patients**" in weak and "None of the conditions" not in weak
