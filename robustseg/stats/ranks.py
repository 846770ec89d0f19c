"""Rank statistics for anomaly scores: AUROC (Mann-Whitney) and Spearman rank correlation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from robustseg.errors import InputError
from robustseg.stats._util import as_tuple, check_alpha, groups, numeric, require_columns

AUROC_COLUMNS = ("auroc", "se", "ci_low", "ci_high", "n_pos", "n_neg", "n_dropped", "alpha")
RANK_CORRELATION_COLUMNS = ("rho", "pval", "n", "method")


def _binary_labels(labels: np.ndarray, where: str) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.dtype == bool:
        return lab
    try:
        num = lab.astype(np.float64)
    except (TypeError, ValueError):
        raise InputError(
            f"{where}: labels must be boolean or 0/1, got values like {lab[:3].tolist()}"
        ) from None
    bad = ~np.isin(num, (0.0, 1.0))
    if bad.any():
        raise InputError(f"{where}: labels must be boolean or 0/1, got {lab[bad][0]!r}")
    return num == 1.0


def auroc(scores: Sequence[float] | np.ndarray, labels: Sequence[object] | np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the positive ``labels`` (higher score = more positive).

    Rank-based (Mann-Whitney U / (n_pos n_neg)) with average ranks, so tied scores count one half.
    Raises ``InputError`` for NaN scores, non-binary labels, mismatched lengths or a missing class.

    Examples
    --------
    >>> auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    0.75
    """
    where = "auroc"
    s = np.asarray(scores, dtype=np.float64)
    y = _binary_labels(np.asarray(labels), where)
    if s.shape != y.shape or s.ndim != 1:
        raise InputError(
            f"{where}: scores and labels must be 1-D of equal length, got {s.shape} and {y.shape}"
        )
    if not np.isfinite(s).all():
        raise InputError(f"{where}: scores contain NaN or infinite values")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise InputError(
            f"{where}: need both positive and negative labels, got {n_pos} positive, {n_neg} negative"
        )
    ranks = sps.rankdata(s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def auroc_ci(scores: Sequence[float] | np.ndarray, labels: Sequence[object] | np.ndarray,
             alpha: float = 0.05) -> dict[str, float]:
    """AUROC with its DeLong (1988) standard error and a ``1 - alpha`` CI on the logit scale.

    DeLong's structural components (midranks, so ties count one half) give ``se``; the interval is
    ``expit(logit(A) -/+ z se / (A (1 - A)))``, which stays inside (0, 1) and is less optimistic than
    ``A -/+ z se`` with few cases. With perfectly separated classes (A = 0 or 1, DeLong SE 0) the
    interval uses ``A`` moved 1 / (2 n_pos n_neg) inside (0, 1) and the Hanley-McNeil (1982) variance.
    Returns ``auroc, se, ci_low, ci_high, n_pos, n_neg``; input checks as :func:`auroc`.

    Examples
    --------
    >>> r = auroc_ci([0.1, 0.4, 0.35, 0.8, 0.7, 0.2, 0.9, 0.5], [0, 0, 1, 1, 1, 0, 1, 0])
    >>> round(r["auroc"], 4), round(r["se"], 4), round(r["ci_low"], 3), round(r["ci_high"], 3)
    (0.875, 0.1443, 0.345, 0.989)
    """
    check_alpha(alpha, "auroc_ci")
    a = auroc(scores, labels)
    s = np.asarray(scores, dtype=np.float64)
    y = _binary_labels(np.asarray(labels), "auroc_ci")
    x_pos, x_neg = s[y], s[~y]
    m, n = x_pos.size, x_neg.size
    r_all = sps.rankdata(np.concatenate([x_pos, x_neg]))
    v10 = (r_all[:m] - sps.rankdata(x_pos)) / n
    v01 = 1.0 - (r_all[m:] - sps.rankdata(x_neg)) / m
    var = (v10.var(ddof=1) / m if m > 1 else 0.0) + (v01.var(ddof=1) / n if n > 1 else 0.0)
    se = float(np.sqrt(var))
    z = float(sps.norm.ppf(1 - alpha / 2))
    ac = float(np.clip(a, 0.5 / (m * n), 1 - 0.5 / (m * n)))
    if se == 0.0 or ac != a:
        q1, q2 = ac / (2 - ac), 2 * ac**2 / (1 + ac)
        var_hm = (ac * (1 - ac) + (m - 1) * (q1 - ac**2) + (n - 1) * (q2 - ac**2)) / (m * n)
        se_use = float(np.sqrt(max(var_hm, 0.0)))
    else:
        se_use = se
    logit = np.log(ac / (1 - ac))
    half = z * se_use / (ac * (1 - ac))
    low, high = 1 / (1 + np.exp(-(logit - half))), 1 / (1 + np.exp(-(logit + half)))
    return {"auroc": a, "se": se, "ci_low": float(low), "ci_high": float(high), "n_pos": m, "n_neg": n}


def auroc_table(df: pd.DataFrame, score: str, label: str, by: Sequence[str] = (),
                alpha: float = 0.05) -> pd.DataFrame:
    """:func:`auroc_ci` per group of ``by``; rows with a NaN score or label are dropped and counted.

    Returns columns ``*by, auroc`` (NaN when a group lacks one class), ``se, ci_low, ci_high`` (DeLong,
    logit scale), ``n_pos, n_neg, n_dropped, alpha``.

    Examples
    --------
    >>> df = pd.DataFrame({"s": [0.1, 0.4, 0.35, 0.8, np.nan], "y": [0, 0, 1, 1, 1]})
    >>> auroc_table(df, "s", "y")[["auroc", "n_pos", "n_neg", "n_dropped"]].values.tolist()
    [[0.75, 2.0, 2.0, 1.0]]
    """
    where = "auroc_table"
    by = as_tuple(by)
    require_columns(df, [*by, score, label], where)
    work = df[list(by)].copy()
    work["_s"] = numeric(df, score, where)
    work["_l"] = df[label].to_numpy()
    rows = []
    for key, sub in groups(work, by):
        ok = np.isfinite(sub["_s"].to_numpy()) & sub["_l"].notna().to_numpy()
        y = _binary_labels(sub["_l"].to_numpy()[ok], where) if ok.any() else np.zeros(0, bool)
        s = sub["_s"].to_numpy()[ok]
        n_pos, n_neg = int(y.sum()), int((~y).sum())
        res = auroc_ci(s, y, alpha) if n_pos and n_neg else dict.fromkeys(("auroc", "se", "ci_low", "ci_high"),
                                                                          float("nan"))
        rows.append({**key, "auroc": res["auroc"], "se": res["se"], "ci_low": res["ci_low"],
                     "ci_high": res["ci_high"], "n_pos": n_pos, "n_neg": n_neg, "n_dropped": int((~ok).sum()),
                     "alpha": float(alpha)})
    return pd.DataFrame(rows, columns=[*by, *AUROC_COLUMNS])


def rank_correlation(df: pd.DataFrame, x: str, y: str, by: Sequence[str] = ()) -> pd.DataFrame:
    """Spearman rank correlation of ``x`` and ``y`` per group of ``by`` (rows with a NaN dropped).

    Returns columns ``*by, rho, pval`` (two-sided, :func:`scipy.stats.spearmanr`), ``n, method``;
    rho and pval are NaN with fewer than 3 pairs or a constant column.

    Examples
    --------
    >>> df = pd.DataFrame({"x": [1, 2, 3, 4], "y": [1, 3, 2, 4]})
    >>> round(float(rank_correlation(df, "x", "y")["rho"].iloc[0]), 6)
    0.8
    """
    where = "rank_correlation"
    by = as_tuple(by)
    require_columns(df, [*by, x, y], where)
    work = df[list(by)].copy()
    work["_x"], work["_y"] = numeric(df, x, where), numeric(df, y, where)
    rows = []
    for key, sub in groups(work, by):
        xv, yv = sub["_x"].to_numpy(), sub["_y"].to_numpy()
        ok = np.isfinite(xv) & np.isfinite(yv)
        xv, yv = xv[ok], yv[ok]
        rho = p = float("nan")
        if xv.size >= 3 and np.ptp(xv) > 0 and np.ptp(yv) > 0:
            res = sps.spearmanr(xv, yv)
            rho, p = float(res.statistic), float(res.pvalue)
        rows.append({**key, "rho": rho, "pval": p, "n": int(xv.size), "method": "spearman"})
    return pd.DataFrame(rows, columns=[*by, *RANK_CORRELATION_COLUMNS])
