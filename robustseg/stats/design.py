"""Run-level tests for the designs people run, their minimum detectable difference and equivalence.

One function, :func:`design_test`, tests ``mean(A) - mean(B)`` on run-level values laid out as arrays
``(..., folds, seeds)`` (NaN where a run is missing: a failed run, an unequal fold), vectorised over the
leading axes so that the same code serves the report (one comparison) and the simulations of
``robustseg plan`` and ``benchmarks/calibration.py`` (thousands):

- **k folds x n seeds** (both arms have seeds to spare within a fold): blocked by fold. The difference is
  the mean over shared folds of the per-fold differences of means; each arm's variance is its pooled
  within-fold (seed-to-seed) variance, so a fold effect shared by both arms leaves the test; Welch-
  Satterthwaite df.
- **1 fold x n seeds**: the same formula with one block, i.e. Welch's t.
- **k folds x 1 seed** (nnU-Net's design; no within-fold variance): paired by fold, a one-sample t on the
  per-fold differences with ``k - 1`` df.

:func:`mdd` is the smallest true difference the test detects with the given power (noncentral t),
:func:`tost` the two one-sided tests of equivalence within ``+/- margin``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import optimize
from scipy import stats as sps

DESIGNS = {"blocked": "k x n: blocked by fold", "welch": "1 x n: Welch", "paired": "k x 1: paired by fold",
           "none": "not testable"}
"""Design codes of :func:`design_test` and their labels in the report."""


def design_test(a: np.ndarray, b: np.ndarray, alpha: float = 0.05) -> dict[str, np.ndarray]:
    """Test of ``mean(a) - mean(b)`` for arrays ``(..., folds, seeds)`` of run values (NaN = no run).

    Fold ``f`` of ``a`` and of ``b`` must be the same fold (the caller aligns them); only folds where both
    arms have a run are used. Returns arrays over the leading axes: ``diff, se, df, t, p`` (two-sided),
    ``ci_low, ci_high`` (``1 - alpha``), ``n_a, n_b`` (runs used), ``n_folds`` (shared folds) and ``design``
    (a code of :data:`DESIGNS`). Without a variance (one run per arm, or one shared fold with one run on a
    side) ``design`` is ``none`` and the statistics other than ``diff`` are NaN.

    Examples
    --------
    >>> a = np.array([[0.80, 0.82, 0.84]]); b = np.array([[0.70, 0.72, 0.74]])
    >>> r = design_test(a, b)
    >>> str(r["design"]), round(float(r["se"]), 4), bool(r["p"] < 0.01)
    ('welch', 0.0163, True)
    >>> k1 = design_test(np.array([[0.80], [0.85], [0.78], [0.90], [0.83]]),
    ...                  np.array([[0.75], [0.79], [0.74], [0.86], [0.77]]))
    >>> str(k1["design"]), float(k1["df"]), round(float(k1["diff"]), 3)
    ('paired', 4.0, 0.05)
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape[:-1] != b.shape[:-1]:
        raise ValueError(f"design_test: fold axes differ: {a.shape} vs {b.shape}")
    ca, cb = np.isfinite(a).sum(-1), np.isfinite(b).sum(-1)
    use = (ca > 0) & (cb > 0)
    nf = use.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ma = np.where(ca > 0, np.nansum(a, -1) / np.maximum(ca, 1), np.nan)
        mb = np.where(cb > 0, np.nansum(b, -1) / np.maximum(cb, 1), np.nan)
        d_f = np.where(use, ma - mb, np.nan)
        diff = np.where(nf > 0, np.nansum(np.where(use, d_f, 0.0), -1) / np.maximum(nf, 1), np.nan)
        ssa = np.where(use[..., None], np.nan_to_num((a - ma[..., None]) ** 2), 0.0).sum((-1, -2))
        ssb = np.where(use[..., None], np.nan_to_num((b - mb[..., None]) ** 2), 0.0).sum((-1, -2))
        dfa = np.where(use, ca - 1, 0).sum(-1)
        dfb = np.where(use, cb - 1, 0).sum(-1)
        wa = np.where(use, 1.0 / np.maximum(ca, 1), 0.0).sum(-1) / np.maximum(nf, 1) ** 2
        wb = np.where(use, 1.0 / np.maximum(cb, 1), 0.0).sum(-1) / np.maximum(nf, 1) ** 2
        va, vb = ssa / np.maximum(dfa, 1) * wa, ssb / np.maximum(dfb, 1) * wb
        blocked = (dfa >= 1) & (dfb >= 1)
        se_b = np.sqrt(va + vb)
        df_b = (va + vb) ** 2 / (va**2 / np.maximum(dfa, 1) + vb**2 / np.maximum(dfb, 1))
        df_b = np.where((va + vb) > 0, df_b, dfa + dfb)
        paired = ~blocked & (nf >= 2)
        dev = np.where(use, d_f - diff[..., None], 0.0)
        sd_d = np.sqrt((dev**2).sum(-1) / np.maximum(nf - 1, 1))
        se_p = sd_d / np.sqrt(np.maximum(nf, 1))
        se = np.where(blocked, se_b, np.where(paired, se_p, np.nan))
        df = np.where(blocked, df_b, np.where(paired, nf - 1.0, np.nan))
        t = np.where(se > 0, diff / se, np.where(diff == 0, np.nan, np.sign(diff) * np.inf))
        p = np.where(se > 0, 2 * sps.t.sf(np.abs(t), df), np.where(diff == 0, 1.0, 0.0))
        p = np.where(np.isfinite(se), p, np.nan)
        q = sps.t.ppf(1 - alpha / 2, df)
        half = np.where(se > 0, q * se, 0.0)
    design = np.where(blocked, np.where(nf > 1, "blocked", "welch"), np.where(paired, "paired", "none"))
    n_a = np.where(use, ca, 0).sum(-1)
    n_b = np.where(use, cb, 0).sum(-1)
    return {"diff": diff, "se": se, "df": df, "t": t, "p": p, "ci_low": diff - half, "ci_high": diff + half,
            "n_a": n_a, "n_b": n_b, "n_folds": nf, "design": design}


_GRID = (np.arange(2000) + 0.5) / 2000


def power(diff: float, se: float, df: float, alpha: float = 0.05) -> float:
    """Power of a two-sided t test at level ``alpha`` to detect a true difference ``diff`` when the estimate
    has standard error ``se`` on ``df`` degrees of freedom (noncentral t).

    Examples
    --------
    >>> round(power(0.03, 0.01, 10), 3)
    0.771
    """
    if not (np.isfinite(se) and np.isfinite(df)) or se <= 0 or df <= 0:
        return float("nan")
    tc = sps.t.ppf(1 - alpha / 2, df)
    nc = abs(diff) / se
    # P(|Z + nc| > tc sqrt(V / df)), V ~ chi2(df): averaged over a fine quantile grid of V (scipy's noncentral t
    # returns NaN for some small-df, large-nc cases)
    scale = tc * _chi_grid(float(df))
    return float(np.mean(sps.norm.sf(scale - nc) + sps.norm.cdf(-scale - nc)))


@lru_cache(maxsize=256)
def _chi_grid(df: float) -> np.ndarray:
    """``sqrt(V / df)`` on the quantile grid of V ~ chi2(df), computed once per df (the MDD search calls
    :func:`power` a dozen times with one df; the chi-square quantiles were most of its cost)."""
    out = np.sqrt(sps.chi2.ppf(_GRID, df) / df)
    out.flags.writeable = False
    return out


def mdd(se: float, df: float, alpha: float = 0.05, target: float = 0.8) -> float:
    """Minimum detectable difference: the true difference a two-sided t test at level ``alpha`` finds with
    probability ``target`` (noncentral t; NaN without a standard error).

    Examples
    --------
    >>> round(mdd(0.01, 10), 4)
    0.0311
    """
    if not (np.isfinite(se) and np.isfinite(df)) or se <= 0 or df <= 0:
        return float("nan")
    hi = se * 2 * (sps.t.ppf(1 - alpha / 2, df) + sps.t.ppf(target, df))
    while power(hi, se, df, alpha) < target:
        hi *= 2
    return float(optimize.brentq(lambda d: power(d, se, df, alpha) - target, 0.0, hi, xtol=se * 1e-6))


def tost(diff: np.ndarray | float, se: np.ndarray | float, df: np.ndarray | float, margin: float
         ) -> np.ndarray | float:
    """p-value of the two one-sided tests (TOST) of ``|true difference| < margin``: the larger of the two
    one-sided p-values; small means equivalent. Equivalent at level ``alpha`` exactly when the ``1 - 2 alpha``
    t interval lies inside ``(-margin, margin)``.

    Examples
    --------
    >>> round(float(tost(0.002, 0.003, 18, 0.01)), 4), round(float(tost(0.002, 0.01, 18, 0.01)), 2)
    (0.0079, 0.22)
    """
    diff, se, df = (np.asarray(x, dtype=np.float64) for x in (diff, se, df))
    with np.errstate(invalid="ignore", divide="ignore"):
        p_low = sps.t.sf((diff + margin) / se, df)
        p_high = sps.t.cdf((diff - margin) / se, df)
        out = np.where(se > 0, np.maximum(p_low, p_high), np.where(np.abs(diff) < margin, 0.0, 1.0))
    out = np.where(np.isfinite(se) & np.isfinite(df), out, np.nan)
    return float(out) if out.ndim == 0 else out
