"""Process environment of study runs: glibc malloc settings and the torch.compile cache (torch-free).

glibc's malloc returns every large buffer (>= 128 KiB, most activations) to the kernel when it is freed
and maps fresh, zeroed pages for the next one: tens of thousands of page faults per training step.
Keeping freed memory in the process (no mmap for large blocks, a high trim threshold) avoids that.
``GLIBC_TUNABLES`` is read only when a process starts, so spawned workers get it in their environment
(:func:`worker_environment`); the process that runs the study itself gets the same settings through
``mallopt`` (:func:`tune_malloc_in_process`).

The torch.compile (Inductor / FX graph / AOT autograd) caches go to ``<runs_dir>/.compile-cache`` so a
later run, a resumed study or a second worker loads compiled code instead of compiling again.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

TRIM_THRESHOLD = 1 << 30
"""Bytes of free memory at the top of the heap glibc keeps before giving memory back (1 GiB)."""

MALLOC_MIN_SIZE = 0
"""Input size (px) from which the malloc settings are applied (measured with benchmarks/bench_alloc.py)."""

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameter numbers from glibc's malloc.h


def malloc_tunables() -> str:
    """The ``GLIBC_TUNABLES`` value: no mmap for large blocks, trim threshold :data:`TRIM_THRESHOLD`."""
    return f"glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold={TRIM_THRESHOLD}"


def compile_cache_env(runs_dir: str | Path) -> dict[str, str]:
    """Environment variables that keep torch.compile's caches under ``<runs_dir>/.compile-cache``."""
    root = Path(runs_dir).resolve() / ".compile-cache"
    return {
        "TORCHINDUCTOR_CACHE_DIR": str(root / "inductor"),
        "TRITON_CACHE_DIR": str(root / "triton"),
        "TORCHINDUCTOR_FX_GRAPH_CACHE": "1",
        "TORCHINDUCTOR_AUTOGRAD_CACHE": "1",
    }


def malloc_helps(size: int | None) -> bool:
    """Whether the malloc settings pay off for runs at input ``size`` px (None: unknown, apply)."""
    return size is None or size >= MALLOC_MIN_SIZE


def worker_env(
    runs_dir: str | Path, size: int | None = None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Variables to add for worker processes running at input ``size``; values set in ``base`` are kept."""
    base = os.environ if base is None else base
    env = compile_cache_env(runs_dir)
    env["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"  # deterministic cuBLAS (read when CUDA starts)
    if sys.platform.startswith("linux") and _is_glibc() and malloc_helps(size):
        env["GLIBC_TUNABLES"] = malloc_tunables()
    return {k: v for k, v in env.items() if k not in base}


@contextlib.contextmanager
def _absent_vars_set(env: Mapping[str, str]) -> Iterator[dict[str, str]]:
    """Set the variables of ``env`` that ``os.environ`` lacks while the block runs; remove them afterwards."""
    added = {k: v for k, v in env.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield added
    finally:
        for key in added:
            os.environ.pop(key, None)


@contextlib.contextmanager
def worker_environment(runs_dir: str | Path, size: int | None = None) -> Iterator[dict[str, str]]:
    """Set :func:`worker_env` in ``os.environ`` while workers are spawned; restore it afterwards."""
    with _absent_vars_set(worker_env(runs_dir, size)) as added:
        yield added


@contextlib.contextmanager
def compile_cache(runs_dir: str | Path) -> Iterator[dict[str, str]]:
    """Point this process's torch.compile caches at the runs folder (unless the user chose a place)
    while the block runs; the environment is restored afterwards. Yields the variables that were set.
    """
    with _absent_vars_set(compile_cache_env(runs_dir)) as added:
        yield added


def _is_glibc() -> bool:
    return bool(os.confstr("CS_GNU_LIBC_VERSION")) if hasattr(os, "confstr") else False


def tune_malloc_in_process() -> bool:
    """Apply the same settings to the running process with ``mallopt``; False where not glibc."""
    if not (sys.platform.startswith("linux") and _is_glibc()):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok_mmap = libc.mallopt(_M_MMAP_MAX, 0)
        ok_trim = libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(min(TRIM_THRESHOLD, 2**31 - 1)))
    except (OSError, AttributeError):
        return False
    return bool(ok_mmap and ok_trim)
