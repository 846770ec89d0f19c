from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from robustseg.data.index import INDEX_COLUMNS, detect_source, load_index, patient_from_name, read_pixel_csv
from robustseg.data.io import read_mask, write_mask
from robustseg.errors import InputError


def test_phantom_index_schema(phantom_index):
    assert list(phantom_index.columns[: len(INDEX_COLUMNS)]) == INDEX_COLUMNS
    assert {"abnormal", "abnormality"} <= set(phantom_index.columns)
    assert phantom_index["image_id"].is_monotonic_increasing
    assert phantom_index["pixel_mm"].dtype == np.float64
    assert phantom_index["has_csp"].dtype == bool and phantom_index["abnormal"].dtype == bool
    px = phantom_index[["px_background", "px_brain", "px_csp", "px_lv"]].sum(axis=1)
    assert (px == phantom_index["height"] * phantom_index["width"]).all()
    assert (phantom_index["has_lv"] == (phantom_index["px_lv"] > 0)).all()
    # counts agree with an independent read of one mask
    r = phantom_index.iloc[0]
    lab = read_mask(r["mask_path"])
    assert int((lab == 2).sum()) == r["px_csp"] and int((lab == 1).sum()) == r["px_brain"]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("Patient00168_Plane3_1_of_3", "Patient00168"),
        ("patient_42_img", "Patient42"),
        ("scan_007", "scan_007"),
    ],
)
def test_patient_from_name(name, expected):
    assert patient_from_name(name) == expected


def test_fetal_head_layout(make_layout1):
    root = make_layout1()
    idx = load_index("fetal_head", root)
    assert idx["image_id"].tolist() == [
        "Patient00001_Plane3_1_of_2", "Patient00001_Plane3_2_of_2", "Patient00002_Plane3_1_of_1",
    ]  # fmt: skip
    assert idx["patient_id"].tolist() == ["Patient00001", "Patient00001", "Patient00002"]
    assert idx["pixel_mm"].tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert idx["has_csp"].tolist() == [True, False, True] and idx["has_lv"].tolist() == [True, False, False]
    assert (idx["plane"] == "Trans-thalamic").all()
    # the plane folder itself works as the path too
    same = load_index("fetal_head", root / "Trans-thalamic")
    assert same["image_id"].tolist() == idx["image_id"].tolist()


@pytest.mark.parametrize(
    "csv_text",
    [
        "Label,Pixel in mm\nA.png,0.25\nB.png,0.5\n",
        " label , Pixel  in  mm \nA.png,0.25\nB.png,0.5\n",
        "Label;Pixel in mm\nA.png;0,25\nB.png;0,5\n",
        'Label,Pixel in mm\nA.png,"0,25"\nB.png,"0,5"\n',
        "Label,Pixel in mm\nA.png,0,25\nB.png,0,5\n",
        "\ufeffLABEL\tPixel_in_mm\nA\t0.25\nB\t0.5\n",
    ],
)
def test_pixel_csv_variants(tmp_path, csv_text):
    (tmp_path / "p.csv").write_text(csv_text, encoding="utf-8")
    assert read_pixel_csv(tmp_path / "p.csv") == {"A": 0.25, "B": 0.5}


def test_pixel_csv_missing_value_is_nan(tmp_path):
    (tmp_path / "p.csv").write_text("Label,Pixel in mm\nA.png,\nB.png,0.5\n")
    out = read_pixel_csv(tmp_path / "p.csv")
    assert np.isnan(out["A"]) and out["B"] == 0.5


def test_case_variants_and_other_plane(make_layout1):
    root = make_layout1(
        plane="Trans-cerebellum",
        masks_dir="trans-cerebellum-pascal",
        csv_name="TRANS-CEREBELLUM-pixel-size.csv",
    )
    idx = load_index("fetal_head", root, plane="trans-cerebellum")
    assert len(idx) == 3 and idx["pixel_mm"].notna().all()
    with pytest.raises(InputError, match="no plane folder 'Trans-thalamic'.*Trans-cerebellum"):
        load_index("fetal_head", root)


@pytest.mark.parametrize("fmt", ["rgb", "palette", "integer"])
def test_mask_formats_and_rgb_colormap(make_layout1, fmt):
    cmap = "rgb" if fmt != "integer" else "pascal"
    idx = load_index("fetal_head", make_layout1(mask_format=fmt, colormap=cmap), colormap=cmap)
    assert idx["has_csp"].tolist() == [True, False, True]


def test_missing_pixel_csv_gives_nan(make_layout1):
    idx = load_index("fetal_head", make_layout1(csv_text=None))
    assert idx["pixel_mm"].isna().all()


def _folder(tmp_path, meta: str | None):
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    for i, name in enumerate(["case_a", "case_b", "case_c"]):
        Image.fromarray(np.full((8, 10), 40 * i, dtype=np.uint8)).save(tmp_path / "images" / f"{name}.png")
        lab = np.zeros((8, 10), dtype=np.uint8)
        lab[1:7, 1:9] = 1
        lab[2:4, 2:4] = 2 if i != 1 else 1
        write_mask(tmp_path / "masks" / f"{name}.png", lab)
    if meta is not None:
        (tmp_path / "meta.csv").write_text(meta)
    return tmp_path


def test_generic_folder_with_meta(tmp_path):
    root = _folder(
        tmp_path,
        "image_id,patient_id,pixel size (mm),site\ncase_a,P1,0.2,x\ncase_b,P1,,y\ncase_c,P2,0.3,x\n",
    )
    assert detect_source(root) == "folder"
    idx = load_index("folder", root)
    assert idx["patient_id"].tolist() == ["P1", "P1", "P2"]
    assert idx["pixel_mm"].iloc[0] == 0.2 and np.isnan(idx["pixel_mm"].iloc[1])
    assert idx["site"].tolist() == ["x", "y", "x"]
    assert idx["has_csp"].tolist() == [True, False, True]


def test_generic_folder_without_meta(tmp_path):
    idx = load_index("folder", _folder(tmp_path, None))
    assert idx["patient_id"].tolist() == ["case_a", "case_b", "case_c"] and idx["pixel_mm"].isna().all()
    assert isinstance(idx, pd.DataFrame) and list(idx.columns) == INDEX_COLUMNS


def test_meta_with_unknown_image(tmp_path):
    root = _folder(tmp_path, "image_id,site\ncase_z,x\n")
    with pytest.raises(InputError, match=r"meta\.csv.*case_z"):
        load_index("folder", root)


def test_unknown_source(tmp_path):
    with pytest.raises(InputError, match="source 'kaggle'"):
        load_index("kaggle", tmp_path)
