"""A data set as a run reads it: index + preprocessed arrays (cached per process), and its fingerprint."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from robustseg.errors import InputError
from robustseg.labels import CLASS_NAMES, SMALL_CLASSES, SMALL_STRUCTURES
from robustseg.pipeline.plan import DataSpec


@dataclass(frozen=True)
class LoadedData:
    """A data set read once and preprocessed to the model's input size."""

    index: pd.DataFrame
    images: np.ndarray
    masks: np.ndarray
    pixel_mm: np.ndarray
    """mm per pixel at input size (NaN where unknown): original pixel size x (longest side / size)."""
    class_names: tuple[str, ...] = CLASS_NAMES
    """Label index -> name: the fetal classes, or those of an nnU-Net data set's dataset.json."""
    small_classes: tuple[int, ...] = SMALL_CLASSES
    """Label indices of ``DataSpec.small_structures``."""


@functools.lru_cache(maxsize=4)
def load_data(spec: DataSpec) -> LoadedData:
    """Index + preprocessed arrays of a data set (cached per process: workers load once)."""
    from robustseg.data.index import dataset_classes, load_index
    from robustseg.nn.dataset import load_arrays

    names = dataset_classes(spec.source, spec.path)
    unknown = [s for s in spec.small_structures if s not in names[1:]]
    if unknown:
        raise InputError(f"data.small_structures: {unknown[0]!r} is not a foreground class of {spec.path} "
                         f"(classes: {', '.join(names)})")
    small = tuple(names.index(s) for s in spec.small_structures)
    index = load_index(spec.source, spec.path, plane=spec.plane, colormap=spec.colormap, frame=spec.frame)
    images, masks = load_arrays(index, spec.size, spec.colormap)
    longest = np.maximum(index["height"].to_numpy(), index["width"].to_numpy()).astype(np.float64)
    pixel_mm = index["pixel_mm"].to_numpy(dtype=np.float64) * longest / spec.size
    images.setflags(write=False)
    masks.setflags(write=False)
    return LoadedData(index, images, masks, pixel_mm, names, small)


def fingerprint(data: LoadedData) -> str:
    """Hash of what a run reads from a data set: image ids, pixels and masks at input size, pixel sizes."""
    h = hashlib.sha256()
    h.update("\n".join(data.index["image_id"].astype(str)).encode())
    for arr in (data.images, data.masks, np.nan_to_num(data.pixel_mm, nan=-1.0)):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def saved_classes(saved: dict) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(class names, small structure names)`` recorded in a study's ``study.json`` (``saved``: its content);
    the fetal classes and ``data.small_structures`` (or CSP and LV) for run folders written before they were."""
    names = tuple(saved.get("class_names") or CLASS_NAMES)
    study = saved.get("study") or {}
    small = tuple(saved.get("small_structures") or study.get("data", {}).get("small_structures")
                  or SMALL_STRUCTURES)
    return names, small
