"""Overlap metrics from per-image confusion counts, the per-image table, and its aggregations.

Layering follows MONAI's ``compute_dice`` + ``aggregate``: pure array functions return per-image,
per-class values (``(N, C)`` arrays); :func:`per_image_table` turns them into the long table of
``docs/architecture.md``; the ``aggregate_*`` functions reduce that table. Nothing here reads files.

Empty structures (the ``empty_policy`` parameter) -- per image and class, with ``tp, fp, fn`` the
confusion counts and the *presence case* one of ``both | ref_only | pred_only | neither``:

* ``both``: every metric is its formula (``dice = 2tp / (2tp + fp + fn)`` and so on).
* ``ref_only`` (structure missed) and ``pred_only`` (structure hallucinated): every overlap metric is
  0 (Dice, IoU, precision, recall, F1; a ratio whose own denominator is 0, e.g. precision with an
  empty prediction, is defined as 0 because the image holds an error of that class), NSD is 0 and
  HD95 is the image diagonal in mm (the largest distance the image can hold; MONAI returns ``inf``).
* ``neither``: policy ``"nan"`` (default, nnU-Net's convention, MONAI ``ignore_empty=True``) gives
  NaN for every metric, so the image is excluded from per-image means of that class; policy ``"one"``
  (MONAI ``ignore_empty=False``) scores the correct absence as perfect: 1 for the overlap metrics and
  NSD, 0 for HD95.

Global (pooled) metrics sum ``tp, fp, fn`` over images first, so they need no policy unless a class is
absent everywhere, where the same policy applies.
"""

from __future__ import annotations

import numpy as np

from robustseg.metrics._common import DEFAULT_EMPTY_POLICY, _check_labels, _check_range, check_empty_policy


def confusion_matrices(pred: np.ndarray, ref: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-image confusion matrices ``int64 (N, C, C)``, ``[n, r, p]`` = pixels with reference r, prediction p.

    One ``bincount`` per image over the code ``ref * C + pred`` (measured 20x faster than one bincount over
    the whole batch, see ``benchmarks/bench_metrics.py``). For ``C <= 16`` the uint8 codes of two
    neighbouring pixels are read as one uint16 (a free view), which halves the elements bincount visits;
    the pair histogram is folded back into the single-pixel histogram by summing its rows and columns.
    """
    pred, ref = _check_labels(pred, ref, num_classes, check_values=False)
    n = pred.shape[0]
    k = num_classes * num_classes
    out = np.empty((n, k), dtype=np.int64)
    flat_pred, flat_ref = pred.reshape(n, -1), ref.reshape(n, -1)
    npix = flat_pred.shape[1]
    if k <= 256:
        even = npix - npix % 2
        # chunks of images keep the code array in cache between the range check, the coding and bincount
        step = max(1, (1 << 21) // max(npix, 1))
        for s in range(0, n, step):
            p, r = flat_pred[s : s + step], flat_ref[s : s + step]
            _check_range(p, num_classes, "prediction")
            _check_range(r, num_classes, "reference")
            codes = np.multiply(r, num_classes, dtype=np.uint8, casting="unsafe")
            np.add(codes, p, out=codes, casting="unsafe")
            for j, row in enumerate(codes):
                # the uint16 is first + 256 * second (or the reverse): both marginals are summed anyway
                hist = np.bincount(row[:even].view(np.uint16), minlength=256 * k)[: 256 * k].reshape(k, 256)[:, :k]
                out[s + j] = hist.sum(axis=0) + hist.sum(axis=1)
                if even != npix:
                    out[s + j, row[-1]] += 1
    else:
        _check_range(flat_pred, num_classes, "prediction")
        _check_range(flat_ref, num_classes, "reference")
        codes = ref.reshape(n, -1).astype(np.int64) * num_classes + pred.reshape(n, -1)
        for i in range(n):
            out[i] = np.bincount(codes[i], minlength=k)
    return out.reshape(n, num_classes, num_classes)


def confusion_counts(pred: np.ndarray, ref: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-image per-class ``tp, fp, fn`` as ``int64 (N, C, 3)`` from label maps ``(N, H, W)`` or ``(H, W)``.

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.array([[0, 1], [1, 1]], dtype=np.uint8)
    >>> pred = np.array([[1, 1], [0, 1]], dtype=np.uint8)
    >>> confusion_counts(pred, ref, 2)[0].tolist()  # per class: tp, fp, fn
    [[0, 1, 1], [2, 1, 1]]
    """
    return counts_from_matrices(confusion_matrices(pred, ref, num_classes))


def counts_from_matrices(cm: np.ndarray) -> np.ndarray:
    """``tp, fp, fn`` ``(N, C, 3)`` from confusion matrices ``(N, C, C)`` (rows reference, columns prediction)."""
    tp = np.diagonal(cm, axis1=1, axis2=2)
    fp = cm.sum(axis=1) - tp
    fn = cm.sum(axis=2) - tp
    return np.stack([tp, fp, fn], axis=-1)


def presence_codes(counts: np.ndarray) -> np.ndarray:
    """Presence case index ``(N, C)`` into :data:`PRESENCE_CASES` from counts ``(..., 3)``."""
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    ref_present = (tp + fn) > 0
    pred_present = (tp + fp) > 0
    # both=0, ref_only=1, pred_only=2, neither=3
    return np.where(ref_present, np.where(pred_present, 0, 1), np.where(pred_present, 2, 3)).astype(np.int8)


def _ratio(num: np.ndarray, den: np.ndarray, counts: np.ndarray, empty_policy: str) -> np.ndarray:
    """``num / den`` with the empty-structure policy applied where the presence case is not ``both``."""
    check_empty_policy(empty_policy)
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    presence = presence_codes(counts)
    out = np.where((presence == 1) | (presence == 2), 0.0, out)
    return np.where(presence == 3, np.nan if empty_policy == "nan" else 1.0, out)


def dice_from_counts(counts: np.ndarray, empty_policy: str = DEFAULT_EMPTY_POLICY) -> np.ndarray:
    """Dice ``2tp / (2tp + fp + fn)`` per entry of counts ``(..., 3)``.

    Examples
    --------
    >>> import numpy as np
    >>> counts = np.array([[[2, 1, 1], [0, 0, 0], [0, 3, 0]]])  # both present, neither, prediction only
    >>> dice_from_counts(counts).round(3).tolist()
    [[0.667, nan, 0.0]]
    >>> dice_from_counts(counts, empty_policy="one").round(3).tolist()
    [[0.667, 1.0, 0.0]]
    """
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    return _ratio(2 * tp, 2 * tp + fp + fn, counts, empty_policy)


def iou_from_counts(counts: np.ndarray, empty_policy: str = DEFAULT_EMPTY_POLICY) -> np.ndarray:
    """IoU (Jaccard) ``tp / (tp + fp + fn)`` per entry of counts ``(..., 3)``."""
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    return _ratio(tp, tp + fp + fn, counts, empty_policy)


def precision_from_counts(counts: np.ndarray, empty_policy: str = DEFAULT_EMPTY_POLICY) -> np.ndarray:
    """Precision ``tp / (tp + fp)``; 0 when the prediction is empty but the reference is not."""
    tp, fp = counts[..., 0], counts[..., 1]
    return _ratio(tp, tp + fp, counts, empty_policy)


def recall_from_counts(counts: np.ndarray, empty_policy: str = DEFAULT_EMPTY_POLICY) -> np.ndarray:
    """Recall (sensitivity) ``tp / (tp + fn)``; 0 when the reference is empty but the prediction is not."""
    tp, fn = counts[..., 0], counts[..., 2]
    return _ratio(tp, tp + fn, counts, empty_policy)


def f1_from_counts(counts: np.ndarray, empty_policy: str = DEFAULT_EMPTY_POLICY) -> np.ndarray:
    """F1, the harmonic mean of precision and recall (0 when either is 0); equals Dice on the same counts."""
    p = precision_from_counts(counts, empty_policy)
    r = recall_from_counts(counts, empty_policy)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where((p + r) > 0, 2 * p * r / (p + r), 0.0)
    # p and r are NaN only in the ``neither`` case, where p already holds the policy's value
    return np.where(presence_codes(counts) == 3, p, f1)


def pixel_accuracy_from_matrices(cm: np.ndarray) -> np.ndarray:
    """Fraction of correctly labelled pixels per image ``(N,)`` from confusion matrices ``(N, C, C)``."""
    correct = np.trace(cm, axis1=1, axis2=2).astype(np.float64)
    total = cm.sum(axis=(1, 2)).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return correct / total


def overlap_metrics(counts: np.ndarray, empty_policy: str = DEFAULT_EMPTY_POLICY) -> dict[str, np.ndarray]:
    """All overlap metrics (``dice, iou, precision, recall, f1``) from counts ``(..., 3)``."""
    return {
        "dice": dice_from_counts(counts, empty_policy),
        "iou": iou_from_counts(counts, empty_policy),
        "precision": precision_from_counts(counts, empty_policy),
        "recall": recall_from_counts(counts, empty_policy),
        "f1": f1_from_counts(counts, empty_policy),
    }


