"""Lazy stand-ins for heavy optional imports.

albumentations imports torch at import time (``from .pytorch import *`` whenever torch is installed),
which would pull torch into the pure-numpy layers (metrics, perturb, data, evaluate-folder). Modules use
``from robustseg._lazy import albumentations as A``: the real package is imported on first attribute
access, i.e. only when a transform is actually built.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Imports module ``name`` on first attribute access."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)


albumentations = LazyModule("albumentations")
