"""Data layer, torch-free: sources (phantom, fetal_head, folder), index, checks, splits, transforms.

The torch ``Dataset`` and the oversampling sampler live in :mod:`robustseg.nn`.
"""

from robustseg.data.check import CheckReport, check_data
from robustseg.data.index import load_index
from robustseg.data.io import read_image, read_mask, write_mask
from robustseg.data.phantom import generate_phantom
from robustseg.data.splits import make_splits
from robustseg.data.transforms import make_augment, normalize, preprocess

__all__ = [
    "CheckReport",
    "check_data",
    "generate_phantom",
    "load_index",
    "make_augment",
    "make_splits",
    "normalize",
    "preprocess",
    "read_image",
    "read_mask",
    "write_mask",
]
