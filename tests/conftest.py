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
