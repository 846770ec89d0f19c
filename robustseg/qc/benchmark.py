"""Failure-detection benchmark of the ground-truth-free scores: from a long per-image table of scores and Dice
to risk-coverage tables (pure functions over DataFrames; the report reads the files and calls these).

Input rows: one per run x image x structure x condition with ``arm, fold, seed, run_id, image_id, patient_id,
perturbation, severity, class, dice`` and the raw score columns of :data:`robustseg.qc.scores.HIGHER_IS_CONFIDENT`
(``composite`` is added here). Risk = ``1 - dice``; failure = ``dice < FAILURE_DICE``. Dice here counts a
structure that is absent in both reference and prediction as 1 (a correct "absent"), and one present in only
one of them as 0: QC must score every image, including the many without the structure (CSP/LV).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from robustseg.qc import riskcov
from robustseg.qc.scores import HIGHER_IS_CONFIDENT, STRUCTURES, combined_name, composite, confidence

FAILURE_DICE = 0.5
"""A segmentation of a structure fails when its Dice is below this."""

SETTINGS_POOLED = ("clean", "perturbed", "all")
"""Pooled evaluation sets: the clean test set, every perturbed set together, both together."""

SCORES: tuple[str, ...] = tuple(HIGHER_IS_CONFIDENT)

CONDITION_BOOT = 200
"""Bootstrap replicates for each single perturbation x severity (CSV only; the pooled sets get the study's)."""


def qc_dice(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Dice with the QC rule for empty structures: both empty = 1."""
    tp, fp, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn))
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.maximum(den, 1), 1.0)


def add_combined(table: pd.DataFrame, structures: Sequence[str] = STRUCTURES) -> pd.DataFrame:
    """Append rows ``class == combined_name(structures)`` (``"csp+lv"``): mean Dice and mean score over
    ``structures`` (``range_z``: the max)."""
    keys = [c for c in ("arm", "fold", "seed", "run_id", "image_id", "patient_id", "perturbation", "severity")
            if c in table.columns]
    sub = table[table["class"].isin(list(structures))]
    cols = [c for c in ("dice", *SCORES) if c in sub.columns and c != "composite"]
    agg = {c: ("max" if c == "range_z" else "mean") for c in cols}
    comb = sub.groupby(keys, sort=False, dropna=False).agg(agg).reset_index().assign(**{"class": combined_name(structures)})
    return pd.concat([table, comb], ignore_index=True)


def settings(table: pd.DataFrame, per_condition: bool = True) -> pd.DataFrame:
    """Stack the evaluation sets with a ``setting`` column and the composite ranked within each set and run.

    Sets: ``clean``, ``perturbed`` (every perturbed condition pooled), ``all``, and (``per_condition``) each
    ``perturbation sN``. The composite is relative (percentile ranks over the images scored together), so it is
    recomputed per set, per run and per structure.
    """
    clean = table["perturbation"] == "none"
    parts = [table[clean].assign(setting="clean"), table[~clean].assign(setting="perturbed"),
             table.assign(setting="all")]
    if per_condition:
        for (p, s), g in table[~clean].groupby(["perturbation", "severity"], sort=True):
            parts.append(g.assign(setting=f"{p} s{int(s)}"))
    out = pd.concat([p for p in parts if not p.empty], ignore_index=True)
    if {"pairwise_dice", "range_z"} <= set(out.columns):
        comp = np.full(len(out), np.nan)
        for _, idx in out.groupby(["setting", "run_id", "class"], sort=False).indices.items():
            g = out.iloc[idx]
            comp[idx] = composite(g["pairwise_dice"].to_numpy(), g["range_z"].to_numpy())
        out["composite"] = comp
    return out


def with_confidence(table: pd.DataFrame) -> pd.DataFrame:
    """Risk, failure and the scores turned into confidences (higher = trust), in columns named like the scores."""
    out = table.copy()
    out["risk"] = 1.0 - out["dice"].to_numpy(dtype=np.float64)
    out["failure"] = out["dice"].to_numpy(dtype=np.float64) < FAILURE_DICE
    for s in SCORES:
        if s in out.columns:
            out[s] = confidence(out[s], s)
    return out


def evaluate(table: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0, per_condition: bool = True,
             structures: Sequence[str] = STRUCTURES) -> dict[str, pd.DataFrame]:
    """All benchmark tables from the long per-image table (see the module docstring); ``structures``: the
    classes combined into one more class (the data set's small structures; CSP and LV by default).

    Returns ``riskcov`` (:func:`riskcov.evaluate_scores` per arm, setting, class and score, with ``rank``
    by normalised AURC; single conditions with at most :data:`CONDITION_BOOT` replicates), ``review`` (failure rate left after reviewing 5/10/20 %, pooled settings),
    ``composite_vs_pairwise`` (paired nAURC difference, pooled settings), ``curves`` (figure data).
    """
    scores = [s for s in SCORES if s in table.columns or s == "composite"]
    t = with_confidence(settings(add_combined(table, structures), per_condition))
    scores = [s for s in scores if s in t.columns and t[s].notna().any()]
    by = ("arm", "setting", "class")
    pooled_rows = t["setting"].isin(SETTINGS_POOLED)
    rc = pd.concat([riskcov.evaluate_scores(t[pooled_rows], scores, by=by, n_boot=n_boot, seed=seed),
                    riskcov.evaluate_scores(t[~pooled_rows], scores, by=by, n_boot=min(n_boot, CONDITION_BOOT),
                                            seed=seed)], ignore_index=True)
    if not rc.empty:
        rc["rank"] = rc.groupby(list(by))["naurc"].rank(ascending=False, method="min")
    pooled = t[t["setting"].isin(SETTINGS_POOLED)]
    review = riskcov.review_table(pooled, scores, by=by)
    diff = (riskcov.paired_difference(pooled, "composite", "pairwise_dice", by=by, n_boot=n_boot, seed=seed)
            if {"composite", "pairwise_dice"} <= set(scores) else pd.DataFrame())
    curves = riskcov.curve_grid(pooled, scores, by=by)
    return {"riskcov": rc, "review": review, "composite_vs_pairwise": diff, "curves": curves}


def winner(riskcov_table: pd.DataFrame, arm: str, setting: str = "all") -> str | None:
    """The score with the highest mean normalised AURC over the structures (e.g. CSP, LV, both) in ``setting``;
    an exact tie goes to the earlier score of :data:`SCORES` (pairwise Dice, the simple baseline, first)."""
    t = riskcov_table[(riskcov_table["arm"] == arm) & (riskcov_table["setting"] == setting)]
    if t.empty:
        return None
    mean = t.groupby("score")["naurc"].mean().dropna().round(12)
    if mean.empty:
        return None
    pref = {s: i for i, s in enumerate(SCORES)}
    return str(min(mean.index, key=lambda s: (-mean[s], pref.get(s, len(pref)))))
