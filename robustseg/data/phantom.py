"""A synthetic trans-thalamic ultrasound data set written in the real data set's layout (layout 1).

Each image shows a sector field of view, a bright elliptical skull (brightest where the beam meets it
head-on), textured parenchyma with a midline echo, two hypoechoic thalami and a third-ventricle slit
(unlabelled look-alikes), in some images a dark CSP on the anterior midline and a dark LV atrium in
the far hemisphere, multiplicative speckle and depth attenuation. Head size, position, rotation and
direction vary; the pixel size follows from a sampled biparietal diameter. A minority of patients is
abnormal (absent CSP, or enlarged LV), recorded in ``meta.csv``. Everything follows from ``seed``.

``style`` picks a named parameter set from ``STYLES`` (image size, number of images, CSP / LV shape and
darkness, contrast and gain): variants that change what a recipe tuned on the default phantom relies on.
The ``"default"`` style reproduces the original phantom byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from robustseg._io import save_figure, write_bytes, write_csv
from robustseg._outdir import claim_output_dir
from robustseg.data.io import write_mask
from robustseg.errors import InputError

P_CSP = 0.40
"""Probability that a normal image shows (and labels) the CSP."""
P_LV = 0.29
"""Probability that a normal image shows (and labels) the LV atrium."""
P_ABNORMAL = 0.10
"""Probability that a patient is abnormal (half absent CSP, half enlarged LV)."""
IMAGES_PER_PATIENT = ((1, 2, 3), (0.35, 0.35, 0.30))


@dataclass(frozen=True)
class PhantomStyle:
    """One phantom variant. Lengths of CSP / LV are fractions of the head's fronto-occipital semi-axis ``a``.

    ``csp_len`` / ``csp_width`` are the semi-axes along / across the midline, ``csp_power`` the superellipse
    exponent (2 ellipse, 3 rounded box), ``csp_wall`` the brightness factor of its echogenic rim (1: none),
    ``csp_level`` its interior intensity before gain (parenchyma is ~0.36). ``lv_*`` likewise.
    ``contrast`` scales deviations from the mean image intensity inside the sector (1: unchanged) and
    ``gain`` is the range of the final multiplicative gain (brightness).
    """

    description: str
    size: tuple[int, int] = (959, 661)
    n: int = 200
    csp_len: float = 0.18
    csp_width: float = 0.085
    csp_power: float = 3.0
    csp_wall: float = 1.6
    csp_level: float = 0.05
    lv_len: float = 0.20
    lv_width: float = 0.07
    lv_power: float = 2.0
    lv_rim: float = 1.7
    lv_level: float = 0.06
    contrast: float = 1.0
    gain: tuple[float, float] = (260.0, 330.0)


STYLES: dict[str, PhantomStyle] = {
    "default": PhantomStyle("the original phantom: 959 x 661, rounded-box CSP with a bright wall, oval LV"),
    "small-thin": PhantomStyle(
        "an independent small data set: 85 images of 300 x 230, CSP a thin dark bar (~110 px), LV darker "
        "and elongated",
        size=(300, 230), n=85, csp_len=0.17, csp_width=0.03, csp_power=4.0, csp_wall=1.25,
        lv_len=0.24, lv_width=0.045, lv_level=0.03,
    ),
    "low-contrast": PhantomStyle(
        "a dim, low-contrast scanner: 480 x 330, 120 images, every intensity difference halved around the "
        "mean and the gain about halved (the structures keep their anatomy, only contrast and brightness "
        "change)",
        size=(480, 330), n=120, contrast=0.5, gain=(120.0, 170.0),
    ),
    "csp-like-lv": PhantomStyle(
        "CSP drawn like the LV: both plain dark ellipses of similar size and rim, 640 x 441, 160 images",
        size=(640, 441), n=160, csp_len=0.20, csp_width=0.07, csp_power=2.0, csp_wall=1.7,
        csp_level=0.06,
    ),
    "large-ellipse": PhantomStyle(
        "a large, bright data set: 300 images of 959 x 661, small elliptical CSP and LV, high gain",
        size=(959, 661), n=300, csp_len=0.12, csp_width=0.06, csp_power=2.0, lv_len=0.15,
        lv_width=0.05, contrast=1.3, gain=(330.0, 420.0),
    ),
}
"""Named phantom variants (``robustseg phantom --style NAME``, study key ``data.phantom_style``)."""


def get_style(style: str | PhantomStyle) -> PhantomStyle:
    """The ``PhantomStyle`` named ``style`` (a ``PhantomStyle`` passes through); unknown names: InputError."""
    if isinstance(style, PhantomStyle):
        return style
    if style not in STYLES:
        raise InputError(f"phantom style {style!r}: unknown; valid styles: {', '.join(STYLES)}")
    return STYLES[style]


@dataclass(frozen=True)
class _Patient:
    pid: str
    bpd_mm: float
    abnormality: str  # none | absent_csp | enlarged_lv


def masks_dirname(plane: str) -> str:
    """``Trans-thalamic`` -> ``Trans-thalamic-PASCAL`` (masks live in its ``SegmentationClass``)."""
    return f"{plane}-PASCAL"


def pixel_csv_name(plane: str) -> str:
    """``Trans-thalamic`` -> ``Trans-Thalamic-Pixel-Size.csv`` (the real data set's spelling)."""
    return "-".join(p[:1].upper() + p[1:] for p in plane.split("-")) + "-Pixel-Size.csv"


def _patients(n: int, rng: np.random.Generator,
              abnormal_fraction: float = P_ABNORMAL) -> list[tuple[_Patient, int]]:
    counts: list[int] = []
    sizes, probs = IMAGES_PER_PATIENT
    while sum(counts) < n:
        counts.append(int(rng.choice(sizes, p=probs)))
    counts[-1] -= sum(counts) - n
    ids = np.sort(rng.choice(np.arange(1, max(10 * len(counts), 100) + 1), size=len(counts), replace=False))
    out = []
    for pid, k in zip(ids, counts, strict=True):
        u = rng.random()
        abn = "none" if u >= abnormal_fraction else ("absent_csp" if u < abnormal_fraction / 2 else "enlarged_lv")
        out.append((_Patient(f"Patient{int(pid):05d}", float(rng.uniform(45.0, 90.0)), abn), k))
    return out


def _lowfreq(rng: np.random.Generator, h: int, w: int, cells: tuple[int, int]) -> np.ndarray:
    """Smooth random field in [-1, 1]-ish: noise on a coarse grid upsampled bicubically."""
    coarse = rng.standard_normal((cells[0], cells[1])).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def _window(cx: float, cy: float, r: float, h: int, w: int) -> tuple[slice, slice, np.ndarray, np.ndarray]:
    y0, y1 = max(0, int(cy - r) - 1), min(h, int(cy + r) + 2)
    x0, x1 = max(0, int(cx - r) - 1), min(w, int(cx + r) + 2)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    return slice(y0, y1), slice(x0, x1), xx - cx, yy - cy


def _blob(cx, cy, ax_u, ax_v, ang, power, h, w):
    """Superellipse ``|u/ax_u|^p + |v/ax_v|^p`` on a local window around (cx, cy), u along angle ``ang``."""
    sy, sx, dx, dy = _window(cx, cy, max(ax_u, ax_v) * 1.6, h, w)
    c, s = np.cos(ang), np.sin(ang)
    u = (dx * c + dy * s) / ax_u
    v = (-dx * s + dy * c) / ax_v
    return sy, sx, np.abs(u) ** power + np.abs(v) ** power


@dataclass(frozen=True)
class _Difficulty:
    """Harder images at ``level`` in (0, 1]: fainter CSP/LV, dark look-alikes, extra speckle.

    Draws only from its own generator ``rng`` (one per image), never from the image's main stream.
    """

    level: float
    rng: np.random.Generator

    def fill(self, fill: float, local: np.ndarray) -> np.ndarray:
        """Blend a structure's dark fill towards the surrounding tissue (less contrast at higher level)."""
        t = self.level * self.rng.uniform(0.35, 0.8)
        return (1.0 - t) * fill + t * local

    def distract(self, img: np.ndarray, brain: np.ndarray, at, a: float, b: float, h: int, w: int) -> np.ndarray:
        """Add up to three dark, structure-sized blobs in the parenchyma (unlabelled look-alikes)."""
        for _ in range(int(self.rng.binomial(3, self.level))):
            ang = self.rng.uniform(0, 2 * np.pi)
            rad = self.rng.uniform(0.25, 0.7)
            px, py = at(rad * a * np.cos(ang), rad * b * np.sin(ang))
            sy, sx, q = _blob(px, py, self.rng.uniform(0.10, 0.20) * a, self.rng.uniform(0.05, 0.09) * a,
                              self.rng.uniform(0, np.pi), 2.0, h, w)
            dark = self.rng.uniform(0.15, 0.45)
            img[sy, sx] = np.where((q < 1.0) & brain[sy, sx], img[sy, sx] * dark, img[sy, sx])
        return img

    def noise(self, out: np.ndarray) -> np.ndarray:
        """Multiply by coarse extra speckle whose spread grows with the level."""
        h, w = out.shape
        k = 1.0 / max(1e-3, 0.6 * self.level)
        coarse = self.rng.gamma(k, 1.0 / k, (max(4, h // 6), max(4, w // 6))).astype(np.float32)
        return out * cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)


def _render(
    rng: np.random.Generator,
    pat: _Patient,
    has_csp: bool,
    has_lv: bool,
    h: int,
    w: int,
    geo: dict,
    sty: PhantomStyle = STYLES["default"],
    hard: _Difficulty | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """One image (uint8 H x W) and its label map; returns the pixel size in mm too.

    ``hard`` (difficulty > 0) draws from its own generator, so the main stream (and the default phantom's
    bytes) is unchanged by it.
    """
    xx, yy, r, sector = geo["xx"], geo["yy"], geo["r"], geo["sector"]
    s = float(h)
    # head geometry (b is the biparietal semi-axis, a the fronto-occipital one)
    a = s * rng.uniform(0.30, 0.41)
    b = a * rng.uniform(0.76, 0.86)
    theta = np.deg2rad(rng.uniform(-30.0, 30.0))
    front = 1.0 if rng.random() < 0.5 else -1.0
    cx = w / 2 + rng.uniform(-0.06, 0.06) * w
    half_v = np.sqrt((a * np.sin(theta)) ** 2 + (b * np.cos(theta)) ** 2) * 1.08
    cy = float(np.clip(0.55 * h + rng.uniform(-0.06, 0.06) * h, half_v + 0.03 * h, 0.985 * h - half_v))
    ct, st = np.cos(theta), np.sin(theta)
    dx, dy = xx - cx, yy - cy
    u = dx * ct + dy * st  # along the fronto-occipital axis
    v = -dx * st + dy * ct  # across (biparietal)
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    t = rng.uniform(0.05, 0.075)  # skull thickness relative to the head radius
    brain = (rho < 1.0) & sector
    skull = (rho >= 1.0) & (rho < 1.0 + t)

    # base echogenicity
    img = 0.05 + 0.12 * np.clip(_lowfreq(rng, h, w, (4, 6)) + 0.2, 0, None)  # fluid / maternal tissue
    img[yy < geo["near"]] += 0.15  # near-field maternal wall
    par = 0.36 * (1.0 + 0.22 * _lowfreq(rng, h, w, (9, 13)) + 0.12 * _lowfreq(rng, h, w, (30, 44)))
    img = np.where(brain, par, img)
    # skull: bright where the beam hits the surface head-on
    su, sv, sr = u[skull], v[skull], r[skull]
    nx, ny = (su / a**2) * ct - (sv / b**2) * st, (su / a**2) * st + (sv / b**2) * ct
    bx, by = xx[skull] - geo["apex"][0], yy[skull] - geo["apex"][1]
    cosang = np.abs(nx * bx + ny * by) / (np.sqrt(nx**2 + ny**2) * sr + 1e-6)
    img[skull] = 0.45 + 0.75 * cosang**2

    labels = np.zeros((h, w), dtype=np.uint8)
    labels[brain] = 1

    def at(along: float, across: float) -> tuple[float, float]:
        return cx + along * ct - across * st, cy + along * st + across * ct

    far = 1.0 if ct > 0 else -1.0  # +v points down (away from the probe) when cos(theta) > 0
    mid_w = max(1.0, 0.012 * b)
    midline = (np.abs(v) < mid_w) & (rho < 0.93)
    img = np.where(midline, img * 1.9, img)

    # thalami: two hypoechoic ovals beside the midline, posterior to the centre (look-alikes)
    ty = rng.uniform(0.02, 0.10) * a
    for side in (-1.0, 1.0):
        tx, tyy = at(-front * ty, side * 0.14 * b)
        sy, sx, q = _blob(tx, tyy, 0.13 * a, 0.09 * b, theta + side * 0.35, 2.0, h, w)
        img[sy, sx] = np.where(q < 1.0, img[sy, sx] * rng.uniform(0.3, 0.5), img[sy, sx])
    # third ventricle slit between the thalami (dark line, unlabelled)
    sy, sx, q = _blob(*at(-front * ty, 0.0), 0.10 * a, 0.012 * b + 1.0, theta, 2.0, h, w)
    img[sy, sx] = np.where(q < 1.0, img[sy, sx] * 0.35, img[sy, sx])

    if has_csp:
        l_u, l_v = sty.csp_len * a * rng.uniform(0.85, 1.15), sty.csp_width * a * rng.uniform(0.85, 1.15)
        ccx, ccy = at(front * rng.uniform(0.36, 0.44) * a, 0.0)
        sy, sx, q = _blob(ccx, ccy, l_u, l_v, theta, sty.csp_power, h, w)
        inside = (q < 1.0) & brain[sy, sx]
        wall = (q >= 1.0) & (q < 1.6) & brain[sy, sx]
        img[sy, sx] = np.where(wall, img[sy, sx] * sty.csp_wall, img[sy, sx])
        fill = sty.csp_level + 0.03 * rng.random()
        img[sy, sx] = np.where(inside, fill if hard is None else hard.fill(fill, img[sy, sx]), img[sy, sx])
        labels[sy, sx][inside] = 2
    if has_lv:
        big = pat.abnormality == "enlarged_lv"
        l_u = sty.lv_len * a * (rng.uniform(1.2, 1.4) if big else rng.uniform(0.9, 1.1))
        l_v = sty.lv_width * a * (rng.uniform(1.9, 2.5) if big else rng.uniform(0.85, 1.15))
        lcx, lcy = at(-front * rng.uniform(0.50, 0.58) * a, far * (0.40 * b))
        sy, sx, q = _blob(lcx, lcy, l_u, l_v, theta - front * far * 0.3, sty.lv_power, h, w)
        inside = (q < 1.0) & brain[sy, sx]
        rim = (q >= 1.0) & (q < 1.5) & brain[sy, sx]
        img[sy, sx] = np.where(rim, img[sy, sx] * sty.lv_rim, img[sy, sx])
        fill = sty.lv_level + 0.04 * rng.random()
        img[sy, sx] = np.where(inside, fill if hard is None else hard.fill(fill, img[sy, sx]), img[sy, sx])
        labels[sy, sx][inside] = 3
    # an occasional hypoechoic shadow in the parenchyma (unlabelled look-alike)
    if rng.random() < 0.4:
        ang = rng.uniform(0, 2 * np.pi)
        px, py = at(0.6 * a * np.cos(ang), 0.6 * b * np.sin(ang))
        sy, sx, q = _blob(px, py, 0.08 * a, 0.05 * a, rng.uniform(0, np.pi), 2.0, h, w)
        img[sy, sx] = np.where((q < 1.0) & brain[sy, sx], img[sy, sx] * 0.5, img[sy, sx])

    if hard is not None:
        img = hard.distract(img, brain, at, a, b, h, w)
    labels[~sector] = 0
    if sty.contrast != 1.0:
        ref = float(img[sector].mean())
        img = np.clip(ref + sty.contrast * (img - ref), 0.0, None)
    # soften edges, then speckle (correlated gamma noise), depth attenuation, gain
    sig = max(0.6, 0.0025 * h)
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), sig)
    gh, gw = max(4, int(h / 2.5)), max(4, int(w / 2.5))
    k = rng.uniform(2.0, 4.0)
    speckle = cv2.resize(
        rng.gamma(k, 1.0 / k, (gh, gw)).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR
    )
    fine = rng.random((h, w), dtype=np.float32) * 0.8 + 0.6  # mean 1
    att = np.exp(-rng.uniform(0.5, 1.1) * r / geo["rmax"])
    out = img * speckle * fine * att * rng.uniform(*sty.gain)
    if hard is not None:
        out = hard.noise(out)
    out = np.where(sector, out + rng.normal(0.0, 2.0), 0.0)
    pixel_mm = pat.bpd_mm * rng.uniform(0.97, 1.03) / (2.0 * b)
    return np.clip(out, 0, 255).astype(np.uint8), labels, float(pixel_mm)


def _geometry(h: int, w: int) -> dict:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    apex = (w / 2.0, -0.12 * h)
    bx, by = xx - apex[0], yy - apex[1]
    r = np.sqrt(bx**2 + by**2)
    ang = np.arctan2(bx, by)
    rmax = 1.10 * h + abs(apex[1])
    sector = (np.abs(ang) < np.deg2rad(40.0)) & (r < rmax) & (r > 0.16 * h)
    return {"xx": xx, "yy": yy, "r": r, "sector": sector, "apex": apex, "rmax": rmax, "near": 0.05 * h}


def generate_phantom(
    out_dir: str | Path,
    n: int | None = 200,
    seed: int = 0,
    plane: str = "Trans-thalamic",
    size: tuple[int, int] | None = None,
    *,
    style: str | PhantomStyle = "default",
    abnormal_fraction: float = P_ABNORMAL,
    difficulty: float = 0.0,
    force: bool = False,
) -> Path:
    """Write ``n`` phantom images in layout 1 under ``out_dir/<plane>``; return ``out_dir``.

    ``size`` is (width, height) of the images (None: the style's, 959 x 661 for the default like the real
    set); ``n`` None takes the style's number of images. ``style`` names an entry of ``STYLES`` (image size,
    data set size, CSP/LV shape, contrast and brightness). ``abnormal_fraction`` is the probability that a
    patient is abnormal (half absent CSP, half enlarged LV; default :data:`P_ABNORMAL`). ``difficulty`` in
    [0, 1] makes images harder to segment (fainter CSP/LV, dark unlabelled look-alikes, coarser speckle)
    from a separate random stream; 0 (default) leaves every byte of the phantom unchanged. Writes images,
    PASCAL palette masks, ``<Plane>-Pixel-Size.csv`` (``Label``, ``Pixel in mm``) and ``meta.csv``
    (``image_id, abnormal, abnormality``). Same seed, style and options, same bytes.

    ``out_dir`` must be new, empty or an earlier phantom's folder (:func:`robustseg._outdir.claim_output_dir`):
    a folder holding anything else (a real data set uses the same file names) is refused unless ``force``. The
    files are written into a staging folder and moved into place only when all were written, so a failure (a
    full disk) leaves no partial data set; a re-run replaces the earlier phantom's files and nothing else.
    """
    st = get_style(style)
    n = st.n if n is None else n
    size = st.size if size is None else size
    if int(n) < 1:
        raise InputError(f"phantom n={n!r}: expected an integer >= 1")
    if not 0.0 <= float(abnormal_fraction) <= 1.0:
        raise InputError(f"phantom abnormal_fraction={abnormal_fraction!r}: expected a number in [0, 1]")
    if not 0.0 <= float(difficulty) <= 1.0:
        raise InputError(f"phantom difficulty={difficulty!r}: expected a number in [0, 1]")
    w, h = (int(size[0]), int(size[1]))
    if w < 32 or h < 32:
        raise InputError(f"phantom size {size!r}: expected width and height >= 32")
    target = claim_output_dir(out_dir, "phantom", force=force, what="phantom folder", legacy=_legacy_phantom)
    with target.staging() as stage:
        _write_phantom(stage, int(n), int(seed), plane, w, h, st, float(abnormal_fraction), float(difficulty))
    return target.path


def _legacy_phantom(folder: Path) -> list[str] | None:
    """A phantom written before output markers existed: only plane folders, each with the phantom's own
    ``meta.csv`` (header ``image_id,abnormal,abnormality``, which a real data set does not have); its files."""
    from robustseg._outdir import first_line

    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if not entries or not all(p.is_dir() and first_line(p / "meta.csv") == "image_id,abnormal,abnormality"
                              for p in entries):
        return None
    return [f.relative_to(folder).as_posix() for p in entries for f in sorted(p.rglob("*")) if f.is_file()]


def _write_phantom(out: Path, n: int, seed: int, plane: str, w: int, h: int, st: PhantomStyle,
                   abnormal_fraction: float, difficulty: float) -> None:
    root = out / plane
    img_dir, mask_dir = root / plane, root / masks_dirname(plane) / "SegmentationClass"
    img_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([int(seed), 0])
    geo = _geometry(h, w)
    rows, px_rows = [], []
    i = 0
    for pat, k in _patients(int(n), rng, float(abnormal_fraction)):
        for j in range(k):
            irng = np.random.default_rng([int(seed), 1, i])
            if pat.abnormality == "absent_csp":
                has_csp = False
            else:
                has_csp = bool(irng.random() < P_CSP)
            has_lv = True if pat.abnormality == "enlarged_lv" else bool(irng.random() < P_LV)
            hard = (_Difficulty(float(difficulty), np.random.default_rng([int(seed), 2, i]))
                    if difficulty > 0 else None)
            image, labels, pixel_mm = _render(irng, pat, has_csp, has_lv, h, w, geo, st, hard)
            name = f"{pat.pid}_Plane3_{j + 1}_of_{k}"
            rgb = np.repeat(image[..., None], 3, axis=2)
            ok, png = cv2.imencode(".png", rgb, [cv2.IMWRITE_PNG_COMPRESSION, 1])
            assert ok, "PNG encoding of a uint8 image cannot fail"
            write_bytes(img_dir / f"{name}.png", png.tobytes(), fsync=False)  # staged: published all at once
            write_mask(mask_dir / f"{name}.png", labels, "pascal")
            px_rows.append({"Label": f"{name}.png", "Pixel in mm": round(pixel_mm, 6)})
            rows.append(
                {"image_id": name, "abnormal": pat.abnormality != "none", "abnormality": pat.abnormality}
            )
            i += 1
    write_csv(root / pixel_csv_name(plane), pd.DataFrame(px_rows))
    write_csv(root / "meta.csv", pd.DataFrame(rows))


def phantom_figure(
    data_dir: str | Path, out_png: str | Path, n: int = 4, plane: str = "Trans-thalamic"
) -> Path:
    """Save a figure of ``n`` phantom images (top) with their masks overlaid (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robustseg.data.index import load_index

    index = load_index("phantom", data_dir, plane=plane)
    if index.empty:
        raise InputError(f"{data_dir}: no images to draw")
    # prefer images that show both small structures, then any
    order = index.sort_values(["has_csp", "has_lv"], ascending=False, kind="stable")
    rows = order.head(n)
    from robustseg.data.io import read_image, read_mask

    colours = np.array([[0, 0, 0, 0], [0.8, 0.2, 0.2, 0.25], [0.1, 0.9, 0.2, 0.8], [1.0, 0.85, 0.0, 0.8]])
    fig, axes = plt.subplots(2, len(rows), figsize=(3.2 * len(rows), 4.6), squeeze=False)
    for col, (_, row) in enumerate(rows.iterrows()):
        img = read_image(row["image_path"])
        lab = read_mask(row["mask_path"])
        axes[0, col].imshow(img, cmap="gray", vmin=0, vmax=255)
        axes[0, col].set_title(str(row["image_id"]).replace("_Plane3", ""), fontsize=7)
        axes[1, col].imshow(img, cmap="gray", vmin=0, vmax=255)
        axes[1, col].imshow(colours[lab])
        for ax in axes[:, col]:
            ax.axis("off")
    axes[1, 0].text(
        0, -8, "red: brain  green: CSP  yellow: LV", fontsize=7, color="black", transform=axes[1, 0].transData
    )
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    try:
        save_figure(out_png, fig, dpi=110)
    finally:
        plt.close(fig)
    return out_png
