"""Oversampling of images that hold the small structures (CSP / LV), as the reference study."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

from robustseg.config.schema import OVERSAMPLING_MAX, OVERSAMPLING_MIN
from robustseg.errors import InputError


def oversampling_weights(has_small: np.ndarray, factor: float) -> np.ndarray:
    """Per-image sampling weights: 1 for other images, ``factor`` for images containing CSP or LV.

    ``factor`` is in [1, 1000] as ``sampler.oversampling`` in the study schema (1: no oversampling; below 1
    would under-sample the images that hold the small structures).
    """
    if not (np.isfinite(factor) and OVERSAMPLING_MIN <= factor <= OVERSAMPLING_MAX):
        raise InputError(f"oversampling factor {factor!r}: expected a number in [{OVERSAMPLING_MIN:g}, "
                         f"{OVERSAMPLING_MAX:g}] (1: no oversampling)")
    flags = np.asarray(has_small, dtype=bool).ravel()
    return np.where(flags, float(factor), 1.0).astype(np.float64)


def make_sampler(weights: np.ndarray, num_samples: int, seed: int) -> WeightedRandomSampler:
    """A WeightedRandomSampler (with replacement) driven by its own seeded generator."""
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise InputError(
            "sampler weights: expected a non-empty array of finite weights >= 0 with a positive sum"
        )
    if int(num_samples) < 1:
        raise InputError(f"sampler num_samples {num_samples!r}: expected an integer >= 1")
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    return WeightedRandomSampler(
        torch.as_tensor(w), num_samples=int(num_samples), replacement=True, generator=gen
    )
