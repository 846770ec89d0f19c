"""Probe geometry of an ultrasound image: where the beams run and how deep each pixel lies.

A **sector** image (convex or phased-array probe) has beams radiating from an apex between two edge
angles; the apex of a convex probe lies *above* the image (the probe face is an arc of radius ``r_near``
around it), that of a phased array near the top of the image. A **linear** probe has parallel beams running
straight down the columns of a rectangle. Depth is measured along the beam from the probe face.

The geometry is one frozen :class:`ProbeGeometry`, built once per image and handed to every beam-based
artefact (``robustseg.perturb``), which never re-derives it. It comes from

- the image (:func:`estimate_geometry`): straight lines fitted to the left and right fan edges (RANSAC,
  so the near-field arc, the far arc, clipped corners and speckle do not bend them) and intersected;
  parallel edges, or a field of view without edges, mean a linear probe;
- the study (``perturb.geometry``, ``perturb.apex``, ``perturb.opening_deg``: :class:`GeometrySetting`);
- a column of the data set's ``meta.csv`` (``probe_geometry``, one :meth:`ProbeGeometry.to_text` string per
  image, e.g. ``sector apex_row=-79.3 apex_col=479.5 angle_left=-40 angle_right=40``);
- DICOM Ultrasound Region Calibration, through the constructors :meth:`ProbeGeometry.sector` and
  :meth:`ProbeGeometry.linear`.

Coordinates are pixel centres: row 0 / column 0 is the centre of the top-left pixel. Angles are degrees
from straight down, positive towards higher columns (the right of the image).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Literal

import cv2
import numpy as np
import pandas as pd

from robustseg.errors import InputError

SECTOR = "sector"
LINEAR = "linear"
KINDS = (SECTOR, LINEAR)
GEOMETRY_COLUMN = "probe_geometry"
"""The ``meta.csv`` column that may give each image's geometry as :meth:`ProbeGeometry.to_text` text."""

MAX_HALF_ANGLE = 80.0
"""Largest edge angle accepted (degrees from straight down)."""


# ------------------------------------------------------------------------------------------ the object
@dataclass(frozen=True)
class ProbeGeometry:
    """Where the beams of an ``height x width`` image run (see the module docstring for conventions).

    Sector fields: ``apex_row``, ``apex_col`` (may lie outside the image, e.g. a negative row for a convex
    probe), ``angle_left`` < ``angle_right`` (degrees of the two fan edges), ``r_near`` (radius of the
    probe face / first tissue, px from the apex) and ``r_far`` (deepest imaged radius). Linear fields:
    ``col_left``, ``col_right`` (column span of the beams), ``row_top`` (probe face) and ``row_bottom``.
    Fields of the other kind are ``None``. ``source`` says where it came from (``estimated``, ``study``,
    ``meta.csv``, ``dicom``, ``given``). Build with :meth:`sector` / :meth:`linear`.
    """

    kind: Literal["sector", "linear"]
    height: int
    width: int
    apex_row: float | None = None
    apex_col: float | None = None
    angle_left: float | None = None
    angle_right: float | None = None
    r_near: float | None = None
    r_far: float | None = None
    col_left: float | None = None
    col_right: float | None = None
    row_top: float | None = None
    row_bottom: float | None = None
    source: str = "given"

    # ------------------------------------------------------------------------------ constructors
    @classmethod
    def sector(cls, shape: tuple[int, int], apex: tuple[float, float], angles: float | tuple[float, float],
               r_near: float = 0.0, r_far: float | None = None, source: str = "given") -> ProbeGeometry:
        """A sector for an image of ``shape`` ``(height, width)``: ``apex`` ``(row, col)``; ``angles`` the
        half opening angle in degrees (symmetric fan) or the ``(left, right)`` edge angles; ``r_near`` /
        ``r_far`` the radii (px from the apex) of the probe face and the deepest imaged point (default: the
        farthest image corner).

        >>> g = ProbeGeometry.sector((661, 959), apex=(-79.3, 479.5), angles=40, r_near=105.8)
        >>> g.angle_left, g.angle_right, round(g.depth_max)
        (-40.0, 40.0, 775)
        """
        h, w = _shape(shape)
        left, right = (-float(angles), float(angles)) if np.isscalar(angles) else (float(angles[0]), float(angles[1]))
        ar, ac = float(apex[0]), float(apex[1])
        if r_far is None:
            r_far = max(math.hypot(y - ar, x - ac) for y in (0, h - 1) for x in (0, w - 1))
        return cls(SECTOR, h, w, apex_row=ar, apex_col=ac, angle_left=left, angle_right=right,
                   r_near=float(r_near), r_far=float(r_far), source=source)

    @classmethod
    def linear(cls, shape: tuple[int, int], cols: tuple[float, float] | None = None,
               rows: tuple[float, float] | None = None, source: str = "given") -> ProbeGeometry:
        """A linear probe for an image of ``shape``: beams in columns ``cols`` (default: every column), from
        the probe face at ``rows[0]`` down to ``rows[1]`` (default: the whole height).

        >>> ProbeGeometry.linear((100, 80)).lateral_span
        79.0
        """
        h, w = _shape(shape)
        c0, c1 = (0.0, float(w - 1)) if cols is None else (float(cols[0]), float(cols[1]))
        r0, r1 = (0.0, float(h - 1)) if rows is None else (float(rows[0]), float(rows[1]))
        return cls(LINEAR, h, w, col_left=c0, col_right=c1, row_top=r0, row_bottom=r1, source=source)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"probe geometry kind {self.kind!r}: expected one of {', '.join(KINDS)}")
        _shape((self.height, self.width))
        need = (("apex_row", "apex_col", "angle_left", "angle_right", "r_near", "r_far") if self.kind == SECTOR
                else ("col_left", "col_right", "row_top", "row_bottom"))
        for name in need:
            value = getattr(self, name)
            if value is None or not math.isfinite(float(value)):
                raise InputError(f"{self.kind} probe geometry: {name} = {value!r}; expected a finite number")
            object.__setattr__(self, name, float(value))
        if self.kind == SECTOR:
            if not -MAX_HALF_ANGLE <= self.angle_left < self.angle_right <= MAX_HALF_ANGLE:  # type: ignore[operator]
                raise InputError(f"sector probe geometry: edge angles ({self.angle_left:g}, {self.angle_right:g}) deg; "
                                 f"expected left < right within +-{MAX_HALF_ANGLE:g} deg of straight down")
            if not 0.0 <= self.r_near < self.r_far:  # type: ignore[operator]
                raise InputError(f"sector probe geometry: radii ({self.r_near:g}, {self.r_far:g}); "
                                 "expected 0 <= r_near < r_far")
        elif not (self.col_left < self.col_right and self.row_top < self.row_bottom):  # type: ignore[operator]
            raise InputError(f"linear probe geometry: columns ({self.col_left:g}, {self.col_right:g}), rows "
                             f"({self.row_top:g}, {self.row_bottom:g}); expected increasing spans")

    # ------------------------------------------------------------------------------ derived values
    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def depth_max(self) -> float:
        """Deepest imaged depth below the probe face (px)."""
        if self.kind == SECTOR:
            return float(self.r_far - self.r_near)  # type: ignore[operator]
        return float(self.row_bottom - self.row_top)  # type: ignore[operator]

    @property
    def lateral_span(self) -> float:
        """Width of the field of view across the beams: degrees (sector) or columns (linear)."""
        if self.kind == SECTOR:
            return float(self.angle_right - self.angle_left)  # type: ignore[operator]
        return float(self.col_right - self.col_left)  # type: ignore[operator]

    def maps(self) -> BeamMaps:
        """Per-pixel depth, beam position and field-of-view mask, plus the beam-space grids (cached)."""
        return _maps(self)

    def to_dict(self) -> dict[str, object]:
        """JSON-able fields (``None`` for the other kind's)."""
        return asdict(self)

    def to_text(self) -> str:
        """One-line ``kind key=value ...`` form, read back by :meth:`parse` (the ``meta.csv`` column format).

        >>> ProbeGeometry.linear((10, 20), cols=(2, 17)).to_text()
        'linear col_left=2 col_right=17 row_top=0 row_bottom=9'
        """
        keys = _KEYS[self.kind]
        return " ".join([self.kind, *(f"{k}={_num(getattr(self, k))}" for k in keys)])

    def describe(self) -> str:
        """A short human-readable summary."""
        if self.kind == SECTOR:
            return (f"sector: apex (row {self.apex_row:.1f}, col {self.apex_col:.1f}), edges {self.angle_left:.1f} / "
                    f"{self.angle_right:.1f} deg, radii {self.r_near:.0f}-{self.r_far:.0f} px ({self.source})")
        return (f"linear: columns {self.col_left:.0f}-{self.col_right:.0f}, rows {self.row_top:.0f}-"
                f"{self.row_bottom:.0f} ({self.source})")

    @classmethod
    def parse(cls, text: str, shape: tuple[int, int], source: str = "given") -> ProbeGeometry:
        """Read :meth:`to_text` form for an image of ``shape``; unknown or missing keys are InputErrors.

        >>> ProbeGeometry.parse("sector apex_row=-50 apex_col=40 angle_left=-30 angle_right=30 r_near=60 r_far=200",
        ...                     (100, 80)).apex_row
        -50.0
        """
        words = str(text).split()
        if not words or words[0] not in KINDS:
            raise InputError(f"probe geometry {text!r}: expected 'sector ...' or 'linear ...' with key=value pairs")
        values = _pairs(words[1:], text, _KEYS[words[0]])
        missing = [k for k in _KEYS[words[0]] if k not in values]
        if missing:
            raise InputError(f"probe geometry {text!r}: missing {', '.join(missing)}")
        h, w = _shape(shape)
        return cls(words[0], h, w, **values, source=source)  # type: ignore[arg-type]

    # ------------------------------------------------------------------------------ other image sizes
    def resized(self, height: int, width: int, top: float = 0.0, left: float = 0.0,
                rows: int | None = None, cols: int | None = None) -> ProbeGeometry:
        """The geometry after resizing the image to ``rows x cols`` (default ``height x width``) and placing it
        at ``(top, left)`` inside a ``height x width`` canvas (a letterbox). Angles follow the aspect change."""
        rows = height if rows is None else rows
        cols = width if cols is None else cols
        sy, sx = rows / self.height, cols / self.width

        def row(y: float) -> float:
            return top + (y + 0.5) * sy - 0.5

        def col(x: float) -> float:
            return left + (x + 0.5) * sx - 0.5

        if self.kind == LINEAR:
            return replace(self, height=height, width=width, col_left=col(self.col_left), col_right=col(self.col_right),
                           row_top=row(self.row_top), row_bottom=row(self.row_bottom))

        def angle(a: float) -> float:
            return math.degrees(math.atan(math.tan(math.radians(a)) * sx / sy))

        scale = math.sqrt(sx * sy)
        return replace(self, height=height, width=width, apex_row=row(self.apex_row), apex_col=col(self.apex_col),
                       angle_left=angle(self.angle_left), angle_right=angle(self.angle_right),
                       r_near=self.r_near * scale, r_far=self.r_far * scale)

    def letterboxed(self, size: int) -> ProbeGeometry:
        """The geometry of the image after :func:`robustseg.data.transforms.preprocess` to ``size``."""
        from robustseg.data.transforms import letterbox_box

        top, left, rows, cols = letterbox_box(self.height, self.width, size)
        return self.resized(size, size, top, left, rows, cols)


_KEYS = {SECTOR: ("apex_row", "apex_col", "angle_left", "angle_right", "r_near", "r_far"),
         LINEAR: ("col_left", "col_right", "row_top", "row_bottom")}


def _num(v: float | None) -> str:
    return f"{float(v):.6g}" if v is not None else "nan"  # type: ignore[arg-type]


def _pairs(words: Sequence[str], text: str, allowed: Sequence[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for word in words:
        key, sep, raw = word.partition("=")
        if not sep or key not in allowed:
            raise InputError(f"probe geometry {text!r}: {word!r}; expected key=value with keys {', '.join(allowed)}")
        try:
            out[key] = float(raw)
        except ValueError:
            raise InputError(f"probe geometry {text!r}: {key} = {raw!r} is not a number") from None
    return out


def _shape(shape: Sequence[int]) -> tuple[int, int]:
    if len(shape) < 2 or int(shape[0]) < 2 or int(shape[1]) < 2:
        raise InputError(f"image shape {tuple(shape)!r}: expected (height, width) of at least 2 x 2")
    return int(shape[0]), int(shape[1])


# ------------------------------------------------------------------------------------- per-pixel maps
@dataclass(frozen=True)
class BeamMaps:
    """Per-pixel beam coordinates of one geometry, and the grids that resample an image to beam space.

    ``depth``: px below the probe face along the beam (negative above it); ``lateral``: beam angle in
    degrees (sector) or column (linear); ``position``: 0 at the left edge of the field of view, 1 at the
    right; ``fan``: inside the field of view. Beam space is a ``(n_depth, n_lateral)`` grid, rows 1 px of
    depth apart, columns one beam apart (1 px apart at the deepest radius of a sector):
    ``to_beam`` (``map_x, map_y`` of shape ``(n_depth, n_lateral)``) are the image coordinates of each
    beam-grid sample (``cv2.remap(image, *to_beam, ...)`` resamples the image along the beams) and
    ``to_image`` (shape ``(H, W)``) the beam-grid coordinates of each pixel (``cv2.remap(beam, *to_image,
    ...)`` scan-converts back).
    """

    depth: np.ndarray
    lateral: np.ndarray
    position: np.ndarray
    fan: np.ndarray
    to_beam: tuple[np.ndarray, np.ndarray]
    to_image: tuple[np.ndarray, np.ndarray]
    depth_index: np.ndarray
    """int32 ``(H, W)``: the beam-grid row of each pixel (depth rounded, clipped to the grid), for looking up a
    profile over depth: ``profile[depth_index]``."""

    @property
    def beam_shape(self) -> tuple[int, int]:
        return self.to_beam[0].shape  # type: ignore[return-value]


@functools.lru_cache(maxsize=4)
def _maps(geo: ProbeGeometry) -> BeamMaps:
    h, w = geo.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    n_depth = max(2, int(math.ceil(geo.depth_max)) + 1)
    if geo.kind == SECTOR:
        dy, dx = yy - np.float32(geo.apex_row), xx - np.float32(geo.apex_col)
        radius = np.sqrt(dx * dx + dy * dy)
        lateral = np.degrees(np.arctan2(dx, dy)).astype(np.float32)
        depth = radius - np.float32(geo.r_near)
        span = math.radians(geo.lateral_span)
        n_lat = max(2, int(math.ceil(span * geo.r_far)) + 1)
        step = geo.lateral_span / (n_lat - 1)
        fan = (lateral >= geo.angle_left) & (lateral <= geo.angle_right) & (depth >= 0) & (depth <= geo.depth_max)
        theta = np.radians(geo.angle_left + step * np.arange(n_lat, dtype=np.float64))
        r = geo.r_near + np.arange(n_depth, dtype=np.float64)
        bx = (geo.apex_col + r[:, None] * np.sin(theta)[None, :]).astype(np.float32)
        by = (geo.apex_row + r[:, None] * np.cos(theta)[None, :]).astype(np.float32)
        ix = ((lateral - np.float32(geo.angle_left)) / np.float32(step)).astype(np.float32)
    else:
        lateral = xx
        depth = yy - np.float32(geo.row_top)
        n_lat = max(2, int(math.ceil(geo.lateral_span)) + 1)
        step = geo.lateral_span / (n_lat - 1)
        fan = (xx >= geo.col_left) & (xx <= geo.col_right) & (depth >= 0) & (depth <= geo.depth_max)
        cols = geo.col_left + step * np.arange(n_lat, dtype=np.float64)
        bx = np.broadcast_to(cols[None, :], (n_depth, n_lat)).astype(np.float32)
        by = np.broadcast_to(geo.row_top + np.arange(n_depth, dtype=np.float64)[:, None], (n_depth, n_lat)).astype(np.float32)
        ix = ((xx - np.float32(geo.col_left)) / np.float32(step)).astype(np.float32)
    position = ((lateral - np.float32(_left(geo))) / np.float32(geo.lateral_span)).astype(np.float32)
    index = np.clip(np.rint(depth), 0, n_depth - 1).astype(np.int32)
    maps = BeamMaps(depth=depth.astype(np.float32), lateral=lateral.astype(np.float32), position=position, fan=fan,
                    to_beam=(bx, by), to_image=(ix, depth.astype(np.float32)), depth_index=index)
    for a in (maps.depth, maps.lateral, maps.position, maps.fan, *maps.to_beam, *maps.to_image, maps.depth_index):
        a.setflags(write=False)
    return maps


def _left(geo: ProbeGeometry) -> float:
    return float(geo.angle_left if geo.kind == SECTOR else geo.col_left)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ estimation
def signal_floor(image: np.ndarray) -> float:
    """Lowest grey level that counts as signal: 1 above the brightest 1 % of the background in the top corners
    (where a fan leaves the image black; corners that hold tissue are ignored), at least 1."""
    img = np.asarray(image)
    h, w = img.shape[:2]
    bh, bw = max(2, h // 10), max(2, w // 10)
    levels = [float(np.percentile(c, 99)) for c in (img[:bh, :bw], img[:bh, w - bw:])
              if float(np.median(c)) <= 10.0]
    return max(1.0, min(levels) + 1.0) if levels else 1.0


def content_mask(image: np.ndarray) -> np.ndarray:
    """The field of view: the largest connected region with signal (at least a quarter of a small window at or
    above :func:`signal_floor`), closed and with its holes filled (bool ``(H, W)``)."""
    img = np.asarray(image)
    if img.ndim == 3:
        img = img.max(axis=2)
    h, w = img.shape
    k = _window(h, w)
    on = (cv2.blur((img >= signal_floor(img)).astype(np.float32), (k, k)) >= 0.25).astype(np.uint8)
    if not on.any():
        return on.astype(bool)
    on = cv2.morphologyEx(on, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    on = cv2.morphologyEx(on, cv2.MORPH_CLOSE, np.ones((2 * k + 1, 2 * k + 1), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(on, connectivity=8)
    if n <= 1:
        return np.zeros((h, w), dtype=bool)
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    comp = (labels == biggest).astype(np.uint8)
    flood = np.zeros((h + 2, w + 2), np.uint8)  # fill holes: everything the outside cannot reach
    flood[1:-1, 1:-1] = comp
    cv2.floodFill(flood, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 1)
    return comp.astype(bool) | (flood[1:-1, 1:-1] == 0)


def _window(h: int, w: int) -> int:
    return max(3, 2 * (min(h, w) // 200) + 3)


OUTSIDE_PENALTY = 3.0
"""Weight of an edge point lying outside a candidate fan edge against one lying on it (RANSAC score)."""


def _robust_line(ys: np.ndarray, xs: np.ndarray, side: int, tol: float = 1.5) -> tuple[float, float] | None:
    """The outer edge ``x = a + b * y`` of a field of view through the edge points ``(ys, xs)``.

    RANSAC with a fixed seed, scoring a line by its inliers (within ``tol`` px) minus :data:`OUTSIDE_PENALTY` times
    the points lying outside it (``side`` -1: left of it, +1: right of it): nothing is imaged beyond a fan edge, while dark
    tissue only moves edge points inwards. Least squares on the inliers then refines it.
    """
    n = len(ys)
    if n < 6:
        return None
    rng = np.random.default_rng(0)
    best, best_score = np.zeros(n, dtype=bool), -np.inf
    min_dy = max(3.0, 0.05 * float(np.ptp(ys)))
    for _ in range(400):
        i, j = rng.choice(n, size=2, replace=False)
        if abs(ys[i] - ys[j]) < min_dy:
            continue
        b = (xs[j] - xs[i]) / (ys[j] - ys[i])
        resid = xs - (xs[i] + b * (ys - ys[i]))
        inl = np.abs(resid) <= tol
        score = float(inl.sum()) - OUTSIDE_PENALTY * float((side * resid > tol).sum())
        if score > best_score:
            best, best_score = inl, score
    if best.sum() < 6:
        return None
    b, a = np.polyfit(ys[best], xs[best], 1)
    for _ in range(3):  # refine: least squares on the inliers, re-select
        new = np.abs(xs - (a + b * ys)) <= tol
        if new.sum() < 6 or np.array_equal(new, best):
            break
        best = new
        b, a = np.polyfit(ys[best], xs[best], 1)
    return float(a), float(b)


LINEAR_SLOPE = 0.02
"""Fan edges converging by less than this (columns per row, ~1.1 deg each side) are parallel: a linear probe."""


def estimate_geometry(image: np.ndarray, kind: str = "auto", apex: tuple[float, float] | None = None,
                      opening_deg: float | None = None, source: str = "estimated") -> ProbeGeometry:
    """Estimate the probe geometry of a grayscale (or RGB) image.

    ``kind`` ``auto`` decides from the image: the left and right edges of the field of view (the first and last
    non-black column of each row, leaving out rows where the field of view touches the image border) get a
    robust straight-line fit each; edges that converge upwards are a sector whose apex is their intersection
    (it may lie above the image), parallel edges or a field of view without edges are a linear probe.
    ``kind`` ``sector`` / ``linear`` forces the kind (a sector without visible edges is an InputError unless
    ``apex`` is given). ``apex`` ``(row, col)`` and ``opening_deg`` (full opening angle, symmetric about the
    vertical through the apex) fix those values; the rest is measured from the image.

    >>> g = ProbeGeometry.sector((200, 300), apex=(-30.0, 150.0), angles=35, r_near=40, r_far=250)
    >>> img = np.where(g.maps().fan, 120, 0).astype(np.uint8)
    >>> e = estimate_geometry(img)
    >>> e.kind, abs(e.apex_row + 30) < 2, abs(e.angle_right - 35) < 1
    ('sector', True, True)
    """
    img = np.asarray(image)
    if img.ndim not in (2, 3) or img.shape[0] < 8 or img.shape[1] < 8:
        raise InputError(f"image of shape {img.shape}: expected a 2-D image of at least 8 x 8 to estimate its geometry")
    if kind not in ("auto", *KINDS):
        raise InputError(f"probe geometry {kind!r}: expected auto, sector or linear")
    h, w = img.shape[:2]
    fov = content_mask(img)
    if not fov.any():
        return ProbeGeometry.linear((h, w), source=source)
    # edge points: per row the outermost pixel with signal near the field of view (dark tissue at the edge
    # only moves them inwards, which the outer-edge fit ignores)
    k = _window(h, w)
    near = cv2.dilate(fov.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
    gray = img.max(axis=2) if img.ndim == 3 else img
    signal = near & (gray >= signal_floor(gray))
    signal[fov.any(axis=1) == 0] = False
    rows = np.flatnonzero(signal.any(axis=1))
    if rows.size < 8:
        return ProbeGeometry.linear((h, w), source=source)
    first = signal.argmax(axis=1)
    last = w - 1 - signal[:, ::-1].argmax(axis=1)
    ys = rows.astype(np.float64)
    xl, xr = first[rows].astype(np.float64), last[rows].astype(np.float64)
    lv, rv = xl > 1, xr < w - 2  # edge points, not the image border
    if kind == LINEAR or (kind == "auto" and apex is None and (lv.sum() < max(10, 0.1 * len(rows))
                                                                 or rv.sum() < max(10, 0.1 * len(rows)))):
        return _linear_from(fov, (h, w), xl, xr, lv, rv, source)
    if apex is None:
        left = _robust_line(ys[lv], xl[lv], -1)
        right = _robust_line(ys[rv], xr[rv], +1)
        if left is None or right is None or right[1] - left[1] < LINEAR_SLOPE:
            if kind == SECTOR:
                raise InputError("image: no converging fan edges found; expected a sector image, or give "
                                 "perturb.apex (and perturb.opening_deg)")
            return _linear_from(fov, (h, w), xl, xr, lv, rv, source)
        (a1, b1), (a2, b2) = left, right
        ar = (a1 - a2) / (b2 - b1)
        ac = a1 + b1 * ar
        angles = (math.degrees(math.atan(b1)), math.degrees(math.atan(b2)))
    else:
        ar, ac = float(apex[0]), float(apex[1])
        yy, xx = np.nonzero(fov)
        theta = np.degrees(np.arctan2(xx - ac, yy - ar))
        angles = (float(np.percentile(theta, 0.2)), float(np.percentile(theta, 99.8)))
    if opening_deg is not None:
        half = float(opening_deg) / 2.0
        if not 0 < half <= MAX_HALF_ANGLE:
            raise InputError(f"perturb.opening_deg = {opening_deg!r}: expected a number in (0, {2 * MAX_HALF_ANGLE:g}]")
        angles = (-half, half)
    if ar > rows[0] + 0.05 * h:
        if kind == SECTOR:
            raise InputError(f"image: fan apex at row {ar:.0f}, below the top of the field of view (row {rows[0]}); "
                             "expected a fan opening downwards")
        return _linear_from(fov, (h, w), xl, xr, lv, rv, source)
    near, far = _radii(gray >= signal_floor(gray), ar, ac, angles)
    return ProbeGeometry.sector((h, w), (ar, ac), angles, r_near=near, r_far=far, source=source)


def _radii(signal: np.ndarray, ar: float, ac: float, angles: tuple[float, float]) -> tuple[float, float]:
    """Probe-face and deepest radius from the pixels with signal inside the fan's edge angles: per beam (64 angular
    bins over the inner 80 % of the fan) the second shallowest and second deepest such pixel; the median of the
    shallow ones, the largest of the deep ones."""
    yy, xx = np.nonzero(signal)
    r = np.hypot(yy - ar, xx - ac)
    theta = np.degrees(np.arctan2(xx - ac, yy - ar))
    lo, hi = angles
    inner = (theta > lo + 0.1 * (hi - lo)) & (theta < hi - 0.1 * (hi - lo))
    if inner.sum() < 64:
        return 0.0, float(r.max()) if r.size else 1.0
    bins = np.clip(((theta[inner] - lo - 0.1 * (hi - lo)) / (0.8 * (hi - lo)) * 64).astype(np.int64), 0, 63)
    rr = r[inner]
    order = np.lexsort((rr, bins))
    rr, bins = rr[order], bins[order]
    starts = np.searchsorted(bins, np.arange(64))
    ends = np.searchsorted(bins, np.arange(64), side="right")
    shallow = [rr[a + 1] for a, b in zip(starts, ends, strict=True) if b - a >= 5]
    deep = [rr[b - 2] for a, b in zip(starts, ends, strict=True) if b - a >= 5]
    near = float(np.median(shallow)) if shallow else 0.0
    far = float(max(deep)) if deep else float(r.max())
    return max(0.0, near - 0.5), max(far, near + 2.0)


def _linear_from(fov: np.ndarray, shape: tuple[int, int], xl: np.ndarray, xr: np.ndarray, lv: np.ndarray,
                 rv: np.ndarray, source: str) -> ProbeGeometry:
    h, w = shape
    c0 = float(np.median(xl[lv])) if lv.sum() >= 3 else 0.0
    c1 = float(np.median(xr[rv])) if rv.sum() >= 3 else float(w - 1)
    cols = np.flatnonzero(fov.any(axis=0))
    if cols.size == 0 or c1 - c0 < 2:
        return ProbeGeometry.linear(shape, source=source)
    band = fov[:, int(round(c0)):int(round(c1)) + 1]
    tops = band.argmax(axis=0)[band.any(axis=0)]
    bottoms = (h - 1 - band[::-1].argmax(axis=0))[band.any(axis=0)]
    r0, r1 = float(np.median(tops)), float(np.median(bottoms))
    if r1 - r0 < 2:
        r0, r1 = 0.0, float(h - 1)
    return ProbeGeometry.linear(shape, cols=(c0, c1), rows=(r0, r1), source=source)


# ----------------------------------------------------------------------------------- study settings
@dataclass(frozen=True)
class GeometrySetting:
    """How a study gets each image's geometry (``perturb.geometry``, ``perturb.apex``, ``perturb.opening_deg``,
    ``perturb.geometry_column``): a per-image value in the index column wins, then the setting (``auto``:
    estimate everything; ``sector`` / ``linear``: that kind, with ``apex`` and ``opening_deg`` fixed where
    given)."""

    mode: Literal["auto", "sector", "linear"] = "auto"
    apex: tuple[float, float] | None = None
    opening_deg: float | None = None
    column: str = GEOMETRY_COLUMN

    def __post_init__(self) -> None:
        if self.mode not in ("auto", *KINDS):
            raise InputError(f"perturb.geometry = {self.mode!r}: expected auto, sector or linear")
        if self.apex is not None:
            if len(self.apex) != 2:
                raise InputError(f"perturb.apex = {self.apex!r}: expected [row, col]")
            object.__setattr__(self, "apex", (float(self.apex[0]), float(self.apex[1])))
        if self.mode == LINEAR and (self.apex is not None or self.opening_deg is not None):
            raise InputError("perturb.apex / perturb.opening_deg: given with perturb.geometry = 'linear'; "
                             "expected them only for 'sector' or 'auto'")

    def key(self) -> dict[str, object]:
        """What the run id hashes."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def resolve_geometry(image: np.ndarray, setting: GeometrySetting | None = None,
                     per_image: object = None) -> ProbeGeometry:
    """The geometry of one image: ``per_image`` (:meth:`ProbeGeometry.to_text` text from the index column; empty
    or NaN: none) if given, else :func:`estimate_geometry` under ``setting``."""
    setting = setting or GeometrySetting()
    shape = np.asarray(image).shape[:2]
    if per_image is not None and not (isinstance(per_image, float) and math.isnan(per_image)) and str(per_image).strip():
        return ProbeGeometry.parse(str(per_image), shape, source=setting.column)
    given = setting.apex is not None or setting.opening_deg is not None or setting.mode != "auto"
    kind = setting.mode if setting.mode != "auto" or setting.apex is None else SECTOR
    return estimate_geometry(image, kind=kind, apex=setting.apex, opening_deg=setting.opening_deg,
                             source="study" if given else "estimated")


# ------------------------------------------------------------------------------------------ summaries
def geometry_table(geometries: Sequence[ProbeGeometry], image_ids: Sequence[str]) -> pd.DataFrame:
    """One row per image: ``image_id`` and the geometry's fields."""
    rows = [{"image_id": str(i), **g.to_dict()} for g, i in zip(geometries, image_ids, strict=True)]
    return pd.DataFrame(rows)


APEX_TOLERANCE = 0.02
"""Images disagree when their apex (or column span) differs by more than this fraction of the image height."""
ANGLE_TOLERANCE = 2.0
"""... or their edge angles by more than this many degrees."""


def summarize_geometry(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Summary of :func:`geometry_table` and warnings where images disagree.

    The summary has one row per field of the most common kind (``quantity, min, median, max``, rounded to 0.1 px
    or degree; ``attrs["kinds"]`` counts the images of each kind). Warnings: mixed kinds; an apex, probe face or
    column span that varies by more than :data:`APEX_TOLERANCE` of the image height; edge angles that vary by more
    than :data:`ANGLE_TOLERANCE` degrees. The depth of the field of view may change with the scanner's depth
    setting and is not compared.
    """
    warnings: list[str] = []
    kinds = table["kind"].value_counts()
    main_kind = str(kinds.index[0])
    if len(kinds) > 1:
        minority = table.loc[table["kind"] != main_kind, "image_id"].astype(str).tolist()
        counts = ", ".join(f"{n} {k}" for k, n in kinds.items())
        warnings.append(f"probe geometry differs between images ({counts}): e.g. {', '.join(minority[:5])}; set "
                        f"perturb.geometry or a '{GEOMETRY_COLUMN}' column in meta.csv if the estimate is wrong")
    main = table[table["kind"] == main_kind]
    h = main["height"].astype(float)
    rows = []
    for key in _KEYS[main_kind]:
        v = main[key].astype(float)
        rows.append({"quantity": key, "min": round(float(v.min()), 1), "median": round(float(v.median()), 1),
                     "max": round(float(v.max()), 1)})
        if key in ("r_far", "row_bottom"):
            continue
        angle = key.startswith("angle")
        rel = v if angle else v / h
        spread = float(rel.max() - rel.min())
        if spread > (ANGLE_TOLERANCE if angle else APEX_TOLERANCE):
            worst = main.loc[(rel - rel.median()).abs().idxmax(), "image_id"]
            amount = f"{spread:.1f} deg" if angle else f"{100 * spread:.1f} % of the image height"
            limit = f"{ANGLE_TOLERANCE:g} deg" if angle else f"{100 * APEX_TOLERANCE:g} %"
            warnings.append(f"probe geometry: {key} varies by {amount} across images (tolerance {limit}; farthest "
                            f"from the median: {worst})")
    out = pd.DataFrame(rows, columns=["quantity", "min", "median", "max"])
    out.attrs["kinds"] = {str(k): int(n) for k, n in kinds.items()}
    return out, warnings
