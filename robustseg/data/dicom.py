"""DICOM ultrasound input (``data.source = "dicom"``), read with pydicom (the ``[dicom]`` extra).

Layout: a folder, searched recursively (a PACS export's patient/study/series folders are fine). Every ``*.dcm`` /
``*.dicom`` file, and every file without an extension that carries the ``DICM`` marker, is read:

- an image (US Image, US Multi-frame Image, Secondary Capture, ... anything with pixel data) is one index row; its
  mask is ``<name>.png`` in the same folder (``IM0001.dcm`` -> ``IM0001.png``; ``IM0001`` -> ``IM0001.png``),
  coloured like every robustseg mask (``data.colormap``), or a DICOM SEG (next bullet);
- a DICOM SEG (Segmentation Storage) is the mask of the one image it references (by SOP Instance UID, and by frame
  number for a multi-frame image); its segment labels are class names (``brain``, ``csp``, ``lv``);
- a DICOMDIR is skipped; ``meta.csv`` at the top (``image_id``, optional ``patient_id`` / ``pixel_mm`` and any
  metadata) works as in the other layouts.

Image ids are the file's path below the folder without ``.dcm``, folders joined by ``__``
(``P01/IM0001.dcm`` -> ``P01__IM0001``). Patients come from PatientID (0010,0020); a file without one falls back
to a ``PatientNNN`` part of its id (else the id itself), and ``check-data`` says so.

Pixels: one frame per image. Multi-frame files (cine loops) need ``data.frame`` (1-based, as DICOM numbers frames);
without it they are an error naming the file and its frame count. Photometric interpretations MONOCHROME1 (inverted
so that dark stays dark), MONOCHROME2, RGB, YBR_FULL, YBR_FULL_422, YBR_ICT, YBR_RCT (converted to RGB by pydicom)
and PALETTE COLOR; colour becomes grey with the same luma as PNG images. Grey images with a VOI window
(WindowCenter / WindowWidth, the first one) or a VOI LUT are mapped through it to 0..255 after the modality
rescale; without one, 8-bit data are kept as stored and deeper data follow the reader rule for more than 8 bits
(:func:`robustseg.data.pixels.to_uint8`). Compressed transfer syntaxes decode when pydicom has a decoder for them
here (:func:`decodable_syntaxes`: RLE Lossless always; JPEG Baseline/Extended and JPEG 2000 through Pillow;
JPEG-LS through pyjpegls, which highdicom installs; JPEG Lossless needs pylibjpeg + pylibjpeg-libjpeg); any other is
an error naming the syntax and listing those that decode.

Pixel size and probe: from the US Region Calibration module (SequenceOfUltrasoundRegions). The region used is the
largest 2D region (RegionSpatialFormat 1) of tissue (RegionDataType 1), else the largest 2D region of any data
type; M-mode, Doppler spectra, waveforms and graphics are never used. Its PhysicalDeltaX/Y must be in cm
(PhysicalUnitsX/YDirection 3, the only length unit of the module) and are converted to mm; units "none" (0)
count as no calibration; any other unit is an error. Pixels must be square within 1 % (robustseg measures
distances with one pixel size); anisotropic pixels are an error. The region's bounds (RegionLocationMinX0 ...
MaxY1) and the transducer reference (ReferencePixelX0/Y0, an offset from the region's corner, so the index holds
the image coordinates ``RegionLocationMin + ReferencePixel``) describe the probe: a linear probe's geometry is
taken from them (:func:`probe_geometry_text`), a sector's is estimated from the pixels inside the region (the tags
hold no apex or opening angle). A file without calibration is
kept: its pixel size is unknown (distances in pixels, flagged by ``check-data`` and the report as for any image
without a pixel size), and the index says why.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robustseg.data.pixels import luma, to_uint8
from robustseg.errors import InputError

EXTRA = "install it with: pip install 'robustseg[dicom]'"
DICOM_EXTS = (".dcm", ".dicom")
_NOT_DICOM = frozenset((".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".csv", ".tsv", ".json",
                        ".txt", ".md", ".toml", ".xml", ".html", ".pdf", ".zip", ".gz", ".npz", ".npy"))
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
DICOMDIR = "1.2.840.10008.1.3.10"
US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "PALETTE COLOR")
CM = 3
"""PhysicalUnitsX/YDirection code of centimetres."""
UNITS = {0: "none", 1: "percent", 2: "dB", 3: "cm", 4: "seconds", 5: "hertz", 6: "dB/seconds", 7: "cm/sec",
         8: "cm2", 9: "cm2/sec", 10: "cm3", 11: "cm3/sec", 12: "degrees"}
SPATIAL_FORMATS = {0: "none", 1: "2D", 2: "M-mode", 3: "spectral", 4: "wave form", 5: "graphics"}
DATA_TYPES = {0: "none", 1: "tissue", 2: "color flow", 3: "PW spectral Doppler", 4: "CW spectral Doppler"}
ANISOTROPY = 0.01
"""Largest relative difference of PhysicalDeltaX and PhysicalDeltaY accepted as square pixels."""

DICOM_COLUMNS = [
    "frame", "n_frames", "sop_class_uid", "sop_instance_uid", "study_instance_uid", "series_instance_uid",
    "frame_of_reference_uid", "photometric", "transfer_syntax", "patient_from", "calibration",
    "pixel_mm_x", "pixel_mm_y", "region_x0", "region_y0", "region_x1", "region_y1", "probe_x", "probe_y",
    "transducer_type", "probe_geometry",
]  # fmt: skip
"""Index columns of a DICOM data set beyond the common ones. ``calibration``: ``us_region`` or ``none: <why>``;
``patient_from``: ``PatientID`` or ``file name``; region / probe coordinates in image pixels (NaN when absent);
``probe_geometry``: :func:`probe_geometry_text` (the column :mod:`robustseg.data.geometry` reads per image)."""


def require_pydicom() -> Any:
    """The pydicom module, or an InputError naming the extra that installs it."""
    try:
        import pydicom
    except ImportError:
        raise InputError(f"DICOM input needs pydicom, which is not installed; {EXTRA}") from None
    return pydicom


def is_dicom(path: str | Path) -> bool:
    """``.dcm`` / ``.dicom`` files, and files of any other name (``IM0001``, ``1.2.840.1136.7``) that carry the DICM
    marker at byte 128; image, table and text files (``.png``, ``.csv``, ...) are never opened to look."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in DICOM_EXTS:
        return True
    if suffix in _NOT_DICOM or not path.is_file():
        return False
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """pydicom's warnings about odd values stay off the terminal (a file it cannot read is an InputError)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def read_header(path: str | Path) -> Any:
    """The data set of a DICOM file, pixel data left on disk until decoded. Unreadable files are InputErrors."""
    pydicom = require_pydicom()
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        with _quiet():
            ds = pydicom.dcmread(path, defer_size="1 KB")
            ds.get("SOPClassUID")  # parses the leading elements: a corrupt header fails here, not later
    except InvalidDicomError as exc:
        raise InputError(f"{path}: not a DICOM file ({_first_line(exc)}); expected a DICOM file with the DICM "
                         "marker") from None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds on corrupt bytes; one line names the file
        raise InputError(f"{path}: unreadable or truncated DICOM file ({_first_line(exc)})") from None
    return ds


def decodable_syntaxes() -> list[str]:
    """Names of the compressed transfer syntaxes pydicom can decode with the packages installed here."""
    require_pydicom()
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID, AllTransferSyntaxes

    out = []
    for uid in map(UID, AllTransferSyntaxes):
        if not uid.is_compressed:
            continue
        try:
            if get_decoder(uid).is_available:
                out.append(uid.name)
        except NotImplementedError:
            continue
    return out


def _check_syntax(ds: Any, path: Path) -> str:
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    meta = getattr(ds, "file_meta", None)
    uid = UID(str(meta.get("TransferSyntaxUID", "") if meta is not None else "") or "1.2.840.10008.1.2")
    if not uid.is_transfer_syntax:
        raise InputError(f"{path}: transfer syntax {uid!s} is not a DICOM transfer syntax")
    if not uid.is_compressed:
        return uid.name
    hint = ""
    try:
        decoder = get_decoder(uid)
        ok = decoder.is_available
        if not ok:  # pydicom's own words, e.g. 'pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-libjpeg>=2.1'
            hint = f" (one of: {'; '.join(map(str, decoder.missing_dependencies))})"
    except NotImplementedError:
        ok = False
    if not ok:
        raise InputError(f"{path}: pixel data in transfer syntax {uid.name} ({uid}) cannot be decoded here{hint}; "
                         f"decodable: uncompressed, {', '.join(decodable_syntaxes())}")
    return uid.name


def _number(item: Any, key: str, path: Path, where: str) -> float:
    value = item.get(key)
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{path}: {where} has {key} {value!r}; expected a number") from None
    if not math.isfinite(out):
        raise InputError(f"{path}: {where} has {key} {value!r}; expected a finite number")
    return out


def _optional(item: Any, key: str) -> float:
    value = item.get(key)
    try:
        return float(value) if value is not None and value != "" else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def region_calibration(ds: Any, path: str | Path) -> dict[str, Any]:
    """Pixel size (mm) and probe geometry from SequenceOfUltrasoundRegions (module docstring: which region, which
    units). Returns the ``calibration``, ``pixel_mm``, ``pixel_mm_x/_y``, ``region_*`` and ``probe_*`` columns."""
    path = Path(path)
    nan = float("nan")
    out: dict[str, Any] = {"calibration": "", "pixel_mm": nan, "pixel_mm_x": nan, "pixel_mm_y": nan,
                           "region_x0": nan, "region_y0": nan, "region_x1": nan, "region_y1": nan,
                           "probe_x": nan, "probe_y": nan}
    regions = list(ds.get("SequenceOfUltrasoundRegions") or [])
    if not regions:
        return out | {"calibration": "none: no SequenceOfUltrasoundRegions"}

    def code(item: Any, key: str) -> int:
        try:
            return int(item.get(key, -1))
        except (TypeError, ValueError):
            return -1

    def area(pair: tuple[int, Any]) -> float:
        r = pair[1]
        return (_optional(r, "RegionLocationMaxX1") - _optional(r, "RegionLocationMinX0") + 1) * \
               (_optional(r, "RegionLocationMaxY1") - _optional(r, "RegionLocationMinY0") + 1)

    planar = [(i, r) for i, r in enumerate(regions, start=1) if code(r, "RegionSpatialFormat") == 1]
    if not planar:
        kinds = ", ".join(SPATIAL_FORMATS.get(code(r, "RegionSpatialFormat"), "unknown") for r in regions)
        return out | {"calibration": f"none: no 2D region (regions: {kinds})"}
    tissue = [p for p in planar if code(p[1], "RegionDataType") == 1] or planar
    i, region = max(tissue, key=lambda p: np.nan_to_num(area(p), nan=-1.0))  # first of the largest
    what = f"ultrasound region {i} (2D {DATA_TYPES.get(code(region, 'RegionDataType'), 'data')})"
    ux, uy = code(region, "PhysicalUnitsXDirection"), code(region, "PhysicalUnitsYDirection")
    if ux == 0 and uy == 0:
        return out | {"calibration": f"none: {what} has physical units 'none'"}
    if ux != CM or uy != CM:
        raise InputError(
            f"{path}: {what} has PhysicalUnitsXDirection {ux} ({UNITS.get(ux, 'unknown')}) and "
            f"PhysicalUnitsYDirection {uy} ({UNITS.get(uy, 'unknown')}); expected 3 (cm) in both directions, the "
            "only length unit of an ultrasound region (units 0 mean no calibration)")
    dx = abs(_number(region, "PhysicalDeltaX", path, what)) * 10.0
    dy = abs(_number(region, "PhysicalDeltaY", path, what)) * 10.0
    if dx <= 0 or dy <= 0:
        raise InputError(f"{path}: {what} has PhysicalDeltaX/Y {dx / 10:g} / {dy / 10:g} cm; expected positive sizes")
    if abs(dx - dy) > ANISOTROPY * max(dx, dy):
        raise InputError(
            f"{path}: {what} has anisotropic pixels, {dx:.4g} mm x {dy:.4g} mm (PhysicalDeltaX/Y); expected square "
            f"pixels within {ANISOTROPY:.0%} (robustseg measures distances with one pixel size: resample the image)")
    x0, y0 = _optional(region, "RegionLocationMinX0"), _optional(region, "RegionLocationMinY0")
    out |= {"calibration": "us_region", "pixel_mm": (dx + dy) / 2.0, "pixel_mm_x": dx, "pixel_mm_y": dy,
            "region_x0": x0, "region_y0": y0,
            "region_x1": _optional(region, "RegionLocationMaxX1"), "region_y1": _optional(region, "RegionLocationMaxY1"),
            "probe_x": x0 + _optional(region, "ReferencePixelX0"), "probe_y": y0 + _optional(region, "ReferencePixelY0")}
    return out


def probe_geometry_text(row: dict[str, Any]) -> str:
    """The probe geometry the DICOM tags fix, as :meth:`robustseg.data.geometry.ProbeGeometry.to_text` text: a
    linear probe (TransducerType ``LINEAR``) beams down the columns of its calibrated region, from the transducer
    reference row (else the region's top) to the region's bottom. Sector probes (``CURVED LINEAR``,
    ``SECTOR_PHASED``, ...) and files without a region give ``""``: the tags hold no apex or opening angle, so
    the geometry is estimated from the pixels inside the region (:func:`blank_outside_region`)."""
    from robustseg.data.geometry import ProbeGeometry

    box = [row.get(k, float("nan")) for k in ("region_x0", "region_y0", "region_x1", "region_y1")]
    if str(row.get("transducer_type", "")).strip().upper() != "LINEAR" or not all(map(math.isfinite, box)):
        return ""
    top = row.get("probe_y", float("nan"))
    top = top if math.isfinite(top) and box[1] <= top < box[3] else box[1]
    try:
        geo = ProbeGeometry.linear((int(row["height"]), int(row["width"])), cols=(box[0], box[2]),
                                   rows=(top, box[3]), source="dicom")
    except InputError:
        return ""  # a degenerate region: estimate from the pixels instead
    return geo.to_text()


def blank_outside_region(image: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """``image`` with the pixels outside the calibrated region ``(x0, y0, x1, y1)`` (inclusive) set to 0, so
    annotations, colour bars and Doppler panels beside it do not enter a geometry estimate. Unchanged when the
    box is not all finite.

    >>> blank_outside_region(np.full((3, 4), 9, np.uint8), (1, 0, 2, 1)).tolist()
    [[0, 9, 9, 0], [0, 9, 9, 0], [0, 0, 0, 0]]
    """
    if len(box) != 4 or not all(math.isfinite(float(v)) for v in box):
        return image
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    out = np.zeros_like(image)
    out[max(y0, 0):y1 + 1, max(x0, 0):x1 + 1] = image[max(y0, 0):y1 + 1, max(x0, 0):x1 + 1]
    return out


def frame_choice(ds: Any, path: str | Path, frame: int | None) -> tuple[int, int]:
    """``(frame, number of frames)``: 1 for a single-frame image, the chosen frame (1-based) of a multi-frame one."""
    try:
        n = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        raise InputError(f"{path}: NumberOfFrames {ds.get('NumberOfFrames')!r}; expected a whole number") from None
    if n <= 1:
        return 1, 1
    if frame is None:
        raise InputError(f"{path}: multi-frame image with {n} frames; expected data.frame (1..{n}) to choose the "
                         "frame to segment")
    if not 1 <= int(frame) <= n:
        raise InputError(f"{path}: data.frame = {frame} but the image has {n} frames; expected 1..{n}")
    return int(frame), n


def image_info(ds: Any, path: str | Path, frame: int | None, max_pixels: int | None = None) -> dict[str, Any]:
    """Check that ``ds`` holds a decodable image robustseg can read; its size, frame and UIDs as index columns."""
    path = Path(path)
    if "PixelData" not in ds:
        other = [k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in ds]
        raise InputError(f"{path}: {'float pixel data (' + other[0] + ')' if other else 'no pixel data'}; expected "
                         "an image with integer Pixel Data (7FE0,0010)")
    for key in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation"):
        if key not in ds or ds.get(key) in (None, ""):
            raise InputError(f"{path}: image attribute {key} is missing; expected a complete Image Pixel module")
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    if photometric not in PHOTOMETRIC:
        raise InputError(f"{path}: photometric interpretation {photometric!r} is not supported; expected one of "
                         f"{', '.join(PHOTOMETRIC)}")
    h, w = int(ds.Rows), int(ds.Columns)
    if max_pixels is not None and h * w > max_pixels:
        raise InputError(f"{path}: image of {w} x {h} = {w * h} pixels is larger than the limit of {max_pixels}; "
                         "expected an ordinary image")
    uids = {}
    for key, col in (("SOPInstanceUID", "sop_instance_uid"), ("StudyInstanceUID", "study_instance_uid"),
                     ("SeriesInstanceUID", "series_instance_uid")):
        value = str(ds.get(key, "") or "").strip()
        if not value:
            raise InputError(f"{path}: {key} is missing; expected a DICOM image with its study, series and instance "
                             "UIDs")
        uids[col] = value
    chosen, n = frame_choice(ds, path, frame)
    return {"height": h, "width": w, "frame": chosen, "n_frames": n, **uids,
            "sop_class_uid": str(ds.get("SOPClassUID", "") or ""),
            "frame_of_reference_uid": str(ds.get("FrameOfReferenceUID", "") or ""),
            "photometric": photometric, "transfer_syntax": _check_syntax(ds, path),
            "transducer_type": str(ds.get("TransducerType", "") or "")}


def _has_window(ds: Any) -> bool:
    return ds.get("WindowCenter") not in (None, "") and ds.get("WindowWidth") not in (None, "")


def _has_voi(ds: Any) -> bool:
    return _has_window(ds) or bool(ds.get("VOILUTSequence"))


def _window(values: np.ndarray, ds: Any) -> np.ndarray:
    """Grey values (after the modality rescale) mapped through the first VOI window, else the first VOI LUT, to
    0..1."""
    if _has_window(ds):
        center = ds.WindowCenter[0] if ds["WindowCenter"].VM > 1 else ds.WindowCenter
        width = ds.WindowWidth[0] if ds["WindowWidth"].VM > 1 else ds.WindowWidth
        c, w = float(center), float(width)
        func = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
        if func == "SIGMOID":
            return 1.0 / (1.0 + np.exp(-4.0 * (values - c) / max(w, 1e-12)))
        if func == "LINEAR_EXACT":
            return np.clip((values - c) / max(w, 1e-12) + 0.5, 0.0, 1.0)
        return np.clip((values - (c - 0.5)) / max(w - 1.0, 1e-12) + 0.5, 0.0, 1.0)  # PS3.3 C.11.2.1.2.1
    from pydicom.pixels import apply_voi

    bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
    return np.clip(apply_voi(values, ds, 0).astype(np.float64) / float(2**bits - 1), 0.0, 1.0)


def to_grey(arr: np.ndarray, ds: Any) -> np.ndarray:
    """Decoded pixels of one frame (``(H, W)`` or ``(H, W, 3)`` RGB) as uint8 grey (module docstring: the rules)."""
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    if photometric == "PALETTE COLOR":  # palette entries are absolute colours of the LUT's bit depth
        from pydicom.pixels import apply_color_lut

        top = float(2 ** int(ds.RedPaletteColorLookupTableDescriptor[2]) - 1)
        arr = np.clip(np.rint(apply_color_lut(arr, ds).astype(np.float64) / top * 255.0), 0, 255).astype(np.uint8)
    if arr.ndim == 3:
        return luma(to_uint8(arr))
    if _has_voi(ds):
        from pydicom.pixels import apply_modality_lut

        grey = np.rint(_window(apply_modality_lut(arr, ds).astype(np.float64), ds) * 255.0).astype(np.uint8)
    else:
        grey = to_uint8(arr)  # 8-bit data unchanged
    if photometric == "MONOCHROME1":
        grey = 255 - grey
    return np.ascontiguousarray(grey)


def read_dicom_image(path: str | Path, frame: int | None = None, max_pixels: int | None = None) -> np.ndarray:
    """One frame of a DICOM image as uint8 grey ``(H, W)`` (``frame`` 1-based; needed for multi-frame files).
    Images of more than ``max_pixels`` pixels are InputErrors."""
    path = Path(path)
    ds = read_header(path)
    info = image_info(ds, path, frame, max_pixels)
    from pydicom.pixels import pixel_array

    try:
        with _quiet():
            arr = pixel_array(str(path), index=info["frame"] - 1 if info["n_frames"] > 1 else None)
            expected = (info["height"], info["width"])
            if tuple(arr.shape[:2]) != expected:
                raise InputError(f"{path}: decoded pixels have shape {arr.shape}; expected {expected[1]} x "
                                 f"{expected[0]}")
            return to_grey(arr, ds)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - decoders raise many kinds on bad data; one line names the file
        short = _short_pixel_data(ds)
        what = f"pixel data is truncated ({short})" if short else f"pixel data cannot be decoded ({_first_line(exc)})"
        raise InputError(f"{path}: {what}; expected {info['n_frames']} frame(s) of {info['width']} x "
                         f"{info['height']} pixels in {info['transfer_syntax']}") from None


def _short_pixel_data(ds: Any) -> str:
    """``"N of M bytes"`` when uncompressed pixel data hold fewer bytes than the image needs, else ``""``."""
    from pydicom.uid import UID

    meta = getattr(ds, "file_meta", None)
    if UID(str(meta.get("TransferSyntaxUID", "1.2.840.10008.1.2") if meta is not None else "1.2.840.10008.1.2")
           ).is_compressed:
        return ""
    try:
        with _quiet():
            have = len(ds.PixelData or b"")
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        need = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * frames * int(ds.BitsAllocated) // 8
    except Exception:  # noqa: BLE001 - a value that cannot be read says nothing about the length
        return ""
    return f"{have} of {need} bytes" if have < need else ""


def seg_reference(ds: Any, path: str | Path) -> tuple[str, int | None]:
    """``(SOP Instance UID, frame number or None)`` of the one image frame a DICOM SEG segments."""
    uids: set[str] = set()
    frames: set[int] = set()
    for series in ds.get("ReferencedSeriesSequence") or []:
        for inst in series.get("ReferencedInstanceSequence") or []:
            uids.add(str(inst.get("ReferencedSOPInstanceUID", "")))
    groups = [*(ds.get("SharedFunctionalGroupsSequence") or []), *(ds.get("PerFrameFunctionalGroupsSequence") or [])]
    for group in groups:
        for derivation in group.get("DerivationImageSequence") or []:
            for source in derivation.get("SourceImageSequence") or []:
                uids.add(str(source.get("ReferencedSOPInstanceUID", "")))
                numbers = source.get("ReferencedFrameNumber")
                if numbers not in (None, ""):
                    many = isinstance(numbers, Sequence) and not isinstance(numbers, str)
                    frames.update(int(n) for n in (numbers if many else [numbers]))
    uids.discard("")
    if len(uids) != 1:
        raise InputError(f"{path}: DICOM SEG references {len(uids)} source images; expected exactly one (one SEG "
                         "per image)")
    if len(frames) > 1:
        raise InputError(f"{path}: DICOM SEG references frames {sorted(frames)} of its source image; expected one "
                         "frame (the one robustseg reads, data.frame)")
    return uids.pop(), (frames.pop() if frames else None)


def _image_id(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).parts)
    if path.suffix.lower() in DICOM_EXTS:
        parts[-1] = path.stem
    return "__".join(parts)


def png_mask(path: Path) -> Path | None:
    """The PNG mask next to a DICOM image (``IM1.dcm`` -> ``IM1.png``, ``IM1`` -> ``IM1.png``), if it exists."""
    base = path.with_suffix("") if path.suffix.lower() in DICOM_EXTS else path
    for suffix in (".png", ".PNG"):
        candidate = base.with_name(base.name + suffix)
        if candidate.is_file():
            return candidate
    return None


def dicom_images(root: str | Path, frame: int | None = None, max_pixels: int | None = None) -> list[dict[str, Any]]:
    """Index rows (without class counts) of the DICOM images below ``root``, each with its mask: the PNG next to it
    or the DICOM SEG that references it. ``patient_id`` is ``""`` where a file has no PatientID."""
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.upper() != "DICOMDIR"
                   and not any(part.startswith(".") for part in p.relative_to(root).parts) and is_dicom(p))
    if not files:
        raise InputError(f"{root}: no DICOM files found; expected *.dcm files (or files with the DICM marker) in "
                         "this folder or below")
    rows: dict[str, dict[str, Any]] = {}
    by_id: dict[str, Path] = {}
    segs: list[tuple[Path, str, int | None]] = []
    for path in files:
        ds = read_header(path)
        sop_class = str(ds.get("SOPClassUID", "") or "")
        if sop_class == DICOMDIR:
            continue
        if sop_class == SEG_STORAGE:
            segs.append((path, *seg_reference(ds, path)))
            continue
        info = image_info(ds, path, frame, max_pixels)
        image_id = _image_id(path, root)
        if image_id in by_id:
            raise InputError(f"{path}: image id {image_id!r} is also that of {by_id[image_id]}; expected unique names")
        uid = info["sop_instance_uid"]
        if uid in rows:
            raise InputError(f"{path}: SOPInstanceUID {uid} is also that of {rows[uid]['image_path']}; expected each "
                             "image once")
        by_id[image_id] = path
        mask = png_mask(path)
        patient = str(ds.get("PatientID", "") or "").strip()
        row = {"image_id": image_id, "image_path": str(path), "mask_path": str(mask) if mask else "",
               "patient_id": patient, "patient_from": "PatientID" if patient else "file name",
               **info, **region_calibration(ds, path)}
        rows[uid] = row | {"probe_geometry": probe_geometry_text(row)}
    for path, uid, seg_frame in segs:
        row = rows.get(uid)
        if row is None:
            raise InputError(f"{path}: DICOM SEG references SOPInstanceUID {uid}, which is not an image below {root}")
        if row["mask_path"]:
            raise InputError(f"{row['image_path']}: two masks, {row['mask_path']} and {path}; expected one")
        if row["n_frames"] > 1 and seg_frame != row["frame"]:
            raise InputError(f"{path}: DICOM SEG segments frame {seg_frame} of {row['image_path']}, but data.frame "
                             f"= {row['frame']}; expected a SEG of the frame robustseg reads")
        if row["n_frames"] == 1 and seg_frame not in (None, 1):
            raise InputError(f"{path}: DICOM SEG segments frame {seg_frame} of the single-frame image "
                             f"{row['image_path']}; expected frame 1")
        row["mask_path"] = str(path)
    if not rows:
        raise InputError(f"{root}: no DICOM images found (only {len(segs)} SEG and DICOMDIR files); expected images")
    missing = [r["image_path"] for r in rows.values() if not r["mask_path"]]
    if missing:
        shown = ", ".join(missing[:5]) + (f", ... ({len(missing)} in all)" if len(missing) > 5 else "")
        raise InputError(f"{root}: no mask for {len(missing)} DICOM image(s): {shown}; expected <name>.png next to "
                         "each image or a DICOM SEG referencing it")
    return sorted(rows.values(), key=lambda r: r["image_id"])
