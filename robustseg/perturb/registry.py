"""Test-time image perturbations: a registry with five calibrated severities each, deterministic per seed.

Every perturbation maps a grayscale ``uint8 (H, W)`` image to another one of the same shape and never
touches masks. Each has one parameter (its *knob*); the knob of each severity comes from the one calibration
table, :data:`robustseg.perturb.calibrated.CALIBRATED`, chosen so that the severities of every family damage the
image alike (SSIM targets, ``docs/perturbations.md``). Albumentations does the generic transforms (ranges with
equal ends, so only the noise realisation is random); the ultrasound artefacts (``ultrasound``, ``texture``)
follow the image's probe geometry, which :func:`apply` takes as an argument (estimated from the image when
not given, and never re-derived inside an artefact).

Randomness never comes from global state: each call seeds its own generator from ``(seed, name)``.
Severity is deliberately not part of the stream, so the severities of one perturbation share one noise
realisation (common random numbers) and differ only in amount: severity 3 is severity 2 made stronger,
which keeps the severity -> degradation curve monotone and the contact sheet easy to read.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import cv2
import numpy as np

from robustseg._lazy import albumentations as A
from robustseg._registry import Registry
from robustseg.data.geometry import ProbeGeometry, estimate_geometry
from robustseg.errors import InputError
from robustseg.perturb import texture, ultrasound
from robustseg.perturb.calibrated import CALIBRATED
from robustseg.perturb.seeding import CLEAN, SEVERITIES, Perturb, derive_seed, image_seed
from robustseg.perturb.ultrasound import Staged

Artefact = Callable[[np.ndarray, float, np.random.Generator, ProbeGeometry], np.ndarray]


# ---------------------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class Perturbation:
    """One registry entry.

    ``parameter`` names the knob and ``values`` holds it at severities 1..5 (from the calibration table);
    ``stochastic``: whether the seed matters. Exactly one of ``build`` (an albumentations transform for a knob
    value) and ``function`` (an artefact ``f(image, value, rng, geometry)``) is set. A *local* artefact is a
    :class:`~robustseg.perturb.ultrasound.Staged` one with a region (where it acts, independent of the knob); its
    damage is also measured inside that region.
    ``search`` is the knob's range for calibration and ``step`` how it is rounded (``float``, ``int``, ``odd``).
    ``physics`` explains the artefact in two sentences, with a reference.
    """

    name: str
    description: str
    parameter: str
    values: tuple[float, ...]
    stochastic: bool
    build: Callable[[float], A.BasicTransform] | None = None
    function: Artefact | None = None
    search: tuple[float, float] = (0.0, 1.0)
    step: Literal["float", "int", "odd"] = "float"
    family: str = "generic"
    physics: str = ""
    uses_geometry: bool = False
    """The function follows the probe geometry (the ultrasound artefacts)."""

    @property
    def local(self) -> bool:
        """A local artefact: its damage is reported inside its region too."""
        return isinstance(self.function, Staged) and self.function.region is not None

    def value(self, severity: int) -> float:
        """The knob at ``severity`` (1..5)."""
        return self.values[severity - 1]

    def params(self, severity: int) -> str:
        """Human-readable parameter of ``severity`` (for tables and the contact sheet)."""
        return f"{self.parameter}={self.value(severity):g}"

    def rounded(self, value: float) -> float:
        """``value`` as the knob takes it (integers, odd integers)."""
        if self.step == "int":
            return float(int(round(value)))
        if self.step == "odd":
            return float(2 * int(round((value - 1) / 2)) + 1)
        return float(value)


def line_kernel(length: float, angle_deg: float) -> np.ndarray:
    """A normalised motion-blur kernel: a line of ``length`` px (fractional: its ends are anti-aliased) through the
    centre at ``angle_deg``.

    >>> k = line_kernel(5, 0)
    >>> k.shape, round(float(k.sum()), 6), int((k[4] > 0).sum()), float(k[:4].sum() + k[5:].sum())
    ((9, 9), 1.0, 7, 0.0)
    """
    length = max(float(length), 1e-3)
    half = int(np.ceil(length / 2.0)) + 1
    size = 2 * half + 1
    t = np.linspace(-length / 2.0, length / 2.0, 16 * int(np.ceil(length)) + 1)
    c, s = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    x, y = half + t * c, half + t * s
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    k = np.zeros((size, size), np.float64)
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(k, (np.clip(y0 + dy, 0, size - 1), np.clip(x0 + dx, 0, size - 1)), w)
    return (k / k.sum()).astype(np.float32)


def motion_blur(image: np.ndarray, length: float, rng: np.random.Generator) -> np.ndarray:
    """Linear motion blur of ``length`` px in a direction drawn from ``rng`` (the same at every length)."""
    kernel = line_kernel(length, float(rng.uniform(0.0, 180.0)))
    out = cv2.filter2D(image.astype(np.float32), -1, kernel, borderType=cv2.BORDER_REFLECT)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _downscale(scale: float) -> A.BasicTransform:
    return A.Downscale(
        scale_range=(scale, scale),
        interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR},
        p=1.0,
    )


def _calibrated(name: str, description: str, parameter: str, stochastic: bool, **kw: object) -> Perturbation:
    """A built-in entry with its knob values from the calibration table."""
    return Perturbation(name, description, parameter, tuple(CALIBRATED[name]), stochastic, **kw)  # type: ignore[arg-type]


_ENTRIES: tuple[Perturbation, ...] = (
    _calibrated("gaussian_noise", "additive Gaussian noise (albumentations GaussNoise)", "std/255", True,
           build=lambda s: A.GaussNoise(std_range=(s, s), mean_range=(0.0, 0.0), p=1.0), search=(0.001, 0.6),
           family="noise",
           physics="Electronic (thermal) noise of the receiver adds to the echo before display; ImageNet-C's "
                   "'Gaussian noise' (Hendrycks & Dietterich 2019). Not an ultrasound-specific model: it is kept "
                   "for comparison with natural-image benchmarks."),
    _calibrated("multiplicative_noise",
           "i.i.d. multiplicative noise, pixel x U(1-a, 1+a) (MultiplicativeNoise, elementwise)", "a", True,
           build=lambda a: A.MultiplicativeNoise(multiplier=(1.0 - a, 1.0 + a), elementwise=True, p=1.0),
           search=(0.005, 1.0), family="noise",
           physics="Independent noise per pixel that scales with the signal, the 'speckle noise' of ImageNet-C "
                   "and MedMNIST-C (Di Salvo et al. 2024). Real speckle is correlated over the resolution cell "
                   "(see `speckle`); this entry keeps the i.i.d. version for comparability."),
    _calibrated("salt_pepper", "salt-and-pepper impulse noise (SaltAndPepper), fraction of pixels hit", "amount", True,
           build=lambda a: A.SaltAndPepper(amount=(a, a), salt_vs_pepper=(0.5, 0.5), p=1.0), search=(1e-4, 0.4),
           family="noise",
           physics="Isolated black and white pixels, as from bit errors in transmission or dead detector "
                   "elements. ImageNet-C's impulse noise (Hendrycks & Dietterich 2019); not an ultrasound artefact."),
    _calibrated("contrast", "contrast reduction towards the image mean, (x - mean) * c + mean (ColorJitter)", "c",
           False, build=lambda c: A.ColorJitter(brightness=(1.0, 1.0), contrast=(c, c), saturation=(1.0, 1.0),
                                                hue=(0.0, 0.0), p=1.0),
           search=(0.02, 1.0), family="intensity",
           physics="A narrower grey-level range, as from a different dynamic-range (compression) setting or "
                   "display. Brightness differences between tissues shrink (ImageNet-C's contrast, Hendrycks & "
                   "Dietterich 2019)."),
    _calibrated("gamma_dark", "gamma > 1 darkens mid-tones (RandomGamma)", "gamma", False,
           build=lambda g: A.RandomGamma(gamma_limit=(g * 100, g * 100), p=1.0), search=(1.0, 8.0),
           family="intensity",
           physics="A different grey-level map (post-processing curve) that darkens mid-tones, as scanners' "
                   "grey maps differ between vendors and presets. Structure is kept, tones are shifted (Szabo, "
                   "Diagnostic Ultrasound Imaging, 2nd ed. 2014, ch. 10)."),
    _calibrated("gamma_bright", "gamma < 1 brightens mid-tones (RandomGamma)", "gamma", False,
           build=lambda g: A.RandomGamma(gamma_limit=(g * 100, g * 100), p=1.0), search=(0.05, 1.0),
           family="intensity",
           physics="A grey map that brightens mid-tones (another vendor or preset curve). Dark structures such "
                   "as the CSP and ventricles lose contrast against tissue (Szabo 2014, ch. 10)."),
    _calibrated("brightness", "brightness (gain offset) shift by b*255 (RandomBrightnessContrast)", "b", False,
           build=lambda b: A.RandomBrightnessContrast(brightness_limit=(b, b), contrast_limit=(0.0, 0.0), p=1.0),
           search=(0.0, 0.95), family="intensity",
           physics="Overall gain set too high: every grey level rises, on a log display by a constant. "
                   "Bright structures saturate (Szabo 2014, ch. 10)."),
    _calibrated("gaussian_blur", "Gaussian blur, sigma in pixels (GaussianBlur)", "sigma", False,
           build=lambda s: A.GaussianBlur(blur_limit=0, sigma_limit=(s, s), p=1.0), search=(0.05, 30.0),
           family="blur",
           physics="Isotropic loss of resolution, ImageNet-C's Gaussian blur (Hendrycks & Dietterich 2019). "
                   "In ultrasound resolution is anisotropic, see `beam_width`."),
    _calibrated("motion_blur", "linear motion blur: a line kernel of the given length (px, fractional), random direction",
           "length", True, function=motion_blur, search=(0.5, 120.0), family="blur",
           physics="Probe or patient movement during the frame smears structures along a direction; with "
                   "frame averaging (persistence) the smear spans several frames. ImageNet-C's motion blur "
                   "(Hendrycks & Dietterich 2019), with a fractional kernel length."),
    _calibrated("jpeg", "JPEG compression artefacts (ImageCompression)", "quality", False,
           build=lambda q: A.ImageCompression(compression_type="jpeg", quality_range=(int(q), int(q)), p=1.0),
           search=(1.0, 100.0), step="int", family="compression",
           physics="Lossy export or archiving (PACS, screenshots) quantises 8 x 8 blocks of DCT coefficients: "
                   "blocking and ringing. ImageNet-C's JPEG (Hendrycks & Dietterich 2019)."),
    _calibrated("resolution", "resolution loss: area down-sampling by a scale then linear up-sampling (Downscale)",
           "scale", False, build=_downscale, search=(0.02, 1.0), family="blur",
           physics="An image stored or transmitted at lower resolution and scaled back up (video capture, "
                   "screenshots). ImageNet-C's pixelate with linear up-sampling (Hendrycks & Dietterich 2019)."),
    _calibrated("speckle", "correlated Rician speckle along the beams (diffuse share of the echo power; 1 = Rayleigh)",
           "diffuse", True, function=texture.speckle, search=(0.0005, 1.0), family="ultrasound",
           uses_geometry=True,
           physics="Echoes of many unresolved scatterers inside one resolution cell interfere, giving a "
                   "multiplicative granular pattern whose envelope is Rayleigh-distributed when fully developed "
                   "and Rician with a coherent component; its grain is the resolution cell, longer across the beam "
                   "than along it (Wagner et al. 1983, IEEE Trans Sonics Ultrason; Burckhardt 1978)."),
    _calibrated("acoustic_shadow", "dark bands along beam lines behind strong reflectors; attenuation in the band",
           "attenuation", True, function=ultrasound.acoustic_shadow,
           search=(0.0, 1.0), family="ultrasound",
           uses_geometry=True,
           physics="A strongly reflecting or absorbing structure (bone, calcification, the skull) lets little "
                   "energy through, so everything behind it along the same beam is dark. The shadow follows the "
                   "beam line from the apex, not the image columns (Feldman et al. 2009, RadioGraphics)."),
    _calibrated("contact_loss", "contact loss: one edge of the probe decoupled, its sector of the fan loses echo",
           "loss", True, function=ultrasound.contact_loss, search=(0.0, 1.0),
           family="ultrasound",
           uses_geometry=True,
           physics="Where part of the probe face loses contact (too little gel, a lifted edge), the sound is "
                   "reflected at the air gap and those beams return no tissue echo: a dark sector over the full "
                   "depth (Bushberg et al., The Essential Physics of Medical Imaging, ch. 14)."),
    _calibrated("reverberation", "copies of the brightest near-field interface at 2, 3, ... times its depth", "ratio",
           False, function=ultrasound.reverberation, search=(0.0, 0.999), family="ultrasound",
           uses_geometry=True,
           physics="Sound bounces between a strong near-field interface and the probe face, so the interface "
                   "reappears at multiples of its depth, fainter each time. Typical below the abdominal wall "
                   "(Feldman et al. 2009; Hindi et al. 2013, Ultrasound)."),
    _calibrated("near_field_haze", "near-field haze / clutter: a diffuse veil fading with depth (grey levels at the face)",
           "level", True, function=ultrasound.near_field_haze, search=(0.0, 255.0), family="ultrasound",
           uses_geometry=True,
           physics="Reverberation in the body wall and side-lobe energy add diffuse clutter that is strongest just "
                   "below the probe and fills anechoic structures with haze (Lediju et al. 2008, IEEE UFFC)."),
    _calibrated("depth_attenuation", "uncompensated attenuation along true depth; share of the intensity left at the "
           "deepest point", "remaining", False, function=ultrasound.depth_attenuation, search=(0.005, 1.0),
           family="ultrasound",
           uses_geometry=True,
           physics="Tissue attenuates ultrasound by about 0.5-1 dB/cm/MHz each way, which time-gain compensation "
                   "normally undoes; left uncompensated, the image darkens with depth along the beam "
                   "(Szabo 2014, ch. 4)."),
    _calibrated("depth_attenuation_db", "uncompensated attenuation in the log (dB) display: -dB at the deepest point",
           "loss_db", False, function=ultrasound.depth_attenuation_db, search=(0.0, 90.0), family="ultrasound",
           uses_geometry=True,
           physics="The same attenuation as seen on a log-compressed display, where a gain loss in dB subtracts "
                   "grey levels (60 dB over 255 levels assumed). Dark and bright tissue lose the same amount."),
    _calibrated("tgc_error", "time-gain-compensation error in one or two depth bands (dB at the band centre)",
           "error_db", True, function=ultrasound.tgc_error, search=(0.0, 60.0), family="ultrasound",
           uses_geometry=True,
           physics="Time-gain-compensation sliders set the gain per depth band; one or two set wrongly make "
                   "horizontal (arc-shaped) bands too bright or too dark (Szabo, ch. 10)."),
    _calibrated("speckle_reduction", "vendor-style speckle reduction: edge-preserving guided filter, window sigma in px",
           "sigma", False, function=texture.speckle_reduction, search=(0.1, 30.0), family="ultrasound",
           uses_geometry=True,
           physics="Vendors' speckle-reduction modes smooth speckle while keeping strong edges (anisotropic "
                   "diffusion such as SRAD, Yu & Acton 2002, IEEE TIP; a guided filter, He et al. 2010, here): a "
                   "change of image style between scanners and presets rather than damage."),
    _calibrated("beam_width", "lateral blur across the beams growing with depth; sigma (px) at the deepest point",
           "sigma_far", False, function=texture.beam_width, search=(0.0, 80.0), family="ultrasound",
           uses_geometry=True,
           physics="Beyond its focus the beam widens, so lateral resolution worsens with depth while axial "
                   "resolution (pulse length) does not; structures smear across the beams, not along them "
                   "(Szabo, ch. 7)."),
)

def _plugin_perturbation(name: str, obj: object) -> Perturbation:
    """A plugin as a registry entry: a :class:`Perturbation` (renamed to ``name``), or a function
    ``f(image: uint8 (H, W), severity: int 1..5, rng: numpy Generator) -> uint8 (H, W)``."""
    if isinstance(obj, Perturbation):
        return replace(obj, name=name)
    if not callable(obj):
        raise InputError(f"perturbation {name!r}: not callable; expected f(image, severity, rng) or a Perturbation")
    doc = (getattr(obj, "__doc__", None) or name).strip().splitlines()[0]
    return Perturbation(name, doc, "severity", SEVERITIES, stochastic=True, function=obj,  # type: ignore[arg-type]
                        search=(1.0, 5.0), step="int")


PERTURBATIONS: Registry[Perturbation] = Registry("perturbation", group="robustseg.perturbations",
                                                 adapt=_plugin_perturbation)
"""The perturbation registry (a read-only mapping name -> :class:`Perturbation`, in registration order).
Plugins: a suite entry ``"package.module:function"`` or an entry point of group ``robustseg.perturbations``."""
for _p in _ENTRIES:
    PERTURBATIONS.add(_p.name, _p)

ULTRASOUND = ("speckle", "acoustic_shadow", "contact_loss", "reverberation", "near_field_haze", "depth_attenuation",
              "tgc_error", "speckle_reduction", "beam_width")
SUITES: dict[str, tuple[str, ...]] = {
    "ultrasound": ULTRASOUND,
    "noise-contrast": (
        "gaussian_noise", "multiplicative_noise", "salt_pepper", "contrast", "gamma_dark", "gamma_bright",
        "brightness",
    ),
    "imagenet-c": ("gaussian_noise", "multiplicative_noise", "salt_pepper", "contrast", "brightness",
                   "gaussian_blur", "motion_blur", "jpeg", "resolution"),
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


@functools.lru_cache(maxsize=256)
def _compose(name: str, value: float) -> A.Compose:
    """The albumentations Compose of one registry entry at one knob value, built once and re-seeded per call."""
    entry = PERTURBATIONS[name]
    assert entry.build is not None
    return A.Compose([entry.build(value)], seed=0)


def _geometry(image: np.ndarray, geometry: ProbeGeometry | None) -> ProbeGeometry:
    if geometry is None:
        return estimate_geometry(image)
    if geometry.shape != image.shape:
        raise InputError(f"probe geometry for a {geometry.width} x {geometry.height} image given with a "
                         f"{image.shape[1]} x {image.shape[0]} image; expected the image's own geometry")
    return geometry


_STATES: collections.OrderedDict[tuple, object] = collections.OrderedDict()
_STATES_MAX = 8


def _state(entry: Perturbation, image: np.ndarray, stream: int, geo: ProbeGeometry) -> object:
    """The prepared (severity-independent) state of a staged artefact for this image, seed and geometry; the last
    few are kept, so the severities of one image prepare it once. Keyed by the image's content, never its identity."""
    assert isinstance(entry.function, Staged)
    key = (entry.name, stream, geo, image.shape, hashlib.blake2b(image.tobytes(), digest_size=16).digest())
    with _STATES_LOCK:
        if key in _STATES:
            _STATES.move_to_end(key)
            return _STATES[key]
    state = entry.function.prepare(image, np.random.default_rng(stream), geo)
    with _STATES_LOCK:
        _STATES[key] = state
        while len(_STATES) > _STATES_MAX:
            _STATES.popitem(last=False)
    return state


_STATES_LOCK = threading.Lock()


def apply_value(image: np.ndarray, name: str, value: float, seed: int = 0,
                geometry: ProbeGeometry | None = None) -> np.ndarray:
    """Perturb ``image`` with ``name`` at knob ``value`` (any value, e.g. while calibrating)."""
    image = _check_image(image)
    entry = _entry(name)
    stream = derive_seed(seed, name)
    value = entry.rounded(value)
    if isinstance(entry.function, Staged):
        geo = _geometry(image, geometry)
        out = entry.function.render(image, value, _state(entry, image, stream, geo), geo)
    elif entry.uses_geometry:
        assert entry.function is not None
        out = entry.function(image, value, np.random.default_rng(stream), _geometry(image, geometry))
    elif entry.function is not None:  # f(image, value, rng): generic built-ins and plugins (severity as an int)
        knob = int(value) if entry.step != "float" else value
        out = entry.function(image, knob, np.random.default_rng(stream))  # type: ignore[call-arg]
    else:
        compose = _compose(name, value)
        compose.set_random_seed(stream)
        out = compose(image=image)["image"]
    out = np.asarray(out)
    if out.ndim == 3:
        out = out[..., 0]
    assert out.shape == image.shape and out.dtype == np.uint8
    return np.ascontiguousarray(out)


def apply(image: np.ndarray, name: str, severity: int, seed: int = 0,
          geometry: ProbeGeometry | None = None) -> np.ndarray:
    """Perturb a grayscale uint8 ``(H, W)`` image; identical output for identical arguments.

    ``geometry`` is the image's probe geometry (estimated from the image when not given); only the ultrasound
    artefacts use it. ``("none", 0)`` returns a copy of the image (the clean condition of result tables).
    """
    image = _check_image(image)
    if (name, severity) == CLEAN:
        return image.copy()
    entry = _entry(name)
    severity = _check_severity(severity, name)
    return apply_value(image, name, entry.value(severity), seed, geometry)


def region(image: np.ndarray, name: str, seed: int = 0, geometry: ProbeGeometry | None = None) -> np.ndarray | None:
    """Where a local artefact acts on ``image`` for ``seed`` (bool mask; the same at every severity), or None for a
    perturbation that is not local."""
    image = _check_image(image)
    entry = _entry(name)
    if not entry.local:
        return None
    assert isinstance(entry.function, Staged) and entry.function.region is not None
    geo = _geometry(image, geometry)
    return np.asarray(entry.function.region(_state(entry, image, derive_seed(seed, name), geo)), dtype=bool)


def create(name: str, severity: int) -> Perturb:
    """A callable ``perturb(image, seed) -> image`` for one perturbation at one severity."""
    if (name, severity) != CLEAN:
        _check_severity(severity, _entry(name).name)

    def perturb(image: np.ndarray, seed: int = 0) -> np.ndarray:
        return apply(image, name, severity, seed)

    perturb.__name__ = f"{name}_s{severity}"
    return perturb


def perturb_batch(
    images: np.ndarray, name: str, severity: int, seed: int = 0, image_ids: Sequence[object] | None = None,
    geometries: Sequence[ProbeGeometry] | None = None,
) -> np.ndarray:
    """Perturb ``(N, H, W)`` images, each seeded from ``(seed, image id)``; ``geometries``: one per image
    (estimated per image when not given).

    With ``image_ids`` the result of an image does not depend on its position in the batch; without
    them the position ``0..N-1`` stands in for the id.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise InputError(f"images of shape {images.shape} and dtype {images.dtype}: expected uint8 (N, H, W)")
    ids = list(range(len(images))) if image_ids is None else list(image_ids)
    if len(ids) != len(images):
        raise InputError(f"image_ids: {len(ids)} ids for {len(images)} images; expected one per image")
    geos = [None] * len(images) if geometries is None else list(geometries)
    if len(geos) != len(images):
        raise InputError(f"geometries: {len(geos)} for {len(images)} images; expected one per image")
    out = np.empty_like(images)
    for i, (img, iid) in enumerate(zip(images, ids, strict=True)):
        out[i] = apply(img, name, severity, image_seed(seed, iid), geos[i])
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


