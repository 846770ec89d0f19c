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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from robustseg._lazy import albumentations as A
from robustseg._registry import Registry
from robustseg.errors import InputError
from robustseg.perturb.seeding import CLEAN, SEVERITIES, Perturb, derive_seed, image_seed
from robustseg.perturb.ultrasound import ShadowParams, acoustic_shadow, depth_attenuation


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

def _plugin_perturbation(name: str, obj: object) -> Perturbation:
    """A plugin as a registry entry: a :class:`Perturbation` (renamed to ``name``), or a function
    ``f(image: uint8 (H, W), severity: int 1..5, rng: numpy Generator) -> uint8 (H, W)``."""
    if isinstance(obj, Perturbation):
        return replace(obj, name=name)
    if not callable(obj):
        raise InputError(f"perturbation {name!r}: not callable; expected f(image, severity, rng) or a Perturbation")
    doc = (getattr(obj, "__doc__", None) or name).strip().splitlines()[0]
    return Perturbation(name, doc, "severity", SEVERITIES, stochastic=True, function=obj)  # type: ignore[arg-type]


PERTURBATIONS: Registry[Perturbation] = Registry("perturbation", group="robustseg.perturbations",
                                                 adapt=_plugin_perturbation)
"""The perturbation registry (a read-only mapping name -> :class:`Perturbation`, in registration order).
Plugins: a suite entry ``"package.module:function"`` or an entry point of group ``robustseg.perturbations``."""
for _p in _ENTRIES:
    PERTURBATIONS.add(_p.name, _p)

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
    if not isinstance(name, str):
        raise InputError(f"perturbation {name!r}: expected a name, one of {', '.join(list_perturbations())}")
    return PERTURBATIONS.lookup(name)


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
        elif PERTURBATIONS.has(spec):
            pairs = [(_entry(spec).name, s) for s in SEVERITIES]
        else:
            raise InputError(
                f"suite {spec!r}: unknown; expected one of {list_suites()}, a perturbation {list_perturbations()} "
                "or a plugin 'package.module:function'"
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


