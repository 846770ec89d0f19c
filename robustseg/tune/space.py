"""The ``[tune]`` table of a study file: the search space and how a trial samples it.

The table is validated with the rest of the study (``robustseg.config.schema.TuneTable``: keys, bounds,
defaults); this module turns it into a ``TuneSpec``. Options: ``trials`` (per call), ``timeout`` (s, 0: none), ``seed``,
``mode`` (``single`` | ``multi``: small structures vs parenchyma, Pareto front), ``pruner`` (``median``
| ``hyperband`` | ``none``; default median, none in multi mode), ``pruner_startup_trials``,
``pruner_warmup_epochs`` (epochs before a trial can be pruned; 0: half of ``train.max_epochs``, since small-structure
Dice stays near 0 for the first epochs of every trial and says little before),
``startup_trials`` (random TPE start-up), ``storage``, ``study_name``, ``arm`` (default the first),
``heartbeat_interval`` / ``grace_period`` (s), ``retry_killed``, ``max_consecutive_failures``,
``keep_checkpoints``, ``classes`` (default: ``data.small_structures``, csp and lv), ``parenchyma_classes``
(default: the other foreground classes, brain), ``folds`` ([0]),
``seeds_per_trial`` (1: each trial's objective is the mean over that many training seeds),
``confirm_top_k`` (3: trials re-trained after the search; 0: no confirmation, the tuned file then keeps
the current settings), ``confirm_seeds`` (5: fresh seeds per confirmed setting, >= 2) and
``confirm_alpha`` (0.05: Holm-adjusted level at which a confirmed trial replaces the current settings);
see ``robustseg.tune.confirm``.

Search space (each entry is either a fixed number or a ``[low, high]`` range; a range with
``low == high`` is fixed too):

- ``a``             Dice share of the hybrid loss, default ``[0, 1]``
- ``b``             focal share of the hybrid loss, default ``[0, 1]``
- ``oversampling``  oversampling factor of images with a small structure (CSP/LV), default ``[1, 10]``, log scale
- ``gamma``         focal gamma, optional (absent: the study's value)
- ``lr``            learning rate, optional (absent: the study's value), log scale

The constraint ``a + b <= 1`` is built into the parameterisation instead of rejected afterwards: a
trial samples ``a`` uniformly in its range, then ``b_share`` uniformly in ``[0, 1]`` and sets
``b = b_low + b_share * (min(b_high, 1 - a) - b_low)``. Every sampled pair is feasible, the sampler
sees fixed ranges (what TPE models well), and with the default ranges ``(a, b)`` covers the whole
triangle ``a, b >= 0, a + b <= 1``. The Optuna parameters are ``a``, ``b_share``, ``oversampling``,
``gamma`` and ``lr``; the effective values (with ``b``) are stored in the trial's user attribute
``params``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from robustseg.config import Study
from robustseg.config.schema import RANGE_LIMITS
from robustseg.errors import InputError
from robustseg.labels import CLASS_NAMES, SMALL_CLASSES

SPACE_KEYS = tuple(RANGE_LIMITS)
LOG_SCALE = {k for k, (_, _, log) in RANGE_LIMITS.items() if log}
GAMMA_LOSSES = ("hybrid", "focal")
OPTION_KEYS = ("trials", "timeout", "seed", "pruner_startup_trials", "pruner_warmup_epochs", "startup_trials",
               "storage", "study_name", "arm", "heartbeat_interval", "grace_period", "retry_killed",
               "max_consecutive_failures", "keep_checkpoints", "seeds_per_trial", "confirm_top_k",
               "confirm_seeds", "confirm_alpha")
"""The scalar options of ``[tune]`` passed on in ``TuneSpec.options`` (bounds and defaults: ``TuneTable``)."""


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    log: bool = False

    @property
    def fixed(self) -> bool:
        return self.low == self.high


@dataclass(frozen=True)
class TuneSpec:
    """The search space and options of a study's (validated) ``[tune]`` table."""

    space: Mapping[str, Range]
    classes: tuple[str, ...] = ("csp", "lv")
    parenchyma_classes: tuple[str, ...] = ("brain",)
    class_names: tuple[str, ...] = CLASS_NAMES
    """The data set's classes in label order (what the trained models predict)."""
    small_classes: tuple[int, ...] = SMALL_CLASSES
    """Label indices of ``data.small_structures`` (the sampler's oversampling, foreground crops)."""
    folds: tuple[int, ...] = (0,)
    mode: str = "single"
    pruner: str = "median"
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def directions(self) -> list[str]:
        return ["maximize"] if self.mode == "single" else ["maximize", "maximize"]

    @property
    def objective_names(self) -> list[str]:
        small = "dice_" + "_".join(self.classes)
        return [small] if self.mode == "single" else [small, "dice_" + "_".join(self.parenchyma_classes)]


def _range(key: str, value: float | list[float]) -> Range:
    low, high = (value, value) if not isinstance(value, list) else value
    return Range(float(low), float(high), key in LOG_SCALE)


def _data_classes(study: Study, class_names: Sequence[str] | None) -> tuple[str, ...]:
    if class_names is not None:
        return tuple(class_names)
    from robustseg.pipeline.study import study_classes

    return study_classes(study)


def objective_classes(study: Study, class_names: Sequence[str] | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(classes, parenchyma_classes)`` of the objective: ``tune.classes`` or the data set's small structures
    (``data.small_structures``), ``tune.parenchyma_classes`` or the other foreground classes (fetal: brain).
    ``class_names``: the data set's classes (default: read from the study's data set); a name that is not one
    of its foreground classes is an InputError."""
    class_names = _data_classes(study, class_names)
    table = study.tune
    small = tuple(table.classes) if table.classes is not None else tuple(study.data.small_structures)
    other = (tuple(table.parenchyma_classes) if table.parenchyma_classes is not None
             else tuple(c for c in class_names[1:] if c not in small))
    for key, names in (("classes" if table.classes is not None else "data.small_structures", small),
                       ("parenchyma_classes", other)):
        unknown = [c for c in names if c not in class_names[1:]]
        if unknown:
            where = key if key.startswith("data.") else f"tune.{key}"
            raise InputError(f"{study.path or 'study'}: key '{where}': {unknown[0]!r} is not a foreground class of the "
                             f"data set (classes: {', '.join(class_names)})")
    if not other:
        other = small  # no other foreground class: the second objective repeats the first
    return small, other


def parse_tune(study: Study, class_names: Sequence[str] | None = None) -> TuneSpec:
    """The search space of ``study.tune`` (validated when the study was loaded; absent: all defaults) and the
    objective's classes (:func:`objective_classes`; ``class_names``: the data set's classes)."""
    table = study.tune
    space = {k: _range(k, getattr(table, k)) for k in SPACE_KEYS if getattr(table, k) is not None}
    if tuned_arm(study, table.arm).loss != "hybrid":
        del space["a"], space["b"]  # the default space: nothing to tune in a non-hybrid loss
    names = _data_classes(study, class_names)
    classes, parenchyma = objective_classes(study, names)
    small = tuple(names.index(c) for c in study.data.small_structures if c in names)
    return TuneSpec(space=space, classes=classes, parenchyma_classes=parenchyma, class_names=names, small_classes=small,
                    folds=tuple(table.folds), mode=table.mode, pruner=table.pruner_name,
                    options={k: getattr(table, k) for k in OPTION_KEYS})


def tuned_arm(study: Study, name: str) -> Any:
    """The arm whose settings a trial starts from (``tune.arm``, default the first; checked at load)."""
    return study.arm(name) if name else study.arms[0]


def suggest(trial: Any, spec: TuneSpec, base: Mapping[str, float]) -> dict[str, float]:
    """Sample one point of the search space; returns the effective values (``a``, ``b``, ...).

    ``base`` holds the study's own values, used for keys outside the space (e.g. ``gamma``, ``lr``).
    """
    def draw(name: str, r: Range) -> float:
        return r.low if r.fixed else trial.suggest_float(name, r.low, r.high, log=r.log)

    sp = spec.space
    params: dict[str, float] = {}
    if "a" in sp:
        a = draw("a", sp["a"])
        b_high = min(sp["b"].high, 1.0 - a)
        if sp["b"].fixed or b_high <= sp["b"].low:
            b = sp["b"].low
        else:
            b = sp["b"].low + trial.suggest_float("b_share", 0.0, 1.0) * (b_high - sp["b"].low)
        params.update(a=a, b=b)
    params["oversampling"] = draw("oversampling", sp["oversampling"])
    for key in ("gamma", "lr"):
        if key in sp:
            params[key] = draw(key, sp[key])
        elif key in base:
            params[key] = float(base[key])
    return params


def check_params(params: Mapping[str, float]) -> None:
    """Reject infeasible values (e.g. from an enqueued trial) with a reason naming them."""
    problems = []
    for key, value in params.items():
        lo, hi, log = RANGE_LIMITS[key]
        if not math.isfinite(value) or value < lo or value > hi or (log and value <= 0):
            problems.append(f"{key}={value!r} outside [{lo}, {hi}]")
    if "a" in params and params["a"] + params["b"] > 1.0 + 1e-9:
        problems.append(f"a + b = {params['a'] + params['b']:.4g} > 1")
    if problems:
        raise ValueError("infeasible parameters: " + "; ".join(problems))


def base_values(arm: Any) -> dict[str, float]:
    """The arm's current values of the tunable keys (the starting point and the fixed values)."""
    out: dict[str, float] = {}
    if arm.loss == "hybrid":
        out["a"] = float(arm.loss_kwargs.get("a", 0.4))
        out["b"] = float(arm.loss_kwargs.get("b", 0.2))
    if arm.loss in GAMMA_LOSSES:
        out["gamma"] = float(arm.loss_kwargs.get("gamma", 2.0))
    out["oversampling"] = float(arm.oversampling)
    out["lr"] = float(arm.train.lr)
    return out


def apply_params(arm: Mapping[str, Any], params: Mapping[str, float]) -> dict[str, Any]:
    """An arm dict (``ArmSpec.to_dict()``) with the trial's values placed in it."""
    out = {**arm, "loss_kwargs": dict(arm["loss_kwargs"]), "train": dict(arm["train"])}
    for key in ("a", "b", "gamma"):
        if key in params:
            out["loss_kwargs"][key] = params[key]
    if "oversampling" in params:
        out["oversampling"] = params["oversampling"]
    if "lr" in params:
        out["train"]["lr"] = params["lr"]
    return out
