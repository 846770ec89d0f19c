"""DICOM SEG with highdicom (the ``[dicom]`` extra): masks read from a SEG, predictions written as one.

A SEG robustseg writes references its source image (its study, its series and SOP instance in the Referenced
Series Sequence, the frame for a multi-frame image, the Frame of Reference when the image has one), so a DICOM
viewer shows it over the image. It holds one segment per foreground class, numbered like the class labels and
labelled with the class names (coded as SNOMED CT brain, cavum of septum pellucidum and lateral ventricle for the
fetal classes, "anatomical structure" for any other), as a BINARY segmentation with every segment's frame present.
UIDs are derived from the run and the image, so the same run writes the same UIDs.

highdicom is imported inside the functions only; the core never loads it.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robustseg.data.dicom import EXTRA, SEG_STORAGE, US_IMAGE, read_header, seg_reference
from robustseg.errors import InputError
from robustseg.labels import DISPLAY_NAMES

SNOMED = {"brain": "Brain", "csp": "CavumOfSeptumPellucidum", "lv": "LateralVentricle"}
"""Class name -> pydicom's SNOMED CT code name (``pydicom.sr.codedict.codes.SCT``) for the segment type."""

_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "AccessionNumber",
          "ReferringPhysicianName", "StudyID")
"""Attributes highdicom copies from the source that an anonymised image may lack (empty is legal: type 2)."""


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """highdicom's log records and warnings stay off the terminal while it works (failures raise)."""
    log = logging.getLogger("highdicom")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def require_highdicom() -> Any:
    """The highdicom module, or an InputError naming the extra that installs it."""
    try:
        import highdicom
    except ImportError:
        raise InputError(f"DICOM SEG needs highdicom, which is not installed; {EXTRA}") from None
    return highdicom


def _class_of_label(label: str, class_names: Sequence[str]) -> int | None:
    key = str(label).strip().lower()
    for k, name in enumerate(class_names):
        if key in (name.lower(), DISPLAY_NAMES.get(name, name).lower()):
            return k
    return None


def read_seg_labels(path: str | Path, class_names: Sequence[str]) -> np.ndarray:
    """The label mask uint8 ``(H, W)`` of a DICOM SEG of one image frame; segment labels name the classes.

    A segment label outside ``class_names``, overlapping segments and fractional SEGs are InputErrors.
    """
    hd = require_highdicom()
    path = Path(path)
    ds = read_header(path)
    if str(ds.get("SOPClassUID", "")) != SEG_STORAGE:
        raise InputError(f"{path}: SOP class {ds.get('SOPClassUID', 'missing')} is not Segmentation Storage; expected "
                         "a DICOM SEG (or a PNG) as mask")
    uid, frame = seg_reference(ds, path)
    if str(ds.get("SegmentationType", "")).upper() == "FRACTIONAL":
        raise InputError(f"{path}: fractional DICOM SEG; expected a BINARY or LABELMAP segmentation (one class per "
                         "pixel)")
    lut = np.zeros(int(max((int(s.SegmentNumber) for s in ds.SegmentSequence), default=0)) + 1, dtype=np.uint8)
    for segment in ds.SegmentSequence:
        k = _class_of_label(segment.get("SegmentLabel", ""), class_names)
        if k is None:
            raise InputError(f"{path}: segment {int(segment.SegmentNumber)} is labelled "
                             f"{segment.get('SegmentLabel', '')!r}; expected a class name ({', '.join(class_names)})")
        lut[int(segment.SegmentNumber)] = k
    try:
        with _quiet():
            seg = hd.seg.segread(path)
            kw = {"combine_segments": True, "relabel": False}
            if frame is None:
                pixels = seg.get_pixels_by_source_instance([uid], **kw)
            else:
                pixels = seg.get_pixels_by_source_frame(uid, [frame], **kw)
    except RuntimeError as exc:
        if "overlap" in str(exc):
            raise InputError(f"{path}: segments overlap; expected one class per pixel") from None
        raise InputError(f"{path}: DICOM SEG cannot be read ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - highdicom raises many kinds on malformed SEGs; one line names the file
        raise InputError(f"{path}: DICOM SEG cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    return np.ascontiguousarray(lut[np.asarray(pixels[0]).astype(np.int64)])


def _descriptions(hd: Any, class_names: Sequence[str], version: str) -> list[Any]:
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name="robustseg", version=version, family=codes.cid7162.ArtificialIntelligence)
    out = []
    for k, name in enumerate(class_names[1:], start=1):
        kind = getattr(codes.SCT, SNOMED.get(name, "AnatomicalStructure"))
        out.append(hd.seg.SegmentDescription(
            segment_number=k, segment_label=name, segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=kind, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm))
    return out


def _source_view(src: Any, n_frames: int) -> Any:
    """A copy of the source header highdicom accepts: pixel data dropped, missing type-2 attributes empty, and a
    multi-frame image shown as one frame (highdicom segments several frames only with a patient coordinate
    system, which ultrasound cine loops lack; the frame reference is set afterwards)."""
    from pydicom import DataElement, Dataset

    view = Dataset()  # a new mapping over the source's elements: replace elements, never assign their values
    for element in src:
        if element.keyword != "PixelData":
            view.add(element)
    for key in _TYPE2:
        if key not in view:
            setattr(view, key, "")
    if n_frames > 1:
        for key in ("NumberOfFrames", "FrameIncrementPointer"):
            if key in view:
                del view[key]
        view[0x00080016] = DataElement(0x00080016, "UI", US_IMAGE)  # SOPClassUID
    return view


def _point_at_frame(seg: Any, sop_class: str, frame: int) -> None:
    """Make every reference of ``seg`` to its source say the source's own SOP class and the segmented frame."""
    for series in seg.get("ReferencedSeriesSequence") or []:
        for inst in series.get("ReferencedInstanceSequence") or []:
            inst.ReferencedSOPClassUID = sop_class
    for group in seg.get("PerFrameFunctionalGroupsSequence") or []:
        for derivation in group.get("DerivationImageSequence") or []:
            for source in derivation.get("SourceImageSequence") or []:
                source.ReferencedSOPClassUID = sop_class
                source.ReferencedFrameNumber = frame


def build_seg(source_path: str | Path, labels: np.ndarray, class_names: Sequence[str], *, frame: int = 1,
              series_uid: str, sop_uid: str, series_number: int = 900, version: str = "0") -> Any:
    """A highdicom Segmentation of ``labels`` (uint8 ``(H, W)``, values ``0..C-1``) over frame ``frame`` of the
    DICOM image at ``source_path``."""
    hd = require_highdicom()
    src = read_header(source_path)
    n_frames = int(src.get("NumberOfFrames", 1) or 1)
    labels = np.ascontiguousarray(np.asarray(labels, dtype=np.uint8))
    if labels.shape != (int(src.Rows), int(src.Columns)):
        raise InputError(f"{source_path}: prediction of shape {labels.shape}; expected the image's "
                         f"{int(src.Rows)} x {int(src.Columns)}")
    with _quiet():
        seg = hd.seg.Segmentation(
            source_images=[_source_view(src, n_frames)], pixel_array=labels,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=_descriptions(hd, class_names, version),
            series_instance_uid=series_uid, series_number=series_number, sop_instance_uid=sop_uid,
            instance_number=1, manufacturer="robustseg", manufacturer_model_name="robustseg",
            software_versions=version, device_serial_number="0", series_description="robustseg prediction",
            omit_empty_frames=False)
    if n_frames > 1:
        _point_at_frame(seg, str(src.SOPClassUID), int(frame))
    return seg


def seg_uids(run_id: str, image_id: str) -> tuple[str, str]:
    """``(series UID, SOP instance UID)`` of a run's SEG of one image: derived from the run and image ids, so a
    rerun writes the same UIDs."""
    from pydicom.uid import generate_uid

    return (str(generate_uid(entropy_srcs=["robustseg-seg-series", run_id])),
            str(generate_uid(entropy_srcs=["robustseg-seg", run_id, image_id])))


def write_seg(path: str | Path, source_path: str | Path, labels: np.ndarray, class_names: Sequence[str], *,
              run_id: str, image_id: str, frame: int = 1, version: str = "0") -> Path:
    """Write the SEG of one prediction to ``path`` atomically (:func:`build_seg`, :func:`seg_uids`)."""
    from robustseg._io import atomic_write

    series_uid, sop_uid = seg_uids(run_id, image_id)
    seg = build_seg(source_path, labels, class_names, frame=frame, series_uid=series_uid, sop_uid=sop_uid,
                    version=version)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: seg.save_as(tmp, enforce_file_format=True))
