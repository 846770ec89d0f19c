"""Robustness summaries over perturbed test sets (pure pandas).

Input: the per-image table of ``docs/architecture.md`` with the study columns, one row per image x class
x run x condition. Used columns: ``arm, seed, fold, class, perturbation, severity, dice, hd95_mm``. The
clean condition is ``perturbation == "none"`` with ``severity == 0``. A *run* is one ``(seed, fold)``
of an arm; every number is first averaged over the images of a run, then across runs, so the spread
(``*_sd``, sample SD, ddof=1) is the run-to-run (seed / fold) spread, not the image-to-image one.

NaN Dice (a structure absent from reference and prediction, under a policy that leaves it undefined)
and non-finite HD95 (empty prediction or reference) are left out of the means, never counted as 0.

Retention and the severity-weighted summaries use a *fixed image set* per run: the images whose
reference has the structure in the clean condition (``ref_pixels > 0``, else ``tp + fn > 0``; without
either, the images whose Dice is defined in the clean condition and in every other condition of the run:
with a reference present Dice is always defined). Dice is defined on all of them in every condition, so the
set cannot change with the condition. Retention compares each perturbed row with the clean row of the same
image and run (pairs only), so it is at most 1 when every image got worse; fixed-set images without a
perturbed row are counted in ``n_missing``, never silently averaged over.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from robustseg.errors import InputError
from robustseg.perturb.damage import damage_summary

CLEAN_NAME = "none"
RUN_KEYS: tuple[str, ...] = ("seed", "fold")
_CONDITION = ("perturbation", "severity")


def _require(df: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"robustness table: missing columns {missing}; expected {list(columns)}")


def _keys(by: Sequence[str]) -> list[str]:
    by = list(by)
    if len(set(by)) != len(by) or any(k in RUN_KEYS for k in by):
        raise InputError(f"by={by!r}: expected distinct grouping columns other than {list(RUN_KEYS)}")
    return by


def _present(df: pd.DataFrame) -> np.ndarray:
    if "ref_pixels" in df.columns:
        return pd.to_numeric(df["ref_pixels"], errors="coerce").to_numpy(dtype=float) > 0
    if {"tp", "fn"} <= set(df.columns):
        tp, fn = (pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float) for c in ("tp", "fn"))
        return (tp + fn) > 0
    return np.isfinite(pd.to_numeric(df["dice"], errors="coerce").to_numpy(dtype=float))


def _reference_known(df: pd.DataFrame) -> bool:
    return "ref_pixels" in df.columns or {"tp", "fn"} <= set(df.columns)


def _fixed_set(df: pd.DataFrame, by: list[str]) -> np.ndarray:
    """Per row: is the image in its run's fixed set (reference has the structure in the clean condition)?

    Images the run has no clean row for (an external test set entered as a condition) are judged by
    their own reference.
    """
    if "perturbation" not in df.columns or "image_id" not in df.columns:
        return np.zeros(len(df), dtype=bool)
    keys = [k for k in by if k not in _CONDITION] + [*RUN_KEYS, "image_id"]
    is_clean = (df["perturbation"] == CLEAN_NAME).to_numpy()
    clean = df[is_clean]
    ok = _present(clean)
    if not _reference_known(df):  # NaN Dice anywhere in the run means the reference is empty
        defined = pd.Series(np.isfinite(pd.to_numeric(df["dice"], errors="coerce").to_numpy(dtype=float)),
                            index=df.index)
        everywhere = defined.groupby([df[k] for k in keys], dropna=False).transform("all")
        ok = ok & everywhere[is_clean].to_numpy(dtype=bool)
    fixed = clean.loc[ok, keys].drop_duplicates().assign(_fixed=True)
    seen = clean[keys].drop_duplicates().assign(_seen=True)
    merged = df[keys].merge(fixed, on=keys, how="left").merge(seen, on=keys, how="left")
    in_clean = merged["_fixed"].fillna(False).to_numpy(dtype=bool)
    unseen = ~merged["_seen"].fillna(False).to_numpy(dtype=bool)
    return in_clean | (unseen & _present(df))


def run_means(df: pd.DataFrame, by: Sequence[str] = ("arm", "class", "perturbation", "severity")) -> pd.DataFrame:
    """Mean Dice and HD95 per run: columns ``*by, seed, fold, dice, hd95_mm, n_images, dice_fixed, n_fixed,
    dice_paired, clean_paired, n_missing``.

    ``n_images`` counts the rows with a defined Dice; ``dice_fixed`` is the mean Dice over the run's fixed
    image set (see the module docstring; NaN without an ``image_id`` / clean condition), ``n_fixed`` its
    size. ``dice_paired`` and ``clean_paired``: the mean Dice of the fixed-set rows of this condition and of
    the clean rows of the same images (retention's numerator and denominator); ``n_missing``: fixed-set
    images of the run with no (or an undefined) value in this condition.
    """
    by = _keys(by)
    _require(df, [*by, *RUN_KEYS, "dice", "hd95_mm"])
    work = df[[*by, *RUN_KEYS, "dice", "hd95_mm"]].copy()
    work["dice"] = pd.to_numeric(work["dice"], errors="coerce").astype(float)
    hd = pd.to_numeric(work["hd95_mm"], errors="coerce").astype(float)
    work["hd95_mm"] = hd.where(np.isfinite(hd))
    work["dice_fixed"] = work["dice"].where(_fixed_set(df, by))
    work["clean_paired"] = _clean_partner(df, work, by)
    work["dice_paired"] = work["dice_fixed"].where(work["clean_paired"].notna())
    grouped = work.groupby([*by, *RUN_KEYS], sort=True, observed=True, dropna=False)
    out = grouped.agg(dice=("dice", "mean"), hd95_mm=("hd95_mm", "mean"), n_images=("dice", "count"),
                      dice_fixed=("dice_fixed", "mean"), n_fixed=("dice_fixed", "count"),
                      dice_paired=("dice_paired", "mean"), clean_paired=("clean_paired", "mean"),
                      _n_paired=("dice_paired", "count")).reset_index()
    base = [k for k in by if k not in _CONDITION] + list(RUN_KEYS)
    if "perturbation" in by:
        clean_n = out.loc[out["perturbation"] == CLEAN_NAME, [*base, "n_fixed"]].rename(columns={"n_fixed": "_nc"})
        out = out.merge(clean_n.drop_duplicates(base), on=base, how="left")
        out["n_missing"] = (out["_nc"].fillna(out["n_fixed"]) - out["_n_paired"]).clip(lower=0).astype(int)
        out = out.drop(columns="_nc")
    else:
        out["n_missing"] = 0
    return out.drop(columns="_n_paired")


def _clean_partner(df: pd.DataFrame, work: pd.DataFrame, by: list[str]) -> pd.Series:
    """Per row of ``work``: the clean Dice of the same image and run, where both are in the fixed set and
    defined (NaN otherwise)."""
    if "perturbation" not in df.columns or "image_id" not in df.columns or "perturbation" not in by:
        return pd.Series(np.nan, index=work.index)
    keys = [k for k in by if k not in _CONDITION] + [*RUN_KEYS, "image_id"]
    rows = df[keys].assign(_v=work["dice_fixed"].to_numpy())
    clean = rows[(df["perturbation"] == CLEAN_NAME).to_numpy() & rows["_v"].notna().to_numpy()]
    clean = clean.drop_duplicates(keys).rename(columns={"_v": "_clean"})
    merged = rows.merge(clean, on=keys, how="left")
    out = merged["_clean"].where(merged["_v"].notna())
    return pd.Series(out.to_numpy(), index=work.index)


def _with_retention(runs: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Add ``retention`` = the run's fixed-set Dice / the same run's clean fixed-set Dice (NaN without a
    clean row or clean Dice 0)."""
    if not all(k in by for k in _CONDITION):
        runs = runs.copy()
        runs["retention"] = np.nan
        return runs
    ref_keys = [k for k in by if k not in _CONDITION] + list(RUN_KEYS)
    clean = runs.loc[runs["perturbation"] == CLEAN_NAME, ref_keys]
    if clean.duplicated(ref_keys).any():
        raise InputError("robustness table: more than one clean ('none') condition per run; expected severity 0 only")
    runs = runs.copy()
    denom = runs["clean_paired"].where(runs["clean_paired"] > 0)
    runs["retention"] = runs["dice_paired"] / denom
    return runs


def _across_runs(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    grouped = runs.groupby(keys, sort=True, observed=True, dropna=False)
    out = grouped.agg(
        n_runs=("dice", "size"),
        dice_mean=("dice", "mean"),
        dice_sd=("dice", "std"),
        hd95_mm_mean=("hd95_mm", "mean"),
        hd95_mm_sd=("hd95_mm", "std"),
        retention_mean=("retention", "mean"),
        retention_sd=("retention", "std"),
        **({"n_missing": ("n_missing", "sum")} if "n_missing" in runs.columns else {}),
        **({"dice_fixed_mean": ("dice_fixed", "mean")} if "dice_fixed" in runs.columns else {}),
        **({"n_fixed": ("n_fixed", "max")} if "n_fixed" in runs.columns else {}),
    )
    return out.reset_index()


def robustness_summary(
    df: pd.DataFrame, by: Sequence[str] = ("arm", "class", "perturbation", "severity")
) -> pd.DataFrame:
    """Per ``by`` group: mean and SD across runs of the run-mean Dice, HD95 and Dice retention.

    Columns: ``*by, n_runs, dice_mean, dice_sd, hd95_mm_mean, hd95_mm_sd, retention_mean, retention_sd,
    n_missing, dice_fixed_mean, n_fixed``. ``retention`` is a run's perturbed Dice over the same run's clean
    Dice (same arm, class, seed, fold), both on the fixed-set images that have a value in both; it is 1 for
    the clean rows and NaN when ``by`` lacks ``perturbation`` / ``severity``. ``n_missing``: fixed-set image x
    run pairs without a value in the condition (summed over runs). ``n_fixed``: the largest fixed-set size of
    the runs.

    Examples
    --------
    >>> df = pd.DataFrame({"arm": "a", "class": "csp", "seed": 0, "fold": 0, "image_id": ["i0", "i1"] * 2,
    ...                    "perturbation": ["none", "none", "noise", "noise"], "severity": [0, 0, 1, 1],
    ...                    "ref_pixels": [10, 0, 10, 0], "dice": [0.8, np.nan, 0.6, 0.0], "hd95_mm": 1.0})
    >>> robustness_summary(df)[["perturbation", "dice_mean", "retention_mean"]].round(3).values.tolist()
    [['noise', 0.3, 0.75], ['none', 0.8, 1.0]]
    """
    by = _keys(by)
    runs = _with_retention(run_means(df, by), by)
    return _across_runs(runs, by)


def severity_mean(df: pd.DataFrame, by: Sequence[str] = ("arm", "class", "perturbation")) -> pd.DataFrame:
    """Mean over severities 1..5 per perturbation (clean rows excluded), averaged per run first.

    Columns: ``*by, n_severities, n_runs, dice_mean, dice_sd, hd95_mm_mean, hd95_mm_sd, retention_mean,
    retention_sd``; the SDs are across runs of each run's severity-averaged value.
    """
    by = _keys(by)
    if "perturbation" not in by or "severity" in by:
        raise InputError(f"by={by!r}: expected 'perturbation' and not 'severity' among the grouping columns")
    full = [*by, "severity"]
    runs = _with_retention(run_means(df, full), full)
    runs = runs[runs["perturbation"] != CLEAN_NAME]
    n_sev = runs.groupby(by, sort=True, observed=True)["severity"].nunique().rename("n_severities")
    per_run = (
        runs.groupby([*by, *RUN_KEYS], sort=True, observed=True, dropna=False)[["dice", "hd95_mm", "retention"]]
        .mean()
        .reset_index()
    )
    out = _across_runs(per_run, by)
    return out.merge(n_sev.reset_index(), on=by, how="left")[
        [*by, "n_severities", *[c for c in out.columns if c not in by]]
    ]


def corruption_error(df: pd.DataFrame, baseline_arm: str) -> pd.DataFrame:
    """ImageNet-C style corruption error of every arm relative to ``baseline_arm``, per class and perturbation.

    With ``E = 1 - Dice`` (Dice averaged per run, then across runs) and sums over the severities both arms
    have: ``ce = sum_s E_arm,s / sum_s E_base,s`` and ``relative_ce = sum_s (E_arm,s - E_arm,clean) /
    sum_s (E_base,s - E_base,clean)``. Below 1 means more robust than the baseline. NaN where the
    denominator is not positive (the baseline has no error, or is not degraded by the perturbation).

    Columns: ``arm, class, perturbation, n_severities, error, baseline_error, clean_error,
    baseline_clean_error, ce, relative_ce`` (``error`` columns are the sums over severities).
    """
    summary = robustness_summary(df, ("arm", "class", "perturbation", "severity"))
    arms = sorted(summary["arm"].astype(str).unique())
    if baseline_arm not in arms:
        raise InputError(f"baseline arm {baseline_arm!r}: not in the table; expected one of {arms}")
    summary["err"] = 1.0 - summary["dice_mean"]
    clean = summary.loc[summary["perturbation"] == CLEAN_NAME, ["arm", "class", "err"]]
    clean = clean.rename(columns={"err": "clean_error"})
    pert = summary.loc[summary["perturbation"] != CLEAN_NAME, ["arm", "class", "perturbation", "severity", "err"]]
    base = pert[pert["arm"] == baseline_arm].drop(columns="arm").rename(columns={"err": "base_err"})
    base_clean = clean[clean["arm"] == baseline_arm].drop(columns="arm")
    base_clean = base_clean.rename(columns={"clean_error": "baseline_clean_error"})
    paired = pert.merge(base, on=["class", "perturbation", "severity"], how="inner")
    paired = paired.merge(clean, on=["arm", "class"], how="left").merge(base_clean, on="class", how="left")
    paired["rel"] = paired["err"] - paired["clean_error"]
    paired["base_rel"] = paired["base_err"] - paired["baseline_clean_error"]
    out = (
        paired.groupby(["arm", "class", "perturbation"], sort=True, observed=True)
        .agg(
            n_severities=("severity", "nunique"),
            error=("err", lambda s: s.sum(min_count=1)),
            baseline_error=("base_err", lambda s: s.sum(min_count=1)),
            clean_error=("clean_error", "first"),
            baseline_clean_error=("baseline_clean_error", "first"),
            rel=("rel", lambda s: s.sum(min_count=1)),
            base_rel=("base_rel", lambda s: s.sum(min_count=1)),
        )
        .reset_index()
    )
    out["ce"] = out["error"] / out["baseline_error"].where(out["baseline_error"] > 0)
    out["relative_ce"] = out["rel"] / out["base_rel"].where(out["base_rel"] > 0)
    return out.drop(columns=["rel", "base_rel"])


ROOD_ALPHA = 2.0 / 3.0
"""ROOD-MRI's severity weight base: severity s gets weight ``alpha**s`` (Boone et al. 2023)."""


def severity_weighted(df: pd.DataFrame, by: Sequence[str] = ("arm", "class", "perturbation"),
                      alpha: float = ROOD_ALPHA) -> pd.DataFrame:
    """ROOD-MRI style severity-weighted Dice and degradation per perturbation, on each run's fixed image set.

    Per run, with clean fixed-set Dice ``c``, perturbed ``d_s`` and weights ``w_s = alpha**s`` over the
    severities present: ``wm_dice = (c + sum_s w_s d_s) / (1 + sum_s w_s)`` (clean weighted 1) and
    ``degradation = sum_s w_s (c - d_s) / sum_s w_s`` (0 = unaffected, > 0 = worse). Then mean and SD
    (ddof=1) across runs. Columns: ``*by, n_severities, n_runs, wm_dice_mean, wm_dice_sd,
    degradation_mean, degradation_sd, weight_base``.

    Examples
    --------
    >>> df = pd.DataFrame({"arm": "a", "class": "csp", "seed": 0, "fold": 0, "image_id": "i0",
    ...                    "perturbation": ["none", "noise", "noise"], "severity": [0, 1, 2],
    ...                    "ref_pixels": 10, "dice": [0.9, 0.6, 0.3], "hd95_mm": 1.0})
    >>> r = severity_weighted(df).iloc[0]
    >>> round(float(r["degradation_mean"]), 4), round(float(r["wm_dice_mean"]), 4)
    (0.42, 0.6789)
    """
    by = _keys(by)
    if "perturbation" not in by or "severity" in by:
        raise InputError(f"by={by!r}: expected 'perturbation' and not 'severity' among the grouping columns")
    if not 0 < alpha:
        raise InputError(f"severity_weighted: alpha must be positive, got {alpha!r}")
    full = [*by, "severity"]
    runs = run_means(df, full)
    base = [k for k in by if k != "perturbation"] + list(RUN_KEYS)
    clean = runs.loc[runs["perturbation"] == CLEAN_NAME, [*base, "dice_fixed"]].rename(columns={"dice_fixed": "c"})
    pert = runs[runs["perturbation"] != CLEAN_NAME].merge(clean, on=base, how="inner")
    pert = pert[np.isfinite(pert["dice_fixed"]) & np.isfinite(pert["c"])]
    pert = pert.assign(w=alpha ** pert["severity"].astype(float))
    pert = pert.assign(wd=pert["w"] * pert["dice_fixed"], wdeg=pert["w"] * (pert["c"] - pert["dice_fixed"]))
    per_run = pert.groupby([*by, *RUN_KEYS], sort=True, observed=True).agg(
        w=("w", "sum"), wd=("wd", "sum"), wdeg=("wdeg", "sum"), c=("c", "first"), n_sev=("severity", "nunique"))
    per_run["wm_dice"] = (per_run["c"] + per_run["wd"]) / (1 + per_run["w"])
    per_run["degradation"] = per_run["wdeg"] / per_run["w"]
    out = per_run.reset_index().groupby(by, sort=True, observed=True).agg(
        n_severities=("n_sev", "max"), n_runs=("wm_dice", "size"), wm_dice_mean=("wm_dice", "mean"),
        wm_dice_sd=("wm_dice", "std"), degradation_mean=("degradation", "mean"),
        degradation_sd=("degradation", "std"))
    return out.reset_index().assign(weight_base=float(alpha))


def mean_corruption_error(df: pd.DataFrame, baseline_arm: str) -> pd.DataFrame:
    """mCE per arm and class: the mean of ``corruption_error`` over perturbations (NaN CEs skipped).

    Columns: ``arm, class, n_perturbations, mce, relative_mce``.
    """
    ce = corruption_error(df, baseline_arm)
    out = (
        ce.groupby(["arm", "class"], sort=True, observed=True)
        .agg(n_perturbations=("perturbation", "nunique"), mce=("ce", "mean"), relative_mce=("relative_ce", "mean"))
        .reset_index()
    )
    return out


# ----------------------------------------------------------------------------------- matched image damage
DAMAGE_LEVEL = 0.8
"""Default in-fan SSIM at which perturbations are compared (the calibration's severity-3 target)."""


def _interp_at(ssim: np.ndarray, retention: np.ndarray, level: float) -> float:
    """Retention at in-fan SSIM ``level`` by linear interpolation between the clean point (1, 1) and the severities;
    NaN when the perturbation never damages the image that much (or no retention is defined)."""
    keep = np.isfinite(ssim) & np.isfinite(retention)
    x = np.concatenate([[1.0], ssim[keep]])
    y = np.concatenate([[1.0], retention[keep]])
    if len(x) < 2 or level < x.min() or level > 1.0:
        return float("nan")
    order = np.argsort(-x, kind="stable")  # from clean (1.0) down to the strongest damage
    x, y = x[order], y[order]
    for i in range(len(x) - 1):
        lo, hi = x[i + 1], x[i]
        if lo <= level <= hi:
            if hi == lo:
                return float(y[i + 1])
            t = (hi - level) / (hi - lo)
            return float(y[i] + t * (y[i + 1] - y[i]))
    return float("nan")


def matched_damage(df: pd.DataFrame, damage: pd.DataFrame, levels: Sequence[float] = (0.9, DAMAGE_LEVEL, 0.7),
                   by: Sequence[str] = ("arm", "class")) -> pd.DataFrame:
    """Dice retention of every perturbation at matched image damage (SSIM), ranked.

    The damage of a perturbation is its mean SSIM on the study's own test images (:func:`damage_summary`): in the
    fan for a global perturbation, inside the region a local artefact acts on (``measure`` ``fan`` / ``region``), the
    measure its severities are calibrated by. Per run, the retention curve of a perturbation (its severities, plus
    the clean point at SSIM 1 and retention 1) is read at each SSIM ``level`` by linear interpolation; then mean and
    SD across runs. A perturbation whose strongest severity does
    not damage the images down to a level (``reached`` False), or whose retention is undefined (clean Dice 0), has
    NaN there and is not ranked at that level. ``rank`` 1 is the most damaging (lowest retention) within each ``by``
    group and level; ``n_ranked`` counts the ranked perturbations.

    Columns: ``*by, level, perturbation, measure, retention_mean, retention_sd, n_runs, reached, ssim_min, rank,
    n_ranked``.

    Examples
    --------
    >>> per = pd.DataFrame({"arm": "a", "class": "csp", "seed": 0, "fold": 0, "image_id": "i",
    ...                     "perturbation": ["none", "p", "p", "q"], "severity": [0, 1, 3, 1],
    ...                     "ref_pixels": 10, "dice": [0.8, 0.6, 0.4, 0.72], "hd95_mm": 1.0})
    >>> dmg = pd.DataFrame({"image_id": "i", "perturbation": ["p", "p", "q"], "severity": [1, 3, 1],
    ...                     "ssim_fan": [0.9, 0.7, 0.8], "psnr_fan": 30.0})
    >>> m = matched_damage(per, dmg, levels=(0.8,))
    >>> m[["perturbation", "retention_mean", "rank"]].round(3).values.tolist()
    [['p', 0.625, 1], ['q', 0.9, 2]]
    """
    by = _keys(by)
    full = [*by, "perturbation", "severity"]
    runs = _with_retention(run_means(df, full), full)
    summary = damage_summary(damage)
    summary["ssim"] = summary["ssim_region"].where(summary["local"], summary["ssim_fan"])
    ssim = summary.groupby(["perturbation", "severity"])["ssim"].mean()
    local = summary.groupby("perturbation")["local"].any()
    runs = runs[runs["perturbation"] != CLEAN_NAME].copy()
    runs["ssim"] = [ssim.get((p, int(s)), np.nan) for p, s in zip(runs["perturbation"], runs["severity"], strict=True)]
    rows = []
    for key, g in runs.groupby([*by, "perturbation", *RUN_KEYS], sort=True, dropna=False):
        x, y = g["ssim"].to_numpy(dtype=float), g["retention"].to_numpy(dtype=float)
        for level in levels:
            rows.append({**dict(zip([*by, "perturbation", *RUN_KEYS], key, strict=True)), "level": float(level),
                         "retention": _interp_at(x, y, float(level)), "ssim_min": float(np.nanmin(x)) if
                         np.isfinite(x).any() else np.nan})
    cols = [*by, "level", "perturbation", "measure", "retention_mean", "retention_sd", "n_runs", "reached", "ssim_min",
            "rank", "n_ranked"]
    if not rows:
        return pd.DataFrame(columns=cols)
    per_run = pd.DataFrame(rows)
    out = per_run.groupby([*by, "level", "perturbation"], sort=True, dropna=False).agg(
        retention_mean=("retention", "mean"), retention_sd=("retention", "std"), n_runs=("retention", "count"),
        ssim_min=("ssim_min", "min")).reset_index()
    out["reached"] = out["ssim_min"] <= out["level"]
    out["measure"] = np.where(out["perturbation"].map(local).fillna(False).astype(bool), "region", "fan")
    out["rank"] = (out.groupby([*by, "level"])["retention_mean"].rank(method="min", ascending=True)
                   .astype("Int64"))
    out["n_ranked"] = out.groupby([*by, "level"])["rank"].transform("count").astype(int)
    out = out.sort_values([*by, "level", "rank", "perturbation"], ascending=[*([True] * len(by)), False, True, True],
                          na_position="last", kind="stable")
    return out[cols].reset_index(drop=True)


def damage_extremes(df: pd.DataFrame, damage: pd.DataFrame, level: float = DAMAGE_LEVEL,
                    by: Sequence[str] = ("arm", "class")) -> pd.DataFrame:
    """The most and least damaging perturbations at matched image damage: per ``by`` group, the perturbations with the
    lowest and highest Dice retention at SSIM ``level`` (:func:`matched_damage`). For a findings line such as
    "at equal image damage (SSIM 0.8), beam_width costs CSP the most (retention 0.41), gaussian_noise the least
    (0.93)".

    Columns: ``*by, level, most, most_retention, least, least_retention, n_ranked``; empty without perturbations
    that reach the level.

    Examples
    --------
    >>> per = pd.DataFrame({"arm": "a", "class": "csp", "seed": 0, "fold": 0, "image_id": "i",
    ...                     "perturbation": ["none", "p", "q"], "severity": [0, 3, 3],
    ...                     "ref_pixels": 10, "dice": [0.8, 0.4, 0.7], "hd95_mm": 1.0})
    >>> dmg = pd.DataFrame({"image_id": "i", "perturbation": ["p", "q"], "severity": [3, 3], "ssim_fan": 0.8,
    ...                     "psnr_fan": 30.0})
    >>> damage_extremes(per, dmg).round(3)[["most", "most_retention", "least", "least_retention"]].values.tolist()
    [['p', 0.5, 'q', 0.875]]
    """
    by = list(by)
    m = matched_damage(df, damage, levels=(level,), by=by)
    m = m[m["rank"].notna()]
    rows = []
    for key, g in m.groupby(by, sort=True):
        g = g.sort_values(["retention_mean", "perturbation"], kind="stable")
        lo, hi = g.iloc[0], g.iloc[-1]
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)), "level": float(level),
                     "most": lo["perturbation"], "most_retention": float(lo["retention_mean"]),
                     "least": hi["perturbation"], "least_retention": float(hi["retention_mean"]),
                     "n_ranked": len(g)})
    return pd.DataFrame(rows, columns=[*by, "level", "most", "most_retention", "least", "least_retention",
                                       "n_ranked"])


__all__ = [
    "CLEAN_NAME",
    "DAMAGE_LEVEL",
    "RUN_KEYS",
    "corruption_error",
    "damage_extremes",
    "damage_summary",
    "matched_damage",
    "mean_corruption_error",
    "robustness_summary",
    "run_means",
    "severity_mean",
    "severity_weighted",
]
