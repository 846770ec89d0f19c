"""Boundary metrics per image and class: 95th-percentile Hausdorff distance (HD95) and normalised surface Dice.

Conventions (identical to MONAI's ``HausdorffDistanceMetric(percentile=95)`` and ``SurfaceDiceMetric`` with
``use_subvoxels=False``, checked in ``tests/test_boundary.py``):

* The boundary of a class is the set of its pixels that have a 4-neighbour of another class or lie on
  the image border (MONAI: ``mask XOR binary_erosion(mask)`` with scipy's cross structure and zero border).
* Distances are Euclidean between pixel centres, scaled by the image's pixel size in mm (isotropic).
  An unknown pixel size (NaN) counts as 1, so distances are in pixels; the table flags it with
  ``pixel_mm_known = False``.
* HD95 is the larger of the two directed 95th percentiles (linear interpolation, as ``torch.quantile``).
* NSD at tolerance ``tau``: the fraction of boundary pixels of both masks lying within ``tau`` mm of the
  other mask's boundary (inclusive; a relative slack of 1e-9 absorbs floating-point error at ``d == tau``).

Empty structures follow :mod:`robustseg.metrics`: when exactly one mask is empty NSD is 0 and HD95 is the
image diagonal in mm (MONAI gives ``inf``, which would make every mean infinite); when both are empty the
policy decides (``"nan"``: NaN, ``"one"``: NSD 1, HD95 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from scipy import ndimage

from robustseg.metrics._common import DEFAULT_EMPTY_POLICY, _check_labels, _pixel_sizes, check_empty_policy

_SLACK = 1e-9


def boundary_pixels(labels: np.ndarray) -> np.ndarray:
    """Boolean ``(N, H, W)``: pixels with a 4-neighbour of another label or on the image border.

    The boundary of class ``c`` is ``boundary_pixels(labels) & (labels == c)``; one pass serves all classes.
    """
    lab = np.asarray(labels)
    if lab.ndim == 2:
        lab = lab[None]
    edge = np.zeros(lab.shape, dtype=bool)
    edge[:, 0, :] = edge[:, -1, :] = True
    edge[:, :, 0] = edge[:, :, -1] = True
    diff_v = lab[:, 1:, :] != lab[:, :-1, :]
    diff_h = lab[:, :, 1:] != lab[:, :, :-1]
    edge[:, 1:, :] |= diff_v
    edge[:, :-1, :] |= diff_v
    edge[:, :, 1:] |= diff_h
    edge[:, :, :-1] |= diff_h
    return edge


def directed_distances(
    from_edges: np.ndarray, to_edges: np.ndarray, spacing: float
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each boundary pixel of ``from_edges`` to ``to_edges`` and back, both non-empty.

    Works on the crop holding both boundaries: one distance transform per direction.
    """
    both = from_edges | to_edges
    rows = np.flatnonzero(both.any(axis=1))
    cols = np.flatnonzero(both.any(axis=0))
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    a, b = from_edges[window], to_edges[window]
    return distance_to(b, spacing)[a], distance_to(a, spacing)[b]


def distance_to(edges: np.ndarray, spacing: float) -> np.ndarray:
    """Euclidean distance (mm) of every pixel to the nearest ``True`` pixel of ``edges`` (non-empty, 2D).

    OpenCV's exact (``DIST_MASK_PRECISE``) transform: 3.8x faster than ``scipy.ndimage.distance_transform_edt``
    on 959 x 661 masks, equal to it within 4e-8 mm in HD95 and exactly in NSD on the phantom.
    """
    if edges.shape[0] > 1 and edges.shape[1] > 1:
        d = cv2.distanceTransform((~edges).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        return d.astype(np.float64) * spacing
    return ndimage.distance_transform_edt(~edges, sampling=(spacing, spacing))  # 1-pixel-wide crops


def boundary_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    num_classes: int,
    *,
    pixel_mm: float | Sequence[float] | np.ndarray | None = None,
    nsd_tolerance_mm: float = 1.0,
    percentile: float = 95.0,
    empty_policy: str = DEFAULT_EMPTY_POLICY,
) -> dict[str, np.ndarray]:
    """HD (at ``percentile``) and NSD per image and class: ``{"hd95_mm": (N, C), "nsd": (N, C)}``.

    ``pixel_mm``: one isotropic pixel size or one per image; NaN or None means unknown (1 pixel).

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.zeros((1, 9, 9), dtype=np.uint8); ref[0, 2:6, 2:6] = 1
    >>> pred = np.roll(ref, 1, axis=2)   # shifted by one pixel
    >>> m = boundary_metrics(pred, ref, 2, pixel_mm=0.5, nsd_tolerance_mm=0.5)
    >>> float(m["hd95_mm"][0, 1]), round(float(m["nsd"][0, 1]), 3)
    (0.5, 1.0)
    """
    check_empty_policy(empty_policy)
    if not np.isfinite(nsd_tolerance_mm) or nsd_tolerance_mm < 0:
        raise ValueError(f"nsd_tolerance_mm must be finite and >= 0, got {nsd_tolerance_mm}")
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must lie in 0..100, got {percentile}")
    pred, ref = _check_labels(pred, ref, num_classes)
    n, h, w = pred.shape
    spacing = _pixel_sizes(pixel_mm, n)
    spacing = np.where(np.isfinite(spacing), spacing, 1.0)
    edge_pred = boundary_pixels(pred)
    edge_ref = boundary_pixels(ref)
    # presence per image and class, vectorised: bincount of labels with an image offset
    offs = (np.arange(n) * num_classes)[:, None]
    pred_present = np.bincount((pred.reshape(n, -1) + offs).ravel(), minlength=n * num_classes) > 0
    ref_present = np.bincount((ref.reshape(n, -1) + offs).ravel(), minlength=n * num_classes) > 0
    pred_present = pred_present.reshape(n, num_classes)
    ref_present = ref_present.reshape(n, num_classes)

    diag = np.hypot(h - 1, w - 1) * spacing
    hd = np.where(pred_present != ref_present, diag[:, None], np.nan)
    nsd = np.where(pred_present != ref_present, 0.0, np.nan)
    if empty_policy == "one":
        neither = ~pred_present & ~ref_present
        hd[neither], nsd[neither] = 0.0, 1.0
    q = percentile / 100.0
    for i, c in zip(*np.nonzero(pred_present & ref_present), strict=True):
        d_pr, d_rp = directed_distances(edge_pred[i] & (pred[i] == c), edge_ref[i] & (ref[i] == c), spacing[i])
        hd[i, c] = max(np.quantile(d_pr, q), np.quantile(d_rp, q))
        limit = nsd_tolerance_mm * (1 + _SLACK) + _SLACK
        nsd[i, c] = (np.count_nonzero(d_pr <= limit) + np.count_nonzero(d_rp <= limit)) / (d_pr.size + d_rp.size)
    return {"hd95_mm": hd, "nsd": nsd}
