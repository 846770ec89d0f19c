"""Plan a study: the runs (arm x fold x seed), what each one depends on, and its id.

A run id is ``<arm>-f<fold>-s<seed>-<hash>`` where the hash covers everything that changes the run's
result: the arm's model / loss / sampler / training settings, the data identity and input size, a hash
of the images, masks and pixel sizes as read (so corrected masks never reuse old runs), the exact split
assignment, the seed, the perturbation list with its stage and probe-geometry settings, the evaluation options,
and for plugins (a model, loss or perturbation from another package) that package's distribution name and
version. Which folds a study runs (``split.folds``) is not part of it: running more folds later reuses the
finished ones. Two studies that differ in any of these never share a run folder; a resumed study finds its
finished runs.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from robustseg import __version__
from robustseg.config import DataTable, Study, stable_hash
from robustseg.labels import SMALL_STRUCTURES


@dataclass(frozen=True)
class DataSpec:
    """Where a data set comes from and how it is read (what a worker needs to load it)."""

    source: str
    path: str
    plane: str
    colormap: Any
    """A colour-map name or table; stored in the hashable canonical form of
    :func:`robustseg.data.io.canonical_colormap` (so a spec can key the per-process data cache)."""
    size: int
    small_structures: tuple[str, ...] = SMALL_STRUCTURES
    """Names of the small structures (oversampling, post-processing, split strata): ``data.small_structures``."""
    frame: int | None = None
    """The frame (1-based) read from each multi-frame DICOM image: ``data.frame``."""

    def __post_init__(self) -> None:
        from robustseg.data.io import canonical_colormap

        object.__setattr__(self, "small_structures", tuple(self.small_structures))
        object.__setattr__(self, "colormap", canonical_colormap(self.colormap))

    def key(self) -> str:
        return stable_hash(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-able fields (what a run's payload holds); ``frame`` only when set, so data sets without
        frames keep the run ids they had."""
        out = asdict(self)
        if out["frame"] is None:
            del out["frame"]
        return out


@dataclass(frozen=True)
class RunSpec:
    """One run: train on a fold with a seed, then evaluate on the held-out test set(s)."""

    study: str
    arm: str
    fold: int
    seed: int
    run_id: str
    payload: dict[str, Any]
    """JSON-able description of everything that changes the result (saved as spec.json)."""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def split_fingerprint(splits: pd.DataFrame) -> str:
    """Hash of the exact image -> fold assignment."""
    pairs = sorted(zip(splits["image_id"].astype(str), splits["fold"].astype(int), strict=True))
    return stable_hash(pairs)


def _identity(payload: dict[str, Any], data: DataTable) -> dict[str, Any]:
    """What the run id hashes: the payload, with a generated phantom named by its recipe, not its folder."""
    if payload["data"]["source"] != "phantom":
        return payload
    recipe = f"phantom:n={data.phantom_n}:seed={data.phantom_seed}"
    return {**payload, "data": {**payload["data"], "path": recipe}}


def plugin_records(study: Study, suite: list[tuple[str, int]]) -> dict[str, list[dict[str, Any]]]:
    """Per arm, the plugins its runs use (model, loss, perturbations): distribution, version, object
    (``robustseg._registry.Registry.plugin``); arms that use only built-ins are absent."""
    from robustseg.nn.losses import LOSSES
    from robustseg.nn.models import MODELS
    from robustseg.perturb import PERTURBATIONS

    perturbations = [PERTURBATIONS.plugin(name) for name in dict.fromkeys(n for n, _ in suite)]
    out: dict[str, list[dict[str, Any]]] = {}
    for arm in study.arms:
        found = [MODELS.plugin(arm.model), LOSSES.plugin(arm.loss), *perturbations]
        if any(found):
            out[arm.name] = [p for p in found if p is not None]
    return out


def perturb_payload(study: Study, suite: list[tuple[str, int]]) -> dict[str, Any]:
    """The perturbation settings a run depends on: conditions, seed, stage and how the probe geometry is found."""
    pt = study.perturb
    return {"pairs": [list(p) for p in suite], "seed": pt.seed, "stage": pt.stage,
            "geometry": {"mode": pt.geometry, "apex": list(pt.apex) or None, "opening_deg": pt.opening_deg or None,
                         "column": pt.geometry_column}}


def plan_runs(study: Study, data: DataSpec, splits: pd.DataFrame, suite: list[tuple[str, int]],
              external: list[tuple[str, DataSpec]] | None = None,
              fingerprints: dict[str, str] | None = None) -> list[RunSpec]:
    """All runs of a study, in a stable order (arm, fold, seed)."""
    fingerprint = split_fingerprint(splits)
    plugins = plugin_records(study, suite)
    runs = []
    for arm in study.arms:
        for fold in study.folds:
            for seed in study.seeds:
                payload = {
                    "version": ".".join(__version__.split(".")[:2]),
                    "arm": arm.to_dict(),
                    "data": data.to_dict(),
                    "external": [{"name": n, "data": e.to_dict()} for n, e in external or []],
                    "data_fingerprints": dict(fingerprints or {}),
                    "split": {**study.split.model_dump(exclude={"folds"}), "fingerprint": fingerprint},
                    "fold": fold,
                    "seed": seed,
                    "perturb": perturb_payload(study, suite),
                    "eval": study.eval.model_dump(),
                }
                if arm.name in plugins:  # only then: studies of built-ins keep their run ids
                    payload["plugins"] = plugins[arm.name]
                run_id = f"{_slug(arm.name)}-f{fold}-s{seed}-{stable_hash(_identity(payload, study.data), 10)}"
                runs.append(RunSpec(study.name, arm.name, fold, seed, run_id, payload))
    return runs
