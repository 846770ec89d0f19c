"""Phantom styles: named variants, deterministic per seed, in the real layout, with their sizes and shapes."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from robustseg.data.index import load_index
from robustseg.data.phantom import STYLES, PhantomStyle, generate_phantom, get_style
from robustseg.errors import InputError


def _digest(root) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_registry_has_four_variants_in_the_issue_ranges():
    variants = {k: v for k, v in STYLES.items() if k != "default"}
    assert len(variants) >= 4
    assert all(isinstance(v, PhantomStyle) for v in STYLES.values())
    for name, st in STYLES.items():
        w, h = st.size
        assert 300 <= w <= 959 and 230 <= h <= 661, name
        assert 80 <= st.n <= 300, name
    sizes = {v.size for v in variants.values()}
    assert (300, 230) in sizes and (959, 661) in sizes  # both ends of the image-size range
    assert min(v.n for v in variants.values()) <= 85 and max(v.n for v in variants.values()) == 300
    assert any(v.contrast != 1.0 for v in variants.values())  # a contrast / brightness variant
    like = STYLES["csp-like-lv"]
    assert like.csp_power == like.lv_power == 2.0 and like.csp_wall == like.lv_rim
    with pytest.raises(InputError, match="valid styles"):
        get_style("nope")


def test_default_style_is_the_original_phantom(tmp_path):
    a = generate_phantom(tmp_path / "a", n=5, seed=2, size=(120, 83))
    b = generate_phantom(tmp_path / "b", n=5, seed=2, size=(120, 83), style="default")
    c = generate_phantom(tmp_path / "c", n=5, seed=2, size=(120, 83), style=STYLES["default"])
    assert _digest(a) == _digest(b) == _digest(c)


def test_styles_are_deterministic_and_differ(tmp_path):
    a = generate_phantom(tmp_path / "a", n=4, seed=1, style="small-thin")
    b = generate_phantom(tmp_path / "b", n=4, seed=1, style="small-thin")
    c = generate_phantom(tmp_path / "c", n=4, seed=1, size=(300, 230))
    assert _digest(a) == _digest(b) != _digest(c)


def test_small_thin_layout_sizes_and_thin_csp(tmp_path):
    st = STYLES["small-thin"]
    idx = load_index("phantom", generate_phantom(tmp_path, n=None, seed=0, style="small-thin"))
    assert len(idx) == st.n == 85 and idx["patient_id"].nunique() >= 30
    assert (idx["width"] == 300).all() and (idx["height"] == 230).all()
    csp = idx.loc[idx["has_csp"], "px_csp"]
    lv = idx.loc[idx["has_lv"], "px_lv"]
    assert 70 <= csp.median() <= 170  # a thin bar of ~110 px, as in the issue's data set
    assert lv.median() > csp.median()


@pytest.mark.parametrize("name", ["low-contrast", "csp-like-lv"])
def test_style_contrast_and_look_alike(tmp_path, name):
    from robustseg.data.io import read_image, read_mask

    base = load_index("phantom", generate_phantom(tmp_path / "d", n=12, seed=0, size=STYLES[name].size))
    var = load_index("phantom", generate_phantom(tmp_path / "v", n=12, seed=0, style=name))

    def stats(idx):
        out = {1: [], 2: [], 3: []}
        for _, r in idx.iterrows():
            img, lab = read_image(r["image_path"]), read_mask(r["mask_path"])
            for c in out:
                if (lab == c).any():
                    out[c].append(img[lab == c].mean())
        return {c: float(np.mean(v)) for c, v in out.items()}

    b, v = stats(base), stats(var)
    if name == "low-contrast":
        assert v[1] < 0.6 * b[1]  # dimmer
        assert v[2] / v[1] > 1.5 * b[2] / b[1]  # CSP much closer to parenchyma
    else:
        ratio = var["px_csp"][var["has_csp"]].median() / var["px_lv"][var["has_lv"]].median()
        assert 0.6 < ratio < 1.5 and abs(v[2] - v[3]) < 0.25 * v[1]
