"""Tests of the perturbation registry, suites, determinism, calibration and the contact sheet."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from robustseg import perturb as P
from robustseg.errors import InputError


def sector_image(size: int = 96, seed: int = 0) -> np.ndarray:
    """A fan-shaped ultrasound-like image: apex at the top centre, speckled tissue, a bright skull ring."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    ay, ax = 0.03 * size, size / 2
    r = np.hypot(yy - ay, xx - ax)
    th = np.degrees(np.arctan2(xx - ax, np.maximum(yy - ay, 1e-6)))
    fan = (np.abs(th) < 40) & (r < 0.95 * size)
    tex = cv2.GaussianBlur(rng.rayleigh(1.0, (size, size)).astype(np.float32), (0, 0), 1.0)
    img = 55 * tex
    cy, cx, a, b = 0.55 * size, 0.5 * size, 0.3 * size, 0.24 * size
    e = np.hypot((yy - cy) / a, (xx - cx) / b)
    img = np.where(np.abs(e - 1) < 0.07, 200 + 30 * tex, img)
    img = np.where(e < 0.93, 80 * tex, img)
    img = np.where(np.hypot((yy - cy) / (0.06 * size), (xx - cx) / (0.03 * size)) < 1, 10, img)
    return np.clip(np.where(fan, img, 0), 0, 255).astype(np.uint8)


NAMES = P.list_perturbations()
STOCHASTIC = [n for n in NAMES if P.PERTURBATIONS[n].stochastic]
DETERMINISTIC = [n for n in NAMES if not P.PERTURBATIONS[n].stochastic]


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.stack([sector_image(128, s) for s in range(3)])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Independent PSNR (dB, peak 255)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def test_registry_lists_every_required_perturbation():
    required = {
        "gaussian_noise", "speckle", "salt_pepper", "contrast", "gamma_dark", "gamma_bright", "brightness",
        "gaussian_blur", "motion_blur", "jpeg", "resolution", "acoustic_shadow", "depth_attenuation",
    }
    assert required <= set(NAMES)
    for entry in P.PERTURBATIONS.values():
        assert len(entry.values) == len(P.SEVERITIES)
        assert (entry.build is None) != (entry.function is None)


@pytest.mark.parametrize("name", NAMES)
def test_smoke_every_entry_and_severity(name):
    img = sector_image(64, 1)
    for sev in P.SEVERITIES:
        out = P.apply(img, name, sev, seed=3)
        assert out.shape == img.shape and out.dtype == np.uint8
        assert not np.array_equal(out, img), f"{name} s{sev} left the image unchanged"
        assert P.PERTURBATIONS[name].params(sev)
    assert np.array_equal(img, sector_image(64, 1)), "input modified in place"


@pytest.mark.parametrize("name", NAMES)
def test_psnr_strictly_decreases_with_severity(name, images):
    curve = [np.mean([psnr(img, P.apply(img, name, s, 7)) for img in images]) for s in P.SEVERITIES]
    assert all(np.isfinite(curve))
    assert all(a > b for a, b in zip(curve, curve[1:], strict=False)), f"{name}: {np.round(curve, 2)}"


@pytest.mark.parametrize("name", NAMES)
def test_same_arguments_same_pixels(name):
    img = sector_image(64, 2)
    first = P.apply(img, name, 3, seed=11)
    np.random.seed(123)  # global RNG state must not matter
    random.seed(5)
    np.random.random(10)
    assert np.array_equal(first, P.apply(img, name, 3, seed=11))
    assert np.array_equal(first, P.create(name, 3)(img, 11))


@pytest.mark.parametrize("name", STOCHASTIC)
def test_different_seed_differs_for_stochastic(name):
    img = sector_image(96, 2)
    assert not np.array_equal(P.apply(img, name, 4, seed=1), P.apply(img, name, 4, seed=2))


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_seed_irrelevant_for_deterministic(name):
    img = sector_image(64, 2)
    assert np.array_equal(P.apply(img, name, 4, seed=1), P.apply(img, name, 4, seed=2))


def test_batch_and_worker_order_do_not_matter(images):
    ids = ["a", "b", "c"]
    order = [2, 0, 1]
    for name in ("gaussian_noise", "acoustic_shadow", "motion_blur"):
        base = P.perturb_batch(images, name, 3, seed=5, image_ids=ids)
        shuffled = P.perturb_batch(images[order], name, 3, seed=5, image_ids=[ids[i] for i in order])
        assert np.array_equal(base[order], shuffled)
        single = P.perturb_batch(images[1:2], name, 3, seed=5, image_ids=["b"])
        assert np.array_equal(single[0], base[1])
    # the per-image seed (not the run seed) drives each image
    assert not np.array_equal(P.perturb_batch(images[:1], "gaussian_noise", 3, 5, ["a"])[0],
                              P.apply(images[0], "gaussian_noise", 3, 5))
    jobs = [(i, name) for name in ("speckle", "salt_pepper") for i in (2, 1, 0, 1)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        outs = list(pool.map(lambda job: P.apply(images[job[0]], job[1], 2, P.image_seed(5, ids[job[0]])), jobs))
    for (i, name), out in zip(jobs, outs, strict=True):
        assert np.array_equal(out, P.perturb_batch(images[i : i + 1], name, 2, 5, [ids[i]])[0])


def test_image_seed_depends_on_id_and_seed():
    assert P.image_seed(0, "x") == P.image_seed(0, "x")
    assert len({P.image_seed(0, "x"), P.image_seed(1, "x"), P.image_seed(0, "y"), P.image_seed(-1, "x")}) == 4
    assert P.derive_seed(0, "speckle") != P.derive_seed(0, "gaussian_noise")


def test_clean_condition_is_identity():
    img = sector_image(48)
    out = P.apply(img, *P.CLEAN, seed=3)
    assert np.array_equal(out, img) and out is not img


def test_unknown_names_and_bad_severities():
    img = sector_image(32)
    with pytest.raises(InputError, match="gaussian_noise"):
        P.apply(img, "gausian_noise", 1, 0)
    with pytest.raises(InputError, match="unknown"):
        P.create("fog", 2)
    with pytest.raises(InputError, match="ultrasound"):
        P.resolve_suite("ultrasonic")
    with pytest.raises(InputError, match="speckle"):
        P.resolve_suite({"speckles": [1]})
    for bad in (0, 6, 2.5, True, "3"):
        with pytest.raises(InputError, match="severity"):
            P.apply(img, "speckle", bad, 0)
    with pytest.raises(InputError, match="1..5"):
        P.resolve_suite({"speckle": [1, 7]})
    with pytest.raises(InputError, match="uint8"):
        P.apply(img.astype(np.float32), "speckle", 1, 0)
    with pytest.raises(InputError, match="expected"):
        P.resolve_suite([])


def test_resolve_suite_forms():
    assert len(P.resolve_suite("all")) == 5 * len(NAMES)
    for name, members in P.SUITES.items():
        pairs = P.resolve_suite(name)
        assert [n for n, _ in pairs[::5]] == list(members)
        assert {s for _, s in pairs} == set(P.SEVERITIES)
    assert {"acoustic_shadow", "depth_attenuation", "speckle"} <= set(P.SUITES["ultrasound"])
    assert P.resolve_suite("jpeg") == [("jpeg", s) for s in P.SEVERITIES]
    assert P.resolve_suite(["jpeg", ("speckle", 2), ("jpeg", 3)]) == [("jpeg", s) for s in P.SEVERITIES] + [
        ("speckle", 2)
    ]
    assert P.resolve_suite({"contrast": [5, 1], "speckle": 3}) == [("contrast", 5), ("contrast", 1), ("speckle", 3)]


def test_acoustic_shadow_darkens_only_behind_reflector():
    img = sector_image(128, 4)
    out = P.apply(img, "acoustic_shadow", 5, seed=0)
    assert (out <= img).all()
    changed = np.argwhere(out < img)
    assert len(changed) > 200
    ring_top = int(0.55 * 128 - 0.3 * 128 * 1.07)  # far edge of the skull ring starts below this row
    assert changed[:, 0].min() > ring_top
    # bands radiate from the apex: every darkened column range widens with depth
    rows = np.unique(changed[:, 0])
    shallow, deep = rows[len(rows) // 4], rows[3 * len(rows) // 4]
    assert np.ptp(changed[changed[:, 0] == deep, 1]) >= np.ptp(changed[changed[:, 0] == shallow, 1])
    empty = np.zeros((32, 32), np.uint8)
    assert np.array_equal(P.apply(empty, "acoustic_shadow", 5, 0), empty)


def test_depth_attenuation_falls_with_depth():
    img = np.zeros((100, 100), np.uint8)
    img[5:95, 20:80] = 200
    out = P.apply(img, "depth_attenuation", 3, 0).astype(float)
    profile = out[5:95, 50]
    assert profile[0] >= profile[-1] and np.all(np.diff(profile) <= 0)
    rmax = np.hypot(89, 30)  # deepest content pixel from the apex (row 5, col 49.5)
    expected = 200 * P.PERTURBATIONS["depth_attenuation"].values[2] ** (89 / rmax)
    assert abs(profile[-1] - expected) <= 1.0


def test_calibration_table_matches_independent_psnr(images):
    pairs = [("gaussian_noise", 1), ("gaussian_noise", 5), ("contrast", 3)]
    table = P.calibration_table(images[:2], seed=1, pairs=pairs)
    assert list(table.columns) == ["perturbation", "severity", "params", "psnr", "psnr_sd", "ssim", "ssim_sd",
                                   "n_images"]
    assert len(table) == 3 and (table["n_images"] == 2).all()
    out = P.perturb_batch(images[:2], "contrast", 3, 1)
    expected = np.mean([psnr(a, b) for a, b in zip(images[:2], out, strict=True)])
    assert table.loc[2, "psnr"] == pytest.approx(expected, rel=1e-9)
    assert table.loc[0, "ssim"] > table.loc[1, "ssim"]
    assert "| gaussian_noise | 1 |" in P.calibration_markdown(table)


def test_contact_sheet_and_perturb_folder(tmp_path, images):
    src = tmp_path / "in"
    src.mkdir()
    for i, img in enumerate(images[:2]):
        Image.fromarray(img).save(src / f"img{i}.png")
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    table = P.perturb_folder(src, out, suite={"speckle": [1, 4], "jpeg": [4]}, severity=4, seed=3)
    assert len(table) == 4 and set(table["severity"]) == {4}
    assert (out / "jpeg" / "s4" / "img1.png").is_file()
    assert not (out / "speckle" / "s1").exists()
    written = np.asarray(Image.open(out / "speckle" / "s4" / "img0.png"))
    assert np.array_equal(written, P.apply(images[0], "speckle", 4, P.image_seed(3, "img0")))
    assert isinstance(table, pd.DataFrame) and (table["psnr"] > 0).all()
    sheet = np.asarray(Image.open(out / "contact_sheet.png"))
    assert sheet.shape[0] > 0 and sheet.shape[1] > sheet.shape[0] * 0.5
    png = P.contact_sheet(images[0], "noise-contrast", tmp_path / "cs.png", seed=0, dpi=40)
    h, w = np.asarray(Image.open(png)).shape[:2]
    assert h > w  # seven rows, six columns
    with pytest.raises(InputError, match="no images"):
        P.perturb_folder(tmp_path / "out" / "jpeg", tmp_path / "x", suite="all")
    with pytest.raises(InputError, match="severity"):
        P.perturb_folder(src, tmp_path / "y", suite={"speckle": [1]}, severity=2)


def test_docs_reproduce_the_parameter_table():
    from pathlib import Path

    doc = Path(__file__).resolve().parents[1] / "docs" / "perturbations.md"
    assert P.parameter_markdown() in doc.read_text(encoding="utf-8")
    for name in NAMES:
        assert f"| {name} | 5 |" in doc.read_text(encoding="utf-8"), f"calibration row of {name} missing"
