"""The one reader per kind of user input: tables (encodings, separators, decimal commas, Excel rows, ids as
strings), study files (BOM, stdin, folders) with ~ in every path setting, and images (EXIF orientation, frames,
formats, the rule for more than 8 bits)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from corpus.build import exif_jpeg, multipage_tiff
from PIL import Image

from robustseg.config import load_study
from robustseg.data.io import image_size, read_image, read_mask
from robustseg.data.pixels import to_uint8
from robustseg.data.tables import parse_number, read_table, typed_frame
from robustseg.errors import InputError

# --- tables ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding, bom", [("utf-8", b"\xef\xbb\xbf"), ("utf-8", b""), ("utf-16", b""),
                                           ("utf-16-le", b""), ("utf-16-be", b""), ("cp1252", b"")])
@pytest.mark.parametrize("sep", [",", ";", "\t"])
def test_every_encoding_and_separator_reads_the_same(tmp_path: Path, encoding: str, bom: bytes, sep: str) -> None:
    text = sep.join(["Label", "Pixel in mm", "Centre"]) + "\r\n" + sep.join(["007.png", "0,12" if sep != "," else "0.12",
                                                                           "Créteil"]) + "\r\n"
    path = tmp_path / "t.csv"
    path.write_bytes(bom + text.encode(encoding))
    table = read_table(path)
    assert table.header == ("Label", "Pixel in mm", "Centre") and table.sep == sep
    assert table.rows == (("007.png", "0,12" if sep != "," else "0.12", "Créteil"),)


def test_excel_empty_rows_and_columns_are_dropped_and_lines_kept(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"id;value;;\r\n;;;\r\nA;1;;\r\n;;;\r\nB;2,5;;\r\n;;;;\r\n")
    table = read_table(path)
    assert table.header == ("id", "value") and table.rows == (("A", "1"), ("B", "2,5")) and table.lines == (3, 5)
    frame = typed_frame(table)
    assert frame["id"].tolist() == ["A", "B"] and frame["value"].tolist() == [1.0, 2.5]


def test_ids_stay_strings_and_numbers_are_typed(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("image_id,patient_id,weeks,flag,note,kind,empty\n1,007,21,True,x,none,\n2,7,,False,,none,\n")
    frame = typed_frame(read_table(path), id_columns=("image_id", "patient_id"))
    assert frame["kind"].tolist() == ["none", "none"] and frame["empty"].isna().all()  # words stay words
    assert frame["image_id"].tolist() == ["1", "2"] and frame["patient_id"].tolist() == ["007", "7"]
    assert frame["weeks"].iloc[0] == 21.0 and np.isnan(frame["weeks"].iloc[1])
    assert frame["flag"].tolist() == [True, False] and frame["note"].tolist() == ["x", ""]


@pytest.mark.parametrize("text, value", [("0,123", 0.123), ("0.123", 0.123), (" 1.234,5 ", 1234.5),
                                         ("1,234.5", 1234.5), ("1e-3", 0.001), ("NA", float("nan"))])
def test_parse_number(text: str, value: float) -> None:
    got = parse_number(text)
    assert (np.isnan(got) and np.isnan(value)) or got == pytest.approx(value)


@pytest.mark.parametrize("content, needle", [(b"", "is empty"), (b"PK\x03\x04xx", "Excel workbook"),
                                             (b"\xd0\xcf\x11\xe0xx", "Excel 97-2003"),
                                             (b"a,b,a\n1,2,3\n", "two columns named 'a'")])
def test_bad_tables_are_one_line(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(content)
    with pytest.raises(InputError, match=needle):
        read_table(path)
    with pytest.raises(InputError, match="is a folder"):
        read_table(tmp_path)


# --- study files and ~ ------------------------------------------------------------------------------------


def test_tilde_is_expanded_in_every_path_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "s.toml").write_text('name = "t"\n[data]\nsource = "folder"\npath = "~/data"\n'
                                     '[data.external.other]\npath = "~/ext"\n[execution]\nruns_dir = "~/runs"\n'
                                     '[tune]\nstorage = "sqlite:///~/tune.db"\n')
    study = load_study("~/s.toml", overrides=["execution.reports_dir=~/reports"])
    assert study.data.path == str(tmp_path / "data") and study.external[0].path == str(tmp_path / "ext")
    assert study.execution.runs_dir == str(tmp_path / "runs")
    assert study.execution.reports_dir == str(tmp_path / "reports")
    assert study.tune.storage == f"sqlite:///{tmp_path}/tune.db"
    assert load_study(tmp_path / "s.toml", overrides=["data.path=~/x"]).data.path == str(tmp_path / "x")


def test_study_from_stdin_and_folder_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'\xef\xbb\xbfname = "from-pipe"\n')))
    study = load_study("-")
    assert study.name == "from-pipe" and study.path is None
    with pytest.raises(InputError, match="is a folder; expected a study file"):
        load_study(tmp_path)


# --- images ----------------------------------------------------------------------------------------------------


def _pattern(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    img = (x * 3 + y).astype(np.uint8)
    img[: h // 4, : w // 4] = 250  # a bright corner shows the orientation
    return img


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int) -> None:
    shown = _pattern(40, 64)
    path = tmp_path / "a.jpg"
    exif_jpeg(path, np.repeat(shown[..., None], 3, axis=2), orientation)
    got = read_image(path)
    assert got.shape == shown.shape and image_size(path) == shown.shape
    assert np.abs(got.astype(int) - shown).mean() < 3
    assert got[:10, :16].mean() > 200  # the bright corner is where a viewer shows it


def test_mask_size_mismatch_names_the_exif_orientation(tmp_path: Path) -> None:
    from corpus.build import palette_png

    from robustseg.data.index import load_index

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    exif_jpeg(tmp_path / "images" / "a.jpg", np.repeat(_pattern(40, 64)[..., None], 3, axis=2), 6)
    lab = np.zeros((64, 40), np.uint8)  # drawn on the stored pixels, not on the displayed image
    lab[10:20, 10:20] = 1
    palette_png(lab).save(tmp_path / "masks" / "a.png")
    with pytest.raises(InputError, match="EXIF orientation 6"):
        load_index("folder", tmp_path)


def test_multipage_tiff_needs_a_frame(tmp_path: Path) -> None:
    pages = [_pattern(20, 30), 255 - _pattern(20, 30)]
    multipage_tiff(tmp_path / "a.tif", pages)
    with pytest.raises(InputError, match=r"a\.tif: image has 2 frames"):
        read_image(tmp_path / "a.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "a.tif", 2), pages[1])
    with pytest.raises(InputError, match="frame 3 does not exist"):
        read_image(tmp_path / "a.tif", 3)
    multipage_tiff(tmp_path / "m.tif", [np.zeros((20, 30), np.uint8)] * 2)
    with pytest.raises(InputError, match=r"m\.tif: mask has 2 frames"):
        read_mask(tmp_path / "m.tif")


def test_unsupported_formats_are_named(tmp_path: Path) -> None:
    Image.fromarray(_pattern(20, 30)).save(tmp_path / "a.gif")
    with pytest.raises(InputError, match=r"a\.gif: GIF images are not supported"):
        read_image(tmp_path / "a.gif")


def test_more_than_8_bits_rule() -> None:
    twelve = np.array([[0, 2048, 4095]], dtype=np.uint16)
    assert to_uint8(twelve).tolist() == [[0, 128, 255]]
    dark = np.array([[0, 1024]], dtype=np.uint16)  # a dark 12-bit image stays dark (not stretched to 255)
    assert to_uint8(dark).tolist() == [[0, 64]]
    assert to_uint8(np.array([[0, 65535]], dtype=np.uint16)).tolist() == [[0, 255]]
    assert to_uint8(np.array([[0, 200]], dtype=np.uint16)).tolist() == [[0, 200]]


def test_16bit_png_through_the_reader(tmp_path: Path) -> None:
    arr = (np.arange(0, 4096, 16, dtype=np.uint16).reshape(16, 16))
    Image.fromarray(arr).save(tmp_path / "a.png")
    got = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(got, to_uint8(arr))
    assert got.max() == round(4080 / 4095 * 255)
