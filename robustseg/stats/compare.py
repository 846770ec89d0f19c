"""Paired comparison of two study arms: Wilcoxon signed-rank, Holm, rank-biserial, seed-noise verdict."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

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
    resolve_direction,
    weighted_median,
)
from robustseg.stats.spread import _pooled_within_sd

COMPARE_COLUMNS = (
    "metric",
    "arm_a",
    "arm_b",
    "n_pairs",
    "n_patients",
    "mean_a",
    "mean_b",
    "mean_diff",
    "mean_diff_ci_low",
    "mean_diff_ci_high",
    "median_diff",
    "median_diff_ci_low",
    "median_diff_ci_high",
    "w",
    "pval",
    "p_holm",
    "rbc",
    "sd_seed_a",
    "sd_seed_b",
    "seed_sd_diff",
    "exceeds_seed_noise",
    "verdict",
    "higher_is_better",
    "alpha",
    "n_boot",
)
NO_DIFFERENCE = "no difference beyond seed noise"


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values; NaN entries stay NaN and do not count as tests.

    Examples
    --------
    >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return out
    ps = p[ok]
    order = np.argsort(ps, kind="stable")
    adj = np.maximum.accumulate((m - np.arange(m)) * ps[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(adj, 1.0)
    out[ok] = adjusted
    return out


def rank_biserial(diff: np.ndarray) -> float:
    """Matched-pairs rank-biserial correlation (Kerby 2014) of paired differences, zeros left out.

    ``(R+ - R-) / (R+ + R-)`` with ranks of ``|diff|`` (ties averaged); +1 when every difference is
    positive. NaN when no difference is non-zero.

    Examples
    --------
    >>> rank_biserial(np.array([1.0, 2.0, -0.5, 0.0]))
    0.6666666666666666
    """
    d = np.asarray(diff, dtype=np.float64)
    d = d[np.isfinite(d) & (d != 0)]
    if d.size == 0:
        return float("nan")
    r = sps.rankdata(np.abs(d))
    return float((r[d > 0].sum() - r[d < 0].sum()) / r.sum())


def _wilcoxon(d: np.ndarray) -> tuple[float, float]:
    if d.size == 0:
        return float("nan"), float("nan")
    if not np.any(d != 0):
        return 0.0, 1.0
    res = sps.wilcoxon(d)
    return float(res.statistic), float(res.pvalue)


def compare_arms(
    per_image: pd.DataFrame,
    value: str = "dice",
    *,
    arm_a: str,
    arm_b: str,
    arm_col: str = "arm",
    by: Sequence[str] = ("class",),
    image_col: str = "image_id",
    seed_col: str = "seed",
    fold_col: str = "fold",
    patient_col: str | None = None,
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
    spread_k: float = 2.0,
    higher_is_better: bool | None = None,
    family_by: Sequence[str] = (),
) -> pd.DataFrame:
    """Paired per-image comparison of ``arm_a`` against ``arm_b`` for each group of ``by`` (models held fixed).

    The report's arm comparison is :func:`robustseg.stats.compare_runs` (run level, so seed noise is in
    the test, and on every image). This per-image Wilcoxon holds the trained models fixed: its p-values
    describe these models on these images, and it drops the images where either arm's value is NaN.

    Pairing: within a group, each arm's rows of an image are first averaged over all its runs (seeds
    and folds; NaN values left out), then images present in both arms are paired, so an image counts
    once and seeds do not inflate n. Differences are ``a - b``. Put ``testset``/``perturbation``/
    ``severity`` in ``by`` when the table holds several (pooling them raises ``InputError``).

    - ``w``, ``pval``: two-sided Wilcoxon signed-rank test (:func:`scipy.stats.wilcoxon`, zero
      differences dropped; all-zero differences give p = 1).
    - ``p_holm``: Holm-adjusted over the rows of the result (one family per group of ``family_by``;
      default: all rows, i.e. across classes).
    - ``rbc``: matched-pairs rank-biserial correlation (> 0: a higher than b).
    - mean and median difference with percentile bootstrap CIs (resampling patients when
      ``patient_col`` is given, else images; ``n_boot`` replicates, generator seeded with ``seed``).
    - Seed noise: each arm's run-level value (mean over the paired images of one fold x seed run) gives
      a pooled within-fold seed SD (``sd_seed_a``, ``sd_seed_b``); the SD of the difference of one run
      of each arm is ``seed_sd_diff = sqrt(sd_seed_a² + sd_seed_b²)``. ``exceeds_seed_noise`` is
      ``|mean_diff| > spread_k * seed_sd_diff``.
    - ``verdict``: ``"<arm> better"`` when ``p_holm < alpha`` and the difference exceeds seed noise (the
      better arm from the sign and ``higher_is_better``, inferred from ``value`` when None: hd95 is
      lower-is-better); ``"undetermined (one seed)"`` when significant but no seed SD exists;
      ``"not testable"`` without pairs; else ``"no difference beyond seed noise"``.

    Returns columns ``*by`` plus ``COMPARE_COLUMNS``.

    Examples
    --------
    >>> rows = [{"arm": arm, "fold": 0, "seed": s, "class": "csp", "image_id": i, "dice": base + 0.01 * i + 0.001 * s}
    ...         for arm, base in (("a", 0.8), ("b", 0.7)) for s in (0, 1) for i in range(8)]
    >>> compare_arms(pd.DataFrame(rows), arm_a="a", arm_b="b", n_boot=100)[["n_pairs", "verdict"]].values.tolist()
    [[8, 'a better']]
    """
    where = "compare_arms"
    check_alpha(alpha, where)
    check_n_boot(n_boot, where)
    by, family_by = as_tuple(by), as_tuple(family_by)
    if not set(family_by) <= set(by):
        raise InputError(f"{where}: family_by {list(family_by)} must be a subset of by {list(by)}")
    pat = [patient_col] if patient_col else []
    require_columns(per_image, [*by, arm_col, image_col, seed_col, fold_col, value, *pat], where)
    check_conditions(per_image, by, where)
    arms_present = set(per_image[arm_col].dropna().astype(str).unique())
    for arm in (arm_a, arm_b):
        if str(arm) not in arms_present:
            raise InputError(
                f"{where}: arm {arm!r} not found in column {arm_col!r} (arms: {sorted(arms_present)})"
            )
    if str(arm_a) == str(arm_b):
        raise InputError(f"{where}: arm_a and arm_b are both {arm_a!r}; expected two different arms")
    hib = resolve_direction(value, higher_is_better)

    work = per_image[list(dict.fromkeys([*by, arm_col, image_col, seed_col, fold_col, *pat]))].copy()
    work[arm_col] = work[arm_col].astype(str)
    work["_v"] = numeric(per_image, value, where)
    work = work[work[arm_col].isin([str(arm_a), str(arm_b)]) & np.isfinite(work["_v"].to_numpy())]

    rows = []
    for key, sub in groups(work, by):
        means = sub.groupby([image_col, arm_col], sort=True)["_v"].mean().unstack(arm_col)
        for arm in (str(arm_a), str(arm_b)):
            if arm not in means.columns:
                means[arm] = np.nan
        paired = means[[str(arm_a), str(arm_b)]].dropna()
        a, b = paired[str(arm_a)].to_numpy(), paired[str(arm_b)].to_numpy()
        d = a - b
        n = d.size
        images = paired.index
        if patient_col:
            pat_of = sub.drop_duplicates(image_col).set_index(image_col)[patient_col]
            clusters = pd.factorize(pat_of.reindex(images), sort=True)[0]
        else:
            clusters = np.arange(n)
        n_pat = int(clusters.max()) + 1 if n else 0

        w, p = _wilcoxon(d)
        mean_ci = med_ci = (float("nan"), float("nan"))
        if n:
            weights = bootstrap_weights(clusters, n_boot, np.random.default_rng(seed))
            mean_ci = percentile_ci(weights @ d / weights.sum(axis=1), alpha)
            med_ci = percentile_ci(weighted_median(d, weights), alpha)

        runs = sub[sub[image_col].isin(images)]
        run_means = runs.groupby([arm_col, fold_col, seed_col], sort=True)["_v"].mean().reset_index()
        sds = {}
        for arm in (str(arm_a), str(arm_b)):
            r = run_means[run_means[arm_col] == arm]
            sds[arm] = (
                _pooled_within_sd(r["_v"].to_numpy(), r[fold_col].to_numpy()) if len(r) else float("nan")
            )
        seed_sd_diff = float(np.hypot(sds[str(arm_a)], sds[str(arm_b)]))
        mean_diff = float(d.mean()) if n else float("nan")
        rows.append(
            {
                **key,
                "metric": value,
                "arm_a": str(arm_a),
                "arm_b": str(arm_b),
                "n_pairs": n,
                "n_patients": n_pat,
                "mean_a": float(a.mean()) if n else float("nan"),
                "mean_b": float(b.mean()) if n else float("nan"),
                "mean_diff": mean_diff,
                "mean_diff_ci_low": mean_ci[0],
                "mean_diff_ci_high": mean_ci[1],
                "median_diff": float(np.median(d)) if n else float("nan"),
                "median_diff_ci_low": med_ci[0],
                "median_diff_ci_high": med_ci[1],
                "w": w,
                "pval": p,
                "rbc": rank_biserial(d),
                "sd_seed_a": sds[str(arm_a)],
                "sd_seed_b": sds[str(arm_b)],
                "seed_sd_diff": seed_sd_diff,
                "exceeds_seed_noise": bool(
                    np.isfinite(seed_sd_diff) and abs(mean_diff) > spread_k * seed_sd_diff
                ),
                "higher_is_better": hib,
                "alpha": float(alpha),
                "n_boot": int(n_boot),
            }
        )
    out = pd.DataFrame(rows, columns=[*by, *(c for c in COMPARE_COLUMNS if c not in ("p_holm", "verdict"))])
    out["p_holm"] = np.nan
    if len(out):
        for _, fam in groups(out, family_by):
            out.loc[fam.index, "p_holm"] = holm(fam["pval"].to_numpy())
    out["verdict"] = [_verdict(r, arm_a, arm_b, alpha) for r in out.itertuples(index=False)]
    return out[[*by, *COMPARE_COLUMNS]]


def _verdict(row: object, arm_a: str, arm_b: str, alpha: float) -> str:
    if row.n_pairs == 0 or not np.isfinite(row.pval):
        return "not testable"
    if not row.p_holm < alpha:
        return NO_DIFFERENCE
    if not np.isfinite(row.seed_sd_diff):
        return "undetermined (one seed)"
    if not row.exceeds_seed_noise:
        return NO_DIFFERENCE
    a_higher = row.mean_diff > 0
    return f"{arm_a if a_higher == row.higher_is_better else arm_b} better"
