"""Test-time image perturbations: a registry with five fixed severities each, deterministic per seed.

Every perturbation maps a grayscale ``uint8 (H, W)`` image to another one of the same shape and never
touches masks. The parameter of each severity is fixed in ``PERTURBATIONS`` (``docs/perturbations.md``
reproduces the table with the PSNR / SSIM it produces on phantom images). Albumentations does the work
where it has the transform (ranges with equal ends, so only the noise realisation is random); the two
ultrasound artefacts (acoustic shadowing, depth attenuation) are written here.

Randomness never comes from global state: each call seeds its own generator from ``(seed, name)``.
Severity is deliberately not part of the stream, so the severities of one perturbation share one noise
realisation (common random numbers) and differ only in amount: severity 3 is severity 2 made stronger,
which keeps the severity -> degradation curve monotone and the contact sheet easy to read.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pandas as pd

from robustseg.data.index import IMAGE_EXTS
from robustseg.errors import InputError

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
CLEAN: tuple[str, int] = ("none", 0)
"""The unperturbed condition as it appears in result tables (``perturbation='none'``, ``severity=0``)."""

Perturb = Callable[[np.ndarray, int], np.ndarray]


# --------------------------------------------------------------------------------------------- seeds
def _seed_words(value: int) -> list[int]:
    value = int(value)
    sign = 1 if value < 0 else 0
    value = abs(value)
    return [sign, value & 0xFFFFFFFF, (value >> 32) & 0xFFFFFFFF]


def derive_seed(seed: int, name: str) -> int:
    """A 32-bit seed for perturbation ``name`` from the user ``seed`` (stable across runs and platforms)."""
    ss = np.random.SeedSequence([zlib.crc32(name.encode("utf-8")), *_seed_words(seed)])
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def image_seed(seed: int, image_id: object) -> int:
    """A per-image seed from the run seed and the image id (crc32), independent of batch position."""
    return derive_seed(seed, str(image_id))


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


# ---------------------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class Perturbation:
    """One registry entry: a name, what it models, the parameter of each severity 1..5 and whether the
    seed matters (``stochastic``: noise realisation, blur direction, shadow placement)."""

    name: str
    description: str
    parameter: str
    values: tuple[object, ...]
    stochastic: bool
    build: Callable[[object], A.BasicTransform] | None = None
    function: Callable[[np.ndarray, object, np.random.Generator], np.ndarray] | None = None

    def params(self, severity: int) -> str:
        """Human-readable parameters of ``severity`` (for tables and the contact sheet)."""
        value = self.values[severity - 1]
        return str(value) if isinstance(value, ShadowParams) else f"{self.parameter}={value:g}"


def _downscale(scale: float) -> A.BasicTransform:
    return A.Downscale(
        scale_range=(scale, scale),
        interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR},
        p=1.0,
    )


_ENTRIES: tuple[Perturbation, ...] = (
    Perturbation(
        "gaussian_noise", "additive Gaussian noise (albumentations GaussNoise)", "std/255",
        (0.02, 0.04, 0.06, 0.09, 0.13),
        stochastic=True,
        build=lambda s: A.GaussNoise(std_range=(s, s), mean_range=(0.0, 0.0), p=1.0),
    ),
    Perturbation(
        "speckle", "multiplicative speckle, pixel x U(1-a, 1+a) (MultiplicativeNoise, elementwise)", "a",
        (0.12, 0.25, 0.4, 0.6, 0.85),
        stochastic=True,
        build=lambda a: A.MultiplicativeNoise(multiplier=(1.0 - a, 1.0 + a), elementwise=True, p=1.0),
    ),
    Perturbation(
        "salt_pepper", "salt-and-pepper impulse noise (SaltAndPepper), fraction of pixels hit", "amount",
        (0.002, 0.005, 0.012, 0.025, 0.05),
        stochastic=True,
        build=lambda a: A.SaltAndPepper(amount=(a, a), salt_vs_pepper=(0.5, 0.5), p=1.0),
    ),
    Perturbation(
        "contrast", "contrast reduction towards the image mean, (x - mean) * c + mean (ColorJitter)", "c",
        (0.85, 0.7, 0.55, 0.45, 0.35),
        stochastic=False,
        build=lambda c: A.ColorJitter(
            brightness=(1.0, 1.0), contrast=(c, c), saturation=(1.0, 1.0), hue=(0.0, 0.0), p=1.0
        ),
    ),
    Perturbation(
        "gamma_dark", "gamma > 1 darkens mid-tones (RandomGamma)", "gamma",
        (1.15, 1.3, 1.5, 1.75, 2.0),
        stochastic=False,
        build=lambda g: A.RandomGamma(gamma_limit=(g * 100, g * 100), p=1.0),
    ),
    Perturbation(
        "gamma_bright", "gamma < 1 brightens mid-tones (RandomGamma)", "gamma",
        (0.85, 0.72, 0.62, 0.53, 0.45),
        stochastic=False,
        build=lambda g: A.RandomGamma(gamma_limit=(g * 100, g * 100), p=1.0),
    ),
    Perturbation(
        "brightness", "brightness (gain offset) shift by b*255 (RandomBrightnessContrast)", "b",
        (0.04, 0.08, 0.13, 0.19, 0.26),
        stochastic=False,
        build=lambda b: A.RandomBrightnessContrast(brightness_limit=(b, b), contrast_limit=(0.0, 0.0), p=1.0),
    ),
    Perturbation(
        "gaussian_blur", "Gaussian blur, sigma in pixels (GaussianBlur)", "sigma",
        (0.6, 1.0, 1.5, 2.2, 3.0),
        stochastic=False,
        build=lambda s: A.GaussianBlur(blur_limit=0, sigma_limit=(s, s), p=1.0),
    ),
    Perturbation(
        "motion_blur", "linear motion blur, kernel length in pixels, random direction (MotionBlur)", "kernel",
        (3, 5, 7, 11, 15),
        stochastic=True,
        build=lambda k: A.MotionBlur(blur_limit=(k, k), allow_shifted=False, p=1.0),
    ),
    Perturbation(
        "jpeg", "JPEG compression artefacts (ImageCompression)", "quality",
        (60, 40, 25, 15, 8),
        stochastic=False,
        build=lambda q: A.ImageCompression(compression_type="jpeg", quality_range=(q, q), p=1.0),
    ),
    Perturbation(
        "resolution", "resolution loss: area down-sampling by a scale then linear up-sampling (Downscale)",
        "scale", (0.7, 0.5, 0.4, 0.3, 0.2),
        stochastic=False,
        build=_downscale,
    ),
    Perturbation(
        "acoustic_shadow", "dark bands along the beam behind strong reflectors (fan geometry, seeded)", "",
        (
            ShadowParams(1, 3.0, 0.35),
            ShadowParams(1, 4.0, 0.5),
            ShadowParams(2, 5.0, 0.6),
            ShadowParams(3, 6.0, 0.72),
            ShadowParams(4, 7.0, 0.85),
        ),
        stochastic=True,
        function=acoustic_shadow,  # type: ignore[arg-type]
    ),
    Perturbation(
        "depth_attenuation", "exponential gain loss with depth from the apex; fraction left at max depth",
        "remaining", (0.85, 0.7, 0.55, 0.4, 0.28),
        stochastic=False,
        function=depth_attenuation,  # type: ignore[arg-type]
    ),
)

PERTURBATIONS: dict[str, Perturbation] = {p.name: p for p in _ENTRIES}

SUITES: dict[str, tuple[str, ...]] = {
    "ultrasound": (
        "speckle", "acoustic_shadow", "depth_attenuation", "brightness", "contrast", "motion_blur", "resolution",
    ),
    "noise-contrast": (
        "gaussian_noise", "speckle", "salt_pepper", "contrast", "gamma_dark", "gamma_bright", "brightness",
    ),
    "all": tuple(PERTURBATIONS),
}
"""Named suites; each perturbation runs at every severity 1..5."""


def list_perturbations() -> list[str]:
    """Registered perturbation names, in registry order."""
    return list(PERTURBATIONS)


def list_suites() -> list[str]:
    """Named suites."""
    return list(SUITES)


def _entry(name: str) -> Perturbation:
    if not isinstance(name, str) or name not in PERTURBATIONS:
        raise InputError(f"perturbation {name!r}: unknown; expected one of {list_perturbations()}")
    return PERTURBATIONS[name]


def _check_severity(severity: object, name: str = "") -> int:
    ok = isinstance(severity, int | np.integer) and not isinstance(severity, bool) and int(severity) in SEVERITIES
    if not ok:
        where = f" of {name!r}" if name else ""
        raise InputError(f"severity {severity!r}{where}: expected an integer 1..5")
    return int(severity)


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype != np.uint8:
        raise InputError(f"image of shape {image.shape} and dtype {image.dtype}: expected uint8 (H, W)")
    return np.ascontiguousarray(image)


@functools.cache
def _compose(name: str, severity: int) -> A.Compose:
    """The albumentations Compose of one registry entry at one severity, built once and re-seeded per call."""
    entry = PERTURBATIONS[name]
    assert entry.build is not None
    return A.Compose([entry.build(entry.values[severity - 1])], seed=0)


def apply(image: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """Perturb a grayscale uint8 ``(H, W)`` image; identical output for identical arguments.

    ``("none", 0)`` returns a copy of the image (the clean condition of result tables).
    """
    image = _check_image(image)
    if (name, severity) == CLEAN:
        return image.copy()
    entry = _entry(name)
    severity = _check_severity(severity, name)
    stream = derive_seed(seed, name)
    if entry.function is not None:
        out = entry.function(image, entry.values[severity - 1], np.random.default_rng(stream))
    else:
        compose = _compose(name, severity)
        compose.set_random_seed(stream)
        out = compose(image=image)["image"]
    out = np.asarray(out)
    if out.ndim == 3:
        out = out[..., 0]
    assert out.shape == image.shape and out.dtype == np.uint8
    return np.ascontiguousarray(out)


def create(name: str, severity: int) -> Perturb:
    """A callable ``perturb(image, seed) -> image`` for one perturbation at one severity."""
    if (name, severity) != CLEAN:
        _check_severity(severity, _entry(name).name)

    def perturb(image: np.ndarray, seed: int = 0) -> np.ndarray:
        return apply(image, name, severity, seed)

    perturb.__name__ = f"{name}_s{severity}"
    return perturb


def perturb_batch(
    images: np.ndarray, name: str, severity: int, seed: int = 0, image_ids: Sequence[object] | None = None
) -> np.ndarray:
    """Perturb ``(N, H, W)`` images, each seeded from ``(seed, image id)``.

    With ``image_ids`` the result of an image does not depend on its position in the batch; without
    them the position ``0..N-1`` stands in for the id.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise InputError(f"images of shape {images.shape} and dtype {images.dtype}: expected uint8 (N, H, W)")
    ids = list(range(len(images))) if image_ids is None else list(image_ids)
    if len(ids) != len(images):
        raise InputError(f"image_ids: {len(ids)} ids for {len(images)} images; expected one per image")
    out = np.empty_like(images)
    for i, (img, iid) in enumerate(zip(images, ids, strict=True)):
        out[i] = apply(img, name, severity, image_seed(seed, iid))
    return out


# ----------------------------------------------------------------------------------------------- suites
def _severities(name: str, value: object) -> list[int]:
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return [_check_severity(value, name)]
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        sev = [_check_severity(v, name) for v in value]
        if not sev:
            raise InputError(f"severities of {name!r}: empty list; expected integers 1..5")
        return sev
    raise InputError(f"severities of {name!r}: {value!r}; expected an integer 1..5 or a list of them")


def resolve_suite(spec: str | Sequence[object] | Mapping[str, object]) -> list[tuple[str, int]]:
    """Expand a suite spec into ``[(perturbation, severity), ...]`` (order kept, duplicates dropped).

    ``spec`` is a suite name (``ultrasound``, ``noise-contrast``, ``all``) or a perturbation name (all
    severities); a list of names or ``(name, severity)`` pairs; or a dict ``{name: severity | [severities]}``.
    """
    pairs: list[tuple[str, int]] = []
    if isinstance(spec, str):
        if spec in SUITES:
            pairs = [(n, s) for n in SUITES[spec] for s in SEVERITIES]
        elif spec in PERTURBATIONS:
            pairs = [(spec, s) for s in SEVERITIES]
        else:
            raise InputError(
                f"suite {spec!r}: unknown; expected one of {list_suites()} or a perturbation {list_perturbations()}"
            )
    elif isinstance(spec, Mapping):
        for name, sev in spec.items():
            pairs += [(_entry(name).name, s) for s in _severities(name, sev)]
    elif isinstance(spec, Iterable) and not isinstance(spec, bytes):
        for item in spec:
            if isinstance(item, str):
                pairs += [(_entry(item).name, s) for s in SEVERITIES]
            elif isinstance(item, Sequence) and len(item) == 2 and isinstance(item[0], str):
                pairs.append((_entry(item[0]).name, _check_severity(item[1], item[0])))
            else:
                raise InputError(f"suite entry {item!r}: expected a perturbation name or a (name, severity) pair")
    else:
        raise InputError(f"suite {spec!r}: expected a suite name, a list of perturbations or a dict")
    if not pairs:
        raise InputError("suite: empty; expected at least one perturbation")
    return list(dict.fromkeys(pairs))


# ----------------------------------------------------------------------------------------- calibration
def calibration_table(
    images: np.ndarray, seed: int = 0, pairs: Sequence[tuple[str, int]] | None = None
) -> pd.DataFrame:
    """Mean PSNR (dB) and SSIM of every perturbation and severity against the clean ``(N, H, W)`` images.

    Columns: ``perturbation, severity, params, psnr, psnr_sd, ssim, ssim_sd, n_images``. PSNR and SSIM
    use ``data_range=255`` (skimage.metrics); images are perturbed with ``perturb_batch`` (position ids).
    """
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8 or len(images) == 0:
        raise InputError(f"images of shape {images.shape} and dtype {images.dtype}: expected uint8 (N, H, W)")
    pairs = resolve_suite("all") if pairs is None else list(pairs)
    rows = []
    for name, sev in pairs:
        out = perturb_batch(images, name, sev, seed)
        psnr = np.array([peak_signal_noise_ratio(a, b, data_range=255) for a, b in zip(images, out, strict=True)])
        ssim = np.array([structural_similarity(a, b, data_range=255) for a, b in zip(images, out, strict=True)])
        rows.append(
            {
                "perturbation": name,
                "severity": sev,
                "params": PERTURBATIONS[name].params(sev),
                "psnr": float(psnr.mean()),
                "psnr_sd": float(psnr.std(ddof=1)) if len(psnr) > 1 else float("nan"),
                "ssim": float(ssim.mean()),
                "ssim_sd": float(ssim.std(ddof=1)) if len(ssim) > 1 else float("nan"),
                "n_images": len(images),
            }
        )
    return pd.DataFrame(rows)


def parameter_markdown() -> str:
    """The registry as a Markdown table: implementation and the parameter of each severity."""
    lines = [
        "| perturbation | implementation | parameter | s1 | s2 | s3 | s4 | s5 | seed matters |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in PERTURBATIONS.values():
        vals = [
            f"{v.bands} x {v.half_width_deg:g}deg, {v.strength:g}" if isinstance(v, ShadowParams) else f"{v:g}"
            for v in e.values
        ]
        parameter = e.parameter or "bands x half-width, attenuation"
        seeded = "yes" if e.stochastic else "no"
        lines.append(f"| {e.name} | {e.description} | {parameter} | {' | '.join(vals)} | {seeded} |")
    return "\n".join(lines) + "\n"


def calibration_markdown(table: pd.DataFrame) -> str:
    """The calibration table as Markdown (one row per perturbation and severity)."""
    lines = ["| perturbation | severity | parameters | PSNR (dB) | SSIM |", "|---|---|---|---|---|"]
    for r in table.itertuples(index=False):
        lines.append(f"| {r.perturbation} | {r.severity} | {r.params} | {r.psnr:.1f} | {r.ssim:.3f} |")
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------- contact sheet
def contact_sheet(
    image: np.ndarray,
    pairs_or_suite: str | Sequence[object] | Mapping[str, object],
    out_png: str | Path,
    seed: int = 0,
    *,
    cell_inches: float = 1.5,
    dpi: int = 100,
) -> Path:
    """Draw one image under each perturbation: rows perturbations, columns clean + severities. Writes PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    image = _check_image(image)
    pairs = resolve_suite(pairs_or_suite)
    names = list(dict.fromkeys(n for n, _ in pairs))
    sevs = sorted({s for _, s in pairs})
    ncol = 1 + len(sevs)
    fig = Figure(figsize=(cell_inches * ncol, cell_inches * len(names) + 0.3), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(names), ncol, squeeze=False)
    chosen = set(pairs)
    for r, name in enumerate(names):
        for c in range(ncol):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if c == 0:
                ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
                ax.set_ylabel(name, fontsize=8)
            elif (name, sevs[c - 1]) in chosen:
                ax.imshow(apply(image, name, sevs[c - 1], seed), cmap="gray", vmin=0, vmax=255,
                          interpolation="nearest")
            if r == 0:
                ax.set_title("clean" if c == 0 else f"severity {sevs[c - 1]}", fontsize=8)
    fig.subplots_adjust(left=0.06, right=0.99, top=1 - 0.3 / fig.get_figheight(), bottom=0.01,
                        wspace=0.04, hspace=0.04)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=dpi)
    from PIL import Image  # everything drawn is gray: store one channel (a third of the bytes)

    with Image.open(out_png) as rendered:
        gray = rendered.convert("L")
    gray.save(out_png, optimize=True)
    return out_png


_IMAGE_SUFFIXES = IMAGE_EXTS


def perturb_folder(
    image_dir: str | Path,
    out_dir: str | Path,
    *,
    suite: str | Sequence[object] | Mapping[str, object] = "all",
    severity: int | None = None,
    seed: int = 0,
    size: int | None = None,
) -> pd.DataFrame:
    """Write perturbed copies ``OUT/<perturbation>/s<k>/<name>.png`` and ``OUT/contact_sheet.png``.

    Images are read as grayscale; with ``size`` they are first preprocessed as the model sees them
    (longest side to ``size``, zero-padded square). ``severity`` keeps only that level of the suite.
    Each image is seeded from ``(seed, file stem)``. Returns one row per written file: ``image_id,
    perturbation, severity, params, path, psnr, ssim``.
    """
    from PIL import Image
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from robustseg.data.io import read_image

    image_dir, out_dir = Path(image_dir), Path(out_dir)
    if not image_dir.is_dir():
        raise InputError(f"{image_dir}: not a directory; expected a folder of images")
    files = sorted(p for p in image_dir.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{image_dir}: no images ({', '.join(_IMAGE_SUFFIXES)}) found")
    pairs = resolve_suite(suite)
    if severity is not None:
        severity = _check_severity(severity)
        pairs = [(n, s) for n, s in pairs if s == severity]
        if not pairs:
            raise InputError(f"severity {severity}: not in suite {suite!r}")
    if size is not None:
        from robustseg.data.transforms import preprocess

    rows = []
    first: np.ndarray | None = None
    for path in files:
        image = read_image(path)
        if size is not None:
            image = preprocess(image, None, size)[0]
        if first is None:
            first = image
        iseed = image_seed(seed, path.stem)
        for name, sev in pairs:
            out = apply(image, name, sev, iseed)
            target = out_dir / name / f"s{sev}" / f"{path.stem}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(out).save(target)
            rows.append(
                {
                    "image_id": path.stem,
                    "perturbation": name,
                    "severity": sev,
                    "params": PERTURBATIONS[name].params(sev),
                    "path": str(target),
                    "psnr": float(peak_signal_noise_ratio(image, out, data_range=255)),
                    "ssim": float(structural_similarity(image, out, data_range=255)),
                }
            )
    assert first is not None
    contact_sheet(first, pairs, out_dir / "contact_sheet.png", image_seed(seed, files[0].stem))
    return pd.DataFrame(rows)


__all__ = [
    "CLEAN",
    "PERTURBATIONS",
    "SEVERITIES",
    "SUITES",
    "Perturbation",
    "ShadowParams",
    "acoustic_shadow",
    "apply",
    "calibration_markdown",
    "calibration_table",
    "contact_sheet",
    "create",
    "depth_attenuation",
    "derive_seed",
    "image_seed",
    "list_perturbations",
    "list_suites",
    "parameter_markdown",
    "perturb_batch",
    "perturb_folder",
    "resolve_suite",
]
