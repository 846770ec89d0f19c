from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from robustseg.data.check import check_data
from robustseg.errors import InputError

IMG = "Trans-thalamic/Trans-thalamic"
MSK = "Trans-thalamic/Trans-thalamic-PASCAL/SegmentationClass"
NAME = "Patient00001_Plane3_1_of_2.png"


def _snapshot(root):
    return sorted((p.relative_to(root).as_posix(), p.stat().st_mtime_ns) for p in root.rglob("*"))


def test_phantom_summary_is_read_only(phantom_dir, phantom_index):
    before = _snapshot(phantom_dir)
    rep = check_data(phantom_dir)
    assert _snapshot(phantom_dir) == before
    assert rep.source == "fetal_head" and rep.warnings == []
    s = dict(zip(rep.summary["metric"], rep.summary["value"], strict=True))
    assert s["images"] == 40 and s["patients"] == phantom_index["patient_id"].nunique()
    assert s["images with CSP"] == phantom_index["has_csp"].sum() and s["pixel size coverage"] == 1.0
    assert rep.classes["pixel_share"].sum() == pytest.approx(1.0)
    assert rep.classes.set_index("class").loc["lv", "images"] == phantom_index["has_lv"].sum()
    assert rep.sizes[["width", "height", "images"]].values.tolist() == [[320, 220, 40]]


def test_missing_pixel_sizes_warn(make_layout1):
    root = make_layout1(csv_text="Label,Pixel in mm\nPatient00001_Plane3_1_of_2.png,0.1\n")
    rep = check_data(root)
    assert len(rep.warnings) == 1 and rep.warnings[0].startswith("2 of 3 images have no pixel size")


def test_truncated_image(make_layout1):
    root = make_layout1()
    p = root / IMG / NAME
    p.write_bytes(p.read_bytes()[:60])
    with pytest.raises(InputError, match=f"{NAME}: unreadable or truncated"):
        check_data(root)


def test_mask_colour_outside_map(make_layout1):
    root = make_layout1(mask_format="rgb", colormap="pascal")
    p = root / MSK / NAME
    rgb = np.asarray(Image.open(p).convert("RGB")).copy()
    rgb[0, :2] = (255, 255, 255)
    Image.fromarray(rgb).save(p)
    with pytest.raises(InputError, match=rf"{NAME}: mask colour \(255, 255, 255\) \(2 pixels\)"):
        check_data(root)


def test_image_without_mask_and_mask_without_image(make_layout1, tmp_path):
    root = make_layout1()
    (root / MSK / NAME).unlink()
    with pytest.raises(InputError, match=r"no mask for 1 image\(s\).*Patient00001_Plane3_1_of_2"):
        check_data(root)
    (root / IMG / NAME).unlink()
    (root / IMG / "Patient00002_Plane3_1_of_1.png").rename(root / IMG / "other.png")
    with pytest.raises(InputError, match="no mask for 1 image"):
        check_data(root)
    (root / IMG / "other.png").unlink()
    with pytest.raises(InputError, match=r"no image for 1 mask\(s\).*Patient00002_Plane3_1_of_1"):
        check_data(root)


def test_size_mismatch(make_layout1):
    root = make_layout1()
    Image.fromarray(np.zeros((5, 5), dtype=np.uint8)).save(root / MSK / NAME)
    with pytest.raises(InputError, match=rf"{NAME}: mask size 5x5 differs from image .* size 16x12"):
        check_data(root)


def test_empty_folder(tmp_path):
    with pytest.raises(InputError, match="no plane folder"):
        check_data(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(InputError, match="images: no images found"):
        check_data(tmp_path)


def test_unparseable_pixel_csv(make_layout1):
    root = make_layout1(csv_text="foo,bar\n1,2\n")
    with pytest.raises(InputError, match=r"Pixel-Size\.csv: pixel-size CSV header"):
        check_data(root)


def test_non_numeric_pixel_size(make_layout1):
    root = make_layout1(csv_text="Label,Pixel in mm\nPatient00001_Plane3_1_of_2.png,abc\n")
    with pytest.raises(InputError, match=r"Pixel-Size\.csv: pixel size 'abc'"):
        check_data(root)


def test_check_data_reports_the_probe_geometry(phantom_dir):
    rep = check_data(phantom_dir)
    assert set(rep.geometry["kind"]) == {"sector"} and len(rep.geometry) == len(rep.index)
    q = rep.geometry_summary.set_index("quantity")
    h = int(rep.index["height"].iloc[0])
    assert abs(q.loc["apex_row", "median"] + 0.12 * h) <= 0.01 * h  # the phantom's apex lies above the image
    assert rep.geometry_warnings == []
