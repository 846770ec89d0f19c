"""The one table of perturbation parameters: the knob of every perturbation at severities 1..5.

How the values were obtained: ``python benchmarks/calibrate_perturbations.py --n 8``. For each perturbation, the
knob values whose mean SSIM against the clean image hits :data:`TARGETS` on the *fit set*: phantom styles
``default``, ``low-contrast`` and ``large-ellipse`` (phantom seed 9001, 8 images each, native resolution,
perturbation seed 9001), SSIM in the fan for global perturbations and inside the affected region for local ones
(:func:`robustseg.perturb.calibrate.fit_values`: a 13-point scan of the knob's range, then bisection; values
rounded to 4 significant digits). The same script checks them on other styles and seeds (``small-thin``,
``csp-like-lv``, ``default``; seed 9002); docs/perturbations.md has both tables. Re-run it after changing an
artefact, and paste its output here; ``robustseg perturb --calibrate DATA_DIR [--fit]`` does the same on a user's
images.
"""

from __future__ import annotations

TARGETS: tuple[float, ...] = (0.95, 0.90, 0.80, 0.70, 0.60)
"""Mean SSIM per severity: even steps from barely visible (0.95) to clearly degraded but readable (0.60)."""

LIMITED: dict[str, tuple[int, ...]] = {
    "speckle": (4, 5),  # fully developed (Rayleigh) speckle reaches 0.656: severity 4 at 0.727, 5 at the limit
    "speckle_reduction": (3, 4, 5),  # edge-preserving smoothing keeps structure: 0.853, 0.806, 0.758 at most
    "beam_width": (5,),  # 0.640 at a lateral sigma of 80 px at the deepest point (the end of its range)
    "resolution": (1,),  # the smallest down-sampling already costs 0.080 (0.920): resampling blurs
    "jpeg": (5,),  # integer quality: 6 gives 0.627, 5 overshoots
}
"""Severities whose target a family cannot reach (within 0.02) on the fit set, with its reach; the spread across
families at one severity is also reported without them."""

CALIBRATED: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.01345, 0.01959, 0.03096, 0.04312, 0.05828),
    "multiplicative_noise": (0.2481, 0.3674, 0.5642, 0.7546, 0.961),
    "salt_pepper": (0.002921, 0.005979, 0.01282, 0.02107, 0.03069),
    "contrast": (0.8566, 0.7348, 0.5492, 0.4146, 0.3041),
    "gamma_dark": (1.109, 1.164, 1.273, 1.365, 1.474),
    "gamma_bright": (0.8627, 0.8083, 0.7167, 0.6314, 0.5374),
    "brightness": (0.01608, 0.03092, 0.06309, 0.1089, 0.1732),
    "gaussian_blur": (0.5609, 0.7048, 1.098, 1.562, 2.202),
    "motion_blur": (1.709, 2.662, 4.906, 7.347, 11.32),
    "jpeg": (85, 62, 19, 9, 6),
    "resolution": (0.9957, 0.8913, 0.5367, 0.3761, 0.2514),
    "speckle": (0.05086, 0.109, 0.2569, 0.4296, 1),
    "acoustic_shadow": (0.2513, 0.3451, 0.474, 0.5716, 0.6562),
    "contact_loss": (0.237, 0.3229, 0.4479, 0.5365, 0.6185),
    "reverberation": (0.2849, 0.3876, 0.532, 0.6426, 0.7388),
    "near_field_haze": (3.32, 6.641, 16.93, 30.21, 46.48),
    "depth_attenuation": (0.6598, 0.5426, 0.3951, 0.289, 0.2081),
    "depth_attenuation_db": (1.055, 1.758, 2.93, 4.57, 7.031),
    "tgc_error": (1.172, 1.953, 3.594, 5.781, 8.672),
    "speckle_reduction": (0.618, 0.9813, 1.394, 2.21, 7.208),
    "beam_width": (2.812, 4.792, 11.25, 35.73, 80),
}
