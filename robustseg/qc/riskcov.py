"""Risk-coverage evaluation of per-image confidence scores (failure detection, Zenk et al. 2025 / fd-shifts).

A confidence score (higher = more trustworthy) ranks the images; keeping the most confident fraction
(*coverage*) and sending the rest for review leaves a *selective risk* (mean risk of the kept images).

Definitions (risk ``r_i`` per image, e.g. ``1 - Dice``, optional weights ``w_i`` for the bootstrap):

* **RC curve**: one point per distinct confidence value ``t`` (tied images are kept or dropped together),
  coverage ``sum_{c_i >= t} w_i / sum w``, selective risk ``sum_{c_i >= t} w_i r_i / sum_{c_i >= t} w_i``,
  plus the point (coverage 0, the risk of the smallest kept set), as fd-shifts' ``selective_risk_stats``.
* **AURC**: trapezoidal area under that curve over coverage [0, 1] (fd-shifts' linear interpolation).
* **optimal AURC**: the AURC of the oracle score ``-risk`` (images of equal risk tied, as the segmentation
  benchmark's ``compute_optimal_aurc``; this keeps a bootstrap replicate's oracle equal to the oracle of the
  resampled set); **random AURC**: the mean risk (a constant score: one point, a flat curve).
* **e-AURC** = AURC - optimal AURC (lower is better; a score that orders images the oracle ties can dip
  below 0 by a hair, through the linear interpolation, as fd-shifts notes);
  **normalised AURC** = (random - AURC) / (random - optimal): 1 = oracle, 0 = random (as the segmentation
  failure-detection benchmark's ``norm-aurc``); NaN when every image has the same risk.
* **failure AUROC**: probability that a failure (``failure`` True) has a lower confidence than a success, ties
  one half; NaN without both kinds.

Everything is vectorised over bootstrap replicates (rows of a weight matrix). numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from robustseg.errors import InputError

REVIEW_FRACTIONS: tuple[float, ...] = (0.05, 0.10, 0.20)
"""Fractions of least-confident images sent for review in the report's table."""


def _inputs(confidence, risk, weights=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = np.asarray(confidence, dtype=np.float64).ravel()
    r = np.asarray(risk, dtype=np.float64).ravel()
    if c.shape != r.shape:
        raise InputError(f"confidence and risk must have equal length, got {c.size} and {r.size}")
    if not (np.isfinite(c).all() and np.isfinite(r).all()):
        raise InputError("confidence and risk must be finite (drop NaN rows first)")
    w = np.ones((1, c.size)) if weights is None else np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if w.shape[1] != c.size:
        raise InputError(f"weights must have {c.size} columns, got shape {w.shape}")
    return c, r, w


def _groups(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order by descending confidence (stable) and the start index of each run of tied values."""
    order = np.argsort(-c, kind="stable")
    cs = c[order]
    starts = np.flatnonzero(np.r_[True, cs[1:] != cs[:-1]]) if cs.size else np.array([], dtype=int)
    return order, starts


def _curve(order: np.ndarray, starts: np.ndarray, r: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coverages and selective risks (B, G + 1) from most to least confident, with the coverage-0 point first."""
    ws = np.ascontiguousarray(w.T[order])  # (n, B): reductions along the first, contiguous axis
    gw = np.add.reduceat(ws, starts, axis=0)
    gr = np.add.reduceat(ws * r[order][:, None], starts, axis=0)
    cw, cr = np.cumsum(gw, axis=0).T, np.cumsum(gr, axis=0).T
    total = cw[:, -1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = cw / total
        sel = cr / cw
    first = np.argmax(cw > 0, axis=1)
    fill = sel[np.arange(len(sel)), first][:, None]
    sel = np.where(cw > 0, sel, fill)
    return np.hstack([np.zeros((len(cov), 1)), cov]), np.hstack([fill, sel])


def _area(cov: np.ndarray, sel: np.ndarray) -> np.ndarray:
    return (np.diff(cov, axis=1) * (sel[:, 1:] + sel[:, :-1]) / 2.0).sum(axis=1)


def rc_curve(confidence, risk) -> pd.DataFrame:
    """The risk-coverage curve: columns ``coverage, selective_risk`` (coverage ascending, 0 first).

    >>> rc_curve([0.9, 0.8, 0.8, 0.1], [0, 1, 0, 1]).round(4).values.tolist()
    [[0.0, 0.0], [0.25, 0.0], [0.75, 0.3333], [1.0, 0.5]]
    """
    c, r, w = _inputs(confidence, risk)
    cov, sel = _curve(*_groups(c), r, w)
    return pd.DataFrame({"coverage": cov[0], "selective_risk": sel[0]})


def aurc(confidence, risk, weights=None) -> np.ndarray | float:
    """Area under the RC curve (one value, or one per row of ``weights``).

    >>> round(aurc([0.9, 0.8, 0.8, 0.1], [0, 1, 0, 1]), 4)
    0.1875
    """
    c, r, w = _inputs(confidence, risk, weights)
    out = _area(*_curve(*_groups(c), r, w))
    return float(out[0]) if weights is None else out


def optimal_aurc(risk, weights=None) -> np.ndarray | float:
    """AURC of the oracle score ``-risk`` (equal risks tied).

    >>> round(optimal_aurc([0, 1, 0, 1]), 4)
    0.125
    """
    r = np.asarray(risk, dtype=np.float64).ravel()
    return aurc(-r, r, weights)


def random_aurc(risk, weights=None) -> np.ndarray | float:
    """Expected AURC of a random score: the (weighted) mean risk."""
    r = np.asarray(risk, dtype=np.float64).ravel()
    _, _, w = _inputs(np.zeros_like(r), r, weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (w * r[None, :]).sum(axis=1) / w.sum(axis=1)
    return float(out[0]) if weights is None else out


def failure_auroc(confidence, failure, weights=None) -> np.ndarray | float:
    """AUROC of low confidence for ``failure`` (True = failed); ties count one half.

    >>> failure_auroc([0.9, 0.8, 0.8, 0.1], [False, True, False, True])
    0.875
    """
    f = np.asarray(failure, dtype=bool).ravel()
    c, _, w = _inputs(confidence, f.astype(np.float64), weights)
    order, starts = _groups(c)
    ws, fs = np.ascontiguousarray(w.T[order]), f[order][:, None]
    gf = np.add.reduceat(ws * fs, starts, axis=0)
    go = np.add.reduceat(ws * ~fs, starts, axis=0)
    above = np.cumsum(go, axis=0) - go  # successes strictly more confident
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (gf * (above + 0.5 * go)).sum(axis=0) / (gf.sum(axis=0) * go.sum(axis=0))
    return float(out[0]) if weights is None else out


def risk_metrics(confidence, risk, failure, weights=None) -> dict[str, np.ndarray]:
    """``aurc, aurc_optimal, aurc_random, eaurc, naurc, failure_auroc`` (arrays over rows of ``weights``)."""
    a = np.atleast_1d(aurc(confidence, risk, weights if weights is not None else np.ones((1, np.size(risk)))))
    w = weights if weights is not None else np.ones((1, np.size(risk)))
    opt, rnd = optimal_aurc(risk, w), random_aurc(risk, w)
    with np.errstate(divide="ignore", invalid="ignore"):
        naurc = np.where(rnd - opt > 1e-12, (rnd - a) / (rnd - opt), np.nan)
    return {"aurc": a, "aurc_optimal": opt, "aurc_random": rnd, "eaurc": a - opt, "naurc": naurc,
            "failure_auroc": failure_auroc(confidence, failure, w)}


def selective_risk_at(confidence, risk, coverage: Sequence[float] | np.ndarray) -> np.ndarray:
    """Expected mean risk of the kept images when keeping the most confident ``coverage`` fraction.

    Images tied at the cut are kept at random (expected value: the tied group counts in proportion).

    >>> selective_risk_at([0.9, 0.8, 0.8, 0.1], [0, 1, 0, 1], [0.5, 1.0]).round(4).tolist()
    [0.25, 0.5]
    """
    c, r, _ = _inputs(confidence, risk)
    order, starts = _groups(c)
    rs = r[order]
    n = c.size
    ends = np.r_[starts[1:], n]
    gsum = np.add.reduceat(rs, starts) if n else np.array([])
    out = []
    for cv in np.atleast_1d(np.asarray(coverage, dtype=np.float64)):
        k = cv * n
        if k <= 0:
            out.append(np.nan)
            continue
        full = ends <= k
        kept_risk = gsum[full].sum()
        nxt = np.flatnonzero(~full)
        if nxt.size:
            g = nxt[0]
            part = k - (starts[g] if g == 0 else ends[g - 1])
            kept_risk += part * gsum[g] / (ends[g] - starts[g])
        out.append(kept_risk / k)
    return np.asarray(out)


def patient_weights(patients: Sequence[object], n_boot: int, seed: int = 0) -> np.ndarray:
    """``(n_boot, n)`` bootstrap weights: each replicate draws patients with replacement; an image's weight is
    the number of times its patient was drawn (all images of a patient travel together)."""
    codes, uniq = pd.factorize(pd.Series(list(patients)), sort=True)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(uniq), np.full(len(uniq), 1.0 / len(uniq)), size=n_boot)
    return counts[:, codes].astype(np.float64)


METRICS = ("aurc", "eaurc", "naurc", "failure_auroc")


def defined_mean(values, axis: int | None = None) -> np.ndarray | float:
    """Mean of the non-NaN values (along ``axis``); NaN where none is defined, without numpy's warning.

    A metric can be undefined for a run or a replicate (no failure to catch, every image at the same risk):
    such values drop out of the mean instead of making it NaN, and an all-undefined slice is NaN.

    >>> defined_mean([0.5, float("nan"), 1.0]), bool(np.isnan(defined_mean([float("nan")])))
    (0.75, True)
    >>> defined_mean([[1.0, float("nan")], [3.0, float("nan")]], axis=0).tolist()
    [2.0, nan]
    """
    a = np.asarray(values, dtype=np.float64)
    known = ~np.isnan(a)
    n = known.sum(axis=axis)
    total = np.where(known, a, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / n
    return float(out) if np.ndim(out) == 0 else out


def evaluate_scores(table: pd.DataFrame, scores: Sequence[str], *, by: Sequence[str], unit: str = "run_id",
                    patient_col: str = "patient_id", risk_col: str = "risk", failure_col: str = "failure",
                    n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Risk-coverage metrics of each confidence column in ``scores`` per group of ``by``.

    Within a group, metrics are computed per ``unit`` (each run's predictions are ranked on their own) and
    averaged over units; the patient bootstrap draws the same patients for every unit of the group and score,
    so differences between scores are paired. A score with a NaN in any row of a group is not evaluated on
    that group (e.g. a clean-only score on a set that pools clean and perturbed images).

    Returns a tidy table ``*by, score, n_units, n_images, n_failures, failure_rate, mean_risk, aurc, eaurc,
    naurc, naurc_ci_low, naurc_ci_high, failure_auroc, auroc_ci_low, auroc_ci_high, spearman_rho, n_boot,
    alpha`` (Spearman: between confidence and risk, expected negative; per unit, then averaged).
    """
    need = [*by, unit, patient_col, risk_col, failure_col, *scores]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise InputError(f"risk-coverage table lacks column(s) {', '.join(missing)}")
    rows = []
    for key, g in table.groupby(list(by), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        patients = sorted(g[patient_col].astype(str).unique())
        pos = {p: i for i, p in enumerate(patients)}
        rep = patient_weights(patients, n_boot, seed)  # (B, n_patients): the same draws for every unit and score
        present = [s for s in scores if np.isfinite(g[s].to_numpy(dtype=np.float64)).all()]
        acc: dict[str, dict[str, list]] = {s: {"point": [], "boot": [], "rho": []} for s in present}
        n_img = n_fail = 0
        risks = []
        for _, u in g.groupby(unit, sort=True):
            if len(u) < 2:
                continue
            r = u[risk_col].to_numpy(dtype=np.float64)
            f = u[failure_col].to_numpy(dtype=bool)
            w = rep[:, [pos[p] for p in u[patient_col].astype(str)]]
            base = {"point": (optimal_aurc(r, np.ones((1, len(r)))), random_aurc(r, np.ones((1, len(r))))),
                    "boot": (optimal_aurc(r, w), random_aurc(r, w))}
            n_img, n_fail = n_img + len(u), n_fail + int(f.sum())
            risks.append(r.mean())
            for score in present:
                c = u[score].to_numpy(dtype=np.float64)
                for kind, ww in (("point", np.ones((1, len(r)))), ("boot", w)):
                    opt, rnd = base[kind]
                    a = aurc(c, r, ww)
                    with np.errstate(divide="ignore", invalid="ignore"):
                        naurc = np.where(rnd - opt > 1e-12, (rnd - a) / (rnd - opt), np.nan)
                    acc[score][kind].append({"aurc": a, "eaurc": a - opt, "naurc": naurc,
                                             "failure_auroc": failure_auroc(c, f, ww)})
                rho = sps.spearmanr(c, r).statistic if np.ptp(c) > 0 and np.ptp(r) > 0 else np.nan
                acc[score]["rho"].append(rho)
        for score in present:
            per_unit = acc[score]["point"]
            if not per_unit:
                continue
            est = {m: float(defined_mean([d[m][0] for d in per_unit])) for m in METRICS}
            rhos = acc[score]["rho"]
            row = dict(zip(by, key, strict=True)) | {
                "score": score, "n_units": len(per_unit), "n_images": n_img, "n_failures": n_fail,
                "failure_rate": n_fail / n_img, "mean_risk": float(np.mean(risks)), **est,
                "spearman_rho": float(defined_mean(rhos))}
            for m, lo, hi in (("naurc", "naurc_ci_low", "naurc_ci_high"),
                              ("failure_auroc", "auroc_ci_low", "auroc_ci_high")):
                reps = defined_mean(np.vstack([b[m] for b in acc[score]["boot"]]), axis=0)
                reps = reps[np.isfinite(reps)]
                row[lo], row[hi] = (np.quantile(reps, [alpha / 2, 1 - alpha / 2]) if reps.size else (np.nan, np.nan))
            row |= {"n_boot": n_boot, "alpha": alpha}
            rows.append(row)
    return pd.DataFrame(rows)


def paired_difference(table: pd.DataFrame, a: str, b: str, *, by: Sequence[str], unit: str = "run_id",
                      patient_col: str = "patient_id", risk_col: str = "risk", failure_col: str = "failure",
                      n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """normalised AURC of score ``a`` minus that of ``b`` on the rows where both are defined, with a paired
    patient-bootstrap CI: ``*by, score_a, score_b, naurc_a, naurc_b, diff, ci_low, ci_high, n_images``."""
    rows = []
    for key, g in table.groupby(list(by), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        g = g[np.isfinite(g[a].to_numpy(dtype=np.float64)) & np.isfinite(g[b].to_numpy(dtype=np.float64))]
        patients = sorted(g[patient_col].astype(str).unique())
        if len(patients) < 2:
            continue
        pos = {p: i for i, p in enumerate(patients)}
        rep = patient_weights(patients, n_boot, seed)
        pa, pb, ba, bb = [], [], [], []
        for _, u in g.groupby(unit, sort=True):
            if len(u) < 2:
                continue
            r = u[risk_col].to_numpy(dtype=np.float64)
            f = u[failure_col].to_numpy(dtype=bool)
            w = rep[:, [pos[p] for p in u[patient_col].astype(str)]]
            for s, point, boot in ((a, pa, ba), (b, pb, bb)):
                c = u[s].to_numpy(dtype=np.float64)
                point.append(risk_metrics(c, r, f)["naurc"][0])
                boot.append(risk_metrics(c, r, f, w)["naurc"])
        if not pa:
            continue
        d = defined_mean(np.vstack(ba), axis=0) - defined_mean(np.vstack(bb), axis=0)
        d = d[np.isfinite(d)]
        lo, hi = np.quantile(d, [alpha / 2, 1 - alpha / 2]) if d.size else (np.nan, np.nan)
        na, nb = float(defined_mean(pa)), float(defined_mean(pb))
        rows.append(dict(zip(by, key, strict=True)) | {"score_a": a, "score_b": b, "naurc_a": na, "naurc_b": nb,
                                                        "diff": na - nb, "ci_low": lo, "ci_high": hi,
                                                        "n_images": len(g)})
    return pd.DataFrame(rows)


def review_table(table: pd.DataFrame, scores: Sequence[str], *, by: Sequence[str], unit: str = "run_id",
                 fractions: Sequence[float] = REVIEW_FRACTIONS, failure_col: str = "failure",
                 risk_col: str = "risk") -> pd.DataFrame:
    """Failure rate and mean risk left among the kept images after reviewing the least-confident fractions.

    Columns ``*by, score, review, failure_rate_kept, mean_risk_kept, failure_rate_all, failures_caught`` (mean
    over units; ``failures_caught`` = share of all failures among the reviewed images); ``score`` includes the
    ``oracle`` (ranking by the true risk) for reference.
    """
    rows = []
    for key, g in table.groupby(list(by), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        for score in [*scores, "oracle"]:
            acc: dict[float, list[tuple[float, float, float, float]]] = {x: [] for x in fractions}
            for _, u in g.groupby(unit, sort=True):
                if score != "oracle":
                    u = u[np.isfinite(u[score].to_numpy(dtype=np.float64))]
                if len(u) < 2:
                    continue
                f = u[failure_col].to_numpy(dtype=np.float64)
                r = u[risk_col].to_numpy(dtype=np.float64)
                c = -r if score == "oracle" else u[score].to_numpy(dtype=np.float64)
                keep = 1.0 - np.asarray(fractions)
                fk, rk = selective_risk_at(c, f, keep), selective_risk_at(c, r, keep)
                for x, a, b in zip(fractions, fk, rk, strict=True):
                    caught = (f.sum() - a * (1 - x) * len(f)) / f.sum() if f.sum() else np.nan
                    acc[x].append((a, b, f.mean(), caught))
            for x, vals in acc.items():
                if vals:
                    v = defined_mean(vals, axis=0)
                    rows.append(dict(zip(by, key, strict=True)) | {
                        "score": score, "review": x, "failure_rate_kept": v[0], "mean_risk_kept": v[1],
                        "failure_rate_all": v[2], "failures_caught": v[3]})
    return pd.DataFrame(rows)


def curve_grid(table: pd.DataFrame, scores: Sequence[str], *, by: Sequence[str], unit: str = "run_id",
               risk_col: str = "risk", grid: np.ndarray | None = None) -> pd.DataFrame:
    """RC curves on a common coverage grid, averaged over units: ``*by, score, coverage, selective_risk``
    (``score`` includes ``oracle`` and ``random``), for the figure."""
    grid = np.linspace(0.02, 1.0, 50) if grid is None else np.asarray(grid)
    rows = []
    for key, g in table.groupby(list(by), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        for score in [*scores, "oracle", "random"]:
            curves = []
            for _, u in g.groupby(unit, sort=True):
                if score not in ("oracle", "random"):
                    u = u[np.isfinite(u[score].to_numpy(dtype=np.float64))]
                if len(u) < 2:
                    continue
                r = u[risk_col].to_numpy(dtype=np.float64)
                c = {"oracle": -r, "random": np.zeros_like(r)}.get(score)
                c = u[score].to_numpy(dtype=np.float64) if c is None else c
                curves.append(selective_risk_at(c, r, grid))
            if curves:
                mean = np.mean(curves, axis=0)
                rows += [dict(zip(by, key, strict=True)) | {"score": score, "coverage": cv, "selective_risk": s}
                         for cv, s in zip(grid, mean, strict=True)]
    return pd.DataFrame(rows)
