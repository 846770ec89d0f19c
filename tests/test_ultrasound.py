"""The ultrasound artefacts follow the probe geometry and the physics they model (images of known geometry)."""

from __future__ import annotations

import numpy as np
import pytest
from _fan import CONVEX, GEOMETRIES, LINEAR, OFF_CENTRE, PHASED, fan_image, shadow_track

from robustseg import perturb as P
from robustseg.data.geometry import ProbeGeometry
from robustseg.perturb import texture


def _shadow_track(name: str, seed: int) -> tuple[float, float, float]:
    return shadow_track(GEOMETRIES[name], seed)[:3]


@pytest.mark.parametrize("name", ["convex", "phased", "off_centre"])
@pytest.mark.parametrize("seed", [0, 3, 5])
def test_shadow_stays_on_its_beam_line_in_a_sector(name, seed):
    shallow, deep, extent = _shadow_track(name, seed)
    assert extent > 0.3 * GEOMETRIES[name].depth_max  # a real band, not a speck
    assert abs(deep - shallow) <= 1.5, f"{name}: drift {deep - shallow:.2f} deg over depth"


@pytest.mark.parametrize("seed", [0, 3, 5])
def test_shadow_runs_straight_down_for_a_linear_probe(seed):
    shallow, deep, extent = _shadow_track("linear", seed)
    assert extent > 0.3 * LINEAR.depth_max
    assert abs(deep - shallow) <= 6.0, f"drift {deep - shallow:.1f} px over depth"


def test_depth_attenuation_follows_true_depth():
    img = np.where(CONVEX.maps().fan, 200, 0).astype(np.uint8)
    remaining = P.PERTURBATIONS["depth_attenuation"].value(3)
    out = P.apply(img, "depth_attenuation", 3, 0, CONVEX).astype(float)
    m = CONVEX.maps()
    gain = out / 200.0
    z = np.clip(m.depth / CONVEX.depth_max, 0, 1)
    inner = m.fan & (m.depth > 2)
    assert np.abs(gain[inner] - remaining ** z[inner]).max() <= 1.5 / 200 + 2e-3
    # equal depth, different beams: equal gain (an arc, not a row)
    band = inner & (np.abs(m.depth - 150) < 0.5)
    assert np.ptp(out[band]) <= 1
    db = P.apply(img, "depth_attenuation_db", 3, 0, CONVEX).astype(float)
    loss = P.PERTURBATIONS["depth_attenuation_db"].value(3) * 255 / 60
    assert abs((200 - db[band].mean()) - loss * 150 / CONVEX.depth_max) <= 1.0


def test_tgc_error_changes_depth_bands_only():
    img = np.where(LINEAR.maps().fan, 120, 0).astype(np.uint8)
    out = P.apply(img, "tgc_error", 5, 7, LINEAR).astype(float)
    m = LINEAR.maps()
    rows = out[:, 100:380]
    inside = m.fan[:, 100:380]
    per_row_ptp = np.array([np.ptp(r[f]) if f.any() else 0 for r, f in zip(rows, inside, strict=True)])
    assert per_row_ptp.max() <= 1  # constant along each depth (a row for a linear probe)
    profile = np.array([r[f].mean() for r, f in zip(rows, inside, strict=True) if f.any()])
    assert np.abs(profile - 120).max() >= 0.8 * P.PERTURBATIONS["tgc_error"].value(5) * 255 / 60
    assert (np.abs(profile - 120) < 1).mean() > 0.3  # outside the mis-set bands the gain is right


def test_contact_loss_darkens_one_edge_sector_over_the_whole_depth():
    img = fan_image(CONVEX, 1)
    out = P.apply(img, "contact_loss", 5, 2, CONVEX).astype(float)
    where = P.region(img, "contact_loss", 2, CONVEX)
    m = CONVEX.maps()
    pos = m.position[where]
    assert pos.min() < 0.01 or pos.max() > 0.99  # starts at a fan edge
    assert 0.2 < np.ptp(pos) < 0.3
    assert m.depth[where].min() < 2 and m.depth[where].max() > CONVEX.depth_max - 2  # whole depth
    loss = P.PERTURBATIONS["contact_loss"].value(5)
    core = where & (np.abs(m.position - pos.mean()) < 0.05) & (img > 20)
    assert np.allclose(out[core] / img[core], 1 - loss, atol=0.05)
    assert np.array_equal(out[~where & m.fan & (np.abs(m.position - pos.mean()) > 0.4)],
                          img[~where & m.fan & (np.abs(m.position - pos.mean()) > 0.4)])


def test_reverberation_repeats_a_near_field_interface_at_multiples_of_its_depth():
    geo = ProbeGeometry.linear((300, 200))
    img = np.full((300, 200), 30, np.uint8)
    img[38:43] = 220  # a bright interface at depth ~40 px
    out = P.apply(img, "reverberation", 5, 0, geo).astype(float)
    profile = (out - img)[:, 50:150].mean(axis=1)
    for k in (2, 3, 4):
        assert profile[40 * k - 3:40 * k + 4].max() > 5 * (k == 2) + 1, f"no echo at {k} x depth"
        assert profile[40 * k + 12:40 * k + 26].max() < 0.5  # nothing between the echoes
    peaks = [profile[40 * k - 3:40 * k + 4].max() for k in (2, 3, 4)]
    assert peaks[0] > peaks[1] > peaks[2]  # each echo fainter than the one before


def test_beam_width_blurs_across_beams_more_with_depth_and_not_along_them():
    geo = ProbeGeometry.linear((300, 200))
    stripes = np.where((np.arange(200) // 6) % 2 == 0, 200, 40)[None, :].repeat(300, axis=0).astype(np.uint8)
    out = P.apply(stripes, "beam_width", 5, 0, geo).astype(float)
    contrast = np.ptp(out[:, 60:140], axis=1)
    assert contrast[5] > 130 and contrast[-5] < 0.6 * contrast[5]
    assert np.all(np.diff(contrast[10:-10]) <= 1.0)  # resolution only worsens with depth
    line = np.full((300, 200), 40, np.uint8)
    line[150:153] = 200  # a horizontal reflector: axial resolution unchanged
    out = P.apply(line, "beam_width", 5, 0, geo)
    assert np.array_equal(out[140:160, 60:140], line[140:160, 60:140])


def test_speckle_reduction_smooths_speckle_and_keeps_edges():
    rng = np.random.default_rng(0)
    geo = ProbeGeometry.linear((200, 200))
    img = np.where(np.arange(200)[None, :] < 100, 40.0, 180.0) * rng.rayleigh(1.0, (200, 200)) / 1.2533
    img = np.clip(img, 0, 255).astype(np.uint8)
    out = P.apply(img, "speckle_reduction", 5, 0, geo).astype(float)
    assert out[:, 10:90].std() < 0.6 * img[:, 10:90].std()
    assert out[:, 105:195].mean() - out[:, 5:95].mean() > 0.9 * (img[:, 105:195].mean() - img[:, 5:95].mean())


# --------------------------------------------------------------------------------------------- speckle
def _lag1(x: np.ndarray, axis: int) -> float:
    x = x - x.mean()
    a, b = (x[1:], x[:-1]) if axis == 0 else (x[:, 1:], x[:, :-1])
    return float((a * b).mean() / x.var())


@pytest.mark.parametrize("diffuse", [1.0, 0.5, 0.2])
@pytest.mark.parametrize("geo_name", ["linear", "convex"])
def test_speckle_statistics_on_a_uniform_region(diffuse, geo_name):
    """SD/mean of the speckle field within 10 % of the Rician theory (Rayleigh at diffuse = 1), and correlated over
    the resolution cell at native pixel size: lag-1 autocorrelation >= 0.3, longer across the beam than along it."""
    geo = {"linear": ProbeGeometry.linear((661, 959)),
           "convex": ProbeGeometry.sector((661, 959), (-79.3, 479.5), 40, r_near=105.8, r_far=806.4)}[geo_name]
    fields = [texture.speckle_field(geo, diffuse, np.random.default_rng(s)) for s in range(3)]
    mean, sd = texture.rice_moments(diffuse)
    theory = sd / mean
    window = (slice(250, 450), slice(380, 580))  # around the centre line: beams run down, arcs across
    measured = np.mean([f[window].std() / f[window].mean() for f in fields])
    assert abs(measured / theory - 1) <= 0.10, f"SD/mean {measured:.3f} vs theory {theory:.3f}"
    axial = np.mean([_lag1(f[window], 0) for f in fields])
    lateral = np.mean([_lag1(f[window], 1) for f in fields])
    assert axial >= 0.3 and lateral >= 0.3 and lateral > axial, (axial, lateral)
    # applied to an image: the image's uniform region takes on the same statistics
    img = np.where(geo.maps().fan, 60, 0).astype(np.uint8)
    out = P.apply_value(img, "speckle", diffuse, 4, geo)[window].astype(float)
    assert abs(out.std() / out.mean() / theory - 1) <= 0.10


def test_rayleigh_theory():
    m, sd = texture.rice_moments(1.0)
    assert m == pytest.approx(np.sqrt(np.pi / 4), rel=1e-9)  # unit power: E|z| = sqrt(pi) / 2
    assert sd / m == pytest.approx(np.sqrt(4 / np.pi - 1), rel=1e-9)
    from scipy.stats import rice

    for f in (0.1, 0.5, 0.9):
        sigma = np.sqrt(f / 2)
        dist = rice(np.sqrt(1 - f) / sigma, scale=sigma)
        assert texture.rice_moments(f) == pytest.approx((dist.mean(), dist.std()), rel=1e-6)


@pytest.mark.parametrize("name", ["convex", "phased", "off_centre", "linear"])
def test_every_beam_artefact_stays_inside_the_fan(name):
    geo = GEOMETRIES[name]
    img = fan_image(geo, 2)
    outside = ~geo.maps().fan
    for entry in P.PERTURBATIONS.values():
        if entry.uses_geometry:
            out = P.apply(img, entry.name, 5, 1, geo)
            assert np.array_equal(out[outside], img[outside]), entry.name


def test_off_centre_speckle_follows_the_beams():
    """In an off-centre sector the speckle grain is elongated across the local beam direction."""
    geo = OFF_CENTRE
    f = texture.speckle_field(geo, 1.0, np.random.default_rng(0))
    m = geo.maps()
    assert np.allclose(f[~m.fan], 1.0)
    assert abs(f[m.fan].mean() - 1.0) < 0.03
    assert PHASED.kind == "sector"
