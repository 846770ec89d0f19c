"""The reproducibility record of a run: CPU, instruction sets, math libraries, threads, determinism settings.

Two runs of the same spec give bit-identical results only on the same kind of machine with the same thread
counts and library builds: oneDNN and MKL pick kernels by instruction set (AVX2, AVX-512, AMX), and the
order of floating-point sums follows the thread count. The record names all of these, so a result that
does not reproduce can be traced to a difference in it.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any

FLAG_PREFIXES = ("avx512", "amx", "avx2", "avx_vnni", "fma")
"""CPU flags recorded (the ones oneDNN / MKL / PyTorch dispatch on)."""

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "CUBLAS_WORKSPACE_CONFIG")


def cpu_info(cpuinfo: str | None = None) -> dict[str, Any]:
    """``cpu_model`` and ``cpu_flags`` (the :data:`FLAG_PREFIXES` ones, sorted) from ``/proc/cpuinfo`` text.

    >>> cpu_info("model name\\t: Example CPU\\nflags\\t\\t: fpu avx2 avx512f amx_tile sse\\n")
    {'cpu_model': 'Example CPU', 'cpu_flags': ['amx_tile', 'avx2', 'avx512f']}
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    model = re.search(r"^(?:model name|Model|cpu model|Hardware)\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    flags = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    found = sorted({f for f in (flags.group(1).split() if flags else []) if f.startswith(FLAG_PREFIXES)})
    return {"cpu_model": model.group(1).strip() if model else (platform.processor() or platform.machine()),
            "cpu_flags": found}


def library_versions(config: str) -> dict[str, str | None]:
    """oneDNN and MKL versions from the text of ``torch.__config__.show()`` (None when not built in).

    >>> library_versions("  - Intel(R) MKL-DNN v3.5.3 (Git Hash x)\\n  - Intel(R) oneAPI Math Kernel Library "
    ...                  "Version 2024.2-Product Build 20240605\\n")
    {'onednn': '3.5.3', 'mkl': '2024.2'}
    """
    onednn = re.search(r"(?:oneDNN|MKL-DNN)\s+v?([0-9][0-9.]*)", config)
    mkl = re.search(r"Math Kernel Library Version\s+([0-9][0-9.]*)", config)
    return {"onednn": onednn.group(1) if onednn else None, "mkl": mkl.group(1) if mkl else None}


def environment_record() -> dict[str, Any]:
    """What decides bit-for-bit reproducibility of this process, as a JSON-ready dict (see the module doc)."""
    import torch

    rec: dict[str, Any] = {"machine": platform.machine(), "os": platform.platform(), **cpu_info()}
    rec["cpu_count"] = os.cpu_count()
    try:
        rec["cpu_affinity"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        rec["cpu_affinity"] = None
    rec["torch"] = torch.__version__
    rec["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    rec["mkldnn_enabled"] = bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)
    rec["mkl_available"] = bool(torch.backends.mkl.is_available())
    rec.update(library_versions(torch.__config__.show()))
    cuda = torch.cuda.is_available()
    rec["cuda"] = torch.version.cuda
    rec["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    rec["gpu"] = torch.cuda.get_device_name(0) if cuda else None
    rec["torch_threads"] = torch.get_num_threads()
    rec["torch_interop_threads"] = torch.get_num_interop_threads()
    rec["thread_env"] = {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ}
    from robustseg.nn.train import _deterministic

    with _deterministic():  # the settings train_run trains under
        rec["determinism_training"] = determinism_settings()
    rec["determinism_evaluation"] = determinism_settings()
    return rec


def determinism_settings() -> dict[str, Any]:
    """The torch switches that decide whether kernels are deterministic, as they are now."""
    import torch

    return {"deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "fill_uninitialized_memory": bool(torch.utils.deterministic.fill_uninitialized_memory)}
