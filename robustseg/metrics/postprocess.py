"""Optional post-processing of label maps and the nnU-Net-like rule that decides whether to keep it.

:func:`postprocess` applies, per image and per selected class (reference study: CSP and LV), a
morphological closing and then keeps only the largest connected component, provided it has at least
``min_size`` pixels (reference: 5); smaller structures are removed entirely. Pixels removed from a
class take the label of the nearest pixel outside the post-processed classes (so a spurious CSP blob
inside the brain becomes brain, one in the background becomes background). Pixels a closing adds are
taken only from labels outside the post-processed classes.

:func:`decide_postprocessing` compares the per-image tables of raw and post-processed predictions on
validation data and keeps post-processing only if no class gets worse (and at least one improves).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from robustseg.errors import InputError
from robustseg.labels import SMALL_CLASSES

_CROSS = ndimage.generate_binary_structure(2, 1)
_SQUARE = ndimage.generate_binary_structure(2, 2)


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (yy * yy + xx * xx) <= radius * radius


def _largest_component(mask: np.ndarray, min_size: int, connectivity: int) -> np.ndarray:
    """The largest connected component of ``mask`` if it has >= ``min_size`` pixels, else an empty mask."""
    lab, n = ndimage.label(mask, structure=_SQUARE if connectivity == 2 else _CROSS)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    best = int(sizes.argmax())
    if sizes[best] < min_size:
        return np.zeros_like(mask)
    return lab == best


def postprocess(
    labels: np.ndarray,
    *,
    classes: Sequence[int] = SMALL_CLASSES,
    closing_radius: int = 1,
    min_size: int = 5,
    connectivity: int = 2,
) -> np.ndarray:
    """Closing + keep-largest-component for ``classes`` on label maps ``(H, W)`` or ``(N, H, W)``.

    ``closing_radius`` 0 skips the closing; ``connectivity`` 1 (4-neighbours) or 2 (8-neighbours).
    Returns a new array of the same shape and dtype.
    """
    if closing_radius < 0 or min_size < 0:
        raise InputError(f"closing_radius and min_size must be >= 0, got {closing_radius} and {min_size}")
    if connectivity not in (1, 2):
        raise InputError(f"connectivity must be 1 or 2, got {connectivity}")
    arr = np.asarray(labels)
    squeeze = arr.ndim == 2
    batch = arr[None] if squeeze else arr
    if batch.ndim != 3:
        raise InputError(f"label maps must be (H, W) or (N, H, W); got shape {arr.shape}")
    out = batch.copy()
    classes = list(classes)
    structure = _disk(closing_radius) if closing_radius > 0 else None
    for i in range(out.shape[0]):
        lab = out[i]
        protected = np.isin(lab, classes)
        removed = np.zeros(lab.shape, dtype=bool)
        for c in classes:
            mask = lab == c
            if not mask.any():
                continue
            if structure is not None:
                closed = ndimage.binary_closing(mask, structure=structure, border_value=0)
                mask = mask | (closed & ~protected)
            kept = _largest_component(mask, min_size, connectivity)
            gone = (lab == c) & ~kept
            lab[kept] = c  # adds the pixels the closing filled in, where they belong to the kept component
            removed |= gone
        if removed.any():
            source = ~np.isin(lab, classes)
            if source.any():
                _, (rr, cc) = ndimage.distance_transform_edt(~source, return_indices=True)
                lab[removed] = lab[rr[removed], cc[removed]]
            else:
                lab[removed] = 0
    return out[0] if squeeze else out


@dataclass(frozen=True)
class PostprocessDecision:
    """Outcome of :func:`decide_postprocessing`: ``apply`` and the per-class comparison behind it."""

    apply: bool
    comparison: pd.DataFrame
    reason: str


def compare_postprocessing(
    raw_table: pd.DataFrame,
    post_table: pd.DataFrame,
    *,
    metric: str = "dice",
    by: Sequence[str] = (),
) -> pd.DataFrame:
    """Raw and post-processed numbers side by side per class.

    Columns ``*by, class, <metric>_raw, <metric>_post, delta`` (per-image means, NaN excluded) and
    ``global_<metric>_raw``, ``global_<metric>_post`` (pooled counts).
    """
    from robustseg.metrics._common import OVERLAP_METRICS
    from robustseg.metrics.table import aggregate_global, aggregate_per_image

    by = [by] if isinstance(by, str) else list(by)
    keys = [*by, "class"]
    pi_raw = aggregate_per_image(raw_table, by, metrics=[metric])[[*keys, f"{metric}_mean"]]
    pi_post = aggregate_per_image(post_table, by, metrics=[metric])[[*keys, f"{metric}_mean"]]
    out = pi_raw.merge(pi_post, on=keys, suffixes=("_raw", "_post"), validate="one_to_one")
    out = out.rename(columns={f"{metric}_mean_raw": f"{metric}_raw", f"{metric}_mean_post": f"{metric}_post"})
    out["delta"] = out[f"{metric}_post"] - out[f"{metric}_raw"]
    if metric in OVERLAP_METRICS:
        g_raw = aggregate_global(raw_table, by)[[*keys, metric]].rename(columns={metric: f"global_{metric}_raw"})
        g_post = aggregate_global(post_table, by)[[*keys, metric]].rename(columns={metric: f"global_{metric}_post"})
        out = out.merge(g_raw, on=keys).merge(g_post, on=keys)
    return out


def decide_postprocessing(
    raw_table: pd.DataFrame,
    post_table: pd.DataFrame,
    *,
    metric: str = "dice",
    classes: Sequence[str] | None = None,
    tolerance: float = 0.0,
    higher_is_better: bool = True,
) -> PostprocessDecision:
    """Keep post-processing only if no class gets worse and at least one gets better (validation data).

    Compares per-image mean ``metric`` per class (both tables must hold the same images and classes);
    ``classes`` restricts the comparison (default: every class in the tables). A class is "worse" when
    its mean moves the wrong way by more than ``tolerance``; a class that is NaN in both is ignored, one
    that becomes NaN (or stops being NaN) counts as worse (or better).
    """
    for name, t in (("raw_table", raw_table), ("post_table", post_table)):
        if metric not in t.columns:
            raise InputError(f"{name}: no column {metric!r}")
    ids_raw = set(map(tuple, raw_table[["image_id", "class"]].to_numpy()))
    ids_post = set(map(tuple, post_table[["image_id", "class"]].to_numpy()))
    if ids_raw != ids_post:
        raise InputError(
            f"raw_table and post_table must hold the same (image_id, class) rows; {len(ids_raw ^ ids_post)} differ"
        )
    comp = compare_postprocessing(raw_table, post_table, metric=metric)
    if classes is not None:
        comp = comp[comp["class"].isin(list(classes))].reset_index(drop=True)
    sign = 1.0 if higher_is_better else -1.0
    raw, post = comp[f"{metric}_raw"].to_numpy(float), comp[f"{metric}_post"].to_numpy(float)
    gain = sign * (post - raw)
    became_nan = np.isnan(post) & ~np.isnan(raw)
    lost_nan = np.isnan(raw) & ~np.isnan(post)
    worse = became_nan | (gain < -tolerance)
    better = lost_nan | (gain > tolerance)
    comp = comp.assign(worse=worse, better=better)
    if worse.any():
        names = ", ".join(comp.loc[worse, "class"].astype(str))
        return PostprocessDecision(False, comp, f"post-processing makes {metric} worse for: {names}")
    if not better.any():
        return PostprocessDecision(False, comp, f"post-processing changes no class's {metric}")
    names = ", ".join(comp.loc[better, "class"].astype(str))
    return PostprocessDecision(True, comp, f"post-processing improves {metric} for: {names}; no class worse")
