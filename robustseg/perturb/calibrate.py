"""Calibration of perturbation severities by the damage they do: in-fan SSIM at native resolution.

:func:`damage_table` measures, for every perturbation and severity, the in-fan SSIM and PSNR (and, for the local
artefacts, SSIM / PSNR inside the affected region and its share of the fan) of a set of images, one row per image;
:func:`calibration_table` averages it per perturbation and severity. :func:`fit_values` searches, for one
perturbation, the knob values whose mean SSIM hits each target of :data:`robustseg.perturb.calibrated.TARGETS`
(in-fan SSIM for global perturbations, in-region SSIM for local ones). ``robustseg perturb --calibrate DATA_DIR``
runs both on a user's images; ``benchmarks/calibrate_perturbations.py`` produced the shipped table on phantom
images.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from robustseg.data.geometry import ProbeGeometry, estimate_geometry
from robustseg.errors import InputError
from robustseg.perturb.calibrated import TARGETS
from robustseg.perturb.damage import Reference, damage_summary, measure
from robustseg.perturb.registry import PERTURBATIONS, _entry, apply_value, region
from robustseg.perturb.seeding import SEVERITIES, image_seed

MARGIN = 0.05
"""Targets closer than this to a family's strongest damage are respaced with those beyond it, so that the last
severities stay apart (e.g. speckle: 0.80, 0.75, 0.70 when fully developed speckle gives 0.70)."""
TOLERANCE = 0.02
"""A fitted severity whose mean SSIM is further than this from its target is reported as not reachable (e.g. a
knob whose smallest change already costs more, as resampling does)."""
DAMAGE_COLUMNS = ("ssim_fan", "psnr_fan", "ssim_region", "psnr_region", "region_fraction")


@dataclass(frozen=True)
class Prepared:
    """One clean image with what every perturbed copy is compared against (built once)."""

    image_id: str
    image: np.ndarray
    geometry: ProbeGeometry
    reference: Reference

    @property
    def fan(self) -> np.ndarray:
        return self.geometry.maps().fan


def prepare(images: Sequence[np.ndarray], image_ids: Sequence[str],
            geometries: Sequence[ProbeGeometry] | None = None) -> list[Prepared]:
    """Images (grayscale uint8, any sizes), their ids and geometries (estimated when not given)."""
    if len(images) != len(image_ids) or len(images) == 0:
        raise InputError(f"{len(images)} images for {len(image_ids)} ids; expected one id per image, at least one")
    geos = list(geometries) if geometries is not None else [estimate_geometry(im) for im in images]
    out = []
    for img, iid, geo in zip(images, image_ids, geos, strict=True):
        img = np.ascontiguousarray(img)
        if img.ndim != 2 or img.dtype != np.uint8:
            raise InputError(f"image {iid}: shape {img.shape}, dtype {img.dtype}; expected uint8 (H, W)")
        out.append(Prepared(str(iid), img, geo, Reference.of(img)))
    return out


def measure_image(p: Prepared, name: str, value: float, seed: int,
                  where: np.ndarray | None = None) -> dict[str, float]:
    """Damage of ``p``'s image under ``name`` at knob ``value`` (seeded from ``(seed, image id)``)."""
    iseed = image_seed(seed, p.image_id)
    out = apply_value(p.image, name, value, iseed, p.geometry)
    if where is None and PERTURBATIONS[name].local:
        where = region(p.image, name, iseed, p.geometry)
    return measure(p.reference, out, p.fan, where).as_dict()


def damage_table(prepared: Sequence[Prepared], pairs: Iterable[tuple[str, int]], seed: int = 0,
                 values: Mapping[str, Sequence[float]] | None = None) -> pd.DataFrame:
    """One row per image x (perturbation, severity): ``image_id, perturbation, severity, value`` and the
    :data:`DAMAGE_COLUMNS`; knob values from the registry, or from ``values`` (name -> five values) where given."""
    rows = []
    pairs = list(pairs)
    for p in prepared:
        regions: dict[str, np.ndarray | None] = {}
        for name, sev in pairs:
            entry = _entry(name)
            if name not in regions:
                regions[name] = region(p.image, name, image_seed(seed, p.image_id), p.geometry) if entry.local else None
            value = values[name][int(sev) - 1] if values and name in values else entry.value(int(sev))
            rows.append({"image_id": p.image_id, "perturbation": name, "severity": int(sev), "value": value,
                         **measure_image(p, name, value, seed, regions[name])})
    return pd.DataFrame(rows, columns=["image_id", "perturbation", "severity", "value", *DAMAGE_COLUMNS])


def summarize_damage(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`robustseg.perturb.damage.damage_summary` of a damage table with the knob ``value`` of each severity,
    the calibrated ``measure`` (``fan`` for global perturbations, ``region`` for local ones) and ``ssim``, its value.

    >>> t = pd.DataFrame({"image_id": ["a", "b"], "perturbation": "contrast", "severity": 1, "value": 0.9,
    ...                   "ssim_fan": [0.9, 0.8], "psnr_fan": [30.0, 20.0], "ssim_region": np.nan,
    ...                   "psnr_region": np.nan, "region_fraction": np.nan})
    >>> summarize_damage(t).round(3)[["value", "ssim", "psnr_fan", "measure"]].values.tolist()
    [[0.9, 0.85, 25.0, 'fan']]
    """
    out = damage_summary(table)
    values = table.groupby(["perturbation", "severity"])["value"].first()
    out.insert(2, "value", [values.get((p, s), np.nan) for p, s in zip(out["perturbation"], out["severity"],
                                                                          strict=True)])
    out["measure"] = np.where(out["local"], "region", "fan")
    out["ssim"] = np.where(out["local"], out["ssim_region"], out["ssim_fan"])
    order = {n: i for i, n in enumerate(dict.fromkeys(table["perturbation"]))}
    return out.sort_values(["perturbation", "severity"], key=lambda c: c.map(order) if c.name == "perturbation" else c,
                           kind="stable").reset_index(drop=True)


def calibration_table(prepared: Sequence[Prepared], names: Iterable[str] | None = None, seed: int = 0,
                      values: Mapping[str, Sequence[float]] | None = None) -> pd.DataFrame:
    """:func:`summarize_damage` of the registry's values (or ``values``) on ``prepared`` images, with the target of
    each severity."""
    names = list(PERTURBATIONS) if names is None else [_entry(n).name for n in names]
    table = summarize_damage(damage_table(prepared, [(n, s) for n in names for s in SEVERITIES], seed, values))
    table["target"] = [TARGETS[s - 1] for s in table["severity"]]
    return table


def spread(table: pd.DataFrame, local: bool = False,
           exclude: Mapping[str, Sequence[int]] | None = None) -> pd.DataFrame:
    """Per severity the largest difference in mean SSIM between perturbations (the global ones, or the local ones):
    ``severity, spread, lowest, highest, n_perturbations``. ``exclude`` leaves out, per perturbation, the severities
    it cannot reach by nature (:data:`robustseg.perturb.calibrated.LIMITED`)."""
    t = table[table["local"] == local]
    if exclude:
        drop = [(n, s) in {(k, v) for k, vs in exclude.items() for v in vs}
                for n, s in zip(t["perturbation"], t["severity"], strict=True)]
        t = t[~np.asarray(drop, dtype=bool)]
    rows = []
    for sev, g in t.groupby("severity", sort=True):
        lo, hi = g.loc[g["ssim"].idxmin()], g.loc[g["ssim"].idxmax()]
        rows.append({"severity": int(sev), "spread": float(hi["ssim"] - lo["ssim"]),
                     "lowest": f"{lo['perturbation']} ({lo['ssim']:.3f})",
                     "highest": f"{hi['perturbation']} ({hi['ssim']:.3f})", "n_perturbations": len(g)})
    return pd.DataFrame(rows, columns=["severity", "spread", "lowest", "highest", "n_perturbations"])


# ------------------------------------------------------------------------------------------------ fitting
def _mean_damage(prepared: Sequence[Prepared], name: str, value: float, seed: int,
                 regions: dict[str, np.ndarray | None]) -> float:
    local = PERTURBATIONS[name].local
    vals = [measure_image(p, name, value, seed, regions[p.image_id])["ssim_region" if local else "ssim_fan"]
            for p in prepared]
    return float(np.nanmean(vals))


def _grid(lo: float, hi: float, n: int) -> np.ndarray:
    if lo > 0 and hi / lo > 20:
        return np.geomspace(lo, hi, n)
    return np.linspace(lo, hi, n)


def fit_values(prepared: Sequence[Prepared], name: str, targets: Sequence[float] = TARGETS, seed: int = 0,
               grid: int = 13, refine: int = 6) -> pd.DataFrame:
    """Knob values of ``name`` whose mean SSIM over ``prepared`` hits each target.

    The knob's search range is scanned on ``grid`` points (log-spaced for wide positive ranges), then each target is
    bracketed and refined by ``refine`` bisection steps; integer knobs are rounded and the closer neighbour kept.
    Targets below the family's strongest damage in its range (``reachable = False``), or within :data:`MARGIN` above
    it, are replaced by goals spaced evenly from the last target kept down to that limit, so the severities stay
    distinct and ordered; a fit that ends further than :data:`TOLERANCE` from its target is not reachable.
    Columns: ``perturbation, severity, target, value, ssim, reachable``.
    """
    entry = _entry(name)
    regions = {p.image_id: (region(p.image, name, image_seed(seed, p.image_id), p.geometry) if entry.local else None)
               for p in prepared}
    cache: dict[float, float] = {}

    def f(v: float) -> float:
        v = entry.rounded(v)
        if v not in cache:
            cache[v] = _mean_damage(prepared, name, v, seed, regions)
        return cache[v]

    lo, hi = entry.search
    xs = _grid(lo, hi, grid)
    ys = np.array([f(x) for x in xs])
    limit = float(ys.min())
    reachable = [t >= limit for t in targets]
    goals = list(targets)
    keep = [t >= limit + MARGIN for t in targets] if not all(reachable) else reachable
    if not all(keep):  # at or beyond the family's strongest damage: space the rest evenly down to that limit
        last = max([i for i, r in enumerate(keep) if r], default=-1)
        start = goals[last] if last >= 0 else float(ys.max())
        n = len(goals) - 1 - last
        for k, i in enumerate(range(last + 1, len(goals)), start=1):
            goals[i] = start + (limit - start) * k / n
    rows = []
    for sev, target, goal, ok in zip(SEVERITIES, targets, goals, reachable, strict=True):
        if goal > ys.max():
            i = int(np.argmax(ys))
            rows.append({"perturbation": name, "severity": sev, "target": target, "value": entry.rounded(xs[i]),
                         "ssim": float(ys[i]), "reachable": False})
            continue
        if goal <= limit:
            i = int(np.argmin(ys))
            rows.append({"perturbation": name, "severity": sev, "target": target, "value": entry.rounded(xs[i]),
                         "ssim": float(ys[i]), "reachable": ok})
            continue
        above = ys >= goal  # bracket: the first grid step where the damage crosses the goal
        cross = [i for i in range(len(xs) - 1) if above[i] != above[i + 1]]
        i = cross[0] if cross else int(np.argmin(np.abs(ys - goal)))
        a, b = xs[i], xs[min(i + 1, len(xs) - 1)]
        fa = f(a)
        for _ in range(refine):
            m = math.sqrt(a * b) if a > 0 and b / a > 20 else 0.5 * (a + b)
            if entry.rounded(m) in (entry.rounded(a), entry.rounded(b)) and entry.step != "float":
                break
            if (f(m) >= goal) == (fa >= goal):
                a, fa = m, f(m)
            else:
                b = m
        best = min((entry.rounded(a), entry.rounded(b)), key=lambda v: abs(f(v) - goal))
        rows.append({"perturbation": name, "severity": sev, "target": target, "value": float(best),
                     "ssim": f(best), "reachable": ok and abs(f(best) - target) <= TOLERANCE})
    return pd.DataFrame(rows)
