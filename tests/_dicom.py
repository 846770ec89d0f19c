"""Build DICOM ultrasound files with pydicom for the tests: real tags (US Image / US Multi-frame Image Storage,
SequenceOfUltrasoundRegions, ...), any photometric interpretation, compressed or not."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"


def region(x0: int, y0: int, x1: int, y1: int, dx_cm: float = 0.01, dy_cm: float | None = None, *,
           units: tuple[int, int] = (3, 3), spatial: int = 1, data_type: int = 1,
           reference: tuple[int, int] | None = None) -> Any:
    """One item of SequenceOfUltrasoundRegions (2D tissue in cm by default)."""
    from pydicom.dataset import Dataset

    r = Dataset()
    r.RegionSpatialFormat = spatial
    r.RegionDataType = data_type
    r.RegionFlags = 0
    r.RegionLocationMinX0, r.RegionLocationMinY0, r.RegionLocationMaxX1, r.RegionLocationMaxY1 = x0, y0, x1, y1
    r.PhysicalUnitsXDirection, r.PhysicalUnitsYDirection = units
    r.PhysicalDeltaX = float(dx_cm)
    r.PhysicalDeltaY = float(dx_cm if dy_cm is None else dy_cm)
    if reference is not None:
        r.ReferencePixelX0, r.ReferencePixelY0 = reference
    return r


def us_dataset(frames: np.ndarray, *, photometric: str = "MONOCHROME2", patient: str | None = "P001",
               regions: list[Any] | None = None, bits: int = 8, frame_of_reference: bool = False,
               **tags: Any) -> Any:
    """A US image data set (explicit VR little endian) of ``frames``: ``(H, W)`` / ``(H, W, 3)`` for one frame,
    ``(F, H, W[, 3])`` with ``F > 1`` for a cine loop (US Multi-frame Image Storage). Pixel values are stored as
    given (already in ``photometric``'s colour space)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    arr = np.asarray(frames)
    colour = photometric not in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR")
    multi = arr.ndim == (4 if colour else 3)
    h, w = arr.shape[1:3] if multi else arr.shape[:2]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = US_MULTIFRAME if multi else US_IMAGE
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    if frame_of_reference:
        ds.FrameOfReferenceUID = generate_uid()
    ds.Modality = "US"
    if patient is not None:
        ds.PatientID = patient
    ds.PatientName = "Test^Fetus"
    ds.StudyDate, ds.StudyTime = "20240101", "120000"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.Rows, ds.Columns = int(h), int(w)
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric
    if colour:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    if multi:
        ds.NumberOfFrames = int(arr.shape[0])
        ds.FrameIncrementPointer = 0x00181063
        ds.FrameTime = 33.3
    if regions is not None:
        ds.SequenceOfUltrasoundRegions = Sequence(regions)
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(arr.astype(np.uint8 if bits <= 8 else np.uint16)).tobytes()
    return ds


def jpeg_dataset(rgb_or_grey: np.ndarray, **kw: Any) -> Any:
    """A single-frame US data set in JPEG Baseline: grey -> MONOCHROME2, RGB -> YBR_FULL_422 (4:2:2), encoded by
    Pillow at quality 95."""
    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    arr = np.asarray(rgb_or_grey, dtype=np.uint8)
    buf = io.BytesIO()
    if arr.ndim == 3:
        Image.fromarray(arr).save(buf, format="JPEG", quality=95, subsampling=1)  # 1 = 4:2:2
        ds = us_dataset(arr, photometric="YBR_FULL_422", **kw)
    else:
        Image.fromarray(arr).save(buf, format="JPEG", quality=95)
        ds = us_dataset(arr, photometric="MONOCHROME2", **kw)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    return ds


def save(ds: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def rgb_to_ybr_full(rgb: np.ndarray) -> np.ndarray:
    """RGB -> YBR_FULL with pydicom's own conversion (what a scanner storing YBR_FULL holds)."""
    from pydicom.pixels import convert_color_space

    return convert_color_space(np.asarray(rgb, dtype=np.uint8), "RGB", "YBR_FULL")
