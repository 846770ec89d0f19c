"""Rank statistics for anomaly scores: AUROC (Mann-Whitney) and Spearman rank correlation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from robustseg.errors import InputError
from robustseg.stats._util import as_tuple, groups, numeric, require_columns

AUROC_COLUMNS = ("auroc", "n_pos", "n_neg", "n_dropped")
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


def auroc_table(df: pd.DataFrame, score: str, label: str, by: Sequence[str] = ()) -> pd.DataFrame:
    """:func:`auroc` per group of ``by``; rows with a NaN score or label are dropped and counted.

    Returns columns ``*by, auroc`` (NaN when a group lacks one class), ``n_pos, n_neg, n_dropped``.
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
        value = auroc(s, y) if n_pos and n_neg else float("nan")
        rows.append({**key, "auroc": value, "n_pos": n_pos, "n_neg": n_neg, "n_dropped": int((~ok).sum())})
    return pd.DataFrame(rows, columns=[*by, *AUROC_COLUMNS])


def rank_correlation(df: pd.DataFrame, x: str, y: str, by: Sequence[str] = ()) -> pd.DataFrame:
    """Spearman rank correlation of ``x`` and ``y`` per group of ``by`` (rows with a NaN dropped).

    Returns columns ``*by, rho, pval`` (two-sided, :func:`scipy.stats.spearmanr`), ``n, method``;
    rho and pval are NaN with fewer than 3 pairs or a constant column.
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
