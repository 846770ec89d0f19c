"""Artefacts of the imaging system's resolution and texture: speckle, vendor speckle reduction, beam width.

- :func:`speckle`: a multiplicative speckle field with the statistics of coherent scattering (Rician envelope,
  Rayleigh when fully developed), correlated over an anisotropic resolution cell, generated along the beams and
  scan-converted to the image like a scanner's own data;
- :func:`speckle_reduction`: edge-preserving smoothing as vendors' speckle-reduction modes apply it;
- :func:`beam_width`: lateral blur that grows with depth, as the beam widens beyond its focus.

Signatures as in :mod:`robustseg.perturb.ultrasound` (image, value, generator, geometry).
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from robustseg.data.geometry import SECTOR, ProbeGeometry
from robustseg.perturb.ultrasound import Staged, _finish, _to_beam, _to_image, scale

SPECKLE_CELL = (0.9, 2.2)
"""Gaussian sigma (px) of the resolution cell along and across the beam for a 700-px-deep fan (across: at
mid-depth; in a sector the cell's angular width is constant, so it widens with depth). Axial ~2 px and lateral
~5 px FWHM: 0.4 and 1 mm at the 0.2 mm pixels of 959 x 661 fetal-head frames."""
MIN_CELL = (0.8, 1.0)
"""Smallest cell (px): speckle is never finer than the display's pixels."""


@functools.lru_cache(maxsize=256)
def rice_moments(diffuse: float) -> tuple[float, float]:
    """Mean and SD of the envelope ``|nu + z|`` with ``z`` circular complex Gaussian of power ``diffuse`` and a coherent
    part of power ``nu**2 = 1 - diffuse`` (Rician; Rayleigh at ``diffuse = 1``).

    >>> m, sd = rice_moments(1.0)
    >>> round(sd / m, 4)  # fully developed speckle: sqrt(4 / pi - 1)
    0.5227
    """
    from scipy.special import i0e, i1e

    f = float(diffuse)
    if not 0.0 < f <= 1.0:
        raise ValueError(f"diffuse fraction {diffuse!r}: expected a number in (0, 1]")
    sigma2 = f / 2.0
    nu2 = 1.0 - f
    x = -nu2 / (2.0 * sigma2)
    mean = math.sqrt(sigma2) * math.sqrt(math.pi / 2.0) * ((1.0 - x) * i0e(-x / 2.0) - x * i1e(-x / 2.0))
    var = 2.0 * sigma2 + nu2 - mean * mean
    return float(mean), float(math.sqrt(max(var, 0.0)))


def _gauss_kernel(sigma: float) -> np.ndarray:
    k = cv2.getGaussianKernel(2 * int(math.ceil(4.0 * sigma)) + 1, sigma, cv2.CV_32F)
    return k[:, 0]


def speckle_cell(geo: ProbeGeometry) -> tuple[float, float]:
    """The resolution cell (axial, lateral Gaussian sigma) of ``geo``'s image, in beam-grid samples."""
    s = scale(geo)
    axial = max(MIN_CELL[0], SPECKLE_CELL[0] * s)
    lateral = max(MIN_CELL[1], SPECKLE_CELL[1] * s)
    if geo.kind == SECTOR:  # beam-grid columns are 1 px apart at r_far; the cell is given at mid-depth
        r_mid = 0.5 * (geo.r_near + geo.r_far)  # type: ignore[operator]
        lateral *= geo.r_far / max(r_mid, 1.0)  # type: ignore[operator]
    return axial, lateral


def _interpolated_variance(frac: np.ndarray, rho: float) -> np.ndarray:
    """Variance of a linear interpolation at fractional offset ``frac`` between two unit-variance samples with
    correlation ``rho``: ``(1 - f)**2 + f**2 + 2 f (1 - f) rho``."""
    return (1.0 - frac) ** 2 + frac**2 + 2.0 * frac * (1.0 - frac) * rho


def speckle_components(geo: ProbeGeometry, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The in-phase and quadrature parts of the diffuse echo at every pixel: unit-variance Gaussian fields correlated
    over the resolution cell (float32 ``(H, W)`` each).

    Two white Gaussian fields on the beam grid are smoothed by the resolution cell (:func:`speckle_cell`) and scaled
    to unit variance, scan-converted to the image (bilinear) and rescaled by the variance the interpolation removed at
    each pixel, so the speckle keeps its statistics at every pixel.
    """
    m = geo.maps()
    n_d, n_l = m.beam_shape
    axial, lateral = speckle_cell(geo)
    ka, kl = _gauss_kernel(axial), _gauss_kernel(lateral)
    norm = 1.0 / math.sqrt(float((ka**2).sum() * (kl**2).sum()))
    g = rng.standard_normal((2, n_d, n_l), dtype=np.float32)
    ix, iy = m.to_image
    fx, fy = ix - np.floor(ix), iy - np.floor(iy)
    # correlation of neighbouring grid samples of white noise smoothed by a Gaussian of sigma s: exp(-1 / (4 s^2))
    var = _interpolated_variance(fx, math.exp(-1.0 / (4 * lateral**2))) * \
        _interpolated_variance(fy, math.exp(-1.0 / (4 * axial**2)))
    gain = (norm / np.sqrt(var)).astype(np.float32)
    i, q = (cv2.remap(cv2.sepFilter2D(g[k], cv2.CV_32F, kl, ka, borderType=cv2.BORDER_REFLECT), ix, iy,
                      cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE) * gain for k in (0, 1))
    return i, q


def rician_field(components: tuple[np.ndarray, np.ndarray], diffuse: float, fan: np.ndarray) -> np.ndarray:
    """Mean-1 multiplicative field from :func:`speckle_components`: the envelope of a coherent part of power
    ``1 - diffuse`` plus the diffuse echo of power ``diffuse`` (Rician; Rayleigh at 1), over its mean; 1 outside
    ``fan``."""
    i, q = components
    sigma = math.sqrt(float(diffuse) / 2.0)
    nu = math.sqrt(max(0.0, 1.0 - float(diffuse)))
    envelope = np.sqrt((nu + sigma * i) ** 2 + (sigma * q) ** 2) / np.float32(rice_moments(diffuse)[0])
    return np.where(fan, envelope, np.float32(1.0)).astype(np.float32)


def speckle_field(geo: ProbeGeometry, diffuse: float, rng: np.random.Generator) -> np.ndarray:
    """A mean-1 multiplicative speckle field over the image (float32 ``(H, W)``, 1 outside the fan): Rician with a
    diffuse share ``diffuse`` of the echo power (:func:`speckle_components`, :func:`rician_field`). The same ``rng``
    state gives the same pattern at every ``diffuse``."""
    return rician_field(speckle_components(geo, rng), diffuse, geo.maps().fan)


def _speckle_prepare(image: np.ndarray, rng: np.random.Generator, geo: ProbeGeometry
                     ) -> tuple[np.ndarray, np.ndarray]:
    del image
    return speckle_components(geo, rng)


def _speckle_render(image: np.ndarray, diffuse: float, components: tuple[np.ndarray, np.ndarray],
                    geo: ProbeGeometry) -> np.ndarray:
    fan = geo.maps().fan
    return _finish(image, image * rician_field(components, diffuse, fan), fan)


speckle = Staged(_speckle_prepare, _speckle_render)
"""Speckle: the image times a correlated Rician speckle field (:func:`speckle_field`); the value is the share of the
echo power from unresolved scatterers (1: fully developed, Rayleigh-distributed speckle)."""


SMOOTHING_EPS = 30.0
"""Guided filter's edge threshold (grey levels): local contrast well above it is kept as an edge, speckle below it
is smoothed."""


def _local_mean(x: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def guided_filter(image: np.ndarray, sigma: float, eps: float) -> np.ndarray:
    """Self-guided filter (He, Sun & Tang 2010) with Gaussian windows of ``sigma`` px: a local linear model
    ``a * I + b`` per window, which keeps edges whose local variance exceeds ``eps`` and smooths the rest."""
    x = image.astype(np.float32)
    mean = _local_mean(x, sigma)
    var = np.maximum(_local_mean(x * x, sigma) - mean * mean, 0.0)
    a = var / (var + np.float32(eps))
    b = mean - a * mean
    return _local_mean(a, sigma) * x + _local_mean(b, sigma)


def speckle_reduction(image: np.ndarray, radius: float, rng: np.random.Generator,
                      geo: ProbeGeometry) -> np.ndarray:
    """Vendor-style speckle reduction: an edge-preserving (self-guided) filter with Gaussian windows of sigma
    ``radius`` px (scaled with the fan; edge threshold :data:`SMOOTHING_EPS` grey levels), inside the fan.
    Deterministic; ``rng`` unused."""
    del rng
    sigma = max(0.3, float(radius) * scale(geo))
    return _finish(image, guided_filter(image, sigma, SMOOTHING_EPS**2), geo.maps().fan)


BEAM_LEVELS = 6
BOX_ABOVE = 6.0
"""Above this sigma (px) a lateral Gaussian blur is approximated by three box blurs (cost independent of sigma)."""


def lateral_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Blur the rows of ``x`` (float32) with a Gaussian of ``sigma`` px: exactly up to :data:`BOX_ABOVE`, beyond it by
    three successive box filters of about the same variance (odd widths: within 3 % in sigma; Wells 1986), whose
    cost does not grow with sigma.

    >>> x = np.zeros((1, 401), np.float32); x[0, 200] = 1
    >>> y = lateral_blur(x, 20.0)[0]
    >>> round(float(y.sum()), 4), bool(abs(np.sqrt((y * (np.arange(401) - 200) ** 2).sum()) - 20.0) < 0.6)
    (1.0, True)
    """
    if sigma <= BOX_ABOVE:
        return cv2.sepFilter2D(x, cv2.CV_32F, _gauss_kernel(sigma), np.ones(1, np.float32),
                               borderType=cv2.BORDER_REFLECT)
    width = max(1, int(round(math.sqrt(4.0 * sigma * sigma + 1.0))))  # 3 boxes of width w: variance (w^2 - 1) / 4
    width += 1 - width % 2
    out = x
    for _ in range(3):
        out = cv2.blur(out, (width, 1), borderType=cv2.BORDER_REFLECT)
    return out


def beam_width(image: np.ndarray, sigma_far: float, rng: np.random.Generator, geo: ProbeGeometry) -> np.ndarray:
    """Lateral resolution loss growing with depth: blur across the beams (in beam space) with a Gaussian sigma rising
    linearly from 0 at the probe face to ``sigma_far`` px (scaled with the fan) at the deepest point. Only the change
    is scan-converted back, so the image keeps its own pixels where nothing is blurred. Deterministic; ``rng``
    unused."""
    del rng
    beam = _to_beam(image, geo)
    n_d = beam.shape[0]
    sigma_max = float(sigma_far) * scale(geo)
    if geo.kind == SECTOR:  # beam-grid columns are 1 px apart at r_far, closer above: sigma in px at each depth
        r = geo.r_near + np.arange(n_d)  # type: ignore[operator]
        cols_per_px = geo.r_far / np.maximum(r, 1.0)  # type: ignore[operator]
    else:
        cols_per_px = np.ones(n_d)
    want = sigma_max * (np.arange(n_d) / max(n_d - 1, 1)) * cols_per_px  # in beam-grid columns
    top = float(want.max())
    if top <= 0:
        return image.copy()
    levels = np.linspace(0.0, top, BEAM_LEVELS)
    pos = np.clip(want / top * (BEAM_LEVELS - 1), 0, BEAM_LEVELS - 1 - 1e-6)
    lo = pos.astype(int)
    out = np.empty_like(beam)
    for j in range(BEAM_LEVELS - 1):  # the blur is across the beams only: each row needs its two levels
        rows = np.flatnonzero(lo == j)
        if rows.size == 0:
            continue
        block = beam[rows[0]:rows[-1] + 1]
        a = block if j == 0 else lateral_blur(block, levels[j])
        b = lateral_blur(block, levels[j + 1])
        w = (pos[rows] - j)[:, None].astype(np.float32)
        out[rows[0]:rows[-1] + 1] = (1 - w) * a + w * b
    return _finish(image, image + _to_image(out - beam, geo), geo.maps().fan)
