"""The perturbed test sets a run predicts, and the damage each perturbation did to each image.

``perturb.stage = "native"`` (default): each test image is read at its native resolution, its probe geometry is
resolved once (the ``meta.csv`` column, the study's setting, or estimated), every condition is applied there, as
a scanner makes its artefacts, and the result goes through exactly the clean image's preprocessing
(:func:`robustseg.data.transforms.preprocess`) to the network's input size. ``"model"``: the letterboxed network
input is perturbed (its geometry is the native one mapped through the letterbox). The damage table has, per image
and condition, the in-fan SSIM / PSNR against the clean image at the stage's resolution (and inside the affected
region for local artefacts): :mod:`robustseg.perturb.damage`.

Every run of a study replays the same test set under the same conditions, so the result is cached per process:
a worker computes it once for all the runs it executes.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from robustseg.pipeline.plan import DataSpec

DAMAGE_FILE = "damage.csv.gz"
"""A run's per-image, per-condition damage table."""


@dataclass(frozen=True)
class PerturbedSet:
    """The test set under every condition, at the network's input size, with the damage done."""

    pairs: list[tuple[str, int]]
    images: np.ndarray
    """uint8 ``(n_conditions, N, S, S)``, in ``pairs`` order."""
    damage: pd.DataFrame
    """One row per image and condition: ``image_id, perturbation, severity, stage, value, ssim_fan, psnr_fan,
    ssim_region, psnr_region, region_fraction, geometry``."""
    geometry: pd.DataFrame
    """One row per test image: its probe geometry (``robustseg.data.geometry.geometry_table``)."""
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    """CPU seconds per condition (``name/severity``: perturbing, preprocessing and measuring all images), and for
    reading the images and resolving their geometry (``geometry``)."""


def perturb_settings(perturb: dict[str, Any]) -> dict[str, Any]:
    """The ``perturb`` part of a run's payload with the defaults of older payloads filled in."""
    geo = perturb.get("geometry") or {}
    return {"pairs": [tuple(p) for p in perturb.get("pairs", [])], "seed": int(perturb.get("seed", 0)),
            "stage": perturb.get("stage", "model"),
            "geometry": {"mode": geo.get("mode", "auto"), "apex": geo.get("apex"),
                         "opening_deg": geo.get("opening_deg"), "column": geo.get("column", "probe_geometry")}}


def perturbed_test_set(spec: DataSpec, test_idx: np.ndarray, perturb: dict[str, Any]) -> PerturbedSet:
    """The :class:`PerturbedSet` of the images ``test_idx`` of the data set ``spec`` under a run's ``perturb`` settings
    (its payload's ``perturb`` table; cached per process)."""
    key = json.dumps(perturb_settings(perturb), sort_keys=True)
    return _perturbed(spec, tuple(int(i) for i in test_idx), key)


@functools.lru_cache(maxsize=2)
def _perturbed(spec: DataSpec, test_idx: tuple[int, ...], key: str) -> PerturbedSet:
    from robustseg.data.check import geometry_image
    from robustseg.data.geometry import GeometrySetting, geometry_table, resolve_geometry
    from robustseg.data.io import read_image
    from robustseg.data.transforms import preprocess
    from robustseg.perturb import PERTURBATIONS, apply_value, image_seed, region
    from robustseg.perturb.damage import Reference, measure
    from robustseg.pipeline.inputs import load_data

    settings = json.loads(key)
    pairs = [(str(n), int(s)) for n, s in settings["pairs"]]
    seed, stage = settings["seed"], settings["stage"]
    g = settings["geometry"]
    setting = GeometrySetting(g["mode"], tuple(g["apex"]) if g["apex"] else None, g["opening_deg"], g["column"])
    data = load_data(spec)
    rows = data.index.iloc[list(test_idx)]
    ids = rows["image_id"].astype(str).tolist()
    given = rows[setting.column].tolist() if setting.column in rows.columns else [None] * len(rows)
    size = spec.size
    images = np.empty((len(pairs), len(ids), size, size), dtype=np.uint8)
    damage: list[dict[str, Any]] = []
    cpu = dict.fromkeys([f"{n}/{s}" for n, s in pairs], 0.0)
    cpu["geometry"] = 0.0
    geometries = []
    dicom = "frame" in rows.columns  # DICOM: the frame read; the geometry from the ultrasound region only
    for i, (path, per_image, image_id) in enumerate(zip(rows["image_path"], given, ids, strict=True)):
        t0 = time.process_time()
        native = read_image(path, int(rows["frame"].iloc[i])) if dicom else read_image(path)
        geo = resolve_geometry(geometry_image(rows, i, read_image) if dicom else native, setting, per_image)
        geometries.append(geo)
        if stage == "native":
            clean, where = native, geo
        else:
            clean, where = data.images[test_idx[i]], geo.letterboxed(size)
        ref = Reference.of(clean)
        fan = where.maps().fan
        iseed = image_seed(seed, image_id)
        regions = {n: region(clean, n, iseed, where) for n in dict.fromkeys(n for n, _ in pairs)
                   if PERTURBATIONS[n].local}
        cpu["geometry"] += time.process_time() - t0
        for k, (name, sev) in enumerate(pairs):
            t0 = time.process_time()
            value = PERTURBATIONS[name].value(sev)
            out = apply_value(clean, name, value, iseed, where)
            images[k, i] = preprocess(out, None, size)[0] if stage == "native" else out
            hurt = measure(ref, out, fan, regions.get(name))
            damage.append({"image_id": image_id, "perturbation": name, "severity": sev, "stage": stage,
                           "value": value, **hurt.as_dict(), "geometry": geo.kind})
            cpu[f"{name}/{sev}"] += time.process_time() - t0
    table = pd.DataFrame(damage, columns=["image_id", "perturbation", "severity", "stage", "value", "ssim_fan",
                                          "psnr_fan", "ssim_region", "psnr_region", "region_fraction", "geometry"])
    images.setflags(write=False)
    return PerturbedSet(pairs, images, table, geometry_table(geometries, ids), cpu)
