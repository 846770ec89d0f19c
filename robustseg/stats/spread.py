"""Run-level aggregation of the per-image table, spread across seeds and folds, ensembles vs members."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from robustseg.errors import InputError
from robustseg.metrics._common import DEFAULT_EMPTY_POLICY, OVERLAP_METRICS
from robustseg.metrics.table import aggregate_global, aggregate_per_image
from robustseg.stats._util import (
    as_tuple,
    check_conditions,
    groups,
    numeric,
    require_columns,
    resolve_direction,
)

RUN_LEVEL_COLUMNS = ("aggregate", "metric", "value", "n")
SPREAD_COLUMNS = ("mean", "sd", "sd_seed", "sd_fold", "cv", "cv_seed", "n_runs", "n_seeds", "n_folds")
ENSEMBLE_COLUMNS = (
    "n_members",
    "member_mean",
    "member_sd",
    "member_min",
    "member_max",
    "ensemble",
    "ensemble_minus_mean",
    "rank",
    "n_ranked",
    "higher_is_better",
)


def run_level_metrics(
    per_image: pd.DataFrame,
    *,
    runs: Sequence[str] = ("arm", "fold", "seed"),
    per_image_metrics: Sequence[str] = ("dice", "iou", "hd95_mm", "nsd"),
    global_metrics: Sequence[str] = ("dice", "iou"),
    empty_policy: str = DEFAULT_EMPTY_POLICY,
) -> pd.DataFrame:
    """Aggregate the per-image table to one value per run, class, aggregate and metric (long format).

    ``runs`` names the columns identifying a run (add ``testset``, ``perturbation``, ``severity`` to
    keep evaluation conditions apart). Uses :func:`robustseg.metrics.aggregate_global` and
    :func:`robustseg.metrics.aggregate_per_image`:

    - ``aggregate == "global"``: pixels pooled over the run's images (``dice = 2 TP / (2 TP + FP + FN)``,
      ``iou = TP / (TP + FP + FN)``; ``empty_policy`` only matters when a class is absent everywhere);
      ``n`` = images.
    - ``aggregate == "per_image"``: mean of each per-image metric, NaN values excluded; ``n`` = non-NaN
      images.

    Returns columns ``*runs, class, aggregate, metric, value, n``.

    Examples
    --------
    >>> df = pd.DataFrame({"arm": "a", "fold": 0, "seed": 0, "class": "csp", "tp": [8, 2], "fp": [2, 0],
    ...                    "fn": [2, 2], "ref_pixels": [10, 4], "pred_pixels": [10, 2], "dice": [0.8, 2 / 3]})
    >>> lv = run_level_metrics(df, per_image_metrics=("dice",), global_metrics=("dice",))
    >>> lv[["aggregate", "value"]].round(3).values.tolist()
    [['global', 0.769], ['per_image', 0.733]]
    """
    where = "run_level_metrics"
    runs = list(as_tuple(runs))
    pim, gm = list(as_tuple(per_image_metrics)), list(as_tuple(global_metrics))
    require_columns(per_image, [*runs, "class", "tp", "fp", "fn", "ref_pixels", "pred_pixels", *pim], where)
    for col in ("tp", "fp", "fn", *pim):
        numeric(per_image, col, where)
    unknown = [m for m in gm if m not in OVERLAP_METRICS]
    if unknown:
        raise InputError(
            f"{where}: unknown global metric {unknown[0]!r}; expected one of {', '.join(OVERLAP_METRICS)}"
        )
    keys = [*runs, "class"]
    check_conditions(per_image, keys, where)
    glob = aggregate_global(per_image, runs, empty_policy)
    glob = glob[[*keys, "n_images", *gm]].melt(
        id_vars=[*keys, "n_images"], var_name="metric", value_name="value"
    )
    glob = glob.rename(columns={"n_images": "n"}).assign(aggregate="global")
    parts = [glob]
    if pim:
        per = aggregate_per_image(per_image, runs, pim)
        for m in pim:
            parts.append(
                per[keys].assign(aggregate="per_image", metric=m, value=per[f"{m}_mean"], n=per[f"{m}_n"])
            )
    out = pd.concat(parts, ignore_index=True)[[*keys, "aggregate", "metric", "value", "n"]]
    out["value"] = out["value"].astype(np.float64)
    out["n"] = out["n"].astype(np.int64)
    return out.sort_values([*runs, "aggregate"], kind="stable").reset_index(drop=True)


def _pooled_within_sd(values: np.ndarray, folds: np.ndarray) -> float:
    """Pooled SD over seeds within folds: sqrt(sum_f (n_f - 1) var_f / sum_f (n_f - 1))."""
    ss, dof = 0.0, 0
    for fold in np.unique(folds):
        v = values[folds == fold]
        if v.size >= 2:
            ss += float(((v - v.mean()) ** 2).sum())
            dof += v.size - 1
    return float(np.sqrt(ss / dof)) if dof else float("nan")


def spread(
    df: pd.DataFrame,
    value: str = "value",
    by: Sequence[str] = ("arm", "class", "aggregate", "metric"),
    seed_col: str = "seed",
    fold_col: str = "fold",
) -> pd.DataFrame:
    """Mean and spread of a run-level value across seeds and folds, one row per group of ``by``.

    ``df`` holds one row per run (``fold_col`` x ``seed_col``) and group, e.g. the output of
    :func:`run_level_metrics`; runs whose value is NaN are left out. Returned columns, after ``by``:

    - ``mean``: mean over runs; ``sd``: SD over all runs (ddof=1).
    - ``sd_seed``: seed-to-seed SD, the pooled within-fold SD
      ``sqrt(sum_f (n_f-1) var_f / sum_f (n_f-1))`` over folds with >= 2 seeds (NaN if none).
    - ``sd_fold``: SD over folds of the seed-averaged values (NaN with < 2 folds).
    - ``cv`` = ``sd / |mean|``, ``cv_seed`` = ``sd_seed / |mean|`` (NaN when mean is 0).
    - ``n_runs``, ``n_seeds`` (distinct seeds), ``n_folds`` (distinct folds).

    Examples
    --------
    >>> df = pd.DataFrame({"arm": "a", "fold": [0, 0, 1, 1], "seed": [0, 1, 0, 1], "value": [0.8, 0.82, 0.7, 0.74]})
    >>> r = spread(df, by=("arm",)).iloc[0]
    >>> round(float(r["mean"]), 3), round(float(r["sd_seed"]), 4), int(r["n_folds"])
    (0.765, 0.0224, 2)
    """
    where = "spread"
    by = as_tuple(by)
    require_columns(df, [*by, value, seed_col, fold_col], where)
    vals_all = numeric(df, value, where)
    rows = []
    for key, sub in groups(df.assign(_v=vals_all), by):
        if sub.duplicated([fold_col, seed_col]).any():
            dup = sub.loc[sub.duplicated([fold_col, seed_col]), [fold_col, seed_col]].iloc[0].tolist()
            raise InputError(
                f"{where}: group {key} has more than one row for ({fold_col}, {seed_col}) = {tuple(dup)}; "
                "expected one run-level value per run (add the distinguishing column to `by`)"
            )
        sub = sub[np.isfinite(sub["_v"].to_numpy())]
        v = sub["_v"].to_numpy()
        folds = sub[fold_col].to_numpy()
        n = v.size
        mean = float(v.mean()) if n else float("nan")
        sd = float(v.std(ddof=1)) if n >= 2 else float("nan")
        sd_seed = _pooled_within_sd(v, folds) if n else float("nan")
        fold_means = sub.groupby(fold_col, sort=True)["_v"].mean().to_numpy()
        sd_fold = float(fold_means.std(ddof=1)) if fold_means.size >= 2 else float("nan")
        denom = abs(mean) if n and mean != 0 else float("nan")
        rows.append(
            {
                **key,
                "mean": mean,
                "sd": sd,
                "sd_seed": sd_seed,
                "sd_fold": sd_fold,
                "cv": sd / denom,
                "cv_seed": sd_seed / denom,
                "n_runs": n,
                "n_seeds": int(sub[seed_col].nunique()),
                "n_folds": int(sub[fold_col].nunique()),
            }
        )
    return pd.DataFrame(rows, columns=[*by, *SPREAD_COLUMNS])


def ensemble_vs_members(
    members: pd.DataFrame,
    ensemble: pd.DataFrame,
    value: str = "value",
    by: Sequence[str] = ("arm", "class", "aggregate", "metric"),
    *,
    metric_col: str | None = "metric",
    higher_is_better: bool | None = None,
) -> pd.DataFrame:
    """Compare an ensemble's run-level value with the distribution of its members' values.

    ``members`` has one row per member run and group of ``by``; ``ensemble`` exactly one row per group
    (same ``by`` columns, same ``value`` column). Direction: ``higher_is_better`` if given, else taken
    from the metric name in ``metric_col`` (``hd95_mm`` is lower-is-better). Returned columns after ``by``:
    ``n_members, member_mean, member_sd`` (ddof=1), ``member_min, member_max, ensemble,
    ensemble_minus_mean, rank`` (1 = better than every member; ``1 + #members strictly better``),
    ``n_ranked`` (members + 1; ``rank`` is <NA> when the ensemble value is NaN), ``higher_is_better``.
    Groups without an ensemble row are left out.

    Examples
    --------
    >>> mem = pd.DataFrame({"class": "lv", "value": [0.70, 0.72, 0.75]})
    >>> ens = pd.DataFrame({"class": "lv", "value": [0.74]})
    >>> r = ensemble_vs_members(mem, ens, by=("class",), metric_col=None).iloc[0]
    >>> int(r["rank"]), int(r["n_ranked"])
    (2, 4)
    """
    where = "ensemble_vs_members"
    by = as_tuple(by)
    require_columns(members, [*by, value], where + " (members)")
    require_columns(ensemble, [*by, value], where + " (ensemble)")
    if by and ensemble.duplicated(list(by)).any():
        raise InputError(f"{where}: ensemble table has more than one row per group of {list(by)}")
    if not by and len(ensemble) != 1:
        raise InputError(f"{where}: ensemble table must have exactly one row when `by` is empty")
    ens_vals = numeric(ensemble, value, where)
    ens_lookup = {
        tuple(r): v
        for r, v in zip(ensemble[list(by)].itertuples(index=False, name=None), ens_vals, strict=True)
    }
    mem = members.assign(_v=numeric(members, value, where))
    rows = []
    for key, sub in groups(mem, by):
        k = tuple(key[c] for c in by)
        if k not in ens_lookup:
            continue
        e = float(ens_lookup[k])
        v = sub["_v"].to_numpy()
        v = v[np.isfinite(v)]
        metric = key.get(metric_col) if metric_col else None
        hib = resolve_direction(metric, higher_is_better)
        better = (v > e) if hib else (v < e)
        n = v.size
        rows.append(
            {
                **key,
                "n_members": n,
                "member_mean": float(v.mean()) if n else float("nan"),
                "member_sd": float(v.std(ddof=1)) if n >= 2 else float("nan"),
                "member_min": float(v.min()) if n else float("nan"),
                "member_max": float(v.max()) if n else float("nan"),
                "ensemble": e,
                "ensemble_minus_mean": e - float(v.mean()) if n else float("nan"),
                "rank": int(1 + better.sum()) if np.isfinite(e) else None,
                "n_ranked": n + 1,
                "higher_is_better": hib,
            }
        )
    out = pd.DataFrame(rows, columns=[*by, *ENSEMBLE_COLUMNS])
    out["rank"] = out["rank"].astype("Int64")
    return out
