"""QC end to end on a tiny real study: runs save QC files, the report has the risk-coverage section, and
``robustseg qc`` scores a folder of phantom images without masks (bad input: exit 2, one line)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pytest

from robustseg.cli.main import main
from robustseg.data.phantom import generate_phantom
from robustseg.pipeline.qc_folder import QC_COLUMNS
from robustseg.qc import scores as qs


@pytest.mark.slow
def test_runs_save_qc_files_and_report_has_section(qc_study: Path) -> None:
    run = next(p for p in qc_study.iterdir() if (p / "complete.json").is_file())
    t = pd.read_csv(run / qs.QC_FILE)
    assert set(zip(t["perturbation"], t["severity"], strict=True)) == {("none", 0), ("gaussian_noise", 1),
                                                                        ("gaussian_noise", 3)}
    ids, masks = qs.load_run_masks(run / qs.MASKS_FILE)
    assert len(masks) == 3 and masks[("none", 0)].shape[0] == len(ids)
    report = next((qc_study.parent.parent / "reports").rglob("report.md"))
    text = report.read_text(encoding="utf-8")
    assert "### Quality control without a reference" in text
    assert "figures/qc_risk_coverage.png" in text and (report.parent / "figures" / "qc_risk_coverage.png").is_file()
    rc = pd.read_csv(report.parent / "tables" / "qc_riskcov.csv")
    assert {"clean", "perturbed", "all", "gaussian_noise s3"} <= set(rc["setting"])
    assert {"pairwise_dice", "sdc", "entropy", "range_z", "composite", "mutual_info"} <= set(rc["score"])
    assert rc["naurc_ci_low"].le(rc["naurc_ci_high"]).all()
    assert "Winner" in text


@pytest.mark.slow
def test_qc_verb_on_images_without_masks(qc_study: Path, tmp_path: Path, capsys) -> None:
    data = next((qc_study / "data").iterdir()) / "Trans-thalamic"
    folder = tmp_path / "new"
    folder.mkdir()
    for f in sorted((data / "Trans-thalamic").glob("*.png"))[:5]:
        shutil.copy(f, folder)
    csv = data / "Trans-Thalamic-Pixel-Size.csv"
    assert main(["qc", str(qc_study), str(folder), "--pixel-size-csv", str(csv), "--review", "0.2"]) == 0
    out = pd.read_csv(tmp_path / "qc.csv")
    assert list(out.columns) == list(QC_COLUMNS)
    assert len(out) == 5 * (len(qs.STRUCTURES) + 1) and out["pixel_mm_known"].all()
    assert out["review_score"].eq(qs.DEFAULT_SCORE).all()
    assert (out["review"] == (out["review_confidence"] < out["review_threshold"])).all()


@pytest.mark.slow
@pytest.mark.parametrize("args, needle", [
    (["RUN", "/nonexistent/images"], "image folder not found"),
    (["/nonexistent/run", "IMG"], "run folder not found"),
    (["RUN", "IMG", "--review", "1.5"], "--review"),
    (["RUN", "IMG", "--score", "nope"], "--score"),
    (["IMG", "IMG"], "not a finished study run folder"),
])
def test_qc_verb_bad_input_exits_2(qc_study: Path, tmp_path: Path, capsys, args, needle) -> None:
    img = tmp_path / "img"
    img.mkdir()
    (img / "a.png").write_bytes(b"not a png")
    argv = ["qc", *[str(qc_study) if a == "RUN" else str(img) if a == "IMG" else a for a in args]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_qc_verb_unreadable_image_exits_2(qc_study: Path, tmp_path: Path, capsys) -> None:
    img = tmp_path / "img"
    img.mkdir()
    (img / "a.png").write_bytes(b"not a png")
    assert main(["qc", str(qc_study), str(img)]) == 2
    assert "a.png" in capsys.readouterr().err


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        if f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()


def test_phantom_qc_options(tmp_path: Path) -> None:
    a = generate_phantom(tmp_path / "a", n=30, seed=1, size=(96, 66))
    b = generate_phantom(tmp_path / "b", n=30, seed=1, size=(96, 66), abnormal_fraction=0.10, difficulty=0.0)
    assert _digest(a) == _digest(b)  # explicit defaults = the default phantom, byte for byte
    hard = generate_phantom(tmp_path / "c", n=30, seed=1, size=(96, 66), abnormal_fraction=1.0, difficulty=1.0)
    meta = pd.read_csv(hard / "Trans-thalamic" / "meta.csv")
    assert meta["abnormal"].all()
    assert _digest(hard) != _digest(a)
    with pytest.raises(Exception, match="difficulty"):
        generate_phantom(tmp_path / "d", n=5, difficulty=2.0)
    assert main(["phantom", str(tmp_path / "e"), "--n", "4", "--abnormal-fraction", "-1"]) == 2
