"""Ultrasound artefacts that follow the probe geometry: shadows and contact loss along beams, depth-dependent gain
(attenuation, time-gain compensation), reverberation of a near-field interface and near-field haze.

Every function takes the image (``uint8 (H, W)``), the severity's value, a generator and the image's
:class:`~robustseg.data.geometry.ProbeGeometry`; it changes only pixels inside the field of view. Depth is
measured along the beam from the probe face and lateral position across the beams (``geometry.maps()``), so a
shadow stays on its beam line whatever the apex, and attenuation follows true depth. Spatial sizes are given
for a fan 700 px deep (the 959 x 661 frames of the fetal-head data set) and scale with the fan's depth.

Artefacts with a random or image-dependent part are :class:`Staged`: the part that does not depend on the severity's
value is prepared once per image and seed, so the severities of one image share it. The *local* artefacts (acoustic
shadow, contact loss, reverberation, near-field haze, banded gain error) act on a region fixed per image and seed;
their damage is also measured inside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from robustseg.data.geometry import ProbeGeometry

REFERENCE_DEPTH = 700.0
"""Fan depth (px) at which spatial sizes are given; they scale with ``geometry.depth_max / REFERENCE_DEPTH``."""
DISPLAY_RANGE_DB = 60.0
"""Dynamic range of the log-compressed display assumed by the dB-domain artefacts: 255 grey levels = 60 dB."""


def scale(geo: ProbeGeometry) -> float:
    """Spatial scale of an image's fan relative to :data:`REFERENCE_DEPTH`."""
    return max(geo.depth_max, 1.0) / REFERENCE_DEPTH


def fan_percentile(values: np.ndarray, fan: np.ndarray, q: float) -> float:
    """The ``q``-th percentile of ``values`` inside ``fan`` (every 3rd pixel: fast, and plenty for a threshold)."""
    inside = values[fan]
    return float(np.percentile(inside[::3], q)) if inside.size else 255.0


def _finish(image: np.ndarray, out: np.ndarray, fan: np.ndarray) -> np.ndarray:
    """``out`` inside the fan, ``image`` outside, rounded to uint8."""
    res = np.where(fan, out, image.astype(np.float32))
    return np.clip(np.rint(res), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Staged:
    """An artefact in two steps: ``prepare(image, rng, geo) -> state`` holds everything that does not depend on the
    severity's value (the noise realisation, where a shadow falls), ``render(image, value, state, geo) -> image``
    applies the value. ``region(state) -> bool mask`` marks a *local* artefact's region. Calling it runs both steps,
    like any other artefact; the registry reuses the state across the severities of one image."""

    prepare: Callable[[np.ndarray, np.random.Generator, ProbeGeometry], Any]
    render: Callable[[np.ndarray, float, Any, ProbeGeometry], np.ndarray]
    region: Callable[[Any], np.ndarray] | None = None

    def __call__(self, image: np.ndarray, value: float, rng: np.random.Generator, geo: ProbeGeometry) -> np.ndarray:
        return self.render(image, value, self.prepare(image, rng, geo), geo)


def _attenuate(image: np.ndarray, value: float, shape: np.ndarray, geo: ProbeGeometry) -> np.ndarray:
    """Intensity times ``1 - value * shape`` inside the fan."""
    return _finish(image, image * (1.0 - float(value) * shape), geo.maps().fan)


def _half(shape: np.ndarray) -> np.ndarray:
    return shape > 0.5


def _to_beam(image: np.ndarray, geo: ProbeGeometry) -> np.ndarray:
    m = geo.maps()
    return cv2.remap(image.astype(np.float32), *m.to_beam, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=0)


def _to_image(beam: np.ndarray, geo: ProbeGeometry) -> np.ndarray:
    m = geo.maps()
    return cv2.remap(beam.astype(np.float32), *m.to_image, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


# --------------------------------------------------------------------------------------- local artefacts
SHADOW_BANDS = 2
SHADOW_HALF_WIDTH = 0.04
"""Half-width of a shadow band as a fraction of the fan's lateral span (cosine taper across it)."""
_SHADOW_BINS = 60


def shadow_shape(image: np.ndarray, rng: np.random.Generator, geo: ProbeGeometry,
                 bands: int = SHADOW_BANDS) -> np.ndarray:
    """Where acoustic shadows fall (float32 ``(H, W)`` in [0, 1]): ``bands`` bands along beam lines, each starting
    just behind the first strong reflector on its line.

    Beam lines (60 bins across the fan) whose smoothed intensity exceeds the fan's 97th percentile are candidates,
    drawn with probability proportional to that reflector's brightness; the band runs from the far edge of the
    reflector's first bright run to the bottom of the fan, with a cosine taper across the beam (half-width
    :data:`SHADOW_HALF_WIDTH` of the fan's lateral span) and a short ramp in depth.
    """
    m = geo.maps()
    s = scale(geo)
    smooth = cv2.GaussianBlur(image.astype(np.float32), (0, 0), max(0.7, 2.0 * s))
    beam = _to_beam(smooth, geo)
    n_d, n_l = beam.shape
    edges = np.linspace(0, n_l, _SHADOW_BINS + 1).astype(int)
    profile = np.maximum.reduceat(beam, edges[:-1], axis=1)  # (depth, bin): brightest sample per depth and bin
    threshold = fan_percentile(smooth, m.fan, 97)
    bright = profile >= threshold
    strength = np.where(bright.any(axis=0), np.where(bright, profile, 0).max(axis=0), 0.0)
    onset = np.array([_end_of_first_run(bright[:, b]) if bright[:, b].any() else 0.5 * n_d
                      for b in range(_SHADOW_BINS)])
    candidates = np.flatnonzero(strength > 0)
    if candidates.size == 0:
        candidates, weights = np.arange(_SHADOW_BINS), np.ones(_SHADOW_BINS)
    else:
        weights = strength[candidates]
    k = min(4, candidates.size)
    chosen = rng.choice(candidates, size=k, replace=False, p=weights / weights.sum())
    shape = np.zeros(image.shape, dtype=np.float32)
    ramp = max(2.0, 4.0 * s)
    for b in chosen[:bands]:
        centre = (b + 0.5) / _SHADOW_BINS
        d = np.abs(m.position - centre) / SHADOW_HALF_WIDTH
        across = np.where(d < 1.0, 0.5 * (1.0 + np.cos(np.pi * np.minimum(d, 1.0))), 0.0)
        along = np.clip((m.depth - onset[b]) / ramp, 0.0, 1.0)
        shape = np.maximum(shape, (across * along).astype(np.float32))
    return np.where(m.fan, shape, 0.0).astype(np.float32)


def _end_of_first_run(hit: np.ndarray, gap: int = 2) -> float:
    """Index just past the first run of True in ``hit`` (runs may hold gaps of up to ``gap`` False)."""
    idx = np.flatnonzero(hit)
    jumps = np.flatnonzero(np.diff(idx) > gap + 1)
    last = idx[jumps[0]] if jumps.size else idx[-1]
    return float(last + 1)


acoustic_shadow = Staged(shadow_shape, _attenuate, _half)
"""Acoustic shadowing: intensity times ``1 - attenuation * shape`` behind strong reflectors (:func:`shadow_shape`);
the value is the attenuation in the band."""


CONTACT_WIDTH = 0.25
"""Share of the fan's lateral span that loses contact (from one edge of the probe)."""
CONTACT_TAPER = 0.05


def contact_shape(image: np.ndarray, rng: np.random.Generator, geo: ProbeGeometry) -> np.ndarray:
    """Where the probe lost contact (float32 in [0, 1]): the beams of one edge of the probe (side drawn from
    ``rng``), :data:`CONTACT_WIDTH` of the fan wide with a cosine edge, over the whole depth."""
    del image
    m = geo.maps()
    pos = m.position if rng.random() < 0.5 else 1.0 - m.position
    t = np.clip((pos - CONTACT_WIDTH) / CONTACT_TAPER, 0.0, 1.0)
    shape = 0.5 * (1.0 + np.cos(np.pi * t))
    return np.where(m.fan, shape, 0.0).astype(np.float32)


contact_loss = Staged(contact_shape, _attenuate, _half)
"""Contact loss / dropout: the echo of a sector of the fan falls by the value (1: black) where part of the probe
face lost its coupling (:func:`contact_shape`)."""


# ---------------------------------------------------------------------------------------- depth and gain
def depth_profile(geo: ProbeGeometry, profile: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``profile(z)`` of relative depth ``z`` (0 at the probe face, 1 at the deepest point) at every pixel, evaluated
    once per beam-grid row and looked up (float32 ``(H, W)``)."""
    m = geo.maps()
    z = np.clip(np.arange(m.beam_shape[0], dtype=np.float64) / max(geo.depth_max, 1.0), 0.0, 1.0)
    return np.asarray(profile(z), dtype=np.float32)[m.depth_index]


def depth_attenuation(image: np.ndarray, remaining: float, rng: np.random.Generator,
                      geo: ProbeGeometry) -> np.ndarray:
    """Uncompensated attenuation in displayed intensity: times ``remaining ** (depth / deepest depth)``, depth along
    the beam from the probe face. Deterministic; ``rng`` unused."""
    del rng
    gain = depth_profile(geo, lambda z: np.exp(math.log(float(remaining)) * z))
    return _finish(image, image * gain, geo.maps().fan)


def _db_to_grey(db: np.ndarray | float) -> np.ndarray | float:
    return np.asarray(db) * (255.0 / DISPLAY_RANGE_DB)


def depth_attenuation_db(image: np.ndarray, loss_db: float, rng: np.random.Generator,
                         geo: ProbeGeometry) -> np.ndarray:
    """Uncompensated attenuation in the log-compressed (dB) display: a gain that falls linearly in dB with depth, to
    ``-loss_db`` at the deepest point, which on a log display subtracts grey levels (:data:`DISPLAY_RANGE_DB`).
    Deterministic; ``rng`` unused."""
    del rng
    loss = depth_profile(geo, lambda z: _db_to_grey(float(loss_db) * z))
    return _finish(image, image - loss, geo.maps().fan)


TGC_HALF_WIDTH = 0.12
"""Half-width of a mis-set time-gain-compensation band, as a share of the fan's depth (raised cosine)."""


def _tgc_prepare(image: np.ndarray, rng: np.random.Generator, geo: ProbeGeometry) -> np.ndarray:
    """The gain error of 1 dB: one or two raised-cosine depth bands (number, centres in 15-85 % of the depth and
    signs drawn from ``rng``), in grey levels."""
    del image
    n = 1 + int(rng.integers(2))
    centres = rng.uniform(0.15, 0.85, size=2)
    signs = np.where(rng.random(2) < 0.5, -1.0, 1.0)

    def bands(z: np.ndarray) -> np.ndarray:
        out = np.zeros_like(z)
        for c, sgn in zip(centres[:n], signs[:n], strict=True):
            out += sgn * 0.5 * (1.0 + np.cos(np.pi * np.minimum(np.abs(z - c) / TGC_HALF_WIDTH, 1.0)))
        return out

    return depth_profile(geo, bands)


def _tgc_render(image: np.ndarray, error_db: float, unit: np.ndarray, geo: ProbeGeometry) -> np.ndarray:
    return _finish(image, image + _db_to_grey(float(error_db)) * unit, geo.maps().fan)


tgc_error = Staged(_tgc_prepare, _tgc_render, lambda unit: np.abs(unit) > 0.5)
"""Banded time-gain-compensation error: in one or two depth bands the gain is off by up to the value in dB
(raised-cosine profile, :data:`TGC_HALF_WIDTH`), which shifts the grey levels of a log display. A local artefact:
its region is where the error exceeds half its peak."""


# -------------------------------------------------------------------------------------------- near field
NEAR_FIELD = 0.4
"""Share of the fan's depth searched for the interface that reverberates."""
REVERB_ORDERS = 6


def _first_interface(smooth: np.ndarray, lo: int, hi: int, threshold: float, background: float
                     ) -> tuple[np.ndarray, np.ndarray, float]:
    """Per beam column the depth of the first strong interface in rows ``lo..hi`` (the peak of the first run above
    ``threshold``), smoothed across the beams; whether the beam has one (float weight, tapered); and the median
    thickness of those echoes (rows at or above half their height over ``background``)."""
    n_d, n_l = smooth.shape
    hit = smooth[lo:hi] >= threshold
    has = hit.any(axis=0)
    if not has.any():
        return np.zeros(n_l), np.zeros(n_l), 0.0
    cols = np.arange(n_l)
    first = lo + hit.argmax(axis=0)
    span = max(2, (hi - lo) // 4)
    rows = np.clip(first[None, :] + np.arange(span)[:, None], 0, n_d - 1)
    window = smooth[rows, cols[None, :]]
    inside = np.cumprod(window >= threshold, axis=0).astype(bool)  # the first run, up to where it ends
    peak = first + np.argmax(np.where(inside, window, -np.inf), axis=0)
    # thickness: the contiguous rows around the peak at or above half its height over the background
    around = np.clip(peak[None, :] + np.arange(-span, span + 1)[:, None], 0, n_d - 1)
    level = smooth[around, cols[None, :]] - background
    half = level >= 0.5 * (smooth[peak, cols] - background)[None, :]
    down = np.cumprod(half[span:], axis=0).sum(axis=0)
    up = np.cumprod(half[span::-1], axis=0).sum(axis=0)
    thickness = float(np.median((down + up - 1)[has]))
    depth = np.interp(cols, cols[has], peak[has].astype(np.float64))
    win = max(3, 2 * (n_l // 30) + 1)
    depth = cv2.medianBlur(depth.astype(np.float32)[None, :], min(win, 5))[0].astype(np.float64)
    depth = np.convolve(np.pad(depth, win, mode="edge"), np.ones(win) / win, mode="same")[win:-win]
    weight = cv2.GaussianBlur(has.astype(np.float32)[None, :], (0, 0), max(1.0, win / 4))[0]
    return depth, weight.astype(np.float64), thickness


@dataclass(frozen=True)
class _Echo:
    depth: np.ndarray
    pulse: np.ndarray
    offsets: np.ndarray
    region: np.ndarray


def _reverb_prepare(image: np.ndarray, rng: np.random.Generator, geo: ProbeGeometry) -> _Echo:
    del rng
    s = scale(geo)
    beam = _to_beam(image, geo)
    n_d, n_l = beam.shape
    smooth = cv2.GaussianBlur(beam, (0, 0), sigmaX=max(1.0, 12.0 * s), sigmaY=max(0.7, 1.5 * s))
    fan = geo.maps().fan
    blurred = cv2.GaussianBlur(image.astype(np.float32), (0, 0), max(0.7, 1.5 * s))
    threshold, background = fan_percentile(blurred, fan, 92), fan_percentile(blurred, fan, 50)
    lo, hi = max(1, int(0.03 * n_d)), max(2, int(NEAR_FIELD * n_d))
    depth0, weight, thickness = _first_interface(smooth, lo, hi, max(threshold, background + 1.0), background)
    half = max(1, int(round(max(2.0 * s, thickness / 2.0))))
    offsets = np.arange(-half, half + 1)
    cols = np.arange(n_l)
    src = np.clip(np.rint(depth0)[None, :].astype(np.int64) + offsets[:, None], 0, n_d - 1)
    taper = 0.5 * (1.0 + np.cos(np.pi * offsets / (half + 1)))
    pulse = np.maximum(smooth[src, cols[None, :]] - background, 0.0) * taper[:, None] * weight[None, :]
    # the region: the copies' rows (at least an SSIM window tall), where the interface has an echo
    where = np.zeros((n_d, n_l), np.float32)
    band = np.arange(-max(half // 2, 4), max(half // 2, 4) + 1)
    for k in range(2, REVERB_ORDERS + 2):
        rows = np.rint(k * depth0)[None, :].astype(np.int64) + band[:, None]
        ok = (rows >= 0) & (rows < n_d) & (weight >= 0.5)[None, :]
        where[rows[ok], np.broadcast_to(cols, rows.shape)[ok]] = 1.0
    region = (_to_image(where, geo) > 0.5) & fan
    return _Echo(depth0, pulse.astype(np.float32), offsets, region)


def _reverb_render(image: np.ndarray, ratio: float, echo: _Echo, geo: ProbeGeometry) -> np.ndarray:
    n_d, n_l = geo.maps().beam_shape
    cols = np.arange(n_l)
    added = np.zeros((n_d, n_l), np.float32)
    for k in range(2, REVERB_ORDERS + 2):
        rows = np.rint(k * echo.depth)[None, :].astype(np.int64) + echo.offsets[:, None]
        ok = (rows >= 0) & (rows < n_d)
        np.add.at(added, (rows[ok], np.broadcast_to(cols, rows.shape)[ok]), (float(ratio) ** (k - 1)) * echo.pulse[ok])
    return _finish(image, image + _to_image(added, geo), geo.maps().fan)


reverberation = Staged(_reverb_prepare, _reverb_render, lambda echo: echo.region)
"""Reverberation: the first strong interface below the probe (per beam, the first peak above the fan's 92nd
intensity percentile in the shallowest :data:`NEAR_FIELD` of the depth, smoothed across the beams) echoes back and
forth between itself and the probe face, so copies of its echo (its height above the fan's median) appear at 2, 3,
... times its depth, each ``ratio`` (the value) times fainter than the one before, added to the image. A local
artefact: its region is the band of the copies."""


HAZE_DECAY = 0.2
"""Depth (share of the fan's depth) over which near-field haze falls to 1/e."""


def _haze_prepare(image: np.ndarray, rng: np.random.Generator, geo: ProbeGeometry) -> np.ndarray:
    """The haze of level 1: the depth profile times a smooth clutter pattern across the beams."""
    del image
    m = geo.maps()
    n_d, n_l = m.beam_shape
    coarse = rng.random((max(2, n_d // 60), max(2, n_l // 40))).astype(np.float32)
    clutter = cv2.resize(coarse, (n_l, n_d), interpolation=cv2.INTER_CUBIC)
    veil = _to_image(0.6 + 0.8 * np.clip(clutter, 0.0, 1.0), geo)
    return (depth_profile(geo, lambda z: np.exp(-z / HAZE_DECAY)) * veil).astype(np.float32)


def _haze_render(image: np.ndarray, level: float, unit: np.ndarray, geo: ProbeGeometry) -> np.ndarray:
    return _finish(image, image + float(level) * unit, geo.maps().fan)


near_field_haze = Staged(_haze_prepare, _haze_render, lambda unit: unit > 0.5)
"""Near-field haze / clutter: a diffuse veil added to the image, the value in grey levels at the probe face, fading
with depth (1/e at :data:`HAZE_DECAY` of it) and modulated by a smooth random clutter pattern across the beams. A
local artefact: its region is the near field where the veil is above half its level at the probe face."""
