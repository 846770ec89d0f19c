"""Shared pieces of the metrics package: empty-structure policies, table columns, input checks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from robustseg.errors import InputError

EMPTY_POLICIES: tuple[str, ...] = ("nan", "one")
"""Valid ``empty_policy`` names (see the module docstring)."""

DEFAULT_EMPTY_POLICY = "nan"

PRESENCE_CASES: tuple[str, ...] = ("both", "ref_only", "pred_only", "neither")

OVERLAP_METRICS: tuple[str, ...] = ("dice", "iou", "precision", "recall", "f1")

PER_IMAGE_COLUMNS: tuple[str, ...] = (
    "image_id", "class", "tp", "fp", "fn", "ref_pixels", "pred_pixels", "presence",
    "dice", "iou", "precision", "recall", "f1", "hd95_mm", "nsd", "pixel_mm", "pixel_mm_known",
    "pixel_accuracy",
)  # fmt: skip
"""Column order of the per-image table (docs/architecture.md)."""


def check_empty_policy(policy: str) -> str:
    """Return ``policy`` if it is a known empty-structure policy, else raise :class:`InputError`."""
    if policy not in EMPTY_POLICIES:
        raise InputError(f"empty_policy: unknown value {policy!r}; expected one of {', '.join(EMPTY_POLICIES)}")
    return policy


def _check_labels(
    pred: np.ndarray, ref: np.ndarray, num_classes: int, check_values: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise InputError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    if pred.ndim == 2:
        pred, ref = pred[None], ref[None]
    if pred.ndim != 3:
        raise InputError(f"label maps must be (H, W) or (N, H, W); got shape {pred.shape}")
    if num_classes < 1:
        raise InputError(f"num_classes must be >= 1, got {num_classes}")
    for name, arr in (("prediction", pred), ("reference", ref)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise InputError(f"{name} labels must be integers, got dtype {arr.dtype}")
        if check_values:
            _check_range(arr, num_classes, name)
    return pred, ref


def _check_range(arr: np.ndarray, num_classes: int, name: str) -> None:
    if not arr.size:
        return
    low = 0 if np.issubdtype(arr.dtype, np.unsignedinteger) else int(arr.min())
    high = int(arr.max())
    if low < 0 or high >= num_classes:
        raise InputError(f"{name} labels must lie in 0..{num_classes - 1}; found values {low}..{high}")



def _pixel_sizes(pixel_mm: float | Sequence[float] | np.ndarray | None, n: int) -> np.ndarray:
    if pixel_mm is None:
        return np.full(n, np.nan)
    arr = np.broadcast_to(np.asarray(pixel_mm, dtype=np.float64), (n,)).copy()
    bad = np.isfinite(arr) & (arr <= 0)
    if bad.any():
        raise InputError(f"pixel_mm must be positive (or NaN when unknown); got {arr[bad][0]!r}")
    return arr


