"""Simulated studies for the calibration of the report's statistics: the designs people run, with known truth.

A study is arms x folds x seeds runs, each scored on the same test set of patients (1 to
``images_per_patient[1]`` images each). Per structure, the Dice of a run on an image with the structure is
``expit(logit(mean) + shift + u_patient + v_image + w_image_fold + a_fold + b_seed + e_image_run)`` (logit
scale, so Dice stays in (0, 1) and is skewed near 1 as real Dice is). ``u`` and ``v`` are Student t with
``tail_df`` degrees of freedom (heavy tails; scaled to the given SD) or Gaussian; the others Gaussian. On top:

- *missed structures*: with probability ``miss_rate`` per image and run the structure is not found (Dice 0);
- *collapse*: with probability ``collapse_rate`` per run the structure is never predicted (Dice 0 on every
  image with it, and no false positive anywhere);
- *false positives* on images without the structure, at a run-specific rate around ``fp_rate``;
- *unequal folds* (``seeds_per_fold``) and *failed runs* (``failed_per_arm`` runs of each arm left out).

Counts ``tp, fp, fn`` follow from Dice and a log-normal reference area (continuous, not rounded), and
``dice`` uses the ``nan`` empty policy, as the study's per-image table does.

The truth of every estimand is computed by Monte Carlo (:func:`truth`): the expected value over patients,
images and new training runs (the *recipe* value), or over patients for one fixed model (the *test-set*
value). The calibration functions of ``benchmarks/calibration.py`` are in :mod:`robustseg.stats.calibrate`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from robustseg.errors import InputError


@dataclass(frozen=True)
class Structure:
    """Generative parameters of one structure (SDs on the logit scale of Dice)."""

    presence: float
    mean: float
    sd_patient: float
    sd_image: float
    sd_image_fold: float
    sd_fold: float
    sd_seed: float
    sd_resid: float
    log_area: tuple[float, float] = (6.0, 0.4)
    fp_rate: float = 0.0
    miss_rate: float = 0.0
    collapse_rate: float = 0.0
    tail_df: float | None = None
    """Student t degrees of freedom of the patient and image effects (None: Gaussian)."""


STRUCTURES: dict[str, Structure] = {
    "brain": Structure(1.0, 0.96, 0.25, 0.25, 0.1, 0.05, 0.08, 0.15, (9.0, 0.3)),
    "csp": Structure(0.7, 0.84, 0.45, 0.45, 0.25, 0.1, 0.15, 0.35, (6.0, 0.4), fp_rate=0.1, miss_rate=0.02),
    "lv": Structure(0.75, 0.82, 0.5, 0.5, 0.3, 0.1, 0.18, 0.4, (5.5, 0.5), fp_rate=0.12, miss_rate=0.03),
}
"""Default structures: roughly the spread of the quickstart's clean-test results (Dice 0.8-0.97)."""
SMALL = ("csp", "lv")
"""Structures that can collapse (a run that never predicts them)."""


@dataclass(frozen=True)
class Scenario:
    """A family of simulated studies: structures plus design irregularities."""

    name: str = "base"
    structures: Mapping[str, Structure] = field(default_factory=lambda: dict(STRUCTURES))
    images_per_patient: tuple[int, int] = (1, 3)
    seeds_per_fold: tuple[int, ...] | None = None
    """Seeds of each fold (unequal folds); None: ``n_seeds`` in every fold."""
    failed_per_arm: int = 0
    """Runs of each arm that fail (left out of the table), drawn at random."""

    def with_structures(self, small_only: Sequence[str] = (), **changes: object) -> Scenario:
        """The scenario with ``changes`` applied to every structure, and ``small_only`` of them (e.g.
        ``collapse_rate``) to the small structures only (a brain region never collapses)."""
        out = {}
        for name, s in self.structures.items():
            keep = {k: v for k, v in changes.items() if k not in small_only or name in SMALL}
            out[name] = replace(s, **keep)
        return replace(self, structures=out)


def scenario(name: str) -> Scenario:
    """The named scenario of the calibration (``SCENARIOS``).

    Examples
    --------
    >>> scenario("heavy tails").structures["csp"].tail_df
    3.0
    """
    if name not in SCENARIOS:
        raise InputError(f"scenario: unknown name {name!r}; expected one of {', '.join(SCENARIOS)}")
    return SCENARIOS[name]


_BASE = Scenario()
SCENARIOS: dict[str, Scenario] = {
    "base": _BASE,
    "heavy tails": replace(_BASE.with_structures(tail_df=3.0), name="heavy tails"),
    "missed structures": replace(_BASE.with_structures(("miss_rate",), miss_rate=0.06), name="missed structures"),
    "collapses": replace(_BASE.with_structures(("collapse_rate",), collapse_rate=0.05), name="collapses"),
    "unequal folds": replace(_BASE.with_structures(sd_fold=0.2), name="unequal folds", seeds_per_fold=(3, 2, 4)),
    "1-4 images per patient": replace(_BASE, name="1-4 images per patient", images_per_patient=(1, 4)),
    "failed runs": replace(_BASE, name="failed runs", failed_per_arm=1),
    "audit": replace(_BASE.with_structures(("collapse_rate", "miss_rate"), tail_df=3.0, miss_rate=0.04, collapse_rate=0.03, sd_fold=0.15),
                     name="audit", images_per_patient=(1, 4), failed_per_arm=1),
}
"""Scenarios of the calibration: the base model, each irregularity on its own, and all of them together."""


def _effects(rng: np.random.Generator, sd: float, size: int | tuple, tail_df: float | None) -> np.ndarray:
    if sd == 0:
        return np.zeros(size)
    if tail_df is None:
        return rng.normal(0.0, sd, size)
    return rng.standard_t(tail_df, size) * sd / np.sqrt(tail_df / (tail_df - 2.0))


def _run_grid(scn: Scenario, n_folds: int, n_seeds: int) -> list[tuple[int, int]]:
    per_fold = scn.seeds_per_fold if scn.seeds_per_fold is not None else (n_seeds,) * n_folds
    return [(f, s) for f, k in enumerate(per_fold) for s in range(k)]


def simulate(
    seed: int,
    scn: Scenario = _BASE,
    *,
    n_patients: int = 20,
    n_folds: int = 2,
    n_seeds: int = 3,
    arms: Mapping[str, float] | None = None,
    classes: Sequence[str] | None = None,
    fixed_model: bool = False,
) -> pd.DataFrame:
    """Per-image table of one simulated study: columns ``arm, fold, seed, class, image_id, patient_id, tp, fp,
    fn, ref_pixels, pred_pixels, dice``.

    ``arms`` maps arm names to their shift on the logit scale of Dice (default ``{"a": 0, "b": 0}``). With
    ``seeds_per_fold`` in the scenario, ``n_folds``/``n_seeds`` are ignored. ``fixed_model``: one run whose
    fold and seed effects are 0 and which never collapses (the test-set interval's setting).

    Examples
    --------
    >>> t = simulate(0, n_patients=5, n_folds=2, n_seeds=2)
    >>> sorted(t["arm"].unique()), sorted(t["class"].unique()), int(t[["fold", "seed"]].drop_duplicates().shape[0])
    (['a', 'b'], ['brain', 'csp', 'lv'], 4)
    """
    rng = np.random.default_rng(seed)
    arms = dict(arms) if arms is not None else {"a": 0.0, "b": 0.0}
    names = list(classes) if classes is not None else list(scn.structures)
    lo, hi = scn.images_per_patient
    patient = np.repeat(np.arange(n_patients), rng.integers(lo, hi + 1, n_patients))
    n_img = patient.size
    grid = [(0, 0)] if fixed_model else _run_grid(scn, n_folds, n_seeds)
    folds = np.array([f for f, _ in grid])
    n_runs, n_f = len(grid), int(folds.max()) + 1
    fails = {a: set(rng.choice(n_runs, scn.failed_per_arm, replace=False).tolist()) if scn.failed_per_arm else set()
             for a in arms}
    image_ids = np.array([f"img{i:03d}" for i in range(n_img)])
    parts = []
    for cls in names:
        m = scn.structures[cls]
        present = rng.random(n_img) < m.presence
        area = np.exp(rng.normal(*m.log_area, n_img))
        base = (logit(m.mean) + _effects(rng, m.sd_patient, n_patients, m.tail_df)[patient]
                + _effects(rng, m.sd_image, n_img, m.tail_df))
        run_scale = 0.0 if fixed_model else 1.0
        fold_img = (base[None, :] + rng.normal(0, m.sd_image_fold * run_scale, (n_f, n_img))
                    + rng.normal(0, m.sd_fold * run_scale, (n_f, 1)))
        typical = float(np.exp(m.log_area[0]))
        for arm, shift in arms.items():
            eta = (fold_img[folds] + shift + rng.normal(0, m.sd_seed * run_scale, (n_runs, 1))
                   + rng.normal(0, m.sd_resid, (n_runs, n_img)))
            d = expit(eta)
            collapsed = (rng.random((n_runs, 1)) < m.collapse_rate * run_scale)
            missed = (rng.random((n_runs, n_img)) < m.miss_rate) | collapsed
            d = np.where(missed, 0.0, d)
            tp = d * area
            fn = area - tp
            fp = np.where(missed, 0.0, fn)
            sd_fp = m.fp_rate / 3
            fp_rate = np.clip(m.fp_rate + rng.normal(0, sd_fp, (n_runs, 1)), 0, 1)
            blob = (rng.random((n_runs, n_img)) < fp_rate) & ~collapsed
            blob_px = typical * rng.uniform(0.1, 0.6, (n_runs, n_img))
            tp = np.where(present, tp, 0.0)
            fn = np.where(present, fn, 0.0)
            fp = np.where(present, fp, np.where(blob, blob_px, 0.0))
            den = 2 * tp + fp + fn
            dice = np.full(den.shape, np.nan)
            np.divide(2 * tp, den, out=dice, where=den > 0)
            keep = np.array([r not in fails[arm] for r in range(n_runs)])
            r_idx = np.repeat(np.flatnonzero(keep), n_img)
            i_idx = np.tile(np.arange(n_img), int(keep.sum()))
            parts.append(pd.DataFrame({
                "arm": arm, "fold": folds[r_idx], "seed": np.array([s for _, s in grid])[r_idx], "class": cls,
                "image_id": image_ids[i_idx], "patient_id": patient[i_idx], "tp": tp[keep].ravel(),
                "fp": fp[keep].ravel(), "fn": fn[keep].ravel(), "ref_pixels": (tp + fn)[keep].ravel(),
                "pred_pixels": (tp + fp)[keep].ravel(), "dice": dice[keep].ravel()}))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


STATISTICS = ("global_dice", "mean", "dice_all")


def truth(m: Structure, statistic: str, *, shift: float = 0.0, fixed_model: bool = False, n: int = 2_000_000,
          seed: int = 12345) -> float:
    """Monte Carlo value of an estimand for one structure (common random numbers: same ``seed``, same draws).

    ``statistic``: ``global_dice`` (``E[2 TP] / E[2 TP + FP + FN]``), ``mean`` (per-image Dice under the
    ``nan`` policy: ``E[Dice; defined] / P(defined)``) or ``dice_all`` (expected Dice with both-empty = 1,
    the arm comparison's measure), over new patients, images and training runs (``fixed_model``: over new
    patients for one model with fold and seed effects 0 that does not collapse). ``n`` independent image x
    run draws (only marginal expectations enter a ratio of expectations).

    Examples
    --------
    >>> m = STRUCTURES["csp"]
    >>> 0.5 < truth(m, "mean", n=20000) < truth(m, "mean", shift=0.5, n=20000) < 1
    True
    """
    if statistic not in STATISTICS:
        raise InputError(f"truth: unknown statistic {statistic!r}; expected one of {', '.join(STATISTICS)}")
    rng = np.random.default_rng(seed)
    run = 0.0 if fixed_model else 1.0
    eta = (logit(m.mean) + shift + _effects(rng, m.sd_patient, n, m.tail_df) + _effects(rng, m.sd_image, n, m.tail_df)
           + rng.normal(0, m.sd_image_fold * run, n) + rng.normal(0, m.sd_fold * run, n)
           + rng.normal(0, m.sd_seed * run, n) + rng.normal(0, m.sd_resid, n))
    collapsed = rng.random(n) < m.collapse_rate * run
    missed = (rng.random(n) < m.miss_rate) | collapsed
    d = np.where(missed, 0.0, expit(eta))
    present = rng.random(n) < m.presence
    area = np.exp(rng.normal(*m.log_area, n))
    fp_rate = np.clip(m.fp_rate + rng.normal(0, m.fp_rate / 3, n), 0, 1)
    blob = (rng.random(n) < fp_rate) & ~collapsed
    blob_px = float(np.exp(m.log_area[0])) * rng.uniform(0.1, 0.6, n)
    tp = np.where(present, d * area, 0.0)
    fn = np.where(present, area - d * area, 0.0)
    fp = np.where(present, np.where(missed, 0.0, fn), np.where(blob, blob_px, 0.0))
    if statistic == "global_dice":
        return float(2 * tp.sum() / (2 * tp + fp + fn).sum())
    den = 2 * tp + fp + fn
    dice = np.divide(2 * tp, den, out=np.zeros(n), where=den > 0)
    if statistic == "mean":
        return float(dice[den > 0].mean())
    return float(np.where(den > 0, dice, 1.0).mean())


def shift_for_difference(m: Structure, diff: float, *, n: int = 1_000_000, seed: int = 12345) -> float:
    """Logit shift that raises the expected ``dice_all`` of a structure by ``diff`` (bisection, common draws).

    Examples
    --------
    >>> m = STRUCTURES["lv"]
    >>> s = shift_for_difference(m, 0.02, n=50000)
    >>> round(truth(m, "dice_all", shift=s, n=50000) - truth(m, "dice_all", n=50000), 4)
    0.02
    """
    base = truth(m, "dice_all", n=n, seed=seed)
    lo, hi = (0.0, 4.0) if diff >= 0 else (-4.0, 0.0)
    for _ in range(50):
        mid = (lo + hi) / 2
        if truth(m, "dice_all", shift=mid, n=n, seed=seed) - base < diff:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-6:
            break
    return (lo + hi) / 2
