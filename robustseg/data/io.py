"""Reading and writing images and label masks (PNG) with clear errors for bad files."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from robustseg.errors import InputError
from robustseg.labels import CLASS_NAMES, COLORMAPS

Colormap = Mapping[tuple[int, int, int], int]

_LUMA = np.array([0.299, 0.587, 0.114])

LABELS = "labels"
"""The colour-map name meaning: masks hold class indices, no colours (nnU-Net data sets)."""


def resolve_colormap(colormap: str | Colormap) -> dict[tuple[int, int, int], int]:
    """Return the colour -> label dict for a name (``pascal``/``rgb``) or an explicit mapping."""
    if isinstance(colormap, str):
        key = colormap.strip().lower()
        if key not in COLORMAPS:
            raise InputError(f"colormap {colormap!r}: unknown; expected one of {sorted(COLORMAPS)} or a dict")
        return dict(COLORMAPS[key])
    out: dict[tuple[int, int, int], int] = {}
    for colour, label in dict(colormap).items():
        rgb = tuple(int(c) for c in colour)
        if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
            raise InputError(f"colormap: colour {colour!r} is not an (r, g, b) triple of 0..255")
        if not 0 <= int(label) < len(CLASS_NAMES):
            raise InputError(f"colormap: label {label!r} for {colour!r} outside 0..{len(CLASS_NAMES) - 1}")
        out[rgb] = int(label)  # type: ignore[index]
    if (0, 0, 0) not in out:
        out[(0, 0, 0)] = 0
    return out


def _open(path: Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: unreadable or truncated image ({msg}); expected a valid PNG") from None
    return img


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as uint8 grayscale ``(H, W)``; RGB is converted with ITU-R 601 luma."""
    img = _open(Path(path))
    if img.mode in ("P", "PA"):
        img = img.convert("RGB")
    arr = np.asarray(img)
    if arr.dtype == np.uint16 or arr.dtype == np.int32:
        arr = (arr.astype(np.float64) / max(1.0, float(arr.max())) * 255.0).round().astype(np.uint8)
    if arr.ndim == 3:
        arr = arr[..., :3] if arr.shape[2] >= 3 else arr[..., :1].repeat(3, axis=2)
        arr = np.clip(np.rint(arr.astype(np.float64) @ _LUMA), 0, 255).astype(np.uint8)
    elif arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    return np.ascontiguousarray(arr.astype(np.uint8))


def _rgb_to_labels(rgb: np.ndarray, cmap: dict[tuple[int, int, int], int], path: Path) -> np.ndarray:
    code = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    uniq, inverse, counts = np.unique(code.ravel(), return_inverse=True, return_counts=True)
    lut = np.empty(len(uniq), dtype=np.int64)
    for i, c in enumerate(uniq):
        colour = (int(c) >> 16 & 255, int(c) >> 8 & 255, int(c) & 255)
        if colour not in cmap:
            raise InputError(
                f"{path}: mask colour {colour} ({int(counts[i])} pixels) is not in the colour map "
                f"{sorted(cmap)}; expected only mapped colours"
            )
        lut[i] = cmap[colour]
    return lut[inverse].reshape(code.shape).astype(np.uint8)


def read_mask(path: str | Path, colormap: str | Colormap = "pascal") -> np.ndarray:
    """Read a label mask as uint8 ``(H, W)`` with values ``0..C-1``.

    Palette PNGs are looked up through their palette, RGB PNGs through ``colormap``; single-channel
    PNGs are taken as integer labels (values must be < C). A colour outside the map raises InputError.
    ``colormap = "labels"``: every mask holds class indices (nnU-Net convention, :func:`read_labels`; the
    class count is checked by the caller, which knows it).
    """
    path = Path(path)
    if isinstance(colormap, str) and colormap == LABELS:
        return read_labels(path, 256)
    cmap = resolve_colormap(colormap)
    img = _open(path)
    if img.mode == "P" and "transparency" not in img.info:
        idx = np.asarray(img)
        pal = np.asarray(img.getpalette("RGB") or [], dtype=np.int64).reshape(-1, 3)
        counts = np.bincount(idx.ravel(), minlength=256)
        lut = np.zeros(256, dtype=np.uint8)
        for i in np.flatnonzero(counts):
            colour = tuple(int(c) for c in pal[i]) if i < len(pal) else (0, 0, 0)
            if colour not in cmap:
                raise InputError(
                    f"{path}: mask colour {colour} ({int(counts[i])} pixels) is not in the colour map "
                    f"{sorted(cmap)}; expected only mapped colours"
                )
            lut[i] = cmap[colour]
        return lut[idx]
    if img.mode in ("P", "PA", "RGB", "RGBA"):
        rgb = np.asarray(img.convert("RGB"))
        return _rgb_to_labels(rgb, cmap, path)
    arr = np.asarray(img)
    if arr.ndim == 3:
        return _rgb_to_labels(arr[..., :3], cmap, path)
    arr = arr.astype(np.int64)
    bad = arr >= len(CLASS_NAMES)
    if bad.any():
        vals, counts = np.unique(arr[bad], return_counts=True)
        raise InputError(
            f"{path}: label value {int(vals[0])} ({int(counts[0])} pixels) outside 0..{len(CLASS_NAMES) - 1}; "
            "expected an integer-label mask"
        )
    return arr.astype(np.uint8)


def read_labels(path: str | Path, num_classes: int) -> np.ndarray:
    """Read an integer-label PNG (nnU-Net convention: pixel value = class index) as uint8 ``(H, W)``.

    Grayscale and 16-bit PNGs give their values, palette PNGs their palette indices (the colours are
    ignored). A value ``>= num_classes`` raises InputError.
    """
    path = Path(path)
    img = _open(path)
    if img.mode not in ("P", "L", "I", "I;16", "1"):
        raise InputError(f"{path}: {img.mode} label image; expected a single-channel integer-label PNG "
                         "(nnU-Net: pixel value = class index)")
    arr = np.asarray(img).astype(np.int64)
    bad = arr >= num_classes
    if bad.any():
        vals, counts = np.unique(arr[bad], return_counts=True)
        raise InputError(f"{path}: label value {int(vals[0])} ({int(counts[0])} pixels) outside 0..{num_classes - 1}; "
                         "expected the labels of dataset.json")
    return arr.astype(np.uint8)


def write_labels(path: str | Path, labels: np.ndarray) -> None:
    """Write ``labels`` (uint8 ``(H, W)``) as a grayscale integer-label PNG (nnU-Net convention)."""
    lab = np.ascontiguousarray(np.asarray(labels).astype(np.uint8))
    assert lab.ndim == 2, "labels must be (H, W)"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(lab).save(path, compress_level=6)


def write_mask(path: str | Path, labels: np.ndarray, colormap: str | Colormap = "pascal") -> None:
    """Write ``labels`` (uint8 ``(H, W)``, values ``0..C-1``) as a palette PNG coloured by ``colormap``
    (``"labels"``: a grayscale integer-label PNG, :func:`write_labels`)."""
    if isinstance(colormap, str) and colormap == LABELS:
        write_labels(path, labels)
        return
    cmap = resolve_colormap(colormap)
    labels = np.asarray(labels)
    assert labels.ndim == 2, "labels must be (H, W)"
    inv = {label: colour for colour, label in sorted(cmap.items(), key=lambda kv: kv[0], reverse=True)}
    inv[0] = (0, 0, 0)
    palette = np.zeros((256, 3), dtype=np.uint8)
    for label in range(len(CLASS_NAMES)):
        palette[label] = inv.get(label, (0, 0, 0))
    assert labels.size == 0 or int(labels.max()) < len(CLASS_NAMES), "labels outside 0..C-1"
    lab = np.ascontiguousarray(labels.astype(np.uint8))
    img = Image.frombytes("P", (lab.shape[1], lab.shape[0]), lab.tobytes())
    img.putpalette(palette.ravel().tolist())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, compress_level=6)
