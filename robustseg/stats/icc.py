"""Intraclass correlation (with the Koo & Li reading) and Bland-Altman agreement.

ICC forms follow McGraw & Wong (1996) in pingouin's naming (``ICC(1,1)``, ``ICC(A,1)``, ``ICC(C,1)`` and
the ``k`` variants; Shrout & Fleiss ``ICC1/ICC2/ICC3`` are accepted as aliases). The formulas are those
of :func:`pingouin.intraclass_corr` (checked against it in the tests), computed here from the two-way
ANOVA mean squares because pingouin 0.7 fixes the CI level at 95 % and rounds the CI through its global
``options``; here ``alpha`` is a parameter and nothing is rounded.

Which form for which question:

- Reproducibility across seeds (targets = images, raters = seeds): ``ICC(A,1)`` -- two-way random
  effects (a seed is a random draw from all possible seeds), absolute agreement (a seed that shifts
  every value counts as irreproducibility), single rater (a user trains one model, not the mean of k).
- Predicted vs reference areas (targets = images, raters = {pred, ref}): ``ICC(A,1)`` -- absolute
  agreement, because a model that over-segments every structure by 10 % must score lower even though
  it ranks images perfectly (``ICC(C,1)`` would hide that); single measurement, because one prediction
  replaces one expert tracing. The two raters are fixed rather than random, but the absolute-agreement
  single-measure formula is the same for the mixed and the random model (McGraw & Wong 1996, cases 2A/3A).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from robustseg.errors import InputError
from robustseg.stats._util import as_tuple, check_alpha, check_conditions, groups, numeric, require_columns

ICC_KINDS = ("ICC(1,1)", "ICC(A,1)", "ICC(C,1)", "ICC(1,k)", "ICC(A,k)", "ICC(C,k)")
_ALIASES = {
    "ICC1": "ICC(1,1)",
    "ICC2": "ICC(A,1)",
    "ICC3": "ICC(C,1)",
    "ICC1k": "ICC(1,k)",
    "ICC2k": "ICC(A,k)",
    "ICC3k": "ICC(C,k)",
    "ICC(2,1)": "ICC(A,1)",
    "ICC(3,1)": "ICC(C,1)",
    "ICC(2,k)": "ICC(A,k)",
    "ICC(3,k)": "ICC(C,k)",
}
SEED_REPRODUCIBILITY_KIND = "ICC(A,1)"
REFERENCE_AGREEMENT_KIND = "ICC(A,1)"
ICC_COLUMNS = (
    "kind",
    "icc",
    "ci_low",
    "ci_high",
    "f",
    "df1",
    "df2",
    "pval",
    "n_targets",
    "n_raters",
    "n_dropped",
    "reading",
    "alpha",
)
BLAND_ALTMAN_COLUMNS = ("bias", "sd", "loa_low", "loa_high", "bias_ci_low", "bias_ci_high", "loa_low_ci_low",
                        "loa_low_ci_high", "loa_high_ci_low", "loa_high_ci_high", "slope", "slope_ci_low",
                        "slope_ci_high", "slope_p", "n", "alpha")


def koo_li(value: float) -> str:
    """Koo & Li (2016) category of one ICC value: poor < 0.5 <= moderate < 0.75 <= good < 0.9 <= excellent.

    Examples
    --------
    >>> koo_li(0.8), koo_li(float("nan"))
    ('good', 'n/a')
    """
    if value is None or not np.isfinite(value):
        return "n/a"
    if value < 0.5:
        return "poor"
    if value < 0.75:
        return "moderate"
    if value < 0.9:
        return "good"
    return "excellent"


def koo_li_interval(low: float, high: float) -> str:
    """Koo & Li (2016) reading of an ICC from its confidence interval, as they recommend.

    The category of the interval when both ends fall in one (``"good"``), else the span
    (``"moderate to excellent"``); ``"n/a"`` when an end is NaN.

    Examples
    --------
    >>> koo_li_interval(0.83, 0.94), koo_li_interval(0.76, 0.88), koo_li_interval(float("nan"), 0.9)
    ('good to excellent', 'good', 'n/a')
    """
    lo, hi = koo_li(low), koo_li(high)
    if "n/a" in (lo, hi):
        return "n/a"
    return lo if lo == hi else f"{lo} to {hi}"


def canonical_kind(kind: str) -> str:
    """Map an ICC name (pingouin 0.7 style or Shrout-Fleiss alias) to pingouin 0.7's ``ICC(X,y)`` name.

    Examples
    --------
    >>> canonical_kind("ICC2"), canonical_kind("ICC(3,k)")
    ('ICC(A,1)', 'ICC(C,k)')
    """
    name = _ALIASES.get(kind, kind)
    if name not in ICC_KINDS:
        valid = ", ".join([*ICC_KINDS, *_ALIASES])
        raise InputError(f"icc: unknown kind {kind!r}; expected one of {valid}")
    return name


def icc_from_matrix(x: np.ndarray, kind: str, alpha: float = 0.05) -> dict[str, float]:
    """ICC of a complete ``(n_targets, n_raters)`` matrix: ``icc, ci_low, ci_high, f, df1, df2, pval``.

    Examples
    --------
    >>> x = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7.]])
    >>> round(icc_from_matrix(x, "ICC(C,1)")["icc"], 2)
    0.71
    """
    kind = canonical_kind(kind)
    n, k = x.shape
    grand = x.mean()
    ss_rows = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_err = ((x - grand) ** 2).sum() - ss_rows - ss_cols
    msb = ss_rows / (n - 1)
    msj = ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    msw = (ss_cols + ss_err) / (n * (k - 1))
    df1, df_w, df_e = n - 1, n * (k - 1), (n - 1) * (k - 1)
    q = 1 - alpha / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind in ("ICC(1,1)", "ICC(1,k)", "ICC(C,1)", "ICC(C,k)"):
            # one-way (within-target error) or consistency (residual error): only the error term differs
            ms, df2 = (msw, df_w) if kind.startswith("ICC(1,") else (mse, df_e)
            f_val = msb / ms
            fl = f_val / sps.f.ppf(q, df1, df2)
            fu = f_val * sps.f.ppf(q, df2, df1)
            if kind.endswith(",1)"):
                icc = (msb - ms) / (msb + (k - 1) * ms)
                low, high = (fl - 1) / (fl + k - 1), (fu - 1) / (fu + k - 1)
            else:
                icc = (msb - ms) / msb
                low, high = 1 - 1 / fl, 1 - 1 / fu
        else:  # absolute agreement, McGraw & Wong case 2A: Satterthwaite-approximated F bounds
            f_val, df2 = msb / mse, df_e
            icc1 = (msb - mse) / (msb + (k - 1) * mse + k * (msj - mse) / n)
            fj = msj / mse
            vn = df_e * (k * icc1 * fj + n * (1 + (k - 1) * icc1) - k * icc1) ** 2
            vd = df1 * k**2 * icc1**2 * fj**2 + (n * (1 + (k - 1) * icc1) - k * icc1) ** 2
            v = vn / vd
            f2u = sps.f.ppf(q, n - 1, v)
            f2l = sps.f.ppf(q, v, n - 1)
            low = n * (msb - f2u * mse) / (f2u * (k * msj + (k * n - k - n) * mse) + n * msb)
            high = n * (f2l * msb - mse) / (k * msj + (k * n - k - n) * mse + n * f2l * msb)
            if kind == "ICC(A,1)":
                icc = icc1
            else:
                icc = (msb - mse) / (msb + (msj - mse) / n)
                low, high = low * k / (1 + low * (k - 1)), high * k / (1 + high * (k - 1))
        pval = sps.f.sf(f_val, df1, df2)
    return {
        "icc": float(icc),
        "ci_low": float(low),
        "ci_high": float(high),
        "f": float(f_val),
        "df1": float(df1),
        "df2": float(df2),
        "pval": float(pval),
    }


def icc(
    df: pd.DataFrame,
    targets: str | Sequence[str],
    raters: str,
    ratings: str,
    kind: str = "ICC(A,1)",
    alpha: float = 0.05,
    by: Sequence[str] = (),
) -> pd.DataFrame:
    """Intraclass correlation per group of ``by``, one row per group.

    ``df`` is long: one row per (target, rater) with the rating; ``targets`` may name several columns
    that together identify a target. Targets missing any rater's rating (NaN or absent row) are dropped
    (listwise, as pingouin's ``nan_policy='omit'``) and counted in ``n_dropped``. A duplicated
    (target, rater) pair raises ``InputError``. Fewer than 2 complete targets or 2 raters give NaN.

    Returns columns ``*by, kind, icc, ci_low, ci_high`` (``1 - alpha`` CI), ``f, df1, df2, pval``
    (F test of the ICC against 0), ``n_targets, n_raters, n_dropped, reading`` (:func:`koo_li_interval`
    of the CI, as Koo & Li recommend), ``alpha``.

    Examples
    --------
    >>> x = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7.]])
    >>> long = pd.DataFrame({"t": np.repeat(np.arange(6), 4), "r": np.tile(np.arange(4), 6), "y": x.ravel()})
    >>> row = icc(long, "t", "r", "y", kind="ICC(A,1)").iloc[0]
    >>> round(float(row["icc"]), 2), int(row["n_targets"]), row["reading"]
    (0.29, 6, 'poor to good')
    """
    where = "icc"
    check_alpha(alpha, where)
    kind = canonical_kind(kind)
    by, tcols = as_tuple(by), as_tuple(targets)
    require_columns(df, [*by, *tcols, raters, ratings], where)
    work = df[[*by, *tcols, raters]].copy()
    work["_r"] = numeric(df, ratings, where)
    work["_t"] = work.groupby(list(tcols), sort=True, dropna=False).ngroup()
    rows = []
    for key, sub in groups(work, by):
        dup = sub.duplicated(["_t", raters])
        if dup.any():
            first = sub.loc[dup, [*tcols, raters]].iloc[0].tolist()
            raise InputError(
                f"{where}: more than one {ratings!r} rating for (target, rater) = {tuple(first)}"
                + (f" in group {key}" if key else "")
                + "; expected one rating per target and rater"
            )
        wide = sub.pivot(index="_t", columns=raters, values="_r")
        complete = wide.dropna(axis=0, how="any")
        n, k = complete.shape
        res: dict[str, float] = dict.fromkeys(("icc", "ci_low", "ci_high", "f", "df1", "df2", "pval"), np.nan)
        if n >= 2 and k >= 2:
            res = icc_from_matrix(complete.to_numpy(dtype=np.float64), kind, alpha)
        rows.append(
            {
                **key,
                "kind": kind,
                **res,
                "n_targets": n,
                "n_raters": k,
                "n_dropped": int(len(wide) - n),
                "reading": koo_li_interval(res["ci_low"], res["ci_high"]),
                "alpha": float(alpha),
            }
        )
    return pd.DataFrame(rows, columns=[*by, *ICC_COLUMNS])


def seed_reproducibility_icc(
    per_image: pd.DataFrame,
    value: str = "dice",
    by: Sequence[str] = ("arm", "fold", "class"),
    image_col: str = "image_id",
    seed_col: str = "seed",
    kind: str = SEED_REPRODUCIBILITY_KIND,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """ICC across seeds of a per-image value (Dice, predicted area, ...): targets = images, raters = seeds.

    Keep ``fold`` (and ``testset``/``perturbation``/``severity`` if present) in ``by``: seeds are only
    replicates of each other within one fold's training data. Columns as :func:`icc`. To pool folds use
    :func:`robustseg.stats.pooled_seed_icc` (seeds nested in folds), not ``fold`` x image targets.

    Examples
    --------
    >>> rows = [{"arm": "a", "fold": 0, "class": "lv", "image_id": i, "seed": s, "dice": 0.1 * i + 0.01 * s}
    ...         for i in range(5) for s in range(3)]
    >>> r = seed_reproducibility_icc(pd.DataFrame(rows)).iloc[0]
    >>> int(r["n_targets"]), int(r["n_raters"]), bool(r["icc"] > 0.95)
    (5, 3, True)
    """
    check_conditions(per_image, as_tuple(by), "seed_reproducibility_icc")
    return icc(per_image, targets=image_col, raters=seed_col, ratings=value, kind=kind, alpha=alpha, by=by)


def reference_agreement_icc(
    df: pd.DataFrame,
    pred: str,
    ref: str,
    by: Sequence[str] = ("arm", "class"),
    targets: str | Sequence[str] = ("image_id",),
    kind: str = REFERENCE_AGREEMENT_KIND,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """ICC between a predicted and a reference measurement held in two columns (e.g. areas in mm²).

    Each row is one target (``targets`` columns, e.g. image_id, or image_id + seed to count every run's
    prediction); the two columns become the raters ``pred`` and ``ref``. Columns as :func:`icc`.

    Examples
    --------
    >>> df = pd.DataFrame({"arm": "a", "class": "csp", "image_id": range(5), "ref": [10.0, 20, 30, 40, 50],
    ...                    "pred": [12.0, 19, 33, 41, 52]})
    >>> round(float(reference_agreement_icc(df, "pred", "ref")["icc"].iloc[0]), 2)
    0.99
    """
    by, tcols = as_tuple(by), as_tuple(targets)
    require_columns(df, [*by, *tcols, pred, ref], "reference_agreement_icc")
    long = df[[*by, *tcols, pred, ref]].melt(
        id_vars=[*by, *tcols], value_vars=[pred, ref], var_name="_rater", value_name="_value"
    )
    return icc(long, targets=tcols, raters="_rater", ratings="_value", kind=kind, alpha=alpha, by=by)


def proportional_bias(ref: np.ndarray, diff: np.ndarray, alpha: float = 0.05) -> dict[str, float]:
    """Slope of ``diff`` (prediction - reference) on ``ref`` with an HC3 standard error: ``slope,
    slope_ci_low, slope_ci_high, slope_p`` (t on ``n - 2`` df). NaN with fewer than 3 pairs or a constant
    reference. See :func:`bland_altman` for why the reference, not the mean, is the regressor.

    Examples
    --------
    >>> ref = np.array([10.0, 20, 30, 40, 50, 60])
    >>> r = proportional_bias(ref, 0.1 * ref + np.array([0.5, -0.5, 0.3, -0.3, 0.2, -0.2]))
    >>> round(r["slope"], 3), bool(r["slope_p"] < 0.01)
    (0.094, True)
    """
    nan = float("nan")
    x, y = np.asarray(ref, dtype=np.float64), np.asarray(diff, dtype=np.float64)
    n = x.size
    out = dict.fromkeys(("slope", "slope_ci_low", "slope_ci_high", "slope_p"), nan)
    if n < 3 or np.ptp(x) == 0:
        return out
    xc = x - x.mean()
    sxx = float((xc**2).sum())
    b = float((xc * (y - y.mean())).sum()) / sxx
    e = y - y.mean() - b * xc
    h = 1.0 / n + xc**2 / sxx
    se = float(np.sqrt((xc**2 * e**2 / np.maximum(1 - h, 1e-12) ** 2).sum()) / sxx)
    q = float(sps.t.ppf(1 - alpha / 2, n - 2))
    p = float(2 * sps.t.sf(abs(b / se), n - 2)) if se > 0 else (0.0 if b else 1.0)
    return {"slope": b, "slope_ci_low": b - q * se, "slope_ci_high": b + q * se, "slope_p": p}


def bland_altman(
    df: pd.DataFrame,
    pred: str,
    ref: str,
    by: Sequence[str] = (),
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Bland-Altman agreement of ``pred`` against ``ref`` per group of ``by`` (rows with a NaN dropped).

    Differences are ``pred - ref``. Returns columns ``*by, bias`` (mean difference), ``sd`` (ddof=1),
    ``loa_low, loa_high`` (``bias -/+ z_{1-alpha/2} sd``, 1.96 sd for alpha = 0.05), ``bias_ci_low,
    bias_ci_high`` (t interval of the mean difference), ``loa_low_ci_low, loa_low_ci_high,
    loa_high_ci_low, loa_high_ci_high`` (exact ``1 - alpha`` intervals of each limit from the noncentral
    t distribution, Carkeet 2015), ``slope, slope_ci_low, slope_ci_high, slope_p`` (proportional bias:
    least-squares slope of the difference on the **reference** value, HC3 heteroscedasticity-robust standard
    error, t interval and two-sided p against 0 on ``n - 2`` df; NaN with fewer than 3 pairs or a constant
    reference), ``n, alpha``.

    Why the reference and not the mean of the two: the slope of the difference on the mean is
    ``(var(pred) - var(ref)) / (2 var(mean))`` when there is no proportional bias at all, so it flags a
    prediction that is merely noisier than the reference (it is the Pitman-Morgan test of equal variances).
    The reference is the standard the prediction is judged against; regressed on it, the slope is unbiased
    whatever the prediction's error variance, and HC3 keeps the test valid when errors grow with the area.
    Its assumption: the reference's own tracing error is small against the spread of true areas (a noisy
    reference attenuates the slope). ``benchmarks/calibration.py`` measures the false-flag rate at n = 8, 15
    and 40.

    Examples
    --------
    >>> df = pd.DataFrame({"ref": [10.0, 20, 30, 40, 50], "pred": [11.0, 22, 33, 44, 55]})
    >>> r = bland_altman(df, "pred", "ref").iloc[0]
    >>> round(float(r["bias"]), 2), round(float(r["slope"]), 3), bool(r["slope_p"] < 0.001), int(r["n"])
    (3.0, 0.1, True, 5)
    >>> bool(r["loa_high_ci_low"] < r["loa_high"] < r["loa_high_ci_high"])
    True
    """
    where = "bland_altman"
    check_alpha(alpha, where)
    by = as_tuple(by)
    require_columns(df, [*by, pred, ref], where)
    work = df[list(by)].copy()
    p_val, r_val = numeric(df, pred, where), numeric(df, ref, where)
    work["_d"] = p_val - r_val
    work["_m"] = (p_val + r_val) / 2
    work["_r"] = r_val
    z = float(sps.norm.ppf(1 - alpha / 2))
    nan = float("nan")
    rows = []
    for key, sub in groups(work, by):
        d, m = sub["_d"].to_numpy(), sub["_m"].to_numpy()
        ok = np.isfinite(d) & np.isfinite(m)
        d, m = d[ok], m[ok]
        n = d.size
        bias = float(d.mean()) if n else nan
        sd = float(d.std(ddof=1)) if n >= 2 else nan
        half = float(sps.t.ppf(1 - alpha / 2, n - 1)) * sd / np.sqrt(n) if n >= 2 else nan
        loa = dict.fromkeys(("loa_low_ci_low", "loa_low_ci_high", "loa_high_ci_low", "loa_high_ci_high"), nan)
        if n >= 2:
            q_lo, q_hi = sps.nct.ppf([alpha / 2, 1 - alpha / 2], n - 1, z * np.sqrt(n))
            loa = {"loa_high_ci_low": bias + sd * q_lo / np.sqrt(n), "loa_high_ci_high": bias + sd * q_hi / np.sqrt(n),
                   "loa_low_ci_low": bias - sd * q_hi / np.sqrt(n), "loa_low_ci_high": bias - sd * q_lo / np.sqrt(n)}
        slope = proportional_bias(sub["_r"].to_numpy()[ok], d, alpha)
        rows.append(
            {
                **key,
                "bias": bias,
                "sd": sd,
                "loa_low": bias - z * sd,
                "loa_high": bias + z * sd,
                "bias_ci_low": bias - half,
                "bias_ci_high": bias + half,
                **{k: float(v) for k, v in loa.items()},
                **slope,
                "n": n,
                "alpha": float(alpha),
            }
        )
    return pd.DataFrame(rows, columns=[*by, *BLAND_ALTMAN_COLUMNS])
