"""Read-only validation of a data set: index + summary tables + warnings (used by ``check-data``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from robustseg.data.geometry import GeometrySetting, geometry_table, resolve_geometry, summarize_geometry
from robustseg.data.index import detect_source, load_index
from robustseg.data.io import Colormap
from robustseg.errors import InputError
from robustseg.labels import SMALL_STRUCTURES, display_list, display_name


@dataclass(frozen=True)
class CheckReport:
    """What ``check_data`` found. ``summary``: one row per quantity (``metric``, ``value``);
    ``classes``: one row per class (``class``, ``images``, ``image_share``, ``pixels``, ``pixel_share``);
    ``sizes``: one row per image size (``width``, ``height``, ``images``); ``size_summary``: one row per
    quantity (``quantity`` width / height / pixels, ``min``, ``median``, ``max``) plus the number of
    distinct sizes, what ``check-data`` prints instead of a row per size."""

    path: Path
    source: str
    index: pd.DataFrame
    summary: pd.DataFrame
    classes: pd.DataFrame
    sizes: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    size_summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    geometry: pd.DataFrame = field(default_factory=pd.DataFrame)
    """One row per image: its probe geometry (:func:`robustseg.data.geometry.geometry_table`)."""
    geometry_summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    """``quantity, min, median, max`` over the images (:func:`robustseg.data.geometry.summarize_geometry`)."""
    geometry_warnings: list[str] = field(default_factory=list)
    """Where the images' geometries disagree."""


def index_classes(index: pd.DataFrame) -> tuple[str, ...]:
    """The class names of an index table, in label order (its ``px_<class>`` columns)."""
    return tuple(c.removeprefix("px_") for c in index.columns if c.startswith("px_"))


def _small_names(names: tuple[str, ...], small: Sequence[str] | None) -> list[str]:
    """The small structures to count: the given names (each a foreground class), else the fetal ones present."""
    if small is None:
        return [c for c in SMALL_STRUCTURES if c in names[1:]]
    unknown = [c for c in small if c not in names[1:]]
    if unknown:
        raise InputError(f"small structures: {unknown[0]!r} is not a foreground class of the data set "
                         f"(classes: {', '.join(names)})")
    return list(small)


def absent_classes(index: pd.DataFrame) -> list[str]:
    """The foreground classes of an index table that appear in no mask at all (every one when every mask is
    empty)."""
    names = index_classes(index)
    return [c for c in names[1:] if not (index[f"px_{c}"] > 0).any()] if len(index) else []


def absent_classes_text(index: pd.DataFrame) -> str:
    """One sentence on the foreground classes no mask holds (empty when every class appears somewhere): a model
    cannot learn them and their metrics would be meaningless; the usual cause is a wrong colour map."""
    absent = absent_classes(index)
    if not absent:
        return ""
    names = index_classes(index)
    what = ("every mask is empty (background only)" if len(absent) == len(names) - 1
            else f"{display_list(absent)} appear{'s' if len(absent) == 1 else ''} in none of the {len(index)} masks")
    return (f"{what}: a model cannot learn {'them' if len(absent) > 1 else 'it'} and the metrics would be "
            "meaningless; check the masks and the colour map (data.colormap, --colormap)")


def summarize(index: pd.DataFrame, small: Sequence[str] | None = None
              ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str]]:
    """Summary, per-class and image-size tables plus warnings for an index table.

    Classes come from the index (``px_<class>`` columns, the data set's own for nnU-Net data); the summary counts
    the images holding each of the ``small`` structures, and all of them together (default: CSP and LV when
    the data set has them).
    """
    n = len(index)
    names = index_classes(index)
    px_cols = [f"px_{c}" for c in names]
    pixels = index[px_cols].sum().to_numpy(dtype=np.int64)
    total = int(pixels.sum())
    present = [int((index[c] > 0).sum()) for c in px_cols]
    classes = pd.DataFrame(
        {
            "class": list(names),
            "images": present,
            "image_share": [p / n if n else float("nan") for p in present],
            "pixels": pixels,
            "pixel_share": pixels / total if total else np.full(len(pixels), np.nan),
        }
    )
    known = int(index["pixel_mm"].notna().sum())
    small_names = _small_names(names, small)
    has = {c: index[f"px_{c}"].to_numpy() > 0 for c in small_names}
    rows = [
        ("images", n),
        ("patients", int(index["patient_id"].nunique())),
        *((f"images with {display_name(c)}", int(has[c].sum())) for c in small_names),
        *([(f"images with {display_list(small_names)}", int(np.logical_and.reduce(list(has.values())).sum()))]
          if len(small_names) > 1 else []),
        ("images with pixel size", known),
        ("pixel size coverage", known / n if n else float("nan")),
        ("pixel_mm min", float(index["pixel_mm"].min()) if known else float("nan")),
        ("pixel_mm median", float(index["pixel_mm"].median()) if known else float("nan")),
        ("pixel_mm max", float(index["pixel_mm"].max()) if known else float("nan")),
    ]
    if "abnormal" in index.columns:
        rows.append(("abnormal images", int(index["abnormal"].astype(bool).sum())))
    if "calibration" in index.columns:  # a DICOM data set
        rows += _dicom_rows(index)
    # counts stay integers (printed as 85, not 85.0000); shares and millimetres are floats
    summary = pd.DataFrame({"metric": [r[0] for r in rows], "value": pd.Series([r[1] for r in rows], dtype=object)})
    sizes = (
        index.groupby(["width", "height"], sort=True).size().rename("images").reset_index()
        .sort_values(["images", "width", "height"], ascending=[False, True, True], kind="stable")
        .reset_index(drop=True)
    )  # fmt: skip
    warnings = [*index.attrs.get("warnings", [])]
    absent = absent_classes_text(index)
    if absent:
        warnings.append(absent)
    missing = index.loc[index["pixel_mm"].isna(), "image_id"].tolist()
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        warnings.append(
            f"{len(missing)} of {n} images have no pixel size (mm metrics will be NaN for them): {shown}"
        )
    if "calibration" in index.columns:
        warnings += _dicom_warnings(index)
    return summary, classes, sizes, warnings


def _counts(values: pd.Series) -> str:
    """``MONOCHROME2: 3, RGB: 2`` (most frequent first)."""
    counts = values.astype(str).value_counts(sort=True)
    return ", ".join(f"{k}: {int(v)}" for k, v in counts.items())


def _dicom_rows(index: pd.DataFrame) -> list[tuple[str, object]]:
    multi = index["n_frames"] > 1
    frames = sorted(set(index.loc[multi, "frame"].astype(int)))
    return [
        ("images with US region calibration", int((index["calibration"] == "us_region").sum())),
        ("images with probe reference", int(index["probe_x"].notna().sum())),
        ("multi-frame images" + (f" (frame {', '.join(map(str, frames))} read)" if frames else ""), int(multi.sum())),
        ("photometric interpretations", _counts(index["photometric"])),
        ("transfer syntaxes", _counts(index["transfer_syntax"])),
        ("masks", _counts(index["mask_path"].map(lambda p: "DICOM SEG" if not str(p).lower().endswith(".png")
                                                 else "PNG"))),
    ]


def _dicom_warnings(index: pd.DataFrame) -> list[str]:
    out = []
    uncalibrated = index[index["calibration"] != "us_region"]
    for reason, group in uncalibrated.groupby("calibration", sort=True):
        ids = group["image_id"].tolist()
        shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
        out.append(f"{len(ids)} DICOM image(s) without ultrasound region calibration "
                   f"({str(reason).removeprefix('none: ')}): distances in pixels unless meta.csv gives pixel_mm: {shown}")
    by_name = index.loc[index["patient_from"] != "PatientID", "image_id"].tolist()
    if by_name:
        shown = ", ".join(by_name[:5]) + (", ..." if len(by_name) > 5 else "")
        out.append(f"{len(by_name)} DICOM image(s) without PatientID: patient taken from the file name "
                   f"(splits keep each patient on one side only if that is right): {shown}")
    return out


def check_data(
    path: str | Path,
    source: str | None = None,
    plane: str = "Trans-thalamic",
    colormap: str | Colormap = "pascal",
    small_structures: Sequence[str] | None = None,
    frame: int | None = None,
) -> CheckReport:
    """Validate the data set at ``path`` (decoding every image and mask); write nothing.

    ``source`` ``None`` detects ``nnunet`` (``dataset.json`` + ``imagesTr/``), ``folder`` (``images/`` +
    ``masks/``), ``dicom`` (``*.dcm`` files) or else ``fetal_head``. ``frame``: the frame read from multi-frame
    DICOM images. ``small_structures``: the classes whose images the summary counts
    (default: CSP and LV where the data set has them). Bad input raises ``InputError`` naming the file;
    missing pixel sizes become warnings.
    """
    path = Path(os.path.expanduser(str(path)))
    src = source or detect_source(path)
    index = load_index(src, path, plane=plane, colormap=colormap, verify_images=True, frame=frame)
    summary, classes, sizes, warnings = summarize(index, small_structures)
    geometry = index_geometry(index)
    geo_summary, geo_warnings = summarize_geometry(geometry) if len(geometry) else (pd.DataFrame(), [])
    return CheckReport(path, src, index, summary, classes, sizes, warnings, summarize_sizes(index), geometry,
                       geo_summary, geo_warnings)


def index_geometry(index: pd.DataFrame, setting: GeometrySetting | None = None) -> pd.DataFrame:
    """The probe geometry of every image of an index (its ``probe_geometry`` column where given, else estimated
    under ``setting``): :func:`robustseg.data.geometry.geometry_table`."""
    from robustseg.data.io import read_image

    setting = setting or GeometrySetting()
    given = index[setting.column] if setting.column in index.columns else [None] * len(index)
    geos = [resolve_geometry(geometry_image(index, i, read_image), setting, g) for i, g in enumerate(given)]
    return geometry_table(geos, index["image_id"].astype(str).tolist())


def geometry_image(index: pd.DataFrame, i: int, read: Callable[..., np.ndarray]) -> np.ndarray:
    """Row ``i``'s image as a geometry estimate sees it: its frame (DICOM cine), and for DICOM only the pixels
    inside the calibrated ultrasound region (:func:`robustseg.data.dicom.blank_outside_region`)."""
    row = index.iloc[i]
    if "frame" not in index.columns:
        return read(row["image_path"])
    from robustseg.data.dicom import blank_outside_region

    image = read(row["image_path"], int(row["frame"]))
    return blank_outside_region(image, [row.get(k, np.nan) for k in ("region_x0", "region_y0", "region_x1", "region_y1")])


def summarize_sizes(index: pd.DataFrame) -> pd.DataFrame:
    """Min / median / max of image width, height and pixel count, and the number of distinct sizes."""
    w, h = index["width"].astype(np.int64), index["height"].astype(np.int64)
    rows = []
    for name, values in (("width", w), ("height", h), ("pixels", w * h)):
        med = float(values.median()) if len(values) else float("nan")
        rows.append({"quantity": name, "min": int(values.min()) if len(values) else None,
                     "median": int(med) if med == int(med) else med, "max": int(values.max()) if len(values) else None})
    distinct = int(index.groupby(["width", "height"]).ngroups)
    out = pd.DataFrame(rows, columns=["quantity", "min", "median", "max"]).astype(object)
    out.attrs["distinct_sizes"] = distinct
    return out
