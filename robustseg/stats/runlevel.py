"""Run-level comparison of study arms: seed (and fold) noise is in the error term.

Each trained model (run) contributes one number per class: the mean over *every* test image of a
per-image measure. The default measure is :func:`dice_all_images`, Dice with an empty reference and an
empty prediction counted as 1 (for this comparison only), so a false positive on a structure-absent
image scores 0 and counts against the arm; a per-image table under the ``nan`` empty policy drops those
images from its ``dice`` column, and an arm that paints blobs on empty images would look as good as one
that does not.

The difference of the arm means is tested with a Welch t on the run-level values. When both arms were
trained on the same folds, the test is blocked by fold: the difference is the mean over folds of the
per-fold differences, and each arm's variance is its pooled within-fold (seed-to-seed) variance, so a
fold effect shared by both arms leaves the test. The standard error shrinks as runs are added
(``sqrt(sd_a**2 / R_a + sd_b**2 / R_b)`` without folds), unlike a per-image test that holds the trained
models fixed and mistakes seed noise for an effect. The verdict's direction and its significance come
from the same t statistic; p-values are Holm-adjusted over every row of the comparison table.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

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
    require_columns,
    resolve_direction,
)
from robustseg.stats.design import design_test, mdd, tost
from robustseg.stats.flags import flag_text, run_flags

DICE_ALL = "dice_all_images"
"""Name of the per-image measure of :func:`dice_all_images` (a column of ``run_values``' input)."""

RUN_COMPARE_COLUMNS = (
    "measure",
    "arm_a",
    "arm_b",
    "mean_a",
    "mean_b",
    "diff",
    "ci_low",
    "ci_high",
    "se",
    "df",
    "t",
    "pval",
    "p_holm",
    "n_runs_a",
    "n_runs_b",
    "n_folds",
    "blocked",
    "n_images",
    "n_patients",
    "p_a_better_runs",
    "p_a_better_boot",
    "verdict",
    "design",
    "mdd",
    "var_patient_diff",
    "p_equivalent",
    "p_equivalent_holm",
    "margin",
    "decision",
    "flag",
    "higher_is_better",
    "alpha",
    "n_boot",
)
RANKING_COLUMNS = ("arm", "value", "rank", "mean_rank_boot", "p_first", "kendall_tau_mean", "kendall_tau_q05",
                   "n_arms", "n_boot")
NO_DIFFERENCE = "no difference detected"
NOT_TESTABLE = "not testable (no run-to-run variance)"
INCONCLUSIVE = "inconclusive"
DEFAULT_MARGIN = 0.01
"""Equivalence margin of the comparisons (``compare.margin`` in the study file): differences within
``+/- margin`` Dice are taken as no difference that matters."""



def _by_fold(x: np.ndarray, f: np.ndarray, folds: list) -> np.ndarray:
    """``(folds, max runs per fold)`` array of the values of each fold, NaN-padded."""
    width = max([int((f == fold).sum()) for fold in folds] + [1])
    out = np.full((len(folds), width), np.nan)
    for i, fold in enumerate(folds):
        v = x[f == fold]
        out[i, : v.size] = v
    return out


def run_level_test(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *,
                   alpha: float = 0.05, folds_a: Sequence[object] | None = None,
                   folds_b: Sequence[object] | None = None) -> dict[str, float | str]:
    """Test of ``mean(a) - mean(b)`` over run-level values for the design the runs form
    (:func:`robustseg.stats.design.design_test`).

    Without folds: Welch's t (``se = sqrt(var_a / R_a + var_b / R_b)``, ddof=1, Welch-Satterthwaite
    ``df``). With ``folds_a`` and ``folds_b`` (the fold of each value): only folds that both arms have are
    used; ``diff`` is the mean over those F folds of the per-fold differences of means. With seeds to spare
    within folds (k x n) the test is blocked by fold: ``se**2 = sum_f (s_a**2 / R_af + s_b**2 / R_bf) /
    F**2`` with ``s**2`` each arm's pooled within-fold variance (its df = runs - folds), Satterthwaite
    ``df``; one fold gives Welch's t. With one run per fold (k x 1, nnU-Net's design) the test is paired
    by fold: a one-sample t on the per-fold differences, ``F - 1`` df.

    Returns ``diff``, ``se``, ``df``, ``t``, ``p`` (two-sided), ``ci_low``, ``ci_high`` (``1 - alpha``),
    ``n_a``, ``n_b`` (runs used), ``n_blocks`` (folds used; 1 without folds) and ``design`` (``blocked``,
    ``welch``, ``paired`` or ``none``: no variance, and NaN statistics except ``diff``). NaN values are
    dropped.

    Examples
    --------
    >>> r = run_level_test([0.80, 0.82, 0.84], [0.70, 0.72, 0.74])
    >>> round(r["diff"], 3), round(r["se"], 4), r["p"] < 0.01, r["design"]
    (0.1, 0.0163, True, 'welch')
    >>> r = run_level_test([0.80, 0.82, 0.90, 0.92], [0.78, 0.80, 0.88, 0.90],
    ...                    folds_a=[0, 0, 1, 1], folds_b=[0, 0, 1, 1])
    >>> round(r["diff"], 3), round(r["se"], 4), round(r["df"], 6), r["n_blocks"], r["design"]
    (0.02, 0.01, 4.0, 2.0, 'blocked')
    >>> r = run_level_test([0.80, 0.85, 0.78, 0.90, 0.83], [0.75, 0.79, 0.74, 0.86, 0.77],
    ...                    folds_a=range(5), folds_b=range(5))
    >>> r["design"], r["df"], r["p"] < 1e-3
    ('paired', 4.0, True)
    """
    check_alpha(alpha, "run_level_test")
    xa = np.asarray(a, dtype=np.float64)
    xb = np.asarray(b, dtype=np.float64)
    blocked = folds_a is not None and folds_b is not None
    if blocked:
        fa, fb = np.asarray(list(folds_a), dtype=object), np.asarray(list(folds_b), dtype=object)
        if fa.shape != xa.shape or fb.shape != xb.shape:
            raise InputError(f"run_level_test: folds must match the values in length, got {fa.shape} for "
                             f"{xa.shape} and {fb.shape} for {xb.shape}")
        ka, kb = np.isfinite(xa), np.isfinite(xb)
        xa, fa, xb, fb = xa[ka], fa[ka], xb[kb], fb[kb]
        shared = sorted(set(fa.tolist()) & set(fb.tolist()), key=str)
    else:
        xa, xb = xa[np.isfinite(xa)], xb[np.isfinite(xb)]
        shared = [0]
        fa, fb = np.zeros(xa.size, dtype=object), np.zeros(xb.size, dtype=object)
        fa[:], fb[:] = 0, 0
    res = design_test(_by_fold(xa, fa, shared), _by_fold(xb, fb, shared), alpha)
    out: dict[str, float | str] = {k: float(res[k]) for k in ("diff", "se", "df", "t", "p", "ci_low", "ci_high")}
    out.update(n_a=float(res["n_a"]), n_b=float(res["n_b"]), n_blocks=float(res["n_folds"]),
               design=str(res["design"]))
    return out


def dice_all_images(per_image: pd.DataFrame, tp: str = "tp", fp: str = "fp", fn: str = "fn") -> np.ndarray:
    """Per-image Dice ``2 TP / (2 TP + FP + FN)`` defined on every image: 1 when reference and prediction
    are both empty, so a false positive on a structure-absent image scores 0.

    Used for arm comparisons and retention only; the report's Dice columns keep the study's empty policy.

    Examples
    --------
    >>> df = pd.DataFrame({"tp": [8, 0, 0], "fp": [2, 30, 0], "fn": [2, 0, 0]})
    >>> dice_all_images(df).tolist()
    [0.8, 0.0, 1.0]
    """
    where = "dice_all_images"
    require_columns(per_image, [tp, fp, fn], where)
    t, p, f = (numeric(per_image, c, where) for c in (tp, fp, fn))
    den = 2 * t + p + f
    out = np.ones(den.shape)
    np.divide(2 * t, den, out=out, where=den > 0)
    out[~np.isfinite(den)] = np.nan
    return out


def run_values(
    per_image: pd.DataFrame,
    value: str = DICE_ALL,
    *,
    runs: Sequence[str] = ("arm", "fold", "seed"),
    by: Sequence[str] = ("class",),
    image_col: str = "image_id",
) -> pd.DataFrame:
    """One value per run and group of ``by``: the mean of ``value`` over the run's images (NaN left out).

    ``value == "dice_all_images"`` is computed from ``tp, fp, fn`` by :func:`dice_all_images` when the
    table has no such column. Returns columns ``*by, *runs, value, n_images``.

    Examples
    --------
    >>> df = pd.DataFrame({"arm": "a", "fold": 0, "seed": [0, 0, 1, 1], "class": "csp",
    ...                    "image_id": ["i0", "i1", "i0", "i1"], "tp": [8, 0, 8, 0], "fp": [2, 0, 2, 9],
    ...                    "fn": [2, 0, 2, 0]})
    >>> rv = run_values(df)
    >>> rv["seed"].tolist(), rv["value"].round(3).tolist(), rv["n_images"].tolist()
    ([0, 1], [0.9, 0.4], [2, 2])
    """
    where = "run_values"
    runs, by = as_tuple(runs), as_tuple(by)
    keys = [*by, *runs]
    work = per_image[list(dict.fromkeys([*keys, image_col]))].copy()
    if value == DICE_ALL and value not in per_image.columns:
        require_columns(per_image, [*keys, image_col], where)
        work["_v"] = dice_all_images(per_image)
    else:
        require_columns(per_image, [*keys, image_col, value], where)
        work["_v"] = numeric(per_image, value, where)
    check_conditions(per_image, keys, where)
    out = work.groupby(keys, sort=True, dropna=False).agg(value=("_v", "mean"), n_images=("_v", "count"))
    return out.reset_index()


def _image_means(sub: pd.DataFrame, arms: list[str], arm_col: str, image_col: str) -> pd.DataFrame:
    """Per image (rows) and arm (columns): the value averaged over the arm's runs."""
    means = sub.groupby([image_col, arm_col], sort=True)["_v"].mean().unstack(arm_col)
    return means.reindex(columns=arms)


def _boot_arm_means(means: pd.DataFrame, patients: pd.Series, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, n_arms)`` arm means under a patient bootstrap of the images (mean of image means)."""
    codes = pd.factorize(patients.reindex(means.index), sort=True)[0]
    w = bootstrap_weights(codes, n_boot, np.random.default_rng(seed))
    x = means.to_numpy(dtype=np.float64)
    ok = np.isfinite(x)
    num = w @ np.where(ok, x, 0.0)
    den = w @ ok.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def _p_runs_better(va: np.ndarray, fa: np.ndarray, vb: np.ndarray, fb: np.ndarray, hib: bool) -> float:
    """P(a run of A beats a run of B), over pairs of runs trained on the same fold (ties count one half)."""
    wins, pairs = 0.0, 0
    for fold in set(fa.tolist()) & set(fb.tolist()):
        x, y = va[fa == fold][:, None], vb[fb == fold][None, :]
        d = (x - y) if hib else (y - x)
        wins += float((d > 0).sum() + 0.5 * (d == 0).sum())
        pairs += d.size
    return wins / pairs if pairs else float("nan")



def _arm_values(per_image: pd.DataFrame, cols: Sequence[str], arm_col: str, value: str, arms: Sequence[str],
                where: str) -> pd.DataFrame:
    """``cols`` of the rows of ``arms`` (arm names as strings) plus ``_v``: the per-image measure ``value``."""
    work = per_image[list(dict.fromkeys(cols))].copy()
    work[arm_col] = work[arm_col].astype(str)
    work["_v"] = (dice_all_images(per_image) if value == DICE_ALL and value not in per_image.columns
                  else numeric(per_image, value, where))
    return work[work[arm_col].isin(arms)]


def patient_difference_variance(sub: pd.DataFrame, arm_a: str, arm_b: str, *, arm_col: str = "arm",
                                image_col: str = "image_id", patient_col: str | None = "patient_id",
                                fold_col: str = "fold", seed_col: str = "seed", value: str = "_v") -> float:
    """Variance of the arm difference that the test patients add: how far the true difference on *these*
    patients can lie from the difference on new patients (an arm x patient interaction), method of moments.

    The run-level test holds the test images fixed; a claim about the recipes (equivalence) also covers new
    patients. Per patient, ``D_p`` is the difference of the arms' sums of ``value`` over the patient's images
    (each averaged over the arm's runs, run main effects removed). The cluster variance of ``D_p`` around
    ``diff * m_p`` (``m_p`` images), over ``N^2``, minus what the run-to-run noise puts into it (per patient and
    arm the variance over runs / runs), floored at 0. Images scored in every run of both arms only; NaN with
    fewer than 3 patients or one run in an arm.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> eff = rng.normal(0, 0.05, 30)  # patients gain differently from arm b
    >>> rows = [{"arm": arm, "fold": 0, "seed": s, "image_id": p, "patient_id": p,
    ...          "_v": 0.8 + (eff[p] if arm == "b" else 0) + rng.normal(0, 0.01)}
    ...         for arm in "ab" for s in range(3) for p in range(30)]
    >>> v = patient_difference_variance(pd.DataFrame(rows), "a", "b")
    >>> bool(0.5 < v / (0.05**2 / 30) < 2)
    True
    """
    pat = patient_col or image_col
    x = sub[sub[arm_col].isin([arm_a, arm_b])]
    wide = x.pivot_table(index=image_col, columns=[arm_col, fold_col, seed_col], values=value, aggfunc="mean",
                         dropna=False).dropna()
    if wide.empty or arm_a not in wide.columns.get_level_values(0) or arm_b not in wide.columns.get_level_values(0):
        return float("nan")
    patients = x.drop_duplicates(image_col).set_index(image_col)[pat].reindex(wide.index).to_numpy()
    sums = wide.groupby(patients).sum()
    m = wide.groupby(patients).size().reindex(sums.index).to_numpy(dtype=np.float64)
    n_p, n_img = len(m), float(m.sum())
    if n_p < 3:
        return float("nan")
    d = np.zeros(n_p)
    noise = 0.0
    for arm, sign in ((arm_a, 1.0), (arm_b, -1.0)):
        s = sums[arm].to_numpy(dtype=np.float64)
        n_r = s.shape[1]
        if n_r < 2:
            return float("nan")
        v = s.sum(axis=0) / n_img
        adj = s - np.outer(m, v - v.mean())
        d += sign * adj.mean(axis=1)
        noise += adj.var(axis=1, ddof=1).sum() / n_r
    diff = d.sum() / n_img
    scale = n_p / (n_p - 1)
    v_obs = scale * ((d - diff * m) ** 2).sum() / n_img**2
    return float(max(v_obs - scale * noise / n_img**2, 0.0))


def compare_runs(
    per_image: pd.DataFrame,
    value: str = DICE_ALL,
    *,
    arms: Sequence[str] | None = None,
    arm_col: str = "arm",
    by: Sequence[str] = ("class",),
    image_col: str = "image_id",
    seed_col: str = "seed",
    fold_col: str = "fold",
    patient_col: str | None = "patient_id",
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
    higher_is_better: bool | None = None,
    margin: float = DEFAULT_MARGIN,
    flags: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Run-level comparison of every pair of arms per group of ``by``, Holm over the whole table.

    Each run's value is the mean of ``value`` over its images (:func:`run_values`; the default
    ``dice_all_images`` counts a false positive on a structure-absent image as Dice 0). Every pair
    ``(arm_a, arm_b)`` of ``arms`` (plan order; default: sorted arms of the table) is tested with
    :func:`run_level_test`, blocked by fold. Columns after ``by``:

    - ``measure``, ``arm_a``, ``arm_b``, ``mean_a``, ``mean_b`` (mean over runs), ``diff`` (blocked
      difference a - b) with its ``ci_low``/``ci_high`` (t interval), ``se``, ``df``, ``t``, ``pval``;
    - ``p_holm``: Holm-adjusted over *every row* of the result (all arm pairs x groups: filter the
      background class out before calling if it should not count);
    - ``n_runs_a``, ``n_runs_b``, ``n_folds`` (folds both arms have), ``blocked`` (more than one fold);
    - ``n_images``, ``n_patients``: images (patients) with a value in both arms;
    - ``p_a_better_runs``: the probability that a run of A beats a run of B trained on the same fold
      (Bouthillier et al. 2021; ties count one half);
    - ``p_a_better_boot``: the fraction of patient-bootstrap replicates (images resampled by patient,
      ``n_boot`` draws, generator seeded with ``seed``; by image when ``patient_col`` is None) in
      which A's mean over images of the run-averaged value is better than B's;
    - ``verdict``: ``"<arm> better"`` when ``p_holm < alpha`` (the arm the sign of ``t`` favours,
      ``higher_is_better`` inferred from ``value`` when None), ``"no difference detected"`` otherwise,
      ``"not testable (no run-to-run variance)"`` without a variance; ``higher_is_better``,
      ``alpha``, ``n_boot``;
    - ``design``: the test used (:data:`robustseg.stats.design.DESIGNS`: k x n blocked by fold, 1 x n Welch,
      k x 1 paired by fold); ``mdd``: the smallest true difference the row would call with 80 % power at the
      level of Holm's first step (``alpha`` / testable rows), from its standard error and df;
    - ``var_patient_diff``: the variance the test patients add to the difference as a claim about new
      patients (:func:`patient_difference_variance`);
    - ``p_equivalent``: TOST p-value of ``|difference| < margin`` on the same t, its standard error widened by
      ``var_patient_diff`` (equivalence is a claim about the recipes, not about these patients); ``p_equivalent_holm``
      (Holm over the table); ``decision``: ``"equivalent within +/-margin"`` when ``p_equivalent_holm <
      alpha``, else ``"<arm> better"`` when ``p_holm < alpha``, else ``"inconclusive"`` (or not testable);
    - ``flag``: the runs of either arm that collapsed on the test set (predicted the structure on none of the
      images whose reference has it; needs ``tp``/``fp``/``fn`` or ``dice_all_images``' inputs) or that are
      listed in ``flags`` (columns ``arm, fold, seed, flag`` and optionally ``class``: e.g. failed runs, or
      the collapse flags of the runs' validation), e.g. ``"collapsed: a f0 s2"``; empty when none.

    Examples
    --------
    >>> rows = [{"arm": arm, "fold": f, "seed": s, "class": "csp", "image_id": f"i{i}", "patient_id": i,
    ...          "dice": base + 0.01 * s + 0.002 * i}
    ...         for arm, base in (("a", 0.80), ("b", 0.70)) for f in (0, 1) for s in range(3) for i in range(4)]
    >>> res = compare_runs(pd.DataFrame(rows), value="dice", arms=["a", "b"], n_boot=200)
    >>> res[["arm_a", "arm_b", "verdict", "n_runs_a", "n_folds"]].values.tolist()
    [['a', 'b', 'a better', 6, 2]]
    >>> round(float(res["diff"].iloc[0]), 3), float(res["p_a_better_runs"].iloc[0])
    (0.1, 1.0)
    >>> res[["design", "decision"]].values.tolist()
    [['blocked', 'a better']]
    """
    where = "compare_runs"
    check_alpha(alpha, where)
    if not (np.isfinite(margin) and margin > 0):
        raise InputError(f"{where}: margin must be a positive number (Dice), got {margin!r}")
    check_n_boot(n_boot, where)
    by = as_tuple(by)
    pat = [patient_col] if patient_col else []
    cols = [*by, arm_col, image_col, seed_col, fold_col, *pat]
    require_columns(per_image, cols if value == DICE_ALL and value not in per_image.columns else [*cols, value],
                    where)
    check_conditions(per_image, by, where)
    present = sorted(per_image[arm_col].dropna().astype(str).unique())
    arms = [str(a) for a in arms] if arms is not None else present
    missing = [a for a in arms if a not in present]
    if missing:
        raise InputError(f"{where}: arm {missing[0]!r} not found in column {arm_col!r} (arms: {present})")
    if len(set(arms)) != len(arms):
        raise InputError(f"{where}: arms {arms} repeat a name; expected distinct arms")
    hib = resolve_direction(value, higher_is_better)
    work = _arm_values(per_image, cols, arm_col, value, arms, where)
    flagged = run_flags(per_image, flags, by, arm_col, fold_col, seed_col)

    rows = []
    for key, sub in groups(work, by):
        rv = sub.groupby([arm_col, fold_col, seed_col], sort=True)["_v"].mean().dropna().reset_index()
        means = _image_means(sub, arms, arm_col, image_col)
        if patient_col:
            patients = sub.drop_duplicates(image_col).set_index(image_col)[patient_col]
        else:
            patients = pd.Series(means.index, index=means.index)
        boot = _boot_arm_means(means, patients, n_boot, seed) if len(means) else np.full((0, len(arms)), np.nan)
        for ia, ib in combinations(range(len(arms)), 2):
            arm_a, arm_b = arms[ia], arms[ib]
            ra, rb = rv[rv[arm_col] == arm_a], rv[rv[arm_col] == arm_b]
            va, fa = ra["_v"].to_numpy(), ra[fold_col].to_numpy(dtype=object)
            vb, fb = rb["_v"].to_numpy(), rb[fold_col].to_numpy(dtype=object)
            res = run_level_test(va, vb, alpha=alpha, folds_a=fa, folds_b=fb)
            both = means[[arm_a, arm_b]].dropna()
            if len(boot):
                d = boot[:, ia] - boot[:, ib]
                d = d[np.isfinite(d)]
                p_boot = float(((d > 0) if hib else (d < 0)).mean() + 0.5 * (d == 0).mean()) if d.size else np.nan
            else:
                p_boot = float("nan")
            var_pd = patient_difference_variance(sub, arm_a, arm_b, arm_col=arm_col, image_col=image_col,
                                                 patient_col=patient_col, fold_col=fold_col, seed_col=seed_col)
            rows.append({
                **key, "measure": value, "arm_a": arm_a, "arm_b": arm_b, "var_patient_diff": var_pd,
                "mean_a": float(va.mean()) if va.size else np.nan, "mean_b": float(vb.mean()) if vb.size else np.nan,
                "diff": res["diff"], "ci_low": res["ci_low"], "ci_high": res["ci_high"], "se": res["se"],
                "df": res["df"], "t": res["t"], "pval": res["p"], "n_runs_a": int(res["n_a"]),
                "n_runs_b": int(res["n_b"]), "n_folds": int(res["n_blocks"]), "blocked": res["n_blocks"] > 1,
                "n_images": len(both), "n_patients": int(patients.reindex(both.index).nunique()),
                "p_a_better_runs": _p_runs_better(va, fa, vb, fb, hib), "p_a_better_boot": p_boot,
                "design": res["design"], "flag": flag_text(flagged, key, arm_a, arm_b),
                "higher_is_better": hib, "alpha": float(alpha), "n_boot": int(n_boot),
            })  # fmt: skip
    late = ("p_holm", "verdict", "mdd", "p_equivalent", "p_equivalent_holm", "margin", "decision")
    out = pd.DataFrame(rows, columns=[*by, *(c for c in RUN_COMPARE_COLUMNS if c not in late)])
    return _decide(out, alpha, margin, hib)[[*by, *RUN_COMPARE_COLUMNS]]


def _decide(out: pd.DataFrame, alpha: float, margin: float, hib: bool) -> pd.DataFrame:
    """Holm, verdict, MDD, equivalence (TOST) and the decision of every row of a comparison table."""
    out = out.copy()
    out["p_holm"] = holm_adjust(out["pval"].to_numpy()) if len(out) else np.nan
    out["verdict"] = [_verdict(r.pval, r.p_holm, r.t, r.arm_a, r.arm_b, hib, alpha)
                      for r in out.itertuples(index=False)]
    m = max(int(np.isfinite(out["pval"].to_numpy(dtype=np.float64)).sum()), 1) if len(out) else 1
    out["mdd"] = [mdd(se, df, alpha / m) for se, df in zip(out["se"], out["df"], strict=True)]
    se = out["se"].to_numpy(dtype=np.float64)
    if "var_patient_diff" in out.columns:
        se = np.sqrt(se**2 + np.nan_to_num(out["var_patient_diff"].to_numpy(dtype=np.float64)))
    out["p_equivalent"] = tost(out["diff"].to_numpy(dtype=np.float64), se, out["df"].to_numpy(dtype=np.float64),
                               margin) if len(out) else np.nan
    out["p_equivalent_holm"] = holm_adjust(np.atleast_1d(out["p_equivalent"].to_numpy(dtype=np.float64))) \
        if len(out) else np.nan
    out["margin"] = float(margin)
    out["decision"] = [
        NOT_TESTABLE if not np.isfinite(r.pval) else
        f"equivalent within ±{margin:g}" if r.p_equivalent_holm < alpha else
        r.verdict if r.p_holm < alpha else INCONCLUSIVE for r in out.itertuples(index=False)]
    return out


def holm_adjust(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values (see :func:`robustseg.stats.compare.holm`).

    Examples
    --------
    >>> holm_adjust([0.01, 0.04, 0.03, np.nan]).round(3).tolist()
    [0.03, 0.06, 0.06, nan]
    """
    from robustseg.stats.compare import holm

    return holm(pvalues)


def _verdict(p: float, p_holm: float, t: float, arm_a: str, arm_b: str, hib: bool, alpha: float) -> str:
    if not np.isfinite(p):
        return NOT_TESTABLE
    if not p_holm < alpha:
        return NO_DIFFERENCE
    return f"{arm_a if (t > 0) == hib else arm_b} better"


def ranking_stability(
    per_image: pd.DataFrame,
    value: str = DICE_ALL,
    *,
    arms: Sequence[str] | None = None,
    arm_col: str = "arm",
    by: Sequence[str] = ("class",),
    image_col: str = "image_id",
    patient_col: str | None = "patient_id",
    n_boot: int = 1000,
    seed: int = 0,
    higher_is_better: bool | None = None,
) -> pd.DataFrame:
    """Stability of the arm ranking under a patient bootstrap (as challengeR does), per group of ``by``.

    An arm's value is the mean over images of its run-averaged ``value`` (``dice_all_images`` by
    default); arms are ranked (1 = best, ties averaged) on the full test set and on ``n_boot``
    replicates that resample patients (images when ``patient_col`` is None). Columns after ``by``:
    ``arm, value, rank, mean_rank_boot, p_first`` (fraction of replicates in which the arm ranks first;
    ties share), ``kendall_tau_mean, kendall_tau_q05`` (Kendall tau-b between the full and each
    replicate's ranking: mean and 5 % quantile, the same in every row of a group; NaN with one arm),
    ``n_arms, n_boot``.

    Examples
    --------
    >>> rows = [{"arm": arm, "fold": 0, "seed": 0, "class": "lv", "image_id": f"i{i}", "patient_id": i,
    ...          "dice": base + 0.01 * (i % 3)} for arm, base in (("a", 0.9), ("b", 0.8), ("c", 0.7))
    ...         for i in range(6)]
    >>> r = ranking_stability(pd.DataFrame(rows), value="dice", n_boot=100)
    >>> r[["arm", "rank", "p_first", "kendall_tau_mean"]].values.tolist()
    [['a', 1.0, 1.0, 1.0], ['b', 2.0, 0.0, 1.0], ['c', 3.0, 0.0, 1.0]]
    """
    where = "ranking_stability"
    check_n_boot(n_boot, where)
    by = as_tuple(by)
    pat = [patient_col] if patient_col else []
    cols = [*by, arm_col, image_col, *pat]
    require_columns(per_image, cols if value == DICE_ALL and value not in per_image.columns else [*cols, value],
                    where)
    check_conditions(per_image, by, where)
    present = sorted(per_image[arm_col].dropna().astype(str).unique())
    arms = [str(a) for a in arms] if arms is not None else present
    hib = resolve_direction(value, higher_is_better)
    work = _arm_values(per_image, cols, arm_col, value, arms, where)
    rows = []
    for key, sub in groups(work, by):
        means = _image_means(sub, arms, arm_col, image_col)
        if patient_col:
            patients = sub.drop_duplicates(image_col).set_index(image_col)[patient_col]
        else:
            patients = pd.Series(means.index, index=means.index)
        full = means.mean(axis=0).to_numpy(dtype=np.float64)
        boot = _boot_arm_means(means, patients, n_boot, seed)
        sign = -1.0 if hib else 1.0
        rank_full = sps.rankdata(sign * full)
        rank_boot = sps.rankdata(sign * boot, axis=1)
        first = (rank_boot == rank_boot.min(axis=1, keepdims=True))
        p_first = (first / first.sum(axis=1, keepdims=True)).mean(axis=0)
        taus = np.array([sps.kendalltau(rank_full, r).statistic for r in rank_boot]) if len(arms) > 1 else \
            np.full(n_boot, np.nan)
        taus = np.where(np.isnan(taus) & (np.ptp(rank_full) == 0), 1.0, taus)
        for j, arm in enumerate(arms):
            rows.append({**key, "arm": arm, "value": float(full[j]), "rank": float(rank_full[j]),
                         "mean_rank_boot": float(rank_boot[:, j].mean()), "p_first": float(p_first[j]),
                         "kendall_tau_mean": float(np.nanmean(taus)) if np.isfinite(taus).any() else np.nan,
                         "kendall_tau_q05": float(np.nanquantile(taus, 0.05)) if np.isfinite(taus).any() else np.nan,
                         "n_arms": len(arms), "n_boot": int(n_boot)})
    return pd.DataFrame(rows, columns=[*by, *RANKING_COLUMNS])
