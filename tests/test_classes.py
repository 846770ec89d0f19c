"""A data set with other classes than the fetal four flows through the whole pipeline.

A tiny nnU-Net v2 raw 2D data set (background, liver, kidney, tumor, vessel; small structures tumor and vessel)
is generated here from synthetic shapes, studied end to end (train, evaluate, report), re-scored with
``robustseg evaluate-folder`` and checked with ``robustseg check-data``: every table, the report and the CLI
output use its class names, and nothing mentions the fetal classes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

NAMES = ["background", "liver", "kidney", "tumor", "vessel"]
SMALL = ["tumor", "vessel"]
FETAL = re.compile(r"\b(csp|lv|brain|parenchyma|ventricle|septum)\b", re.IGNORECASE)
H, W = 40, 56


def _case(rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
    """A grey image and its 5-class label map: a liver ellipse, a kidney disc, a tumor spot in the liver in
    two images of three, a thin vessel in every other image."""
    yy, xx = np.mgrid[:H, :W]
    lab = np.zeros((H, W), dtype=np.uint8)
    cy, cx = 20 + rng.integers(-3, 4), 22 + rng.integers(-3, 4)
    lab[((yy - cy) / 14.0) ** 2 + ((xx - cx) / 18.0) ** 2 <= 1] = 1
    lab[(yy - 20) ** 2 + (xx - 47) ** 2 <= 36] = 2
    if k % 3 != 2:
        ty, tx = cy + rng.integers(-5, 6), cx + rng.integers(-7, 8)
        lab[(yy - ty) ** 2 + (xx - tx) ** 2 <= 9] = 3
    if k % 2 == 0:
        row = int(rng.integers(6, 12))
        lab[row:row + 2, 8:40] = 4
    means = np.array([20, 110, 170, 50, 240], dtype=np.float64)
    img = means[lab] + rng.normal(0, 12, (H, W))
    return np.clip(img, 0, 255).astype(np.uint8), lab


def write_dataset(root: Path, n: int = 24) -> Path:
    """An nnU-Net v2 raw 2D data set of ``n`` cases (two per patient) with meta.csv (0.5 mm pixels)."""
    from PIL import Image

    from robustseg.data.io import write_labels

    rng = np.random.default_rng(7)
    (root / "imagesTr").mkdir(parents=True)
    rows = []
    for k in range(n):
        case = f"Patient{k // 2:04d}_{k % 2}"
        img, lab = _case(rng, k)
        Image.fromarray(img).save(root / "imagesTr" / f"{case}_0000.png")
        write_labels(root / "labelsTr" / f"{case}.png", lab)
        rows.append({"image_id": case, "patient_id": f"P{k // 2}", "pixel_mm": 0.5})
    meta = {"channel_names": {"0": "CT"}, "labels": {c: i for i, c in enumerate(NAMES)}, "numTraining": n,
            "file_ending": ".png", "name": "Liver"}
    (root / "dataset.json").write_text(json.dumps(meta))
    pd.DataFrame(rows).to_csv(root / "meta.csv", index=False)
    return root


@pytest.fixture(scope="module")
def liver(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """``(data set, runs_dir, report)`` of a tiny study: 2 seeds x 1 fold, 1 epoch, 32 px."""
    from robustseg.config import build_study
    from robustseg.pipeline.study import run_study

    tmp = tmp_path_factory.mktemp("classes")
    data = write_dataset(tmp / "Dataset002_Liver")
    study = build_study({
        "name": "liver", "seeds": [0, 1],
        "data": {"source": "nnunet", "path": str(data), "size": 32, "small_structures": SMALL},
        "split": {"test_fraction": 0.3, "k_folds": 2, "folds": [0]},
        "model": {"name": "attention_unet", "base": 4, "depth": 3},
        "train": {"max_epochs": 1, "batch_size": 8, "lr": 3e-3},
        "perturb": {"suite": ["gaussian_noise"], "severities": [3]},
        "execution": {"threads": 1, "bootstrap": 20, "runs_dir": str(tmp / "runs"),
                      "reports_dir": str(tmp / "reports")},
    })
    outcome = run_study(study)
    assert not outcome.failures, outcome.failures
    assert outcome.report is not None
    return data, outcome.runs_dir, outcome.report


def test_tables_use_the_data_sets_classes(liver: tuple[Path, Path, Path]) -> None:
    _, runs_dir, _ = liver
    per_image = pd.read_csv(runs_dir / "tables" / "per_image.csv.gz")
    assert list(pd.unique(per_image["class"])) == NAMES
    features = pd.read_csv(runs_dir / "tables" / "features.csv.gz")
    assert set(features["class"]) == set(NAMES[1:])
    history = pd.read_csv(runs_dir / "tables" / "history.csv.gz")
    assert {f"val_dice_{c}" for c in NAMES} <= set(history.columns)
    run = next(p for p in runs_dir.iterdir() if (p / "complete.json").is_file())
    qc = pd.read_csv(run / "qc.csv.gz")
    assert sorted(pd.unique(qc["class"])) == SMALL  # GT-free QC scores the data set's small structures
    splits = pd.read_csv(next(runs_dir.glob("splits-*.csv")))
    index = pd.read_csv(runs_dir / "index.csv")
    test = index[index["image_id"].isin(splits.loc[splits["fold"] == -1, "image_id"])]
    assert test["has_tumor"].any() and test["has_vessel"].any()  # stratified on the small structures


def test_report_names_only_the_data_sets_classes(liver: tuple[Path, Path, Path]) -> None:
    _, _, report = liver
    text = report.read_text(encoding="utf-8")
    assert "tumor" in text and "vessel" in text and "kidney" in text
    assert not FETAL.search(text), FETAL.search(text)
    for csv in (report.parent / "tables").glob("*.csv"):
        assert not FETAL.search(csv.read_text(encoding="utf-8")), csv.name
    qc = pd.read_csv(report.parent / "tables" / "qc_riskcov.csv")
    assert set(qc["class"]) == {"tumor", "vessel", "tumor+vessel"}
    figures = {p.name for p in (report.parent / "figures").glob("*.png")}
    assert {"spread.png", "qualitative.png", "mismatch.png", "qc_risk_coverage.png"} <= figures
    assert "structures.png" not in figures  # the fetal measurements (CSP area, LV atrial width) do not apply


def test_evaluate_folder_and_check_data_use_the_classes(liver: tuple[Path, Path, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from robustseg.cli.main import main

    data, runs_dir, _ = liver
    run = next(p for p in runs_dir.iterdir() if (p / "complete.json").is_file())
    gt = tmp_path / "gt"
    gt.mkdir()
    for pred in (run / "predictions").glob("*.png"):
        (gt / pred.name).write_bytes((data / "labelsTr" / pred.name).read_bytes())
    out = tmp_path / "eval"
    code = main(["evaluate-folder", str(run / "predictions"), str(gt), "-o", str(out),
                 "--dataset-json", str(data / "dataset.json"), "--small-structures", "tumor,vessel", "--postprocess"])
    assert code == 0
    table = pd.read_csv(out / "per_image.csv")
    assert list(pd.unique(table["class"])) == NAMES
    summary = json.loads((out / "summary.json").read_text())
    assert summary["classes"] == NAMES
    assert {r["class"] for r in summary["postprocessing"]} >= set(SMALL)
    small_iou = [summary["global"][c]["iou"] for c in SMALL]
    assert summary["iou_summary"]["miou_small"] == pytest.approx(np.mean([v for v in small_iou if v is not None]))
    # the same numbers as the run's own native-resolution table
    own = pd.read_csv(run / "per_image.csv.gz")
    own = own[(own["perturbation"] == "none") & ~own["postprocessed"].astype(bool)]
    merged = own.merge(table[~table["postprocessed"]], on=["image_id", "class"], suffixes=("", "_f"))
    assert len(merged) == len(own)
    np.testing.assert_array_equal(merged["tp"], merged["tp_f"])
    np.testing.assert_array_equal(merged["fp"], merged["fp_f"])
    capsys.readouterr()

    assert main(["check-data", str(data), "--small-structures", "tumor,vessel"]) == 0  # nnU-Net layout detected
    printed = capsys.readouterr().out
    assert "images with tumor and vessel" in printed and "kidney" in printed
    assert not FETAL.search(printed), FETAL.search(printed)
    assert main(["check-data", str(data), "--small-structures", "csp"]) == 2
    assert "'csp' is not a foreground class" in capsys.readouterr().err

    # robustseg qc: the ensemble's GT-free scores per small structure of the data set
    images = tmp_path / "unlabelled"
    images.mkdir()
    for p in sorted((data / "imagesTr").glob("*.png"))[:3]:
        (images / p.name).write_bytes(p.read_bytes())
    assert main(["qc", str(runs_dir), str(images), "-o", str(tmp_path / "qc.csv")]) == 0
    qc = pd.read_csv(tmp_path / "qc.csv")
    assert set(qc["structure"]) == {"tumor", "vessel", "tumor+vessel"} and len(qc) == 9


def test_tuning_trains_and_scores_the_data_sets_classes(liver: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """A trial trains a 5-class model and its objectives average the small structures / the other classes."""
    import optuna

    from robustseg.config import build_study
    from robustseg.errors import InputError
    from robustseg.tune import parse_tune, run_tuning

    data, _, _ = liver
    raw = {
        "name": "liver-tune", "seeds": [0],
        "data": {"source": "nnunet", "path": str(data), "size": 32, "small_structures": SMALL},
        "split": {"test_fraction": 0.3, "k_folds": 2},
        "model": {"name": "attention_unet", "base": 4, "depth": 3},
        "train": {"max_epochs": 1, "batch_size": 8},
        "tune": {"mode": "multi", "confirm_top_k": 0},
        "execution": {"threads": 1, "runs_dir": str(tmp_path / "runs"), "reports_dir": str(tmp_path / "reports")},
    }
    study = build_study(raw)
    spec = parse_tune(study)
    assert (spec.classes, spec.parenchyma_classes) == (("tumor", "vessel"), ("liver", "kidney"))
    assert spec.class_names == tuple(NAMES) and spec.small_classes == (3, 4)
    result = run_tuning(study, trials=1, storage=None, timeout=None)
    trial = optuna.load_study(study_name="liver-tune", storage=result.storage).trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE, trial.user_attrs.get("fail_reason")
    with pytest.raises(InputError, match="tune.classes.*'csp' is not a foreground class"):
        parse_tune(build_study({**raw, "tune": {"classes": ["csp"]}}))


def test_external_test_set_must_have_the_same_classes(liver: tuple[Path, Path, Path], make_layout1,
                                                      tmp_path: Path) -> None:
    from robustseg.config import build_study
    from robustseg.errors import InputError
    from robustseg.pipeline.study import prepare

    data, _, _ = liver
    study = build_study({
        "name": "liver-ext", "data": {"source": "nnunet", "path": str(data), "size": 32, "small_structures": SMALL,
                                      "external": {"fetal": {"source": "fetal_head", "path": str(make_layout1())}}},
        "split": {"test_fraction": 0.3, "k_folds": 2},
        "execution": {"runs_dir": str(tmp_path / "runs"), "reports_dir": str(tmp_path / "reports")},
    })
    with pytest.raises(InputError, match="external test set 'fetal' has the classes background, brain, csp, lv"):
        prepare(study)


def test_progress_line_and_colours_follow_the_classes() -> None:
    from robustseg.cli.progress import _small
    from robustseg.labels import display_list
    from robustseg.report.figures import CLASS_COLORS, PALETTE, class_colors

    metrics = {"val_loss": 0.5, "val_dice_background": 0.9, "val_dice_liver": 0.8, "val_dice_tumor": 0.1}
    assert _small(metrics, ("tumor",)) == "val_loss 0.5000 tumor 0.100"
    assert _small(metrics) == "val_loss 0.5000 liver 0.800 tumor 0.100"  # every foreground class when not told
    fetal = {"val_loss": 0.5, "val_dice_background": 0.9, "val_dice_brain": 0.8, "val_dice_csp": 0.3, "val_dice_lv": 0.2}
    assert _small(fetal, ("csp", "lv")) == "val_loss 0.5000 csp 0.300 lv 0.200"
    assert class_colors() == CLASS_COLORS  # the fetal colours are kept
    colors = class_colors(NAMES)
    assert colors == {c: PALETTE[i] for i, c in enumerate(NAMES)} and len(set(colors.values())) == len(NAMES)
    assert display_list(SMALL) == "tumor and vessel" and display_list(["csp", "lv"]) == "CSP and LV"
