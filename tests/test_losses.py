"""Losses against hand-computed values on tiny tensors and against MONAI where definitions match."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.losses import DiceLoss
from monai.losses import FocalLoss as MonaiFocal

from robustseg.errors import InputError
from robustseg.nn import losses

# Two pixels, two classes. Logits chosen so softmax gives p = (0.8, 0.2) and (0.4, 0.6).
P = torch.tensor([[0.8, 0.2], [0.4, 0.6]])
LOGITS = P.log().T.reshape(1, 2, 1, 2)  # (N=1, C=2, H=1, W=2)
TARGET = torch.tensor([[[0, 1]]])  # pixel 0 -> class 0 (p=0.8), pixel 1 -> class 1 (p=0.6)


def test_ce_by_hand():
    expected = -(math.log(0.8) + math.log(0.6)) / 2
    assert losses.create("ce")(LOGITS, TARGET).item() == pytest.approx(expected, rel=1e-6)


def test_weighted_ce_by_hand_divides_by_pixel_count():
    expected = -(0.5 * math.log(0.8) + 2.0 * math.log(0.6)) / 2
    got = losses.create("weighted_ce", class_weights=[0.5, 2.0])(LOGITS, TARGET).item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_weighted_ce_needs_weights():
    with pytest.raises(InputError, match="class_weights"):
        losses.create("weighted_ce")


def test_focal_by_hand():
    g = 2.0
    expected = -(0.25 * 0.2**g * math.log(0.8) + 0.75 * 0.4**g * math.log(0.6)) / 2
    got = losses.create("focal", gamma=g, alpha=[0.25, 0.75])(LOGITS, TARGET).item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_focal_gamma_zero_is_ce():
    a = losses.create("focal", gamma=0.0)(LOGITS, TARGET)
    b = losses.create("ce")(LOGITS, TARGET)
    torch.testing.assert_close(a, b)


def test_dice_by_hand_squared_denominators():
    eps = 1e-6
    # class 0: p = (0.8, 0.4), y = (1, 0); class 1: p = (0.2, 0.6), y = (0, 1)
    d0 = (2 * 0.8 + eps) / (0.8**2 + 0.4**2 + 1 + eps)
    d1 = (2 * 0.6 + eps) / (0.2**2 + 0.6**2 + 1 + eps)
    w = [1.0, 3.0]
    expected = 1 - (w[0] * d0 + w[1] * d1) / sum(w)
    got = losses.create("dice", class_weights=w, eps=eps)(LOGITS, TARGET).item()
    assert got == pytest.approx(expected, rel=1e-6)


def _random_batch(seed: int = 0, c: int = 4):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, c, 8, 8, generator=g) * 2
    target = torch.randint(0, c, (2, 8, 8), generator=g)
    return logits, target


def test_dice_matches_monai():
    logits, target = _random_batch()
    w = [0.5, 1.0, 1.5, 1.0]  # sums to C: MONAI's mean of w_c (1 - D_c) equals ours
    eps = 1e-5
    ours = losses.create("dice", class_weights=w, eps=eps)(logits, target)
    ref = DiceLoss(
        softmax=True,
        to_onehot_y=True,
        squared_pred=True,
        batch=True,
        smooth_nr=eps,
        smooth_dr=eps,
        weight=torch.tensor(w),
    )(logits, target[:, None])
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


def test_focal_matches_monai():
    logits, target = _random_batch(1)
    alpha = [0.1, 0.2, 0.3, 0.4]
    ours = losses.create("focal", gamma=2.0, alpha=alpha)(logits, target)
    ref = MonaiFocal(use_softmax=True, to_onehot_y=True, gamma=2.0, alpha=alpha, reduction="mean")(
        logits, target[:, None]
    )
    # MONAI averages over N*C*H*W elements (zeros for the non-target classes); we average over pixels.
    torch.testing.assert_close(ours, ref * logits.shape[1], rtol=1e-5, atol=1e-6)


def test_hybrid_is_the_weighted_sum():
    logits, target = _random_batch(2)
    w = [0.2, 0.8, 1.5, 1.5]
    a, b = 0.4, 0.2
    got = losses.create("hybrid", a=a, b=b, gamma=2.0, class_weights=w)(logits, target)
    ce = losses.create("weighted_ce", class_weights=w)(logits, target)
    fo = losses.create("focal", gamma=2.0, alpha=w)(logits, target)
    di = losses.create("dice", class_weights=w)(logits, target)
    torch.testing.assert_close(got, (1 - a - b) * ce + b * fo + a * di)


def test_hybrid_unweighted_dice_keeps_weighted_ce():
    logits, target = _random_batch(2)
    w = [0.2, 0.8, 1.5, 1.5]
    got = losses.create("hybrid", a=0.5, b=0.0, class_weights=w, weighted_dice=False)(logits, target)
    ce = losses.create("weighted_ce", class_weights=w)(logits, target)
    di = losses.create("dice")(logits, target)  # every class's Dice counts the same
    torch.testing.assert_close(got, 0.5 * ce + 0.5 * di)
    weighted = losses.create("hybrid", a=0.5, b=0.0, class_weights=w)(logits, target)
    assert not torch.isclose(got, weighted)


@pytest.mark.parametrize("key", ["weighted_dice", "batch_dice"])
def test_loss_flags_must_be_booleans(key):
    with pytest.raises(InputError, match=f"loss {key}='maybe': expected true or false"):
        losses.create("hybrid", **{key: "maybe"})


def test_hybrid_without_weights_uses_plain_ce():
    logits, target = _random_batch(3)
    got = losses.create("hybrid", a=0.0, b=0.0)(logits, target)
    torch.testing.assert_close(got, torch.nn.functional.cross_entropy(logits, target))


@pytest.mark.parametrize(("a", "b"), [(-0.1, 0.2), (0.2, -0.1), (0.7, 0.4)])
def test_hybrid_rejects_bad_mixture_naming_values(a, b):
    with pytest.raises(InputError, match=f"a={a!r}, b={b!r}"):
        losses.create("hybrid", a=a, b=b)


def test_losses_are_differentiable_and_minimal_at_the_target():
    _, target = _random_batch(4)
    perfect = torch.nn.functional.one_hot(target, 4).permute(0, 3, 1, 2).float() * 30
    perfect.requires_grad_(True)
    for name in losses.list_losses():
        kw = {"class_weights": [1.0, 1.0, 1.0, 1.0]} if name == "weighted_ce" else {}
        value = losses.create(name, **kw)(perfect, target)
        assert value.item() < 1e-3, name
        value.backward()


def test_unknown_loss_lists_names():
    with pytest.raises(InputError, match="ce, dice, focal, hybrid, weighted_ce"):
        losses.create("lovasz")


def test_class_weights_inverse_frequency():
    counts = np.array([700, 200, 80, 20])
    w = losses.class_weights_from_counts(counts)
    inv = 1 / (counts / counts.sum())
    np.testing.assert_allclose(w, 4 * inv / inv.sum())
    assert w.sum() == pytest.approx(4.0)
    assert np.all(np.diff(w) > 0)


def test_class_weights_smoothing_flattens_and_zero_count_is_finite():
    counts = np.array([900, 90, 10, 0])
    w0 = losses.class_weights_from_counts(counts)
    assert np.isfinite(w0).all() and w0[3] == pytest.approx(w0[2])
    w1 = losses.class_weights_from_counts(counts, smoothing=0.1)
    # w_c ∝ 1 / (f_c + s): ratio of extremes (f_max + s) / (f_min + s) with f = counts / 1000.
    assert w1.max() / w1.min() == pytest.approx((0.9 + 0.1) / (0.0 + 0.1))
    assert w1.max() / w1.min() < w0.max() / w0.min()


@pytest.mark.parametrize("bad", [[1, -1, 2], [0, 0, 0], [5]])
def test_class_weights_reject_bad_counts(bad):
    with pytest.raises(InputError, match="pixel_counts"):
        losses.class_weights_from_counts(bad)


def test_class_count_mismatch_is_input_error():
    logits, target = _random_batch()
    with pytest.raises(InputError, match="3 values given for 4 classes"):
        losses.create("dice", class_weights=[1, 1, 1])(logits, target)


def test_batch_dice_pools_pixels_and_per_image_dice_averages():
    from robustseg.nn.losses import SoftDiceLoss

    torch.manual_seed(0)
    logits = torch.randn(3, 4, 8, 8)
    target = torch.randint(0, 4, (3, 8, 8))
    pooled = SoftDiceLoss(batch_dice=True).per_class(logits, target)
    single = torch.stack([SoftDiceLoss().per_class(logits[i : i + 1], target[i : i + 1]) for i in range(3)])
    assert torch.allclose(SoftDiceLoss(batch_dice=False).per_class(logits, target), single.mean(0))
    assert not torch.allclose(pooled, single.mean(0))
    one = SoftDiceLoss(batch_dice=False).per_class(logits[:1], target[:1])
    assert torch.allclose(one, SoftDiceLoss(batch_dice=True).per_class(logits[:1], target[:1]))
