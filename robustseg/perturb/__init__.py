"""Test-time image perturbations with five calibrated severities, deterministic per seed.

- ``seeding``: seeds from ``(seed, name, image id)``, never global state;
- ``ultrasound`` / ``texture``: the ultrasound artefacts, following the probe geometry
  (:class:`robustseg.data.geometry.ProbeGeometry`);
- ``registry``: the :data:`PERTURBATIONS` registry, suites, :func:`apply` / :func:`perturb_batch`;
- ``calibrated``: the one table of knob values per severity, and its SSIM targets;
- ``damage``: in-fan SSIM / PSNR (how much an image was damaged);
- ``calibrate``: recomputing the calibration (``robustseg perturb --calibrate``);
- ``folder``: the contact sheet and ``robustseg perturb`` folder I/O.

numpy / OpenCV / albumentations only (no torch).
"""

from robustseg.perturb.calibrate import calibration_table, damage_table, fit_values, summarize_damage
from robustseg.perturb.folder import (
    calibrate_folder,
    calibration_markdown,
    contact_sheet,
    parameter_markdown,
    perturb_folder,
    physics_markdown,
)
from robustseg.perturb.registry import (
    PERTURBATIONS,
    SUITES,
    Perturbation,
    apply,
    apply_value,
    create,
    list_perturbations,
    list_suites,
    perturb_batch,
    region,
    resolve_suite,
)
from robustseg.perturb.seeding import CLEAN, SEVERITIES, derive_seed, image_seed

__all__ = [
    "CLEAN",
    "PERTURBATIONS",
    "SEVERITIES",
    "SUITES",
    "Perturbation",
    "apply",
    "apply_value",
    "calibrate_folder",
    "calibration_markdown",
    "calibration_table",
    "contact_sheet",
    "create",
    "damage_table",
    "derive_seed",
    "fit_values",
    "image_seed",
    "list_perturbations",
    "list_suites",
    "parameter_markdown",
    "perturb_batch",
    "perturb_folder",
    "physics_markdown",
    "region",
    "resolve_suite",
    "summarize_damage",
]
