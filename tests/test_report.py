"""The study report: built from a tiny real study (2 arms x 2 folds x 2 seeds on the phantom)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustseg.config import build_study
from robustseg.pipeline.study import collect_tables, run_study
from robustseg.report import build_report
from robustseg.report import markdown as md
from robustseg.report.aggregate import order_classes
from robustseg.report.sections import SECTIONS


@pytest.fixture(scope="module")
def study_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    study = build_study({
        "name": "tiny-report", "seeds": [0, 1],
        "data": {"source": "phantom", "phantom_n": 30, "size": 32},
        "split": {"k_folds": 2, "test_fraction": 0.3},
        "model": {"base": 4, "depth": 3},
        "train": {"max_epochs": 1, "batch_size": 8, "lr": 3e-3},
        "perturb": {"suite": ["gaussian_noise", "contrast"], "severities": [1, 3]},
        "eval": {"boundary": True, "empty_policy": "nan"},
        "arms": {"hybrid": {}, "ce": {"loss": {"name": "ce"}}},
        "execution": {"runs_dir": str(tmp / "runs"), "reports_dir": str(tmp / "reports"), "bootstrap": 100,
                      "threads": 1},
    })
    outcome = run_study(study, report=False)
    assert not outcome.failures, outcome.failures
    return outcome.runs_dir


@pytest.fixture(scope="module")
def report(study_runs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_report(study_runs, tmp_path_factory.mktemp("out") / "tiny-report")


def test_report_has_every_section_figure_and_table(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    for i, title in enumerate(SECTIONS):
        assert f"## {i + 1}. {title}" in text
    figures = re.findall(r"!\[[^\]]*\]\((figures/[^)]+)\)", text)
    assert {Path(f).name for f in figures} >= {"spread.png", "robustness.png", "bland_altman.png", "ensembles.png",
                                               "mismatch.png", "gt_free.png", "qualitative.png", "training.png"}
    for rel in figures:
        assert (report.parent / rel).is_file(), rel
    tables = re.findall(r"\((tables/[^)]+\.csv)\)", text)
    assert "tables/summary.csv" in tables and "tables/arm_comparison.csv" in tables
    for rel in tables:
        assert (report.parent / rel).is_file(), rel
    assert "policy `nan`" in text  # the empty-structure policy is stated next to the numbers


def test_rebuild_is_byte_identical(study_runs: Path, report: Path, tmp_path: Path) -> None:
    again = build_report(study_runs, tmp_path / "again")
    assert again.read_bytes() == report.read_bytes()
    assert again.with_name("report.html").read_bytes() == report.with_name("report.html").read_bytes()
    for png in sorted((report.parent / "figures").glob("*.png")):
        assert (again.parent / "figures" / png.name).read_bytes() == png.read_bytes(), png.name
    for csv in sorted((report.parent / "tables").glob("*.csv")):
        assert (again.parent / "tables" / csv.name).read_bytes() == csv.read_bytes(), csv.name


def test_summary_numbers_recompute_from_per_image_table(study_runs: Path, report: Path) -> None:
    per = pd.read_csv(study_runs / "tables" / "per_image.csv.gz")
    clean = per[(per["testset"] == "test") & (per["perturbation"] == "none") & ~per["postprocessed"].astype(bool)]
    summary = pd.read_csv(report.parent / "tables" / "summary.csv")
    text = report.read_text(encoding="utf-8")
    for cls in ("brain", "csp"):
        rows = clean[(clean["arm"] == "hybrid") & (clean["class"] == cls)]
        sums = rows.groupby("run_id")[["tp", "fp", "fn"]].sum()
        den = 2 * sums["tp"] + sums["fp"] + sums["fn"]
        global_mean = float(np.mean(np.where(den > 0, 2 * sums["tp"] / den.where(den > 0), np.nan)))
        pooled_per_image = float(np.nanmean(rows["dice"].to_numpy(dtype=float)))
        row = summary[(summary["arm"] == "hybrid") & (summary["class"] == cls)].iloc[0]
        assert row["global_mean"] == pytest.approx(global_mean, abs=1e-12)
        assert row["per_image_estimate"] == pytest.approx(pooled_per_image, abs=1e-12)
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| hybrid | {cls} |"))
        assert f"{global_mean:.3f} ±" in line


def test_failed_run_is_listed(study_runs: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(study_runs, runs)
    victim = json.loads((runs / "plan.json").read_text())[-1]["run_id"]
    (runs / victim / "complete.json").unlink()
    (runs / victim / "failed.json").write_text(json.dumps({"error": "RuntimeError: loss is NaN"}))
    collect_tables(runs)
    text = build_report(runs, tmp_path / "out").read_text(encoding="utf-8")
    assert "did not complete" in text and victim in text and "loss is NaN" in text


def test_markdown_formatting_and_ordering() -> None:
    assert md.num(float("nan")) == "n/a" and md.num(0.12345) == "0.123" and md.num(float("inf")) == "inf"
    assert md.pm(0.5, float("nan")) == "0.500" and md.pm(0.5, 0.01) == "0.500 ± 0.010"
    assert md.pvalue(0.0001) == "<0.001" and md.interval(0.1, 0.2, 1) == "[0.1, 0.2]"
    df = pd.DataFrame({"arm": ["b", "a", "b", "a"], "class": ["lv", "csp", "background", "lv"], "v": [1, 2, 3, 4]})
    out = order_classes(df, ["b", "a"])
    assert out["v"].tolist() == [3, 1, 2, 4]
    assert md.table(pd.DataFrame({"x": ["a|b"]}), {"x": "X"}).splitlines()[2] == "| a\\|b |"


def test_report_statistics_tables(report: Path) -> None:
    """Issue 12: run-level arm comparison, pooled seed ICC with n / n_dropped, presence kappa, labelled agreement."""
    tables = report.parent / "tables"
    text = report.read_text(encoding="utf-8")
    arm = pd.read_csv(tables / "arm_comparison.csv")
    assert set(arm["class"]) == {"brain", "csp", "lv"} and (arm["measure"] == "dice_all_images").all()
    assert {"diff", "ci_low", "ci_high", "pval", "p_holm", "p_a_better_runs", "p_a_better_boot", "verdict",
            "n_runs_a", "n_folds"} <= set(arm.columns)
    assert (arm["n_runs_a"] == 4).all() and (arm["n_folds"] == 2).all()
    ranking = pd.read_csv(tables / "arm_ranking.csv")
    assert {"kendall_tau_mean", "p_first"} <= set(ranking.columns) and len(ranking) == 6
    seed = pd.read_csv(tables / "icc_seed.csv")
    assert seed["kind"].str.contains("pooled over folds").all()
    assert {"n_targets", "n_dropped", "n_ref_absent", "n_runs", "n_folds"} <= set(seed.columns)
    dice = seed[seed["measure"].str.startswith("dice")]
    assert (dice["n_targets"] + dice["n_dropped"] == 9).all()  # 9 test images
    assert {"kappa", "n_disagree"} <= set(pd.read_csv(tables / "presence_kappa.csv").columns)
    ref = pd.read_csv(tables / "icc_reference.csv")
    assert set(ref["prediction"]) == {"single run", "ensemble (all runs)"} and "n_both_absent" in ref.columns
    ba = pd.read_csv(tables / "bland_altman.csv")
    assert {"loa_low_ci_low", "loa_high_ci_high", "slope", "slope_p"} <= set(ba.columns)
    assert len(pd.read_csv(tables / "icc_reference_runs.csv")) == 16  # 8 runs x CSP, LV
    assert {"degradation_mean", "wm_dice_mean"} <= set(pd.read_csv(tables / "degradation.csv").columns)
    assert "Fleiss' kappa" in text and "Ranking stability" in text and "test patients** (fewer than 30)" in text


def test_report_intervals_decisions_and_what_the_study_can_claim(study_runs: Path, report: Path) -> None:
    """Recipe intervals lead the summary (test-set ones beside them), every comparison row has its design, MDD,
    equivalence decision and flag, and the plan section and `robustseg plan` agree."""
    tables = report.parent / "tables"
    text = report.read_text(encoding="utf-8")
    summary = pd.read_csv(tables / "summary.csv")
    for agg in ("global", "per_image"):
        lo, hi = summary[f"{agg}_recipe_low"], summary[f"{agg}_recipe_high"]
        assert ((lo.isna()) | ((lo >= 0) & (hi <= 1))).all()
        assert (lo.isna() | (lo <= summary[f"{agg}_test_low"] + 1e-12)).all()  # the recipe interval contains it
    assert "Global Dice [recipe 95% CI]" in text and "Test-set 95% CI" in text
    iv = pd.read_csv(tables / "intervals.csv")
    assert set(iv["interval"]) == {"recipe", "test-set"} and set(iv["statistic"]) == {"global_dice", "mean"}
    arm = pd.read_csv(tables / "arm_comparison.csv")
    assert {"design", "mdd", "p_equivalent_holm", "decision", "flag", "margin"} <= set(arm.columns)
    assert (arm["design"] == "blocked").all() and (arm["margin"] == 0.01).all()
    assert "MDD (80% power)" in text and "Decision (margin ±0.01)" in text
    claims = pd.read_csv(tables / "plan_claims.csv")
    assert set(claims["class"]) == {"brain", "csp", "lv"} and (claims["design"] == "2 x 2").all()
    assert "## 7. What this study can claim" in text and "Seeds per fold for 80 % power" in text
    for name in ("plan_runs", "plan_patients", "plan_gap", "plan_components"):
        assert (tables / f"{name}.csv").is_file(), name


def test_cli_plan_prints_the_plan(study_runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from robustseg.cli import main

    assert main(["plan", str(study_runs)]) == 0
    out = capsys.readouterr().out
    assert "Plan from arm 'hybrid': 2 fold(s) x 2 seed(s)" in out and "seeds per fold for 80 % power" in out
    assert main(["plan", str(study_runs), "--margin", "0"]) == 2
    assert "--margin 0.0: expected a number in (0, 0.5]" in capsys.readouterr().err


# --- findings first, report.html, the browser check --------------------------------------------------------------


def test_report_opens_with_generated_findings_and_cautions(report: Path) -> None:
    """The first sections are Findings and Read with care; every sentence is the saved findings table's, links to
    a heading of the report and to a table that exists."""
    from robustseg.report.markdown import anchor

    text = report.read_text(encoding="utf-8")
    heads = re.findall(r"^#+ (.+)$", text, flags=re.M)
    assert heads[:4] == ["robustseg report: tiny-report", "Findings", "Read with care", "About these numbers"]
    saved = pd.read_csv(report.parent / "tables" / "findings.csv")
    block = text.split("## Findings\n\n", 1)[1].split("## About these numbers", 1)[0]
    bullets = [line[2:] for line in block.splitlines() if line.startswith("- ")]
    assert bullets == saved["sentence"].tolist()
    assert 6 <= (saved["kind"] == "finding").sum() <= 12
    ids = {anchor(h) for h in heads}
    for sentence in saved["sentence"]:
        for target in re.findall(r"\]\(#([^)]+)\)", sentence):
            assert target in ids, (target, sentence)
        for table in re.findall(r"\]\((tables/[^)]+)\)", sentence):
            assert (report.parent / table).is_file(), table
    assert "**Only 5 test patients**" in block and "**A collapsed run**" in block  # 1 epoch: every run collapses


def test_every_figure_has_alt_text_saying_what_it_shows(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    alts = re.findall(r"!\[((?:[^\]\\]|\\.)*)\]\(figures/", text)
    assert len(alts) >= 9
    for alt in alts:
        assert len(alt.split()) >= 15, alt  # a description, not a title
        assert re.search(r"axis|panel|grid|rows|column", alt), alt


def test_html_is_one_self_contained_file(report: Path) -> None:
    page = (report.parent / "report.html").read_text(encoding="utf-8")
    md_text = report.read_text(encoding="utf-8")
    n_figures = len(re.findall(r"!\[", md_text))
    assert page.count("<img ") == n_figures == page.count('src="data:image/png;base64,')
    assert 'src="figures/' not in page and "<script" not in page and "http://" not in page
    assert '<nav class="toc"' in page and 'href="#1-summary"' in page and 'id="1-summary"' in page
    assert '<section class="findings"' in page and page.index('id="findings"') < page.index('id="about-these-numbers"')
    assert page.count('<div class="table-wrap">') == page.count("<table>") > 10
    assert "@media print" in page


@pytest.fixture(scope="module")
def chromium() -> str:
    from _browser import find_chromium

    binary = find_chromium()
    if binary is None:
        pytest.skip("Chromium is not installed (scripts/install-test-services.sh installs it: apt-get install chromium)")
    return binary


def test_html_in_headless_chromium(report: Path, chromium: str, tmp_path: Path) -> None:
    """At 1280 px every figure loads and no table is wider than the viewport; printed to PDF (A4), no table is cut:
    every table fits the printed width and every character of the page is in the PDF."""
    import os

    from _browser import PRINT_WIDTH_PX, Browser, broken_images, layout, layout_problems, missing_from_pdf

    page = report.parent / "report.html"
    n_figures = len(re.findall(r"!\[", report.read_text(encoding="utf-8")))
    shots = Path(os.environ.get("ROBUSTSEG_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with Browser(chromium) as b:
        b.viewport(1280, 800)
        b.load(page)
        screen = layout(b)
        shot = b.screenshot(shots / "report-1280x800.png")
        b.viewport(PRINT_WIDTH_PX, 1100, media="print")
        printed = layout(b)
        text = b.evaluate("document.body.innerText")
        pdf = b.pdf(tmp_path / "report.pdf")
    assert screen["vw"] == 1280 and len(screen["images"]) == n_figures
    assert not broken_images(screen)
    assert not layout_problems(screen)
    assert shot.stat().st_size > 10_000
    assert printed["vw"] == PRINT_WIDTH_PX and len(printed["tables"]) == len(screen["tables"])
    assert not layout_problems(printed)
    assert not missing_from_pdf(text, pdf)


def test_browser_checks_catch_a_cut_table_and_a_broken_image(chromium: str, tmp_path: Path) -> None:
    """The checks above can fail: a table that cannot wrap is flagged at 1280 px and in print, and loses text in
    the PDF; a missing image file is flagged."""
    from _browser import PRINT_WIDTH_PX, Browser, broken_images, layout, layout_problems, missing_from_pdf

    cells = "".join(f"<td>{chr(65 + i) * 30}</td>" for i in range(8))
    (tmp_path / "bad.html").write_text(
        "<!DOCTYPE html><html><head><style>@page { size: A4; margin: 12mm } td { white-space: nowrap }</style></head>"
        f"<body><table><thead><tr><th>head</th></tr></thead><tbody><tr>{cells}</tr></tbody></table>"
        '<img alt="a figure" src="missing.png"></body></html>')
    with Browser(chromium) as b:
        b.viewport(1280, 800)
        b.load(tmp_path / "bad.html")
        screen = layout(b)
        b.viewport(PRINT_WIDTH_PX, 1100, media="print")
        printed = layout(b)
        text = b.evaluate("document.body.innerText")
        pdf = b.pdf(tmp_path / "bad.pdf")
    assert layout_problems(screen) and layout_problems(printed)
    assert broken_images(screen)
    assert missing_from_pdf(text, pdf).get("H", 0) == 30  # the last column fell off the page


def test_robustness_reports_image_damage_and_the_matched_ranking(study_runs: Path, report: Path) -> None:
    """The in-fan SSIM / PSNR per perturbation and severity recompute from the runs' damage tables; the ranking at
    matched damage comes from the saved tables (qc.robustness.matched_damage / damage_extremes)."""
    from robustseg.qc.robustness import damage_extremes, matched_damage

    text = report.read_text(encoding="utf-8")
    assert "### Image damage per perturbation and severity" in text and 'perturb.stage = "native"' in text
    assert "### Ranking at matched image damage (SSIM 0.8)" in text
    runs = [p for p in study_runs.iterdir() if (p / "damage.csv.gz").is_file()]
    damage = pd.concat([pd.read_csv(p / "damage.csv.gz") for p in runs])
    assert damage.groupby(["image_id", "perturbation", "severity"])["ssim_fan"].nunique().max() == 1  # same per run
    mean = damage[damage["run_id"] == damage["run_id"].iloc[0]].groupby(["perturbation", "severity"])["ssim_fan"].mean()
    table = pd.read_csv(report.parent / "tables" / "damage.csv").set_index(["perturbation", "severity"])
    assert np.allclose(table["ssim_fan"].sort_index(), mean.sort_index())
    row = f"| contrast | 3 | {mean['contrast', 3]:.3f} |"
    assert row in text
    per_image = pd.read_csv(study_runs / "tables" / "per_image.csv.gz")
    test = per_image[(per_image["testset"] == "test") & ~per_image["postprocessed"].astype(bool)]
    saved = pd.read_csv(report.parent / "tables" / "matched_damage.csv")
    again = matched_damage(test, damage)
    assert np.allclose(saved["retention_mean"].to_numpy(float), again["retention_mean"].to_numpy(float),
                       equal_nan=True)
    ext = damage_extremes(test, damage, level=0.9)
    assert set(ext["most"]) | set(ext["least"]) <= {"gaussian_noise", "contrast"}
