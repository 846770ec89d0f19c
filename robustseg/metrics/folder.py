"""Score a folder of saved predicted masks against a folder of reference masks (like nnU-Net's evaluate_folder).

Masks are matched by file stem; palette, RGB colour-map and integer-label PNGs are all read through
:func:`robustseg.data.io.read_mask`. A prediction without a reference (or the reverse) is an error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustseg._io import write_csv, write_text
from robustseg._outdir import Output, claim_output_dir, expand
from robustseg.data.index import MASK_EXTS
from robustseg.errors import InputError
from robustseg.labels import CLASS_NAMES, SMALL_STRUCTURES
from robustseg.metrics._common import DEFAULT_EMPTY_POLICY, check_empty_policy
from robustseg.metrics.postprocess import compare_postprocessing
from robustseg.metrics.postprocess import postprocess as postprocess_labels
from robustseg.metrics.table import per_image_table, summarise_table

MASK_EXTENSIONS: tuple[str, ...] = MASK_EXTS
CHUNK = 16
"""Images of one size scored together (memory holds one chunk of masks, not the folders)."""
LOSSY_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg")
"""Mask files that are rejected with a clear line instead of being skipped silently."""

POLICY_TEXT = {
    "nan": "Dice/IoU/precision/recall/F1/NSD/HD95 are NaN and excluded from per-image means when a structure "
    "is absent from both reference and prediction; when it is absent from only one, the overlap metrics and "
    "NSD are 0 and HD95 is the image diagonal in mm.",
    "one": "A structure absent from both reference and prediction scores 1 (HD95 0); when it is absent from "
    "only one, the overlap metrics and NSD are 0 and HD95 is the image diagonal in mm.",
}


def _list_masks(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise InputError(f"{folder}: {what} folder not found")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in LOSSY_EXTENSIONS and not p.name.startswith("."):
            raise InputError(f"{p}: a JPEG {what} mask cannot be scored (lossy compression changes label values "
                             f"at every edge); expected {', '.join(MASK_EXTENSIONS)} masks")
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in MASK_EXTENSIONS:
            from robustseg.data.io import reject_unsupported

            reject_unsupported(p, f"{what} mask")
        if p.is_file() and p.suffix.lower() in MASK_EXTENSIONS and not p.name.startswith("."):
            if p.stem in found:
                raise InputError(f"{folder}: two {what} masks share the name {p.stem!r} ({found[p.stem].name}, {p.name})")
            found[p.stem] = p
    if not found:
        raise InputError(f"{folder}: no {what} masks ({', '.join(MASK_EXTENSIONS)}) found")
    return found


def _names_line(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def evaluate_folder(
    pred_dir: str | Path,
    gt_dir: str | Path,
    *,
    pixel_size_csv: str | Path | None = None,
    classes: Sequence[str] = CLASS_NAMES,
    colormap: str = "pascal",
    empty_policy: str = DEFAULT_EMPTY_POLICY,
    nsd_tolerance_mm: float = 1.0,
    boundary: bool = True,
    postprocess: bool = False,
    min_component_px: int = 5,
    progress: Callable[[int, int], None] | None = None,
    small_structures: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-image table (docs/architecture.md schema) and a JSON-ready summary for two mask folders.

    ``pixel_size_csv`` (columns ``Label``, ``Pixel in mm``) gives mm per pixel by image stem; images it
    does not list, or all images without it, are measured in pixels (``pixel_mm_known`` False).
    ``progress(done, total)`` is called after each image is read. With ``postprocess`` the predictions
    are also scored after closing + keep-largest-component of the ``small_structures`` (class names; default:
    the fetal ``csp`` and ``lv`` among ``classes``): the table gets a ``postprocessed`` column (raw rows False) and the summary a ``postprocessing`` list
    with raw and post-processed numbers side by side; the other summary entries stay those of the raw
    predictions.
    """
    from robustseg.data.io import read_mask

    check_empty_policy(empty_policy)
    classes = tuple(classes)
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise InputError(f"classes: expected at least two distinct names, got {','.join(classes)!r}")
    small = _small_indices(classes, small_structures)
    if postprocess and not small:
        raise InputError(f"--postprocess: needs the small structures to post-process (--small-structures NAME,...) "
                         f"among the classes {','.join(classes)}")
    pred_dir, gt_dir = expand(pred_dir), expand(gt_dir)
    preds = _list_masks(pred_dir, "prediction")
    refs = _list_masks(gt_dir, "reference")
    no_pred = sorted(set(refs) - set(preds))
    no_ref = sorted(set(preds) - set(refs))
    if no_pred or no_ref:
        parts = []
        if no_pred:
            parts.append(f"{len(no_pred)} reference(s) without prediction in {pred_dir}: {_names_line(no_pred)}")
        if no_ref:
            parts.append(f"{len(no_ref)} prediction(s) without reference in {gt_dir}: {_names_line(no_ref)}")
        raise InputError("; ".join(parts))
    sizes: dict[str, float] = {}
    if pixel_size_csv is not None:
        from robustseg.data.index import read_pixel_csv

        sizes = read_pixel_csv(pixel_size_csv)
    ids = sorted(refs)
    variants = (False, True) if postprocess else (False,)
    tables: list[pd.DataFrame] = []

    def score(items: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
        gid = [i for i, _, _ in items]
        pred = np.stack([p for _, p, _ in items])
        ref = np.stack([r for _, _, r in items])
        pixel_mm = np.array([sizes.get(i, np.nan) for i in gid])
        for post in variants:
            labels = postprocess_labels(pred, classes=small, min_size=min_component_px) if post else pred
            t = per_image_table(
                labels,
                ref,
                image_ids=gid,
                class_names=classes,
                pixel_mm=pixel_mm,
                empty_policy=empty_policy,
                boundary=boundary,
                nsd_tolerance_mm=nsd_tolerance_mm,
            )
            tables.append(t.assign(postprocessed=post) if postprocess else t)

    # scored CHUNK images of one size at a time, as they are read: memory holds one chunk, not the folders
    groups: dict[tuple[int, int], list[tuple[str, np.ndarray, np.ndarray]]] = {}
    for k, image_id in enumerate(ids):
        pair = []
        for path in (preds[image_id], refs[image_id]):
            lab = read_mask(path, colormap, num_classes=256)  # checked against the class list just below
            if lab.size and int(lab.max()) >= len(classes):
                raise InputError(
                    f"{path}: label {int(lab.max())} found but only {len(classes)} classes ({','.join(classes)}) given"
                )
            pair.append(lab)
        if pair[0].shape != pair[1].shape:
            raise InputError(
                f"{preds[image_id]}: prediction shape {pair[0].shape} differs from reference {refs[image_id]} shape {pair[1].shape}"
            )
        group = groups.setdefault(pair[1].shape, [])
        group.append((image_id, pair[0], pair[1]))
        if len(group) == CHUNK:
            score(group)
            groups[pair[1].shape] = []
        if progress is not None:
            progress(k + 1, len(ids))
    for group in groups.values():
        if group:
            score(group)
    table = pd.concat(tables, ignore_index=True)
    order = {i: k for k, i in enumerate(ids)}
    keys = ["postprocessed", "_i", "_c"] if postprocess else ["_i", "_c"]
    table = (
        table.assign(_i=table["image_id"].map(order), _c=table["class"].map({c: k for k, c in enumerate(classes)}))
        .sort_values(keys)
        .drop(columns=["_i", "_c"])
        .reset_index(drop=True)
    )
    raw = table[~table["postprocessed"]] if postprocess else table
    summary = summarise(raw, empty_policy=empty_policy, nsd_tolerance_mm=nsd_tolerance_mm,
                        small=[classes[k] for k in small])
    if postprocess:
        comparison = compare_postprocessing(raw, table[table["postprocessed"]])
        summary["postprocessing"] = [{k: _clean(v) for k, v in row.items()} for row in comparison.to_dict("records")]
    summary["pred_dir"], summary["gt_dir"] = str(pred_dir), str(gt_dir)
    summary["pixel_size_csv"] = None if pixel_size_csv is None else str(pixel_size_csv)
    return table, summary


def _small_indices(classes: tuple[str, ...], small_structures: Sequence[str] | None) -> list[int]:
    """Label indices of the small structures: the named ones (each must be a foreground class), or by default
    the fetal small structures (CSP, LV) among ``classes``."""
    if small_structures is None:
        return [k for k, c in enumerate(classes) if c in SMALL_STRUCTURES]
    names = [str(c).strip() for c in small_structures]
    unknown = [c for c in names if c not in classes[1:]]
    if unknown or not names:
        raise InputError(f"small structures {','.join(names)!r}: {unknown[0] if unknown else 'none'} is not a "
                         f"foreground class; expected names among {','.join(classes[1:])}")
    return [classes.index(c) for c in names]


def _clean(value: Any) -> Any:
    """JSON-safe scalars: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value


def _records(df: pd.DataFrame, key: str = "class") -> dict[str, dict[str, Any]]:
    return {str(row[key]): {k: _clean(v) for k, v in row.items() if k != key} for row in df.to_dict("records")}


def summarise(
    table: pd.DataFrame, *, empty_policy: str = DEFAULT_EMPTY_POLICY, nsd_tolerance_mm: float | None = None,
    small: Sequence[str] | None = None,
) -> dict[str, Any]:
    """JSON-ready summary of a per-image table: global, per-image and presence counts per class, mIoU/FWIoU
    (``miou_small`` over ``small``, CSP and LV by default)."""
    tables = summarise_table(table, empty_policy=empty_policy, small=small)
    iou = tables["iou_summary"].iloc[0]
    known = table.drop_duplicates("image_id")["pixel_mm_known"]
    return {
        "n_images": int(table["image_id"].nunique()),
        "classes": [str(c) for c in pd.unique(table["class"])],
        "empty_policy": empty_policy,
        "empty_policy_text": POLICY_TEXT[empty_policy],
        "nsd_tolerance_mm": nsd_tolerance_mm,
        "images_with_pixel_size": int(known.sum()),
        "global": _records(tables["global"]),
        "per_image": _records(tables["per_image"]),
        "presence": _records(tables["presence"]),
        "iou_summary": {k: _clean(v) for k, v in iou.items()},
    }


EVALUATION_FILES = ("per_image.csv", "summary.json")


def _legacy_evaluation(folder: Path) -> list[str] | None:
    """An evaluation folder written before output markers existed: only ``per_image.csv`` and ``summary.json``."""
    names = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
    return list(EVALUATION_FILES) if names and names <= set(EVALUATION_FILES) else None


def check_output(out_dir: str | Path, *, force: bool = False, inputs: Sequence[str | Path] = ()) -> Output:
    """Claim ``-o OUT`` before any evaluation (:func:`robustseg._outdir.claim_output_dir`): a writable folder (or
    creatable as one), not a file, outside the mask folders ``inputs``, and new, empty or an earlier evaluation's
    folder unless ``force``."""
    return claim_output_dir(out_dir, "evaluate-folder", force=force, inputs=inputs, what="-o/--output",
                            legacy=_legacy_evaluation)


def write_evaluation(out_dir: str | Path | Output, per_image: pd.DataFrame, summary: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``out_dir/per_image.csv`` (adds an ``image`` column equal to ``image_id``) and ``summary.json``; both
    or neither (a staging folder moved into place)."""
    out = out_dir if isinstance(out_dir, Output) else check_output(out_dir)
    table = per_image.copy()
    table.insert(0, "image", table["image_id"])
    with out.staging() as stage:
        write_csv(stage / EVALUATION_FILES[0], table)
        write_text(stage / EVALUATION_FILES[1], json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return out.path / EVALUATION_FILES[0], out.path / EVALUATION_FILES[1]
