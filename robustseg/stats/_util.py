"""Shared helpers of the statistics modules: input checks, grouping, bootstrap weights."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

from robustseg.errors import InputError


def as_tuple(cols: str | Sequence[str] | None) -> tuple[str, ...]:
    """Normalise a column argument (``None``, one name or several) to a tuple of names."""
    if cols is None:
        return ()
    if isinstance(cols, str):
        return (cols,)
    return tuple(cols)


def require_columns(df: pd.DataFrame, cols: Sequence[str], where: str) -> None:
    """Raise ``InputError`` naming the first column of ``cols`` that ``df`` lacks."""
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"{where}: expected a pandas DataFrame, got {type(df).__name__}")
    for col in cols:
        if col not in df.columns:
            have = ", ".join(map(str, df.columns))
            raise InputError(f"{where}: column {col!r} not found in table (columns: {have})")


def numeric(df: pd.DataFrame, col: str, where: str) -> np.ndarray:
    """Column ``col`` as float64; raise ``InputError`` if it is not numeric."""
    series = df[col]
    if not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)):
        raise InputError(f"{where}: column {col!r} must be numeric, got dtype {series.dtype}")
    return series.to_numpy(dtype=np.float64, na_value=np.nan)


def check_alpha(alpha: float, where: str) -> None:
    """``alpha`` must lie strictly between 0 and 1."""
    if not 0.0 < float(alpha) < 1.0:
        raise InputError(f"{where}: alpha must be in (0, 1), got {alpha!r}")


def check_n_boot(n_boot: int, where: str) -> None:
    """``n_boot`` must be a positive integer."""
    if int(n_boot) != n_boot or n_boot < 1:
        raise InputError(f"{where}: n_boot must be a positive integer, got {n_boot!r}")


def groups(df: pd.DataFrame, by: tuple[str, ...]) -> Iterator[tuple[dict[str, object], pd.DataFrame]]:
    """Yield ``({col: value}, sub_frame)`` per group of ``by`` (sorted; one group when ``by`` is empty)."""
    if not by:
        yield {}, df
        return
    for key, sub in df.groupby(list(by), sort=True, dropna=False, observed=True):
        yield dict(zip(by, key, strict=True)), sub


def bootstrap_weights(cluster: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap weights of the rows, ``(n_boot, n_rows)``, resampling whole clusters with replacement.

    ``cluster`` holds the cluster code (0..P-1) of each row. Each bootstrap draws P clusters with
    replacement (multinomial counts); a row's weight is the count of its cluster. Statistics are then
    weighted sums, so no Python loop over bootstrap replicates is needed.
    """
    n_clusters = int(cluster.max()) + 1 if cluster.size else 0
    counts = rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=n_boot)
    return counts[:, cluster].astype(np.float64)


def weighted_median(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Median of ``values`` under each row of integer ``weights`` ``(B, n)``: the median of the expanded sample."""
    order = np.argsort(values, kind="stable")
    v = values[order]
    cum = np.cumsum(weights[:, order], axis=1)
    half = cum[:, -1:] / 2.0
    lo = (cum >= half).argmax(axis=1)
    hi = (cum > half).argmax(axis=1)
    out = (v[lo] + v[hi]) / 2.0
    out[cum[:, -1] == 0] = np.nan
    return out


def percentile_ci(samples: np.ndarray, alpha: float) -> tuple[float, float]:
    """Percentile interval ``(alpha/2, 1-alpha/2)`` of the finite bootstrap samples (NaN if none)."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(finite, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


#: Metrics where a smaller value is better; every other metric is taken as higher-is-better.
LOWER_IS_BETTER = frozenset({"hd95_mm", "hd95", "hd_mm", "assd_mm", "mismatch", "anomaly_score"})


def resolve_direction(metric: object, higher_is_better: bool | None) -> bool:
    """``higher_is_better`` if given, else ``False`` for the names in ``LOWER_IS_BETTER``, else ``True``."""
    if higher_is_better is not None:
        return bool(higher_is_better)
    return str(metric) not in LOWER_IS_BETTER


#: Columns of the study's per-image table that name an evaluation condition; pooling across them is a bug.
CONDITION_COLUMNS = ("testset", "perturbation", "severity")


def check_conditions(df: pd.DataFrame, keys: Sequence[str], where: str) -> None:
    """Raise ``InputError`` if a condition column varies in ``df`` but is not among the grouping ``keys``."""
    for col in CONDITION_COLUMNS:
        if col in df.columns and col not in keys and df[col].nunique(dropna=False) > 1:
            values = ", ".join(map(str, pd.unique(df[col])[:4]))
            raise InputError(
                f"{where}: column {col!r} holds several values ({values}); add {col!r} to the grouping "
                "columns or filter the table first, so that evaluation conditions are not pooled"
            )
