from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from robustseg.data.index import load_index
from robustseg.data.io import read_image, read_mask
from robustseg.data.phantom import generate_phantom, phantom_figure
from robustseg.errors import InputError


def _digest(root) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_layout_matches_real_dataset(phantom_dir):
    root = phantom_dir / "Trans-thalamic"
    images = sorted((root / "Trans-thalamic").glob("*.png"))
    masks = sorted((root / "Trans-thalamic-PASCAL" / "SegmentationClass").glob("*.png"))
    assert len(images) == 40 and [p.name for p in images] == [p.name for p in masks]
    assert (root / "Trans-Thalamic-Pixel-Size.csv").read_text().splitlines()[0] == "Label,Pixel in mm"
    meta = pd.read_csv(root / "meta.csv")
    assert list(meta.columns) == ["image_id", "abnormal", "abnormality"]
    for p in images:
        parts = p.stem.split("_")
        assert parts[0].startswith("Patient") and parts[1] == "Plane3" and parts[3] == "of"
        assert 1 <= int(parts[2]) <= int(parts[4]) <= 3
    from PIL import Image

    assert Image.open(images[0]).mode == "RGB" and Image.open(masks[0]).mode == "P"


def test_deterministic_and_seed_dependent(tmp_path):
    a = generate_phantom(tmp_path / "a", n=6, seed=5, size=(96, 66))
    b = generate_phantom(tmp_path / "b", n=6, seed=5, size=(96, 66))
    c = generate_phantom(tmp_path / "c", n=6, seed=6, size=(96, 66))
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_prevalences_and_abnormal_truth(tmp_path):
    idx = load_index("phantom", generate_phantom(tmp_path, n=240, seed=1, size=(96, 66)))
    assert 0.28 <= idx["has_csp"].mean() <= 0.47
    assert 0.24 <= idx["has_lv"].mean() <= 0.42
    assert 0.02 <= idx["abnormal"].mean() <= 0.25
    assert not idx.loc[idx["abnormality"] == "absent_csp", "has_csp"].any()
    big = idx["abnormality"] == "enlarged_lv"
    assert idx.loc[big, "has_lv"].all()
    # enlarged LV: larger relative to the brain than normal LVs
    rel = idx["px_lv"] / idx["px_brain"]
    normal_lv = (idx["abnormality"] == "none") & idx["has_lv"]
    assert rel[big].median() > 1.5 * rel[normal_lv].median()
    # each patient's images share the abnormality label; 1-3 images per patient
    per = idx.groupby("patient_id").agg(n=("image_id", "size"), k=("abnormality", "nunique"))
    assert per["k"].eq(1).all() and per["n"].between(1, 3).all()


def test_structures_are_dark_and_pixel_size_consistent(phantom_index):
    rows = phantom_index[phantom_index["has_csp"] | phantom_index["has_lv"]].head(6)
    for _, r in rows.iterrows():
        img, lab = read_image(r["image_path"]), read_mask(r["mask_path"])
        brain = img[lab == 1].mean()
        for c in (2, 3):
            if (lab == c).any():
                assert img[lab == c].mean() < 0.6 * brain
        assert (lab[img == 0] == 0).mean() > 0.95  # outside the sector is background
    px = phantom_index["pixel_mm"]
    assert px.notna().all() and (px > 0).all()
    # biparietal diameter implied by brain width x pixel size stays in the sampled 45-90 mm range (+ skull)
    bpd = 2 * np.sqrt(phantom_index["px_brain"] * 0.81 / np.pi) * px  # b = 0.81 a on average
    assert bpd.between(38, 100).all()


def test_bad_parameters(tmp_path):
    with pytest.raises(InputError, match="n=0"):
        generate_phantom(tmp_path, n=0)
    with pytest.raises(InputError, match="size"):
        generate_phantom(tmp_path, n=2, size=(10, 10))


def test_figure(phantom_dir, tmp_path):
    out = phantom_figure(phantom_dir, tmp_path / "fig.png", n=2)
    assert out.stat().st_size > 10_000
