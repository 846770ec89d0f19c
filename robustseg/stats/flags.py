"""Flags on the runs behind a comparison: collapsed on the test set, or listed by the caller (failed runs,
validation collapses)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from robustseg.stats._util import as_tuple, numeric, require_columns

MIN_COLLAPSE_IMAGES = 1
"""A run *collapsed* on the test set when it predicts a structure on none of the images whose reference has
it (at least this many)."""


def collapsed_runs(per_image: pd.DataFrame, *, arm_col: str = "arm", fold_col: str = "fold", seed_col: str = "seed",
                   by: Sequence[str] = ("class",), tp: str = "tp", fp: str = "fp", fn: str = "fn") -> pd.DataFrame:
    """Runs that collapsed on the test set: they predict a structure on none of the images whose reference has
    it (at least :data:`MIN_COLLAPSE_IMAGES` such images). Columns ``*by, arm, fold, seed, flag``
    (``"collapsed"``); empty without ``tp``/``fp``/``fn``.

    Examples
    --------
    >>> df = pd.DataFrame({"arm": "a", "fold": 0, "seed": [0, 0, 1, 1], "class": "lv", "tp": [5, 0, 0, 0],
    ...                    "fp": [1, 0, 0, 0], "fn": [2, 0, 7, 0]})
    >>> collapsed_runs(df)[["arm", "fold", "seed", "flag"]].values.tolist()
    [['a', 0, 1, 'collapsed']]
    """
    by = as_tuple(by)
    cols = [*by, arm_col, fold_col, seed_col]
    if not {tp, fp, fn} <= set(per_image.columns) or not set(cols) <= set(per_image.columns):
        return pd.DataFrame(columns=[*cols, "flag"])
    work = per_image[cols].copy()
    t, p, f = (numeric(per_image, c, "collapsed_runs") for c in (tp, fp, fn))
    work["_ref"] = (t + f) > 0
    work["_pred"] = (t + p) > 0
    g = work.groupby(cols, sort=True, dropna=False).agg(ref=("_ref", "sum"), pred=("_pred", "sum")).reset_index()
    hit = g[(g["ref"] >= MIN_COLLAPSE_IMAGES) & (g["pred"] == 0)]
    return hit[cols].assign(flag="collapsed").reset_index(drop=True)


def run_flags(per_image: pd.DataFrame, flags: pd.DataFrame | None, by: tuple[str, ...], arm_col: str,
               fold_col: str, seed_col: str) -> pd.DataFrame:
    """Collapsed runs of ``per_image`` plus the given ``flags`` (``class`` optional), one table."""
    found = collapsed_runs(per_image, arm_col=arm_col, fold_col=fold_col, seed_col=seed_col, by=by)
    parts = [found.rename(columns={arm_col: "arm", fold_col: "fold", seed_col: "seed"})]
    if flags is not None and len(flags):
        require_columns(flags, ["arm", "fold", "seed", "flag"], "compare_runs (flags)")
        parts.append(flags)
    out = pd.concat(parts, ignore_index=True)
    out["arm"] = out["arm"].astype(str)
    return out


def flag_text(flags: pd.DataFrame, key: dict, arm_a: str, arm_b: str) -> str:
    """``"collapsed: a f0 s2; failed: b f1 s0"`` for the flagged runs of the two arms in this group."""
    if flags.empty:
        return ""
    sel = flags["arm"].isin([arm_a, arm_b])
    for col, val in key.items():
        if col in flags.columns:
            sel &= flags[col].isna() | (flags[col] == val)
    hit = flags[sel].drop_duplicates(["arm", "fold", "seed", "flag"])
    parts = []
    for flag, g in hit.groupby("flag", sort=True):
        runs = ", ".join(f"{r.arm} f{r.fold} s{r.seed}" for r in g.sort_values(["arm", "fold", "seed"]).itertuples())
        parts.append(f"{flag}: {runs}")
    return "; ".join(parts)
