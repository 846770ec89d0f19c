"""Post-processing (closing + largest component >= N px) and the keep-or-drop decision rule."""

from __future__ import annotations

import numpy as np
import pytest

from robustseg.errors import InputError
from robustseg.metrics import per_image_table
from robustseg.metrics.postprocess import decide_postprocessing, postprocess

CLASSES = ("background", "brain", "csp", "lv")


def scene() -> np.ndarray:
    lab = np.ones((14, 14), np.uint8)
    lab[:2, :2] = 0
    lab[3:8, 3:8] = 2  # CSP 5x5 with a one-pixel hole
    lab[5, 5] = 1
    lab[11, 11] = 2  # spurious 1-px CSP blob inside the brain
    lab[0, 12:14] = 3  # LV of 2 px < 5 -> removed; it touches background and brain
    lab[9:12, 2:5] = 3  # LV 9 px, kept
    return lab


def test_postprocess_pinned() -> None:
    lab = scene()
    out = postprocess(lab, classes=(2, 3), closing_radius=1, min_size=5)
    assert out[5, 5] == 2  # hole closed
    assert out[11, 11] == 1  # blob removed, takes the surrounding brain label
    assert (out[0, 12:14] != 3).all()  # LV below min_size removed
    assert (out[9:12, 2:5] == 3).all()  # LV of 9 px kept
    assert (out == 2).sum() == 25
    assert lab[5, 5] == 1  # input untouched
    # batch form equals per-image form; no closing leaves the hole
    batch = postprocess(np.stack([lab, lab]), classes=(2, 3))
    assert np.array_equal(batch[1], out)
    assert postprocess(lab, closing_radius=0)[5, 5] == 1
    # min_size above the largest component removes the class
    assert not (postprocess(lab, classes=(2,), min_size=26) == 2).any()
    with pytest.raises(InputError):
        postprocess(lab, connectivity=3)


def test_decision_keeps_only_without_loss() -> None:
    ref = scene()
    ref[11, 11] = 1
    ref[0, 12:14] = 1
    ref[5, 5] = 2
    raw = scene()[None]
    post = postprocess(raw)
    t_raw = per_image_table(raw, ref[None], class_names=CLASSES)
    t_post = per_image_table(post, ref[None], class_names=CLASSES)
    d = decide_postprocessing(t_raw, t_post)
    assert d.apply, d.reason
    row = d.comparison.set_index("class").loc["csp"]
    assert row["dice_post"] > row["dice_raw"]
    assert not d.comparison["worse"].any()
    # swapping roles: post-processing would make classes worse -> rejected
    d2 = decide_postprocessing(t_post, t_raw)
    assert not d2.apply and "worse" in d2.reason
    # identical tables: nothing improves -> not applied
    assert not decide_postprocessing(t_raw, t_raw).apply
    with pytest.raises(InputError, match="same"):
        decide_postprocessing(t_raw, t_post.assign(image_id="other"))
