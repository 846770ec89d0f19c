"""Segmentation metrics over label maps, numpy only (no torch).

- ``overlap``: confusion counts and Dice / IoU / precision / recall / F1 from them;
- ``boundary``: HD95 and NSD in mm;
- ``table``: the per-image table (one row per image x class) and its aggregations;
- ``postprocess``: closing + largest component, and nnU-Net's keep-if-no-class-gets-worse rule;
- ``folder``: ``evaluate-folder`` (saved masks against references).

The empty-structure rule (``empty_policy``) is described in :mod:`robustseg.metrics.overlap`.
"""

from robustseg.metrics._common import (
    DEFAULT_EMPTY_POLICY,
    EMPTY_POLICIES,
    OVERLAP_METRICS,
    PER_IMAGE_COLUMNS,
    PRESENCE_CASES,
    check_empty_policy,
)
from robustseg.metrics.boundary import boundary_metrics, boundary_pixels, directed_distances
from robustseg.metrics.overlap import (
    confusion_counts,
    confusion_matrices,
    counts_from_matrices,
    dice_from_counts,
    f1_from_counts,
    iou_from_counts,
    overlap_metrics,
    pixel_accuracy_from_matrices,
    precision_from_counts,
    presence_codes,
    recall_from_counts,
)
from robustseg.metrics.table import (
    aggregate_global,
    aggregate_per_image,
    iou_summary,
    per_image_table,
    presence_counts,
    summarise_table,
)

__all__ = [
    "DEFAULT_EMPTY_POLICY",
    "EMPTY_POLICIES",
    "OVERLAP_METRICS",
    "PER_IMAGE_COLUMNS",
    "PRESENCE_CASES",
    "aggregate_global",
    "aggregate_per_image",
    "boundary_metrics",
    "boundary_pixels",
    "check_empty_policy",
    "confusion_counts",
    "confusion_matrices",
    "counts_from_matrices",
    "dice_from_counts",
    "directed_distances",
    "f1_from_counts",
    "iou_from_counts",
    "iou_summary",
    "overlap_metrics",
    "per_image_table",
    "pixel_accuracy_from_matrices",
    "precision_from_counts",
    "presence_codes",
    "presence_counts",
    "recall_from_counts",
    "summarise_table",
]
