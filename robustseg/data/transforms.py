"""Preprocessing and augmentation with albumentations (as the reference study), deterministic per seed."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from robustseg._lazy import albumentations as A
from robustseg.errors import InputError

Augment = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def _check_size(size: int) -> int:
    if not isinstance(size, int | np.integer) or int(size) < 8:
        raise InputError(f"size {size!r}: expected an integer >= 8")
    return int(size)


@functools.cache
def _preprocess_compose(size: int) -> A.Compose:
    """The fixed (deterministic) resize + pad Compose for one ``size``, built once."""
    return A.Compose(
        [
            A.LongestMaxSize(
                max_size=size, interpolation=cv2.INTER_AREA, mask_interpolation=cv2.INTER_NEAREST
            ),
            A.PadIfNeeded(
                min_height=size, min_width=size, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0
            ),
        ]
    )


def preprocess(image: np.ndarray, mask: np.ndarray | None, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Resize the longest side to ``size`` and zero-pad to ``size x size`` (mask nearest, padded with 0)."""
    size = _check_size(size)
    tf = _preprocess_compose(size)
    if mask is None:
        out = tf(image=np.ascontiguousarray(image))
        return out["image"].astype(np.uint8), None
    assert image.shape[:2] == mask.shape[:2], "image and mask sizes differ"
    out = tf(image=np.ascontiguousarray(image), mask=np.ascontiguousarray(mask))
    return out["image"].astype(np.uint8), out["mask"].astype(np.uint8)


def letterbox_box(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """``(top, left, rows, cols)``: where an ``height x width`` image lies inside its ``size x size`` letterbox.

    The geometry of :func:`preprocess` (albumentations ``LongestMaxSize`` rounds each side with Python's
    ``round``; ``PadIfNeeded`` centres, the odd pixel going to the bottom / right).

    >>> letterbox_box(661, 959, 96)
    (15, 0, 66, 96)
    """
    size = _check_size(size)
    if height < 1 or width < 1:
        raise InputError(f"image size {width}x{height}: expected positive sides")
    scale = size / max(height, width)
    rows, cols = max(1, round(height * scale)), max(1, round(width * scale))
    top = int((size - rows) / 2.0) if rows < size else 0
    left = int((size - cols) / 2.0) if cols < size else 0
    return top, left, min(rows, size), min(cols, size)


def unpad_resize(probs: np.ndarray, height: int, width: int) -> np.ndarray:
    """Map letterboxed probabilities ``(C, S, S)`` back to an ``height x width`` image: ``(C, H, W)`` float32.

    The padding of :func:`preprocess` is cut off, then the probabilities are resized bilinearly (half-pixel
    centres). Take the argmax afterwards: resizing labels with nearest neighbour would move boundaries by up
    to half a model pixel (several native pixels).
    """
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 3 or probs.shape[1] != probs.shape[2]:
        raise InputError(f"probabilities of shape {probs.shape}: expected (C, S, S)")
    top, left, rows, cols = letterbox_box(int(height), int(width), probs.shape[1])
    crop = np.ascontiguousarray(probs[:, top:top + rows, left:left + cols].transpose(1, 2, 0))
    out = cv2.resize(crop, (int(width), int(height)), interpolation=cv2.INTER_LINEAR)
    if out.ndim == 2:  # cv2 drops a single channel
        out = out[..., None]
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def patch_origin(
    mask: np.ndarray, patch: int, rng: np.random.Generator, force_fg: bool, fg_classes: tuple[int, ...]
) -> tuple[int, int]:
    """Top-left corner (row, col) of a ``patch x patch`` crop of ``mask`` (nnU-Net's foreground sampling).

    With ``force_fg`` the crop is centred on a random pixel of a random class of ``fg_classes`` present
    in the mask (any non-zero label when none is; a random crop when the mask is empty), clipped to
    stay inside the image; otherwise the corner is uniform. ``rng`` draws everything.
    """
    h, w = mask.shape[:2]
    if patch > h or patch > w:
        raise InputError(f"patch size {patch}: expected at most the input size {h} x {w}")
    if force_fg:
        present = [c for c in fg_classes if (mask == c).any()]
        where = np.flatnonzero(mask == present[int(rng.integers(len(present)))]) if present else \
            np.flatnonzero(mask > 0)
        if where.size:
            y, x = divmod(int(where[int(rng.integers(where.size))]), w)
            return (int(np.clip(y - patch // 2, 0, h - patch)), int(np.clip(x - patch // 2, 0, w - patch)))
    return int(rng.integers(h - patch + 1)), int(rng.integers(w - patch + 1))


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 -> float32 ``(x / 255 - 0.5) / 0.5`` (Normalize mean 0.5, std 0.5), any shape."""
    return ((np.asarray(images, dtype=np.float32) / 255.0) - 0.5) / 0.5


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation strengths (the reference study's set)."""

    hflip_p: float = 0.5
    affine_p: float = 0.7
    shift: float = 0.0625
    scale: float = 0.1
    rotate: float = 15.0
    brightness_contrast_p: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    clahe_p: float = 0.3


def _build(cfg: AugmentConfig, seed: int) -> A.Compose:
    return A.Compose(
        [
            A.HorizontalFlip(p=cfg.hflip_p),
            A.Affine(
                translate_percent=(-cfg.shift, cfg.shift),
                scale=(1 - cfg.scale, 1 + cfg.scale),
                rotate=(-cfg.rotate, cfg.rotate),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=0,
                p=cfg.affine_p,
            ),
            A.RandomBrightnessContrast(
                brightness_limit=cfg.brightness, contrast_limit=cfg.contrast, p=cfg.brightness_contrast_p
            ),
            A.CLAHE(clip_limit=(1.0, 3.0), tile_grid_size=(8, 8), p=cfg.clahe_p),
        ],
        seed=seed,
    )


def make_augment(cfg: AugmentConfig | None = None) -> Augment:
    """Return ``augment(image, mask, seed) -> (image, mask)``; the result depends only on the inputs and seed.

    The Compose is re-seeded before every call, so the output is the same whatever the call order or
    worker process. Masks are resampled nearest; values stay in the input label set.
    """
    cfg = cfg or AugmentConfig()
    for name in ("hflip_p", "affine_p", "brightness_contrast_p", "clahe_p"):
        p = getattr(cfg, name)
        if not 0.0 <= p <= 1.0:
            raise InputError(f"augment.{name} = {p!r}: expected a probability in [0, 1]")
    compose = _build(cfg, seed=0)

    def augment(image: np.ndarray, mask: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        compose.set_random_seed(int(seed) % (2**32))
        out = compose(image=np.ascontiguousarray(image), mask=np.ascontiguousarray(mask))
        return out["image"].astype(np.uint8), out["mask"].astype(np.uint8)

    return augment
