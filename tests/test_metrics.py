"""Overlap metrics, presence cases, empty policies and aggregations, pinned on hand-made masks."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from robustseg.errors import InputError
from robustseg.metrics import (
    PER_IMAGE_COLUMNS,
    aggregate_global,
    aggregate_per_image,
    confusion_counts,
    confusion_matrices,
    iou_summary,
    per_image_table,
    presence_counts,
)

CLASSES = ("background", "brain", "csp", "lv")


def hand_made() -> tuple[np.ndarray, np.ndarray]:
    """One 4x4 image with every presence case: brain both, csp ref_only, lv pred_only; class 4 'x' neither."""
    ref = np.array(
        [
            [0, 0, 0, 0],
            [0, 1, 1, 2],
            [0, 1, 1, 2],
            [0, 0, 0, 0],
        ],
        dtype=np.uint8,
    )
    pred = np.array(
        [
            [0, 0, 0, 0],
            [0, 1, 1, 1],
            [0, 1, 3, 0],
            [0, 0, 0, 0],
        ],
        dtype=np.uint8,
    )
    return pred, ref


def test_counts_pinned() -> None:
    pred, ref = hand_made()
    counts = confusion_counts(pred, ref, 5)[0]
    # background: ref 10 px, pred 11 px, overlap 10
    assert counts[0].tolist() == [10, 1, 0]
    # brain: ref 4, pred 4, overlap 3 -> tp 3, fp 1 (the former csp pixel), fn 1 (the lv pixel)
    assert counts[1].tolist() == [3, 1, 1]
    assert counts[2].tolist() == [0, 0, 2]
    assert counts[3].tolist() == [0, 1, 0]
    assert counts[4].tolist() == [0, 0, 0]


def test_table_pinned_all_presence_cases() -> None:
    pred, ref = hand_made()
    names = (*CLASSES, "x")
    raw = per_image_table(pred, ref, image_ids=["img"], class_names=names, pixel_mm=0.2)
    assert list(raw.columns) == list(PER_IMAGE_COLUMNS)
    t = raw.set_index("class")
    assert t["presence"].tolist() == ["both", "both", "ref_only", "pred_only", "neither"]
    assert t.loc["background", "dice"] == pytest.approx(20 / 21)
    assert t.loc["background", "iou"] == pytest.approx(10 / 11)
    assert t.loc["background", "precision"] == pytest.approx(10 / 11)
    assert t.loc["background", "recall"] == 1.0
    assert t.loc["brain", "dice"] == pytest.approx(6 / 8)
    assert t.loc["brain", "iou"] == pytest.approx(3 / 5)
    assert t.loc["brain", "precision"] == pytest.approx(3 / 4)
    assert t.loc["brain", "recall"] == pytest.approx(3 / 4)
    assert t.loc["brain", "f1"] == pytest.approx(3 / 4)
    for cls in ("csp", "lv"):  # one side empty: every overlap metric 0
        assert t.loc[cls, ["dice", "iou", "precision", "recall", "f1"]].tolist() == [0.0] * 5
    assert t.loc["x", ["dice", "iou", "precision", "recall", "f1"]].isna().all()
    assert (t["pixel_accuracy"] == 13 / 16).all()
    assert t.loc["csp", "ref_pixels"] == 2 and t.loc["lv", "pred_pixels"] == 1
    assert t["pixel_mm_known"].all() and (t["pixel_mm"] == 0.2).all()
    assert t["hd95_mm"].isna().all()  # boundary metrics are opt-in


def test_policy_one_scores_correct_absence() -> None:
    pred, ref = hand_made()
    t = per_image_table(pred, ref, class_names=(*CLASSES, "x"), empty_policy="one").set_index("class")
    assert t.loc["x", ["dice", "iou", "precision", "recall", "f1"]].tolist() == [1.0] * 5
    assert t.loc["csp", "dice"] == 0.0
    with pytest.raises(InputError, match="empty_policy"):
        per_image_table(pred, ref, class_names=CLASSES, empty_policy="zero")


def test_bad_labels_raise() -> None:
    pred, ref = hand_made()
    with pytest.raises(InputError, match="0..2"):
        confusion_counts(pred, ref, 3)
    with pytest.raises(InputError, match="shape"):
        confusion_counts(pred, ref[:3], 4)


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.uint8, st.tuples(st.integers(1, 3), st.integers(1, 7), st.integers(1, 7)), elements=st.integers(0, 4)),
    st.integers(0, 2**31 - 1),
)
def test_confusion_matches_naive(ref: np.ndarray, seed: int) -> None:
    """The packed-pair bincount equals a direct count, for odd and even pixel counts."""
    pred = np.random.default_rng(seed).integers(0, 5, ref.shape).astype(np.uint8)
    cm = confusion_matrices(pred, ref, 5)
    naive = np.array([[[np.sum((r == a) & (p == b)) for b in range(5)] for a in range(5)] for p, r in zip(pred, ref, strict=True)])
    assert np.array_equal(cm, naive)
    # large C takes the unpacked path
    assert np.array_equal(confusion_matrices(pred, ref, 9)[:, :5, :5], naive)


@settings(max_examples=30, deadline=None)
@given(arrays(np.uint8, (2, 6, 6), elements=st.integers(0, 3)), arrays(np.uint8, (2, 6, 6), elements=st.integers(0, 3)))
def test_metric_properties(pred: np.ndarray, ref: np.ndarray) -> None:
    t = per_image_table(pred, ref, class_names=CLASSES)
    both = t[t["presence"] == "both"]
    d, j = both["dice"].to_numpy(), both["iou"].to_numpy()
    assert np.allclose(j, d / (2 - d))  # IoU = Dice / (2 - Dice)
    assert np.allclose(both["f1"], d)
    assert ((t["dice"].dropna() >= 0) & (t["dice"].dropna() <= 1)).all()
    assert t["dice"].isna().eq(t["presence"] == "neither").all()
    swapped = per_image_table(ref, pred, class_names=CLASSES)
    assert np.allclose(t["dice"], swapped["dice"], equal_nan=True)  # symmetric
    assert np.allclose(t["precision"], swapped["recall"], equal_nan=True)


def test_agrees_with_monai_dice_iou() -> None:
    torch = pytest.importorskip("torch")
    from monai.metrics import DiceMetric, MeanIoU
    from monai.networks.utils import one_hot

    rng = np.random.default_rng(0)
    pred = rng.integers(0, 4, (8, 16, 16)).astype(np.uint8)
    ref = rng.integers(0, 4, (8, 16, 16)).astype(np.uint8)
    ref[0][ref[0] == 3] = 0  # lv absent in ref of image 0 (pred_only)
    pred[1][pred[1] == 2] = 0  # csp absent in pred of image 1 (ref_only)
    ref[2][ref[2] == 2] = 1
    pred[2][pred[2] == 2] = 1  # neither
    t = per_image_table(pred, ref, class_names=CLASSES)
    P = one_hot(torch.from_numpy(pred[:, None]).long(), 4)
    R = one_hot(torch.from_numpy(ref[:, None]).long(), 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dice = DiceMetric(include_background=True, reduction="none", ignore_empty=True)(P, R).numpy()
        iou = MeanIoU(include_background=True, reduction="none", ignore_empty=True)(P, R).numpy()
    ours_d = t["dice"].to_numpy().reshape(8, 4)
    ours_i = t["iou"].to_numpy().reshape(8, 4)
    comparable = (t["presence"] != "pred_only").to_numpy().reshape(8, 4)
    assert comparable.sum() == 31
    assert np.allclose(ours_d[comparable], dice[comparable], atol=1e-6, equal_nan=True)
    assert np.allclose(ours_i[comparable], iou[comparable], atol=1e-6, equal_nan=True)
    assert np.isnan(ours_d[2, 2]) and np.isnan(dice[2, 2])
    # MONAI's ignore_empty only looks at the reference: where it is empty and the prediction is not, MONAI
    # gives NaN and we give 0 (pred_only is an error, not an absence); everywhere else the values agree.
    assert np.isnan(dice[0, 3]) and ours_d[0, 3] == 0.0
    dice_one = DiceMetric(include_background=True, reduction="none", ignore_empty=False)(P, R).numpy()
    ours_one = per_image_table(pred, ref, class_names=CLASSES, empty_policy="one")["dice"].to_numpy().reshape(8, 4)
    assert np.allclose(ours_one, dice_one, atol=1e-6)


def _two_images() -> pd.DataFrame:
    ref = np.zeros((2, 4, 4), np.uint8)
    pred = np.zeros((2, 4, 4), np.uint8)
    ref[0, :2, :2] = 2  # image a: csp 4 px, predicted 2 of them
    pred[0, :1, :2] = 2
    pred[1, 3, 3] = 2  # image b: csp hallucinated 1 px
    ref[0, 3, :] = 1
    pred[0, 3, :] = 1
    ref[1, 3, :] = 1
    pred[1, 3, :3] = 1
    return per_image_table(pred, ref, image_ids=["a", "b"], class_names=CLASSES)


def test_global_vs_per_image_pinned() -> None:
    t = _two_images()
    g = aggregate_global(t).set_index("class")
    # csp pooled: tp 2, fp 1, fn 2 -> dice 4/7; per image: a 4/6, b 0 -> mean 1/3
    assert g.loc["csp", ["tp", "fp", "fn"]].tolist() == [2, 1, 2]
    assert g.loc["csp", "dice"] == pytest.approx(4 / 7)
    assert g.loc["csp", "iou"] == pytest.approx(2 / 5)
    assert g.loc["csp", "precision"] == pytest.approx(2 / 3)
    assert g.loc["csp", "recall"] == pytest.approx(2 / 4)
    # lv absent everywhere: NaN globally, no image in the per-image mean
    assert np.isnan(g.loc["lv", "dice"])
    m = aggregate_per_image(t).set_index("class")
    assert m.loc["csp", "dice_mean"] == pytest.approx((4 / 6 + 0) / 2)
    assert m.loc["csp", "dice_n"] == 2
    assert m.loc["lv", "dice_n"] == 0 and np.isnan(m.loc["lv", "dice_mean"])
    p = presence_counts(t).set_index("class")
    assert p.loc["csp"].tolist() == [1, 0, 1, 0]
    assert p.loc["lv"].tolist() == [0, 0, 0, 2]
    assert p.loc["brain"].tolist() == [2, 0, 0, 0]


def test_iou_summary_and_by_grouping() -> None:
    t = _two_images()
    g = aggregate_global(t).set_index("class")
    s = iou_summary(t).iloc[0]
    iou = g["iou"]
    assert s["miou_all"] == pytest.approx(iou[["background", "brain", "csp"]].mean())  # lv NaN excluded
    assert s["miou_no_background"] == pytest.approx(iou[["brain", "csp"]].mean())
    assert s["miou_small"] == pytest.approx(iou["csp"])
    freq = g["ref_pixels"] / g["ref_pixels"].sum()
    assert s["fwiou"] == pytest.approx(float((freq * iou).fillna(0).sum()))
    both = pd.concat([t.assign(arm="A"), t.assign(arm="B", tp=t["tp"] * 0)], ignore_index=True)
    gb = aggregate_global(both, by=["arm"])
    assert gb["arm"].tolist() == ["A"] * 4 + ["B"] * 4
    assert gb.loc[gb["arm"] == "A", "dice"].tolist() == pytest.approx(g["dice"].tolist(), nan_ok=True)
    sb = iou_summary(both, by="arm")
    assert sb["arm"].tolist() == ["A", "B"]
    with pytest.raises(InputError, match="seed"):
        aggregate_global(t, by=["seed"])


def test_metrics_docstring_examples_run() -> None:
    """The ``Examples`` of the public metrics functions run as doctests (and there are some)."""
    import doctest
    import importlib

    attempted = 0
    for name in ("overlap", "table", "boundary"):
        module = importlib.import_module(f"robustseg.metrics.{name}")
        res = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert res.failed == 0, f"doctest failures in robustseg.metrics.{name}"
        attempted += res.attempted
    assert attempted >= 20
