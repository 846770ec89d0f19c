from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from robustseg.data.transforms import AugmentConfig, make_augment, normalize, preprocess
from robustseg.errors import InputError
from robustseg.nn.dataset import SegDataset, item_seed, load_arrays
from robustseg.nn.sampler import make_sampler, oversampling_weights


def _pair(h=30, w=50):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (h, w), dtype=np.uint8)
    lab = np.zeros((h, w), dtype=np.uint8)
    lab[5:25, 5:45] = 1
    lab[10:16, 10:20] = 2
    lab[18:22, 30:40] = 3
    return img, lab


def test_preprocess_keeps_aspect_and_pads_with_zero():
    img, lab = _pair()
    img = img | 1  # no zero pixels inside the image
    out_i, out_m = preprocess(img, lab, 20)
    assert out_i.shape == out_m.shape == (20, 20) and out_i.dtype == np.uint8
    # 50 x 30 -> 20 x 12, padded by 4 rows top and bottom
    assert (out_i[:4] == 0).all() and (out_i[-4:] == 0).all() and (out_i[4:16] > 0).all()
    assert set(np.unique(out_m)) <= {0, 1, 2, 3} and (out_m == 2).any() and (out_m[:4] == 0).all()
    assert preprocess(img, None, 20)[1] is None
    with pytest.raises(InputError, match="size"):
        preprocess(img, lab, 4)


def test_normalize_range():
    x = normalize(np.array([0, 255, 128], dtype=np.uint8))
    assert x.dtype == np.float32 and x[0] == -1.0 and x[1] == 1.0 and abs(x[2]) < 0.01


def test_augment_deterministic_per_seed_whatever_order():
    img, lab = _pair()
    img, lab = preprocess(img, lab, 32)
    aug = make_augment()
    first = [aug(img, lab, s) for s in range(8)]
    other = make_augment()
    again = [other(img, lab, s) for s in reversed(range(8))][::-1]
    for (a_i, a_m), (b_i, b_m) in zip(first, again, strict=True):
        assert np.array_equal(a_i, b_i) and np.array_equal(a_m, b_m)
        assert set(np.unique(a_m)) <= {0, 1, 2, 3}  # nearest: no new labels
    assert len({a[0].tobytes() for a in first}) > 4  # seeds differ -> outputs differ


def test_augment_flip_only_moves_mask_with_image():
    img, lab = _pair(32, 32)
    cfg = AugmentConfig(hflip_p=1.0, affine_p=0.0, brightness_contrast_p=0.0, clahe_p=0.0)
    a_i, a_m = make_augment(cfg)(img, lab, 3)
    assert np.array_equal(a_i, img[:, ::-1]) and np.array_equal(a_m, lab[:, ::-1])
    with pytest.raises(InputError, match="hflip_p"):
        make_augment(AugmentConfig(hflip_p=2.0))


def test_oversampling_weights_and_sampler():
    w = oversampling_weights(np.array([True, False, True, False]), 3.0)
    assert w.tolist() == [3.0, 1.0, 3.0, 1.0] and w.dtype == np.float64
    with pytest.raises(InputError, match="factor"):
        oversampling_weights(np.array([True]), 0.0)
    big = oversampling_weights(np.arange(1000) < 100, 9.0)  # 10% small -> half the draws
    draws = np.array(list(make_sampler(big, 4000, seed=1)))
    assert 0.45 < (draws < 100).mean() < 0.55
    assert list(make_sampler(big, 50, seed=2)) == list(make_sampler(big, 50, seed=2))
    with pytest.raises(InputError, match="weights"):
        make_sampler(np.zeros(3), 5, seed=0)


def test_item_seed_is_stable_and_distinct():
    assert item_seed(0, 1, 2) == item_seed(0, 1, 2)
    assert len({item_seed(0, e, i) for e in range(5) for i in range(50)}) == 250


def test_load_arrays_and_dataset(phantom_index):
    rows = phantom_index.head(4)
    images, masks = load_arrays(rows, 48, "pascal")
    assert images.shape == masks.shape == (4, 48, 48) and images.dtype == masks.dtype == np.uint8
    assert [(m == 2).any() for m in masks] == rows["has_csp"].tolist()
    ds = SegDataset(images, masks, augment=make_augment(), seed=7)
    ds.set_epoch(1)
    x, y = ds[2]
    assert x.shape == (1, 48, 48) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    # same items whatever the order or worker layout
    forward = [ds[i][0] for i in range(4)]
    backward = [ds[i][0] for i in reversed(range(4))][::-1]
    assert all(torch.equal(a, b) for a, b in zip(forward, backward, strict=True))
    batch = next(iter(DataLoader(ds, batch_size=4, shuffle=False, num_workers=0)))
    assert torch.equal(batch[0][2], forward[2])
    ds.set_epoch(2)
    assert not all(torch.equal(ds[i][0], forward[i]) for i in range(4))
    plain = SegDataset(images, masks)
    assert torch.equal(plain[0][1], torch.from_numpy(masks[0].astype(np.int64)))


def test_patch_origin_centres_on_foreground_and_stays_inside():
    from robustseg.data.transforms import patch_origin

    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[10:50, 10:50] = 1
    mask[60, 62] = 2  # one CSP pixel in the corner
    rng = np.random.default_rng(0)
    for _ in range(20):
        y, x = patch_origin(mask, 32, rng, True, (2, 3))
        assert (y, x) == (32, 32)  # centred on (60, 62), clipped to the image
        assert mask[y : y + 32, x : x + 32].max() == 2
    corners = {patch_origin(mask, 32, rng, False, (2, 3)) for _ in range(50)}
    assert len(corners) > 10 and all(0 <= y <= 32 and 0 <= x <= 32 for y, x in corners)
    # no small class: falls back to any foreground label, then to a random crop
    only_brain = (mask == 1).astype(np.uint8)
    y, x = patch_origin(only_brain, 16, rng, True, (2, 3))
    assert only_brain[y + 8, x + 8] == 1
    assert patch_origin(np.zeros((64, 64), np.uint8), 16, rng, True, (2,)) is not None
    with pytest.raises(InputError, match="patch size"):
        patch_origin(mask, 65, rng, True, (2,))


def test_dataset_patches_are_deterministic_and_foreground_rich(phantom_index):
    images, masks = load_arrays(phantom_index, 64)
    ds = SegDataset(images, masks, make_augment(), seed=3, patch=32, fg_fraction=1.0, fg_classes=(2, 3))
    ds.set_epoch(2)
    x1, y1 = ds[5]
    x2, y2 = ds[5]
    assert x1.shape == (1, 32, 32) and y1.shape == (32, 32)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    has_small = [i for i in range(len(ds)) if np.isin(masks[i], (2, 3)).any()]
    plain = SegDataset(images, masks, None, seed=3, patch=32, fg_fraction=1.0, fg_classes=(2, 3))
    assert all(np.isin(plain[i][1].numpy(), (2, 3)).any() for i in has_small)
    whole = SegDataset(images, masks, None, seed=3, patch=64)
    assert whole[0][0].shape == (1, 64, 64)
