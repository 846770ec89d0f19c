"""HD95 and NSD: pinned on hand-made masks, all presence cases, and agreement with MONAI on random blobs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage

from robustseg.metrics import per_image_table
from robustseg.metrics.boundary import (
    boundary_metrics,
    boundary_pixels,
    directed_distances,
    foreground_box,
    outlines,
)


def shifted_squares() -> tuple[np.ndarray, np.ndarray]:
    ref = np.zeros((10, 10), np.uint8)
    ref[2:5, 2:5] = 1
    pred = np.zeros((10, 10), np.uint8)
    pred[2:5, 3:6] = 1
    return pred, ref


def test_boundary_pixels_match_erosion_definition() -> None:
    rng = np.random.default_rng(3)
    lab = rng.integers(0, 3, (2, 9, 11)).astype(np.uint8)
    edges = boundary_pixels(lab)
    for i in range(2):
        for c in range(3):
            m = lab[i] == c
            expected = m ^ ndimage.binary_erosion(m)  # scipy: cross structure, zero border (MONAI's rule)
            assert np.array_equal(edges[i] & m, expected)


def test_pinned_shifted_square() -> None:
    pred, ref = shifted_squares()
    # ring of 8 pixels each; per direction 4 distances 0 and 4 distances 1 px -> HD95 = 1 px
    out = boundary_metrics(pred, ref, 2, pixel_mm=0.5, nsd_tolerance_mm=0.4)
    assert out["hd95_mm"][0, 1] == pytest.approx(0.5)
    assert out["nsd"][0, 1] == pytest.approx(8 / 16)
    out = boundary_metrics(pred, ref, 2, pixel_mm=0.5, nsd_tolerance_mm=0.5)  # tolerance is inclusive
    assert out["nsd"][0, 1] == pytest.approx(1.0)
    same = boundary_metrics(ref, ref, 2, pixel_mm=0.5)
    assert same["hd95_mm"][0, 1] == 0.0 and same["nsd"][0, 1] == 1.0


def test_presence_cases_and_policy() -> None:
    ref = np.zeros((1, 6, 8), np.uint8)
    pred = np.zeros((1, 6, 8), np.uint8)
    ref[0, 1:3, 1:3] = 1  # class 1 ref_only
    pred[0, 3:5, 4:6] = 2  # class 2 pred_only; class 3 neither
    diag_mm = np.hypot(5, 7) * 0.3
    out = boundary_metrics(pred, ref, 4, pixel_mm=0.3)
    assert out["hd95_mm"][0, 1] == pytest.approx(diag_mm) and out["nsd"][0, 1] == 0.0
    assert out["hd95_mm"][0, 2] == pytest.approx(diag_mm) and out["nsd"][0, 2] == 0.0
    assert np.isnan(out["hd95_mm"][0, 3]) and np.isnan(out["nsd"][0, 3])
    one = boundary_metrics(pred, ref, 4, pixel_mm=0.3, empty_policy="one")
    assert one["hd95_mm"][0, 3] == 0.0 and one["nsd"][0, 3] == 1.0


def test_unknown_pixel_size_is_one_pixel_and_flagged() -> None:
    pred, ref = shifted_squares()
    t = per_image_table(pred, ref, class_names=("bg", "fg"), boundary=True, nsd_tolerance_mm=0.9)
    fg = t.set_index("class").loc["fg"]
    assert not fg["pixel_mm_known"] and np.isnan(fg["pixel_mm"])
    assert fg["hd95_mm"] == pytest.approx(1.0) and fg["nsd"] == pytest.approx(0.5)


def _blobs(rng: np.random.Generator, n: int, h: int, w: int, c: int) -> np.ndarray:
    out = np.zeros((n, h, w), np.uint8)
    for i in range(n):
        for k in range(1, c):
            m = ndimage.gaussian_filter(rng.random((h, w)), 2.5)
            out[i][m > np.quantile(m, 0.75)] = k
    return out


def test_agrees_with_monai_on_random_masks() -> None:
    torch = pytest.importorskip("torch")
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice
    from monai.networks.utils import one_hot

    rng = np.random.default_rng(7)
    n, c = 6, 4
    pred, ref = _blobs(rng, n, 32, 40, c), _blobs(rng, n, 32, 40, c)
    spacing = [0.1, 0.37, 1.0, 0.5, 0.25, 2.0]
    ours = boundary_metrics(pred, ref, c, pixel_mm=spacing, nsd_tolerance_mm=1.0)
    P = one_hot(torch.from_numpy(pred[:, None]).long(), c)
    R = one_hot(torch.from_numpy(ref[:, None]).long(), c)
    sp = [[s, s] for s in spacing]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd = compute_hausdorff_distance(P, R, include_background=True, percentile=95, spacing=sp).numpy()
        nsd = compute_surface_dice(P, R, [1.0] * c, include_background=True, spacing=sp).numpy()
    assert np.isfinite(hd).all()
    assert np.allclose(ours["hd95_mm"], hd, rtol=1e-5, atol=1e-5)
    assert np.allclose(ours["nsd"], nsd, rtol=1e-5, atol=1e-6)
    assert ours["nsd"].min() < 0.9  # the masks really differ: the test can fail


def test_distances_are_exact_float32_of_the_integer_distance() -> None:
    """Every distance is float32(sqrt(dy^2 + dx^2)) x pixel size for the nearest pixel of the other boundary."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    for shape in [(1, 7), (7, 1), (2, 2), (5, 9), (40, 31), (128, 97), (300, 410)]:
        a, b = rng.random(shape) < 0.05, rng.random(shape) < 0.02
        a.flat[rng.integers(a.size)] = True
        b.flat[rng.integers(b.size)] = True
        _, (rr, cc) = ndimage.distance_transform_edt(~b, return_indices=True)
        yy, xx = np.indices(shape)
        d2 = (yy - rr) ** 2 + (xx - cc) ** 2
        want = np.sqrt(d2.astype(np.float32)).astype(np.float64) * 0.3
        got, back = directed_distances(a, b, 0.3)
        assert np.array_equal(got, want[a])  # bit for bit, in row-major order of a's pixels
        assert back.shape == (b.sum(),) and back.min() >= 0


def test_outlines_with_a_window_equal_the_full_search() -> None:
    rng = np.random.default_rng(5)
    for shape in [(9, 11), (40, 60), (3, 3), (1, 5)]:
        lab = _blobs(rng, 1, *shape, 4)[0]
        lab[: shape[0] // 3] = 0
        full = outlines(lab, 4, window=(0, shape[0], 0, shape[1]))
        for window in ["auto", foreground_box(lab)]:
            got = outlines(lab, 4, window=window)
            for c in range(4):
                want = boundary_pixels(lab)[0] & (lab == c)
                if not want.any():
                    assert got[c] is None and full[c] is None
                    continue
                for o in (got[c], full[c]):
                    mask = np.zeros(shape, bool)
                    mask[o.points[:, 0], o.points[:, 1]] = True
                    assert np.array_equal(mask, want) and len(o.points) == want.sum()
    blank = outlines(np.zeros((4, 5), np.uint8), 3)
    assert blank[1] is None and blank[2] is None and len(blank[0].points) == 14  # the image border
