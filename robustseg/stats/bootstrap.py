"""Patient-level bootstrap confidence intervals (resampling patients, not images)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from robustseg.errors import InputError
from robustseg.stats._util import (
    as_tuple,
    bootstrap_weights,
    check_alpha,
    check_conditions,
    check_n_boot,
    groups,
    numeric,
    percentile_ci,
    require_columns,
    weighted_median,
)

STATISTICS = ("mean", "median", "global_dice", "global_iou")
BOOTSTRAP_COLUMNS = (
    "statistic",
    "estimate",
    "ci_low",
    "ci_high",
    "n_patients",
    "n_images",
    "n_rows",
    "n_boot",
    "alpha",
)


def attach_patients(
    per_image: pd.DataFrame,
    index: pd.DataFrame,
    image_col: str = "image_id",
    patient_col: str = "patient_id",
) -> pd.DataFrame:
    """Return ``per_image`` with ``patient_col`` looked up from the dataset index by ``image_col``.

    Raises ``InputError`` naming an image of ``per_image`` that the index lacks.
    """
    where = "attach_patients"
    require_columns(per_image, [image_col], where + " (per-image table)")
    require_columns(index, [image_col, patient_col], where + " (index)")
    lookup = index[[image_col, patient_col]].drop_duplicates(image_col)
    out = per_image.drop(columns=[patient_col], errors="ignore").merge(lookup, on=image_col, how="left")
    missing = out[patient_col].isna()
    if missing.any():
        raise InputError(
            f"{where}: image {out.loc[missing, image_col].iloc[0]!r} is not in the index "
            f"({int(missing.sum())} rows without a {patient_col})"
        )
    return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def patient_bootstrap_ci(
    per_image: pd.DataFrame,
    value: str | None = "dice",
    by: Sequence[str] = ("arm", "class"),
    patient_col: str = "patient_id",
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
    statistic: str = "mean",
    *,
    image_col: str | None = "image_id",
    tp: str = "tp",
    fp: str = "fp",
    fn: str = "fn",
) -> pd.DataFrame:
    """Percentile bootstrap CI of a statistic per group of ``by``, resampling patients with replacement.

    Each replicate draws as many patients as the group has, with replacement, and keeps all rows of
    every drawn patient (all its images, and all runs if the group spans several seeds/folds), so the
    CI reflects patient-to-patient variability, not image count. ``statistic``:

    - ``mean`` / ``median`` of ``value`` over rows (NaN values left out);
    - ``global_dice`` / ``global_iou`` from pooled ``tp, fp, fn`` (``value`` is not used).

    Vectorised: replicates are multinomial patient counts times per-patient sums. Every group uses a
    generator seeded with ``seed`` (results do not depend on which other groups are present).

    Returns columns ``*by, statistic, estimate, ci_low, ci_high, n_patients, n_images`` (distinct
    ``image_col`` values, or rows if ``image_col`` is None), ``n_rows, n_boot, alpha``.
    """
    where = "patient_bootstrap_ci"
    if statistic not in STATISTICS:
        raise InputError(f"{where}: unknown statistic {statistic!r}; expected one of {', '.join(STATISTICS)}")
    check_alpha(alpha, where)
    check_n_boot(n_boot, where)
    by = as_tuple(by)
    is_global = statistic.startswith("global_")
    value_cols = [tp, fp, fn] if is_global else [value]
    if not is_global and value is None:
        raise InputError(f"{where}: statistic {statistic!r} needs a `value` column")
    extra = [image_col] if image_col else []
    require_columns(per_image, [*by, patient_col, *value_cols, *extra], where)
    check_conditions(per_image, by, where)
    work = per_image[list(dict.fromkeys([*by, patient_col, *extra]))].copy()
    for col in value_cols:
        work[col] = numeric(per_image, col, where)
    if work[patient_col].isna().any():
        raise InputError(f"{where}: column {patient_col!r} has missing values; every row needs a patient")

    rows = []
    for key, sub in groups(work, by):
        finite = np.isfinite(sub[value_cols].to_numpy()).all(axis=1)
        sub = sub[finite]
        codes, _ = pd.factorize(sub[patient_col], sort=True)
        n_pat = int(codes.max()) + 1 if codes.size else 0
        rng = np.random.default_rng(seed)
        est = float("nan")
        boots = np.full(0, np.nan)
        if n_pat:
            if statistic == "median":
                v = sub[value].to_numpy()
                est = float(np.median(v))
                boots = weighted_median(v, bootstrap_weights(codes, n_boot, rng))
            else:
                per_pat = sub.groupby(codes, sort=True)[value_cols].sum().to_numpy()  # (P, k)
                counts = bootstrap_weights(np.arange(n_pat), n_boot, rng)  # (B, P) patient counts
                if statistic == "mean":
                    n_rows_pat = np.bincount(codes, minlength=n_pat).astype(np.float64)
                    est = float(per_pat[:, 0].sum() / n_rows_pat.sum())
                    boots = _ratio(counts @ per_pat[:, 0], counts @ n_rows_pat)
                else:
                    t, p, f = (counts @ per_pat[:, i] for i in range(3))
                    tt, pp, ff = per_pat.sum(axis=0)
                    if statistic == "global_dice":
                        est = float(_ratio(np.array(2 * tt), np.array(2 * tt + pp + ff)))
                        boots = _ratio(2 * t, 2 * t + p + f)
                    else:
                        est = float(_ratio(np.array(tt), np.array(tt + pp + ff)))
                        boots = _ratio(t, t + p + f)
        low, high = percentile_ci(boots, alpha)
        rows.append(
            {
                **key,
                "statistic": statistic,
                "estimate": est,
                "ci_low": low,
                "ci_high": high,
                "n_patients": n_pat,
                "n_images": int(sub[image_col].nunique()) if image_col else len(sub),
                "n_rows": len(sub),
                "n_boot": int(n_boot),
                "alpha": float(alpha),
            }
        )
    return pd.DataFrame(rows, columns=[*by, *BOOTSTRAP_COLUMNS])
