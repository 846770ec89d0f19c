"""The objective of one trial: train the tuned arm on the chosen folds and score validation Dice.

A trial trains one model per *unit* -- a (seed, fold) pair, ``tune.seeds_per_trial`` search seeds
(``search_seeds``: the study's first seed and the next ones) times the folds in ``tune.folds``, seed by
seed -- and returns the mean over units of the validation Dice of each unit's best checkpoint (lowest
validation loss), averaged over ``tune.classes``. Every trial uses the same seeds, so trials differ only
in their parameters. In multi-objective mode it returns a second value, the same for
``tune.parenchyma_classes``. The per-unit values are in the trial's user attribute ``units``.

Pruning with several seeds: the units are trained one after another, in the same order in every trial.
After every epoch the trial reports the mean so far -- the finished units' values and the current
unit's Dice at this epoch -- at step ``unit_index * max_epochs + epoch``. A step number therefore
means the same amount of training in every trial (the same seeds and folds finished, the same epoch of
the next one), so the pruner, which compares trials at equal steps, compares like with like; once a
seed is finished, the reported value is an average over seeds and carries less seed noise than a
single run's. With one seed and one fold this is the plain per-epoch Dice.

Failures (a NaN loss -> ``RunError``, infeasible or rejected parameters, any error inside training)
are recorded in the trial's user attribute ``fail_reason`` and re-raised as ``TrialFailed`` so that
Optuna marks the trial FAIL and the study goes on.
"""

from __future__ import annotations

import math
import shutil
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import optuna

from robustseg.errors import RunError
from robustseg.tune.space import TuneSpec, apply_params, check_params, suggest


class TrialFailed(RunError):
    """A trial failed; its reason is in the trial's ``fail_reason`` user attribute."""


def class_dice(metrics: dict[str, Any], classes: Sequence[str]) -> float:
    """Mean of ``val_dice_<class>`` over ``classes`` (classes with NaN Dice, i.e. 0/0, are skipped)."""
    missing = [c for c in classes if f"val_dice_{c}" not in metrics]
    if missing:
        raise RunError(f"training progress has no 'val_dice_{missing[0]}' (keys: {', '.join(sorted(metrics))})")
    values = [float(metrics[f"val_dice_{c}"]) for c in classes]
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def search_seeds(first: int, n: int) -> list[int]:
    """The training seeds of every trial: ``first``, ``first + 1``, ... (``n`` of them)."""
    return [first + j for j in range(n)]


def fit_unit(arm: dict[str, Any], params: dict[str, float], seed: int, size: int,
             arrays: tuple[Any, Any], out: Path, progress: Callable[..., None] | None = None, *,
             spec: TuneSpec | None = None) -> Any:
    """Train the arm with ``params`` placed in it on one fold with one seed; returns ``TrainResult``.
    ``spec`` gives the data set's classes and small structures (default: the fetal ones)."""
    from robustseg.nn.train import train_run
    from robustseg.pipeline.runner import train_config

    labels = {} if spec is None else {"class_names": spec.class_names, "small_classes": spec.small_classes}
    cfg = train_config(apply_params(arm, params), seed, size, **labels)
    return train_run(cfg, arrays[0], arrays[1], out, progress=progress)


class Objective:
    """Callable objective over prepared data. ``folds`` maps fold -> (train_arrays, val_arrays)."""

    def __init__(self, spec: TuneSpec, arm: dict[str, Any], base: dict[str, float], *, seed: int, size: int,
                 folds: dict[int, tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]],
                 trials_dir: Path, on_epoch: Callable[[int, int, int, dict[str, float]], None] | None = None) -> None:
        self.spec, self.arm, self.base = spec, arm, base
        self.seed, self.size, self.folds = seed, size, folds
        self.seeds = search_seeds(seed, spec.options["seeds_per_trial"])
        self.trials_dir = trials_dir
        self.on_epoch = on_epoch

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        from robustseg.pipeline.runner import train_config

        spec = self.spec
        try:
            params = suggest(trial, spec, self.base)
            trial.set_user_attr("params", params)
            check_params(params)
            max_epochs = train_config(apply_params(self.arm, params), self.seed, self.size).max_epochs
        except Exception as exc:
            self._fail(trial, exc)
        units = [(seed, fold) for seed in self.seeds for fold in spec.folds]
        small, large, records, epochs = [], [], [], 0
        out = self.trials_dir / f"trial-{trial.number:05d}"
        try:
            for u, (seed, fold) in enumerate(units):
                done = list(small)

                def progress(epoch: int, max_ep: int, metrics: dict[str, float], u: int = u, seed: int = seed,
                             fold: int = fold, done: list = done) -> None:
                    nonlocal epochs
                    epochs += 1
                    trial.set_user_attr("epochs", epochs)
                    if self.on_epoch is not None:
                        self.on_epoch(trial.number, epoch, max_ep, metrics)
                    if spec.mode != "single":
                        return
                    value = class_dice(metrics, spec.classes)
                    finite = [v for v in [*done, value] if math.isfinite(v)]
                    running = float(np.mean(finite)) if math.isfinite(value) else float("nan")
                    if math.isfinite(running):
                        trial.report(running, u * max_epochs + epoch)
                        if trial.should_prune():
                            raise optuna.TrialPruned(f"pruned at seed {seed} fold {fold} epoch {epoch}: "
                                                     f"mean Dice so far {running:.4f}")

                result = fit_unit(self.arm, params, seed, self.size, self.folds[fold],
                                  out / f"seed-{seed}-fold-{fold}", progress=progress, spec=spec)
                dice = {f"val_dice_{c}": v for c, v in result.val_dice.items()}
                small.append(class_dice(dice, spec.classes))
                large.append(class_dice(dice, spec.parenchyma_classes))
                records.append({"seed": seed, "fold": fold, "best_epoch": int(result.best_epoch),
                                spec.objective_names[0]: small[-1]})
                trial.set_user_attr("units", records)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            self._fail(trial, exc)
        finally:
            if not spec.options["keep_checkpoints"]:
                shutil.rmtree(out, ignore_errors=True)
        values = [float(np.nanmean(small)) if np.isfinite(small).any() else float("nan")]
        if spec.mode == "multi":
            values.append(float(np.nanmean(large)) if np.isfinite(large).any() else float("nan"))
        if not all(math.isfinite(v) for v in values):
            self._fail(trial, RunError(f"validation Dice is undefined (no {'/'.join(spec.classes)} pixels in the "
                                       "validation folds, or none predicted)"))
        return values[0] if spec.mode == "single" else (values[0], values[1])

    @staticmethod
    def _fail(trial: optuna.Trial, exc: BaseException) -> NoReturn:
        reason = f"{type(exc).__name__}: {exc}"
        trial.set_user_attr("fail_reason", reason[:2000])
        trial.set_user_attr("fail_traceback", traceback.format_exc()[-4000:])
        raise TrialFailed(f"trial {trial.number} failed: {reason}") from exc


def fold_arrays(data: Any, splits: Any, folds: Sequence[int]) -> dict[int, tuple[Any, Any]]:
    """(train, val) image/mask arrays of each fold: train on ``fold not in (-1, k)``, validate on ``k``."""
    from robustseg.data.splits import folds_for

    assigned = folds_for(data.index["image_id"], splits)
    out = {}
    for k in folds:
        tr = np.flatnonzero((assigned != -1) & (assigned != k))
        va = np.flatnonzero(assigned == k)
        out[k] = ((data.images[tr], data.masks[tr]), (data.images[va], data.masks[va]))
    return out
