"""How much a perturbation damages an image: SSIM and PSNR inside the field of view (or a region of it).

Outside the fan an ultrasound image is black, and stays black under a multiplicative artefact, so a whole-image
score flatters those artefacts; the scores here count only the pixels of the fan (or of the region a local
artefact touches). SSIM is Wang et al. (2004) with skimage's defaults (7 x 7 uniform window, sample covariance,
``K1 = 0.01``, ``K2 = 0.03``, data range 255), averaged over the mask eroded by the window's half-width so that
no window reaches outside it (where the mask is too small for that, over the mask itself).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd

from robustseg.errors import InputError

WIN = 7
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2
_COV = WIN * WIN / (WIN * WIN - 1.0)


@dataclass(frozen=True)
class Reference:
    """Window means and variances of a clean image, computed once and reused for every perturbed copy."""

    image: np.ndarray
    mean: np.ndarray
    var: np.ndarray

    @classmethod
    def of(cls, image: np.ndarray) -> Reference:
        x = np.asarray(image, dtype=np.float32)
        mu = _box(x)
        return cls(x, mu, (_box(x * x) - mu * mu) * _COV)


def _box(x: np.ndarray) -> np.ndarray:
    return cv2.boxFilter(x, cv2.CV_32F, (WIN, WIN), normalize=True, borderType=cv2.BORDER_REFLECT)


def ssim_map(clean: np.ndarray | Reference, perturbed: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM (float32 ``(H, W)``) of ``perturbed`` against ``clean`` (skimage's definition)."""
    ref = clean if isinstance(clean, Reference) else Reference.of(clean)
    y = np.asarray(perturbed, dtype=np.float32)
    mu_y = _box(y)
    var_y = (_box(y * y) - mu_y * mu_y) * _COV
    cov = (_box(ref.image * y) - ref.mean * mu_y) * _COV
    num = (2 * ref.mean * mu_y + _C1) * (2 * cov + _C2)
    den = (ref.mean * ref.mean + mu_y * mu_y + _C1) * (ref.var + var_y + _C2)
    return num / den


def inner(mask: np.ndarray) -> np.ndarray:
    """``mask`` eroded by the SSIM window's half-width (the mask itself where that leaves fewer than 16 pixels)."""
    m = np.asarray(mask, dtype=bool)
    eroded = cv2.erode(m.astype(np.uint8), np.ones((WIN, WIN), np.uint8), borderType=cv2.BORDER_CONSTANT,
                       borderValue=0).astype(bool)
    return eroded if eroded.sum() >= 16 else m


def ssim(clean: np.ndarray | Reference, perturbed: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM over ``mask`` (eroded by :func:`inner`); the whole image minus a 3-px border without a mask, which
    is skimage's ``structural_similarity(clean, perturbed, data_range=255)``.

    >>> rng = np.random.default_rng(0)
    >>> a = rng.integers(0, 256, (40, 50)).astype(np.uint8)
    >>> ssim(a, a)
    1.0
    >>> from skimage.metrics import structural_similarity
    >>> b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    >>> bool(abs(ssim(a, b) - structural_similarity(a, b, data_range=255)) < 1e-5)
    True
    """
    smap = ssim_map(clean, perturbed)
    if mask is None:
        p = (WIN - 1) // 2
        return float(smap[p:-p, p:-p].mean(dtype=np.float64))
    where = inner(mask)
    return float(smap[where].mean(dtype=np.float64)) if where.any() else float("nan")


def psnr(clean: np.ndarray, perturbed: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB (peak 255) over ``mask`` (every pixel without one); ``inf`` for identical pixels.

    >>> psnr(np.zeros((4, 4), np.uint8), np.full((4, 4), 255, np.uint8))
    0.0
    """
    a = np.asarray(clean, dtype=np.float64)
    b = np.asarray(perturbed, dtype=np.float64)
    d = (a - b) if mask is None else (a - b)[np.asarray(mask, dtype=bool)]
    mse = float(np.mean(d * d)) if d.size else float("nan")
    if mse != mse:
        return float("nan")
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


@dataclass(frozen=True)
class Damage:
    """In-fan SSIM and PSNR of one perturbed image; for a local artefact also SSIM and PSNR inside its region and the
    region's share of the fan (NaN otherwise)."""

    ssim_fan: float
    psnr_fan: float
    ssim_region: float = float("nan")
    psnr_region: float = float("nan")
    region_fraction: float = float("nan")

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def measure(clean: np.ndarray | Reference, perturbed: np.ndarray, fan: np.ndarray,
            region: np.ndarray | None = None) -> Damage:
    """:class:`Damage` of ``perturbed`` against ``clean`` inside ``fan`` (and ``region``, a part of it)."""
    ref = clean if isinstance(clean, Reference) else Reference.of(clean)
    smap = ssim_map(ref, perturbed)
    clean_px = ref.image
    f_in = inner(fan)
    out = {"ssim_fan": float(smap[f_in].mean(dtype=np.float64)) if f_in.any() else float("nan"),
           "psnr_fan": psnr(clean_px, perturbed, fan)}
    if region is not None:
        reg = np.asarray(region, dtype=bool) & np.asarray(fan, dtype=bool)
        r_in = inner(reg)
        out |= {"ssim_region": float(smap[r_in].mean(dtype=np.float64)) if r_in.any() else float("nan"),
                "psnr_region": psnr(clean_px, perturbed, reg) if reg.any() else float("nan"),
                "region_fraction": float(reg.sum() / max(1, int(np.count_nonzero(fan))))}
    return Damage(**out)


def damage_summary(damage: pd.DataFrame) -> pd.DataFrame:
    """Mean in-fan SSIM and PSNR per perturbation and severity of a damage table (one row per image and condition,
    ``robustseg.pipeline.perturbed``; rows repeated by several runs count once).

    Columns: ``perturbation, severity, stage, n_images, ssim_fan, ssim_fan_sd, psnr_fan, ssim_region, psnr_region,
    region_fraction, local`` (``local``: the perturbation has a region, its in-region SSIM is defined). PSNR means
    leave out infinite values (unchanged images).

    Examples
    --------
    >>> d = pd.DataFrame({"image_id": ["a", "b", "a"], "perturbation": "noise", "severity": 1, "stage": "native",
    ...                   "ssim_fan": [0.9, 0.7, 0.9], "psnr_fan": [30.0, np.inf, 30.0], "ssim_region": np.nan,
    ...                   "psnr_region": np.nan, "region_fraction": np.nan})
    >>> damage_summary(d)[["n_images", "ssim_fan", "psnr_fan", "local"]].values.tolist()
    [[2, 0.8, 30.0, False]]
    """
    missing = [c for c in ("image_id", "perturbation", "severity", "ssim_fan", "psnr_fan") if c not in damage.columns]
    if missing:
        raise InputError(f"damage table: missing columns {missing}")
    d = damage.copy()
    for col in ("stage", "ssim_region", "psnr_region", "region_fraction"):
        if col not in d.columns:
            d[col] = np.nan if col != "stage" else ""
    d = d.drop_duplicates(["image_id", "perturbation", "severity", "stage"])
    for c in ("psnr_fan", "psnr_region"):
        v = pd.to_numeric(d[c], errors="coerce").astype(float)
        d[c] = v.where(np.isfinite(v))
    out = d.groupby(["perturbation", "severity", "stage"], sort=True, dropna=False).agg(
        n_images=("image_id", "nunique"), ssim_fan=("ssim_fan", "mean"), ssim_fan_sd=("ssim_fan", "std"),
        psnr_fan=("psnr_fan", "mean"), ssim_region=("ssim_region", "mean"), psnr_region=("psnr_region", "mean"),
        region_fraction=("region_fraction", "mean")).reset_index()
    out["local"] = out["ssim_region"].notna()
    return out
