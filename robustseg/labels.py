"""Class names and colour maps of the trans-thalamic task."""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = ("background", "brain", "csp", "lv")
"""Label index -> name. 0 background, 1 brain parenchyma, 2 CSP, 3 LV."""

SMALL_CLASSES: tuple[int, ...] = (2, 3)
"""The small, clinically important structures (CSP, LV)."""

PASCAL_COLORMAP: dict[tuple[int, int, int], int] = {
    (0, 0, 0): 0,
    (128, 0, 0): 1,
    (0, 128, 0): 2,
    (128, 128, 0): 3,
}
"""PASCAL VOC palette colours of the Large-Scale Fetal Head Biometry masks."""

RGB_COLORMAP: dict[tuple[int, int, int], int] = {
    (0, 0, 0): 0,
    (255, 0, 0): 1,
    (0, 255, 0): 2,
    (0, 0, 255): 3,
}
"""Pure red/green/blue variant found in some copies of the data set."""

COLORMAPS: dict[str, dict[tuple[int, int, int], int]] = {"pascal": PASCAL_COLORMAP, "rgb": RGB_COLORMAP}
