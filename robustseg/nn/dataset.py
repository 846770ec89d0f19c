"""In-memory arrays and the torch Dataset used for training (augmentation seeded per epoch and index)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from robustseg.data.io import Colormap, read_image, read_mask
from robustseg.data.transforms import Augment, normalize, patch_origin, preprocess
from robustseg.errors import InputError


def load_arrays(
    index_rows: pd.DataFrame, size: int, colormap: str | Colormap = "pascal"
) -> tuple[np.ndarray, np.ndarray]:
    """Read and preprocess every row once: ``(images (N,S,S) uint8, masks (N,S,S) uint8)`` in row order."""
    for col in ("image_path", "mask_path"):
        if col not in index_rows.columns:
            raise InputError(f"index: column {col!r} missing; expected a table from load_index")
    n = len(index_rows)
    images = np.zeros((n, size, size), dtype=np.uint8)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    frames = index_rows["frame"] if "frame" in index_rows.columns else [None] * n  # DICOM: the frame read
    for i, (ip, mp, frame) in enumerate(zip(index_rows["image_path"], index_rows["mask_path"], frames, strict=True)):
        img = read_image(ip, None if frame is None else int(frame))
        msk = read_mask(mp, colormap)
        if img.shape != msk.shape:
            raise InputError(
                f"{mp}: mask size {msk.shape[::-1]} differs from image size {img.shape[::-1]} ({ip})"
            )
        images[i], masks[i] = preprocess(img, msk, size)
    return images, masks


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit augmentation seed that depends only on (seed, epoch, index)."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch) & 0xFFFFFFFF, int(index) & 0xFFFFFFFF])
    return int(ss.generate_state(1, dtype=np.uint32)[0])


class SegDataset(Dataset):
    """Preprocessed uint8 arrays -> (float32 tensor (1,S,S) normalized, int64 tensor (S,S)).

    With ``augment`` the sample of item ``i`` in epoch ``e`` is augmented with ``item_seed(seed, e, i)``,
    so the data are identical whatever the worker count or order. Call ``set_epoch`` before each epoch.
    With ``patch`` (< S) each item is first cropped to ``patch x patch``: centred on a pixel of
    ``fg_classes`` with probability ``fg_fraction`` (nnU-Net's foreground oversampling), else at random;
    the crop is drawn from its own seed of (seed, epoch, index).
    """

    def __init__(
        self,
        images: np.ndarray,
        masks: np.ndarray,
        augment: Augment | None = None,
        seed: int = 0,
        *,
        patch: int | None = None,
        fg_fraction: float = 0.0,
        fg_classes: tuple[int, ...] = (),
    ):
        assert images.shape == masks.shape and images.ndim == 3, "images/masks must both be (N, S, S)"
        if not 0.0 <= fg_fraction <= 1.0:
            raise InputError(f"foreground fraction {fg_fraction!r}: expected a number in [0, 1]")
        self.images = images
        self.masks = masks
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0
        self.patch = None if patch is None or patch >= min(images.shape[1:]) else int(patch)
        self.fg_fraction = float(fg_fraction)
        self.fg_classes = tuple(int(c) for c in fg_classes)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draw of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, msk = self.images[i], self.masks[i]
        if self.patch is not None:
            img, msk = self._crop(img, msk, int(i))
        if self.augment is not None:
            img, msk = self.augment(img, msk, item_seed(self.seed, self.epoch, int(i)))
        x = torch.from_numpy(np.ascontiguousarray(normalize(img)[None]))
        y = torch.from_numpy(np.ascontiguousarray(msk.astype(np.int64)))
        return x, y

    def _crop(self, img: np.ndarray, msk: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, self.epoch & 0xFFFFFFFF, i & 0xFFFFFFFF, 1])
        force = bool(rng.random() < self.fg_fraction)
        y, x = patch_origin(msk, self.patch, rng, force, self.fg_classes)
        p = self.patch
        return img[y : y + p, x : x + p], msk[y : y + p, x : x + p]
