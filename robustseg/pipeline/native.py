"""Native-resolution evaluation: predictions mapped back to each image's original size and scored there.

The network sees letterboxed ``S x S`` inputs; published numbers (nnU-Net's ``evaluate_folder``, the reference
thesis) are at the image's own resolution. For every image the probabilities lose their padding, are resized
bilinearly to the original height x width (:func:`robustseg.data.transforms.unpad_resize`), and only then
turned into labels (argmax). Masks are read from disk at native size and every metric, boundary distance and
structure measurement uses the native pixel size. Work is done a chunk of images at a time, so memory holds
the native masks of one test set (uint8) plus one chunk of native probabilities.

Only the part of an image that can hold foreground is labelled (:func:`native_labels`): a native pixel whose
bilinear source pixels all have background as their argmax is background, exactly (background is class 0, which
wins ties, and bilinear weights are non-negative, so the interpolated background probability is at least every
other class's, rounding included). The reference masks' boundaries are extracted once per test set
(:meth:`NativeSet.prepared`) and reused for every perturbation. The tables are those of resizing and scoring
every image in full, bit for bit (``tests/test_native.py`` against ``tests/_reference_eval.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from robustseg.data.transforms import letterbox_box, unpad_resize
from robustseg.labels import CLASS_NAMES, SMALL_CLASSES
from robustseg.metrics.boundary import Box, Outline, outlines

PREDICTIONS = "predictions"
"""Folder of a run holding its native-size predicted masks."""

PREDICTIONS_SEG = "predictions-seg"
"""Folder of a run on DICOM images holding the same predictions as DICOM SEG (``<image_id>.dcm``)."""

CHUNK = 16
"""Images upsampled at a time (bounds memory: CHUNK x C x H x W float32)."""


@dataclass(frozen=True)
class NativeSet:
    """Reference masks of a set of images at their original size, with the native pixel size."""

    image_ids: list[str]
    masks: list[np.ndarray]
    """One uint8 ``(H, W)`` label mask per image (sizes may differ)."""
    pixel_mm: np.ndarray
    """mm per native pixel (NaN where unknown)."""
    outlines: tuple[list[Outline | None], ...] | None = None
    """Per image, the :func:`robustseg.metrics.boundary.outlines` of its mask (:meth:`prepared`), or None."""

    @property
    def shapes(self) -> list[tuple[int, int]]:
        return [m.shape for m in self.masks]  # type: ignore[misc]

    def prepared(self, num_classes: int) -> NativeSet:
        """The same set with the masks' outlines extracted once, for scoring it against many predictions."""
        return replace(self, outlines=tuple(outlines(m, num_classes) for m in self.masks))


def read_native(index_rows: pd.DataFrame, colormap: Any = "pascal") -> NativeSet:
    """Read the masks of ``index_rows`` (rows of :func:`robustseg.data.index.load_index`) at native size."""
    from robustseg.data.io import read_mask

    masks = [read_mask(p, colormap) for p in index_rows["mask_path"]]
    return NativeSet(index_rows["image_id"].astype(str).tolist(), masks,
                     index_rows["pixel_mm"].to_numpy(dtype=np.float64))


def shape_groups(shapes: Sequence[tuple[int, int]], chunk: int = CHUNK) -> Iterator[list[int]]:
    """Indices of images of one shape, at most ``chunk`` at a time, in first-appearance order.

    >>> list(shape_groups([(2, 3), (2, 3), (4, 4), (2, 3)], chunk=2))
    [[0, 1], [3], [2]]
    """
    by: dict[tuple[int, int], list[int]] = {}
    for i, s in enumerate(shapes):
        by.setdefault(tuple(s), []).append(i)  # type: ignore[arg-type]
    for idx in by.values():
        for start in range(0, len(idx), chunk):
            yield idx[start:start + chunk]


def _first_argmax(values: np.ndarray) -> np.ndarray:
    """``values.argmax(axis=-1)`` as uint8 for NaN-free ``(..., C)`` values (the first maximum wins ties)."""
    best = values[..., 0].copy()
    out = np.zeros(best.shape, dtype=np.uint8)
    for c in range(1, values.shape[-1]):
        v = values[..., c]
        out[v > best] = c
        np.maximum(best, v, out=best)
    return out


def _source_span(first: int, last: int, src: int, dst: int) -> tuple[int, int]:
    """Destination pixels ``[start, stop)`` whose bilinear source pixels (``src`` resized to ``dst``) may fall in
    ``first..last``, with two pixels of margin on each side."""
    scale = dst / src
    start = int(np.floor((first - 0.5) * scale - 0.5)) - 2
    stop = int(np.ceil((last + 1.5) * scale - 0.5)) + 2
    return max(start, 0), min(stop, dst)


def native_labels(probs: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, Box | None]:
    """Labels ``(H, W)`` uint8 of letterboxed probabilities ``(C, S, S)`` mapped back to ``shape``, and a box
    outside which every label is background (None: all background).

    Equal to ``unpad_resize(probs, H, W).argmax(axis=0)``: the argmax is taken only where a bilinear source
    pixel has a foreground argmax (module docstring); probabilities with NaN take the plain path.
    """
    h, w = shape
    probs = np.asarray(probs, dtype=np.float32)
    top, left, rows, cols = letterbox_box(int(h), int(w), probs.shape[-1])
    crop = probs[:, top:top + rows, left:left + cols]
    if np.isnan(crop).any():
        return unpad_resize(probs, h, w).argmax(axis=0).astype(np.uint8), (0, h, 0, w)
    out = np.zeros((h, w), dtype=np.uint8)
    fg = crop.argmax(axis=0) != 0
    rr = np.flatnonzero(fg.any(axis=1))
    if not rr.size:
        return out, None
    cc = np.flatnonzero(fg.any(axis=0))
    y0, y1 = _source_span(int(rr[0]), int(rr[-1]), rows, h)
    x0, x1 = _source_span(int(cc[0]), int(cc[-1]), cols, w)
    # the same call as unpad_resize (same input, same values); only the window is read
    up = cv2.resize(np.ascontiguousarray(crop.transpose(1, 2, 0)), (int(w), int(h)), interpolation=cv2.INTER_LINEAR)
    if up.ndim == 2:  # cv2 drops a single channel
        up = up[..., None]
    out[y0:y1, x0:x1] = _first_argmax(up[y0:y1, x0:x1])
    return out, (y0, y1, x0, x1)


def native_argmax(probs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Labels ``(N, H, W)`` uint8 of letterboxed probabilities ``(N, C, S, S)`` mapped back to ``shape``."""
    h, w = shape
    out = np.empty((len(probs), h, w), dtype=np.uint8)
    for k, p in enumerate(probs):
        out[k] = native_labels(p, (h, w))[0]
    return out


def native_predictions(probs: np.ndarray, native: NativeSet, chunk: int = CHUNK,
                       ) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
    """``(indices, predicted labels (n, H, W), reference masks (n, H, W))`` per chunk of equal-shape images.

    Masks of the probabilities' own size (model resolution) are scored without resizing.
    """
    for idx, pred, _ in _predictions(probs, native, chunk):
        yield idx, pred, np.stack([native.masks[i] for i in idx])


def _predictions(probs: np.ndarray, native: NativeSet, chunk: int = CHUNK,
                 ) -> Iterator[tuple[list[int], np.ndarray, list[Box | None | str]]]:
    """``(indices, predicted labels (n, H, W), per image a box outside which the labels are 0, or "auto")``."""
    for idx in shape_groups(native.shapes, chunk):
        shape = native.masks[idx[0]].shape
        if tuple(shape) == tuple(probs.shape[-2:]):
            yield idx, probs[idx].argmax(axis=1).astype(np.uint8), ["auto"] * len(idx)
            continue
        pred = np.empty((len(idx), *shape), dtype=np.uint8)
        boxes: list[Box | None | str] = []
        for k, i in enumerate(idx):
            pred[k], box = native_labels(probs[i], shape)
            boxes.append(box)
        yield idx, pred, boxes


def write_predictions(folder: str | Path, probs: np.ndarray, image_ids: Sequence[str],
                      shapes: Sequence[tuple[int, int]], colormap: Any = "pascal",
                      also: Callable[[int, np.ndarray], Any] | None = None) -> Path:
    """Write each image's native-size prediction as ``<folder>/<image_id>.png`` (palette PNG, nnU-Net style);
    ``also(k, labels)`` receives the same labels of image ``k`` (e.g. :func:`seg_writer`)."""
    from robustseg.data.io import write_mask

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for k, (image_id, (h, w)) in enumerate(zip(image_ids, shapes, strict=True)):
        labels = native_argmax(probs[k:k + 1], (int(h), int(w)))[0]
        write_mask(folder / f"{image_id}.png", labels, colormap)
        if also is not None:
            also(k, labels)
    return folder


def seg_writer(folder: str | Path, index_rows: pd.DataFrame, class_names: Sequence[str], run_id: str,
               version: str = "0") -> Callable[[int, np.ndarray], Path]:
    """``write(k, labels)``: the prediction of row ``k`` of ``index_rows`` (a DICOM index) as
    ``<folder>/<image_id>.dcm``, a DICOM SEG referencing its source image (:mod:`robustseg.data.dicom_seg`)."""
    from robustseg.data.dicom_seg import write_seg

    rows = index_rows.reset_index(drop=True)

    def write(k: int, labels: np.ndarray) -> Path:
        r = rows.iloc[k]
        return write_seg(Path(folder) / f"{r['image_id']}.dcm", r["image_path"], labels, class_names,
                         run_id=run_id, image_id=str(r["image_id"]), frame=int(r["frame"]), version=version)

    return write


def _in_order(parts: list[pd.DataFrame], order: list[str]) -> pd.DataFrame:
    out = pd.concat(parts, ignore_index=True)
    pos = {k: i for i, k in enumerate(order)}
    key = out["image_id"].map(pos)
    return out.iloc[np.argsort(key.to_numpy(), kind="stable")].reset_index(drop=True)


def evaluate_probs(probs: np.ndarray, native: NativeSet, ev: dict[str, Any], *,
                   class_names: Sequence[str] = CLASS_NAMES, small_classes: Sequence[int] = SMALL_CLASSES,
                   postprocess: Sequence[bool] = (False,),
                   features: bool = False) -> tuple[dict[bool, pd.DataFrame], pd.DataFrame]:
    """Score letterboxed probabilities ``(N, C, S, S)`` against ``native`` at each image's own size.

    Returns ``({postprocessed: per-image table}, features)`` where the tables are those of
    :func:`robustseg.metrics.per_image_table` (rows in ``native.image_ids`` order) for each value in
    ``postprocess``; ``features`` (when asked) holds :func:`robustseg.qc.anomaly.structure_features` of the raw
    predicted (``source`` = ``pred``) and reference (``ref``) masks. ``ev`` holds the ``[eval]`` options
    ``min_component_px``, ``empty_policy``, ``boundary``, ``nsd_tolerance_mm``. Reference masks of the
    probabilities' own size are scored at that (model) resolution. Post-processing (closing + largest
    component) applies to ``small_classes``.
    """
    from robustseg.metrics import per_image_table
    from robustseg.metrics.postprocess import postprocess as postprocess_labels
    from robustseg.qc.anomaly import structure_features

    if len(probs) != len(native.image_ids):
        raise ValueError(f"{len(probs)} probability maps for {len(native.image_ids)} reference masks")
    num_classes = len(class_names)
    tables: dict[bool, list[pd.DataFrame]] = {bool(p): [] for p in postprocess}
    feats: list[pd.DataFrame] = []
    for idx, pred, boxes in _predictions(probs, native):
        ids = [native.image_ids[i] for i in idx]
        mm = native.pixel_mm[idx]
        ref = np.stack([native.masks[i] for i in idx])
        ref_outlines = ([native.outlines[i] for i in idx] if native.outlines is not None and ev["boundary"]
                        else None)
        for post in tables:
            pred_outlines = None
            if post:
                labels = postprocess_labels(pred, classes=small_classes, min_size=ev["min_component_px"])
            else:
                labels = pred
                if ev["boundary"]:
                    pred_outlines = [outlines(p, num_classes, box) for p, box in zip(labels, boxes, strict=True)]
            tables[post].append(per_image_table(
                labels, ref, image_ids=ids, pixel_mm=mm, class_names=class_names, empty_policy=ev["empty_policy"],
                boundary=ev["boundary"], nsd_tolerance_mm=ev["nsd_tolerance_mm"], pred_outlines=pred_outlines,
                ref_outlines=ref_outlines))
        if features:
            feats.append(structure_features(pred, pixel_mm=mm, image_ids=ids, class_names=class_names)
                         .assign(source="pred"))
            feats.append(structure_features(ref, pixel_mm=mm, image_ids=ids, class_names=class_names)
                         .assign(source="ref"))
    out = {post: _in_order(parts, native.image_ids) for post, parts in tables.items()}
    f = pd.DataFrame()
    if feats:
        f = pd.concat([_in_order([x for x in feats if x["source"].iat[0] == s], native.image_ids)
                       for s in ("pred", "ref")], ignore_index=True)
    return out, f


def map_native(fn: Callable[..., pd.DataFrame], probs: np.ndarray, native: NativeSet, **kw: Any) -> pd.DataFrame:
    """``fn(pred, ref, image_ids=..., **kw)`` over native-size chunks of ``probs`` vs ``native``, concatenated
    in ``native.image_ids`` order (for per-image functions such as :func:`robustseg.qc.anomaly.anomaly_scores`)."""
    parts = [fn(pred, ref, image_ids=[native.image_ids[i] for i in idx], **kw)
             for idx, pred, ref in native_predictions(probs, native)]
    return _in_order(parts, native.image_ids)


def native_features(probs: np.ndarray, native: NativeSet, **kw: Any) -> pd.DataFrame:
    """Structure features of the native-size predictions of ``probs`` (native pixel size)."""
    from robustseg.qc.anomaly import structure_features

    parts = [structure_features(pred, pixel_mm=native.pixel_mm[idx], image_ids=[native.image_ids[i] for i in idx],
                                **kw)
             for idx, pred, _ in native_predictions(probs, native)]
    return _in_order(parts, native.image_ids)


def mask_features(native: NativeSet, **kw: Any) -> pd.DataFrame:
    """Structure features of the reference masks of ``native`` at native size."""
    from robustseg.qc.anomaly import structure_features

    parts = []
    for idx in shape_groups(native.shapes):
        parts.append(structure_features(np.stack([native.masks[i] for i in idx]), pixel_mm=native.pixel_mm[idx],
                                        image_ids=[native.image_ids[i] for i in idx], **kw))
    return _in_order(parts, native.image_ids) if parts else pd.DataFrame()


def pack_masks(native: NativeSet) -> tuple[np.ndarray, np.ndarray]:
    """``(masks (N, Hmax, Wmax) uint8 zero-padded bottom/right, shapes (N, 2))`` for an ``.npz``."""
    hw = np.array(native.shapes, dtype=np.int64).reshape(-1, 2)
    hmax, wmax = (hw.max(axis=0) if len(hw) else (0, 0))
    out = np.zeros((len(hw), int(hmax), int(wmax)), dtype=np.uint8)
    for k, m in enumerate(native.masks):
        out[k, :m.shape[0], :m.shape[1]] = m
    return out, hw


def unpack_masks(image_ids: Sequence[str], masks: np.ndarray, hw: np.ndarray, pixel_mm: np.ndarray) -> NativeSet:
    """Inverse of :func:`pack_masks`."""
    return NativeSet([str(i) for i in image_ids], [masks[k, :h, :w] for k, (h, w) in enumerate(np.asarray(hw))],
                     np.asarray(pixel_mm, dtype=np.float64))
