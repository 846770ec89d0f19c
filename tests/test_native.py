"""Native-resolution evaluation: letterbox geometry, un-padding, and a run scored like evaluate-folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _tiny import tiny_study

from robustseg.data.transforms import letterbox_box, preprocess, unpad_resize
from robustseg.pipeline.native import (
    NativeSet,
    evaluate_probs,
    native_argmax,
    native_labels,
    pack_masks,
    read_native,
    shape_groups,
    unpack_masks,
)

EV = {"min_component_px": 5, "empty_policy": "nan", "boundary": True, "nsd_tolerance_mm": 1.0}


@pytest.mark.parametrize("h,w,size", [(661, 959, 96), (220, 320, 32), (230, 300, 96), (300, 230, 96),
                                      (661, 959, 256), (97, 50, 32), (10, 10, 32), (33, 31, 32), (5, 200, 16)])
def test_letterbox_box_matches_preprocess(h: int, w: int, size: int) -> None:
    out, _ = preprocess(np.full((h, w), 255, np.uint8), None, size)
    ys, xs = np.nonzero(out)
    top, left, rows, cols = letterbox_box(h, w, size)
    assert (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) == (top, top + rows, left, left + cols)


def _ellipses(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    lab = np.zeros((h, w), np.uint8)
    lab[((yy - h / 2) / (0.4 * h)) ** 2 + ((xx - w / 2) / (0.4 * w)) ** 2 < 1] = 1
    lab[((yy - 0.45 * h) / (0.08 * h)) ** 2 + ((xx - 0.4 * w) / (0.05 * w)) ** 2 < 1] = 2
    lab[((yy - 0.6 * h) / (0.05 * h)) ** 2 + ((xx - 0.6 * w) / (0.12 * w)) ** 2 < 1] = 3
    return lab


def _one_hot(lab: np.ndarray, c: int = 4) -> np.ndarray:
    return (np.arange(c)[:, None, None] == lab[None]).astype(np.float32)


def test_unpad_resize_restores_the_image_frame() -> None:
    lab = _ellipses(220, 320)
    _, small = preprocess(np.zeros_like(lab), lab, 64)
    back = unpad_resize(_one_hot(small), 220, 320)
    assert back.shape == (4, 220, 320) and back.dtype == np.float32
    np.testing.assert_allclose(back.sum(axis=0), 1.0, atol=1e-5)  # bilinear keeps probabilities summing to 1
    pred = back.argmax(axis=0)
    for k in (1, 2, 3):  # the structures come back where they were (padding removed, not stretched)
        inter = np.sum((pred == k) & (lab == k))
        assert 2 * inter / (np.sum(pred == k) + np.sum(lab == k)) > 0.85
    with pytest.raises(Exception, match="expected"):
        unpad_resize(np.zeros((4, 10, 12)), 5, 5)


def test_shape_groups_and_packing_round_trip() -> None:
    assert list(shape_groups([(2, 3)] * 5, chunk=2)) == [[0, 1], [2, 3], [4]]
    ns = NativeSet(["a", "b"], [np.ones((3, 4), np.uint8), np.full((5, 2), 2, np.uint8)], np.array([0.1, np.nan]))
    packed, hw = pack_masks(ns)
    assert packed.shape == (2, 5, 4) and hw.tolist() == [[3, 4], [5, 2]]
    back = unpack_masks(["a", "b"], packed, hw, ns.pixel_mm)
    assert all(np.array_equal(x, y) for x, y in zip(back.masks, ns.masks, strict=True))


def test_native_scores_use_native_masks_and_pixel_size() -> None:
    """Perfect model-size probabilities: Dice 1 at model size; at native size the blur of a 32 px input costs
    boundary pixels, and distances come out in native mm."""
    labs = [_ellipses(220, 320), _ellipses(230, 300)]
    small = np.stack([_one_hot(preprocess(np.zeros_like(lab), lab, 32)[1]) for lab in labs])
    native = NativeSet(["a", "b"], labs, np.array([0.2, 0.3]))
    tables, feats = evaluate_probs(small, native, EV, postprocess=(False, True), features=True)
    raw = tables[False]
    assert raw["image_id"].tolist() == ["a"] * 4 + ["b"] * 4  # image order kept across shape groups
    assert raw["pixel_mm"].tolist() == [0.2] * 4 + [0.3] * 4
    assert (raw["tp"] + raw["fn"]).tolist() == [int(np.sum(lab == k)) for lab in labs for k in range(4)]
    fg = raw[raw["class"] != "background"]
    assert (fg["dice"] > 0.6).all() and (fg["dice"] < 1.0).any()
    assert set(feats["source"]) == {"pred", "ref"} and len(feats[feats["source"] == "ref"]) > 0
    model = NativeSet(["a", "b"], [s.argmax(axis=0).astype(np.uint8) for s in small], np.array([2.0, 2.0]))
    model_t = evaluate_probs(small, model, EV)[0][False]  # reference of the probabilities' size: no resize
    assert np.allclose(model_t.loc[model_t["class"] != "background", "dice"], 1.0)
    assert native_argmax(small[:1], (220, 320)).shape == (1, 220, 320)


@pytest.mark.parametrize("seed", range(4))
def test_native_labels_equal_the_full_resize_argmax(seed: int) -> None:
    """Labelling only the window that can hold foreground gives the labels of resizing everything, ties included
    (probabilities on a coarse grid of levels tie often; background wins its ties)."""
    from _reference_eval import plain_labels

    rng = np.random.default_rng(seed)
    for h, w, size, c in [(661, 959, 96, 4), (220, 320, 32, 4), (97, 50, 32, 3), (33, 31, 32, 5), (40, 40, 16, 2)]:
        probs = np.zeros((c, size, size), np.float32)
        probs[0] = 0.5
        top, left, rows, cols = letterbox_box(h, w, size)
        for _ in range(3):  # a few foreground blobs, anywhere (image corners and edges included)
            y, x = rng.integers(top, top + rows), rng.integers(left, left + cols)
            r = int(rng.integers(0, 4))
            probs[1 + rng.integers(c - 1), max(y - r, 0):y + r + 1, max(x - r, 0):x + r + 1] = rng.choice([0.5, 0.75])
        probs[1:] += rng.choice([0.0, 0.25, 0.5], size=probs[1:].shape, p=[0.9, 0.05, 0.05]).astype(np.float32)
        labels, box = native_labels(probs, (h, w))
        want = plain_labels(probs, (h, w))
        assert np.array_equal(labels, want)
        if box is not None:  # nothing but background outside the window
            outside = np.ones((h, w), bool)
            outside[box[0]:box[1], box[2]:box[3]] = False
            assert not want[outside].any()
        else:
            assert not want.any()
    nan = np.full((4, 16, 16), 0.25, np.float32)
    nan[2, 3, 4] = np.nan  # NaN (a diverged model): numpy's argmax picks it, as the plain path does
    assert np.array_equal(native_labels(nan, (30, 30))[0], plain_labels(nan, (30, 30)))


def _noisy_probs(masks: list[np.ndarray], size: int, rng: np.random.Generator, c: int = 4) -> np.ndarray:
    """Letterboxed probabilities near the reference: one-hot, blurred, noised, some pixels tied exactly."""
    from scipy import ndimage

    out = []
    for lab in masks:
        _, small = preprocess(np.zeros_like(lab), lab, size)
        p = ndimage.gaussian_filter(_one_hot(small, c), sigma=(0, 1.0, 1.0)) + rng.random((c, size, size)) * 0.3
        p[1, rng.random((size, size)) < 0.02] = 0.0
        tie = rng.random((size, size)) < 0.05
        p[2, tie] = p[0, tie]
        out.append(p / p.sum(axis=0, keepdims=True))
    return np.stack(out).astype(np.float32)


def test_fast_scoring_equals_the_plain_path_bit_for_bit(phantom_index: pd.DataFrame) -> None:
    """The per-image tables of the fast path (windowed argmax, outlines, reference prepared once and reused over
    conditions) equal those of resizing and scoring every image in full, bit for bit, raw and post-processed."""
    from _reference_eval import plain_tables

    native = read_native(phantom_index.iloc[:16])
    prepared = native.prepared(4)
    rng = np.random.default_rng(0)
    for ev in (EV, {**EV, "empty_policy": "one"}):
        for condition in range(3):
            probs = _noisy_probs(native.masks, 32 if condition else 64, rng)
            got = evaluate_probs(probs, prepared if condition else native, ev, postprocess=(False, True))[0]
            want = plain_tables(probs, native, ev, ("background", "brain", "csp", "lv"), (2, 3), (False, True))
            for post in (False, True):
                pd.testing.assert_frame_equal(got[post], want[post], check_exact=True)
                assert got[post]["hd95_mm"].notna().sum() > 20  # boundaries were really compared


# --- a run, then evaluate-folder on its exported predictions ---------------------------------------------------

TINY = tiny_study("native", seeds="[0]", phantom_n=24, max_epochs=3, boundary=True, bootstrap=20)


@pytest.fixture(scope="module")
def native_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny run whose predictor never outputs CSP (so the run must be flagged collapsed on CSP) and calls
    bright pixels brain (a 3-epoch model predicts next to nothing; the comparison needs real boundaries)."""
    import robustseg.nn.predict as predict_mod
    from robustseg.config import build_study
    from robustseg.pipeline.study import run_study

    tmp = tmp_path_factory.mktemp("native")
    real = predict_mod.predict_proba

    def no_csp(model, images, **kw):
        probs = 0.1 * real(model, images, **kw)
        bright = (np.asarray(images)[:, None] > 40).astype(np.float32)
        probs[:, :2] += 0.9 * np.concatenate([1.0 - bright, bright], axis=1)
        probs[:, 2] = 0.0
        return probs / probs.sum(axis=1, keepdims=True)

    mp = pytest.MonkeyPatch()
    mp.setattr(predict_mod, "predict_proba", no_csp)
    try:
        import tomllib

        study = build_study(tomllib.loads(TINY), overrides=[f"execution.runs_dir={json.dumps(str(tmp / 'runs'))}",
                                                             f"execution.reports_dir={json.dumps(str(tmp / 'rep'))}"])
        outcome = run_study(study, report=True)
    finally:
        mp.undo()
    assert not outcome.failures, outcome.failures
    return outcome.runs_dir


def _run_dir(runs_dir: Path) -> Path:
    plan = json.loads((runs_dir / "plan.json").read_text())
    return runs_dir / plan[0]["run_id"]


@pytest.mark.slow
def test_run_scores_equal_evaluate_folder_on_exported_predictions(native_run: Path, tmp_path: Path) -> None:
    from robustseg.metrics.folder import evaluate_folder

    run = _run_dir(native_run)
    table = pd.read_csv(run / "per_image.csv.gz")
    assert set(table["resolution"]) == {"native"}
    clean = table[(table["testset"] == "test") & (table["perturbation"] == "none") & ~table["postprocessed"]]
    index = pd.read_csv(native_run / "index.csv").set_index("image_id")
    ids = sorted(clean["image_id"].unique())
    preds = sorted(p.stem for p in (run / "predictions").glob("*.png"))
    assert preds == ids
    gt = tmp_path / "gt"
    gt.mkdir()
    for i in ids:
        shutil.copy(index.loc[i, "mask_path"], gt / f"{i}.png")
    assert (index.loc[ids, "width"] == 959).all()  # scored at the phantom's own 959 x 661, not at 32 px
    csv = next(Path(index["image_path"].iloc[0]).parents[1].glob("*Pixel-Size.csv"))
    folder, _ = evaluate_folder(run / "predictions", gt, pixel_size_csv=csv)
    merged = clean.merge(folder, on=["image_id", "class"], suffixes=("_run", "_folder"), validate="1:1")
    assert len(merged) == len(ids) * 4
    for col in ("tp", "fp", "fn", "dice", "iou", "hd95_mm", "nsd", "pixel_mm"):
        np.testing.assert_allclose(merged[f"{col}_run"].astype(float), merged[f"{col}_folder"].astype(float),
                                   rtol=1e-9, equal_nan=True, err_msg=col)
    brain = merged[merged["class"] == "brain"]
    assert brain["hd95_mm_run"].notna().all() and (brain["tp_run"] > 0).all()  # not a vacuous comparison


@pytest.mark.slow
def test_collapse_flag_reaches_status_runs_table_cli_and_report(native_run: Path) -> None:
    from rich.console import Console

    from robustseg.cli.progress import ProgressRenderer
    from robustseg.pipeline.artifacts import RunResult, RunStatus
    from robustseg.pipeline.events import RunFinished, RunStarted

    done = json.loads((_run_dir(native_run) / "complete.json").read_text())
    assert "csp" in done["collapsed"] and "background" not in done["collapsed"]
    runs = pd.read_csv(native_run / "tables" / "runs.csv")
    assert "csp" in runs["collapsed"].iloc[0].split(";")
    console = Console(record=True, width=200)
    with ProgressRenderer(console, plain=True) as progress:
        progress(RunStarted(total=1, done=0))
        progress(RunFinished(RunResult(done["run_id"], RunStatus.COMPLETE, summary=done)))
    assert "collapsed: csp" in console.export_text()
    text = next((native_run.parent.parent / "rep").rglob("report.md")).read_text()
    assert "**Collapsed runs**" in text and "csp 1 of 1 runs" in text
    assert "**Resolution**: every metric" in text
    per_image = pd.read_csv(native_run / "tables" / "per_image.csv.gz")  # collapsed runs stay in the tables
    assert done["run_id"] in set(per_image["run_id"])


@pytest.mark.slow
def test_reference_and_report_are_at_native_resolution(native_run: Path) -> None:
    with np.load(native_run / "reference.npz") as z:
        assert str(z["resolution"]) == "native"
        assert z["native_masks"].shape[1:] == (661, 959) and z["masks"].shape[1:] == (32, 32)
    rf = pd.read_csv(native_run / "reference_features.csv.gz")
    feats = pd.read_csv(_run_dir(native_run) / "features.csv.gz")
    # reference features of train/val and the run's features are measured on the same (native) grid
    assert rf["area_px"].max() > 32 * 32 and set(feats["resolution"]) == {"native"}


def test_model_resolution_option_is_validated() -> None:
    from robustseg.config import build_study
    from robustseg.errors import InputError

    assert build_study({}).raw["eval"]["resolution"] == "native"
    assert build_study({}, overrides=["eval.resolution=model"]).raw["eval"]["resolution"] == "model"
    with pytest.raises(InputError, match="eval.resolution"):
        build_study({}, overrides=["eval.resolution=full"])


@pytest.mark.slow
def test_machine_record_in_status_and_report(native_run: Path) -> None:
    done = json.loads((_run_dir(native_run) / "complete.json").read_text())
    env = done["environment"]
    for key in ("cpu_model", "cpu_flags", "cpu_count", "torch", "onednn", "mkl", "cuda", "cudnn", "torch_threads",
                "torch_interop_threads", "determinism_training", "determinism_evaluation"):
        assert key in env, key
    assert env["torch_threads"] == 1  # execution.threads = 1
    assert env["determinism_training"]["deterministic_algorithms"] is True  # what train_run switches on
    assert set(env["determinism_training"]) >= {"cudnn_benchmark", "cudnn_deterministic", "float32_matmul_precision"}
    text = next((native_run.parent.parent / "rep").rglob("report.md")).read_text()
    assert "Machine record of the runs" in text and str(env["cpu_model"]) in text and "oneDNN" in text


def test_cpu_and_library_parsers() -> None:
    import doctest

    import robustseg.nn.environment as environment
    import robustseg.pipeline.native as native
    import robustseg.qc.collapse as collapse

    for mod in (environment, native, collapse):
        assert doctest.testmod(mod).failed == 0, mod.__name__
    info = environment.cpu_info("model name : X\nflags : sse avx512f amx_bf16 avx512_vnni\n")
    assert info == {"cpu_model": "X", "cpu_flags": ["amx_bf16", "avx512_vnni", "avx512f"]}
    assert environment.library_versions("nothing here") == {"onednn": None, "mkl": None}


def test_collapsed_classes_rule() -> None:
    from robustseg.qc.collapse import collapsed_classes

    def table(ref: list[int], pred: list[int]) -> pd.DataFrame:
        return pd.DataFrame({"image_id": [str(i) for i in range(len(ref))], "class": "lv",
                             "ref_pixels": ref, "pred_pixels": pred})

    assert collapsed_classes(table([5, 5, 5], [0, 0, 0])) == ["lv"]
    assert collapsed_classes(table([5, 5, 0], [0, 0, 0])) == []  # present in only 2 images
    assert collapsed_classes(table([5, 5, 5], [0, 0, 1])) == []  # predicted once (even if elsewhere)
    assert collapsed_classes(table([5, 5, 5, 5], [0, 0, 0, 0]), min_images=5) == []


@pytest.mark.slow
def test_model_resolution_run(tmp_path: Path) -> None:
    import tomllib

    from robustseg.config import build_study
    from robustseg.pipeline.study import run_study

    study = build_study(tomllib.loads(TINY), overrides=[
        "eval.resolution=model", "train.max_epochs=1", "perturb.suite=[]", "data.phantom_n=16",
        f"execution.runs_dir={json.dumps(str(tmp_path / 'runs'))}"])
    outcome = run_study(study, report=False)
    assert not outcome.failures, outcome.failures
    run = _run_dir(outcome.runs_dir)
    table = pd.read_csv(run / "per_image.csv.gz")
    assert set(table["resolution"]) == {"model"}
    assert (table["tp"] + table["fp"] + table["fn"]).max() <= 32 * 32  # counted on the 32 x 32 grid
    with np.load(outcome.runs_dir / "reference.npz") as z:
        assert "native_masks" not in z.files and str(z["resolution"]) == "model"
    from PIL import Image

    with Image.open(next((run / "predictions").glob("*.png"))) as img:
        assert img.size == (959, 661)  # exported predictions are at native size whatever the tables hold
