"""Seeds of the perturbations: every call seeds its own generator from ``(seed, name)`` and the image id,
never from global state. Severity is not part of the stream (common random numbers across severities)."""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
CLEAN: tuple[str, int] = ("none", 0)
"""The unperturbed condition as it appears in result tables (``perturbation='none'``, ``severity=0``)."""

Perturb = Callable[[np.ndarray, int], np.ndarray]


# --------------------------------------------------------------------------------------------- seeds
def _seed_words(value: int) -> list[int]:
    value = int(value)
    sign = 1 if value < 0 else 0
    value = abs(value)
    return [sign, value & 0xFFFFFFFF, (value >> 32) & 0xFFFFFFFF]


def derive_seed(seed: int, name: str) -> int:
    """A 32-bit seed for perturbation ``name`` from the user ``seed`` (stable across runs and platforms)."""
    ss = np.random.SeedSequence([zlib.crc32(name.encode("utf-8")), *_seed_words(seed)])
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def image_seed(seed: int, image_id: object) -> int:
    """A per-image seed from the run seed and the image id (crc32), independent of batch position."""
    return derive_seed(seed, str(image_id))


