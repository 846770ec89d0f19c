from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from robustseg.data.io import read_image, read_mask, resolve_colormap, write_mask
from robustseg.errors import InputError
from robustseg.labels import PASCAL_COLORMAP, RGB_COLORMAP


def _labels() -> np.ndarray:
    lab = np.zeros((10, 14), dtype=np.uint8)
    lab[1:9, 1:13] = 1
    lab[3:5, 3:6] = 2
    lab[6:8, 8:11] = 3
    return lab


def test_read_image_rgb_to_luma(tmp_path):
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    Image.fromarray(rgb).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.shape == (4, 5) and out.dtype == np.uint8
    assert int(out[0, 0]) == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)


def test_read_image_gray_passthrough(tmp_path):
    g = np.arange(20, dtype=np.uint8).reshape(4, 5)
    Image.fromarray(g).save(tmp_path / "g.png")
    assert np.array_equal(read_image(tmp_path / "g.png"), g)


@pytest.mark.parametrize("cmap", ["pascal", "rgb"])
def test_palette_roundtrip(tmp_path, cmap):
    lab = _labels()
    write_mask(tmp_path / "m.png", lab, cmap)
    assert Image.open(tmp_path / "m.png").mode == "P"
    assert np.array_equal(read_mask(tmp_path / "m.png", cmap), lab)


def test_rgb_mask_and_integer_mask(tmp_path):
    lab = _labels()
    inv = {v: k for k, v in RGB_COLORMAP.items()}
    Image.fromarray(np.array([inv[i] for i in range(4)], dtype=np.uint8)[lab]).save(tmp_path / "rgb.png")
    assert np.array_equal(read_mask(tmp_path / "rgb.png", "rgb"), lab)
    Image.fromarray(lab).save(tmp_path / "int.png")
    assert np.array_equal(read_mask(tmp_path / "int.png"), lab)


def test_explicit_dict_colormap(tmp_path):
    lab = _labels()
    cmap = {(0, 0, 0): 0, (10, 20, 30): 1, (40, 50, 60): 2, (70, 80, 90): 3}
    write_mask(tmp_path / "m.png", lab, cmap)
    assert np.array_equal(read_mask(tmp_path / "m.png", cmap), lab)


def test_colour_outside_map_names_colour_and_count(tmp_path):
    inv = {v: k for k, v in PASCAL_COLORMAP.items()}
    rgb = np.array([inv[i] for i in range(4)], dtype=np.uint8)[_labels()]
    rgb[0, :3] = (1, 2, 3)
    Image.fromarray(rgb).save(tmp_path / "bad.png")
    with pytest.raises(InputError, match=r"bad\.png.*\(1, 2, 3\) \(3 pixels\)"):
        read_mask(tmp_path / "bad.png", "pascal")
    # the same colours are wrong under the pure RGB map too
    with pytest.raises(InputError, match="not in the colour map"):
        read_mask(tmp_path / "bad.png", "rgb")


def test_integer_label_out_of_range(tmp_path):
    lab = _labels()
    lab[0, 0] = 7
    Image.fromarray(lab).save(tmp_path / "i.png")
    with pytest.raises(InputError, match=r"i\.png.*7 \(1 pixels\)"):
        read_mask(tmp_path / "i.png")


def test_truncated_and_missing_files(tmp_path):
    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8) + 7).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"t\.png: unreadable or truncated"):
        read_image(tmp_path / "t.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"junk\.png"):
        read_mask(tmp_path / "junk.png")
    with pytest.raises(InputError, match="not found"):
        read_image(tmp_path / "nope.png")


def test_resolve_colormap_errors():
    with pytest.raises(InputError, match="unknown"):
        resolve_colormap("viridis")
    with pytest.raises(InputError, match="label"):
        resolve_colormap({(1, 2, 3): 9})
    assert resolve_colormap({(1, 2, 3): 2})[(0, 0, 0)] == 0
