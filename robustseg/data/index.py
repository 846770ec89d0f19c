"""The index: one row per image (paths, patient, pixel size, classes present, pixel counts, metadata).

Sources: ``fetal_head`` (layout 1 of the Large-Scale Fetal Head Biometry set), ``phantom`` (the same
layout, generated), ``folder`` (``images/`` + ``masks/`` + optional ``meta.csv``), ``nnunet`` (an nnU-Net v2
raw 2D data set, :mod:`robustseg.data.nnunet`; its classes come from its dataset.json, so its index has
``px_<class>`` for every class and ``has_<class>`` for every foreground class instead of the fetal columns) and
``dicom`` (DICOM ultrasound images with PNG or DICOM SEG masks, :mod:`robustseg.data.dicom`; its index adds
:data:`robustseg.data.dicom.DICOM_COLUMNS`: frame, UIDs, calibration, region and probe).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from robustseg.data.geometry import GEOMETRY_COLUMN
from robustseg.data.io import (
    MAX_IMAGE_PIXELS,
    Colormap,
    image_size,
    orientation_hint,
    read_image,
    read_mask,
    reject_unsupported,
)
from robustseg.data.tables import norm_header, parse_number, read_table, typed_frame
from robustseg.errors import InputError
from robustseg.labels import CLASS_NAMES

SOURCES = ("phantom", "fetal_head", "folder", "nnunet", "dicom")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MASK_EXTS = (".png", ".bmp", ".tif", ".tiff")
INDEX_COLUMNS = [
    "image_id", "image_path", "mask_path", "patient_id", "plane", "pixel_mm", "height", "width",
    "px_background", "px_brain", "px_csp", "px_lv", "has_csp", "has_lv",
]  # fmt: skip
_PATIENT = re.compile(r"patient[_\- ]?(\d+)", re.IGNORECASE)
_LABEL_KEYS = ("label", "image", "image_id", "filename", "file", "image_name", "name")


def patient_from_name(stem: str) -> str:
    """``Patient00168_Plane3_1_of_3`` -> ``Patient00168``; names without a patient number map to themselves."""
    m = _PATIENT.search(stem)
    return f"Patient{m.group(1)}" if m else stem


def _child(parent: Path, name: str, *, is_dir: bool = True) -> Path | None:
    """The child of ``parent`` whose name equals ``name`` case-insensitively (exact match preferred)."""
    if (parent / name).exists() and (parent / name).is_dir() == is_dir:
        return parent / name
    matches = sorted(p for p in parent.iterdir() if p.name.lower() == name.lower() and p.is_dir() == is_dir)
    return matches[0] if matches else None


def _files(folder: Path, exts: tuple[str, ...], what: str = "image") -> dict[str, Path]:
    """``{stem: path}`` of the ``exts`` files of ``folder`` (hidden files, such as macOS ``._name`` copies on shared
    drives, are skipped). Image-like files robustseg cannot read are named (a GIF, a JPEG mask), never skipped."""
    out: dict[str, Path] = {}
    folded: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        if p.suffix.lower() not in exts:
            reject_unsupported(p, what)
            if what == "mask" and p.suffix.lower() in (".jpg", ".jpeg"):
                raise InputError(f"{p}: a JPEG mask cannot hold exact labels (lossy compression changes the colours "
                                 f"at every edge); expected {', '.join(exts)} masks")
            continue
        if p.stem in out:
            raise InputError(
                f"{p}: two files share the name {p.stem!r} in {folder}; expected unique names"
            )
        twin = folded.get(p.stem.casefold())
        if twin is not None:
            raise InputError(f"{p}: {twin.name} and {p.name} differ only in case (one file on Windows and macOS); "
                             "expected names that differ in more than case")
        out[p.stem] = p
        folded[p.stem.casefold()] = p
    return out


def list_images(folder: Path) -> list[Path]:
    """The images of an image folder (``perturb``, ``qc``), sorted; unreadable formats named (:func:`_files`)."""
    return [p for _, p in sorted(_files(Path(folder), IMAGE_EXTS).items(), key=lambda kv: kv[1].name)]


def image_key(name: str) -> str:
    """The image id a label in a CSV refers to: the file name without a known image extension.

    ``case.01.png`` -> ``case.01``; ``case.01`` -> ``case.01`` (``.01`` is not an extension, so it is kept:
    a label without extension matches the full file name, never a shorter one).
    """
    text = str(name).strip()
    suffix = Path(text).suffix
    return text[: -len(suffix)] if suffix and suffix.lower() in IMAGE_EXTS else text


def _parse_float(raw: str, path: Path, key: str, line: int | None = None) -> float:
    at = f" (line {line})" if line else ""
    if isinstance(raw, float | int) and not isinstance(raw, bool):
        value = float(raw)
    else:
        try:
            value = parse_number(str(raw))
        except ValueError:
            raise InputError(f"{path}: pixel size {raw!r} for {key!r}{at} is not a number; expected e.g. 0.1234") from None
    if value != value:
        return float("nan")
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"{path}: pixel size {raw!r} for {key!r}{at}; expected a positive number of mm")
    return value


def read_pixel_csv(path: str | Path) -> dict[str, float]:
    """Parse a pixel-size CSV into ``{image id: mm per pixel}``.

    Read by :func:`robustseg.data.tables.read_table` (encodings, ``,`` / ``;`` / tab, empty Excel rows and
    columns); header variants (``Label``/``label``/``filename``; ``Pixel in mm`` with any spacing or case) and
    decimal commas, also unquoted in a comma-separated file (``case.png,0,123``). Empty values become NaN.
    Labels match image files on the full name, with or without extension (:func:`image_key`). Repeated rows for
    one image must agree; conflicting values are an InputError naming both.
    """
    table = read_table(path, "pixel-size CSV")
    path = table.path
    label_col = table.find(*_LABEL_KEYS)
    px_col = next((i for i, h in enumerate(table.header) if "pixel" in norm_header(h)
                   or norm_header(h) in ("mm", "pixel mm", "spacing")), None)
    if label_col is None or px_col is None:
        raise InputError(f"{path}: pixel-size CSV header {list(table.header)!r} not understood; expected columns "
                         "'Label' and 'Pixel in mm'")
    out: dict[str, float] = {}
    seen: dict[str, tuple[int, str]] = {}
    for row, lineno in zip(table.rows, table.lines, strict=True):
        raw = row[px_col]
        nxt = px_col + 1
        if (table.sep == "," and nxt < len(row) and table.header[nxt].startswith("column ") and row[nxt].isdigit()
                and raw.lstrip("-").isdigit()):
            raw = f"{raw},{row[nxt]}"  # an unquoted decimal comma split the value in two
        label = row[label_col]
        if not label:
            raise InputError(f"{path}: line {lineno} has a pixel size but no label; expected the image file name in "
                             f"column {table.header[label_col]!r}")
        key = image_key(label)
        value = _parse_float(raw, path, key, lineno)
        if key in out and not (out[key] == value or (np.isnan(out[key]) and np.isnan(value))):
            first_line, first_raw = seen[key]
            raise InputError(
                f"{path}: conflicting pixel sizes for {key!r}: {first_raw!r} (line {first_line}) and "
                f"{raw!r} (line {lineno}); expected one value per image"
            )
        out[key] = value
        seen.setdefault(key, (lineno, raw))
    return out


def _pair(images: dict[str, Path], masks: dict[str, Path], img_dir: Path, mask_dir: Path) -> None:
    if not images and not masks:
        raise InputError(f"{img_dir}: no images found (and no masks in {mask_dir}); expected PNG files")
    if not images:
        raise InputError(f"{img_dir}: no images found; expected PNG files matching the masks in {mask_dir}")
    no_mask = sorted(set(images) - set(masks))
    no_image = sorted(set(masks) - set(images))

    def names(xs: list[str]) -> str:
        return ", ".join(xs[:8]) + (f", ... ({len(xs)} in all)" if len(xs) > 8 else "")

    if no_mask:
        raise InputError(f"{mask_dir}: no mask for {len(no_mask)} image(s) of {img_dir}: {names(no_mask)}")
    if no_image:
        raise InputError(f"{img_dir}: no image for {len(no_image)} mask(s) of {mask_dir}: {names(no_image)}")


def _image_size(path: Path, verify: bool, frame: int | None = None) -> tuple[int, int]:
    if verify or frame is not None:
        return read_image(path, frame).shape  # type: ignore[return-value]
    return image_size(path)


def _rows(images: dict[str, Path], masks: dict[str, Path], plane: str, colormap, verify: bool,
          frame: int | None = None) -> list[dict]:
    rows = []
    for stem in sorted(images):
        ip, mp = images[stem], masks[stem]
        h, w = _image_size(ip, verify, frame)
        lab = read_mask(mp, colormap)
        if lab.shape != (h, w):
            raise InputError(
                f"{mp}: mask size {lab.shape[1]}x{lab.shape[0]} differs from image {ip.name} size {w}x{h}; "
                f"expected equal sizes{orientation_hint(ip)}"
            )
        rows.append(
            {
                "image_id": stem, "image_path": str(ip), "mask_path": str(mp),
                "patient_id": patient_from_name(stem), "plane": plane, "pixel_mm": float("nan"),
                "height": int(h), "width": int(w), **_class_counts(lab),
            }
        )  # fmt: skip
    return rows


def _class_counts(lab: np.ndarray) -> dict[str, int | bool]:
    """``px_<class>`` pixel counts and ``has_csp`` / ``has_lv`` of a fetal label mask."""
    counts = np.bincount(lab.ravel(), minlength=len(CLASS_NAMES))
    return {"px_background": int(counts[0]), "px_brain": int(counts[1]), "px_csp": int(counts[2]),
            "px_lv": int(counts[3]), "has_csp": bool(counts[2] > 0), "has_lv": bool(counts[3] > 0)}


def _read_meta(path: Path) -> pd.DataFrame:
    """``meta.csv`` through :func:`robustseg.data.tables.read_table`: ids (image and patient) stay strings, other
    columns become numbers or booleans where every value is one (:func:`robustseg.data.tables.typed_frame`)."""
    table = read_table(path, "metadata CSV")
    key = table.find(*_LABEL_KEYS)
    if key is None:
        raise InputError(f"{path}: no 'image_id' column in {list(table.header)}; expected one row per image")
    lines = dict(enumerate(table.lines))
    meta = typed_frame(table, id_columns=(table.header[key], "patient_id", "patient"))
    meta = meta.rename(columns={table.header[key]: "image_id"})
    blank = [i for i, v in enumerate(meta["image_id"]) if not v]
    if blank:
        raise InputError(f"{path}: line {lines[blank[0]]} has values but no image_id; expected one row per image")
    meta["image_id"] = [image_key(x) for x in meta["image_id"]]
    folded = pd.Series([i.casefold() for i in meta["image_id"]])
    if folded.duplicated().any():
        k = int(np.flatnonzero(folded.duplicated().to_numpy())[0])
        first = int(np.flatnonzero((folded == folded[k]).to_numpy())[0])
        same = "appears twice" if meta["image_id"][k] == meta["image_id"][first] else (
            f"and {meta['image_id'][first]!r} (line {lines[first]}) differ only in case (one file on Windows and macOS)")
        raise InputError(f"{path}: image_id {meta['image_id'][k]!r} (line {lines[k]}) {same}; expected one row per "
                         "image")
    return meta


def _finish(rows: list[dict], meta: pd.DataFrame | None, meta_path: Path | None,
            columns: list[str] = INDEX_COLUMNS) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=columns)
    warnings: list[str] = []
    if meta is not None:
        assert meta_path is not None
        meta = _match_case(meta, df["image_id"], meta_path, warnings)
        unknown = sorted(set(meta["image_id"]) - set(df["image_id"]))
        if unknown:
            stripped = {i.lstrip("0") for i in df["image_id"]}
            zeros = [u for u in unknown if u.isdigit() and u.lstrip("0") in stripped]
            hint = (f" ({zeros[0]!r} matches a file name but for leading zeros: a spreadsheet may have read the ids as "
                    "numbers; format the column as text)") if zeros else ""
            raise InputError(
                f"{meta_path}: rows for unknown images {unknown[:5]}; expected names of existing images{hint}"
            )
        extra = meta.drop(
            columns=[
                c
                for c in meta.columns
                if c in columns and c not in ("image_id", "patient_id", "pixel_mm", GEOMETRY_COLUMN)
            ]
        )
        if "patient_id" in extra.columns:  # a blank cell keeps the patient of the file name
            given = {i: str(p).strip() for i, p in zip(extra["image_id"], extra["patient_id"], strict=True)
                     if isinstance(p, str) and p.strip()}
            df["patient_id"] = [given.get(i, p) for i, p in zip(df["image_id"], df["patient_id"], strict=True)]
            extra = extra.drop(columns="patient_id")
        if GEOMETRY_COLUMN in extra.columns and GEOMETRY_COLUMN in columns:  # given in meta.csv: it wins
            given = dict(zip(extra["image_id"], extra[GEOMETRY_COLUMN], strict=True))
            df[GEOMETRY_COLUMN] = [given[i] if isinstance(given.get(i), str) and given[i].strip() else g
                                   for i, g in zip(df["image_id"], df[GEOMETRY_COLUMN], strict=True)]
            extra = extra.drop(columns=GEOMETRY_COLUMN)
        if "pixel_mm" in extra.columns:
            px = dict(zip(extra["image_id"], extra["pixel_mm"], strict=True))
            given = [_parse_float(px[i], meta_path, i) if i in px else np.nan for i in df["image_id"]]
            # meta.csv wins where it gives a size; elsewhere the source's own (a DICOM calibration) stays
            df["pixel_mm"] = [g if np.isfinite(g) else old for g, old in zip(given, df["pixel_mm"], strict=True)]
            extra = extra.drop(columns="pixel_mm")
        df = df.merge(extra, on="image_id", how="left")
    df["pixel_mm"] = df["pixel_mm"].astype("float64")
    for col in ("height", "width", *(c for c in columns if c.startswith("px_"))):
        df[col] = df[col].astype("int64")
    for col in (c for c in columns if c.startswith("has_")):
        df[col] = df[col].astype(bool)
    for col in ("image_id", "image_path", "mask_path", "patient_id", "plane"):
        df[col] = df[col].astype("str")
    df["patient_id"] = _one_spelling(df["patient_id"], warnings)
    out = df.sort_values("image_id", kind="stable").reset_index(drop=True)
    out.attrs["warnings"] = warnings
    return out


def _match_case(meta: pd.DataFrame, image_ids: pd.Series, meta_path: Path, warnings: list[str]) -> pd.DataFrame:
    """Rows of ``meta.csv`` whose image id matches a file only when case is ignored (``patient7_...`` for
    ``Patient7_...``: the same file on Windows and macOS) refer to that file; noted in ``warnings``."""
    exact = set(image_ids)
    by_fold: dict[str, list[str]] = {}
    for i in image_ids:
        by_fold.setdefault(i.casefold(), []).append(i)
    renamed = {}
    for i in meta["image_id"]:
        if i not in exact and len(by_fold.get(i.casefold(), [])) == 1:
            renamed[i] = by_fold[i.casefold()][0]
    if renamed:
        shown = ", ".join(f"{a} -> {b}" for a, b in list(renamed.items())[:3])
        warnings.append(f"{meta_path}: {len(renamed)} image id(s) match a file only when case is ignored, and were "
                        f"read as that file: {shown}")
        meta = meta.assign(image_id=[renamed.get(i, i) for i in meta["image_id"]])
    return meta


def _one_spelling(patients: pd.Series, warnings: list[str]) -> list[str]:
    """Patient ids that differ only in case or surrounding spaces (``P07`` / ``p07 ``) are one patient, so a split
    never puts them on both sides; each gets the first spelling in sorted order, noted in ``warnings``."""
    first: dict[str, str] = {}
    for p in sorted(set(patients)):
        first.setdefault(p.strip().casefold(), p)
    merged = sorted({p for p in patients if first[p.strip().casefold()] != p})
    if merged:
        warnings.append(f"{len(merged)} patient id(s) differ from another only in case or spaces and were merged with "
                        f"it (one patient, one side of every split): "
                        + ", ".join(f"{p!r} -> {first[p.strip().casefold()]!r}" for p in merged[:5]))
    return [first[p.strip().casefold()] for p in patients]


def find_plane_dir(path: Path, plane: str) -> Path:
    """The ``<plane>`` folder: ``path`` itself or its child (case-insensitive)."""
    if not path.is_dir():
        raise InputError(f"{path}: not a folder; expected a data set folder")
    if path.name.lower() == plane.lower() and _child(path, plane) is not None:
        return path
    found = _child(path, plane)
    if found is None:
        planes = sorted(p.name for p in path.iterdir() if p.is_dir())
        raise InputError(f"{path}: no plane folder {plane!r}; found {planes or 'nothing'}")
    return found


def _layout1(path: Path, plane: str, colormap, verify: bool, frame: int | None = None) -> pd.DataFrame:
    root = find_plane_dir(path, plane)
    img_dir = _child(root, root.name) or _child(root, plane)
    if img_dir is None:
        raise InputError(f"{root}: no image folder {root.name!r}; expected {root.name}/{root.name}/*.png")
    pascal = next(
        (p for p in sorted(root.iterdir()) if p.is_dir() and p.name.lower().endswith("-pascal")), None
    )
    if pascal is None:
        raise InputError(
            f"{root}: no mask folder '{root.name}-PASCAL'; expected {root.name}-PASCAL/SegmentationClass"
        )
    mask_dir = _child(pascal, "SegmentationClass") or pascal
    images, masks = _files(img_dir, IMAGE_EXTS), _files(mask_dir, MASK_EXTS, "mask")
    _pair(images, masks, img_dir, mask_dir)
    rows = _rows(images, masks, plane, colormap, verify, frame)
    csvs = sorted(
        p for p in root.iterdir() if p.is_file() and re.search(r"pixel.?size.*\.csv$", p.name, re.I)
    )
    if csvs:
        sizes = read_pixel_csv(csvs[0])
        for r in rows:
            r["pixel_mm"] = sizes.get(r["image_id"], float("nan"))
    meta_path = _child(root, "meta.csv", is_dir=False)
    meta = _read_meta(meta_path) if meta_path else None
    return _finish(rows, meta, meta_path)


def _folder(path: Path, plane: str, colormap, verify: bool, frame: int | None = None) -> pd.DataFrame:
    if not path.is_dir():
        raise InputError(f"{path}: not a folder; expected images/ and masks/ inside")
    img_dir, mask_dir = _child(path, "images"), _child(path, "masks")
    if img_dir is None or mask_dir is None:
        raise InputError(f"{path}: expected sub-folders 'images/' and 'masks/'")
    images, masks = _files(img_dir, IMAGE_EXTS), _files(mask_dir, MASK_EXTS, "mask")
    _pair(images, masks, img_dir, mask_dir)
    rows = _rows(images, masks, plane, colormap, verify, frame)
    meta_path = _child(path, "meta.csv", is_dir=False)
    meta = _read_meta(meta_path) if meta_path else None
    if meta is not None:
        px_col = next((c for c in meta.columns if c != "pixel_mm" and "pixel" in norm_header(c)), None)
        if px_col is not None and "pixel_mm" not in meta.columns:
            meta = meta.rename(columns={px_col: "pixel_mm"})
    return _finish(rows, meta, meta_path)


def load_index(
    source: str,
    path: str | Path,
    *,
    plane: str = "Trans-thalamic",
    colormap: str | Colormap = "pascal",
    verify_images: bool = False,
    frame: int | None = None,
) -> pd.DataFrame:
    """Index the data set at ``path``: one row per image, columns ``INDEX_COLUMNS`` plus metadata.

    ``verify_images`` decodes every image (catches truncated files); otherwise only headers are read. ``frame``:
    the frame (1-based) read from each multi-frame image (DICOM cine, multi-page TIFF); without it a multi-frame
    image is an error.
    """
    if source not in SOURCES:
        raise InputError(f"source {source!r}: unknown; expected one of {list(SOURCES)}")
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, int) or frame < 1):
        raise InputError(f"frame {frame!r}: expected a frame number, 1 or more (DICOM numbering)")
    if frame is not None and source == "phantom":
        raise InputError(f"frame {frame!r}: the phantom's images have one frame each; expected no frame")
    path = Path(os.path.expanduser(str(path)))
    if not path.exists():
        raise InputError(f"{path}: does not exist; expected a data set folder")
    if source == "dicom":
        return _dicom(path, plane, colormap, verify_images, frame)
    if source == "folder":
        index = _folder(path, plane, colormap, verify_images, frame)
    elif source == "nnunet":
        index = _nnunet(path, verify_images)
    else:
        index = _layout1(path, plane, colormap, verify_images, frame)
    if frame is not None:  # multi-page images are read at this frame (single-page ones as they are)
        index["frame"] = int(frame)
    return index


def _dicom(path: Path, plane: str, colormap, verify: bool, frame: int | None) -> pd.DataFrame:
    from robustseg.data.dicom import DICOM_COLUMNS, dicom_images

    if not path.is_dir():
        raise InputError(f"{path}: not a folder; expected a folder of DICOM files")
    rows = dicom_images(path, frame, MAX_IMAGE_PIXELS)
    for r in rows:
        lab = read_mask(r["mask_path"], colormap)
        if verify:
            read_image(r["image_path"], r["frame"])
        if lab.shape != (r["height"], r["width"]):
            raise InputError(f"{r['mask_path']}: mask size {lab.shape[1]}x{lab.shape[0]} differs from image "
                             f"{Path(r['image_path']).name} size {r['width']}x{r['height']}; expected equal sizes")
        r.update(_class_counts(lab), plane=plane)
        r["patient_id"] = r["patient_id"] or patient_from_name(r["image_id"])
    meta_path = _child(path, "meta.csv", is_dir=False)
    meta = _read_meta(meta_path) if meta_path else None
    return _finish(rows, meta, meta_path, INDEX_COLUMNS + DICOM_COLUMNS)


def _nnunet(path: Path, verify: bool) -> pd.DataFrame:
    from robustseg.data.nnunet import nnunet_rows

    rows, names = nnunet_rows(path, verify)
    for r in rows:
        r["patient_id"] = patient_from_name(r["image_id"])
    columns = [*INDEX_COLUMNS[:8], *(f"px_{c}" for c in names), *(f"has_{c}" for c in names[1:])]
    meta_path = _child(path, "meta.csv", is_dir=False)
    meta = _read_meta(meta_path) if meta_path else None
    return _finish(rows, meta, meta_path, columns)


def dataset_classes(source: str, path: str | Path) -> tuple[str, ...]:
    """The class names of a data set: from dataset.json for ``nnunet``, the fetal classes otherwise."""
    if source == "nnunet":
        from robustseg.data.nnunet import read_dataset_json

        return read_dataset_json(path)[0]
    return CLASS_NAMES


def detect_source(path: str | Path) -> str:
    """``nnunet`` when ``path`` holds ``dataset.json`` and ``imagesTr/``, ``folder`` when it holds ``images/`` and
    ``masks/``, ``dicom`` when it or a folder below holds ``*.dcm`` / ``*.dicom`` files, else ``fetal_head``."""
    path = Path(os.path.expanduser(str(path)))
    if path.is_dir() and (path / "dataset.json").is_file() and (path / "imagesTr").is_dir():
        return "nnunet"
    if path.is_dir() and _child(path, "images") is not None and _child(path, "masks") is not None:
        return "folder"
    if path.is_dir() and any(p.suffix.lower() in (".dcm", ".dicom") for p in path.rglob("*")):
        return "dicom"
    return "fetal_head"
