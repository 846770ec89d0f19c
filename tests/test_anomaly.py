"""Anomaly scores, heatmaps, structure measurements and ground-truth-free scores on hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest

from robustseg.errors import InputError
from robustseg.qc.anomaly import (
    anomaly_scores,
    ensemble_disagreement,
    fit_reference_ranges,
    load_heatmaps,
    max_abs_z,
    mismatch_maps,
    out_of_range_scores,
    overall_anomaly_scores,
    save_heatmaps,
    structure_features,
)

CLASSES = ("background", "brain", "csp", "lv")


def pair() -> tuple[np.ndarray, np.ndarray]:
    ref = np.zeros((3, 6, 6), np.uint8)
    pred = np.zeros((3, 6, 6), np.uint8)
    ref[0, 1:3, 1:3] = 2  # csp 4 px; pred covers 3 of them and 1 extra
    pred[0, 1:3, 1:3] = 2
    pred[0, 2, 2] = 0
    pred[0, 4, 4] = 2
    ref[1, 0:2, 0:4] = 2  # csp 8 px, perfectly predicted
    pred[1, 0:2, 0:4] = 2
    pred[2, 5, 0:3] = 2  # csp hallucinated 3 px, reference empty
    return pred, ref


def test_mismatch_and_scores_pinned() -> None:
    pred, ref = pair()
    maps = mismatch_maps(pred, ref, 4)
    assert maps.shape == (3, 4, 6, 6) and maps[0, 2].sum() == 2
    t = anomaly_scores(pred, ref, image_ids=["a", "b", "c"], class_names=CLASSES).set_index(["image_id", "class"])
    assert t.loc[("a", "csp"), "score"] == pytest.approx(2 / 4)
    assert t.loc[("b", "csp"), "score"] == 0.0
    # empty reference: 3 px over the median present csp size (median of 4 and 8 = 6)
    assert t.loc[("c", "csp"), "denominator"] == 6.0
    assert t.loc[("c", "csp"), "score"] == pytest.approx(3 / 6)
    assert t.loc[("a", "lv"), "score"] == 0.0  # both empty
    given = anomaly_scores(pred, ref, class_names=CLASSES, typical_ref_pixels={"csp": 30}).set_index(["image_id", "class"])
    assert given.loc[("2", "csp"), "score"] == pytest.approx(3 / 30)
    # no reference example anywhere: inf for a hallucination
    lonely = anomaly_scores(pred[2:], ref[2:], class_names=CLASSES).set_index("class")
    assert np.isinf(lonely.loc["csp", "score"])
    o = overall_anomaly_scores(pred, ref, image_ids=["a", "b", "c"]).set_index("image_id")
    assert o["score"].tolist() == [pytest.approx(2 / 4), 0.0, np.inf]


def test_heatmap_roundtrip(tmp_path) -> None:
    rng = np.random.default_rng(0)
    p = rng.random((2, 4, 5, 6)).astype(np.float32)
    p /= p.sum(1, keepdims=True)
    path = save_heatmaps(tmp_path / "h.npz", p, ["x", "y"], CLASSES)
    ids, names, back = load_heatmaps(path)
    assert ids == ["x", "y"] and names == list(CLASSES)
    assert np.abs(back - p).max() <= 0.5 / 255 + 1e-7
    with pytest.raises(InputError):
        save_heatmaps(tmp_path / "bad.npz", p * 2, ["x", "y"], CLASSES)


def test_structure_features_pinned() -> None:
    lab = np.zeros((2, 40, 40), np.uint8)
    lab[0, 10:30, 15:20] = 3  # LV 20 x 5 px rectangle
    lab[0, 2:4, 2:4] = 2
    lab[1, 5:25, 5:25] = 3
    f = structure_features(lab, image_ids=["a", "b"], class_names=CLASSES, classes=["csp", "lv"], pixel_mm=[0.5, np.nan])
    lv = f.set_index(["image_id", "class"]).loc[("a", "lv")]
    assert lv["area_px"] == 100 and lv["area_mm2"] == pytest.approx(25.0)
    assert (lv["centroid_row"], lv["centroid_col"]) == (19.5, 17.0)
    assert [lv[k] for k in ("bbox_min_row", "bbox_min_col", "bbox_max_row", "bbox_max_col")] == [10, 15, 30, 20]
    # second-moment ellipse of a pixel rectangle: axis = 4 * sqrt(variance), variance of 0..s-1 = (s^2 - 1) / 12
    assert lv["major_axis_mm"] == pytest.approx(4 * np.sqrt((20**2 - 1) / 12) * 0.5, rel=1e-9)
    assert lv["minor_axis_mm"] == pytest.approx(4 * np.sqrt((5**2 - 1) / 12) * 0.5, rel=1e-9)
    assert lv["ventriculomegaly"] == False  # noqa: E712  (2.9 mm < 10 mm)
    b = f.set_index(["image_id", "class"])
    assert not b.loc[("b", "csp"), "present"] and b.loc[("b", "csp"), "area_px"] == 0
    assert np.isnan(b.loc[("b", "csp"), "major_axis_mm"])
    assert not b.loc[("b", "lv"), "pixel_mm_known"] and b.loc[("b", "lv"), "area_mm2"] == 400
    assert b["ventriculomegaly"].isna().sum() == 3  # csp rows and the LV of unknown pixel size
    big = structure_features(lab[1:], class_names=CLASSES, classes=["lv"], pixel_mm=1.0)
    assert big.loc[0, "ventriculomegaly"] == True  # noqa: E712  (23 mm)


def test_ensemble_disagreement() -> None:
    p = np.zeros((3, 1, 2, 2, 2), np.float32)
    p[:, 0, 0] = 1.0  # all members: class 0 everywhere
    p[:, 0, 0, 0, 0], p[:, 0, 1, 0, 0] = 0.0, 1.0  # ... except pixel (0,0) = class 1
    same = ensemble_disagreement(p, class_names=("a", "b")).set_index("class")
    assert same["dice_disagreement"].tolist() == [0.0, 0.0]
    assert same.loc["b", "ensemble_pixels"] == 1
    assert same["mean_entropy"].tolist() == pytest.approx([0.0, 0.0], abs=1e-6)
    q = p.copy()
    q[2, 0, :, 0, 0] = [1.0, 0.0]  # member 3 calls pixel (0,0) class 0
    d = ensemble_disagreement(q, class_names=("a", "b")).set_index("class")
    # class b: pairs (1,2) dice 1, (1,3) and (2,3) dice 0 -> mean 1/3 -> disagreement 2/3
    assert d.loc["b", "dice_disagreement"] == pytest.approx(2 / 3)
    mean = np.array([1 / 3, 2 / 3])
    h = -(mean * np.log(mean)).sum()
    assert d.loc["b", "mean_entropy"] == pytest.approx(h, rel=1e-5)
    assert d.loc["b", "mean_mutual_info"] == pytest.approx(h, rel=1e-5)  # members are certain: all epistemic
    with pytest.raises(InputError):
        ensemble_disagreement(q[:1], class_names=("a", "b"))


def test_out_of_range_scores() -> None:
    lab = np.zeros((12, 30, 30), np.uint8)
    for i in range(11):  # squares of 10, 11, 12 px: areas 100, 121, 144
        s = 10 + i % 3
        lab[i, 5 : 5 + s, 5 : 5 + s] = 2
    train = structure_features(lab[:11], class_names=CLASSES, classes=["csp"], pixel_mm=1.0)
    ranges = fit_reference_ranges(train, features=["area_mm2"])
    r = ranges.iloc[0]
    x = train["area_mm2"].to_numpy()
    assert r["median"] == np.median(x) and r["mad"] == pytest.approx(1.4826 * np.median(np.abs(x - np.median(x))))
    test = structure_features(lab[10:], class_names=CLASSES, classes=["csp"], pixel_mm=1.0)  # one normal, one absent
    z = out_of_range_scores(test, ranges)
    assert z.loc[1, "robust_z"] == pytest.approx((0 - r["median"]) / r["mad"])
    assert z.loc[1, "robust_z"] < -3
    worst = max_abs_z(z)
    assert worst.loc[1, "worst_feature"] == "area_mm2" and worst.loc[1, "max_abs_z"] > 3


def test_absent_structure_is_not_out_of_range_where_absence_is_common() -> None:
    lab = np.zeros((11, 30, 30), np.uint8)
    for i in range(0, 11, 2):  # CSP in 6 of 11 training images (areas 100, 121, 144): absence is normal
        s = 10 + (i // 2) % 3
        lab[i, 5 : 5 + s, 5 : 5 + s] = 2
    train = structure_features(lab, class_names=CLASSES, classes=["csp"], pixel_mm=1.0)
    ranges = fit_reference_ranges(train, features=["area_mm2"])
    test = structure_features(lab[:2], class_names=CLASSES, classes=["csp"], pixel_mm=1.0)  # present, absent
    z = out_of_range_scores(test, ranges)
    assert abs(z.loc[0, "robust_z"]) < 3
    assert np.isnan(z.loc[1, "robust_z"])
    strict = out_of_range_scores(test, ranges, min_presence_rate=0.5)
    assert strict.loc[1, "robust_z"] < -3


def test_structure_features_measure_the_bounding_box_as_the_whole_image() -> None:
    """Measured on each class's bounding box, every feature equals skimage's measurement of the whole mask."""
    from scipy import ndimage
    from skimage.measure import regionprops

    rng = np.random.default_rng(4)
    lab = np.zeros((3, 60, 80), np.uint8)
    for i in range(3):
        for c in (1, 2, 3):
            blob = ndimage.gaussian_filter(rng.random((60, 80)), 3) > 0.5 + 0.01 * c
            lab[i][blob] = c
    lab[0, 0, :5] = 2  # touching the border, a second component
    t = structure_features(lab, pixel_mm=0.5)
    for i in range(3):
        for c, name in ((1, "brain"), (2, "csp"), (3, "lv")):
            row = t[(t["image_id"] == str(i)) & (t["class"] == name)].iloc[0]
            mask = lab[i] == c
            if not mask.any():
                assert not row["present"]
                continue
            p = regionprops(mask.astype(np.uint8))[0]
            assert (row["bbox_min_row"], row["bbox_min_col"], row["bbox_max_row"], row["bbox_max_col"]) == p.bbox
            assert (row["centroid_row"], row["centroid_col"]) == tuple(float(v) for v in p.centroid)
            assert row["orientation"] == p.orientation and row["eccentricity"] == p.eccentricity
            assert row["major_axis_mm"] == p.axis_major_length * 0.5 and row["area_px"] == mask.sum()
            assert row["n_components"] == ndimage.label(mask, structure=np.ones((3, 3)))[1]
