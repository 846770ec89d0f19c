"""Study file schema: defaults, overrides, arms, and one-line errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from robustseg.config import build_study, load_study, parse_override
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
        ({"data": {"source": "dicom"}}, "key 'data.source' = 'dicom'; expected one of"),
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
