"""The per-image table (one row per image x class) and its aggregations (global, per-image, IoU summaries)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from robustseg.errors import InputError
from robustseg.labels import CLASS_NAMES, SMALL_CLASSES
from robustseg.metrics._common import (
    DEFAULT_EMPTY_POLICY,
    PER_IMAGE_COLUMNS,
    PRESENCE_CASES,
    _pixel_sizes,
    check_empty_policy,
)
from robustseg.metrics.boundary import Outline, boundary_metrics
from robustseg.metrics.overlap import (
    confusion_matrices,
    counts_from_matrices,
    overlap_metrics,
    pixel_accuracy_from_matrices,
    presence_codes,
)


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
    pred_outlines: Sequence[Sequence[Outline | None]] | None = None,
    ref_outlines: Sequence[Sequence[Outline | None]] | None = None,
) -> pd.DataFrame:
    """The long per-image table (one row per image x class, columns :data:`PER_IMAGE_COLUMNS`).

    ``pixel_mm`` is one value or one per image (NaN = unknown: boundary distances are then in pixels
    and ``pixel_mm_known`` is False). Boundary metrics (``hd95_mm``, ``nsd``) are computed only when
    ``boundary`` is true (they are ~100x slower than the overlap metrics); otherwise they are NaN.
    ``pred_outlines`` / ``ref_outlines``: the images' :func:`robustseg.metrics.boundary.outlines`, when known.

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.zeros((1, 4, 4), dtype=np.uint8); ref[0, 1:3, 1:3] = 2
    >>> pred = np.zeros((1, 4, 4), dtype=np.uint8); pred[0, 1:3, 1:4] = 2
    >>> t = per_image_table(pred, ref, image_ids=["a"], pixel_mm=0.5)
    >>> t.loc[t["class"] == "csp", ["tp", "fp", "fn", "presence", "dice"]].round(3).values.tolist()
    [[4, 2, 0, 'both', 0.8]]
    >>> t.loc[t["class"] == "lv", "presence"].item(), bool(t.loc[t["class"] == "lv", "dice"].isna().item())
    ('neither', True)
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
        bm = boundary_metrics(
            pred, ref, num_classes, pixel_mm=px, nsd_tolerance_mm=nsd_tolerance_mm, empty_policy=empty_policy,
            pred_outlines=pred_outlines, ref_outlines=ref_outlines,
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

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.zeros((2, 4, 4), dtype=np.uint8); ref[:, :2, :2] = 3
    >>> pred = ref.copy(); pred[1] = 0   # image 2 misses the structure
    >>> g = aggregate_global(per_image_table(pred, ref))
    >>> round(float(g.loc[g["class"] == "lv", "dice"].item()), 3)  # 2*4 / (2*4 + 0 + 4)
    0.667
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
    table: pd.DataFrame, by: Sequence[str] = (), empty_policy: str = DEFAULT_EMPTY_POLICY,
    small: Sequence[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """The standard set of aggregates: ``global``, ``per_image``, ``presence``, ``iou_summary`` (``small``: the
    small structures of ``miou_small``, CSP and LV by default)."""
    return {
        "global": aggregate_global(table, by, empty_policy),
        "per_image": aggregate_per_image(table, by),
        "presence": presence_counts(table, by),
        "iou_summary": iou_summary(table, by, empty_policy=empty_policy, small=small),
    }
