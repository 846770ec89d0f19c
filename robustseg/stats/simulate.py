"""Simulated studies with known truth, to calibrate the statistics (``benchmarks/calibration.py``, tests).

:func:`simulate_study` draws a test set of patients (1-3 images each) and the per-image table of every run
(arm x fold x seed) for brain, CSP and LV: Dice on images with the structure is a sum of a patient
effect, an image effect, an image x fold effect and a fold effect (both shared by every arm trained on
that fold: same training data), a seed effect per run, and image x run noise, clipped to [0, 1];
structures are absent from some images, where a run paints a false positive with a run-specific rate.
Counts ``tp, fp, fn`` follow from Dice and a log-normal reference area, and ``dice`` uses the ``nan``
empty policy (both empty: NaN), like the study's table.

The calibration functions each run many simulated studies and return a tidy table: the verdict rate of
the arm comparison (null and power), the coverage of the pooled seed-ICC interval and of the
patient-level Dice intervals. They are pure functions of their arguments (``seed`` fixes everything).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from robustseg.stats.bootstrap import METHODS, patient_bootstrap_ci
from robustseg.stats.runlevel import compare_runs, run_values
from robustseg.stats.seeds import pooled_seed_icc


@dataclass(frozen=True)
class ClassModel:
    """Generative parameters of one structure (Dice scale; SDs of the additive effects)."""

    presence: float
    mean: float
    sd_patient: float
    sd_image: float
    sd_image_fold: float
    sd_fold: float
    sd_seed: float
    sd_resid: float
    log_area: tuple[float, float]
    fp_rate: float = 0.0
    miss_rate: float = 0.0
    sd_fp_rate: float | None = None
    """Run-to-run SD of the false-positive rate (None: a third of ``fp_rate``)."""


CLASSES: dict[str, ClassModel] = {
    "brain": ClassModel(1.0, 0.92, 0.02, 0.02, 0.01, 0.005, 0.006, 0.015, (9.0, 0.3)),
    "csp": ClassModel(0.7, 0.72, 0.08, 0.08, 0.04, 0.01, 0.02, 0.06, (6.0, 0.4), fp_rate=0.1, miss_rate=0.05),
    "lv": ClassModel(0.75, 0.66, 0.09, 0.09, 0.05, 0.01, 0.025, 0.07, (5.5, 0.5), fp_rate=0.12, miss_rate=0.06),
}
"""Default structures: roughly the spread of the reference study's CSP / LV results."""


@dataclass(frozen=True)
class Arm:
    """An arm: ``shift`` added to Dice on images with the structure; ``paint`` = share of structure-absent
    images on which every run paints a false-positive blob (on top of the class's false-positive rate)."""

    shift: float = 0.0
    paint: float = 0.0


def _patients(rng: np.random.Generator, n_patients: int) -> np.ndarray:
    return np.repeat(np.arange(n_patients), rng.integers(1, 4, n_patients))


def simulate_study(
    seed: int,
    *,
    n_patients: int = 20,
    n_folds: int = 2,
    n_seeds: int = 5,
    arms: Mapping[str, Arm] | None = None,
    classes: Mapping[str, ClassModel] | None = None,
    failed_runs: Sequence[tuple[str, int, int]] = (),
) -> pd.DataFrame:
    """Per-image table of one simulated study (columns ``arm, fold, seed, class, image_id, patient_id, tp, fp,
    fn, ref_pixels, pred_pixels, dice``); ``failed_runs`` lists ``(arm, fold, seed)`` runs to leave out.

    Examples
    --------
    >>> t = simulate_study(0, n_patients=5, n_folds=2, n_seeds=2)
    >>> sorted(t["arm"].unique()), t.groupby("class").size().to_dict() == {c: len(t) // 3 for c in CLASSES}
    (['a', 'b'], True)
    """
    rng = np.random.default_rng(seed)
    arms = dict(arms) if arms is not None else {"a": Arm(), "b": Arm()}
    classes = dict(classes) if classes is not None else CLASSES
    patient = _patients(rng, n_patients)
    n_img = patient.size
    parts = []
    for cls, m in classes.items():
        present = rng.random(n_img) < m.presence
        area = np.maximum(np.round(np.exp(rng.normal(*m.log_area, n_img))), 4.0)
        base = (m.mean + rng.normal(0, m.sd_patient, n_patients)[patient] + rng.normal(0, m.sd_image, n_img))
        fold_img = base[None, :] + rng.normal(0, m.sd_image_fold, (n_folds, n_img)) + \
            rng.normal(0, m.sd_fold, (n_folds, 1))
        typical = float(np.exp(m.log_area[0]))
        for arm, spec in arms.items():
            painted = rng.random(n_img) < spec.paint
            run = rng.normal(0, m.sd_seed, (n_folds, n_seeds, 1))
            d = fold_img[:, None, :] + spec.shift + run + rng.normal(0, m.sd_resid, (n_folds, n_seeds, n_img))
            d = np.clip(d, 0.0, 1.0)
            missed = rng.random((n_folds, n_seeds, n_img)) < m.miss_rate
            d = np.where(missed, 0.0, d)
            tp = np.round(d * area)
            fn = area - tp
            fp = np.where(missed, 0.0, fn)
            sd_fp = m.fp_rate / 3 if m.sd_fp_rate is None else m.sd_fp_rate
            fp_rate = np.clip(m.fp_rate + rng.normal(0, sd_fp, (n_folds, n_seeds, 1)), 0, 1)
            blob = (rng.random((n_folds, n_seeds, n_img)) < fp_rate) | painted[None, None, :]
            blob_px = np.round(typical * rng.uniform(0.1, 0.6, (n_folds, n_seeds, n_img)))
            tp = np.where(present, tp, 0.0)
            fn = np.where(present, fn, 0.0)
            fp = np.where(present, fp, np.where(blob, blob_px, 0.0))
            den = 2 * tp + fp + fn
            dice = np.full(den.shape, np.nan)
            np.divide(2 * tp, den, out=dice, where=den > 0)
            f_idx, s_idx, i_idx = np.meshgrid(np.arange(n_folds), np.arange(n_seeds), np.arange(n_img), indexing="ij")
            parts.append(pd.DataFrame({
                "arm": arm, "fold": f_idx.ravel(), "seed": s_idx.ravel(), "class": cls,
                "image_id": [f"img{i:03d}" for i in i_idx.ravel()], "patient_id": patient[i_idx.ravel()],
                "tp": tp.ravel(), "fp": fp.ravel(), "fn": fn.ravel(), "ref_pixels": (tp + fn).ravel(),
                "pred_pixels": (tp + fp).ravel(), "dice": dice.ravel()}))  # fmt: skip
    out = pd.concat(parts, ignore_index=True)
    if failed_runs:
        key = list(zip(out["arm"], out["fold"], out["seed"], strict=True))
        drop = {(str(a), int(f), int(s)) for a, f, s in failed_runs}
        out = out[[k not in drop for k in key]].reset_index(drop=True)
    return out


def seed_sd(classes: Mapping[str, ClassModel] | None = None, *, n_patients: int = 20, seed: int = 0,
            n_folds: int = 40, n_seeds: int = 10) -> dict[str, float]:
    """Seed-to-seed SD (pooled within folds) of the run-level ``dice_all_images`` per class, from one large
    simulated study; the unit of the power calibration's effect size.

    Examples
    --------
    >>> sds = seed_sd(n_folds=4, n_seeds=4)
    >>> sorted(sds) == sorted(CLASSES) and all(v > 0 for v in sds.values())
    True
    """
    t = simulate_study(seed, n_patients=n_patients, n_folds=n_folds, n_seeds=n_seeds, arms={"a": Arm()},
                       classes=classes)
    rv = run_values(t)
    out = {}
    for cls, g in rv.groupby("class", sort=False):
        within = g.groupby("fold")["value"].var(ddof=1)
        out[str(cls)] = float(np.sqrt(within.mean()))
    return out


def verdict_rates(n_studies: int, *, shift_in_seed_sd: float = 0.0, n_folds: int = 2, n_seeds: int = 5,
                  n_patients: int = 20, seed: int = 0, alpha: float = 0.05,
                  classes: Mapping[str, ClassModel] | None = None, per_image_v01: bool = False) -> pd.DataFrame:
    """Share of simulated studies whose run-level comparison of arms ``a`` and ``b`` gives a difference verdict.

    Arm ``b`` shifts Dice on images with the structure so that its run-level ``dice_all_images`` exceeds
    ``a``'s by about ``shift_in_seed_sd`` seed SDs (:func:`seed_sd`; the shift is divided by the share of
    images with the structure); 0 is the null (same recipe, different seeds). Holm over the three
    structures, as in the report. Returns ``class, shift_in_seed_sd, n_folds, n_seeds, n_studies,
    verdict_rate, correct_direction_rate, alpha``; with ``per_image_v01`` also ``verdict_rate_v01``, the
    rate of v0.1's per-image Wilcoxon verdict (:func:`robustseg.stats.compare_arms`, for contrast).

    Examples
    --------
    >>> r = verdict_rates(10, n_folds=2, n_seeds=3)
    >>> list(r["class"]), bool((r["verdict_rate"] <= 1).all())
    (['brain', 'csp', 'lv'], True)
    """
    classes = dict(classes) if classes is not None else CLASSES
    sds = seed_sd(classes, n_patients=n_patients) if shift_in_seed_sd else dict.fromkeys(classes, 0.0)
    rng = np.random.default_rng(seed)
    hits = {c: 0 for c in classes}
    right = {c: 0 for c in classes}
    old = {c: 0 for c in classes}
    for _ in range(n_studies):
        s = int(rng.integers(2**31))
        # one class model per structure with its own shift
        tables = []
        for cls, m in classes.items():
            shift = shift_in_seed_sd * sds[cls] / max(m.presence, 1e-9)
            tables.append(simulate_study(s, n_patients=n_patients, n_folds=n_folds, n_seeds=n_seeds,
                                         arms={"a": Arm(), "b": Arm(shift=shift)}, classes={cls: m}))
        t = pd.concat(tables, ignore_index=True)
        res = compare_runs(t, arms=["a", "b"], by=("class",), patient_col="patient_id", n_boot=1, alpha=alpha)
        for r in res.itertuples(index=False):
            if r.verdict.endswith("better"):
                hits[r[0]] += 1
                right[r[0]] += int(r.verdict == "b better")
        if per_image_v01:
            from robustseg.stats.compare import compare_arms

            v01 = compare_arms(t, value="dice", arm_a="a", arm_b="b", by=("class",), n_boot=1, alpha=alpha)
            for r in v01.itertuples(index=False):
                old[r[0]] += int(r.verdict.endswith("better"))
    return pd.DataFrame([{"class": c, "shift_in_seed_sd": float(shift_in_seed_sd), "n_folds": n_folds,
                          "n_seeds": n_seeds, "n_studies": n_studies, "verdict_rate": hits[c] / n_studies,
                          "correct_direction_rate": right[c] / n_studies, "alpha": alpha,
                          **({"verdict_rate_v01": old[c] / n_studies} if per_image_v01 else {})} for c in classes])


@dataclass(frozen=True)
class IccModel:
    """Variance components of a seed-reproducibility study on one measure (additive, Gaussian)."""

    var_image: float = 0.6
    var_image_fold: float = 0.15
    var_fold: float = 0.2
    var_seed: float = 0.1
    var_error: float = 0.3

    @property
    def truth(self) -> float:
        """ICC(A,1) within a fold: image variance (shared + fold-specific) over the total within a fold."""
        img = self.var_image + self.var_image_fold
        return img / (img + self.var_seed + self.var_error)


def simulate_seed_table(seed: int, *, n_images: int = 30, n_folds: int = 3, n_seeds: int = 5,
                        model: IccModel = IccModel()) -> pd.DataFrame:
    """Long table ``fold, seed, image_id, value`` of one seed-reproducibility study under ``model``.

    Examples
    --------
    >>> t = simulate_seed_table(0, n_images=4, n_folds=2, n_seeds=3)
    >>> len(t), sorted(t["fold"].unique().tolist())
    (24, [0, 1])
    """
    rng = np.random.default_rng(seed)
    img = rng.normal(0, np.sqrt(model.var_image), n_images)
    y = (img[None, None, :] + rng.normal(0, np.sqrt(model.var_image_fold), (n_folds, 1, n_images))
         + rng.normal(0, np.sqrt(model.var_fold), (n_folds, 1, 1)) + rng.normal(0, np.sqrt(model.var_seed),
                                                                                 (n_folds, n_seeds, 1))
         + rng.normal(0, np.sqrt(model.var_error), (n_folds, n_seeds, n_images)))
    f, s, i = np.meshgrid(np.arange(n_folds), np.arange(n_seeds), np.arange(n_images), indexing="ij")
    return pd.DataFrame({"fold": f.ravel(), "seed": s.ravel(), "image_id": i.ravel(), "value": y.ravel()})


def icc_coverage(n_studies: int, *, n_images: int = 30, n_folds: int = 3, n_seeds: int = 5,
                 model: IccModel = IccModel(), alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Coverage of the pooled seed-ICC interval (:func:`pooled_seed_icc`) over simulated studies.

    Returns one row: ``n_images, n_folds, n_seeds, n_studies, truth, mean_icc, coverage, mean_width,
    coverage_v01, alpha``; ``coverage_v01`` is that of v0.1's ICC with targets = image x fold and raters =
    seed labels (for contrast).

    Examples
    --------
    >>> r = icc_coverage(5, n_images=10, n_folds=2, n_seeds=3).iloc[0]
    >>> bool(0 <= r["coverage"] <= 1), round(float(r["truth"]), 3)
    (True, 0.652)
    """
    rng = np.random.default_rng(seed)
    from robustseg.stats.icc import icc

    est, cover, width, old = [], [], [], []
    for _ in range(n_studies):
        t = simulate_seed_table(int(rng.integers(2**31)), n_images=n_images, n_folds=n_folds, n_seeds=n_seeds,
                                model=model)
        r = pooled_seed_icc(t, value="value", by=(), alpha=alpha).iloc[0]
        v01 = icc(t, targets=("fold", "image_id"), raters="seed", ratings="value", alpha=alpha).iloc[0]
        old.append(v01["ci_low"] <= model.truth <= v01["ci_high"])
        est.append(r["icc"])
        cover.append(r["ci_low"] <= model.truth <= r["ci_high"])
        width.append(r["ci_high"] - r["ci_low"])
    return pd.DataFrame([{"n_images": n_images, "n_folds": n_folds, "n_seeds": n_seeds, "n_studies": n_studies,
                          "truth": model.truth, "mean_icc": float(np.mean(est)), "coverage": float(np.mean(cover)),
                          "mean_width": float(np.mean(width)), "coverage_v01": float(np.mean(old)),
                          "alpha": alpha}])


def bootstrap_coverage(n_studies: int, *, n_patients: int = 20, cls: str = "csp",
                       methods: Sequence[str] = METHODS, n_boot: int = 1000, alpha: float = 0.05,
                       seed: int = 0, truth_patients: int = 20000) -> pd.DataFrame:
    """Coverage of the patient-level Dice intervals (:func:`patient_bootstrap_ci`) at ``n_patients``.

    Each study draws a new test set of ``n_patients`` patients scored by one model whose quality is held
    fixed across studies (no seed or fold effects: the interval covers patient sampling only); the truth
    is the same statistic on one test set of ``truth_patients`` patients. Returns
    ``statistic, method, n_patients, n_studies, truth, coverage, mean_width, alpha``.

    Examples
    --------
    >>> r = bootstrap_coverage(3, n_patients=10, methods=("t_cluster",), n_boot=50, truth_patients=300)
    >>> sorted(r["statistic"]), bool(r["coverage"].between(0, 1).all())
    (['global_dice', 'mean'], True)
    """
    fixed = replace(CLASSES[cls], sd_fold=0.0, sd_seed=0.0, sd_image_fold=0.0, sd_fp_rate=0.0)
    classes = {cls: fixed}
    big = simulate_study(seed + 1, n_patients=truth_patients, n_folds=1, n_seeds=1, arms={"a": Arm()},
                         classes=classes)
    truth = {"global_dice": float(2 * big["tp"].sum() / (2 * big["tp"].sum() + big["fp"].sum() + big["fn"].sum())),
             "mean": float(np.nanmean(big["dice"].to_numpy()))}
    rng = np.random.default_rng(seed)
    hits: dict[tuple[str, str], list[float]] = {}
    for _ in range(n_studies):
        t = simulate_study(int(rng.integers(2**31)), n_patients=n_patients, n_folds=1, n_seeds=1,
                           arms={"a": Arm()}, classes=classes)
        for statistic in ("global_dice", "mean"):
            for method in methods:
                r = patient_bootstrap_ci(t, value="dice", by=(), statistic=statistic, method=method, n_boot=n_boot,
                                         alpha=alpha, seed=int(rng.integers(2**31))).iloc[0]
                hits.setdefault((statistic, method), []).append(
                    float(r["ci_low"] <= truth[statistic] <= r["ci_high"]))
                hits.setdefault((statistic, method + "_w"), []).append(float(r["ci_high"] - r["ci_low"]))
    rows = []
    for statistic in ("global_dice", "mean"):
        for method in methods:
            rows.append({"statistic": statistic, "method": method, "n_patients": n_patients, "n_studies": n_studies,
                         "truth": truth[statistic], "coverage": float(np.mean(hits[(statistic, method)])),
                         "mean_width": float(np.nanmean(hits[(statistic, method + "_w")])), "alpha": alpha})
    return pd.DataFrame(rows)
