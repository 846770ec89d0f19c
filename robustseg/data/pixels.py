"""Pixel rules shared by every image reader (PNG/TIFF/JPEG in :mod:`robustseg.data.io`, DICOM in
:mod:`robustseg.data.dicom`): colour to grey, and more than 8 bits to 8 bits. Pure numpy."""

from __future__ import annotations

import numpy as np

LUMA = np.array([0.299, 0.587, 0.114])
"""ITU-R BT.601 luma weights (R, G, B)."""


def luma(rgb: np.ndarray) -> np.ndarray:
    """Grey uint8 ``(H, W)`` of an 8-bit colour image ``(H, W, >=3)`` (extra channels, e.g. alpha, dropped).

    >>> luma(np.array([[[255, 0, 0], [0, 0, 255]]], dtype=np.uint8)).tolist()
    [[76, 29]]
    """
    rgb = np.asarray(rgb)[..., :3]
    return np.clip(np.rint(rgb.astype(np.float64) @ LUMA), 0, 255).astype(np.uint8)


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """The rule for images of more than 8 bits (16/32-bit integer, float): negative values and NaN become 0 and
    the image is scaled by its maximum to 0..255. uint8 passes unchanged, booleans become 0 / 255.

    >>> to_uint8(np.array([0, 512, 1024], dtype=np.uint16)).tolist()
    [0, 128, 255]
    """
    arr = np.asarray(arr)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    values = np.clip(np.nan_to_num(arr.astype(np.float64)), 0, None)
    return (values / max(1.0, float(values.max(initial=0.0))) * 255.0).round().astype(np.uint8)
