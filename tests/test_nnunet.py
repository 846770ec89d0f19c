"""data.source = "nnunet": an nnU-Net v2 raw 2D data set (written here from the phantom) is indexed and studied
with its own class names and small structures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustseg.data.index import dataset_classes, load_index
from robustseg.data.io import read_labels, read_mask, write_labels, write_mask
from robustseg.data.nnunet import write_nnunet
from robustseg.errors import InputError

NAMES = ["background", "parenchyma", "septum", "ventricle"]


@pytest.fixture(scope="module")
def nnunet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from robustseg.data.phantom import generate_phantom

    tmp = tmp_path_factory.mktemp("nnunet")
    phantom = generate_phantom(tmp / "phantom", n=24, seed=3, size=(160, 110))
    return write_nnunet(load_index("phantom", phantom), tmp / "Dataset001_Phantom", NAMES)


def test_index_reads_classes_patients_and_pixel_sizes(nnunet_dir: Path, tmp_path: Path) -> None:
    idx = load_index("nnunet", nnunet_dir)
    phantom = load_index("phantom", Path(idx["image_path"].iloc[0]).parents[2] / "phantom")
    assert dataset_classes("nnunet", nnunet_dir) == tuple(NAMES)
    assert [c for c in idx.columns if c.startswith(("px_", "has_"))] == [
        "px_background", "px_parenchyma", "px_septum", "px_ventricle", "has_parenchyma", "has_septum", "has_ventricle"]
    merged = idx.merge(phantom, on="image_id", suffixes=("", "_ph"))
    assert len(merged) == 24
    assert (merged["px_septum"] == merged["px_csp"]).all() and (merged["has_ventricle"] == merged["has_lv"]).all()
    assert (merged["patient_id"] == merged["patient_id_ph"]).all()  # from meta.csv
    np.testing.assert_allclose(merged["pixel_mm"], merged["pixel_mm_ph"])
    assert read_mask(idx["mask_path"].iloc[0], "labels").max() <= 3


def test_bad_nnunet_folders_name_the_problem(nnunet_dir: Path, tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(nnunet_dir, bad)
    (bad / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "x": 2}, "file_ending": ".png"}))
    with pytest.raises(InputError, match="expected 0..1"):
        load_index("nnunet", bad)
    (bad / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "x": 1}, "file_ending": ".png"}))
    with pytest.raises(InputError, match="outside 0..1"):  # the phantom's labels go up to 3
        load_index("nnunet", bad)
    (bad / "dataset.json").unlink()
    with pytest.raises(InputError, match="dataset.json"):
        load_index("nnunet", bad)
    shutil.copy(nnunet_dir / "dataset.json", bad / "dataset.json")
    next((bad / "labelsTr").glob("*.png")).unlink()
    with pytest.raises(InputError, match="image or a label but not both"):
        load_index("nnunet", bad)


def test_label_png_round_trip(tmp_path: Path) -> None:
    lab = np.arange(12, dtype=np.uint8).reshape(3, 4) % 5
    write_labels(tmp_path / "a.png", lab)
    assert np.array_equal(read_labels(tmp_path / "a.png", 5), lab)
    write_mask(tmp_path / "b.png", lab % 4, "labels")
    assert np.array_equal(read_mask(tmp_path / "b.png", "labels"), lab % 4)
    with pytest.raises(InputError, match="outside 0..3"):
        read_labels(tmp_path / "a.png", 4)


@pytest.mark.slow
def test_study_on_nnunet_source_uses_its_classes(nnunet_dir: Path, tmp_path: Path) -> None:
    from robustseg.config import build_study
    from robustseg.pipeline.study import run_study

    study = build_study({
        "name": "nn", "seeds": [0],
        "data": {"source": "nnunet", "path": str(nnunet_dir), "size": 32,
                 "small_structures": ["septum", "ventricle"]},
        "split": {"test_fraction": 0.3, "k_folds": 2, "folds": [0]},
        "model": {"name": "attention_unet", "base": 4, "depth": 3},
        "train": {"max_epochs": 1, "batch_size": 8},
        "perturb": {"suite": ["gaussian_noise"], "severities": [3]},
        "execution": {"threads": 1, "bootstrap": 20, "runs_dir": str(tmp_path / "runs"),
                      "reports_dir": str(tmp_path / "reports")},
    })
    outcome = run_study(study, report=False)
    assert not outcome.failures, outcome.failures
    per_image = pd.read_csv(outcome.runs_dir / "tables" / "per_image.csv.gz")
    assert list(pd.unique(per_image["class"])) == NAMES
    history = pd.read_csv(outcome.runs_dir / "tables" / "history.csv.gz")
    assert "val_dice_septum" in history.columns
    run = outcome.runs_dir / outcome.results[0].run_id
    pred = next((run / "predictions").glob("*.png"))
    assert read_labels(pred, 4).shape == (110, 160)  # integer labels at native size, like the data set's
    with pytest.raises(InputError, match="small_structures"):
        run_study(build_study({"data": {"source": "nnunet", "path": str(nnunet_dir), "small_structures": ["csp"]},
                               "execution": {"runs_dir": str(tmp_path / "r2")}}), report=False)
