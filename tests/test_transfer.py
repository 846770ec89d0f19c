"""The transfer study: the quickstart recipe on phantom variants, and its benchmark table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from robustseg.config import build_study, load_study
from robustseg.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("transfer_bench", ROOT / "benchmarks" / "transfer.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_transfer_study_runs_the_quickstart_recipe_on_a_style():
    quick = load_study(ROOT / "studies" / "quickstart.toml")
    transfer = load_study(ROOT / "studies" / "transfer.toml")
    assert transfer.raw["data"]["phantom_style"] != "default"
    for table in ("model", "loss", "sampler", "train"):
        assert transfer.raw[table] == quick.raw[table], table
    assert transfer.raw["data"]["size"] == quick.raw["data"]["size"]
    assert transfer.folds == quick.folds and transfer.seeds == quick.seeds


def test_phantom_style_key_generates_that_style(tmp_path):
    from robustseg.data.index import load_index
    from robustseg.pipeline.study import _phantom_path

    study = build_study({"data": {"phantom_style": "small-thin", "phantom_n": 10}})
    path = _phantom_path(study, tmp_path)
    assert path.name == "phantom-small-thin-n10-s0"
    idx = load_index("phantom", path)
    assert len(idx) == 10 and (idx["width"] == 300).all()
    default = _phantom_path(build_study({"data": {"phantom_n": 10}}), tmp_path)
    assert default.name == "phantom-n10-s0"  # the default phantom keeps its folder name
    with pytest.raises(InputError, match="phantom_style"):
        _phantom_path(build_study({"data": {"phantom_style": "nope", "phantom_n": 10}}), tmp_path)


def test_summary_counts_runs_reaching_the_threshold():
    runs = pd.DataFrame({
        "style": ["a", "a", "a", "b"], "csp": [0.6, 0.4, 0.9, 0.0], "lv": [0.7, 0.9, 0.5, 0.8],
        "seconds": [1.0, 2.0, 3.0, 4.0],
    })
    out = _bench().summarise(runs).set_index("style")
    assert out.loc["a", "runs"] == 3 and out.loc["a", "reach"] == 2 and out.loc["b", "reach"] == 0
    assert out.loc["a", "csp_min"] == pytest.approx(0.4) and out.loc["b", "lv_mean"] == pytest.approx(0.8)


def test_log_rows_always_land_in_a_table(tmp_path):
    runs = pd.DataFrame({"style": ["a"], "fold": [0], "seed": [1], "csp": [0.5], "lv": [0.6], "brain": [0.9],
                         "best_epoch": [3], "epochs": [4], "s_per_epoch": [1.0], "seconds": [4.0]})
    log = tmp_path / "log.md"
    bench = _bench()
    bench._append_log(log, "first", runs)
    bench._append_log(log, "second", runs)  # continues the table
    assert log.read_text().count("| when |") == 1
    log.write_text(log.read_text() + "\n## Notes\n\nprose\n")
    bench._append_log(log, "third", runs)  # after prose: a new table header
    lines = log.read_text().splitlines()
    assert log.read_text().count("| when |") == 2 and lines[-3].startswith("| when |") and "third" in lines[-1]
