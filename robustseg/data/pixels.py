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


BIT_DEPTHS = (8, 10, 12, 14, 16)
"""The bit depths an integer image is assumed to use: the smallest one that holds its largest value."""


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """The one rule for images of more than 8 bits: negative values and NaN become 0, then

    - integer images (16/32-bit) are divided by the full scale of the smallest bit depth of :data:`BIT_DEPTHS`
      that holds the image's largest value (a 12-bit scanner export in a 16-bit PNG is divided by 4095, one
      that fills 16 bits by 65535), and by their largest value beyond 16 bits;
    - float images in [0, 1] are multiplied by 255; other float images are divided by their largest value;

    and rounded to 0..255. So images of one data set keep their relative brightness (a dark image is not
    stretched to full range, as dividing by each image's own maximum would), and 8-bit data stored in 16 bits
    keep their values. uint8 passes unchanged, booleans become 0 / 255.

    >>> to_uint8(np.array([0, 512, 1023], dtype=np.uint16)).tolist()  # 10 bits in use
    [0, 128, 255]
    >>> to_uint8(np.array([0, 2048, 4095], dtype=np.uint16)).tolist()  # 12 bits in use
    [0, 128, 255]
    >>> to_uint8(np.array([0, 100, 200], dtype=np.uint16)).tolist()  # 8-bit values in a 16-bit file
    [0, 100, 200]
    >>> to_uint8(np.array([0.0, 0.5, 1.0])).tolist()
    [0, 128, 255]
    """
    arr = np.asarray(arr)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    values = np.clip(np.nan_to_num(arr.astype(np.float64), posinf=0.0), 0, None)
    top = float(values.max(initial=0.0))
    if arr.dtype.kind == "f":
        scale = 1.0 if top <= 1.0 else top
    else:
        scale = next((float(2**b - 1) for b in BIT_DEPTHS if top <= 2**b - 1), top)
    return np.clip(np.rint(values / scale * 255.0), 0, 255).astype(np.uint8)
