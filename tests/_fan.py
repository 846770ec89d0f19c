"""Synthetic ultrasound images of known probe geometry (tests of geometry estimation and beam-based artefacts)."""

from __future__ import annotations

import cv2
import numpy as np

from robustseg.data.geometry import ProbeGeometry

H, W = 330, 480
CONVEX = ProbeGeometry.sector((H, W), apex=(-0.12 * H, W / 2), angles=40, r_near=0.16 * H, r_far=1.22 * H)
"""Convex probe: the apex lies above the image and the probe face is an arc (the phantom's layout)."""
PHASED = ProbeGeometry.sector((H, W), apex=(4.0, W / 2), angles=45, r_near=3.0, r_far=0.95 * H)
"""Phased array: the apex lies inside the image, near its top."""
OFF_CENTRE = ProbeGeometry.sector((H, W), apex=(-0.2 * H, 0.35 * W), angles=(-28.0, 42.0), r_near=0.22 * H,
                                  r_far=1.25 * H)
"""Off-centre apex and an asymmetric fan (a steered or cropped sector)."""
LINEAR = ProbeGeometry.linear((H, W), cols=(60.0, 419.0), rows=(12.0, 322.0))
"""Linear probe: a rectangle of parallel beams."""
GEOMETRIES = {"convex": CONVEX, "phased": PHASED, "off_centre": OFF_CENTRE, "linear": LINEAR}


def fan_image(geo: ProbeGeometry, seed: int = 0, level: float = 80.0, *, structures: bool = True,
              annotate: bool = False) -> np.ndarray:
    """Speckled tissue inside the field of view of ``geo`` (black outside), with a bright elliptical ring (a skull)
    and dark blobs; ``annotate`` adds a bright text-like box in a background corner (as scanners print)."""
    rng = np.random.default_rng(seed)
    h, w = geo.shape
    tex = cv2.GaussianBlur(rng.rayleigh(1.0, (h, w)).astype(np.float32), (0, 0), 0.8) / 1.2533
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = level * tex
    if structures:
        cy, cx, a, b = 0.55 * h, 0.5 * w, 0.28 * h, 0.33 * w
        e = np.hypot((yy - cy) / a, (xx - cx) / b)
        img = np.where(np.abs(e - 1) < 0.06, 2.6 * level * tex, img)
        img = np.where(np.hypot((yy - cy) / 18, (xx - cx + 30) / 12) < 1, 0.15 * level * tex, img)
    img = np.where(geo.maps().fan, img, 0.0)
    if annotate:
        img[4:14, 6:40] = 230.0
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def shadow_track(true: ProbeGeometry, seed: int) -> tuple[float, float, float, ProbeGeometry]:
    """Cast one acoustic shadow on ``fan_image(true, seed)`` with the geometry *estimated* from the image (as
    ``perturb.apply`` does) and measure its centre in the *true* geometry's lateral coordinate (degrees from the true
    apex, or columns) in the shallow and the deep quarter of its extent: ``(shallow, deep, extent, estimate)``."""
    from robustseg.data.geometry import estimate_geometry
    from robustseg.perturb import ultrasound

    img = fan_image(true, seed)
    est = estimate_geometry(img)
    shape = ultrasound.shadow_shape(img, np.random.default_rng(seed), est, bands=1)
    m = true.maps()
    inside = shape > 0.5
    depth, lat, w = m.depth[inside], m.lateral[inside], shape[inside]
    lo, hi = np.percentile(depth, [2, 98])
    q = (hi - lo) / 4
    shallow, deep = depth < lo + q, depth > hi - q
    return (float(np.average(lat[shallow], weights=w[shallow])), float(np.average(lat[deep], weights=w[deep])),
            float(hi - lo), est)
