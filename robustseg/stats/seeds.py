"""Seed reproducibility pooled over folds: ICC(A,1) from per-fold variance components, presence kappa.

Seed ``k`` of fold 0 and seed ``k`` of fold 1 are unrelated models, so seeds are *nested* in folds.
Each fold gives a two-way table (test images x that fold's seeds) with the ANOVA sums of squares of
McGraw & Wong (1996) case 2A; the pooled ICC adds the sums of squares and their degrees of freedom over
folds (a balanced nested ANOVA: image-within-fold, seed-within-fold and residual terms), so relabelling
the seeds of a fold cannot change it. A failed run removes only its own column in its own fold; an
image missing a value in a fold leaves only that fold.

The targets are images: the same test image appears in every fold, and its effects in different folds
are correlated, so the image term of the confidence interval gets ``n_images - 1`` degrees of freedom
(the distinct test images), not ``folds x (n_images - 1)``: conservative when folds disagree about which
images are hard, exact when they agree. ``benchmarks/calibration.py`` measures the coverage.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from robustseg.stats._util import as_tuple, check_alpha, check_conditions, groups, numeric, require_columns
from robustseg.stats.icc import koo_li_interval

POOLED_ICC_COLUMNS = (
    "kind",
    "icc",
    "ci_low",
    "ci_high",
    "var_image",
    "var_seed",
    "var_error",
    "n_targets",
    "n_dropped",
    "n_incomplete",
    "n_folds",
    "n_runs",
    "seeds_per_fold",
    "df_image",
    "df_seed",
    "df_error",
    "reading",
    "alpha",
)
PRESENCE_AGREEMENT_COLUMNS = ("kappa", "p_observed", "p_expected", "n_subjects", "n_disagree", "n_all_present",
                              "n_all_absent", "n_images", "n_folds", "n_runs")


def icc_a1_interval(msr: float, msc: float, mse: float, n: float, k: float, df_r: float, df_c: float,
                    df_e: float, alpha: float = 0.05) -> tuple[float, float, float]:
    """ICC(A,1) and its ``1 - alpha`` CI from mean squares with arbitrary degrees of freedom.

    McGraw & Wong (1996) case 2A with the Satterthwaite approximation: ``E[MSR] = k s_r + s_e``,
    ``E[MSC] = n s_c + s_e``, ``E[MSE] = s_e``. With ``df_r = n - 1``, ``df_c = k - 1`` and
    ``df_e = (n - 1)(k - 1)`` it is the textbook single-table interval (pingouin's).

    Examples
    --------
    >>> icc, lo, hi = icc_a1_interval(11.24, 32.49, 1.02, 6, 4, 5, 3, 15)
    >>> round(icc, 2), round(lo, 3) < icc < round(hi, 3)
    (0.29, True)
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        icc = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
        a = k * icc
        b = n * (1 + (k - 1) * icc) - k * icc
        fj = msc / mse
        v = (a * fj + b) ** 2 / ((a * fj) ** 2 / df_c + b**2 / df_e)
        q = 1 - alpha / 2
        f_u = sps.f.ppf(q, df_r, v)
        f_l = sps.f.ppf(q, v, df_r)
        den = k * msc + (k * n - k - n) * mse
        low = n * (msr - f_u * mse) / (f_u * den + n * msr)
        high = n * (f_l * msr - mse) / (den + n * f_l * msr)
    return float(icc), float(low), float(high)


def _fold_anova(x: np.ndarray) -> tuple[float, float, float]:
    """Sums of squares (rows = images, columns = seeds, residual) of one complete fold table."""
    n, k = x.shape
    grand = x.mean()
    ss_r = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_c = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_e = ((x - grand) ** 2).sum() - ss_r - ss_c
    return float(ss_r), float(ss_c), float(ss_e)


def pooled_seed_icc(
    per_image: pd.DataFrame,
    value: str = "dice",
    by: Sequence[str] = ("arm", "class"),
    *,
    image_col: str = "image_id",
    seed_col: str = "seed",
    fold_col: str = "fold",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """ICC(A,1) across seeds of a per-image value, seeds nested in folds, one row per group of ``by``.

    Per fold: the complete table of images x seeds (seed columns are the runs that exist; images with a
    NaN in that fold are dropped from that fold and counted in ``n_incomplete``; folds with fewer than two
    seeds or images are skipped). The sums of squares of the folds are added: with ``k_r`` and ``n_c`` the
    df-weighted mean seeds per fold and images per fold, ``var_error = MSE``, ``var_image = (MSR - MSE) /
    k_r``, ``var_seed = (MSC - MSE) / n_c``, and ``icc = var_image / (var_image + var_seed + var_error)``
    (variance components are not truncated at 0, as in the single-table formula). CI:
    :func:`icc_a1_interval` with ``df_image = n_targets - 1``.

    Columns after ``by``: ``kind`` (``"ICC(A,1) pooled over folds"``), ``icc, ci_low, ci_high, var_image,
    var_seed, var_error``, ``n_targets`` (distinct images used), ``n_dropped`` (images of the group not
    used in any fold), ``n_incomplete`` (image x fold rows dropped), ``n_folds`` (folds used), ``n_runs``
    (seed columns used), ``seeds_per_fold`` (``k_r``), ``df_image, df_seed, df_error``, ``reading``
    (:func:`koo_li_interval` of the CI), ``alpha``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> img = rng.normal(0.7, 0.1, 20)
    >>> rows = [{"arm": "a", "class": "lv", "fold": f, "seed": s, "image_id": i,
    ...          "dice": img[i] + rng.normal(0, 0.03)} for f in range(2) for s in range(3) for i in range(20)]
    >>> r = pooled_seed_icc(pd.DataFrame(rows)).iloc[0]
    >>> [int(r[c]) for c in ("n_targets", "n_folds", "n_runs")], bool(0.8 < r["icc"] < 1), bool(r["ci_low"] < r["icc"])
    ([20, 2, 6], True, True)
    """
    where = "pooled_seed_icc"
    check_alpha(alpha, where)
    by = as_tuple(by)
    require_columns(per_image, [*by, image_col, seed_col, fold_col, value], where)
    check_conditions(per_image, by, where)
    work = per_image[list(dict.fromkeys([*by, image_col, seed_col, fold_col]))].copy()
    work["_v"] = numeric(per_image, value, where)
    nan = float("nan")
    rows = []
    for key, sub in groups(work, by):
        ss = np.zeros(3)
        dfs = np.zeros(3)
        kr_num = nc_num = 0.0
        used: set = set()
        n_incomplete = n_folds = n_runs = 0
        for _, fsub in sub.groupby(fold_col, sort=True):
            if fsub.duplicated([image_col, seed_col]).any():
                from robustseg.errors import InputError

                dup = fsub.loc[fsub.duplicated([image_col, seed_col]), [image_col, seed_col]].iloc[0].tolist()
                raise InputError(f"{where}: more than one {value!r} value for (image, seed) = {tuple(dup)} in "
                                 f"group {key}; expected one per image and run")
            wide = fsub.pivot(index=image_col, columns=seed_col, values="_v").dropna(axis=1, how="all")
            complete = wide.dropna(axis=0, how="any")
            n, k = complete.shape
            if n < 2 or k < 2:
                continue
            n_incomplete += len(wide) - n
            ssr, ssc, sse = _fold_anova(complete.to_numpy(dtype=np.float64))
            ss += (ssr, ssc, sse)
            dfs += (n - 1, k - 1, (n - 1) * (k - 1))
            kr_num += (n - 1) * k
            nc_num += (k - 1) * n
            used.update(complete.index.tolist())
            n_folds += 1
            n_runs += k
        n_all = int(sub[image_col].nunique())
        res = dict.fromkeys(("icc", "ci_low", "ci_high", "var_image", "var_seed", "var_error"), nan)
        k_r = kr_num / dfs[0] if dfs[0] else nan
        if n_folds and len(used) >= 2 and dfs[2] > 0:
            msr, msc, mse = ss / dfs
            n_c = nc_num / dfs[1]
            est, low, high = icc_a1_interval(msr, msc, mse, n_c, k_r, len(used) - 1, dfs[1], dfs[2], alpha)
            res = {"icc": est, "ci_low": low, "ci_high": high, "var_image": (msr - mse) / k_r,
                   "var_seed": (msc - mse) / n_c, "var_error": mse}
        rows.append({**key, "kind": "ICC(A,1) pooled over folds", **res, "n_targets": len(used),
                     "n_dropped": n_all - len(used), "n_incomplete": int(n_incomplete), "n_folds": n_folds,
                     "n_runs": n_runs, "seeds_per_fold": k_r, "df_image": float(max(len(used) - 1, 0)),
                     "df_seed": float(dfs[1]), "df_error": float(dfs[2]),
                     "reading": koo_li_interval(res["ci_low"], res["ci_high"]), "alpha": float(alpha)})
    return pd.DataFrame(rows, columns=[*by, *POOLED_ICC_COLUMNS])


def fleiss_kappa(counts: np.ndarray) -> tuple[float, float, float]:
    """Fleiss' kappa of a ``(subjects, categories)`` table of rater counts; subjects may differ in raters.

    ``P_i = (sum_j n_ij**2 - n_i) / (n_i (n_i - 1))``, ``P_o`` = mean of ``P_i``, ``p_j`` = share of all
    ratings in category j, ``P_e = sum_j p_j**2``, ``kappa = (P_o - P_e) / (1 - P_e)`` (NaN when
    ``P_e == 1``). Subjects with fewer than two raters are left out. Returns ``(kappa, P_o, P_e)``.

    Examples
    --------
    >>> t = np.array([[3, 0], [0, 3], [2, 1], [3, 0]])
    >>> [round(v, 3) for v in fleiss_kappa(t)]
    [0.625, 0.833, 0.556]
    """
    c = np.asarray(counts, dtype=np.float64)
    n_i = c.sum(axis=1)
    c = c[n_i >= 2]
    n_i = n_i[n_i >= 2]
    if c.size == 0:
        return float("nan"), float("nan"), float("nan")
    p_i = ((c**2).sum(axis=1) - n_i) / (n_i * (n_i - 1))
    p_o = float(p_i.mean())
    p_j = c.sum(axis=0) / c.sum()
    p_e = float((p_j**2).sum())
    kappa = (p_o - p_e) / (1 - p_e) if p_e < 1 else float("nan")
    return float(kappa), p_o, p_e


def presence_agreement(
    per_image: pd.DataFrame,
    pred_col: str = "pred_pixels",
    by: Sequence[str] = ("arm", "class"),
    *,
    image_col: str = "image_id",
    seed_col: str = "seed",
    fold_col: str = "fold",
) -> pd.DataFrame:
    """Agreement of the seeds of a fold on whether the structure is present (``pred_col > 0``).

    Subjects are image x fold (each fold's seeds rate each test image present / absent; seeds are
    nested in folds, so the labels of seeds never matter); :func:`fleiss_kappa` over all subjects with
    at least two seeds. Columns after ``by``: ``kappa, p_observed, p_expected, n_subjects``,
    ``n_disagree`` (subjects where the seeds do not all agree), ``n_all_present, n_all_absent``,
    ``n_images`` (distinct), ``n_folds``, ``n_runs``. ``kappa`` is NaN when every seed of every subject
    says the same (nothing to correct for chance: read ``n_disagree`` = 0).

    Examples
    --------
    >>> df = pd.DataFrame({"arm": "a", "class": "csp", "fold": 0, "seed": [0, 1, 2] * 3,
    ...                    "image_id": ["i0"] * 3 + ["i1"] * 3 + ["i2"] * 3,
    ...                    "pred_pixels": [5, 7, 9, 0, 0, 0, 4, 0, 0]})
    >>> r = presence_agreement(df).iloc[0]
    >>> round(float(r["kappa"]), 3), [int(r[c]) for c in ("n_disagree", "n_all_present", "n_all_absent")]
    (0.55, [1, 1, 1])
    """
    where = "presence_agreement"
    by = as_tuple(by)
    require_columns(per_image, [*by, image_col, seed_col, fold_col, pred_col], where)
    work = per_image[list(dict.fromkeys([*by, image_col, seed_col, fold_col]))].copy()
    v = numeric(per_image, pred_col, where)
    work["_p"] = np.where(np.isfinite(v), (v > 0).astype(np.float64), np.nan)
    work = work[np.isfinite(work["_p"].to_numpy())]
    rows = []
    for key, sub in groups(work, by):
        g = sub.groupby([fold_col, image_col], sort=True)["_p"].agg(["sum", "count"])
        g = g[g["count"] >= 2]
        table = np.column_stack([g["sum"].to_numpy(), (g["count"] - g["sum"]).to_numpy()])
        kappa, p_o, p_e = fleiss_kappa(table)
        runs = sub[sub.set_index([fold_col, image_col]).index.isin(g.index)]
        rows.append({**key, "kappa": kappa, "p_observed": p_o, "p_expected": p_e, "n_subjects": len(g),
                     "n_disagree": int(((g["sum"] > 0) & (g["sum"] < g["count"])).sum()),
                     "n_all_present": int((g["sum"] == g["count"]).sum()), "n_all_absent": int((g["sum"] == 0).sum()),
                     "n_images": int(g.index.get_level_values(image_col).nunique()),
                     "n_folds": int(g.index.get_level_values(fold_col).nunique()),
                     "n_runs": int(runs[[fold_col, seed_col]].drop_duplicates().shape[0])})
    return pd.DataFrame(rows, columns=[*by, *PRESENCE_AGREEMENT_COLUMNS])
