"""Study file schema: load a TOML study, apply ``--set`` overrides, validate, and build immutable specs.

Everything a user can write in a study file is declared once in ``SCHEMA`` (key -> default and check).
Unknown keys and values of the wrong kind are ``InputError``s that name the file, the key, the value
and what was expected. The result is a ``Study``: plain frozen data that the rest of the package uses;
nothing downstream reads the TOML again.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustseg.errors import InputError

Check = Callable[[Any], str | None]
"""A check returns None when a value is fine, else a phrase saying what was expected."""


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def number(lo: float | None = None, hi: float | None = None, *, integer: bool = False) -> Check:
    def check(v: Any) -> str | None:
        kind = "an integer" if integer else "a number"
        if not _is_num(v) or (integer and not isinstance(v, int)):
            return kind + _range_text(lo, hi)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            return kind + _range_text(lo, hi)
        return None

    return check


def _range_text(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f" in [{lo}, {hi}]"
    if lo is not None:
        return f" >= {lo}"
    if hi is not None:
        return f" <= {hi}"
    return ""


def one_of(*choices: Any) -> Check:
    return lambda v: None if v in choices else "one of " + ", ".join(repr(c) for c in choices)


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def text(v: Any) -> str | None:
    return None if isinstance(v, str) else "a string"


def optional(check: Check) -> Check:
    return lambda v: None if v is None or v == "" else check(v)


def int_list(lo: int = 0) -> Check:
    def check(v: Any) -> str | None:
        ok = isinstance(v, list) and v and all(isinstance(x, int) and not isinstance(x, bool) and x >= lo for x in v)
        return None if ok and len(set(v)) == len(v) else f"a non-empty list of distinct integers >= {lo}"

    return check


def anything(v: Any) -> str | None:
    return None


# --- the schema -----------------------------------------------------------------------------------
# Tables listed in OPEN_TABLES accept extra keys (they are passed to a registry entry, which validates
# them); every other table is closed.

SCHEMA: dict[str, tuple[Any, Check]] = {
    "name": ("", text),
    "description": ("", text),
    "seeds": ([0, 1, 2], int_list()),
    "data.source": ("phantom", one_of("phantom", "fetal_head", "folder")),
    "data.path": ("", text),
    "data.plane": ("Trans-thalamic", text),
    "data.colormap": ("pascal", anything),
    "data.size": (256, number(16, 4096, integer=True)),
    "data.phantom_n": (200, number(10, 100000, integer=True)),
    "data.phantom_seed": (0, number(0, integer=True)),
    "data.phantom_style": ("default", text),
    "split.test_fraction": (0.2, number(0.01, 0.9)),
    "split.k_folds": (5, number(2, 50, integer=True)),
    "split.folds": ([], anything),
    "split.seed": (0, number(0, integer=True)),
    "model.name": ("attention_unet", text),
    "loss.name": ("hybrid", text),
    "loss.class_weight_smoothing": (0.0, number(0.0)),
    "sampler.oversampling": (3.0, number(1.0, 1000.0)),
    "train.batch_size": (8, number(1, 4096, integer=True)),
    "train.max_epochs": (100, number(1, 100000, integer=True)),
    "train.lr": (1e-4, number(0.0)),
    "train.weight_decay": (0.0, number(0.0)),
    "train.lr_factor": (0.5, number(0.0, 1.0)),
    "train.lr_patience": (5, number(0, integer=True)),
    "train.lr_min": (1e-6, number(0.0)),
    "train.early_stopping_patience": (10, number(0, integer=True)),
    "train.grad_clip": (1.0, number(0.0)),
    "train.amp": ("auto", one_of("auto", "off", "bf16", "fp16")),
    "train.device": ("auto", one_of("auto", "cpu", "cuda")),
    "train.num_workers": (0, number(0, 64, integer=True)),
    "train.augment": (True, boolean),
    "train.samples_per_epoch": (0, number(0, integer=True)),
    "train.channels_last": ("auto", one_of("auto", True, False)),
    "train.patch_size": (0, number(0, 4096, integer=True)),
    "train.foreground_fraction": (0.0, number(0.0, 1.0)),
    "train.lr_schedule": ("plateau", one_of("plateau", "poly")),
    "train.deep_supervision": (0, number(0, 4, integer=True)),
    "train.checkpoint_metric": ("val_loss", one_of("val_loss", "small_dice")),
    "perturb.suite": ("ultrasound", anything),
    "perturb.severities": ([1, 2, 3, 4, 5], int_list(1)),
    "perturb.seed": (0, number(0, integer=True)),
    "eval.empty_policy": ("nan", one_of("nan", "one")),
    "eval.postprocess": ("auto", one_of("auto", "on", "off")),
    "eval.min_component_px": (5, number(0, integer=True)),
    "eval.nsd_tolerance_mm": (1.0, number(0.0)),
    "eval.boundary": (True, boolean),
    "eval.save_probabilities": (True, boolean),
    "eval.batch_size": (16, number(1, 4096, integer=True)),
    "execution.executor": ("local", one_of("local", "dask")),
    "execution.scheduler": ("", text),
    "execution.threads": (0, number(0, 256, integer=True)),
    "execution.workers": (1, number(1, 256, integer=True)),
    "execution.runs_dir": ("runs", text),
    "execution.reports_dir": ("reports", text),
    "execution.bootstrap": (2000, number(0, 1000000, integer=True)),
}

OPEN_TABLES = ("model", "loss")
"""Tables whose extra keys are keyword arguments of the chosen model / loss."""

ARM_TABLES = ("model", "loss", "sampler", "train")
"""Tables an ``[arms.NAME]`` entry may override."""

TABLES = ("data", "split", "model", "loss", "sampler", "train", "perturb", "eval", "execution", "arms", "tune")


def defaults() -> dict[str, Any]:
    """The nested default study (without arms)."""
    out: dict[str, Any] = {}
    for key, (value, _) in SCHEMA.items():
        _set_path(out, key, copy.deepcopy(value))
    return out


def _set_path(d: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
        if not isinstance(d, dict):
            raise InputError(f"--set {dotted}: '{p}' is not a table")
    d[parts[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """Parse ``KEY=VALUE`` where VALUE is a TOML value (bare words are taken as strings)."""
    if "=" not in item:
        raise InputError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.max_epochs=5")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key not in ("data.colormap", "perturb.suite") and not key.startswith("data.external"):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _validate_flat(flat: Mapping[str, Any], where: str, allowed_tables: tuple[str, ...]) -> None:
    for key, value in flat.items():
        table = key.split(".", 1)[0]
        if "." in key and table not in allowed_tables:
            raise InputError(f"{where}: unknown table '{table}' (valid: {', '.join(allowed_tables)})")
        if key in SCHEMA:
            problem = SCHEMA[key][1](value)
            if problem:
                raise InputError(f"{where}: key '{key}' = {value!r}; expected {problem}")
        elif table in OPEN_TABLES and key.count(".") == 1:
            continue
        else:
            known = sorted(k for k in SCHEMA if k.split(".", 1)[0] == table) or sorted(SCHEMA)
            raise InputError(f"{where}: unknown key '{key}' (valid keys here: {', '.join(known)})")


@dataclass(frozen=True)
class ArmSpec:
    """Everything that defines how one arm trains."""

    name: str
    model: str
    model_kwargs: Mapping[str, Any]
    loss: str
    loss_kwargs: Mapping[str, Any]
    class_weight_smoothing: float
    oversampling: float
    train: Mapping[str, Any]


@dataclass(frozen=True)
class ExternalSet:
    name: str
    source: str
    path: str
    plane: str
    colormap: Any


@dataclass(frozen=True)
class Study:
    """A validated study. ``raw`` is the merged nested dict (defaults + file + overrides)."""

    name: str
    path: Path | None
    raw: Mapping[str, Any]
    arms: tuple[ArmSpec, ...]
    external: tuple[ExternalSet, ...] = field(default=())

    def section(self, table: str) -> dict[str, Any]:
        return copy.deepcopy(dict(self.raw.get(table, {})))

    @property
    def seeds(self) -> list[int]:
        return list(self.raw["seeds"])

    @property
    def folds(self) -> list[int]:
        folds = self.raw["split"]["folds"] or list(range(self.raw["split"]["k_folds"]))
        return list(folds)

    def arm(self, name: str) -> ArmSpec:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise InputError(f"--arm {name!r}: no such arm (valid: {', '.join(a.name for a in self.arms)})")

    @property
    def file_hash(self) -> str:
        return stable_hash(self.raw)


def stable_hash(obj: Any, length: int = 12) -> str:
    """Hash of a JSON-serialisable object, independent of dict ordering."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict) and k not in ("colormap", "suite"):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _build_arm(name: str, raw: Mapping[str, Any]) -> ArmSpec:
    model = dict(raw["model"])
    loss = dict(raw["loss"])
    return ArmSpec(
        name=name,
        model=model.pop("name"),
        model_kwargs=model,
        loss=loss.pop("name"),
        class_weight_smoothing=float(loss.pop("class_weight_smoothing")),
        loss_kwargs=loss,
        oversampling=float(raw["sampler"]["oversampling"]),
        train=dict(raw["train"]),
    )


def _accepted_options(table: str, name: str) -> list[str] | None:
    """Options the registry entry ``name`` of ``table`` (model or loss) accepts; None when any (or unknown)."""
    from robustseg.nn import losses, models

    registry = models if table == "model" else losses
    try:
        return registry.options(name)
    except InputError:  # an unknown name is reported with the valid ones when the arm is built
        return None


def _check_external(where: str, external: Any) -> tuple[ExternalSet, ...]:
    if not isinstance(external, dict):
        raise InputError(f"{where}: 'data.external' must be a table of tables [data.external.NAME]")
    out = []
    for name, spec in external.items():
        if not isinstance(spec, dict):
            raise InputError(f"{where}: 'data.external.{name}' must be a table")
        allowed = {"source", "path", "plane", "colormap"}
        extra = set(spec) - allowed
        if extra:
            raise InputError(f"{where}: unknown key 'data.external.{name}.{sorted(extra)[0]}' (valid: {', '.join(sorted(allowed))})")
        source = spec.get("source", "folder")
        if source not in ("fetal_head", "folder"):
            raise InputError(f"{where}: 'data.external.{name}.source' = {source!r}; expected 'fetal_head' or 'folder'")
        if not isinstance(spec.get("path"), str) or not spec["path"]:
            raise InputError(f"{where}: 'data.external.{name}.path' is required (a folder)")
        out.append(ExternalSet(name, source, spec["path"], spec.get("plane", "Trans-thalamic"), spec.get("colormap", "pascal")))
    return tuple(out)


def build_study(user: Mapping[str, Any], *, where: str = "study", path: Path | None = None,
                overrides: list[str] | tuple[str, ...] = ()) -> Study:
    """Merge ``user`` over the defaults, apply ``--set`` overrides, validate and build a ``Study``."""
    user = copy.deepcopy(dict(user))
    for item in overrides:
        key, value = parse_override(item)
        _set_path(user, key, value)
    arms_raw = user.pop("arms", {}) or {}
    tune_raw = user.pop("tune", None)
    external_raw = user.get("data", {}).pop("external", {}) if isinstance(user.get("data"), dict) else {}
    _validate_flat(_flatten(user), where, TABLES)
    raw = _deep_merge(defaults(), user)
    if not raw["name"]:
        raw["name"] = path.stem if path else "study"
    folds = raw["split"]["folds"]
    if folds and (not isinstance(folds, list) or any(not isinstance(f, int) or not 0 <= f < raw["split"]["k_folds"] for f in folds)):
        raise InputError(f"{where}: key 'split.folds' = {folds!r}; expected a list of fold numbers in [0, {raw['split']['k_folds'] - 1}]")
    if not isinstance(arms_raw, dict):
        raise InputError(f"{where}: 'arms' must be a table of tables [arms.NAME]")
    arms = []
    for arm_name, over in (arms_raw or {"default": {}}).items():
        if not isinstance(over, dict):
            raise InputError(f"{where}: 'arms.{arm_name}' must be a table")
        _validate_flat(_flatten(over), f"{where} [arms.{arm_name}]", ARM_TABLES)
        base = copy.deepcopy(raw)
        for table in OPEN_TABLES:  # a different model / loss inherits only the arguments it accepts
            name = (over.get(table) or {}).get("name")
            if name is not None and name != base[table]["name"]:
                accepted = _accepted_options(table, name)
                base[table] = {k: v for k, v in base[table].items()
                               if k == "name" or f"{table}.{k}" in SCHEMA or accepted is None or k in accepted}
        arms.append(_build_arm(str(arm_name), _deep_merge(base, over)))
    raw["arms"] = copy.deepcopy(arms_raw)
    if tune_raw is not None:
        if not isinstance(tune_raw, dict):
            raise InputError(f"{where}: 'tune' must be a table")
        raw["tune"] = tune_raw
    raw["data"]["external"] = external_raw
    external = _check_external(where, external_raw)
    return Study(name=str(raw["name"]), path=path, raw=raw, arms=tuple(arms), external=external)


def load_study(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Study:
    """Read and validate a study file. Bad files raise ``InputError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: study file not found")
    try:
        user = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    return build_study(user, where=str(path), path=path, overrides=overrides)
