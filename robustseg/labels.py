"""Class names and colour maps of the trans-thalamic task (the defaults: a study on an nnU-Net data set takes its
classes from the data set's dataset.json and its small structures from ``data.small_structures``)."""

from __future__ import annotations

from collections.abc import Sequence

CLASS_NAMES: tuple[str, ...] = ("background", "brain", "csp", "lv")
"""Label index -> name. 0 background, 1 brain parenchyma, 2 CSP, 3 LV."""

SMALL_CLASSES: tuple[int, ...] = (2, 3)
"""The small, clinically important structures (CSP, LV)."""

SMALL_STRUCTURES: tuple[str, ...] = tuple(CLASS_NAMES[i] for i in SMALL_CLASSES)
"""Their names, ``("csp", "lv")``: the default of ``data.small_structures``."""

DISPLAY_NAMES: dict[str, str] = {"csp": "CSP", "lv": "LV"}
"""How text spells a class name where it differs from the name (the fetal abbreviations)."""


def display_name(name: str) -> str:
    """A class name as text shows it: ``CSP``, ``LV``; any other name (``brain``, ``tumor``) unchanged."""
    return DISPLAY_NAMES.get(name, name)


def display_list(names: Sequence[str]) -> str:
    """Class names as a phrase: ``CSP and LV``, ``tumor, vessel and cyst``.

    >>> display_list(["csp", "lv"]), display_list(["tumor"]), display_list(["a", "b", "c"])
    ('CSP and LV', 'tumor', 'a, b and c')
    """
    shown = [display_name(n) for n in names]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]

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
