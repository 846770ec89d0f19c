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
        "gaussian_noise", "speckle", "multiplicative_noise", "salt_pepper", "contrast", "gamma_dark", "gamma_bright",
        "brightness", "gaussian_blur", "motion_blur", "jpeg", "resolution", "acoustic_shadow", "depth_attenuation",
        "depth_attenuation_db", "tgc_error", "reverberation", "near_field_haze", "contact_loss", "speckle_reduction",
        "beam_width",
    }
    assert required <= set(NAMES)
    from robustseg.perturb.calibrated import CALIBRATED

    assert set(CALIBRATED) <= set(NAMES)
    for entry in (P.PERTURBATIONS[name] for name in CALIBRATED):  # the built-ins (plugins may have joined)
        assert len(entry.values) == len(P.SEVERITIES) and entry.values == tuple(CALIBRATED[entry.name])
        assert (entry.build is None) != (entry.function is None)
        assert entry.physics.count(". ") >= 1 and "(" in entry.physics, f"{entry.name}: physics and a reference"
        lo, hi = entry.search
        assert all(lo <= v <= hi for v in entry.values)
    assert set(P.SUITES["ultrasound"]) >= {"speckle", "acoustic_shadow", "contact_loss", "reverberation",
                                           "near_field_haze", "depth_attenuation", "tgc_error", "speckle_reduction",
                                           "beam_width"}
    assert {n for n in NAMES if P.PERTURBATIONS[n].local} == {"acoustic_shadow", "contact_loss", "reverberation",
                                                            "near_field_haze", "tgc_error"}


@pytest.mark.parametrize("name", NAMES)
def test_smoke_every_entry_and_severity(name):
    img = sector_image(160, 1)  # spatial sizes scale with the fan: at 64 px the weakest beam_width is sub-pixel
    for sev in P.SEVERITIES:
        out = P.apply(img, name, sev, seed=3)
        assert out.shape == img.shape and out.dtype == np.uint8
        assert not np.array_equal(out, img), f"{name} s{sev} left the image unchanged"
        assert P.PERTURBATIONS[name].params(sev)
    assert np.array_equal(img, sector_image(160, 1)), "input modified in place"


@pytest.fixture(scope="module")
def fans() -> list[tuple[np.ndarray, object]]:
    from _fan import CONVEX, LINEAR, fan_image

    return [(fan_image(CONVEX, 0), CONVEX), (fan_image(LINEAR, 1), LINEAR)]


@pytest.mark.parametrize("name", NAMES)
def test_damage_strictly_grows_with_severity(name, fans):
    """In-fan SSIM (in-region for local artefacts) falls and in-fan PSNR falls with every severity."""
    from robustseg.perturb.damage import measure

    curves = []
    for img, geo in fans:
        where = P.region(img, name, 7, geo)
        hurt = [measure(img, P.apply(img, name, s, 7, geo), geo.maps().fan, where) for s in P.SEVERITIES]
        curves.append([(h.ssim_region if where is not None else h.ssim_fan, h.psnr_fan) for h in hurt])
    ssim = np.mean([[c[0] for c in curve] for curve in curves], axis=0)
    db = np.mean([[c[1] for c in curve] for curve in curves], axis=0)
    assert np.isfinite(db).all()
    # a severity whose target the family cannot reach (calibrated.LIMITED, e.g. resolution's smallest step) may
    # damage these images as much as the next one
    from robustseg.perturb.calibrated import LIMITED

    slack = [0.01 if s in LIMITED.get(name, ()) else 0.0 for s in P.SEVERITIES[:-1]]
    assert all(a > b - e for a, b, e in zip(ssim, ssim[1:], slack, strict=False)), f"{name} SSIM: {np.round(ssim, 3)}"
    assert all(a > b - 100 * e for a, b, e in zip(db, db[1:], slack, strict=False)), f"{name} PSNR: {np.round(db, 2)}"
    assert ssim[0] > ssim[-1] and db[0] > db[-1]


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
    for name in ("gaussian_noise", "acoustic_shadow", "motion_blur", "speckle", "tgc_error"):
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
    assert {"acoustic_shadow", "depth_attenuation", "speckle", "reverberation"} <= set(P.SUITES["ultrasound"])
    assert P.resolve_suite("jpeg") == [("jpeg", s) for s in P.SEVERITIES]
    assert P.resolve_suite(["jpeg", ("speckle", 2), ("jpeg", 3)]) == [("jpeg", s) for s in P.SEVERITIES] + [
        ("speckle", 2)
    ]
    assert P.resolve_suite({"contrast": [5, 1], "speckle": 3}) == [("contrast", 5), ("contrast", 1), ("speckle", 3)]


def test_calibration_table_matches_independent_ssim_and_psnr(images):
    from skimage.metrics import structural_similarity

    from robustseg.perturb.calibrate import calibration_table, prepare, spread
    from robustseg.perturb.damage import inner

    prep = prepare(list(images[:2]), ["a", "b"])
    table = calibration_table(prep, ["gaussian_noise", "contrast", "acoustic_shadow"], seed=1)
    assert len(table) == 15 and (table["n_images"] == 2).all()
    row = table[(table["perturbation"] == "contrast") & (table["severity"] == 3)].iloc[0]
    outs = [P.apply(p.image, "contrast", 3, P.image_seed(1, p.image_id), p.geometry) for p in prep]
    fans = [p.fan for p in prep]
    db = np.mean([psnr(p.image[f], o[f]) for p, o, f in zip(prep, outs, fans, strict=True)])
    assert row["psnr_fan"] == pytest.approx(db, rel=1e-9)
    ssim = []
    for p, o, f in zip(prep, outs, fans, strict=True):  # skimage's SSIM map, averaged over the eroded fan
        _, full = structural_similarity(p.image, o, data_range=255, full=True)
        ssim.append(full[inner(f)].mean())
    assert row["ssim_fan"] == pytest.approx(np.mean(ssim), abs=1e-4)
    assert row["measure"] == "fan" and row["ssim"] == row["ssim_fan"]
    shadow = table[table["perturbation"] == "acoustic_shadow"]
    assert (shadow["measure"] == "region").all() and (shadow["region_fraction"] > 0).all()
    assert (shadow["ssim_region"] < shadow["ssim_fan"]).all()
    gaps = spread(table)
    assert list(gaps["severity"]) == [1, 2, 3, 4, 5] and (gaps["spread"] >= 0).all()
    md = P.calibration_markdown(table)
    assert "| contrast | 3 |" in md and "% of fan" in md


def test_fit_values_hits_the_targets(images):
    from robustseg.perturb.calibrate import fit_values, prepare

    prep = prepare(list(images[:2]), ["a", "b"])
    fit = fit_values(prep, "contrast", seed=0)
    assert fit["reachable"].all() and (np.abs(fit["ssim"] - fit["target"]) <= 0.01).all()
    assert fit["value"].is_monotonic_decreasing
    fit = fit_values(prep, "speckle", targets=(0.95, 0.9, 0.5, 0.3, 0.1), seed=0)  # beyond fully developed speckle
    assert not fit["reachable"].iloc[-1] and fit["value"].iloc[-1] == 1.0
    assert fit["ssim"].is_monotonic_decreasing and fit["value"].is_monotonic_increasing


def test_contact_sheet_and_perturb_folder(tmp_path, images):
    from robustseg.data.geometry import estimate_geometry
    from robustseg.data.transforms import preprocess

    src = tmp_path / "in"
    src.mkdir()
    for i, img in enumerate(images[:2]):
        Image.fromarray(img).save(src / f"img{i}.png")
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    table = P.perturb_folder(src, out, suite={"speckle": [1, 4], "jpeg": [4]}, severity=4, seed=3)
    assert len(table) == 4 and set(table["severity"]) == {4} and set(table["stage"]) == {"native"}
    assert (out / "jpeg" / "s4" / "img1.png").is_file()
    assert not (out / "speckle" / "s1").exists()
    written = np.asarray(Image.open(out / "speckle" / "s4" / "img0.png"))
    assert np.array_equal(written, P.apply(images[0], "speckle", 4, P.image_seed(3, "img0")))
    assert isinstance(table, pd.DataFrame) and (table["psnr_fan"] > 0).all() and (table["ssim_fan"] < 1).all()
    # what the model sees: native perturbation then the clean preprocessing, or the old model-stage order
    P.perturb_folder(src, tmp_path / "n64", suite={"tgc_error": [5]}, seed=3, size=64)
    native = np.asarray(Image.open(tmp_path / "n64" / "tgc_error" / "s5" / "img0.png"))
    want = preprocess(P.apply(images[0], "tgc_error", 5, P.image_seed(3, "img0")), None, 64)[0]
    assert np.array_equal(native, want)
    P.perturb_folder(src, tmp_path / "m64", suite={"tgc_error": [5]}, seed=3, size=64, stage="model")
    model = np.asarray(Image.open(tmp_path / "m64" / "tgc_error" / "s5" / "img0.png"))
    geo = estimate_geometry(images[0]).letterboxed(64)
    assert np.array_equal(model, P.apply(preprocess(images[0], None, 64)[0], "tgc_error", 5, P.image_seed(3, "img0"),
                                         geo))
    sheet = np.asarray(Image.open(out / "contact_sheet.png"))
    assert sheet.shape[0] > 0 and sheet.shape[1] > sheet.shape[0] * 0.5
    png = P.contact_sheet(images[0], "noise-contrast", tmp_path / "cs.png", seed=0, dpi=40)
    h, w = np.asarray(Image.open(png)).shape[:2]
    assert h > w  # seven rows, six columns
    with pytest.raises(InputError, match="no images"):
        P.perturb_folder(tmp_path / "out" / "jpeg", tmp_path / "x", suite="all")
    with pytest.raises(InputError, match="severity"):
        P.perturb_folder(src, tmp_path / "y", suite={"speckle": [1]}, severity=2)
    with pytest.raises(InputError, match="stage"):
        P.perturb_folder(src, tmp_path / "z", suite="speckle", stage="scanner")


def test_calibrate_cli_on_a_folder(tmp_path, images, capsys):
    from robustseg.cli import main

    src = tmp_path / "in"
    src.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img).save(src / f"img{i}.png")
    code = main(["perturb", "--calibrate", str(src), "--suite", "contrast", "-o", str(tmp_path / "cal"), "--fit"])
    assert code == 0
    table = pd.read_csv(tmp_path / "cal" / "calibration.csv")
    assert list(table["severity"]) == [1, 2, 3, 4, 5] and set(table["perturbation"]) == {"contrast"}
    fitted = pd.read_csv(tmp_path / "cal" / "fitted.csv")
    assert (np.abs(fitted["ssim"] - fitted["target"]) <= 0.02).all()
    assert "spread" in capsys.readouterr().out
    assert main(["perturb"]) == 2
    assert main(["perturb", "--calibrate", str(tmp_path / "missing")]) == 2
    assert main(["perturb", str(src), str(tmp_path / "o"), "--apex", "1"]) == 2


def test_acoustic_shadow_darkens_only_behind_reflector():
    img = sector_image(128, 4)
    out = P.apply(img, "acoustic_shadow", 5, seed=0)
    assert (out <= img).all()
    changed = np.argwhere(out < img)
    assert len(changed) > 100
    ring_top = int(0.55 * 128 - 0.3 * 128 * 1.07)  # far edge of the skull ring starts below this row
    assert changed[:, 0].min() > ring_top
    empty = np.zeros((32, 32), np.uint8)
    assert np.array_equal(P.apply(empty, "acoustic_shadow", 5, 0), empty)


def test_geometry_is_used_not_rederived():
    """An artefact follows the geometry it is given: a wrong one gives other pixels; a mismatched size is refused."""
    from _fan import CONVEX, OFF_CENTRE, fan_image

    img = fan_image(CONVEX, 2)
    right = P.apply(img, "depth_attenuation", 4, 0, CONVEX).astype(float)
    estimated = P.apply(img, "depth_attenuation", 4, 0).astype(float)  # geometry estimated from the image
    wrong = P.apply(img, "depth_attenuation", 4, 0, OFF_CENTRE).astype(float)
    assert np.abs(right - estimated).mean() < 0.3 < 1.0 < np.abs(right - wrong).mean()
    with pytest.raises(InputError, match="geometry"):
        P.apply(img[:100], "depth_attenuation", 4, 0, CONVEX)


def test_clean_native_preprocessing_is_the_clean_path():
    """A perturbed native image goes through exactly the preprocessing of the clean image (same function)."""
    from robustseg.data.transforms import preprocess

    img = sector_image(200, 1)
    mask = (img > 100).astype(np.uint8)
    assert np.array_equal(preprocess(img, None, 64)[0], preprocess(img, mask, 64)[0])


def test_docs_reproduce_the_parameter_table():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "perturbations.md").read_text(encoding="utf-8")
    assert P.parameter_markdown() in doc
    for name in NAMES:
        assert f"| {name} | 5 |" in doc, f"calibration row of {name} missing"
        assert f"- `{name}`:" in doc, f"physics of {name} missing"
    assert P.physics_markdown() in doc


def test_calibrate_output_is_claimed_before_any_work(tmp_path, images, capsys):
    """--calibrate -o never writes inside the data it reads nor over a user's files; a re-run replaces its own."""
    from robustseg.cli import main

    src = tmp_path / "in"
    src.mkdir()
    for i, img in enumerate(images[:2]):
        Image.fromarray(img).save(src / f"img{i}.png")
    user = tmp_path / "notes"
    user.mkdir()
    (user / "spread.csv").write_text("mine\n")
    before = {p: p.read_bytes() for p in (*src.iterdir(), user / "spread.csv")}
    for out in (src, src / "cal", user):
        assert main(["perturb", "--calibrate", str(src), "--suite", "contrast", "-o", str(out)]) == 2
        assert "-o/--out" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in before} == before and sorted(p.name for p in src.iterdir()) == ["img0.png",
                                                                                                      "img1.png"]
    for _ in range(2):  # the second run replaces the first one's files
        assert main(["perturb", "--calibrate", str(src), "--suite", "contrast", "-o", str(tmp_path / "cal")]) == 0
    assert {"calibration.csv", "spread.csv", "calibration.md"} <= {p.name for p in (tmp_path / "cal").iterdir()}
