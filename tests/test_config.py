"""Study file schema: defaults, overrides, arms, and one-line errors naming the key."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from pydantic import ValidationError

from robustseg.config import (
    ModelTable,
    StudyConfig,
    TrainTable,
    build_study,
    load_study,
    parse_override,
    stable_hash,
)
from robustseg.errors import InputError

STUDIES = Path(__file__).resolve().parent.parent / "studies"


@pytest.mark.parametrize("name", ["quickstart", "thesis", "loss-ablation"])
def test_shipped_studies_load(name: str) -> None:
    study = load_study(STUDIES / f"{name}.toml")
    assert study.name == name
    assert study.arms and study.seeds


def test_defaults_follow_the_reference_protocol() -> None:
    study = build_study({})
    arm = study.arms[0]
    assert (arm.model, arm.loss, arm.oversampling) == ("attention_unet", "hybrid", 3.0)
    assert arm.train.lr == 1e-4 and arm.train.early_stopping_patience == 10
    assert arm.train.lr_factor == 0.5 and arm.train.lr_patience == 5 and arm.train.lr_min == 1e-6
    assert study.data.size == 256


def test_set_overrides_parse_toml_values() -> None:
    study = build_study({"name": "x"}, overrides=["seeds=[3,4]", "data.path=/data/fhb", "train.lr=0.01",
                                                  "split.k_folds=3"])
    assert study.seeds == [3, 4]
    assert study.data.path == "/data/fhb"
    assert study.arms[0].train.lr == 0.01
    assert study.folds == [0, 1, 2]
    assert parse_override("eval.boundary=false") == ("eval.boundary", False)


@pytest.mark.parametrize(
    ("user", "fragment"),
    [
        ({"train": {"lrr": 1}}, "unknown key 'train.lrr'"),
        ({"train": {"lr": "fast"}}, "key 'train.lr' = 'fast'; expected a number"),
        ({"bogus": {"a": 1}}, "unknown table 'bogus'"),
        ({"seeds": []}, "key 'seeds' = []"),
        ({"data": {"source": "nifti"}}, "key 'data.source' = 'nifti'; expected one of"),
        ({"arms": {"a": {"data": {"size": 64}}}}, "[arms.a]: unknown table 'data'"),
        ({"split": {"k_folds": 3, "folds": [3]}}, "key 'split.folds' = [3]"),
        ({"train": {"augment": 1}}, "expected true or false"),
    ],
)
def test_bad_values_name_the_key(user: dict, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        build_study(user, where="s.toml")
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("s.toml")


def test_bad_set_override() -> None:
    with pytest.raises(InputError, match="KEY=VALUE"):
        build_study({}, overrides=["seeds"])


def test_arms_inherit_only_the_arguments_the_new_entry_accepts() -> None:
    study = build_study({"loss": {"a": 0.3, "gamma": 3.0}, "model": {"base": 8, "depth": 3},
                         "arms": {"ce": {"loss": {"name": "ce"}}, "focal": {"loss": {"name": "focal"}},
                                  "h": {"loss": {"b": 0.1}}, "plain": {"model": {"name": "unet"}},
                                  "timm": {"model": {"name": "timm_unet", "encoder": "resnet18"}}}})
    arms = {a.name: a for a in study.arms}
    assert arms["ce"].loss == "ce" and arms["ce"].loss_kwargs == {}
    assert arms["focal"].loss_kwargs == {"gamma": 3.0}
    assert arms["h"].loss == "hybrid" and arms["h"].loss_kwargs == {"a": 0.3, "gamma": 3.0, "b": 0.1}
    assert arms["plain"].model == "unet" and arms["plain"].model_kwargs == {"base": 8, "depth": 3}
    assert arms["timm"].model_kwargs == {"encoder": "resnet18"}


def test_study_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="study file not found"):
        load_study(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(InputError, match="bad.toml: not valid TOML"):
        load_study(bad)


def test_hash_changes_with_content() -> None:
    assert build_study({"seeds": [0]}).file_hash != build_study({"seeds": [1]}).file_hash
    assert build_study({"seeds": [0]}).file_hash == build_study({"seeds": [0]}).file_hash


# --- one schema -------------------------------------------------------------------------------------


def _leaves(table: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in table.items():
        if isinstance(v, dict) and k not in ("colormap", "suite"):
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.mark.parametrize("name", ["quickstart", "thesis", "loss-ablation"])
def test_every_key_of_the_shipped_studies_validates_and_is_kept(name: str) -> None:
    import tomllib

    path = STUDIES / f"{name}.toml"
    user = tomllib.loads(path.read_text())
    study = load_study(path)
    raw = _leaves(study.raw)
    for key, value in _leaves(user).items():
        assert raw[key] == value and type(raw[key]) is type(value), key  # nothing dropped, nothing coerced
    for arm in study.arms:  # each arm's tables went through the same models
        assert isinstance(arm.train, TrainTable)


def test_packaged_quickstart_is_the_default_study() -> None:
    study = load_study()
    assert study.name == "quickstart" and study.path is not None
    assert study.path.parent.name == "studies" and study.path.parent.parent.name == "robustseg"
    assert study.file_hash == load_study(STUDIES / "quickstart.toml").file_hash  # the top-level link points there


def test_resolved_study_and_run_payload_hashes_are_unchanged() -> None:
    """Run ids hash these dicts: a change here makes every finished run of the quickstart run again."""
    study = load_study(STUDIES / "quickstart.toml")
    # 9a846f872c4b before native-resolution evaluation (eval.resolution, data.small_structures), train.compile and the
    # recipe options; 8a4125a22992 before the recipe that transfers (He init, batch 4, poly, deep supervision);
    # 1ced3b6af4ad before perturbations at native resolution (perturb.stage) and the probe geometry settings;
    # 3fd8651ecc04 before [compare] (the study hash only: run ids hash the payload below, which is unchanged)
    assert study.file_hash == "78816a2fdfde"
    assert stable_hash(study.arms[0].to_dict()) == stable_hash({
        "name": "default", "model": "attention_unet", "model_kwargs": {"base": 8, "depth": 4, "init": "he"},
        "loss": "hybrid", "loss_kwargs": {"a": 0.5, "b": 0.0, "gamma": 2.0}, "class_weight_smoothing": 0.1,
        "oversampling": 3.0,
        "train": {"batch_size": 4, "max_epochs": 40, "lr": 3e-3, "weight_decay": 0.0, "lr_factor": 0.5,
                  "lr_patience": 5, "lr_min": 1e-6, "early_stopping_patience": 0, "grad_clip": 1.0, "amp": "auto",
                  "device": "auto", "num_workers": 0, "augment": True, "samples_per_epoch": 64,
                  "channels_last": "auto", "compile": "auto", "patch_size": 0, "foreground_fraction": 0.0,
                  "lr_schedule": "poly", "deep_supervision": 2, "checkpoint_metric": "small_dice"}})


def test_numbers_are_kept_as_written() -> None:
    # An integer in a number key stays an integer, so run ids of existing studies do not change.
    arm = build_study({"train": {"lr_min": 0, "weight_decay": 0}}).arms[0]
    assert arm.train.lr_min == 0 and type(arm.train.lr_min) is int
    with pytest.raises(InputError, match="key 'train.max_epochs' = 2.0; expected an integer"):
        build_study({"train": {"max_epochs": 2.0}})


def test_models_are_frozen_and_closed() -> None:
    study = build_study({})
    with pytest.raises(ValidationError):
        study.config.train.lr = 1.0  # type: ignore[misc]
    assert StudyConfig.model_config["extra"] == "forbid" and ModelTable.model_config["extra"] == "allow"


def test_training_defaults_are_the_schema_defaults() -> None:
    from robustseg.nn.train import TrainConfig

    arm = build_study({}).arms[0]
    cfg = TrainConfig()
    assert {k: getattr(cfg, k) for k in TrainTable.model_fields} == arm.train.model_dump()
    assert (cfg.model, cfg.loss, cfg.oversampling, cfg.class_weight_smoothing, cfg.size) == (
        arm.model, arm.loss, arm.oversampling, arm.class_weight_smoothing, build_study({}).data.size)


def test_config_import_and_load_stay_torch_free() -> None:
    code = ("import sys, robustseg; from robustseg.config import load_study; load_study(); "
            "robustseg.load_study; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --- the drifted bounds: schema, training and tuning agree ------------------------------------------


def test_lr_must_be_positive_everywhere() -> None:
    from robustseg.nn.train import TrainConfig

    with pytest.raises(InputError, match=r"key 'train.lr' = 0; expected a number > 0"):
        build_study({"train": {"lr": 0}}, where="s.toml")
    with pytest.raises(InputError, match=r"\[arms.x\]: key 'train.lr' = 0.0"):
        build_study({"arms": {"x": {"train": {"lr": 0.0}}}}, where="s.toml")
    with pytest.raises(InputError, match="lr"):
        TrainConfig(lr=0.0)
    with pytest.raises(InputError, match="tune.lr"):
        build_study({"tune": {"lr": [0.0, 1e-2]}})
    assert build_study({"train": {"lr": 1e-8, "lr_min": 0}}).arms[0].train.lr == 1e-8


@pytest.mark.parametrize("factor", [0, 0.0, 1, 1.0, -0.5, 1.5])
def test_lr_factor_is_in_the_open_unit_interval(factor: float) -> None:
    from robustseg.nn.train import TrainConfig

    with pytest.raises(InputError, match=r"key 'train.lr_factor' = .*; expected a number in \(0, 1\)"):
        build_study({"train": {"lr_factor": factor}}, where="s.toml")
    with pytest.raises(InputError, match="lr_factor"):
        TrainConfig(lr_factor=factor)


def test_lr_factor_inside_the_interval_is_accepted_by_the_scheduler() -> None:
    import torch

    from robustseg.nn.train import TrainConfig

    cfg = TrainConfig(lr_factor=build_study({"train": {"lr_factor": 0.999}}).arms[0].train.lr_factor)
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=cfg.lr_factor)  # accepts every value the schema does


@pytest.mark.parametrize("factor", [0.0, 0.5, 0.999, 1000.5])
def test_oversampling_below_one_is_rejected_by_schema_training_sampler_and_tuning(factor: float) -> None:
    import numpy as np

    from robustseg.nn.sampler import oversampling_weights
    from robustseg.nn.train import TrainConfig

    with pytest.raises(InputError, match=r"key 'sampler.oversampling' = .*; expected a number in \[1, 1000\]"):
        build_study({"sampler": {"oversampling": factor}}, where="s.toml")
    with pytest.raises(InputError, match="oversampling"):
        TrainConfig(oversampling=factor)
    with pytest.raises(InputError, match="factor"):
        oversampling_weights(np.array([True, False]), factor)
    with pytest.raises(InputError, match="tune.oversampling"):
        build_study({"tune": {"oversampling": [factor, 1000.5] if factor < 1 else [1.0, factor]}})


def test_oversampling_of_one_means_no_oversampling() -> None:
    import numpy as np

    from robustseg.nn.sampler import oversampling_weights

    factor = build_study({"sampler": {"oversampling": 1}}).arms[0].oversampling
    assert oversampling_weights(np.array([True, False, True]), factor).tolist() == [1.0, 1.0, 1.0]


# --- one-line error messages ------------------------------------------------------------------------

ERROR_LINE = re.compile(r"^(?P<where>[^:]+(?: \[arms\.\w+\])?): key '(?P<key>[\w.]+)' = (?P<value>.+); expected (?P<exp>.+)$")


@pytest.mark.parametrize(
    ("override", "key", "value"),
    [
        ("train.lr=-1", "train.lr", "-1"),
        ("train.amp='fp8'", "train.amp", "'fp8'"),
        ("seeds=[0,0]", "seeds", "[0, 0]"),
        ("data.size=8", "data.size", "8"),
        ("eval.boundary='yes'", "eval.boundary", "'yes'"),
        ("split.folds=[9]", "split.folds", "[9]"),
        ("train.lr_min=1", "train.lr_min", "1"),
        ("tune.trials=0", "tune.trials", "0"),
        ("tune.folds=[4]", "tune.folds", "[4]"),
        ("tune.classes=['cerebellum']", "tune.classes", "['cerebellum']"),
        ("data.external.ext.source='nifti'", "data.external.ext.source", "'nifti'"),
        ("arms.big.train.batch_size=0", "train.batch_size", "0"),
        ("arms.big.sampler.oversampling=0.5", "sampler.oversampling", "0.5"),
    ],
)
def test_error_message_names_file_key_value_and_expectation(tmp_path: Path, override: str, key: str,
                                                             value: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[split]\nk_folds = 3\n[data.external.ext]\npath = "/e"\n')
    with pytest.raises(InputError) as info:
        load_study(path, overrides=[override])
    msg = str(info.value)
    m = ERROR_LINE.match(msg)
    assert m and "\n" not in msg, msg
    assert m["where"].startswith(str(path)) and m["key"] == key and m["value"] == value
    assert ("[arms.big]" in m["where"]) == override.startswith("arms.")
    assert info.value.exit_code == 2


def test_unknown_keys_list_the_valid_ones() -> None:
    with pytest.raises(InputError, match=r"^s.toml: unknown key 'eval.bondary' \(valid keys here: eval.batch_size, "
                                         r"eval.boundary, "):
        build_study({"eval": {"bondary": True}}, where="s.toml")
    with pytest.raises(InputError, match=r"unknown key 'data.external.x.size' \(valid keys here: "):
        build_study({"data": {"external": {"x": {"path": "/e", "size": 3}}}}, where="s.toml")
    with pytest.raises(InputError, match=r"key 'data.external.x.path' is required"):
        build_study({"data": {"external": {"x": {}}}}, where="s.toml")


def test_cli_exit_code_2_for_a_bad_key(capsys: pytest.CaptureFixture[str]) -> None:
    from robustseg.cli import main

    assert main(["study", "--set", "train.lr=0"]) == 2  # no file: the packaged quickstart, then the override
    err = capsys.readouterr().err
    assert "quickstart.toml: key 'train.lr' = 0; expected a number > 0" in " ".join(err.split())


def test_wheel_ships_the_studies(tmp_path: Path) -> None:
    """A non-editable install finds the shipped studies (package data)."""
    root = Path(__file__).resolve().parent.parent
    src = tmp_path / "src"
    shutil.copytree(root / "robustseg", src / "robustseg", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, timeout=300, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("robustseg-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"robustseg/studies/{n}.toml" for n in ("quickstart", "thesis", "loss-ablation")} <= names


def test_tune_keys_that_depend_on_the_arm_are_checked_at_load() -> None:
    with pytest.raises(InputError, match=r"key 'tune.lr' = \[1e-07, 0.01\]; expected values >= train.lr_min"):
        build_study({"tune": {"lr": [1e-7, 1e-2]}})
    with pytest.raises(InputError, match="key 'tune.arm' = 'nope'"):
        build_study({"arms": {"x": {}}, "tune": {"arm": "nope"}})
    assert build_study({"tune": {"lr": [1e-6, 1e-2]}}).tune.lr == [1e-6, 1e-2]


def test_old_checkpoint_configs_still_load() -> None:
    from robustseg.nn.train import TrainConfig

    old = {**TrainConfig().to_dict(), "samples_per_epoch": None, "grad_clip": None}  # written before 0.2
    cfg = TrainConfig.from_dict(old)
    assert cfg.samples_per_epoch == 0 and cfg.grad_clip == 0  # one pass per epoch, no clipping
