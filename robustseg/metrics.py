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

from collections.abc import Sequence

import numpy as np
import pandas as pd

from robustseg.errors import InputError
from robustseg.labels import CLASS_NAMES, SMALL_CLASSES

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
    """Per-image per-class ``tp, fp, fn`` as ``int64 (N, C, 3)`` from label maps ``(N, H, W)`` or ``(H, W)``."""
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
    """Dice ``2tp / (2tp + fp + fn)`` per entry of counts ``(..., 3)``."""
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


def _pixel_sizes(pixel_mm: float | Sequence[float] | np.ndarray | None, n: int) -> np.ndarray:
    if pixel_mm is None:
        return np.full(n, np.nan)
    arr = np.broadcast_to(np.asarray(pixel_mm, dtype=np.float64), (n,)).copy()
    bad = np.isfinite(arr) & (arr <= 0)
    if bad.any():
        raise InputError(f"pixel_mm must be positive (or NaN when unknown); got {arr[bad][0]!r}")
    return arr


def per_image_table(
    pred: np.ndarray,
    ref: np.ndarray,
    *,
    image_ids: Sequence[str] | None = None,
    class_names: Sequence[str] = CLASS_NAMES,
    pixel_mm: float | Sequence[float] | np.ndarray | None = None,
    empty_policy: str = DEFAULT_EMPTY_POLICY,
    boundary: bool = False,
    nsd_tolerance_mm: float = 1.0,
) -> pd.DataFrame:
    """The long per-image table (one row per image x class, columns :data:`PER_IMAGE_COLUMNS`).

    ``pixel_mm`` is one value or one per image (NaN = unknown: boundary distances are then in pixels
    and ``pixel_mm_known`` is False). Boundary metrics (``hd95_mm``, ``nsd``) are computed only when
    ``boundary`` is true (they are ~100x slower than the overlap metrics); otherwise they are NaN.
    """
    check_empty_policy(empty_policy)
    num_classes = len(class_names)
    cm = confusion_matrices(pred, ref, num_classes)
    n = cm.shape[0]
    if image_ids is None:
        image_ids = [str(i) for i in range(n)]
    if len(image_ids) != n:
        raise InputError(f"image_ids: got {len(image_ids)} ids for {n} images")
    counts = counts_from_matrices(cm)
    metrics = overlap_metrics(counts, empty_policy)
    px = _pixel_sizes(pixel_mm, n)
    if boundary:
        from robustseg.boundary import boundary_metrics

        bm = boundary_metrics(
            pred, ref, num_classes, pixel_mm=px, nsd_tolerance_mm=nsd_tolerance_mm, empty_policy=empty_policy
        )
        hd95, nsd = bm["hd95_mm"], bm["nsd"]
    else:
        hd95 = nsd = np.full((n, num_classes), np.nan)
    presence = np.asarray(PRESENCE_CASES, dtype=object)[presence_codes(counts)]
    table = pd.DataFrame(
        {
            "image_id": pd.array(np.repeat(np.asarray(image_ids, dtype=object), num_classes), dtype="str"),
            "class": pd.array(np.tile(np.asarray(class_names, dtype=object), n), dtype="str"),
            "tp": counts[..., 0].ravel(),
            "fp": counts[..., 1].ravel(),
            "fn": counts[..., 2].ravel(),
            "ref_pixels": (counts[..., 0] + counts[..., 2]).ravel(),
            "pred_pixels": (counts[..., 0] + counts[..., 1]).ravel(),
            "presence": pd.array(presence.ravel(), dtype="str"),
            **{k: v.ravel() for k, v in metrics.items()},
            "hd95_mm": np.asarray(hd95, dtype=np.float64).ravel(),
            "nsd": np.asarray(nsd, dtype=np.float64).ravel(),
            "pixel_mm": np.repeat(px, num_classes),
            "pixel_mm_known": np.repeat(np.isfinite(px), num_classes),
            "pixel_accuracy": np.repeat(pixel_accuracy_from_matrices(cm), num_classes),
        }
    )
    return table[list(PER_IMAGE_COLUMNS)]


# --------------------------------------------------------------------------------------------------
# Aggregation over the per-image table
# --------------------------------------------------------------------------------------------------


def _keys(table: pd.DataFrame, by: Sequence[str]) -> list[str]:
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in [*by, "class"] if c not in table.columns]
    if missing:
        raise InputError(f"per-image table lacks column(s) {', '.join(missing)}; has {', '.join(table.columns)}")
    return [*by, "class"]


def _class_order(table: pd.DataFrame, out: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Sort ``out`` by ``by`` then by the order in which classes first appear in ``table``."""
    order = {name: i for i, name in enumerate(pd.unique(table["class"]))}
    out = out.assign(_order=out["class"].map(order)).sort_values([*by, "_order"], kind="stable")
    return out.drop(columns="_order").reset_index(drop=True)


def aggregate_global(
    table: pd.DataFrame, by: Sequence[str] = (), empty_policy: str = DEFAULT_EMPTY_POLICY
) -> pd.DataFrame:
    """Pooled ("global", micro) metrics per class: sum ``tp, fp, fn`` over images, then the formulas.

    Returns columns ``*by, class, n_images, tp, fp, fn, ref_pixels, pred_pixels, dice, iou, precision,
    recall, f1``.
    """
    keys = _keys(table, by)
    g = table.groupby(keys, sort=False, dropna=False)
    out = g[["tp", "fp", "fn", "ref_pixels", "pred_pixels"]].sum()
    out.insert(0, "n_images", g.size())
    counts = out[["tp", "fp", "fn"]].to_numpy(dtype=np.int64)
    for name, values in overlap_metrics(counts, empty_policy).items():
        out[name] = values
    return _class_order(table, out.reset_index(), keys[:-1])


def aggregate_per_image(
    table: pd.DataFrame,
    by: Sequence[str] = (),
    metrics: Sequence[str] = ("dice", "iou", "precision", "recall", "f1", "hd95_mm", "nsd"),
) -> pd.DataFrame:
    """Per-image ("macro over images") mean and std per class, NaNs excluded.

    Returns columns ``*by, class, n_images`` and, per metric ``m``, ``m_mean, m_std, m_n`` (``m_n`` = images
    that entered the mean, i.e. non-NaN values).
    """
    keys = _keys(table, by)
    metrics = [m for m in metrics if m in table.columns]
    g = table.groupby(keys, sort=False, dropna=False)
    parts = [g.size().rename("n_images")]
    for m in metrics:
        col = g[m]
        parts += [col.mean().rename(f"{m}_mean"), col.std(ddof=1).rename(f"{m}_std"), col.count().rename(f"{m}_n")]
    out = pd.concat(parts, axis=1).reset_index()
    return _class_order(table, out, keys[:-1])


def presence_counts(table: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """Images per presence case and class: columns ``*by, class, both, ref_only, pred_only, neither``."""
    keys = _keys(table, by)
    out = (
        table.groupby([*keys, "presence"], sort=False, dropna=False)
        .size()
        .unstack("presence", fill_value=0)
        .reindex(columns=list(PRESENCE_CASES), fill_value=0)
        .astype(np.int64)
    )
    out.columns.name = None
    return _class_order(table, out.reset_index(), keys[:-1])


def _names(values: Sequence[str] | None, default_idx: Sequence[int]) -> list[str]:
    if values is not None:
        return list(values)
    return [CLASS_NAMES[i] for i in default_idx]


def iou_summary(
    table: pd.DataFrame,
    by: Sequence[str] = (),
    *,
    background: str = CLASS_NAMES[0],
    small: Sequence[str] | None = None,
    empty_policy: str = DEFAULT_EMPTY_POLICY,
) -> pd.DataFrame:
    """Mean IoU (all classes, without ``background``, over the ``small`` classes) and frequency-weighted IoU.

    Computed from the global (pooled) per-class IoU, as the reference study's Table 4.2; frequency weights
    are each class's share of reference pixels. ``small`` defaults to CSP and LV. A subset that names no
    class of the table gives NaN. Columns: ``*by, miou_all, miou_no_background, miou_small, fwiou``.
    """
    small_names = _names(small, SMALL_CLASSES)
    glob = aggregate_global(table, by, empty_policy)
    by = [by] if isinstance(by, str) else list(by)

    def summarise(df: pd.DataFrame) -> pd.Series:
        iou = df["iou"].to_numpy(dtype=np.float64)
        cls = df["class"].to_numpy(dtype=object)
        freq = df["ref_pixels"].to_numpy(dtype=np.float64)
        freq = freq / freq.sum() if freq.sum() > 0 else np.full_like(freq, np.nan)

        def mean_of(mask: np.ndarray) -> float:
            vals = iou[mask]
            vals = vals[~np.isnan(vals)]
            return float(vals.mean()) if vals.size else float("nan")

        return pd.Series(
            {
                "miou_all": mean_of(np.ones(len(cls), bool)),
                "miou_no_background": mean_of(cls != background),
                "miou_small": mean_of(np.isin(cls, small_names)),
                "fwiou": float(np.nansum(freq * iou)),
            }
        )

    if not by:
        return summarise(glob).to_frame().T.reset_index(drop=True)
    rows = [{**dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)), **summarise(df)}
            for key, df in glob.groupby(by, sort=False, dropna=False)]  # fmt: skip
    return pd.DataFrame(rows)


def summarise_table(
    table: pd.DataFrame, by: Sequence[str] = (), empty_policy: str = DEFAULT_EMPTY_POLICY
) -> dict[str, pd.DataFrame]:
    """The standard set of aggregates: ``global``, ``per_image``, ``presence``, ``iou_summary``."""
    return {
        "global": aggregate_global(table, by, empty_policy),
        "per_image": aggregate_per_image(table, by),
        "presence": presence_counts(table, by),
        "iou_summary": iou_summary(table, by, empty_policy=empty_policy),
    }
