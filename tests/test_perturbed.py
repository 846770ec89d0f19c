"""Perturbed test sets as a run builds them: at native resolution (default) then the clean preprocessing, or at
model resolution; the damage table; geometry settings; run ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustseg import perturb as P
from robustseg.config import build_study
from robustseg.data.geometry import estimate_geometry
from robustseg.data.io import read_image
from robustseg.data.transforms import preprocess
from robustseg.errors import InputError
from robustseg.pipeline.inputs import load_data
from robustseg.pipeline.perturbed import perturbed_test_set
from robustseg.pipeline.plan import DataSpec, plan_runs

PAIRS = [["speckle", 3], ["acoustic_shadow", 5], ["gaussian_noise", 1]]


def _settings(stage: str = "native", **geometry: object) -> dict:
    return {"pairs": PAIRS, "seed": 4, "stage": stage,
            "geometry": {"mode": "auto", "apex": None, "opening_deg": None, "column": "probe_geometry", **geometry}}


@pytest.fixture(scope="module")
def spec(phantom_dir: Path) -> DataSpec:
    return DataSpec("fetal_head", str(phantom_dir), "Trans-thalamic", "pascal", 48)


def test_native_stage_perturbs_the_native_image_then_preprocesses_it_like_the_clean_one(spec):
    data = load_data(spec)
    idx = np.array([3, 0, 7])
    out = perturbed_test_set(spec, idx, _settings())
    assert out.pairs == [tuple(p) for p in PAIRS] and out.images.shape == (3, 3, 48, 48)
    for i, row in enumerate(idx):
        path = data.index["image_path"].iloc[row]
        native = read_image(path)
        assert np.array_equal(preprocess(native, None, 48)[0], data.images[row])  # the clean path
        image_id = data.index["image_id"].iloc[row]
        geo = estimate_geometry(native)
        for k, (name, sev) in enumerate(PAIRS):
            want = preprocess(P.apply(native, name, sev, P.image_seed(4, image_id), geo), None, 48)[0]
            assert np.array_equal(out.images[k, i], want), (name, image_id)
    d = out.damage
    assert len(d) == 9 and set(d["stage"]) == {"native"} and set(d["geometry"]) == {"sector"}
    assert d.loc[d["perturbation"] == "acoustic_shadow", "ssim_region"].notna().all()
    assert d.loc[d["perturbation"] == "speckle", "ssim_region"].isna().all()
    assert ((d["ssim_fan"] > 0) & (d["ssim_fan"] < 1)).all()
    assert set(out.cpu_seconds) == {"speckle/3", "acoustic_shadow/5", "gaussian_noise/1", "geometry"}
    # the same image gives the same pixels whatever the other images of the set (batch independence)
    alone = perturbed_test_set(spec, np.array([0]), _settings())
    assert np.array_equal(alone.images[:, 0], out.images[:, 1])


def test_model_stage_keeps_the_earlier_behaviour(spec):
    data = load_data(spec)
    out = perturbed_test_set(spec, np.array([2]), _settings("model"))
    native = read_image(data.index["image_path"].iloc[2])
    geo = estimate_geometry(native).letterboxed(48)
    image_id = data.index["image_id"].iloc[2]
    for k, (name, sev) in enumerate(PAIRS):
        assert np.array_equal(out.images[k, 0], P.apply(data.images[2], name, sev, P.image_seed(4, image_id), geo))
    assert set(out.damage["stage"]) == {"model"}


def test_geometry_settings_reach_the_artefacts(spec):
    forced = perturbed_test_set(spec, np.array([1]), _settings(mode="linear"))
    auto = perturbed_test_set(spec, np.array([1]), _settings())
    assert set(forced.geometry["kind"]) == {"linear"} and set(auto.geometry["kind"]) == {"sector"}
    assert not np.array_equal(forced.images[1], auto.images[1])  # the shadow runs down columns instead of beams


def test_run_ids_change_with_stage_and_geometry():
    splits = pd.DataFrame({"image_id": ["a", "b", "c"], "patient_id": ["p", "q", "r"], "fold": [-1, 0, 1]})
    data = DataSpec("folder", "/x", "Trans-thalamic", "pascal", 32)
    suite = [("speckle", 1)]
    ids = {plan_runs(build_study({"seeds": [0], "perturb": pt}), data, splits, suite)[0].run_id for pt in (
        {}, {"stage": "model"}, {"geometry": "linear"}, {"apex": [-50, 100]}, {"opening_deg": 70})}
    assert len(ids) == 5


def test_a_geometry_setting_that_does_not_fit_fails_before_training(tmp_path: Path):
    from robustseg.data.phantom import generate_phantom
    from robustseg.pipeline.study import prepare

    data = generate_phantom(tmp_path / "data", n=8, seed=1, size=(120, 90))
    for path in (data / "Trans-thalamic" / "Trans-thalamic").glob("*.png"):  # a full frame: no fan edges
        img = read_image(path)
        img[img == 0] = 40
        import cv2

        cv2.imwrite(str(path), img)
    study = build_study({"data": {"source": "fetal_head", "path": str(data), "size": 32},
                         "split": {"test_fraction": 0.3, "k_folds": 2}, "perturb": {"geometry": "sector"},
                         "execution": {"runs_dir": str(tmp_path / "runs"), "reports_dir": str(tmp_path / "rep")}})
    with pytest.raises(InputError, match="perturb.geometry: .*no converging fan edges"):
        prepare(study)
