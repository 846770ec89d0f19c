"""Shared fixtures: one small phantom data set per test session."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from robustseg.data.index import load_index
from robustseg.data.phantom import generate_phantom

PHANTOM_N = 40
PHANTOM_SEED = 0
PHANTOM_SIZE = (320, 220)
"""(width, height): the real 959 x 661 aspect at a third of the size, to keep the tests fast."""


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A phantom of 40 images (seed 0, 320 x 220) in layout 1; the data set root folder."""
    out = tmp_path_factory.mktemp("phantom")
    return generate_phantom(out, n=PHANTOM_N, seed=PHANTOM_SEED, size=PHANTOM_SIZE)


@pytest.fixture(scope="session")
def phantom_index(phantom_dir: Path) -> pd.DataFrame:
    """``load_index('phantom', phantom_dir)``; copy before mutating."""
    return load_index("phantom", phantom_dir)


def _tiny_arrays(i: int, h: int = 12, w: int = 16):
    """A small RGB image and a label map holding brain, and CSP/LV for some ``i``."""
    import numpy as np

    rng = np.random.default_rng(i)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    lab = np.zeros((h, w), dtype=np.uint8)
    lab[2:-2, 2:-2] = 1
    if i % 2 == 0:
        lab[4:6, 4:7] = 2
    if i % 3 == 0:
        lab[7:9, 8:11] = 3
    return img, lab


@pytest.fixture
def make_layout1(tmp_path: Path):
    """Factory: write a tiny data set in layout 1 and return its root.

    ``make_layout1(names, plane=..., masks_dir=..., csv_name=..., csv_text=..., colormap=...)``; with
    ``csv_text=None`` no pixel-size CSV is written.
    """
    from PIL import Image

    from robustseg.data.io import write_mask
    from robustseg.labels import COLORMAPS

    def make(
        names=("Patient00001_Plane3_1_of_2", "Patient00001_Plane3_2_of_2", "Patient00002_Plane3_1_of_1"),
        plane: str = "Trans-thalamic",
        masks_dir: str | None = None,
        csv_name: str = "Trans-Thalamic-Pixel-Size.csv",
        csv_text: str | None = "Label,Pixel in mm\n",
        mask_format: str = "palette",
        colormap: str = "pascal",
    ) -> Path:
        import numpy as np

        root = tmp_path / "data"
        pdir = root / plane
        img_dir = pdir / plane
        mdir = pdir / (masks_dir or f"{plane}-PASCAL") / "SegmentationClass"
        img_dir.mkdir(parents=True)
        mdir.mkdir(parents=True)
        for i, name in enumerate(names):
            img, lab = _tiny_arrays(i)
            Image.fromarray(img).save(img_dir / f"{name}.png")
            if mask_format == "palette":
                write_mask(mdir / f"{name}.png", lab, colormap)
            elif mask_format == "rgb":
                inv = {v: k for k, v in COLORMAPS[colormap].items()}
                rgb = np.array([inv[v] for v in range(4)], dtype=np.uint8)[lab]
                Image.fromarray(rgb).save(mdir / f"{name}.png")
            else:
                Image.fromarray(lab).save(mdir / f"{name}.png")
        if csv_text is not None:
            text = csv_text
            if text.endswith("\n") and text.count("\n") == 1:  # header only: add one row per image
                text += "".join(f"{n}.png,0.{i + 1}\n" for i, n in enumerate(names))
            (pdir / csv_name).write_text(text)
        return root

    return make


@pytest.fixture
def one_torch_thread():
    """Run a torch test on one thread (fast and free of OpenMP spin-waits on a busy 2-core machine)."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="session")
def qc_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny study (phantom of 30 at 32 px, 2 seeds x 1 epoch on fold 0 and 1, report written):
    its ``runs/tiny-qc`` folder. Shared by the QC, data-safety and full-disk tests."""
    from robustseg.config import build_study
    from robustseg.pipeline.study import run_study

    tmp = tmp_path_factory.mktemp("qc")
    study = build_study({
        "name": "tiny-qc", "seeds": [0, 1],
        "data": {"source": "phantom", "phantom_n": 30, "size": 32},
        "split": {"k_folds": 2, "test_fraction": 0.3},
        "model": {"base": 4, "depth": 3},
        "train": {"max_epochs": 1, "batch_size": 8, "lr": 3e-3},
        "perturb": {"suite": ["gaussian_noise"], "severities": [1, 3]},
        "eval": {"boundary": False, "empty_policy": "nan"},
        "execution": {"runs_dir": str(tmp / "runs"), "reports_dir": str(tmp / "reports"), "bootstrap": 50,
                      "threads": 1},
    })
    outcome = run_study(study, report=True)
    assert not outcome.failures, outcome.failures
    return outcome.runs_dir


@pytest.fixture(autouse=True, scope="session")
def package_stays_unwritten():
    """No test (and so no command it runs) writes into the installed package: its files are the same at the end of
    the session as at the start (``__pycache__`` aside)."""
    import robustseg

    package = Path(robustseg.__file__).resolve().parent

    def files() -> set[str]:
        return {str(p.relative_to(package)) for p in package.rglob("*") if "__pycache__" not in p.parts}

    before = files()
    yield
    added = sorted(files() - before)
    assert not added, f"tests wrote into the package: {added[:5]}"
