"""Patient-grouped, stratified splits: a held-out test set and k cross-validation folds.

Every patient lands in exactly one bin (test or one fold). Patients are stratified on which small
structures their images hold (``has_<structure>`` of the data set's small structures; ``has_csp``,
``has_lv`` for the fetal classes). Coverage guarantee: if at least ``k + 1`` patients have a CSP image,
the test set and every fold contain a CSP image (likewise for LV and any further structure, as far as
spare patients allow); with fewer such patients no split can give every bin one, so the earliest bins
(test first) get them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from robustseg.errors import InputError
from robustseg.labels import SMALL_STRUCTURES

TEST_FOLD = -1


def _patients(index: pd.DataFrame, strata: tuple[str, ...]) -> pd.DataFrame:
    """One row per patient: ``patient_id, images`` and ``s0, s1, ...`` (any image of the patient has stratum j)."""
    for col in ("image_id", "patient_id", *strata):
        if col not in index.columns:
            raise InputError(f"index: column {col!r} missing; expected a table from load_index")
    if index["image_id"].duplicated().any():
        dup = index.loc[index["image_id"].duplicated(), "image_id"].iloc[0]
        raise InputError(f"index: image_id {dup!r} appears twice; expected unique image ids")
    g = index.groupby("patient_id", sort=True)
    return pd.DataFrame({"images": g.size(), **{f"s{j}": g[col].any() for j, col in enumerate(strata)}}).reset_index()


def make_splits(
    index: pd.DataFrame, *, test_fraction: float = 0.2, k_folds: int = 5, seed: int = 0,
    strata: tuple[str, ...] = ("has_csp", "has_lv"),
) -> pd.DataFrame:
    """Assign each image a fold: ``-1`` test, ``0..k-1`` cross-validation; grouped by patient.

    ``strata``: boolean index columns, one per small structure (``has_<name>`` of ``data.small_structures``;
    CSP and LV by default). Coverage: each bin first gets a patient with the first structure (patients with
    the most other structures first), then bins still lacking a later structure get one of its spare
    patients, in the order of ``strata``. The rest are balanced on the presence pattern over all strata.

    Returns ``DataFrame[image_id, patient_id, fold]`` sorted by ``image_id``. Deterministic for a seed.
    """
    if not isinstance(k_folds, int | np.integer) or int(k_folds) < 2:
        raise InputError(f"k_folds {k_folds!r}: expected an integer >= 2")
    if not 0.0 < float(test_fraction) < 1.0:
        raise InputError(f"test_fraction {test_fraction!r}: expected a number strictly between 0 and 1")
    strata = tuple(dict.fromkeys(strata))  # a structure named twice counts once
    if not strata:
        raise InputError("strata: expected at least one has_<structure> column")
    k = int(k_folds)
    pats = _patients(index, strata)
    n_bins = k + 1
    if len(pats) < n_bins:
        raise InputError(
            f"index: {len(pats)} patients; k_folds={k} plus a test set need at least {n_bins} patients"
        )
    rng = np.random.default_rng(int(seed))
    pats = pats.iloc[rng.permutation(len(pats))].reset_index(drop=True)
    weights = np.array([float(test_fraction)] + [(1.0 - float(test_fraction)) / k] * k)
    has = np.stack([pats[f"s{j}"].to_numpy(bool) for j in range(len(strata))])  # (strata, patients)
    stratum = (has.astype(np.int64) * (2 ** np.arange(len(strata))[::-1])[:, None]).sum(axis=0)
    sizes = pats["images"].to_numpy(dtype=np.int64)
    assign = np.full(len(pats), -1, dtype=np.int64)
    count = np.zeros(n_bins, dtype=np.int64)
    count_s = np.zeros((2 ** len(strata), n_bins), dtype=np.int64)

    def put(i: int, b: int) -> None:
        assign[i] = b
        count[b] += sizes[i]
        count_s[stratum[i], b] += sizes[i]

    # 1) coverage: one patient with the first structure per bin (those with the most other structures first),
    #    then, structure by structure, a spare patient for each bin still lacking it
    others = has[1:].sum(axis=0)
    order = sorted((i for i in range(len(pats)) if has[0, i]), key=lambda i: -others[i])
    for b, i in zip(range(n_bins), order, strict=False):
        put(i, b)
    for j in range(1, len(strata)):
        has_bin = np.zeros(n_bins, dtype=bool)
        has_bin[assign[(assign >= 0) & has[j]]] = True
        spare = [i for i in range(len(pats)) if has[j, i] and assign[i] < 0]
        lacking = np.flatnonzero(~has_bin)
        for b in sorted(lacking, key=lambda b: (count[b] > 0, b)):  # empty bins first, so none stays empty
            if not spare:
                break
            put(spare.pop(0), int(b))
    # 2) no empty bin (enough patients remain: each filled bin so far holds exactly one patient)
    for b in np.flatnonzero(count == 0):
        put(int(np.flatnonzero(assign < 0)[0]), int(b))
    # 3) the rest: rarest stratum first, largest patients first; to the bin furthest below its share
    rest = [i for i in range(len(pats)) if assign[i] < 0]
    totals_s = np.bincount(stratum, weights=sizes, minlength=2 ** len(strata))
    rest.sort(key=lambda i: (totals_s[stratum[i]], -sizes[i]))
    total = sizes.sum()
    for i in rest:
        s = stratum[i]
        deficit_s = weights * totals_s[s] - count_s[s]
        deficit = weights * total - count
        b = int(np.lexsort((-deficit, -deficit_s))[0])
        put(i, b)
    assert (assign >= 0).all()
    fold_of = dict(zip(pats["patient_id"], np.where(assign == 0, TEST_FOLD, assign - 1), strict=True))
    out = index[["image_id", "patient_id"]].copy()
    out["fold"] = out["patient_id"].map(fold_of).astype("int64")
    return out.sort_values("image_id", kind="stable").reset_index(drop=True)


def fold_summary(splits: pd.DataFrame, index: pd.DataFrame, structures: tuple[str, ...] = SMALL_STRUCTURES
                 ) -> pd.DataFrame:
    """Per fold: ``fold, images, patients`` and ``<structure>_images`` per structure (``csp_images, lv_images``)."""
    cols = [f"has_{c}" for c in structures]
    df = splits.merge(index[["image_id", *cols]], on="image_id", how="left")
    g = df.groupby("fold", sort=True)
    return pd.DataFrame(
        {
            "images": g.size(),
            "patients": g["patient_id"].nunique(),
            **{f"{c}_images": g[f"has_{c}"].sum().astype("int64") for c in structures},
        }
    ).reset_index()


def folds_for(image_ids: pd.Series | list[str], splits: pd.DataFrame) -> np.ndarray:
    """The fold of each image (int64, -1 = test) in the order given; an image without a split entry is an error."""
    fold_of = dict(zip(splits["image_id"].astype(str), splits["fold"], strict=True))
    ids = pd.Series(list(image_ids), dtype="str")
    folds = ids.map(fold_of)
    if folds.isna().any():
        missing = ids[folds.isna()].tolist()
        raise InputError(f"{len(missing)} image(s) have no split entry (data changed since the split?): {missing[:5]}")
    return folds.to_numpy(dtype=np.int64)


def save_splits(splits: pd.DataFrame, path: str | Path) -> Path:
    """Write the splits as CSV (``image_id, patient_id, fold``) for reuse and audit."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from robustseg._io import write_csv

    write_csv(path, splits[["image_id", "patient_id", "fold"]])
    return path


def load_splits(path: str | Path) -> pd.DataFrame:
    """Read splits written by ``save_splits``; checks columns and that no patient spans two folds."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: splits file not found")
    try:
        df = pd.read_csv(path, dtype={"image_id": "str", "patient_id": "str"})
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{path}: cannot parse splits CSV ({str(exc).splitlines()[0]})") from None
    missing = {"image_id", "patient_id", "fold"} - set(df.columns)
    if missing:
        raise InputError(f"{path}: columns {sorted(missing)} missing; expected image_id, patient_id, fold")
    spans = df.groupby("patient_id")["fold"].nunique()
    if (spans > 1).any():
        raise InputError(f"{path}: patient {spans[spans > 1].index[0]!r} is in more than one fold")
    df["fold"] = df["fold"].astype("int64")
    return df.sort_values("image_id", kind="stable").reset_index(drop=True)
