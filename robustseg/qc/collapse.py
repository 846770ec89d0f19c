"""Collapse flag: a structure the model never predicts although the validation set shows it repeatedly."""

from __future__ import annotations

import pandas as pd

MIN_IMAGES = 3
"""A structure counts as collapsed only when present in at least this many validation images."""


def collapsed_classes(table: pd.DataFrame, *, min_images: int = MIN_IMAGES,
                      background: str = "background") -> list[str]:
    """Classes present (``ref_pixels > 0``) in >= ``min_images`` images of ``table`` but never predicted
    (``pred_pixels`` 0 in every image), in the table's class order.

    ``table`` is a per-image table (:func:`robustseg.metrics.per_image_table`) of one run on its validation
    fold. A collapsed run is a real outcome: it stays in every statistic; this only names it.

    >>> t = pd.DataFrame({"image_id": list("aabbcc"), "class": ["brain", "csp"] * 3,
    ...                   "ref_pixels": [9, 4, 9, 3, 9, 5], "pred_pixels": [8, 0, 9, 0, 7, 0]})
    >>> collapsed_classes(t)
    ['csp']
    """
    out = []
    for name, rows in table.groupby("class", sort=False):
        if name == background:
            continue
        if int((rows["ref_pixels"] > 0).sum()) >= min_images and int(rows["pred_pixels"].sum()) == 0:
            out.append(str(name))
    return out
