"""Test-time image perturbations with five fixed severities, deterministic per seed.

- ``seeding``: seeds from ``(seed, name, image id)``, never global state;
- ``ultrasound``: acoustic shadowing and depth attenuation, written here;
- ``registry``: the :data:`PERTURBATIONS` registry, suites, :func:`apply` / :func:`perturb_batch`;
- ``folder``: calibration tables, the contact sheet and ``robustseg perturb`` folder I/O.

numpy / OpenCV / albumentations only (no torch).
"""

from robustseg.perturb.folder import (
    calibration_markdown,
    calibration_table,
    contact_sheet,
    parameter_markdown,
    perturb_folder,
)
from robustseg.perturb.registry import (
    PERTURBATIONS,
    SUITES,
    Perturbation,
    apply,
    create,
    list_perturbations,
    list_suites,
    perturb_batch,
    resolve_suite,
)
from robustseg.perturb.seeding import CLEAN, SEVERITIES, derive_seed, image_seed
from robustseg.perturb.ultrasound import ShadowParams, acoustic_shadow, depth_attenuation

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
