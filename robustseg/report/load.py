"""Read everything a report needs from a study's run folder (written by ``robustseg.pipeline.study``).

Nothing here computes; missing optional inputs become empty tables so a report of a partial study
still renders and says what is missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustseg.errors import InputError
from robustseg.labels import CLASS_NAMES, SMALL_STRUCTURES
from robustseg.pipeline.inputs import saved_classes
from robustseg.pipeline.native import NativeSet, unpack_masks
from robustseg.qc.anomaly import load_heatmaps

_ID_COLUMNS = {"image_id": str, "patient_id": str, "run_id": str, "arm": str}


@dataclass(frozen=True)
class Reference:
    """Held-out test images and reference masks at model input size (``reference.npz``)."""

    image_id: np.ndarray
    images: np.ndarray
    masks: np.ndarray
    pixel_mm: np.ndarray
    native: NativeSet | None = None
    """The test masks at native size (studies evaluated at native resolution); ensembles, mismatch scores
    and measurements of the report are then scored against these, as the runs' tables are."""


@dataclass(frozen=True)
class StudyInputs:
    """The saved inputs of one study run folder."""

    runs_dir: Path
    study: dict[str, Any]
    study_hash: str
    study_file: str | None
    plan: pd.DataFrame
    index: pd.DataFrame
    runs: pd.DataFrame
    per_image: pd.DataFrame
    features: pd.DataFrame
    history: pd.DataFrame
    reference_features: pd.DataFrame
    reference: Reference | None
    completes: dict[str, dict[str, Any]] = field(default_factory=dict)
    damage: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Per test image and perturbation condition the damage done (in-fan SSIM / PSNR; ``tables/damage.csv.gz``)."""
    class_names: tuple[str, ...] = CLASS_NAMES
    """The data set's classes in label order (``study.json``; the fetal four for run folders written before)."""
    small: tuple[str, ...] = SMALL_STRUCTURES
    """The data set's small structures (``data.small_structures``; CSP and LV by default)."""

    @property
    def arms(self) -> list[str]:
        """Arms in plan order (the first is the baseline)."""
        return list(dict.fromkeys(self.plan["arm"].tolist()))

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id


def _csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame()
    return pd.read_csv(path, dtype={k: v for k, v in _ID_COLUMNS.items()})


def clean_rows(per_image: pd.DataFrame, postprocessed: bool = False) -> pd.DataFrame:
    """Rows of the primary condition (clean held-out test), raw or post-processed predictions."""
    if per_image.empty:
        return per_image
    keep = (per_image["testset"] == "test") & (per_image["perturbation"] == "none")
    keep &= per_image["postprocessed"].astype(bool) == postprocessed
    return per_image[keep].reset_index(drop=True)


def load_reference(runs_dir: str | Path) -> Reference:
    """``reference.npz`` of a study; missing or damaged is an InputError saying how to rewrite it."""
    import zipfile

    path = Path(runs_dir) / "reference.npz"
    again = "run 'robustseg study' again to rewrite it (finished runs are reused)"
    if not path.is_file():
        raise InputError(f"{path}: missing (held-out test images and masks); {again}")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = sorted({"image_id", "images", "masks", "pixel_mm"} - set(z.files))
            if missing:
                raise InputError(f"{path}: lacks {missing}; {again}")
            native = None
            if "native_masks" in z.files:
                native = unpack_masks(z["image_id"].astype(str), z["native_masks"], z["native_hw"],
                                      z["native_pixel_mm"])
            return Reference(z["image_id"].astype(str), z["images"], z["masks"], z["pixel_mm"].astype(np.float64),
                             native)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: damaged ({type(exc).__name__}); {again}") from None


def _json(path: Path) -> Any:
    if not path.is_file():
        raise InputError(f"{path.parent}: not a study run folder (missing {path.name})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: damaged ({type(exc).__name__}); run 'robustseg study' again to rewrite it") from None


def load_inputs(runs_dir: str | Path) -> StudyInputs:
    """Read ``runs_dir`` (study.json, plan.json, index.csv, tables/, reference.npz, run folders).

    Only runs whose files verify against their ``complete.json`` manifest count as complete.
    """
    from robustseg.pipeline.artifacts import COMPLETE, run_state

    runs_dir = Path(runs_dir)
    saved = _json(runs_dir / "study.json")
    plan = pd.DataFrame(_json(runs_dir / "plan.json"), columns=["run_id", "arm", "fold", "seed"])
    tables = runs_dir / "tables"
    per_image = _csv(tables / "per_image.csv.gz")
    if not per_image.empty:
        per_image["postprocessed"] = per_image["postprocessed"].astype(bool)
    reference = load_reference(runs_dir)
    runs = _csv(tables / "runs.csv")
    completes = {}
    for run_id in plan["run_id"]:
        if run_state(runs_dir / run_id) == "complete":
            completes[run_id] = json.loads((runs_dir / run_id / COMPLETE).read_text())
    study = saved.get("study", {})
    names, small = saved_classes(saved)
    return StudyInputs(
        runs_dir=runs_dir, study=study, study_hash=str(saved.get("hash", "")), class_names=names, small=small,
        study_file=saved.get("file"), plan=plan, index=_csv(runs_dir / "index.csv"), runs=runs,
        per_image=per_image, features=_csv(tables / "features.csv.gz"), history=_csv(tables / "history.csv.gz"),
        reference_features=_csv(runs_dir / "reference_features.csv.gz"), reference=reference, completes=completes,
        damage=_csv(tables / "damage.csv.gz"),
    )


def load_probs(inputs: StudyInputs, run_id: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(image_id, probs float32 (N, C, S, S))`` of a run's clean test set, or None if not saved."""
    path = inputs.run_dir(run_id) / "probs.npz"
    if not path.is_file():
        return None
    ids, _, probs = load_heatmaps(path)
    return np.asarray(ids, dtype=str), probs
