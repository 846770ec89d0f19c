"""Study planning from a study's own variance components: power, MDD, runs and test patients a claim needs.

Two models, each fitted on the saved per-image table and each checked by simulation in
``benchmarks/calibration.py``:

- **Arm comparisons** (:func:`run_components`): a run's value (the mean over the test images of
  ``dice_all_images``, as the arm comparison uses) is ``mean + fold effect + seed noise``, except that with
  probability ``collapse_rate`` the run collapses and scores ``collapsed_value`` (what a run that never
  predicts the structure scores: the share of test images without it, unless collapsed runs were seen).
  Power is simulated with that model through the same test the report uses
  (:func:`robustseg.stats.design.design_test`), so k x 1, k x n and 1 x n designs and collapses are
  handled alike (:func:`simulated_power`, :func:`design_mdd`). The seed variance of a pilot is itself
  uncertain (4 df at 2 folds x 3 seeds): each simulated study draws it from its scaled inverse chi-square
  (``var_seed * df_seed / chi2(df_seed)``), so the power is the expected power given the pilot (assurance),
  not the power at a point estimate that is too small half of the time.
- **Recipe intervals** (:func:`predict_half_width`): the variance components of
  :func:`robustseg.stats.intervals.dice_intervals` give the recipe variance for any number of patients,
  folds and seeds, its Satterthwaite df from the expected mean squares, and the rare-zero allowance of the
  test-set interval from the observed rate of zero scores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from robustseg.stats._util import as_tuple, groups
from robustseg.stats.design import design_test, tost
from robustseg.stats.flags import collapsed_runs
from robustseg.stats.intervals import (
    components_from_ms,
    logit_interval,
    rare_zero_quantiles,
    recipe_variance,
)
from robustseg.stats.runlevel import DICE_ALL, run_values

RUN_COMPONENT_COLUMNS = ("n_runs", "n_folds", "runs_per_fold", "mean", "var_seed", "df_seed", "seed_from_folds",
                         "var_fold", "n_collapsed", "collapse_rate", "collapse_upper", "collapsed_value")
N_SIM = 4000
"""Simulated studies per power evaluation (common random numbers: power is monotone in the difference)."""
MAX_SEEDS = 30
"""Largest number of seeds per fold the planner searches."""


def _smallest(ok: Callable[[float], bool], upper: float, tol: float = 2e-4) -> float:
    """Smallest value in ``[0, upper]`` where the monotone predicate ``ok`` holds (bisection); NaN if not even
    at ``upper``."""
    if not ok(upper):
        return float("nan")
    lo, hi = 0.0, upper
    while hi - lo >= tol:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def _jeffreys_upper(k: int, n: int, level: float = 0.95) -> float:
    """One-sided upper ``level`` bound of a binomial rate from ``k`` events in ``n`` (Jeffreys)."""
    return float(sps.beta.ppf(level, k + 0.5, n - k + 0.5)) if n else float("nan")


def run_components(
    per_image: pd.DataFrame,
    by: Sequence[str] = ("arm", "class"),
    *,
    value: str = DICE_ALL,
    fold_col: str = "fold",
    seed_col: str = "seed",
    image_col: str = "image_id",
    flags: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Run-level variance components per group of ``by`` (``arm`` may be left out to pool the arms).

    Collapsed runs (:func:`robustseg.stats.flags.collapsed_runs` on the test set, plus ``flags`` rows with
    ``flag == "collapsed"``) are taken out of the variances and counted instead. Columns after ``by``:
    ``n_runs, n_folds, runs_per_fold`` (mean), ``mean`` (of the runs that did not collapse), ``var_seed``
    (pooled within-fold variance and its ``df_seed``; with one run per fold it is the variance over folds,
    which holds the fold effect too: ``seed_from_folds`` is True), ``var_fold`` (variance of fold means beyond
    seed noise, truncated at 0), ``n_collapsed, collapse_rate``, ``collapse_upper`` (Jeffreys 95 % upper bound
    of the rate: what the runs cannot rule out), ``collapsed_value`` (mean value of the collapsed runs, or the
    share of test images without the structure when none collapsed).

    Examples
    --------
    >>> rows = [{"arm": "a", "class": "lv", "fold": f, "seed": s, "image_id": i, "tp": 8 + (s == 1), "fp": 1,
    ...          "fn": 1} for f in range(2) for s in range(3) for i in range(4)]
    >>> r = run_components(pd.DataFrame(rows)).iloc[0]
    >>> int(r["n_runs"]), int(r["df_seed"]), round(float(r["mean"]), 3), int(r["n_collapsed"])
    (6, 4, 0.893, 0)
    """
    by = as_tuple(by)
    cols = [*by, fold_col, seed_col]
    rv = run_values(per_image, value, runs=[c for c in cols if c not in by] + ([] if "arm" in by else ["arm"]),
                    by=by, image_col=image_col)
    if "arm" not in rv.columns:
        rv["arm"] = ""
    col = collapsed_runs(per_image, fold_col=fold_col, seed_col=seed_col, by=tuple(c for c in by if c != "arm"))
    if flags is not None and len(flags):
        col = pd.concat([col, flags[flags["flag"] == "collapsed"]], ignore_index=True)
    key = ["arm", fold_col, seed_col, *(c for c in by if c not in ("arm",) and c in col.columns)]
    col = col.assign(arm=col["arm"].astype(str), _c=True).drop_duplicates(key)[[*key, "_c"]] \
        if len(col) else pd.DataFrame(columns=[*key, "_c"])
    rv = rv.assign(arm=rv["arm"].astype(str)).merge(col, on=key, how="left")
    rv["_c"] = rv["_c"].astype("boolean").fillna(False).astype(bool)
    absent = _absent_share(per_image, by, image_col)
    rows = []
    for k, sub in groups(rv, by):
        sub = sub[np.isfinite(sub["value"].to_numpy(dtype=np.float64))]
        ok = sub[~sub["_c"]]
        v, f = ok["value"].to_numpy(dtype=np.float64), ok[fold_col].to_numpy()
        fold_ids = sorted(set(sub[fold_col].tolist()), key=str)
        ss, dof = 0.0, 0
        fmeans, fcounts = [], []
        for fold in fold_ids:
            x = v[f == fold]
            if x.size:
                fmeans.append(x.mean())
                fcounts.append(x.size)
                ss += float(((x - x.mean()) ** 2).sum())
                dof += x.size - 1
        from_folds = dof == 0 and v.size >= 2
        if from_folds:
            ss, dof = float(((v - v.mean()) ** 2).sum()), v.size - 1
        var_seed = ss / dof if dof else float("nan")
        var_fold = 0.0
        if len(fmeans) >= 2 and not from_folds:
            m_runs = float(np.mean(fcounts))
            var_fold = max(float(np.var(fmeans, ddof=1)) - var_seed / m_runs, 0.0)
        n_c, n = int(sub["_c"].sum()), len(sub)
        c_val = float(sub.loc[sub["_c"], "value"].mean()) if n_c else absent.get(tuple(k.values()), float("nan"))
        rows.append({**k, "n_runs": n, "n_folds": len(fold_ids), "runs_per_fold": n / max(len(fold_ids), 1),
                     "mean": float(v.mean()) if v.size else float("nan"), "var_seed": var_seed, "df_seed": dof,
                     "seed_from_folds": bool(from_folds), "var_fold": var_fold, "n_collapsed": n_c,
                     "collapse_rate": n_c / n if n else float("nan"), "collapse_upper": _jeffreys_upper(n_c, n),
                     "collapsed_value": c_val})
    return pd.DataFrame(rows, columns=[*by, *RUN_COMPONENT_COLUMNS])


def _absent_share(per_image: pd.DataFrame, by: tuple[str, ...], image_col: str) -> dict[tuple, float]:
    """Per group: the share of test images whose reference lacks the structure (a never-predicting run's
    ``dice_all_images``)."""
    if not {"tp", "fn"} <= set(per_image.columns):
        return {}
    ref = per_image.assign(_ref=(per_image["tp"].to_numpy(dtype=float) + per_image["fn"].to_numpy(dtype=float)) > 0)
    img = ref.groupby([*by, image_col], sort=True)["_ref"].max().reset_index()
    out = {}
    for k, sub in groups(img, by):
        out[tuple(k.values())] = float(1.0 - sub["_ref"].mean())
    return out


def _simulate_values(comp: Mapping[str, float], diff: float, n_folds: int, n_seeds: int, n_sim: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Run values ``(n_sim, folds, seeds)`` of two arms under the fitted model, ``b`` better by ``diff``."""
    var = max(float(comp["var_seed"]), 0.0) if np.isfinite(comp["var_seed"]) else 0.0
    df = float(comp.get("df_seed", np.inf))
    sd_seed = np.sqrt(var * df / rng.chisquare(df, (n_sim, 1, 1))) if np.isfinite(df) and df > 0 else np.sqrt(var)
    sd_fold = float(np.sqrt(max(comp["var_fold"], 0.0)))
    rate = float(comp["collapse_rate"]) if np.isfinite(comp["collapse_rate"]) else 0.0
    fold = rng.normal(0, sd_fold, (n_sim, n_folds, 1))
    out = []
    for shift in (0.0, diff):
        v = comp["mean"] + shift + fold + rng.normal(0, 1, (n_sim, n_folds, n_seeds)) * sd_seed
        gone = rng.random((n_sim, n_folds, n_seeds)) < rate
        out.append(np.where(gone, comp["collapsed_value"], v))
    return out[0], out[1]


def simulated_power(comp: Mapping[str, float], diff: float, n_folds: int, n_seeds: int, *, alpha: float = 0.05,
                    n_sim: int = N_SIM, seed: int = 0) -> float:
    """Power of the run-level comparison (:func:`robustseg.stats.design.design_test`, two-sided, level
    ``alpha``) to find a true difference ``diff`` between two arms of ``n_folds`` x ``n_seeds`` runs each,
    under the components ``comp`` (a row of :func:`run_components`); the share of ``n_sim`` simulated studies
    with ``p < alpha`` in the right direction.

    Examples
    --------
    >>> comp = {"mean": 0.8, "var_seed": 0.02**2, "var_fold": 0.0, "collapse_rate": 0.0, "collapsed_value": 0.3}
    >>> round(simulated_power(comp, 0.03, 2, 5), 2), round(simulated_power(comp, 0.03, 5, 1), 2)
    (0.88, 0.44)
    """
    if n_folds * n_seeds < 2 or not np.isfinite(comp["var_seed"]):
        return float("nan")
    rng = np.random.default_rng(seed)
    a, b = _simulate_values(comp, diff, n_folds, n_seeds, n_sim, rng)
    r = design_test(b, a, alpha)
    hit = (r["p"] < alpha) & (np.sign(r["diff"]) == np.sign(diff))
    return float(np.mean(hit))


def design_mdd(comp: Mapping[str, float], n_folds: int, n_seeds: int, *, alpha: float = 0.05, target: float = 0.8,
               n_sim: int = N_SIM, seed: int = 0, upper: float = 0.5) -> float:
    """Smallest difference found with probability ``target`` by a ``n_folds`` x ``n_seeds`` design
    (bisection on :func:`simulated_power`; NaN when even ``upper`` is not found that often).

    Examples
    --------
    >>> comp = {"mean": 0.8, "var_seed": 0.02**2, "var_fold": 0.0, "collapse_rate": 0.0, "collapsed_value": 0.3}
    >>> round(design_mdd(comp, 2, 5), 3)
    0.027
    """
    if not np.isfinite(comp["var_seed"]):
        return float("nan")
    return _smallest(lambda d: simulated_power(comp, d, n_folds, n_seeds, alpha=alpha, n_sim=n_sim, seed=seed)
                     >= target, upper)


def equivalence_margin(comp: Mapping[str, float], n_folds: int, n_seeds: int, *, alpha: float = 0.05,
                       target: float = 0.8, n_sim: int = N_SIM, seed: int = 0, upper: float = 0.5) -> float:
    """Smallest equivalence margin that a ``n_folds`` x ``n_seeds`` design establishes (TOST at ``alpha``)
    with probability ``target`` when the arms are truly equal (NaN beyond ``upper``).

    Examples
    --------
    >>> comp = {"mean": 0.8, "var_seed": 0.02**2, "var_fold": 0.0, "collapse_rate": 0.0, "collapsed_value": 0.3}
    >>> round(equivalence_margin(comp, 2, 5), 3)
    0.027
    """
    if n_folds * n_seeds < 2 or not np.isfinite(comp["var_seed"]):
        return float("nan")
    rng = np.random.default_rng(seed)
    a, b = _simulate_values(comp, 0.0, n_folds, n_seeds, n_sim, rng)
    r = design_test(b, a, alpha)
    return _smallest(lambda m: np.mean(tost(r["diff"], r["se"], r["df"], m) < alpha) >= target, upper)


def seeds_needed(comp: Mapping[str, float], diff: float, n_folds: int, *, alpha: float = 0.05, target: float = 0.8,
                 n_sim: int = N_SIM, seed: int = 0, max_seeds: int = MAX_SEEDS) -> int | None:
    """Fewest seeds per fold (with ``n_folds`` folds) for power ``target`` at ``diff``; None beyond
    ``max_seeds``.

    Examples
    --------
    >>> comp = {"mean": 0.8, "var_seed": 0.02**2, "var_fold": 0.0, "collapse_rate": 0.0, "collapsed_value": 0.3}
    >>> seeds_needed(comp, 0.02, 2), seeds_needed(comp, 0.02, 5)
    (9, 4)
    """
    def ok(s: int) -> bool:
        return simulated_power(comp, diff, n_folds, s, alpha=alpha, n_sim=n_sim, seed=seed) >= target

    if not np.isfinite(comp["var_seed"]):
        return None
    if not ok(max_seeds):
        return None
    lo, hi = 0, max_seeds
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if n_folds * mid >= 2 and ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


HALF_WIDTH_DRAWS = 400
"""Draws of the mean squares per half-width prediction (fixed generator)."""


def predict_half_width(ci: Mapping[str, float], n_patients: int, n_folds: int, n_seeds: int, alpha: float = 0.05
                       ) -> float:
    """Typical (median) half-width of the recipe interval (:func:`robustseg.stats.intervals.dice_intervals`) of a
    study with ``n_patients`` test patients and ``n_folds`` x ``n_seeds`` runs, from one of its rows ``ci``
    (the recipe row: variance components ``s2_*``, the estimate and the zero-score rate).

    The interval procedure itself is simulated: the mean squares of that design are drawn from their
    expected values (scaled chi-square, ``HALF_WIDTH_DRAWS`` draws), and each draw goes through the report's
    own steps (folds pooled with seeds or not, components truncated at 0, Satterthwaite df, logit-t, the
    test-set interval with its rare-zero allowance at the observed zero rate, the hull). Half-width =
    (high - low) / 2, the median over the draws (a mean would be ruled by the few draws where a fold term
    with 1 df dominates).

    Examples
    --------
    >>> ci = {"estimate": 0.8, "s2_patient": 0.01, "s2_fold": 0.0, "s2_seed": 0.0004, "s2_resid": 0.002,
    ...       "est_hit": 0.8, "se_hit": 0.02, "n_zero": 0.0, "n_rows": 40.0, "zero_weight": 1.0, "n_patients": 20}
    >>> predict_half_width(ci, 20, 2, 3) > predict_half_width(ci, 80, 2, 3)
    True
    """
    p, f, s_ = int(n_patients), int(n_folds), int(n_seeds)
    r = f * s_
    if p < 2 or r < 1:
        return float("nan")
    s2 = {k: max(float(ci[k]), 0.0) if np.isfinite(ci[k]) else 0.0
          for k in ("s2_patient", "s2_fold", "s2_seed", "s2_resid")}
    est = float(ci["estimate"])
    rng = np.random.default_rng(0)
    n = HALF_WIDTH_DRAWS
    grid = (np.arange(n) + 0.5) / n  # stratified quantiles, one fixed order per term: smooth in the design

    def draw(expected: float, df: float) -> np.ndarray:
        return expected * sps.chi2.ppf(rng.permutation(grid), df) / df if df > 0 else np.zeros(n)

    ms_p = draw(r * s2["s2_patient"] + s2["s2_resid"], p - 1)
    ms_r = draw(s2["s2_resid"], (p - 1) * (r - 1)) if r >= 2 else np.full(n, np.nan)
    ss_s = draw(s2["s2_resid"] + p * s2["s2_seed"], r - f) * (r - f)
    ss_f = draw(s2["s2_resid"] + p * s2["s2_seed"] + p * s_ * s2["s2_fold"], f - 1) * (f - 1)
    n_img = float(ci["n_rows"]) / max(float(ci["n_patients"]), 1.0) * p
    rate = float(ci["n_zero"]) / float(ci["n_rows"]) if ci["n_rows"] else 0.0
    se_hit = float(ci["se_hit"]) * np.sqrt(float(ci["n_patients"]) / p)
    z_lo, z_hi = rare_zero_quantiles(float(ci["est_hit"]), se_hit, p - 1, rate * n_img, n_img,
                                     float(ci["zero_weight"]), alpha)
    sizes = np.full(f, float(s_))
    var_df = np.array([recipe_variance(components_from_ms(
        {"ms_patient": ms_p[i], "ms_resid": ms_r[i], "ss_fold": ss_f[i], "ss_seed": ss_s[i]}, p, sizes), p, r)
        for i in range(n)]).reshape(n, 2)
    df = var_df[:, 1]
    ok = np.isfinite(df) & (df > 0)
    q = np.full(n, np.nan)
    q[ok] = sps.t.ppf(1 - alpha / 2, df[ok])  # one vectorised call instead of one per draw (same values)
    q_test = float(sps.t.ppf(1 - alpha / 2, p - 1))
    halves = []
    for i in range(n):
        lo, hi, _ = logit_interval(est, float(np.sqrt(var_df[i, 0])), float(q[i]))
        t_lo, t_hi, _ = logit_interval(est, float(np.sqrt(ms_p[i] / (p * r))), q_test)
        lows = [x for x in (lo, t_lo, z_lo) if np.isfinite(x)]
        highs = [x for x in (hi, t_hi, z_hi) if np.isfinite(x)]
        if lows and highs:
            halves.append((max(highs) - min(lows)) / 2)
    return float(np.median(halves)) if halves else float("nan")


def patients_needed(ci: Mapping[str, float], half_width: float, n_folds: int, n_seeds: int, alpha: float = 0.05,
                    max_patients: int = 20000) -> int | None:
    """Fewest test patients for a recipe-interval half-width of at most ``half_width`` with ``n_folds`` x
    ``n_seeds`` runs (:func:`predict_half_width`; a doubling search, then bisection); None when the runs alone
    (or ``max_patients``) cannot get there.

    Examples
    --------
    >>> ci = {"estimate": 0.8, "s2_patient": 0.01, "s2_fold": 0.0, "s2_seed": 0.0004, "s2_resid": 0.002,
    ...       "est_hit": 0.8, "se_hit": 0.02, "n_zero": 0.0, "n_rows": 40.0, "zero_weight": 1.0, "n_patients": 20}
    >>> n = patients_needed(ci, 0.05, 2, 3); n is not None and predict_half_width(ci, n, 2, 3) <= 0.05
    True
    """
    def ok(p: int) -> bool:
        return bool(predict_half_width(ci, p, n_folds, n_seeds, alpha) <= half_width)  # NaN: not ok

    lo, hi = 1, 2
    while not ok(hi):
        if hi >= max_patients:
            return None
        lo, hi = hi, min(hi * 2, max_patients)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


__all__ = ["design_mdd", "equivalence_margin", "patients_needed", "predict_half_width", "run_components",
           "seeds_needed", "simulated_power"]
