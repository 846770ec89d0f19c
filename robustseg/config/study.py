"""A validated study: the typed configuration, its arms (inheritance resolved) and its extra test sets.

``build_study`` merges ``--set`` overrides into the file's tables, validates everything with the schema
(``robustseg.config.schema``), and resolves ``[arms.NAME]`` overrides over the study's model / loss /
sampler / train tables. The result is a frozen ``Study``; nothing downstream reads the TOML again.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from robustseg.config.load import (
    apply_overrides,
    deep_merge,
    is_stdin,
    packaged_study,
    read_toml,
    validate,
    validate_study,
)
from robustseg.config.schema import (
    ARM_MODELS,
    ARM_TABLES,
    DataTable,
    EvalTable,
    ExecutionTable,
    LossTable,
    ModelTable,
    PerturbTable,
    SplitTable,
    StudyConfig,
    TrainTable,
    TuneTable,
)
from robustseg.errors import InputError


class ArmSpec(BaseModel):
    """Everything that defines how one arm trains. ``to_dict()`` is what run ids hash."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    model: str
    model_kwargs: dict[str, Any]
    loss: str
    loss_kwargs: dict[str, Any]
    class_weight_smoothing: float
    oversampling: float
    train: TrainTable

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (the ``arm`` entry of a run's spec.json)."""
        return self.model_dump()


@dataclass(frozen=True)
class ExternalSet:
    name: str
    source: str
    path: str
    plane: str
    colormap: Any
    frame: int | None = None


@dataclass(frozen=True)
class Study:
    """A validated study: ``config`` holds every table, typed; ``raw`` is the same as a plain dict."""

    name: str
    path: Path | None
    config: StudyConfig
    arms: tuple[ArmSpec, ...]
    external: tuple[ExternalSet, ...] = field(default=())

    @cached_property
    def raw(self) -> dict[str, Any]:
        """The resolved study as plain data (defaults + file + overrides), as saved in ``study.json``.

        ``arms``, ``tune`` and ``data.external`` hold only what the file set (as before the schema moved
        to pydantic), so the dict, and ``file_hash``, stay the same for the same study.
        """
        cfg = self.config
        out = cfg.model_dump()
        out["data"]["external"] = {n: e.model_dump(exclude_unset=True) for n, e in cfg.data.external.items()}
        if not out["data"].get("allow_absent_classes"):  # the default changes nothing: keep hashes as they were
            out["data"].pop("allow_absent_classes", None)
        if out["data"].get("frame") is None:  # only DICOM cine data sets set it; others keep their hash
            out["data"].pop("frame", None)
        defaults = ExecutionTable()
        for key in ("tracking", "tracking_uri", "tracking_experiment", "slurm"):  # left out at their defaults,
            if getattr(cfg.execution, key) == getattr(defaults, key):          # so studies keep their hash
                out["execution"].pop(key)
        out["arms"] = {n: a.model_dump(exclude_unset=True) for n, a in cfg.arms.items()}
        if cfg.tune is None:
            del out["tune"]
        else:
            out["tune"] = cfg.tune.model_dump(exclude_unset=True)
        return out

    def section(self, table: str) -> dict[str, Any]:
        return copy.deepcopy(dict(self.raw.get(table, {})))

    @property
    def description(self) -> str:
        return self.config.description

    @property
    def data(self) -> DataTable:
        return self.config.data

    @property
    def split(self) -> SplitTable:
        return self.config.split

    @property
    def perturb(self) -> PerturbTable:
        return self.config.perturb

    @property
    def eval(self) -> EvalTable:
        return self.config.eval

    @property
    def execution(self) -> ExecutionTable:
        return self.config.execution

    @property
    def tune(self) -> TuneTable:
        """The ``[tune]`` table (all defaults when the file has none)."""
        return self.config.tune if self.config.tune is not None else TuneTable()

    @property
    def seeds(self) -> list[int]:
        return list(self.config.seeds)

    @property
    def folds(self) -> list[int]:
        return list(self.config.split.folds or range(self.config.split.k_folds))

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


def _accepted_options(table: str, name: str) -> list[str] | None:
    """Options the registry entry ``name`` of ``table`` (model or loss) accepts; None when any (or unknown)."""
    from robustseg.nn import losses, models  # torch: only when an arm switches model / loss

    registry = models if table == "model" else losses
    try:
        return registry.options(name)
    except InputError:  # an unknown name is reported with the valid ones when the arm is built
        return None


def _build_arm(name: str, tables: Mapping[str, BaseModel]) -> ArmSpec:
    model = tables["model"].model_dump()
    loss = tables["loss"].model_dump()
    return ArmSpec(
        name=name,
        model=model.pop("name"),
        model_kwargs=model,
        loss=loss.pop("name"),
        class_weight_smoothing=float(loss.pop("class_weight_smoothing")),
        loss_kwargs=loss,
        oversampling=float(tables["sampler"].oversampling),
        train=tables["train"],
    )


def _arms(config: StudyConfig, where: str) -> tuple[ArmSpec, ...]:
    """Each ``[arms.NAME]`` merged over the study's arm tables and validated (no arms: one ``default``)."""
    if not config.arms:
        return (_build_arm("default", {t: getattr(config, t) for t in ARM_TABLES}),)
    arms = []
    for arm_name, tables in config.arms.items():
        over = tables.model_dump(exclude_unset=True)
        base = {t: getattr(config, t).model_dump() for t in ARM_TABLES}
        for table, declared in (("model", ModelTable), ("loss", LossTable)):
            # a different model / loss inherits only the options it accepts
            new = over.get(table, {}).get("name")
            if new is not None and new != base[table]["name"]:
                accepted = _accepted_options(table, new)
                base[table] = {k: v for k, v in base[table].items()
                               if k in declared.model_fields or accepted is None or k in accepted}
        merged = deep_merge(base, over)
        arm_where = f"{where} [arms.{arm_name}]"
        arms.append(_build_arm(str(arm_name), {t: validate(ARM_MODELS[t], merged[t], arm_where, (t,))
                                               for t in ARM_TABLES}))
    return tuple(arms)


def _check_tune(config: StudyConfig, arms: tuple[ArmSpec, ...], where: str) -> None:
    """The ``[tune]`` keys that depend on the arm it tunes (the arm exists, its loss has the tuned terms)."""
    tune = config.tune
    if tune is None:
        return

    def bad(key: str, value: Any, expected: str) -> InputError:
        return InputError(f"{where}: key 'tune.{key}' = {value!r}; expected {expected}")

    names = [a.name for a in arms]
    if tune.arm and tune.arm not in names:
        raise bad("arm", tune.arm, "one of " + ", ".join(repr(n) for n in names))
    arm = arms[names.index(tune.arm)] if tune.arm else arms[0]
    set_keys = tune.model_fields_set
    if arm.loss != "hybrid" and {"a", "b"} & set_keys:
        raise InputError(f"{where}: tuning 'a'/'b' needs loss 'hybrid' (arm {arm.name!r} uses {arm.loss!r}); "
                         "set tune.a and tune.b only with [loss] name = 'hybrid'")
    if tune.gamma is not None and arm.loss not in ("hybrid", "focal"):
        raise bad("gamma", tune.gamma, f"no gamma: arm {arm.name!r} uses loss {arm.loss!r}, which has no focal "
                  "term (hybrid, focal do)")
    if tune.lr is not None:
        low = tune.lr[0] if isinstance(tune.lr, list) else tune.lr
        if low < arm.train.lr_min:
            raise bad("lr", tune.lr, f"values >= train.lr_min ({arm.train.lr_min!r}) of arm {arm.name!r}")


def build_study(user: Mapping[str, Any], *, where: str = "study", path: Path | None = None,
                overrides: Sequence[str] = ()) -> Study:
    """Apply ``--set`` overrides to ``user``, validate it (defaults filled in), resolve the arms: a ``Study``."""
    config = validate_study(apply_overrides(user, overrides), where)
    if not config.name:
        config = config.model_copy(update={"name": path.stem if path else "study"})
    arms = _arms(config, where)
    _check_tune(config, arms, where)
    external = tuple(ExternalSet(n, e.source, e.path, e.plane, e.colormap, e.frame)
                     for n, e in config.data.external.items())
    return Study(name=config.name, path=path, config=config, arms=arms, external=external)


def load_study(path: str | Path | Traversable | None = None, overrides: Sequence[str] = ()) -> Study:
    """Read and validate a study file (None: the packaged quickstart; ``-``: standard input). Bad files raise
    ``InputError`` naming it."""
    if path is not None and is_stdin(path):
        return build_study(read_toml(path), where="<stdin>", path=None, overrides=overrides)
    source = (packaged_study("quickstart") if path is None else path if isinstance(path, Traversable)
              else Path(os.path.expanduser(str(path))))
    user = read_toml(source)
    stem = Path(str(source))
    return build_study(user, where=str(source), path=stem, overrides=overrides)
