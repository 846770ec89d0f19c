"""Confirmation stage: is the search's winner better than the current settings beyond seed noise?

The search ranks trials by one training run each (or ``tune.seeds_per_trial`` runs), so its "best"
trial is partly the luckiest seed. After the search the top ``tune.confirm_top_k`` distinct trials and
the study's current settings are re-trained with ``tune.confirm_seeds`` fresh seeds (``confirm_seeds``:
the seeds after the search seeds, never used by a trial) on the tuning folds. Each (setting, seed) gives
one run-level value, the objective averaged over the tuning folds. Every trial is compared with the
current settings by Welch's t on those values (``robustseg.stats.runlevel.run_level_test``: seed noise
is in the error term), with Holm's adjustment over the k comparisons. A trial replaces the current
settings only if it is better beyond seed noise (Holm p < ``tune.confirm_alpha`` and a positive
difference); among several such trials the one with the highest confirmed mean wins.

Each confirmation run's value is stored in the Optuna study (user attribute ``confirm_<hash>`` of its
parameters, seed and folds), so calling ``robustseg tune`` again re-confirms only what is missing, and
concurrent workers reuse each other's finished runs.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from robustseg.config import stable_hash
from robustseg.stats.compare import holm
from robustseg.stats.runlevel import run_level_test
from robustseg.tune.objective import class_dice, fit_unit
from robustseg.tune.output import effective_params
from robustseg.tune.space import SPACE_KEYS, TuneSpec

BASELINE = "current settings"
CACHE_PREFIX = "confirm_"
CONFIRM_COLUMNS = ("setting", "trial", "search_value", "n", "mean", "sd", "diff", "ci_low", "ci_high", "p", "p_holm",
                   "better", *SPACE_KEYS, "seeds", "failures")


@dataclass(frozen=True)
class Setting:
    """One setting to confirm: a trial (``trial`` its number) or the current settings (``trial`` None)."""

    label: str
    trial: int | None
    params: Mapping[str, float]
    search_value: float = math.nan


@dataclass
class Decision:
    """The outcome: the table, the adopted setting (None: the current settings stay) and why, in words."""

    table: pd.DataFrame
    adopted: Setting | None
    text: str


def confirm_seeds(first: int, seeds_per_trial: int, n: int) -> list[int]:
    """Fresh seeds: the ``n`` seeds after the search seeds ``first .. first + seeds_per_trial - 1``."""
    return [first + seeds_per_trial + j for j in range(n)]


def params_key(params: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    """A hashable identity of a parameter set (rounded to 10 significant digits)."""
    return tuple(sorted((k, float(f"{float(v):.10g}")) for k, v in params.items()))


def pick_candidates(ostudy: optuna.Study, spec: TuneSpec, base: Mapping[str, float], k: int) -> list[Setting]:
    """The ``k`` best complete trials by the (first) objective with distinct parameters, none equal to ``base``."""
    complete = ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ranked = sorted(complete, key=lambda t: (-t.values[0], t.number))
    seen = {params_key(base)}
    out: list[Setting] = []
    for t in ranked:
        params = effective_params(t)
        key = params_key(params)
        if key in seen:
            continue
        seen.add(key)
        out.append(Setting(f"trial {t.number}", t.number, params, float(t.values[0])))
        if len(out) == k:
            break
    return out


def decide(settings: Sequence[Setting], baseline: Setting, values: Mapping[str, Sequence[float]], *,
           alpha: float, seeds: Sequence[int] = (), failures: Mapping[str, Sequence[str]] | None = None) -> Decision:
    """Compare every setting with ``baseline`` on run-level ``values`` (label -> one value per seed).

    Pure: no training. Holm over the ``len(settings)`` comparisons; a setting is ``better`` when its
    Holm p < ``alpha`` and its difference is positive.
    """
    failures = failures or {}
    base_values = np.asarray(values.get(baseline.label, []), dtype=np.float64)
    tests = [run_level_test(np.asarray(values.get(s.label, []), dtype=np.float64), base_values, alpha=alpha)
             for s in settings]
    p_holm = holm([t["p"] for t in tests]) if tests else np.array([])
    rows = []
    for s, t, ph in [(baseline, None, math.nan), *zip(settings, tests, p_holm, strict=True)]:
        x = np.asarray(values.get(s.label, []), dtype=np.float64)
        x = x[np.isfinite(x)]
        row: dict[str, Any] = {"setting": s.label, "trial": s.trial if s.trial is not None else "",
                               "search_value": s.search_value, "n": int(x.size),
                               "mean": float(x.mean()) if x.size else math.nan,
                               "sd": float(x.std(ddof=1)) if x.size > 1 else math.nan}
        if t is None:
            row.update(diff=math.nan, ci_low=math.nan, ci_high=math.nan, p=math.nan, p_holm=math.nan, better=False)
        else:
            row.update(diff=t["diff"], ci_low=t["ci_low"], ci_high=t["ci_high"], p=t["p"], p_holm=float(ph),
                       better=bool(math.isfinite(ph) and ph < alpha and t["diff"] > 0))
        row.update({k: float(s.params[k]) if k in s.params else math.nan for k in SPACE_KEYS})
        row["seeds"] = " ".join(str(v) for v in seeds)
        row["failures"] = "; ".join(failures.get(s.label, ()))
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(CONFIRM_COLUMNS))
    winners = table[table["better"]]
    adopted = None
    if not winners.empty:
        label = winners.sort_values(["mean", "p_holm"], ascending=[False, True]).iloc[0]["setting"]
        adopted = next(s for s in settings if s.label == label)
    return Decision(table, adopted, decision_text(table, adopted, alpha))


def _num(v: float, fmt: str = ".4f") -> str:
    return "n/a" if not math.isfinite(v) else format(v, fmt)


def _describe(row: pd.Series, base: pd.Series) -> str:
    return (f"{row['setting']}: {_num(row['mean'])} ± {_num(row['sd'])} vs {_num(base['mean'])} ± {_num(base['sd'])} "
            f"for the current settings (difference {_num(row['diff'], '+.4f')}, 95% CI [{_num(row['ci_low'])}, "
            f"{_num(row['ci_high'])}], Holm p = {_num(row['p_holm'], '.3g')})")


def decision_text(table: pd.DataFrame, adopted: Setting | None, alpha: float) -> str:
    """One paragraph: what the tuned file holds and why, with the numbers."""
    base = table.iloc[0]
    n = int(base["n"])
    seeds = f"{n} fresh seeds each (seeds {base['seeds']})"
    if adopted is not None:
        row = table[table["setting"] == adopted.label].iloc[0]
        return (f"Adopted {adopted.label}: better than the current settings beyond seed noise over {seeds}, "
                f"mean ± SD {_describe(row, base)}; Holm over {len(table) - 1} comparison(s), alpha = {alpha:g}.")
    if len(table) == 1:
        return "Kept the current settings: no complete trial with settings other than the current ones to confirm."
    rest = table.iloc[1:]
    best = rest.sort_values("mean", ascending=False, na_position="last").iloc[0]
    return (f"Kept the current settings: no trial was better beyond seed noise (Holm p < {alpha:g} with a positive "
            f"difference) over {seeds}; best confirmed {_describe(best, base)}.")


def unconfirmed_text(best: Any, spec: TuneSpec) -> str:
    """The decision when ``tune.confirm_top_k = 0``: nothing is confirmed, so nothing is adopted."""
    if best is None:
        return "Kept the current settings: no complete trial."
    values = ", ".join(f"{n} = {v:.4f}" for n, v in zip(spec.objective_names, best.values, strict=True))
    return (f"Kept the current settings: confirmation is off (tune.confirm_top_k = 0), so the best search trial "
            f"{best.number} ({values}, {spec.options['seeds_per_trial']} seed(s), not confirmed) was not adopted.")


def _cache_key(params: Mapping[str, float], seed: int, folds: Sequence[int]) -> str:
    return CACHE_PREFIX + stable_hash({"params": params_key(params), "seed": seed, "folds": list(folds)})


def run_confirmation(ostudy: optuna.Study, spec: TuneSpec, arm: dict[str, Any], settings: Sequence[Setting], *,
                     seeds: Sequence[int], size: int, folds: Mapping[int, tuple[Any, Any]], out_dir: Path,
                     log: Callable[[str], None] | None = None) -> tuple[dict[str, list[float]], dict[str, list[str]]]:
    """Train every setting with every seed on the tuning folds; returns (label -> values, label -> failure reasons).

    A value is the setting's objective on one seed, averaged over the tuning folds (NaN when a run of it
    failed; its reason is stored with it and logged). Finished values are read from / written to the
    Optuna study, so nothing is trained twice.
    """
    from robustseg.errors import RunError

    values: dict[str, list[float]] = {}
    failures: dict[str, list[str]] = {}
    for s in settings:
        values[s.label], failures[s.label] = [], []
        for seed in seeds:
            key = _cache_key(s.params, seed, spec.folds)
            cached = ostudy.user_attrs.get(key)
            if cached is None:
                small, error = [], ""
                out = out_dir / f"{key}"
                try:
                    for fold in spec.folds:
                        result = fit_unit(arm, dict(s.params), seed, size, folds[fold], out / f"fold-{fold}",
                                          spec=spec)
                        small.append(class_dice({f"val_dice_{c}": v for c, v in result.val_dice.items()},
                                                spec.classes))
                except RunError as exc:
                    error = f"{type(exc).__name__}: {exc}"[:500]
                finally:
                    if not spec.options["keep_checkpoints"]:
                        shutil.rmtree(out, ignore_errors=True)
                finite = [v for v in small if math.isfinite(v)]
                value = float(np.mean(finite)) if finite and not error else None
                if value is None and not error:
                    error = f"validation Dice undefined (no {'/'.join(spec.classes)} pixels, or none predicted)"
                cached = {"label": s.label, "seed": seed, "params": dict(s.params), "value": value, "error": error}
                ostudy.set_user_attr(key, cached)
                if log is not None:
                    log(f"confirm {s.label} seed {seed}: " + (f"{value:.4f}" if value is not None else error))
            value = cached.get("value")
            values[s.label].append(float(value) if value is not None else math.nan)
            if value is None:
                failures[s.label].append(f"seed {seed}: {cached.get('error', '?')}")
    return values, failures
