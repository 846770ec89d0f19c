"""Regression tests for the input-side defects of issue 15: every input path rejects what it cannot read
correctly (decompression bombs, LA / CMYK, conflicting pixel-size rows, dotted names, JPEG masks) and
reads what it can (grey-palette masks, opaque LA masks, explicit colour-map tables)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robustseg.cli import main
from robustseg.data.index import load_index, read_pixel_csv
from robustseg.data.io import canonical_colormap, read_image, read_mask, resolve_colormap, write_mask
from robustseg.errors import InputError
from robustseg.labels import PASCAL_COLORMAP


def _labels() -> np.ndarray:
    lab = np.zeros((10, 14), dtype=np.uint8)
    lab[1:9, 1:13] = 1
    lab[3:5, 3:6] = 2
    lab[6:8, 8:11] = 3
    return lab


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width x height`` grey pixels (a decompression bomb, without the RAM)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\0" * (width + 1) * 4)  # a few rows only: decoding would need the rest
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


# --- defect 1: decompression bombs ------------------------------------------------------------------


@pytest.mark.parametrize("side", [30000, 9000])  # above Pillow's own error limit; above ours only
@pytest.mark.parametrize("reader", [read_image, read_mask])
def test_decompression_bomb_is_an_input_error(tmp_path: Path, side: int, reader) -> None:
    path = _png_header_only(tmp_path / "bomb.png", side, side)
    with pytest.raises(InputError) as info:
        reader(path)
    msg = str(info.value)
    assert "bomb.png" in msg and "pixels" in msg and str(side * side) in msg and "\n" not in msg


def test_check_data_and_perturb_reject_a_bomb_with_exit_2(make_layout1, tmp_path: Path, capsys) -> None:
    root = make_layout1()
    img = next((root / "Trans-thalamic" / "Trans-thalamic").glob("*.png"))
    _png_header_only(img, 30000, 30000)
    assert main(["check-data", str(root)]) == 2
    err = capsys.readouterr().err
    assert img.name in err and "900000000" in err
    assert main(["perturb", str(img.parent), str(tmp_path / "out"), "--suite", "gaussian_noise"]) == 2
    assert img.name in capsys.readouterr().err
    # a study indexes headers only: the size check must fire there too
    with pytest.raises(InputError, match="900000000"):
        load_index("fetal_head", root)


# --- defect 2: LA masks; grey-palette masks ---------------------------------------------------------


def test_opaque_la_mask_reads_as_integer_labels(tmp_path: Path) -> None:
    lab = _labels()
    Image.fromarray(np.stack([lab, np.full_like(lab, 255)], axis=-1), mode="LA").save(tmp_path / "la.png")
    assert np.array_equal(read_mask(tmp_path / "la.png"), lab)


def test_transparent_la_mask_is_rejected(tmp_path: Path) -> None:
    lab = _labels()
    alpha = np.full_like(lab, 255)
    alpha[0, :3] = 0
    Image.fromarray(np.stack([lab, alpha], axis=-1), mode="LA").save(tmp_path / "la.png")
    with pytest.raises(InputError, match=r"la\.png: mask has 3 transparent"):
        read_mask(tmp_path / "la.png")


def test_grey_palette_mask_gives_indices_as_labels(tmp_path: Path) -> None:
    lab = _labels()
    img = Image.fromarray(lab, mode="P")
    img.putpalette([v for i in range(256) for v in (i, i, i)])
    img.save(tmp_path / "grey.png")
    assert Image.open(tmp_path / "grey.png").mode == "P"
    assert np.array_equal(read_mask(tmp_path / "grey.png"), lab)


def test_pascal_palette_still_goes_through_the_colour_map(tmp_path: Path) -> None:
    lab = _labels()
    write_mask(tmp_path / "m.png", lab, "pascal")
    assert np.array_equal(read_mask(tmp_path / "m.png", "pascal"), lab)


# --- defect 9: CMYK -----------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["L", "RGB"])
def test_cmyk_tiff_is_not_inverted(tmp_path: Path, via: str) -> None:
    grey = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (6, 1))
    Image.fromarray(grey).convert(via).convert("CMYK").save(tmp_path / "c.tif")
    assert Image.open(tmp_path / "c.tif").mode == "CMYK"
    out = read_image(tmp_path / "c.tif")
    assert np.corrcoef(out.ravel().astype(float), grey.ravel().astype(float))[0, 1] > 0.99
    assert np.abs(out.astype(int) - grey).max() <= 1


def test_cmyk_mask_is_rejected(tmp_path: Path) -> None:
    Image.fromarray(_labels()).convert("CMYK").save(tmp_path / "m.tif")
    with pytest.raises(InputError, match=r"m\.tif: mask mode 'CMYK' cannot hold exact labels"):
        read_mask(tmp_path / "m.tif")


# --- defect 3: explicit colour-map tables ---------------------------------------------------------------


def test_colour_map_table_forms_and_hashable_canonical_form(tmp_path: Path) -> None:
    table = {"128,0,0": 1, "0,128,0": "csp", "#808000": 3}
    assert resolve_colormap(table) == PASCAL_COLORMAP
    canon = canonical_colormap(table)
    hash(canon)
    assert resolve_colormap(canon) == PASCAL_COLORMAP
    assert resolve_colormap([[list(c), k] for c, k in canon]) == PASCAL_COLORMAP  # JSON round trip
    assert canonical_colormap("PASCAL") == "pascal"
    with pytest.raises(InputError, match="given twice"):
        resolve_colormap({"1,2,3": 1, (1, 2, 3): 2})


def test_data_spec_with_a_table_is_cacheable(make_layout1) -> None:
    from robustseg.pipeline.inputs import load_data
    from robustseg.pipeline.plan import DataSpec

    root = make_layout1()
    spec = DataSpec("fetal_head", str(root), "Trans-thalamic", {"128,0,0": 1, "0,128,0": 2, "128,128,0": 3}, 16)
    first = load_data(spec)
    assert load_data(DataSpec("fetal_head", str(root), "Trans-thalamic", dict(PASCAL_COLORMAP), 16)) is first
    assert first.masks.max() == 3


# --- defects 7 and 8: pixel-size CSV ----------------------------------------------------------------------


def test_conflicting_duplicate_rows_name_both_values(tmp_path: Path) -> None:
    p = tmp_path / "px.csv"
    p.write_text("Label,Pixel in mm\na.png,0.2226\nb.png,0.1\na.png,9.99\n")
    with pytest.raises(InputError) as info:
        read_pixel_csv(p)
    msg = str(info.value)
    assert "'a'" in msg and "0.2226" in msg and "9.99" in msg and "line 2" in msg and "line 4" in msg


def test_agreeing_duplicate_rows_are_fine(tmp_path: Path) -> None:
    p = tmp_path / "px.csv"
    p.write_text("Label,Pixel in mm\na.png,0.2\na,0.2\n")
    assert read_pixel_csv(p) == {"a": 0.2}


def test_dotted_names_match_on_the_full_name(make_layout1) -> None:
    names = ("case", "case.01", "Patient00002_Plane3_1_of_1")
    text = "Label,Pixel in mm\ncase.01,0.5\ncase.png,0.25\nPatient00002_Plane3_1_of_1.png,0.125\n"
    root = make_layout1(names=names, csv_text=text)
    index = load_index("fetal_head", root).set_index("image_id")["pixel_mm"].to_dict()
    assert index == {"case": 0.25, "case.01": 0.5, "Patient00002_Plane3_1_of_1": 0.125}


def test_label_without_extension_does_not_match_a_shorter_name(make_layout1) -> None:
    root = make_layout1(names=("case", "other"), csv_text="Label,Pixel in mm\ncase.01,0.5\nother.png,0.1\n")
    px = load_index("fetal_head", root).set_index("image_id")["pixel_mm"]
    assert np.isnan(px["case"]) and px["other"] == 0.1


# --- smaller items: check-data output -----------------------------------------------------------------


def test_check_data_prints_integer_counts_and_a_size_summary(phantom_dir: Path, capsys) -> None:
    assert main(["check-data", str(phantom_dir)]) == 0
    out = capsys.readouterr().out
    assert "40.0000" not in out and " 40 " in out
    assert "image sizes (1 distinct)" in out and "median" in out
    from robustseg.data.check import check_data

    rep = check_data(phantom_dir)
    values = dict(zip(rep.summary["metric"], rep.summary["value"], strict=True))
    assert isinstance(values["images"], int) and isinstance(values["patients"], int)
    assert rep.size_summary.set_index("quantity").loc["width"].tolist() == [320, 320, 320]


# --- defect 4 (evaluate-folder -o) and the smaller evaluate-folder items -------------------------------


@pytest.fixture
def mask_folders(tmp_path: Path) -> tuple[Path, Path]:
    """Three reference / prediction pairs; LV is absent from two images in both (per-image n differs)."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    for k in range(3):
        lab = _labels()
        if k:
            lab[lab == 3] = 1
        write_mask(gt / f"case{k}.png", lab)
        write_mask(pred / f"case{k}.png", np.roll(lab, 1, axis=1))
    return pred, gt


def _no_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    import robustseg.metrics.folder as folder

    def boom(*args, **kw):
        raise AssertionError("the output folder must be checked before the evaluation")

    monkeypatch.setattr(folder, "evaluate_folder", boom)


def test_evaluate_folder_output_that_is_a_file_is_exit_2_up_front(mask_folders, tmp_path: Path, capsys,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pred, gt = mask_folders
    _no_evaluation(monkeypatch)
    (tmp_path / "out").write_text("a file")
    assert main(["evaluate-folder", str(pred), str(gt), "-o", str(tmp_path / "out")]) == 2
    assert "-o/--output" in capsys.readouterr().err
    assert main(["evaluate-folder", str(pred), str(gt), "-o", str(tmp_path / "out" / "sub")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_evaluate_folder_unwritable_output_is_exit_2_up_front(mask_folders, tmp_path: Path, capsys,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    pred, gt = mask_folders
    _no_evaluation(monkeypatch)
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kw):  # noqa: A002 - tempfile's own keyword
        if dir is not None and Path(dir).name == "ro":
            raise OSError(30, "Read-only file system")
        return real(*args, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    (tmp_path / "ro").mkdir()
    assert main(["evaluate-folder", str(pred), str(gt), "-o", str(tmp_path / "ro")]) == 2
    assert "Read-only file system" in capsys.readouterr().err


def test_jpeg_prediction_is_named_not_skipped(mask_folders, capsys) -> None:
    pred, gt = mask_folders
    (pred / "case0.png").unlink()
    Image.fromarray(_labels()).save(pred / "case0.jpg")
    assert main(["evaluate-folder", str(pred), str(gt), "--no-boundary"]) == 2
    assert "case0.jpg: a JPEG prediction mask cannot be scored" in " ".join(capsys.readouterr().err.split())


def test_console_n_images_is_per_class(mask_folders, capsys) -> None:
    pred, gt = mask_folders
    assert main(["evaluate-folder", str(pred), str(gt), "--no-boundary"]) == 0
    out = capsys.readouterr().out
    block = out[out.index("per-image means"):out.index("presence cases")]
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in block.splitlines()
            if line.count("│") > 3 and line.split("│")[1].strip() in ("brain", "csp", "lv")}
    assert rows == {"brain": "3", "csp": "3", "lv": "1"}
