"""data.source = "dicom": DICOM ultrasound files built here with pydicom (real tags, several photometric
interpretations and transfer syntaxes, cine loops, calibrated and uncalibrated regions, broken files) are indexed,
read and checked; masks come as PNG next to the images or as DICOM SEG; a study on them reports pixel sizes from
the calibration, and its predictions round-trip through DICOM SEG pixel for pixel."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pydicom = pytest.importorskip("pydicom")
hd = pytest.importorskip("highdicom")

from _dicom import (  # noqa: E402
    US_MULTIFRAME,
    jpeg_dataset,
    region,
    rgb_to_ybr_full,
    save,
    us_dataset,
)
from _tiny import tiny_study  # noqa: E402

from robustseg.data.check import check_data  # noqa: E402
from robustseg.data.dicom import read_dicom_image, region_calibration  # noqa: E402
from robustseg.data.index import detect_source, load_index  # noqa: E402
from robustseg.data.io import read_image, read_mask, write_mask  # noqa: E402
from robustseg.data.pixels import luma, to_uint8  # noqa: E402
from robustseg.errors import InputError  # noqa: E402
from robustseg.labels import CLASS_NAMES  # noqa: E402

H, W = 24, 32


def _grey(seed: int = 0) -> np.ndarray:
    """A smooth grey image (JPEG keeps it within a few levels) with some texture."""
    y, x = np.mgrid[0:H, 0:W]
    rng = np.random.default_rng(seed)
    return np.clip(60 + 4 * x + 3 * y + rng.integers(0, 8, (H, W)), 0, 255).astype(np.uint8)


def _labels(i: int = 0) -> np.ndarray:
    lab = np.zeros((H, W), np.uint8)
    lab[3:21, 4:28] = 1
    lab[6:10, 8 + i % 3:14] = 2
    if i % 2 == 0:
        lab[13:17, 16:22] = 3
    return lab


def _tissue(dx_cm: float = 0.02, **kw) -> list:
    return [region(0, 0, W - 1, H - 1, dx_cm, reference=(W // 2, 0), **kw)]


def _write(folder: Path, name: str, ds, labels: np.ndarray | None = None) -> Path:
    path = save(ds, folder / f"{name}.dcm")
    if labels is not None:
        write_mask(folder / f"{name}.png", labels)
    return path


def _seg_of(source, labels: np.ndarray, names=("brain", "CSP", "lv"), frame: int | None = None):
    """A DICOM SEG built with highdicom directly (not robustseg's writer) over ``source`` (a pydicom data set)."""
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    descs = [hd.seg.SegmentDescription(
        segment_number=k, segment_label=n, segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=codes.SCT.AnatomicalStructure,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL) for k, n in enumerate(names, start=1)]
    view = pydicom.Dataset()  # the source's elements in a new mapping: replace them, never assign their values
    for element in source:
        view.add(element)
    if frame is not None:  # highdicom segments one frame of a cine only through a single-frame view
        del view.NumberOfFrames
        view[0x00080016] = pydicom.DataElement(0x00080016, "UI", "1.2.840.10008.5.1.4.1.1.6.1")
    for key in ("AccessionNumber", "ReferringPhysicianName", "StudyID", "PatientBirthDate", "PatientSex"):
        setattr(view, key, "")
    seg = hd.seg.Segmentation(
        source_images=[view], pixel_array=labels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descs, series_instance_uid=generate_uid(), series_number=5,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="test", manufacturer_model_name="test",
        software_versions="1", device_serial_number="1", omit_empty_frames=False)
    if frame is not None:
        for group in seg.PerFrameFunctionalGroupsSequence:
            src = group.DerivationImageSequence[0].SourceImageSequence[0]
            src.ReferencedFrameNumber, src.ReferencedSOPClassUID = frame, US_MULTIFRAME
    return seg


# --- pixels --------------------------------------------------------------------------------------------


def test_photometric_interpretations_and_syntaxes_read_as_the_same_grey(tmp_path: Path) -> None:
    from PIL import Image
    from pydicom.uid import RLELossless

    g = _grey()
    rgb = np.stack([g, np.clip(g.astype(int) + 20, 0, 255), np.clip(g.astype(int) - 20, 0, 255)], -1).astype(np.uint8)
    exact = {
        "mono2": (us_dataset(g), g),
        "mono1": (us_dataset(255 - g, photometric="MONOCHROME1"), g),  # inverted: dark stays dark
        "rgb": (us_dataset(rgb, photometric="RGB"), luma(rgb)),
    }
    rle = us_dataset(rgb, photometric="RGB")
    rle.compress(RLELossless)
    exact["rle_rgb"] = (rle, luma(rgb))
    rle_grey = us_dataset(g)
    rle_grey.compress(RLELossless)
    exact["rle_grey"] = (rle_grey, g)
    for name, (ds, expected) in exact.items():
        got = read_image(_write(tmp_path, name, ds))
        assert got.dtype == np.uint8 and got.shape == (H, W)
        np.testing.assert_array_equal(got, expected, err_msg=name)
    # YBR_FULL: stored in YCbCr by pydicom's own conversion; back to RGB is exact within rounding
    got = read_image(_write(tmp_path, "ybr", us_dataset(rgb_to_ybr_full(rgb), photometric="YBR_FULL")))
    assert np.abs(got.astype(int) - luma(rgb)).max() <= 1
    # JPEG Baseline, YBR_FULL_422 (colour, 4:2:2) and MONOCHROME2: what Pillow decodes from the same bytes
    for name, arr in (("jpeg_ybr422", rgb), ("jpeg_grey", g)):
        ds = jpeg_dataset(arr)
        path = _write(tmp_path, name, ds)
        frame = pydicom.encaps.generate_fragmented_frames(ds.PixelData, number_of_frames=1)
        decoded = np.asarray(Image.open(io.BytesIO(b"".join(next(frame)))))
        expected = luma(decoded) if decoded.ndim == 3 else decoded
        np.testing.assert_array_equal(read_image(path), expected, err_msg=name)
        assert np.abs(read_image(path).astype(int) - (luma(arr) if arr.ndim == 3 else arr)).mean() < 2.0


def test_sixteen_bit_pixels_use_the_voi_window_else_the_reader_rule(tmp_path: Path) -> None:
    from pydicom.pixels import apply_voi_lut

    raw = (np.arange(H * W, dtype=np.uint16).reshape(H, W) * 5)  # 0 .. 3835 of 12 bits
    plain = us_dataset(raw, bits=12)
    np.testing.assert_array_equal(read_image(_write(tmp_path, "plain", plain)), to_uint8(raw))
    windowed = us_dataset(raw, bits=12, WindowCenter=1500, WindowWidth=1000)
    got = read_image(_write(tmp_path, "windowed", windowed))
    oracle = apply_voi_lut(raw, windowed)  # pydicom's windowing maps to 0 .. 2**12 - 1
    np.testing.assert_allclose(got, np.rint(oracle / (2**12 - 1) * 255), atol=1)
    assert got[raw <= 1000].max() == 0 and got[raw >= 2000].min() == 255


def test_cine_loop_needs_a_frame_and_reads_the_chosen_one(tmp_path: Path) -> None:
    frames = np.stack([_grey(s) for s in range(3)])
    path = _write(tmp_path, "cine", us_dataset(frames, regions=_tissue()), _labels())
    with pytest.raises(InputError, match=r"cine\.dcm: multi-frame image with 3 frames; expected data\.frame"):
        read_image(path)
    with pytest.raises(InputError, match=r"cine\.dcm.*has 3 frames"):
        read_dicom_image(path, 4)
    np.testing.assert_array_equal(read_image(path, 2), frames[1])
    with pytest.raises(InputError, match="cine.dcm: multi-frame image with 3 frames"):
        load_index("dicom", tmp_path)
    index = load_index("dicom", tmp_path, frame=3)
    assert index.loc[0, "frame"] == 3 and index.loc[0, "n_frames"] == 3
    with pytest.raises(InputError, match="the phantom's images have one frame"):
        load_index("phantom", tmp_path, frame=2)


# --- calibration ---------------------------------------------------------------------------------------


def test_pixel_size_and_probe_come_from_the_2d_tissue_region(tmp_path: Path) -> None:
    doppler = region(0, H // 2, W - 1, H - 1, 0.5, units=(4, 7), spatial=3, data_type=3)  # seconds x cm/s
    colour = region(2, 2, 12, 12, 0.03, data_type=2)
    tissue = region(1, 0, W - 2, H - 3, 0.015, reference=(14, -2))
    info = region_calibration(us_dataset(_grey(), regions=[doppler, colour, tissue]), "x.dcm")
    assert info["calibration"] == "us_region"
    assert info["pixel_mm"] == pytest.approx(0.15)  # cm -> mm
    assert (info["region_x0"], info["region_y0"], info["region_x1"], info["region_y1"]) == (1, 0, W - 2, H - 3)
    assert (info["probe_x"], info["probe_y"]) == (15, -2)  # the reference pixel is relative to the region corner
    only_colour = region_calibration(us_dataset(_grey(), regions=[doppler, colour]), "x.dcm")
    assert only_colour["pixel_mm"] == pytest.approx(0.3)  # no tissue region: the 2D colour-flow one
    assert np.isnan(only_colour["probe_x"])  # no reference pixel given
    none = region_calibration(us_dataset(_grey(), regions=[doppler]), "x.dcm")
    assert np.isnan(none["pixel_mm"]) and "no 2D region (regions: spectral)" in none["calibration"]
    unitless = region_calibration(us_dataset(_grey(), regions=[region(0, 0, 5, 5, 1.0, units=(0, 0))]), "x.dcm")
    assert np.isnan(unitless["pixel_mm"]) and "physical units 'none'" in unitless["calibration"]


def test_regions_that_cannot_give_millimetres_are_refused(tmp_path: Path) -> None:
    seconds = us_dataset(_grey(), regions=[region(0, 0, W - 1, H - 1, 0.02, units=(4, 3))])
    with pytest.raises(InputError, match=r"s\.dcm: ultrasound region 1 \(2D tissue\) has PhysicalUnitsXDirection 4 "
                                         r"\(seconds\).*expected 3 \(cm\)"):
        region_calibration(seconds, "s.dcm")
    aniso = us_dataset(_grey(), regions=[region(0, 0, W - 1, H - 1, 0.02, 0.025)])
    with pytest.raises(InputError, match=r"a\.dcm: .*anisotropic pixels, 0\.2 mm x 0\.25 mm.*square pixels"):
        region_calibration(aniso, "a.dcm")
    nearly = region_calibration(us_dataset(_grey(), regions=[region(0, 0, 5, 5, 0.02, 0.02006)]), "n.dcm")
    assert nearly["pixel_mm"] == pytest.approx(0.2003)  # within 1 %: the mean
    _write(tmp_path, "seconds", seconds, _labels())
    with pytest.raises(InputError, match="seconds.dcm: ultrasound region 1"):
        load_index("dicom", tmp_path)


# --- index, masks, check-data ------------------------------------------------------------------------


def _small_set(root: Path) -> Path:
    """Five images of three patients: calibrated, uncalibrated, a cine, an extensionless file, a SEG mask."""
    root.mkdir(parents=True, exist_ok=True)
    _write(root / "P1", "a", us_dataset(_grey(0), patient="P1", regions=_tissue(0.02)), _labels(0))
    _write(root / "P1", "b", us_dataset(_grey(1), patient="P1"), _labels(1))  # no calibration
    cine = us_dataset(np.stack([_grey(s) for s in range(4)]), patient="P2", regions=_tissue(0.025))
    _write(root / "P2", "cine", cine, _labels(2))
    src = us_dataset(_grey(3), patient="P3", regions=_tissue(0.03), frame_of_reference=True)
    save(src, root / "P3" / "1.2.840.99.7")  # a UID-named file without extension, masked by a SEG
    _seg_of(src, _labels(3)).save_as(root / "P3" / "mask-of-uid.dcm")
    anon = us_dataset(_grey(4), patient=None, regions=_tissue(0.02))
    _write(root, "Patient00042_x", anon, _labels(4))
    return root


def test_index_of_a_dicom_tree(tmp_path: Path) -> None:
    root = _small_set(tmp_path / "set")
    assert detect_source(root) == "dicom"
    index = load_index("dicom", root, frame=2, verify_images=True)
    assert list(index["image_id"]) == ["P1__a", "P1__b", "P2__cine", "P3__1.2.840.99.7", "Patient00042_x"]
    assert list(index["patient_id"]) == ["P1", "P1", "P2", "P3", "Patient00042"]  # PatientID, else the name
    assert list(index["patient_from"]) == ["PatientID"] * 4 + ["file name"]
    np.testing.assert_allclose(index["pixel_mm"], [0.2, np.nan, 0.25, 0.3, 0.2])
    assert index.loc[1, "calibration"] == "none: no SequenceOfUltrasoundRegions"
    assert list(index["frame"]) == [1, 1, 2, 1, 1] and list(index["n_frames"]) == [1, 1, 4, 1, 1]
    assert index.loc[3, "mask_path"].endswith("mask-of-uid.dcm") and index.loc[3, "frame_of_reference_uid"]
    for i in range(5):  # PNG or SEG, the class counts are those of the labels written
        counts = np.bincount(_labels(i).ravel(), minlength=4)
        assert [index.loc[i, f"px_{c}"] for c in CLASS_NAMES] == counts.tolist()
    np.testing.assert_array_equal(read_mask(index.loc[3, "mask_path"]), _labels(3))
    (root / "meta.csv").write_text("image_id,patient_id,pixel_mm,probe_geometry\n"
                                   "P1__b,P9,0.11,linear col_left=2 col_right=30 row_top=0 row_bottom=23\n")
    with_meta = load_index("dicom", root, frame=2).set_index("image_id")  # meta.csv wins where it says something
    assert with_meta.loc["P1__b", "patient_id"] == "P9" and with_meta.loc["P1__b", "pixel_mm"] == 0.11
    assert with_meta.loc["P1__b", "probe_geometry"].startswith("linear col_left=2")
    assert with_meta.loc["P1__a", "pixel_mm"] == 0.2 and with_meta.loc["P1__a", "probe_geometry"] == ""


def test_check_data_reports_a_dicom_set(tmp_path: Path) -> None:
    from robustseg.cli import main

    root = _small_set(tmp_path / "set")
    report = check_data(root, frame=2)
    assert report.source == "dicom"
    summary = dict(zip(report.summary["metric"], report.summary["value"], strict=True))
    assert summary["images"] == 5 and summary["patients"] == 4
    assert summary["images with pixel size"] == 4 and summary["images with US region calibration"] == 4
    assert summary["multi-frame images (frame 2 read)"] == 1 and summary["masks"] == "PNG: 4, DICOM SEG: 1"
    assert any("1 DICOM image(s) without ultrasound region calibration (no SequenceOfUltrasoundRegions)" in w
               and "P1__b" in w for w in report.warnings)
    assert any("without PatientID" in w and "Patient00042_x" in w for w in report.warnings)
    assert main(["check-data", str(root), "--frame", "2"]) == 0
    assert main(["check-data", str(root)]) == 2  # the cine needs a frame


@pytest.mark.parametrize("case", ["not_dicom", "truncated", "no_pixels", "syntax", "photometric", "seg_label",
                                  "no_mask", "seg_orphan"])
def test_bad_files_get_one_line_and_exit_2(tmp_path: Path, case: str, capsys: pytest.CaptureFixture) -> None:
    from pydicom.uid import UID

    from robustseg.cli import main

    root = tmp_path / "set"
    _write(root, "good", us_dataset(_grey(), regions=_tissue()), _labels())
    ds = us_dataset(_grey(1), regions=_tissue())
    bad = root / "bad.dcm"
    if case == "not_dicom":
        _write(root, "bad", ds, _labels())
        bad.write_bytes(b"this is a text file, not an image\n" * 10)
        expected = "bad.dcm: not a DICOM file"
    elif case == "truncated":
        _write(root, "bad", ds, _labels())
        bad.write_bytes(bad.read_bytes()[:-300])
        expected = r"bad.dcm: pixel data is truncated \(468 of 768 bytes\)"
    elif case == "no_pixels":
        del ds.PixelData
        _write(root, "bad", ds, _labels())
        expected = "bad.dcm: no pixel data"
    elif case == "syntax":  # MPEG-2 video: pydicom has no decoder for it
        ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.100")
        ds.PixelData = pydicom.encaps.encapsulate([b"\x00\x01" * 64])
        _write(root, "bad", ds, _labels())
        expected = r"bad.dcm: pixel data in transfer syntax MPEG2 .* cannot be decoded here; decodable: .*RLE Lossless"
    elif case == "photometric":
        ds.PhotometricInterpretation = "HSV"
        _write(root, "bad", ds, _labels())
        expected = "bad.dcm: photometric interpretation 'HSV' is not supported"
    elif case == "seg_label":
        _write(root, "bad", ds)
        _seg_of(ds, _labels(), names=("brain", "tumour", "lv")).save_as(root / "bad-seg.dcm")
        expected = r"bad-seg.dcm: segment 2 is labelled 'tumour'; expected a class name"
    elif case == "no_mask":
        _write(root, "bad", ds)
        expected = r"no mask for 1 DICOM image\(s\): .*bad.dcm"
    else:
        _seg_of(ds, _labels()).save_as(root / "orphan-seg.dcm")
        expected = "orphan-seg.dcm: DICOM SEG references SOPInstanceUID .* which is not an image"
    with pytest.raises(InputError, match=expected):
        check_data(root, source="dicom")
    capsys.readouterr()
    assert main(["check-data", str(root), "--source", "dicom"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("bad" in err or "orphan" in err), err


def test_a_seg_of_one_cine_frame_is_matched_to_that_frame(tmp_path: Path) -> None:
    cine = us_dataset(np.stack([_grey(s) for s in range(3)]), regions=_tissue())
    save(cine, tmp_path / "cine.dcm")
    _seg_of(cine, _labels(1), frame=2).save_as(tmp_path / "cine-seg.dcm")
    index = load_index("dicom", tmp_path, frame=2)
    np.testing.assert_array_equal(read_mask(index.loc[0, "mask_path"]), _labels(1))
    with pytest.raises(InputError, match=r"cine-seg.dcm: DICOM SEG segments frame 2 of .*cine.dcm, but data.frame = 3"):
        load_index("dicom", tmp_path, frame=3)


def test_probe_geometry_from_the_region_tags_or_the_pixels_inside_the_region(tmp_path: Path) -> None:
    from _fan import CONVEX, LINEAR, fan_image

    from robustseg.data.geometry import ProbeGeometry

    h, w = CONVEX.shape
    screen = np.zeros((h + 40, w + 80), np.uint8)  # a scanner screen: the image region, text above it, a grey bar
    screen[20:20 + h, 10:10 + w] = fan_image(CONVEX, seed=1)
    screen[2:14, 100:300] = 240
    screen[30:300, w + 40:w + 60] = np.linspace(255, 0, 270)[:, None].astype(np.uint8)
    convex = us_dataset(screen, regions=[region(10, 20, 9 + w, 19 + h, 0.02, reference=(w // 2, 53))],
                        TransducerType="CURVED LINEAR")
    _write(tmp_path, "convex", convex, np.zeros(screen.shape, np.uint8))
    linear = us_dataset(fan_image(LINEAR, seed=2), patient="P2", TransducerType="LINEAR",
                        regions=[region(60, 0, 419, 322, 0.02, reference=(180, 12))])
    _write(tmp_path, "linear", linear, np.zeros(LINEAR.shape, np.uint8))
    report = check_data(tmp_path)
    given = report.index.set_index("image_id")["probe_geometry"]
    assert given["convex"] == ""  # no apex in the tags: estimated from the pixels
    assert given["linear"] == ProbeGeometry.linear(LINEAR.shape, cols=(60, 419), rows=(12, 322)).to_text()
    geo = report.geometry.set_index("image_id")
    assert geo.loc["linear", "kind"] == "linear" and geo.loc["linear", "row_top"] == 12
    sector = geo.loc["convex"]
    assert sector["kind"] == "sector"
    assert abs(sector["apex_row"] - (CONVEX.apex_row + 20)) < 2 and abs(sector["apex_col"] - (CONVEX.apex_col + 10)) < 2
    assert abs(sector["r_near"] - CONVEX.r_near) < 3  # the text above the region would pull the probe face up
    from robustseg.data.geometry import estimate_geometry

    assert abs(estimate_geometry(screen).r_near - CONVEX.r_near) > 10


# --- DICOM SEG export ----------------------------------------------------------------------------------


def test_seg_export_references_the_source_and_round_trips(tmp_path: Path) -> None:
    from robustseg.data.dicom_seg import read_seg_labels, write_seg

    single = save(us_dataset(_grey(), regions=_tissue(), frame_of_reference=True), tmp_path / "img.dcm")
    cine = save(us_dataset(np.stack([_grey(s) for s in range(3)])), tmp_path / "cine.dcm")
    for source, frame in ((single, 1), (cine, 3)):
        lab = _labels(frame)
        out = write_seg(tmp_path / "out" / f"{source.stem}.dcm", source, lab, CLASS_NAMES, run_id="r1",
                        image_id=source.stem, frame=frame)
        src = pydicom.dcmread(source)
        seg = hd.seg.segread(out)
        assert seg.StudyInstanceUID == src.StudyInstanceUID and seg.PatientID == src.PatientID
        ref = seg.ReferencedSeriesSequence[0]
        assert ref.SeriesInstanceUID == src.SeriesInstanceUID
        assert ref.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
        assert ref.ReferencedInstanceSequence[0].ReferencedSOPClassUID == src.SOPClassUID
        assert seg.get("FrameOfReferenceUID") == src.get("FrameOfReferenceUID")
        assert [s.SegmentLabel for s in seg.SegmentSequence] == list(CLASS_NAMES[1:])
        assert seg.SegmentSequence[1].SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Cavum of septum pellucidum"
        if frame > 1:
            assert seg.get_source_image_uids()  # highdicom finds the source
            px = seg.get_pixels_by_source_frame(src.SOPInstanceUID, [frame], combine_segments=True)[0]
        else:
            px = seg.get_pixels_by_source_instance([src.SOPInstanceUID], combine_segments=True)[0]
        np.testing.assert_array_equal(px, lab)
        np.testing.assert_array_equal(read_seg_labels(out, CLASS_NAMES), lab)
        again = write_seg(tmp_path / "again" / f"{source.stem}.dcm", source, lab, CLASS_NAMES, run_id="r1",
                          image_id=source.stem, frame=frame)
        assert pydicom.dcmread(again).SOPInstanceUID == seg.SOPInstanceUID  # UIDs derived from run and image


# --- end to end ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dicom_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """The phantom (24 images, 12 patients, 96 x 64) as DICOM: four photometric interpretations / syntaxes, every
    fourth image a 3-frame cine whose second frame is the phantom image, pixel sizes in the region calibration,
    masks as PNG next to the files and every fifth as a DICOM SEG."""
    from pydicom.uid import RLELossless

    from robustseg.data.phantom import generate_phantom

    tmp = tmp_path_factory.mktemp("dicomset")
    phantom = load_index("phantom", generate_phantom(tmp / "phantom", n=24, seed=5, size=(96, 64)))
    root = tmp / "dicom"
    rng = np.random.default_rng(0)
    for i, r in enumerate(phantom.itertuples(index=False)):
        img, lab = read_image(r.image_path), read_mask(r.mask_path)
        h, w = img.shape
        regions = [region(0, 0, w - 1, h - 1, r.pixel_mm / 10.0, reference=(w // 2, 0))]
        kind = i % 4
        if kind == 3:
            noise = rng.integers(0, 256, img.shape, dtype=np.uint8)
            ds = us_dataset(np.stack([noise, img, noise]), patient=r.patient_id, regions=regions)
        elif kind == 2:
            ds = us_dataset(np.stack([img] * 3, -1), photometric="RGB", patient=r.patient_id, regions=regions)
            ds.compress(RLELossless)
        elif kind == 1:
            ds = us_dataset(255 - img, photometric="MONOCHROME1", patient=r.patient_id, regions=regions)
        else:
            ds = us_dataset(img, patient=r.patient_id, regions=regions)
        folder = root / r.patient_id
        if i % 5 == 4:
            save(ds, folder / f"{r.image_id}.dcm")
            _seg_of(ds, lab, frame=2 if kind == 3 else None).save_as(folder / f"{r.image_id}-seg.dcm")
        else:
            _write(folder, r.image_id, ds, lab)
    return root, phantom


def test_study_on_dicom_reports_pixel_sizes_and_round_trips_seg(dicom_set, tmp_path: Path) -> None:
    from robustseg.cli import main
    from robustseg.data.dicom_seg import read_seg_labels
    from robustseg.pipeline.native import PREDICTIONS, PREDICTIONS_SEG

    root, phantom = dicom_set
    text = tiny_study("dcm", seeds="[0]", max_epochs=1, bootstrap=20)
    phantom_data = 'source = "phantom"\nphantom_n = 30\n'
    assert phantom_data in text
    text = text.replace(phantom_data, f'source = "dicom"\npath = "{root}"\nframe = 2\n')
    study = tmp_path / "dcm.toml"
    study.write_text(text + f'runs_dir = "{tmp_path / "runs"}"\nreports_dir = "{tmp_path / "reports"}"\n'
                     f'[data.external.cines]\nsource = "dicom"\npath = "{root}"\nframe = 2\n')
    assert main(["study", str(study)]) == 0
    runs_dir = tmp_path / "runs" / "dcm"
    index = pd.read_csv(runs_dir / "index.csv")
    by_id = phantom.set_index(phantom["patient_id"] + "__" + phantom["image_id"])
    np.testing.assert_allclose(index["pixel_mm"], by_id.loc[index["image_id"], "pixel_mm"])  # from the regions
    assert set(index["patient_id"]) == set(phantom["patient_id"])
    per_image = pd.read_csv(runs_dir / "tables" / "per_image.csv.gz")
    test = per_image[(per_image["perturbation"] == "none") & ~per_image["postprocessed"]]
    np.testing.assert_allclose(test["pixel_mm"], by_id.loc[test["image_id"], "pixel_mm"].to_numpy())
    assert test["pixel_mm_known"].all() and test["hd95_mm"].notna().any()  # boundary distances in the DICOM's mm
    ext = per_image[per_image["testset"] == "cines"]  # an external DICOM test set is scored the same way
    assert set(ext["image_id"]) == set(index["image_id"])
    np.testing.assert_allclose(ext["pixel_mm"], by_id.loc[ext["image_id"], "pixel_mm"].to_numpy())
    assert (tmp_path / "reports" / "dcm" / "report.md").is_file()

    run = runs_dir / pd.read_json(runs_dir / "plan.json")["run_id"].iloc[0]
    pngs = sorted((run / PREDICTIONS).glob("*.png"))
    segs = sorted((run / PREDICTIONS_SEG).glob("*.dcm"))
    assert pngs and [p.stem for p in pngs] == [s.stem for s in segs]
    rows = index.set_index("image_id")
    assert (rows.loc[[p.stem for p in pngs], "n_frames"] > 1).any()  # a cine is among the test images
    for png, seg_path in zip(pngs, segs, strict=True):
        pred = read_mask(png)
        np.testing.assert_array_equal(read_seg_labels(seg_path, CLASS_NAMES), pred)  # pixel for pixel
        seg = hd.seg.segread(seg_path)
        src = pydicom.dcmread(rows.loc[png.stem, "image_path"], stop_before_pixels=True)
        inst = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
        assert inst.ReferencedSOPInstanceUID == src.SOPInstanceUID and seg.StudyInstanceUID == src.StudyInstanceUID
        frames = {int(g.DerivationImageSequence[0].SourceImageSequence[0].get("ReferencedFrameNumber", 1))
                  for g in seg.PerFrameFunctionalGroupsSequence}
        assert frames == {int(rows.loc[png.stem, "frame"])}


def test_data_frame_key_is_checked() -> None:
    from robustseg.config import build_study

    assert build_study({"data": {"source": "dicom", "path": "x", "frame": 3}}).config.data.frame == 3
    assert build_study({"data": {"source": "folder", "path": "x", "frame": 3}}).config.data.frame == 3  # TIFF pages
    with pytest.raises(InputError, match=r"data\.frame.*one frame each"):
        build_study({"data": {"source": "phantom", "frame": 3}})
    with pytest.raises(InputError, match=r"data\.frame.*1 or more"):
        build_study({"data": {"source": "dicom", "path": "x", "frame": 0}})
    with pytest.raises(InputError, match=r"data\.external\.cine\.frame"):
        build_study({"data": {"external": {"cine": {"source": "fetal_head", "path": "x", "frame": 0}}}})
    raw = build_study({"data": {"source": "folder", "path": "x"}}).raw
    assert "frame" not in raw["data"]  # studies without frames keep their saved form


def test_the_core_never_loads_pydicom_or_highdicom_at_import() -> None:
    from test_architecture import _modules_loaded_after

    loaded = _modules_loaded_after("import robustseg, robustseg.data, robustseg.pipeline.study, robustseg.pipeline.runner,"
                                   " robustseg.cli.main, robustseg.data.dicom, robustseg.data.dicom_seg")
    assert not {"pydicom", "highdicom"} & loaded
