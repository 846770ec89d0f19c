"""evaluate_folder on palette, RGB and integer-label PNGs; missing files; written outputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from robustseg.errors import InputError
from robustseg.labels import PASCAL_COLORMAP
from robustseg.metrics import per_image_table
from robustseg.metrics.folder import evaluate_folder, write_evaluation

CLASSES = ("background", "brain", "csp", "lv")
COLOURS = {v: k for k, v in PASCAL_COLORMAP.items()}


def labels(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lab = np.zeros((24, 30), np.uint8)
    lab[3:21, 4:26] = 1
    r, c = rng.integers(5, 12, 2)
    lab[r : r + 4, c : c + 5] = 2
    if seed % 2:
        lab[14:18, 15:20] = 3
    return lab


def write_palette(path, lab: np.ndarray) -> None:
    img = Image.fromarray(lab, mode="P")
    img.putpalette([x for i in range(4) for x in COLOURS[i]] + [0] * (256 - 4) * 3)
    img.save(path)


def write_rgb(path, lab: np.ndarray) -> None:
    rgb = np.zeros((*lab.shape, 3), np.uint8)
    for k, colour in COLOURS.items():
        rgb[lab == k] = colour
    Image.fromarray(rgb, mode="RGB").save(path)


def write_int(path, lab: np.ndarray) -> None:
    Image.fromarray(lab, mode="L").save(path)


@pytest.fixture()
def folders(tmp_path):
    gt, pr = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir(), pr.mkdir()
    refs, preds = {}, {}
    writers = [write_palette, write_rgb, write_int]
    for k in range(3):
        name = f"Patient{k:05d}_Plane3_1_of_1"
        ref = labels(k)
        pred = np.roll(ref, 1, axis=1)
        refs[name], preds[name] = ref, pred
        writers[k](gt / f"{name}.png", ref)
        writers[(k + 1) % 3](pr / f"{name}.png", pred)
    (tmp_path / "px.csv").write_text("Label,Pixel in mm\nPatient00000_Plane3_1_of_1,0.25\nPatient00001_Plane3_1_of_1,0.5\n")
    return pr, gt, tmp_path / "px.csv", refs, preds


def test_evaluate_folder_matches_in_memory(folders, tmp_path) -> None:
    pr, gt, csv, refs, preds = folders
    table, summary = evaluate_folder(pr, gt, pixel_size_csv=csv)
    names = sorted(refs)
    px = np.array([0.25, 0.5, np.nan])
    expected = per_image_table(
        np.stack([preds[n] for n in names]), np.stack([refs[n] for n in names]),
        image_ids=names, class_names=CLASSES, pixel_mm=px, boundary=True,
    )  # fmt: skip
    pd.testing.assert_frame_equal(table, expected)
    assert table["pixel_mm_known"].tolist() == [True] * 8 + [False] * 4
    assert summary["n_images"] == 3 and summary["images_with_pixel_size"] == 2
    assert summary["presence"]["lv"] == {"both": 1, "ref_only": 0, "pred_only": 0, "neither": 2}
    assert summary["per_image"]["lv"]["dice_n"] == 1
    csv_path, json_path = write_evaluation(tmp_path / "out", table, summary)
    back = pd.read_csv(csv_path)
    for col in ("image", "class", "tp", "fp", "fn", "ref_pixels", "pred_pixels", "dice", "iou", "precision",
                "recall", "f1", "hd95_mm", "nsd"):  # fmt: skip
        assert col in back.columns
    assert np.allclose(back["dice"], table["dice"], equal_nan=True)
    s = json.loads(json_path.read_text())
    assert s["global"]["csp"]["dice"] == pytest.approx(summary["global"]["csp"]["dice"])
    assert s["empty_policy"] == "nan" and "NaN" in s["empty_policy_text"]


def test_missing_files_are_listed(folders) -> None:
    pr, gt, *_ = folders
    (pr / "Patient00001_Plane3_1_of_1.png").unlink()
    write_int(pr / "extra.png", labels(0))
    with pytest.raises(InputError) as err:
        evaluate_folder(pr, gt)
    msg = str(err.value)
    assert "Patient00001_Plane3_1_of_1" in msg and "extra" in msg and "\n" not in msg


def test_bad_inputs(folders, tmp_path) -> None:
    pr, gt, *_ = folders
    with pytest.raises(InputError, match="not found"):
        evaluate_folder(tmp_path / "nope", gt)
    with pytest.raises(InputError, match="only 2 classes"):
        evaluate_folder(pr, gt, classes=("background", "brain"))
    with pytest.raises(InputError, match="empty_policy"):
        evaluate_folder(pr, gt, empty_policy="bogus")
    write_int(pr / "Patient00000_Plane3_1_of_1.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(InputError, match="shape"):
        evaluate_folder(pr, gt)


def test_postprocess_side_by_side(tmp_path):
    """--postprocess scores raw and post-processed predictions; a spurious CSP speck is removed."""
    import numpy as np

    from robustseg.data.io import write_mask
    from robustseg.metrics.folder import evaluate_folder

    ref = np.zeros((32, 32), np.uint8)
    ref[4:28, 4:28] = 1
    ref[10:16, 10:16] = 2
    pred = ref.copy()
    pred[24:26, 24:26] = 2  # a 4-pixel false CSP component, below the 5-pixel minimum
    for folder, labels in (("gt", ref), ("pred", pred)):
        (tmp_path / folder).mkdir()
        write_mask(tmp_path / folder / "a.png", labels, "pascal")
    table, summary = evaluate_folder(tmp_path / "pred", tmp_path / "gt", postprocess=True, boundary=False)
    assert set(table["postprocessed"]) == {False, True}
    csp = table[table["class"] == "csp"].set_index("postprocessed")["dice"]
    assert csp[False] == 2 * 36 / (2 * 36 + 4) and csp[True] == 1.0
    rows = {r["class"]: r for r in summary["postprocessing"]}
    assert rows["csp"]["dice_post"] == 1.0 and rows["csp"]["delta"] > 0
    assert summary["per_image"]["csp"]["dice_mean"] == csp[False]


@pytest.mark.parametrize("postprocess", [False, True])
def test_scoring_in_chunks_equals_scoring_the_whole_folder(tmp_path, monkeypatch, postprocess) -> None:
    """Images of two sizes, interleaved, scored two at a time as they are read: the same table as one batch."""
    import robustseg.metrics.folder as folder

    gt, pr = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir(), pr.mkdir()
    refs, preds = {}, {}
    for k in range(7):
        name = f"Patient{k:05d}_Plane3_1_of_1"
        ref = labels(k) if k % 3 else np.pad(labels(k), ((0, 6), (0, 2)))
        refs[name], preds[name] = ref, np.roll(ref, k % 3 - 1, axis=k % 2)
        write_int(gt / f"{name}.png", ref)
        write_int(pr / f"{name}.png", preds[name])
    monkeypatch.setattr(folder, "CHUNK", 2)
    chunked, summary = evaluate_folder(pr, gt, postprocess=postprocess)
    monkeypatch.setattr(folder, "CHUNK", 1000)
    whole, summary_whole = evaluate_folder(pr, gt, postprocess=postprocess)
    pd.testing.assert_frame_equal(chunked, whole, check_exact=True)
    assert summary == summary_whole and chunked["image_id"].nunique() == 7
