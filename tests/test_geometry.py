"""Probe geometry: estimation on images of known geometry, constructors, text form, resizing, summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _fan import CONVEX, GEOMETRIES, LINEAR, OFF_CENTRE, PHASED, fan_image

from robustseg.data.geometry import (
    GeometrySetting,
    ProbeGeometry,
    estimate_geometry,
    geometry_table,
    resolve_geometry,
    summarize_geometry,
)
from robustseg.errors import InputError


@pytest.mark.parametrize("name", ["convex", "phased", "off_centre"])
@pytest.mark.parametrize("seed", [0, 1])
def test_sector_apex_within_one_percent_of_the_height(name, seed):
    true = GEOMETRIES[name]
    est = estimate_geometry(fan_image(true, seed, annotate=seed == 1))
    assert est.kind == "sector" and est.source == "estimated"
    h = true.height
    assert abs(est.apex_row - true.apex_row) <= 0.01 * h
    assert abs(est.apex_col - true.apex_col) <= 0.01 * h
    assert abs(est.angle_left - true.angle_left) <= 0.5 and abs(est.angle_right - true.angle_right) <= 0.5
    assert abs(est.r_near - true.r_near) <= 0.03 * h
    assert abs(est.r_far - true.r_far) <= 0.03 * h


def test_convex_apex_lies_above_the_image_and_not_at_the_near_field_arc():
    est = estimate_geometry(fan_image(CONVEX, 3))
    assert est.apex_row < 0  # the first non-black row (the near-field arc) is not the apex
    first_row = int(np.flatnonzero((fan_image(CONVEX, 3) > 0).any(axis=1))[0])
    assert first_row >= 0 and est.apex_row < first_row - 0.05 * CONVEX.height


def test_linear_probe_and_full_frame():
    est = estimate_geometry(fan_image(LINEAR, 0))
    assert est.kind == "linear"
    assert abs(est.col_left - LINEAR.col_left) <= 1 and abs(est.col_right - LINEAR.col_right) <= 1
    assert abs(est.row_top - LINEAR.row_top) <= 2 and abs(est.row_bottom - LINEAR.row_bottom) <= 2
    full = estimate_geometry(fan_image(ProbeGeometry.linear((120, 160)), 0))
    assert full.kind == "linear" and full.col_left == 0 and full.col_right == 159
    blank = estimate_geometry(np.zeros((40, 50), np.uint8))
    assert blank.kind == "linear" and blank.shape == (40, 50)


def test_phantom_geometry_is_recovered(tmp_path):
    from robustseg.data.io import read_image
    from robustseg.data.phantom import generate_phantom

    generate_phantom(tmp_path, n=2, seed=3, style="small-thin")
    for path in sorted((tmp_path / "Trans-thalamic" / "Trans-thalamic").glob("*.png")):
        img = read_image(path)
        h, w = img.shape
        g = estimate_geometry(img)  # the phantom's fan: apex (-0.12 h, w / 2), +-40 deg, r_near 0.16 h
        assert g.kind == "sector"
        assert abs(g.apex_row + 0.12 * h) <= 0.01 * h and abs(g.apex_col - w / 2) <= 0.01 * h
        assert abs(g.angle_right - 40) < 0.5 and abs(g.angle_left + 40) < 0.5
        assert abs(g.r_near - 0.16 * h) <= 0.02 * h


def test_maps_follow_the_geometry():
    m = CONVEX.maps()
    assert m.fan.shape == CONVEX.shape and m.depth.dtype == np.float32
    # a pixel straight below the apex: angle 0, depth = its radius minus the probe face's
    r, c = 200, int(CONVEX.apex_col)
    assert abs(m.lateral[r, c] - math.degrees(math.atan2(c - CONVEX.apex_col, r - CONVEX.apex_row))) < 1e-3
    assert abs(m.depth[r, c] - (r - CONVEX.apex_row - CONVEX.r_near)) < 1e-3
    assert m.position[m.fan].min() >= 0 and m.position[m.fan].max() <= 1
    # beam space and back: a smooth image survives the round trip inside the fan
    import cv2

    img = (np.add.outer(np.arange(CONVEX.height), np.arange(CONVEX.width)) % 200).astype(np.float32)
    beam = cv2.remap(img, *m.to_beam, cv2.INTER_LINEAR)
    back = cv2.remap(beam, *m.to_image, cv2.INTER_LINEAR)
    inner = m.fan & (m.depth > 2) & (m.depth < CONVEX.depth_max - 2) & (m.position > 0.01) & (m.position < 0.99)
    assert np.abs(back - img)[inner].mean() < 1.0
    lm = LINEAR.maps()
    assert lm.fan.sum() == (int(LINEAR.row_bottom) - int(LINEAR.row_top) + 1) * (int(LINEAR.col_right) - int(LINEAR.col_left) + 1)


def test_text_round_trip_and_errors():
    for g in GEOMETRIES.values():
        back = ProbeGeometry.parse(g.to_text(), g.shape)
        for key in ("apex_row", "angle_left", "r_far", "col_left", "row_bottom"):
            a, b = getattr(g, key), getattr(back, key)
            assert (a is None and b is None) or abs(a - b) < 1e-3 * max(1.0, abs(a))
    with pytest.raises(InputError, match="expected 'sector"):
        ProbeGeometry.parse("convex apex_row=1", (10, 10))
    with pytest.raises(InputError, match="missing"):
        ProbeGeometry.parse("sector apex_row=1 apex_col=2", (10, 10))
    with pytest.raises(InputError, match="not a number"):
        ProbeGeometry.parse("linear col_left=a col_right=2 row_top=0 row_bottom=5", (10, 10))
    with pytest.raises(InputError, match="left < right"):
        ProbeGeometry.sector((10, 10), (0, 5), (30, -30))
    with pytest.raises(InputError, match="r_near < r_far"):
        ProbeGeometry.sector((10, 10), (0, 5), 30, r_near=20, r_far=10)
    with pytest.raises(InputError, match="increasing"):
        ProbeGeometry.linear((10, 10), cols=(5, 2))


def test_letterboxed_geometry_matches_the_estimate_on_the_preprocessed_image():
    from robustseg.data.transforms import preprocess

    img = fan_image(OFF_CENTRE, 0)
    small = preprocess(img, None, 128)[0]
    mapped = OFF_CENTRE.letterboxed(128)
    est = estimate_geometry(small)
    assert est.kind == "sector"
    assert abs(est.apex_row - mapped.apex_row) < 0.02 * 128 and abs(est.apex_col - mapped.apex_col) < 0.02 * 128
    assert abs(est.angle_left - mapped.angle_left) < 1.5 and abs(est.angle_right - mapped.angle_right) < 1.5


def test_settings_and_per_image_values():
    img = fan_image(CONVEX, 0)
    fixed = resolve_geometry(img, GeometrySetting("sector", apex=(-40.0, 240.0), opening_deg=70.0))
    assert fixed.apex_row == -40.0 and fixed.angle_left == -35.0 and fixed.source == "study"
    apex_only = resolve_geometry(img, GeometrySetting("auto", apex=(-39.6, 240.0)))
    assert apex_only.kind == "sector" and abs(apex_only.angle_right - 40) < 1.0
    forced = resolve_geometry(img, GeometrySetting("linear"))
    assert forced.kind == "linear"
    given = resolve_geometry(img, GeometrySetting(), per_image=PHASED.to_text())
    assert given.apex_row == pytest.approx(PHASED.apex_row) and given.source == "probe_geometry"
    assert resolve_geometry(img, None, per_image=float("nan")).source == "estimated"
    with pytest.raises(InputError, match="no converging fan edges"):
        resolve_geometry(fan_image(LINEAR, 0), GeometrySetting("sector"))
    with pytest.raises(InputError, match="perturb.geometry"):
        GeometrySetting("convex")
    with pytest.raises(InputError, match="linear"):
        GeometrySetting("linear", apex=(0, 1))


def test_summary_warns_when_images_disagree():
    same = [estimate_geometry(fan_image(CONVEX, s)) for s in range(3)]
    table, warnings = summarize_geometry(geometry_table(same, ["a", "b", "c"]))
    assert not warnings and "apex_row" in set(table["quantity"])
    mixed = [*same, estimate_geometry(fan_image(LINEAR, 0)), estimate_geometry(fan_image(OFF_CENTRE, 0))]
    _, warnings = summarize_geometry(geometry_table(mixed, ["a", "b", "c", "d", "e"]))
    text = " ".join(warnings)
    assert "differs between images" in text and "d" in text
    assert "apex_row varies" in text and "e" in text


def test_doctests():
    import doctest

    import robustseg.data.geometry as mod

    res = doctest.testmod(mod)
    assert res.attempted >= 5 and res.failed == 0
