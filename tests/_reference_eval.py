"""The plain native-resolution scoring path, kept as the reference that the fast path must equal bit for bit.

Every image's probabilities are resized in full (``unpad_resize``), argmax'ed everywhere, and its boundaries
found on the whole image; distances come from scipy's exact Euclidean distance transform (nearest boundary
pixel, then ``float32(sqrt(dy^2 + dx^2)) * pixel_mm``). No crops, windows or reuse across conditions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage

from robustseg.data.transforms import unpad_resize
from robustseg.metrics import per_image_table
from robustseg.metrics.boundary import boundary_pixels
from robustseg.metrics.postprocess import postprocess as postprocess_labels
from robustseg.pipeline.native import NativeSet


def plain_labels(probs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return unpad_resize(probs, *shape).argmax(axis=0).astype(np.uint8)


def _distances(a: np.ndarray, b: np.ndarray, spacing: float) -> np.ndarray:
    """Distance of each pixel of ``a`` (row-major) to the nearest pixel of ``b``."""
    _, (rr, cc) = ndimage.distance_transform_edt(~b, return_indices=True)
    yy, xx = np.indices(b.shape)
    d2 = (yy - rr) ** 2 + (xx - cc) ** 2
    return (np.sqrt(d2.astype(np.float32)).astype(np.float64) * spacing)[a]


def plain_boundary(pred: np.ndarray, ref: np.ndarray, num_classes: int, spacing: float, tol: float,
                   empty_policy: str) -> tuple[np.ndarray, np.ndarray]:
    """HD95 and NSD per class of one image, from whole-image boundaries."""
    ep, er = boundary_pixels(pred)[0], boundary_pixels(ref)[0]
    spacing = spacing if np.isfinite(spacing) else 1.0
    h, w = pred.shape
    hd, nsd = np.full(num_classes, np.nan), np.full(num_classes, np.nan)
    limit = tol * (1 + 1e-9) + 1e-9
    for c in range(num_classes):
        a, b = ep & (pred == c), er & (ref == c)
        if a.any() and b.any():
            d_ab, d_ba = _distances(a, b, spacing), _distances(b, a, spacing)
            hd[c] = max(np.quantile(d_ab, 0.95), np.quantile(d_ba, 0.95))
            nsd[c] = (np.count_nonzero(d_ab <= limit) + np.count_nonzero(d_ba <= limit)) / (d_ab.size + d_ba.size)
        elif a.any() != b.any():
            hd[c], nsd[c] = np.hypot(h - 1, w - 1) * spacing, 0.0
        elif empty_policy == "one":
            hd[c], nsd[c] = 0.0, 1.0
    return hd, nsd


def plain_tables(probs: np.ndarray, native: NativeSet, ev: dict, class_names: Sequence[str],
                 small_classes: Sequence[int], postprocess: Sequence[bool] = (False,)) -> dict[bool, pd.DataFrame]:
    """Per-image tables of ``probs`` against ``native``, one image at a time, the plain way."""
    c = len(class_names)
    out: dict[bool, list[pd.DataFrame]] = {bool(p): [] for p in postprocess}
    for k, (image_id, ref) in enumerate(zip(native.image_ids, native.masks, strict=True)):
        pred = plain_labels(probs[k], ref.shape)
        for post in out:
            lab = postprocess_labels(pred, classes=small_classes, min_size=ev["min_component_px"]) if post else pred
            t = per_image_table(lab[None], ref[None], image_ids=[image_id], pixel_mm=native.pixel_mm[k:k + 1],
                                class_names=class_names, empty_policy=ev["empty_policy"], boundary=False)
            if ev["boundary"]:
                hd, nsd = plain_boundary(lab, ref, c, native.pixel_mm[k], ev["nsd_tolerance_mm"], ev["empty_policy"])
                t["hd95_mm"], t["nsd"] = hd, nsd
            out[post].append(t)
    return {post: pd.concat(parts, ignore_index=True) for post, parts in out.items()}
