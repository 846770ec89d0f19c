"""Data layer: sources (phantom, fetal_head, folder), index, checks, splits, transforms, sampler, dataset."""

from robustseg.data.check import CheckReport, check_data
from robustseg.data.dataset import SegDataset, load_arrays
from robustseg.data.index import load_index
from robustseg.data.io import read_image, read_mask, write_mask
from robustseg.data.phantom import generate_phantom
from robustseg.data.sampler import make_sampler, oversampling_weights
from robustseg.data.splits import make_splits
from robustseg.data.transforms import make_augment, normalize, preprocess

__all__ = [
    "CheckReport",
    "SegDataset",
    "check_data",
    "generate_phantom",
    "load_arrays",
    "load_index",
    "make_augment",
    "make_sampler",
    "make_splits",
    "normalize",
    "oversampling_weights",
    "preprocess",
    "read_image",
    "read_mask",
    "write_mask",
]
