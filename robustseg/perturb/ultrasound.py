"""The two ultrasound artefacts written here: acoustic shadowing behind strong reflectors along the beam of
the fan, and depth attenuation / gain error."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


# ------------------------------------------------------------------------------- geometry (fan images)
def _fan_geometry(image: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray, np.ndarray] | None:
    """Apex (row, col) of the sector and per-pixel radius, beam angle (degrees, 0 = straight down), content.

    The probe sits at the top centre: the apex is the first content row within the central third of the
    columns, horizontally at the centre of the content's bounding box. Returns None for an empty image.
    """
    content = image > 2
    if not content.any():
        return None
    h, w = image.shape
    cols = np.flatnonzero(content.any(axis=0))
    cx = 0.5 * (cols[0] + cols[-1])
    central = content[:, w // 3 : max(w // 3 + 1, 2 * w // 3)]
    rows = np.flatnonzero(central.any(axis=1))
    if rows.size == 0:
        rows = np.flatnonzero(content.any(axis=1))
    ay = float(rows[0])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    dy, dx = yy - ay, xx - cx
    radius = np.hypot(dy, dx)
    angle = np.degrees(np.arctan2(dx, np.maximum(dy, 1e-6)))
    return ay, cx, radius, angle, content


# ------------------------------------------------------------------------- hand-written perturbations
@dataclass(frozen=True)
class ShadowParams:
    """Acoustic shadowing: ``bands`` dark wedges, each ``half_width_deg`` wide, attenuating by ``strength``."""

    bands: int
    half_width_deg: float
    strength: float

    def __str__(self) -> str:
        return f"bands={self.bands}, half_width={self.half_width_deg:g}deg, attenuation={self.strength:g}"


_MAX_BANDS = 4


def _end_of_first_run(hit: np.ndarray, gap: int = 2) -> float:
    """Index just past the first run of True in ``hit`` (runs may hold gaps of up to ``gap`` False)."""
    idx = np.flatnonzero(hit)
    jumps = np.flatnonzero(np.diff(idx) > gap + 1)
    last = idx[jumps[0]] if jumps.size else idx[-1]
    return float(last + 1)


def acoustic_shadow(image: np.ndarray, params: ShadowParams, rng: np.random.Generator) -> np.ndarray:
    """Dark bands radiating from the apex, starting just behind strong reflectors on their beam line.

    Beam lines through the brightest structures (a blurred intensity above the 97th percentile of the
    sector) are candidates; ``rng`` picks up to four of them, weighted by reflector strength, once per
    seed (the first ``bands`` are used, so higher severities extend lower ones). Beyond the far edge of the
    first strong reflector on each line, intensity is multiplied by ``1 - strength * taper``, with a cosine taper across
    the band and a short ramp in depth.
    """
    geo = _fan_geometry(image)
    if geo is None:
        return image.copy()
    _, _, radius, angle, content = geo
    smooth = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 2.0)
    theta = angle[content]
    lo, hi = np.percentile(theta, [3, 97])
    edges = np.linspace(lo, hi, 61)
    threshold = float(np.percentile(smooth[content], 97))
    bins = np.clip(np.digitize(angle, edges) - 1, 0, len(edges) - 2)
    strength = np.zeros(len(edges) - 1)
    onset = np.zeros(len(edges) - 1)
    bright = content & (smooth >= threshold)
    rint = np.rint(radius).astype(np.int64)
    for b in range(len(edges) - 1):
        sel = bright & (bins == b)
        if sel.any():
            strength[b] = float(smooth[sel].max())
            onset[b] = _end_of_first_run(np.bincount(rint[sel]) > 0)
    candidates = np.flatnonzero(strength > 0)
    if candidates.size == 0:
        candidates = np.arange(len(edges) - 1)
        onset[:] = float(np.percentile(radius[content], 50))
        weights = np.ones(candidates.size)
    else:
        weights = strength[candidates]
    k = min(_MAX_BANDS, candidates.size)
    chosen = rng.choice(candidates, size=k, replace=False, p=weights / weights.sum())
    factor = np.ones(image.shape, dtype=np.float64)
    for b in chosen[: params.bands]:
        centre = 0.5 * (edges[b] + edges[b + 1])
        d = np.abs(angle - centre) / params.half_width_deg
        across = np.where(d < 1.0, 0.5 * (1.0 + np.cos(np.pi * np.minimum(d, 1.0))), 0.0)
        depth = np.clip((radius - onset[b]) / 4.0, 0.0, 1.0)
        factor *= 1.0 - params.strength * across * depth
    return np.clip(np.rint(image * factor), 0, 255).astype(np.uint8)


def depth_attenuation(image: np.ndarray, remaining: float, rng: np.random.Generator) -> np.ndarray:
    """Exponential intensity decay with distance from the apex: ``remaining`` of the gain is left at the
    deepest content pixel (an uncompensated attenuation / time-gain error). Deterministic; ``rng`` unused."""
    del rng
    geo = _fan_geometry(image)
    if geo is None:
        return image.copy()
    _, _, radius, _, content = geo
    rmax = float(radius[content].max()) or 1.0
    gain = np.exp(math.log(remaining) * np.clip(radius / rmax, 0.0, 1.0))
    return np.clip(np.rint(image * gain), 0, 255).astype(np.uint8)


