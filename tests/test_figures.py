"""Report figures: the qualitative panels share one crop and extent; class colours stay apart for colour-blind
readers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from matplotlib.image import AxesImage
from skimage.color import rgb2lab

from robustseg.report.figures import CLASS_COLORS, crop, crop_box, qualitative_figure


def _case(n: int = 3, size: int = 48) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (n, size, size), dtype=np.uint8)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    masks[0, 10:30, 5:40] = 1  # wide
    masks[1, 2:46, 20:28] = 1  # tall, touching the top and bottom
    masks[1, 20:24, 22:25] = 2
    masks[2, 40:48, 40:48] = 3  # in a corner: the square crop reaches past the image
    logits = rng.normal(size=(n, 4, size, size)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    picks = [(f"pick {i}", i, f"img{i}") for i in range(n)]
    return images, masks, probs, picks


@pytest.mark.parametrize("box_of", [(slice(10, 30), slice(5, 40)), (slice(2, 46), slice(20, 28)),
                                    (slice(40, 48), slice(40, 48)), (slice(0, 0), slice(0, 0))])
def test_crop_box_is_square_and_holds_the_foreground(box_of: tuple[slice, slice]) -> None:
    mask = np.zeros((48, 64), dtype=bool)
    mask[box_of] = True
    rs, cs = crop_box(mask)
    assert rs.stop - rs.start == cs.stop - cs.start > 0
    rows, cols = np.nonzero(mask)
    if rows.size:
        assert rs.start <= rows.min() and rows.max() < rs.stop and cs.start <= cols.min() and cols.max() < cs.stop
    out = crop(mask.astype(np.uint8), (rs, cs))
    assert out.shape == (rs.stop - rs.start,) * 2 and out.sum() == mask.sum()


def test_qualitative_panels_share_crop_extent_and_size() -> None:
    """Image, reference, prediction, probabilities and mismatch: one size, one row line, one pixel extent."""
    images, masks, probs, picks = _case()
    fig = qualitative_figure(images, masks, probs, picks)
    panels = [ax for ax in fig.axes if ax.images]
    n_cols = 3 + 2 + 1
    assert len(panels) == len(picks) * n_cols
    for r in range(len(picks)):
        row = panels[r * n_cols:(r + 1) * n_cols]
        boxes = np.array([ax.get_position().bounds for ax in row])
        assert np.allclose(boxes[:, 1:], boxes[0, 1:])  # same bottom, width and height
        assert np.allclose(np.diff(boxes[:, 0]), np.diff(boxes[:, 0])[0])  # evenly spaced columns
        extents = {tuple(im.get_extent()) for ax in row for im in ax.images if isinstance(im, AxesImage)}
        assert len(extents) == 1
        shapes = {im.get_array().shape[:2] for ax in row for im in ax.images}
        assert len(shapes) == 1
        assert {ax.get_xlim() for ax in row} == {row[0].get_xlim()} and {ax.get_ylim() for ax in row} == {row[0].get_ylim()}
        # the probability panel shows the same pixels as the image panel: P(CSP) of the crop
        box = crop_box(masks[r] > 0)
        assert np.allclose(row[3].images[0].get_array(), crop(probs[r], box)[2])
        assert np.array_equal(row[0].images[0].get_array(), crop(images[r], box))
    colorbar = [ax for ax in fig.axes if not ax.images and ax.get_label() == "probability colour bar"]
    assert len(colorbar) == 1
    below = colorbar[0].get_position()
    last_row = [ax.get_position() for ax in panels[-n_cols:]]
    assert below.y1 <= min(p.y0 for p in last_row)  # the colour bar takes no room from the panels


# Machado, Oliveira & Fernandes (2009) colour-vision-deficiency matrices (severity 1), on linear RGB.
CVD = {"normal": np.eye(3),
       "protan": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                           [-0.003882, -0.048116, 1.051998]]),
       "deutan": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                           [-0.011820, 0.042940, 0.968881]]),
       "tritan": np.array([[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602],
                           [0.004733, 0.691367, 0.303900]])}


def _seen(hex_color: str, vision: str, grey: float) -> np.ndarray:
    c = np.array([int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    sim = np.clip(CVD[vision] @ lin, 0, 1)
    srgb = np.where(sim <= 0.0031308, 12.92 * sim, 1.055 * sim ** (1 / 2.4) - 0.055)
    over = 0.5 * srgb + 0.5 * grey  # an overlay half over an ultrasound grey
    return rgb2lab(over.reshape(1, 1, 3)).ravel()


def test_class_overlays_stay_apart_for_colour_blind_readers() -> None:
    fg = [c for c in CLASS_COLORS if c != "background"]
    worst = min(np.linalg.norm(_seen(CLASS_COLORS[a], v, g) - _seen(CLASS_COLORS[b], v, g))
                for a, b in itertools.combinations(fg, 2) for v in CVD for g in (0.2, 0.45, 0.7))
    assert worst >= 15  # CIELAB distance: clearly different colours, for every vision type and background
