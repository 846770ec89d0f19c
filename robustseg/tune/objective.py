"""The objective of one trial: train the tuned arm on the chosen folds and score validation Dice.

A trial trains one model per fold in ``tune.folds`` (the study's first seed, so trials differ only in
their parameters) and returns the mean over folds of the validation Dice of the best checkpoint's
epoch (lowest validation loss), averaged over ``tune.classes``. In multi-objective mode it returns a
second value, the same for ``tune.parenchyma_classes``.

Pruning: after every epoch the trial reports the running objective at step
``fold_index * max_epochs + epoch`` (the mean of the finished folds and the current epoch's Dice), and
the pruner may stop it by raising ``optuna.TrialPruned`` from the training progress callback.

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


class Objective:
    """Callable objective over prepared data. ``folds`` maps fold -> (train_arrays, val_arrays)."""

    def __init__(self, spec: TuneSpec, arm: dict[str, Any], base: dict[str, float], *, seed: int, size: int,
                 folds: dict[int, tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]],
                 trials_dir: Path, on_epoch: Callable[[int, int, int, dict[str, float]], None] | None = None) -> None:
        self.spec, self.arm, self.base = spec, arm, base
        self.seed, self.size, self.folds = seed, size, folds
        self.trials_dir = trials_dir
        self.on_epoch = on_epoch

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        from robustseg.nn.train import train_run
        from robustseg.pipeline.runner import train_config

        spec = self.spec
        try:
            params = suggest(trial, spec, self.base)
            trial.set_user_attr("params", params)
            check_params(params)
            cfg = train_config(apply_params(self.arm, params), self.seed, self.size)
        except Exception as exc:
            self._fail(trial, exc)
        max_epochs = cfg.max_epochs
        small, large, epochs = [], [], 0
        out = self.trials_dir / f"trial-{trial.number:05d}"
        try:
            for i, fold in enumerate(spec.folds):
                train_arrays, val_arrays = self.folds[fold]
                done = list(small)

                def progress(epoch: int, max_ep: int, metrics: dict[str, float], i: int = i, fold: int = fold,
                             done: list = done) -> None:
                    nonlocal epochs
                    epochs += 1
                    trial.set_user_attr("epochs", epochs)
                    if self.on_epoch is not None:
                        self.on_epoch(trial.number, epoch, max_ep, metrics)
                    if spec.mode != "single":
                        return
                    value = class_dice(metrics, spec.classes)
                    running = float(np.mean([*done, value])) if math.isfinite(value) else float("nan")
                    if math.isfinite(running):
                        trial.report(running, i * max_epochs + epoch)
                        if trial.should_prune():
                            raise optuna.TrialPruned(f"pruned at fold {fold} epoch {epoch}: running Dice {running:.4f}")

                result = train_run(cfg, train_arrays, val_arrays, out / f"fold-{fold}", progress=progress)
                dice = {f"val_dice_{c}": v for c, v in result.val_dice.items()}
                small.append(class_dice(dice, spec.classes))
                large.append(class_dice(dice, spec.parenchyma_classes))
                trial.set_user_attr(f"fold{fold}_best_epoch", int(result.best_epoch))
                trial.set_user_attr(f"fold{fold}_" + spec.objective_names[0], small[-1])
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
