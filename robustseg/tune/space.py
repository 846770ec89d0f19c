"""The ``[tune]`` table of a study file: validation, the search space and how a trial samples it.

Options (defaults in ``OPTIONS``): ``trials`` (per call), ``timeout`` (s, 0: none), ``seed``,
``mode`` (``single`` | ``multi``: small structures vs parenchyma, Pareto front), ``pruner`` (``median``
| ``hyperband`` | ``none``; default median, none in multi mode), ``pruner_startup_trials``,
``pruner_warmup_epochs`` (epochs before a trial can be pruned; 0: half of ``train.max_epochs``, since small-structure
Dice stays near 0 for the first epochs of every trial and says little before),
``startup_trials`` (random TPE start-up), ``storage``, ``study_name``, ``arm`` (default the first),
``heartbeat_interval`` / ``grace_period`` (s), ``retry_killed``, ``max_consecutive_failures``,
``keep_checkpoints``, ``classes`` (default csp, lv), ``parenchyma_classes`` (brain), ``folds`` ([0]),
``seeds_per_trial`` (1: each trial's objective is the mean over that many training seeds),
``confirm_top_k`` (3: trials re-trained after the search; 0: no confirmation, the tuned file then keeps
the current settings), ``confirm_seeds`` (5: fresh seeds per confirmed setting, >= 2) and
``confirm_alpha`` (0.05: Holm-adjusted level at which a confirmed trial replaces the current settings);
see ``robustseg.tune.confirm``.

Search space (each entry is either a fixed number or a ``[low, high]`` range; a range with
``low == high`` is fixed too):

- ``a``             Dice share of the hybrid loss, default ``[0, 1]``
- ``b``             focal share of the hybrid loss, default ``[0, 1]``
- ``oversampling``  oversampling factor of images with CSP/LV, default ``[1, 10]``, log scale
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from robustseg.config import Study
from robustseg.errors import InputError
from robustseg.labels import CLASS_NAMES

SPACE_KEYS = ("a", "b", "oversampling", "gamma", "lr")
LOG_SCALE = {"oversampling", "lr"}
DEFAULT_SPACE: dict[str, list[float]] = {"a": [0.0, 1.0], "b": [0.0, 1.0], "oversampling": [1.0, 10.0]}
LIMITS: dict[str, tuple[float, float | None]] = {
    "a": (0.0, 1.0), "b": (0.0, 1.0), "oversampling": (1.0, 1000.0), "gamma": (0.0, 20.0), "lr": (0.0, 10.0),
}
PRUNERS = ("median", "hyperband", "none")
MODES = ("single", "multi")
GAMMA_LOSSES = ("hybrid", "focal")

# key -> (default, kind) for the scalar options; kind is checked by _check_option.
OPTIONS: dict[str, tuple[Any, str]] = {
    "trials": (20, "int>=1"),
    "timeout": (0.0, "num>=0"),
    "seed": (0, "int>=0"),
    "mode": ("single", "mode"),
    "pruner": ("", "pruner"),
    "pruner_startup_trials": (5, "int>=0"),
    "pruner_warmup_epochs": (0, "int>=0"),
    "startup_trials": (10, "int>=1"),
    "storage": ("", "str"),
    "study_name": ("", "str"),
    "arm": ("", "str"),
    "heartbeat_interval": (60, "int>=1"),
    "grace_period": (0, "int>=0"),
    "retry_killed": (0, "int>=0"),
    "max_consecutive_failures": (5, "int>=1"),
    "keep_checkpoints": (False, "bool"),
    "seeds_per_trial": (1, "int>=1"),
    "confirm_top_k": (3, "int>=0"),
    "confirm_seeds": (5, "int>=2"),
    "confirm_alpha": (0.05, "alpha"),
}
LIST_OPTIONS = ("classes", "parenchyma_classes", "folds")


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
    """The validated ``[tune]`` table."""

    space: Mapping[str, Range]
    classes: tuple[str, ...] = ("csp", "lv")
    parenchyma_classes: tuple[str, ...] = ("brain",)
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


def _where(study: Study) -> str:
    return str(study.path or "study")


def _bad(study: Study, key: str, value: Any, expected: str) -> InputError:
    return InputError(f"{_where(study)}: key 'tune.{key}' = {value!r}; expected {expected}")


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _check_option(study: Study, key: str, value: Any, kind: str) -> Any:
    ok = {
        "int>=1": isinstance(value, int) and not isinstance(value, bool) and value >= 1,
        "int>=0": isinstance(value, int) and not isinstance(value, bool) and value >= 0,
        "int>=2": isinstance(value, int) and not isinstance(value, bool) and value >= 2,
        "alpha": _is_num(value) and 0 < value < 1,
        "num>=0": _is_num(value) and value >= 0,
        "mode": value in MODES,
        "pruner": value in PRUNERS or value == "",
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
    }[kind]
    if not ok:
        expected = {
            "int>=1": "an integer >= 1", "int>=0": "an integer >= 0", "int>=2": "an integer >= 2",
            "alpha": "a number in (0, 1)", "num>=0": "a number >= 0",
            "mode": "one of " + ", ".join(repr(m) for m in MODES),
            "pruner": "one of " + ", ".join(repr(p) for p in PRUNERS), "str": "a string", "bool": "true or false",
        }[kind]
        raise _bad(study, key, value, expected)
    return value


def _parse_range(study: Study, key: str, value: Any) -> Range:
    lo_lim, hi_lim = LIMITS[key]
    log = key in LOG_SCALE
    if _is_num(value):
        low = high = float(value)
    elif isinstance(value, list) and len(value) == 2 and all(_is_num(v) for v in value) and value[0] <= value[1]:
        low, high = float(value[0]), float(value[1])
    else:
        raise _bad(study, key, value, "a number or a range [low, high] with low <= high")
    bounds_ok = low >= lo_lim and (hi_lim is None or high <= hi_lim) and (not log or low > 0)
    if not bounds_ok:
        lo_text = f"> {lo_lim}" if log else f">= {lo_lim}"
        raise _bad(study, key, value, f"values {lo_text} and <= {hi_lim}")
    return Range(low, high, log)


def _parse_classes(study: Study, key: str, value: Any) -> tuple[str, ...]:
    valid = CLASS_NAMES[1:]
    if not (isinstance(value, list) and value and all(v in valid for v in value) and len(set(value)) == len(value)):
        raise _bad(study, key, value, "a non-empty list of distinct class names from " + ", ".join(valid))
    return tuple(value)


def parse_tune(study: Study) -> TuneSpec:
    """Validate ``study.raw['tune']`` (absent: all defaults) and the arm it tunes."""
    table = study.raw.get("tune", {}) or {}
    known = set(OPTIONS) | set(LIST_OPTIONS) | set(SPACE_KEYS)
    for key in table:
        if key not in known:
            raise InputError(f"{_where(study)}: unknown key 'tune.{key}' (valid keys here: {', '.join(sorted(known))})")
    options = {k: _check_option(study, k, table.get(k, default), kind) for k, (default, kind) in OPTIONS.items()}
    mode = options.pop("mode")
    pruner = options.pop("pruner") or ("median" if mode == "single" else "none")
    if mode == "multi" and pruner != "none":
        raise _bad(study, "pruner", pruner, "'none' with mode = 'multi' (Optuna cannot prune multi-objective trials)")

    space = {k: _parse_range(study, k, v) for k, v in DEFAULT_SPACE.items()}
    space.update({k: _parse_range(study, k, table[k]) for k in SPACE_KEYS if k in table})
    if space["a"].high + space["b"].low > 1.0:
        raise InputError(f"{_where(study)}: keys 'tune.a' and 'tune.b' = {table.get('a')!r}, {table.get('b')!r}; "
                         "expected ranges with a_high + b_low <= 1 (the hybrid loss needs a + b <= 1)")

    classes = _parse_classes(study, "classes", table.get("classes", ["csp", "lv"]))
    parenchyma = _parse_classes(study, "parenchyma_classes", table.get("parenchyma_classes", ["brain"]))
    k = study.raw["split"]["k_folds"]
    folds = table.get("folds", [0])
    if not (isinstance(folds, list) and folds and len(set(folds)) == len(folds)
            and all(isinstance(f, int) and not isinstance(f, bool) and 0 <= f < k for f in folds)):
        raise _bad(study, "folds", folds, f"a non-empty list of distinct fold numbers in [0, {k - 1}]")

    arm = tuned_arm(study, options["arm"])
    if arm.loss != "hybrid":
        if "a" in table or "b" in table:
            raise InputError(f"{_where(study)}: tuning 'a'/'b' needs loss 'hybrid' (arm {arm.name!r} uses {arm.loss!r}); "
                             "set tune.a and tune.b only with [loss] name = 'hybrid'")
        del space["a"], space["b"]  # the default space: nothing to tune in a non-hybrid loss
    if "gamma" in table and arm.loss not in GAMMA_LOSSES:
        raise _bad(study, "gamma", table["gamma"], f"no gamma: arm {arm.name!r} uses loss {arm.loss!r}, "
                   f"which has no focal term ({', '.join(GAMMA_LOSSES)} do)")
    return TuneSpec(space=space, classes=classes, parenchyma_classes=parenchyma, folds=tuple(folds), mode=mode,
                    pruner=pruner, options=options)


def tuned_arm(study: Study, name: str) -> Any:
    """The arm whose settings a trial starts from (``tune.arm``, default the first arm)."""
    if not name:
        return study.arms[0]
    if name not in {a.name for a in study.arms}:
        raise _bad(study, "arm", name, "one of " + ", ".join(repr(a.name) for a in study.arms))
    return study.arm(name)


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
        lo, hi = LIMITS[key]
        if not math.isfinite(value) or value < lo or (hi is not None and value > hi) or (key in LOG_SCALE and value <= 0):
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
    out["lr"] = float(arm.train["lr"])
    return out


def apply_params(arm: Mapping[str, Any], params: Mapping[str, float]) -> dict[str, Any]:
    """An arm dict (``dataclasses.asdict(ArmSpec)``) with the trial's values placed in it."""
    out = {**arm, "loss_kwargs": dict(arm["loss_kwargs"]), "train": dict(arm["train"])}
    for key in ("a", "b", "gamma"):
        if key in params:
            out["loss_kwargs"][key] = params[key]
    if "oversampling" in params:
        out["oversampling"] = params["oversampling"]
    if "lr" in params:
        out["train"]["lr"] = params["lr"]
    return out
