"""Intervals of Dice named for what they cover: *test-set* (patients resampled, trained models fixed) and
*recipe* (new patients **and** new training runs: the uncertainty of the training recipe itself).

Both are built on the same decomposition. The pooled estimate of an arm is a ratio of sums over patients
``p`` and runs ``r``: per-image Dice is ``sum dice / count`` (images with a defined value), global Dice is
``sum 2 TP / sum (2 TP + FP + FN)``. Linearised, its error is ``sum_pr z_pr / D`` with ``z_pr = num_pr -
estimate * den_pr`` (patient ``p``'s sums in run ``r``) and ``D`` the total denominator. The patients x runs
table of ``z`` is a crossed design (every run scores the same test patients) with runs nested in folds, so
a two-way random-effects ANOVA splits it into a patient term (``s2_patient``), a fold term (``s2_fold``), a
seed-within-fold term (``s2_seed``) and a patient x run residual (``s2_resid``):

- test-set variance ``(s2_patient + s2_resid / R) / P``: exactly the cluster-robust (patients as clusters)
  variance of the pooled estimate, with ``P - 1`` degrees of freedom;
- recipe variance ``s2_patient / P + s2_fold * sum_f (R_f / R)**2 + s2_seed / R + s2_resid / (P R)``: the
  expected squared error of the estimate when the test patients *and* the runs are drawn again, with a
  Satterthwaite degrees of freedom over the mean squares it uses (1 fold: no fold term, the fold-to-fold
  variation is not estimable; 1 run per fold: folds and seeds are one term).

Each interval is a t interval on the logit scale (delta method) mapped back, so it never leaves [0, 1]
and is asymmetric where Dice is near 1; an estimate of exactly 0 or 1 gives a zero-width interval with the
reason in ``note``. ``benchmarks/calibration.py`` measures both against simulated studies with known
truth (heavy tails, missed structures, collapses, unequal folds, failed runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.special import expit

from robustseg.errors import InputError
from robustseg.stats._util import as_tuple, check_alpha, check_conditions, groups, numeric, require_columns

INTERVAL_KINDS = ("recipe", "test-set")
ZERO_COLUMNS = ("est_hit", "se_hit", "n_zero", "n_rows", "zero_weight")
INTERVAL_COLUMNS = ("statistic", "interval", "estimate", "ci_low", "ci_high", "se", "df", "n_patients", "n_images",
                    "n_runs", "n_folds", "s2_patient", "s2_fold", "s2_seed", "s2_resid", "mean_den", *ZERO_COLUMNS,
                    "note", "alpha")
STATISTICS = ("mean", "global_dice")


POOL_P = 0.25
"""Folds are pooled with seeds when the F test of the fold term has p >= this (Bancroft's sometimes-pool rule)."""


def crossed_components(z: np.ndarray, folds: Sequence[object]) -> dict[str, float]:
    """Variance components of a complete ``(patients, runs)`` table ``z`` with runs nested in ``folds``.

    Mean squares: patients (``ms_patient``, df ``P - 1``), folds (``ms_fold``, df ``F - 1``, from the run
    means), runs within folds (``ms_seed``, df ``R - F``), residual (``ms_resid``, df ``(P - 1)(R - 1)``).
    Method-of-moments components, truncated at 0: ``s2_resid = ms_resid``, ``s2_patient = (ms_patient -
    ms_resid) / R``, ``s2_seed = (ms_seed - ms_resid) / P``, ``s2_fold = (ms_fold - ms_seed) / (P n0)`` with
    ``n0 = (R - sum R_f**2 / R) / (F - 1)`` (unequal folds). The fold term is kept only when its F test
    (``ms_fold / ms_seed``) has ``p_fold < POOL_P``; otherwise folds and seeds are pooled into one run term
    (``ms_seed`` then has ``R - 1`` df and ``fold_pooled`` is True), as is also the case with one run per
    fold or one fold. Returns those plus ``df_*`` and ``fold_weight = sum_f (R_f / R)**2``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(0, 1, (30, 1)) + rng.normal(0, 0.5, (1, 6)) + rng.normal(0, 0.2, (30, 6))
    >>> c = crossed_components(z, [0, 0, 0, 1, 1, 1])
    >>> round(c["s2_patient"], 1), c["df_patient"], c["df_seed"], c["fold_pooled"]
    (0.7, 29.0, 4.0, False)
    """
    z = np.asarray(z, dtype=np.float64)
    n_p, n_r = z.shape
    codes, _ = pd.factorize(pd.Series(list(folds), dtype=object), sort=True)
    n_f = int(codes.max()) + 1 if codes.size else 0
    sizes = np.bincount(codes, minlength=n_f).astype(np.float64)
    grand = z.mean() if z.size else 0.0
    row = z.mean(axis=1)
    col = z.mean(axis=0)
    fold_mean = np.bincount(codes, weights=col, minlength=n_f) / np.maximum(sizes, 1)
    nan = float("nan")
    ms = {"ms_patient": nan, "ms_resid": nan, "ss_fold": nan, "ss_seed": nan}
    if n_p >= 2:
        ms["ms_patient"] = n_r * float(((row - grand) ** 2).sum()) / (n_p - 1)
    if n_p >= 2 and n_r >= 2:
        resid = z - row[:, None] - col[None, :] + grand
        ms["ms_resid"] = float((resid**2).sum()) / ((n_p - 1) * (n_r - 1))
    if n_r >= 2:
        ms["ss_seed"] = n_p * float(((col - fold_mean[codes]) ** 2).sum())
        ms["ss_fold"] = n_p * float((sizes * (fold_mean - col.mean()) ** 2).sum())
    return components_from_ms(ms, n_p, sizes)


def components_from_ms(ms: dict[str, float], n_patients: int, fold_sizes: np.ndarray) -> dict[str, float]:
    """The components of :func:`crossed_components` from its sums of squares: ``ms_patient``, ``ms_resid``,
    ``ss_fold`` (between folds) and ``ss_seed`` (runs within folds); ``fold_sizes`` = runs per fold. Shared by
    the report's intervals and by the planner, which draws these from their expected values.

    Examples
    --------
    >>> c = components_from_ms({"ms_patient": 4.0, "ms_resid": 1.0, "ss_fold": 0.5, "ss_seed": 8.0}, 20,
    ...                        np.array([3.0, 3.0]))
    >>> c["fold_pooled"], round(c["s2_seed"], 4), round(c["s2_patient"], 2)
    (True, 0.035, 0.5)
    """
    n_p = int(n_patients)
    sizes = np.asarray(fold_sizes, dtype=np.float64)
    n_f, n_r = sizes.size, float(sizes.sum())
    nan = float("nan")
    resid_ms = ms["ms_resid"] if np.isfinite(ms["ms_resid"]) else 0.0
    out = {"ms_patient": ms["ms_patient"], "ms_fold": nan, "ms_seed": nan, "ms_resid": ms["ms_resid"],
           "df_patient": float(n_p - 1), "df_fold": float(n_f - 1), "df_seed": float(n_r - n_f),
           "df_resid": float((n_p - 1) * (n_r - 1)), "s2_patient": nan, "s2_fold": 0.0, "s2_seed": 0.0,
           "s2_resid": resid_ms if np.isfinite(ms["ms_resid"]) else 0.0,
           "fold_weight": float(((sizes / n_r) ** 2).sum()) if n_r else nan, "n0": nan, "p_fold": nan,
           "fold_pooled": True}
    if n_p >= 2:
        out["s2_patient"] = max((ms["ms_patient"] - resid_ms) / n_r, 0.0) if n_r >= 2 else ms["ms_patient"] / n_r
    if n_r < 2:
        return out
    if n_f >= 2 and n_r > n_f:
        out["ms_fold"], ms_seed = ms["ss_fold"] / (n_f - 1), ms["ss_seed"] / (n_r - n_f)
        out["p_fold"] = float(sps.f.sf(out["ms_fold"] / ms_seed, n_f - 1, n_r - n_f)) if ms_seed > 0 else 0.0
        if out["p_fold"] < POOL_P:
            n0 = (n_r - float((sizes**2).sum()) / n_r) / (n_f - 1)
            out.update(n0=n0, fold_pooled=False, ms_seed=ms_seed,
                       s2_fold=max((out["ms_fold"] - ms_seed) / (n_p * n0), 0.0),
                       s2_seed=max((ms_seed - resid_ms) / n_p, 0.0))
            return out
    out.update(ms_seed=(ms["ss_fold"] + ms["ss_seed"]) / (n_r - 1), df_seed=float(n_r - 1), fold_weight=0.0)
    out["s2_seed"] = max((out["ms_seed"] - resid_ms) / n_p, 0.0)
    return out


def recipe_variance(c: dict[str, float], n_patients: int, n_runs: int) -> tuple[float, float]:
    """Variance of the pooled mean of ``z`` when patients and runs are drawn again, and its Satterthwaite df.

    ``c`` is :func:`crossed_components`: ``s2_patient / P + s2_fold * fold_weight + s2_seed / R + s2_resid /
    (P R)``, written as a combination of the mean squares that estimate it (only the components that are not
    truncated at 0 enter); the df follow from those.

    Examples
    --------
    >>> c = {"ms_patient": 4.0, "ms_fold": 9.0, "ms_seed": 3.0, "ms_resid": 1.0, "df_patient": 19.0,
    ...      "df_fold": 1.0, "df_seed": 4.0, "df_resid": 95.0, "s2_patient": 0.5, "s2_fold": 0.1,
    ...      "s2_seed": 0.1, "s2_resid": 1.0, "fold_weight": 0.5, "n0": 3.0, "fold_pooled": False}
    >>> v, df = recipe_variance(c, 20, 6)
    >>> round(v, 4), round(df, 1)
    (0.1, 1.8)
    """
    n_p, n_r = float(n_patients), float(n_runs)
    unit = 1.0 / (n_p * n_r)
    terms: list[tuple[float, float, float]] = []  # (coefficient, mean square, df)
    coef_resid = unit
    if c["s2_patient"] > 0 or not np.isfinite(c["ms_resid"]):
        terms.append((unit, c["ms_patient"], c["df_patient"]))
        coef_resid -= unit
    coef_seed = 0.0
    if c["s2_seed"] > 0:
        coef_seed = unit
        coef_resid -= unit
    if not c.get("fold_pooled", True) and c["s2_fold"] > 0:
        w = c["fold_weight"] / (n_p * c["n0"])
        terms.append((w, c["ms_fold"], c["df_fold"]))
        coef_seed -= w
    if coef_seed != 0.0:
        terms.append((coef_seed, c["ms_seed"], c["df_seed"]))
    if coef_resid != 0.0 and np.isfinite(c["ms_resid"]):
        terms.append((coef_resid, c["ms_resid"], c["df_resid"]))
    var = float(sum(a * ms for a, ms, _ in terms))
    den = sum((a * ms) ** 2 / d for a, ms, d in terms if d > 0)
    df = var**2 / den if den > 0 else float("nan")
    return max(var, 0.0), float(df)


def logit_t_interval(estimate: float, se: float, df: float, alpha: float) -> tuple[float, float, str]:
    """``expit(logit(estimate) -/+ t_{df} se / (estimate (1 - estimate)))``: a t interval on the logit scale
    (delta method), inside [0, 1] by construction. Returns ``(low, high, note)``; an estimate of 0 or 1 or a
    zero SE gives ``[estimate, estimate]`` and says why.

    Examples
    --------
    >>> lo, hi, note = logit_t_interval(0.9, 0.03, 19, 0.05)
    >>> round(lo, 3), round(hi, 3), note
    (0.818, 0.948, '')
    >>> logit_t_interval(1.0, 0.0, 19, 0.05)
    (1.0, 1.0, 'estimate is 1: no spread to resample')
    """
    q = float(sps.t.ppf(1 - alpha / 2, df)) if np.isfinite(df) and df > 0 else float("nan")
    return logit_interval(estimate, se, q)


def logit_interval(estimate: float, se: float, q: float) -> tuple[float, float, str]:
    """:func:`logit_t_interval` with its t quantile ``q`` given (callers that build many intervals compute the
    quantiles at once); a non-finite ``q`` stands for too few degrees of freedom."""
    if np.isfinite(estimate) and (estimate <= 0.0 or estimate >= 1.0 or se == 0.0):
        return float(estimate), float(estimate), f"estimate is {estimate:g}: no spread to resample"
    if not (np.isfinite(estimate) and np.isfinite(se) and np.isfinite(q)):
        return float("nan"), float("nan"), "too few patients or runs for an interval"
    centre = np.log(estimate / (1 - estimate))
    half = q * se / (estimate * (1 - estimate))
    lo, hi = 1 / (1 + np.exp(-(centre - half))), 1 / (1 + np.exp(-(centre + half)))
    return float(lo), float(hi), ""


ZERO_DRAWS = 20000
"""Monte Carlo draws of the rare-zero allowance (fixed generator: the interval is deterministic)."""


def rare_zero_quantiles(est_hit: float, se_hit: float, df: float, n_zero: float, n_rows: float,
                        zero_weight: float, alpha: float = 0.05) -> tuple[float, float]:
    """Interval of ``theta = theta_hit * (1 - m)`` where ``m`` is the share of the denominator held by rows that
    score 0 (missed structures, false alarms) and ``theta_hit`` the ratio over the other rows.

    ``theta_hit`` gets the logit-t distribution of its estimate ``est_hit`` with standard error ``se_hit``;
    the zero rate gets Jeffreys' ``Beta(n_zero + 1/2, n_rows - n_zero + 1/2)``, scaled by ``zero_weight`` (a
    zero row's denominator over the average row's; 1 for a mean). Returns the ``alpha/2`` and ``1 - alpha/2``
    quantiles of the product over ``ZERO_DRAWS`` draws (fixed generator): with no zero row in 40 images the
    rate can still be ~6 %, and the lower bound says so, where a t interval on the observed rows cannot.

    Examples
    --------
    >>> lo, hi = rare_zero_quantiles(0.95, 0.0, 19, 0, 40, 1.0)
    >>> round(lo, 3), round(hi, 3)
    (0.892, 0.95)
    """
    nan = float("nan")
    if not (np.isfinite(est_hit) and np.isfinite(se_hit) and df > 0 and n_rows > 0):
        return nan, nan
    rng = np.random.default_rng(0)
    rate = rng.beta(n_zero + 0.5, max(n_rows - n_zero, 0.0) + 0.5, ZERO_DRAWS)
    if 0.0 < est_hit < 1.0 and se_hit > 0:
        z = np.log(est_hit / (1 - est_hit)) + se_hit / (est_hit * (1 - est_hit)) * rng.standard_t(df, ZERO_DRAWS)
        hit = expit(z)
    else:
        hit = np.full(ZERO_DRAWS, est_hit)
    theta = hit * (1.0 - np.minimum(rate * zero_weight, 1.0))
    lo, hi = np.quantile(theta, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def zero_part(num: np.ndarray, den: np.ndarray, zero_den: np.ndarray, zeros: np.ndarray, rows: np.ndarray
              ) -> dict[str, float]:
    """The inputs of :func:`rare_zero_quantiles` from ``(patients, runs)`` tables of sums: ``est_hit``,
    ``se_hit`` (cluster-robust over patients), ``n_zero`` and ``n_rows`` per run (zero rows and rows divided
    by the runs: a fixed set of images), ``zero_weight``.

    Examples
    --------
    >>> z = zero_part(np.array([[1.8], [1.7], [0.9]]), np.full((3, 1), 2.0), np.array([[0.0], [0.0], [1.0]]),
    ...               np.array([[0.0], [0.0], [1.0]]), np.full((3, 1), 2.0))
    >>> round(z["est_hit"], 3), z["n_zero"], z["n_rows"], z["zero_weight"]
    (0.88, 1.0, 6.0, 1.0)
    """
    n_p, n_r = num.shape
    p_num, p_den = num.sum(axis=1), (den - zero_den).sum(axis=1)
    total = float(p_den.sum())
    est = float(p_num.sum()) / total if total > 0 else float("nan")
    se = float(np.sqrt(n_p / (n_p - 1) * ((p_num - est * p_den) ** 2).sum())) / total if n_p >= 2 and total > 0 \
        else float("nan")
    n_zero, n_rows = float(zeros.sum()), float(rows.sum())
    weight = (float(zero_den.sum()) / n_zero) / (float(den.sum()) / n_rows) if n_zero and n_rows else 1.0
    return {"est_hit": est, "se_hit": se, "n_zero": n_zero / max(n_r, 1), "n_rows": n_rows / max(n_r, 1),
            "zero_weight": weight}


@dataclass(frozen=True)
class RatioTables:
    """Per patient (rows) x run (columns) sums of a ratio statistic: numerator, denominator, the denominator
    of the rows that score 0, the count of those rows and of all rows; ``folds`` of the runs."""

    num: np.ndarray
    den: np.ndarray
    zero_den: np.ndarray
    zeros: np.ndarray
    rows: np.ndarray
    folds: list


def ratio_tables(sub: pd.DataFrame, statistic: str, patient_col: str, run_cols: Sequence[str]) -> RatioTables:
    """:class:`RatioTables` of ``sub`` (columns ``_v`` for a mean, ``_tp, _fp, _fn`` for global Dice); patients
    and runs sorted, a patient without rows in a run has zero sums there."""
    run_cols = list(run_cols)
    if statistic == "mean":
        v = sub["_v"].to_numpy(dtype=np.float64)
        ok = np.isfinite(v)
        sub = sub[ok]
        num, den = v[ok], np.ones(int(ok.sum()))
    else:
        tp, fp, fn = (sub[c].to_numpy(dtype=np.float64) for c in ("_tp", "_fp", "_fn"))
        num, den = 2 * tp, 2 * tp + fp + fn
    p_codes, _ = pd.factorize(sub[patient_col], sort=True)
    r_codes, runs = pd.MultiIndex.from_frame(sub[run_cols]).factorize(sort=True)
    n_p, n_r = (int(p_codes.max()) + 1, int(r_codes.max()) + 1) if len(sub) else (0, 0)
    cell = p_codes * n_r + r_codes
    zero = (num == 0) & (den > 0)

    def total(weights: np.ndarray) -> np.ndarray:
        return np.bincount(cell, weights=weights, minlength=n_p * n_r).reshape(n_p, n_r)

    return RatioTables(total(num), total(den), total(np.where(zero, den, 0.0)), total(zero * 1.0),
                       total((den > 0) * 1.0), [r[0] for r in runs])


def ratio_intervals(t: RatioTables, alpha: float = 0.05) -> dict[str, dict[str, float | str]]:
    """Test-set and recipe intervals of ``sum num / sum den`` from :class:`RatioTables`.

    *test-set*: the logit-t interval with the cluster-robust SE (``P - 1`` df), widened to the hull of
    :func:`rare_zero_interval` (zero rows counted per image: zero rows / runs out of rows / runs). *recipe*:
    the logit-t interval with the recipe variance (:func:`recipe_variance`), widened to contain the test-set
    interval (new runs and new patients can only add uncertainty). Returns ``{"test-set": {...}, "recipe":
    {...}}``, each with ``estimate, ci_low, ci_high, se, df, note`` and the components of
    :func:`crossed_components` scaled to the estimate (divided by the squared mean denominator per patient
    and run, ``mean_den``).

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> den = np.ones((20, 6))
    >>> num = np.clip(0.8 + rng.normal(0, 0.1, (20, 1)) + rng.normal(0, 0.03, (1, 6)), 0, 1)
    >>> t = RatioTables(num, den, np.zeros_like(den), np.zeros_like(den), den, [0, 0, 0, 1, 1, 1])
    >>> out = ratio_intervals(t)
    >>> test, rec = out["test-set"], out["recipe"]
    >>> bool(rec["ci_high"] - rec["ci_low"] > test["ci_high"] - test["ci_low"] > 0), round(test["df"], 1)
    (True, 19.0)
    """
    num, den = t.num, t.den
    n_p, n_r = num.shape
    total = float(den.sum())
    est = float(num.sum() / total) if total > 0 else float("nan")
    c = crossed_components(num - est * den, t.folds)
    mean_den = total / (n_p * n_r) if n_p and n_r else float("nan")
    scale = 1.0 / mean_den**2 if mean_den > 0 else float("nan")
    comps = {k: c[k] * scale for k in ("s2_patient", "s2_fold", "s2_seed", "s2_resid")}
    n_f = len(set(t.folds))
    var_test = c["ms_patient"] / (n_p * n_r) if n_p >= 2 else float("nan")
    var_recipe, df_recipe = recipe_variance(c, n_p, n_r) if n_p >= 2 else (float("nan"), float("nan"))
    out: dict[str, dict[str, float | str]] = {}
    zp = dict.fromkeys(ZERO_COLUMNS, float("nan"))
    for kind, var, df in (("test-set", var_test, c["df_patient"]), ("recipe", var_recipe, df_recipe)):
        se = float(np.sqrt(var * scale)) if np.isfinite(var) else float("nan")
        lo, hi, note = logit_t_interval(est, se, df, alpha)
        if kind == "test-set" and n_p >= 2 and np.isfinite(est):
            zp = zero_part(num, den, t.zero_den, t.zeros, t.rows)
            z_lo, z_hi = rare_zero_quantiles(zp["est_hit"], zp["se_hit"], n_p - 1, zp["n_zero"], zp["n_rows"],
                                             zp["zero_weight"], alpha)
            if np.isfinite(z_lo) and (not np.isfinite(lo) or z_lo < lo or z_hi > hi):
                lo, hi = (z_lo, z_hi) if not np.isfinite(lo) else (min(lo, z_lo), max(hi, z_hi))
                note = "widened for zero scores this test set cannot rule out" if zp["n_zero"] == 0 else \
                    "widened for the uncertain rate of zero scores (misses, false alarms)"
        if kind == "recipe":
            t_lo, t_hi = out["test-set"]["ci_low"], out["test-set"]["ci_high"]
            if np.isfinite(t_lo) and np.isfinite(lo):
                lo, hi = min(lo, t_lo), max(hi, t_hi)
            if n_r < 2:
                note = "one run: training variation not estimable, the interval covers patients only"
            elif n_f < 2:
                note = "one fold: fold-to-fold variation not estimable"
        out[kind] = {"estimate": est, "ci_low": lo, "ci_high": hi, "se": se, "df": float(df), "note": note,
                     "mean_den": mean_den, **comps, **zp}
    return out


def dice_intervals(
    per_image: pd.DataFrame,
    statistic: str = "global_dice",
    by: Sequence[str] = ("arm", "class"),
    *,
    value: str = "dice",
    patient_col: str = "patient_id",
    image_col: str = "image_id",
    fold_col: str = "fold",
    seed_col: str = "seed",
    tp: str = "tp",
    fp: str = "fp",
    fn: str = "fn",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Recipe and test-set intervals of pooled Dice per group of ``by`` (two rows per group, recipe first).

    ``statistic``: ``global_dice`` (pixels pooled over every image and run of the group) or ``mean`` (mean of
    ``value`` over every image x run row with a defined value). Runs are ``(fold, seed)``; every run must
    score the same patients (a run's missing patient counts as zero sums). *test-set*: the trained models
    held fixed, patients resampled (cluster-robust, ``P - 1`` df). *recipe*: new patients and new training
    runs (see the module docstring). Both are logit-scale t intervals inside [0, 1].

    Columns after ``by``: ``statistic, interval, estimate, ci_low, ci_high, se, df, n_patients, n_images,
    n_runs, n_folds``, the variance components ``s2_patient, s2_fold, s2_seed, s2_resid`` (on the squared
    Dice scale, per patient and run: the recipe variance is ``s2_patient / P + s2_fold * sum (R_f/R)**2 +
    s2_seed / R + s2_resid / (P R)``), ``mean_den``, ``note`` (why an interval is degenerate or what it
    cannot cover), ``alpha``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> rows = [{"arm": "a", "class": "lv", "fold": f, "seed": s, "patient_id": p, "image_id": p,
    ...          "dice": float(np.clip(0.8 + 0.1 * np.sin(p) + 0.03 * (f - s) + rng.normal(0, 0.02), 0, 1))}
    ...         for f in range(2) for s in range(3) for p in range(20)]
    >>> r = dice_intervals(pd.DataFrame(rows), statistic="mean")
    >>> r["interval"].tolist(), bool((r["ci_low"] >= 0).all() and (r["ci_high"] <= 1).all())
    (['recipe', 'test-set'], True)
    >>> w = (r["ci_high"] - r["ci_low"]).round(3).tolist(); w[0] > w[1]
    True
    """
    where = "dice_intervals"
    if statistic not in STATISTICS:
        raise InputError(f"{where}: unknown statistic {statistic!r}; expected one of {', '.join(STATISTICS)}")
    check_alpha(alpha, where)
    by = as_tuple(by)
    values = [value] if statistic == "mean" else [tp, fp, fn]
    require_columns(per_image, [*by, patient_col, image_col, fold_col, seed_col, *values], where)
    check_conditions(per_image, by, where)
    if per_image[patient_col].isna().any():
        raise InputError(f"{where}: column {patient_col!r} has missing values; every row needs a patient")
    work = per_image[list(dict.fromkeys([*by, patient_col, image_col, fold_col, seed_col]))].copy()
    if statistic == "mean":
        work["_v"] = numeric(per_image, value, where)
    else:
        for col, name in ((tp, "_tp"), (fp, "_fp"), (fn, "_fn")):
            work[name] = numeric(per_image, col, where)
        work = work[np.isfinite(work[["_tp", "_fp", "_fn"]].to_numpy()).all(axis=1)]
    rows = []
    for key, sub in groups(work, by):
        tabs = ratio_tables(sub, statistic, patient_col, [fold_col, seed_col])
        res = ratio_intervals(tabs, alpha) if tabs.num.size else {}
        n_img = int(sub[image_col].nunique())
        for kind in INTERVAL_KINDS:
            r = res.get(kind, {})
            rows.append({**key, "statistic": statistic, "interval": kind, **{c: r.get(c, np.nan) for c in (
                "estimate", "ci_low", "ci_high", "se", "df", "s2_patient", "s2_fold", "s2_seed", "s2_resid",
                "mean_den", *ZERO_COLUMNS)}, "n_patients": tabs.num.shape[0], "n_images": n_img, "n_runs": tabs.num.shape[1],
                "n_folds": len(set(tabs.folds)), "note": r.get("note", "no rows"), "alpha": float(alpha)})
    return pd.DataFrame(rows, columns=[*by, *INTERVAL_COLUMNS])
