"""Device and precision choices: CUDA when present, CPU otherwise; nothing assumes a GPU."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from robustseg.errors import InputError

DEVICE_CHOICES = ("auto", "cpu", "cuda")
AMP_CHOICES = ("auto", "off", "bf16", "fp16")


def select_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA if available else CPU; ``cuda`` without a GPU raises InputError."""
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise InputError(f"device={name!r}: expected one of {', '.join(DEVICE_CHOICES)} or cuda:N")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device={name!r}: CUDA is not available on this machine (use auto or cpu)")
    return torch.device(name)


def cpu_supports_bf16() -> bool:
    """True when oneDNN reports native bf16 kernels (AVX512-BF16 / AMX) on this CPU."""
    mkldnn = getattr(torch.backends, "mkldnn", None)
    check = getattr(mkldnn, "is_available", lambda: False)
    if not check():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclass(frozen=True)
class Precision:
    """Resolved mixed-precision setting: autocast dtype (None = off) and whether to scale gradients."""

    device_type: str
    dtype: torch.dtype | None
    use_grad_scaler: bool

    def autocast(self) -> contextlib.AbstractContextManager:
        """An autocast context for this setting (a null context when off)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)


def resolve_amp(amp: str, device: torch.device) -> Precision:
    """Choose autocast precision.

    ``auto``: CUDA -> bf16 when supported else fp16 with a GradScaler; CPU -> off (exact fp32, so runs
    stay bit-reproducible). ``bf16`` / ``fp16`` force a dtype (fp16 only on CUDA); ``off`` disables.
    """
    if amp not in AMP_CHOICES:
        raise InputError(f"amp={amp!r}: expected one of {', '.join(AMP_CHOICES)}")
    cuda = device.type == "cuda"
    if amp == "off" or (amp == "auto" and not cuda):
        return Precision(device.type, None, False)
    if amp == "auto":
        if torch.cuda.is_bf16_supported():
            return Precision("cuda", torch.bfloat16, False)
        return Precision("cuda", torch.float16, True)
    if amp == "fp16":
        if not cuda:
            raise InputError("amp='fp16': float16 autocast is only supported on CUDA here (use bf16 or off)")
        return Precision("cuda", torch.float16, True)
    return Precision(device.type, torch.bfloat16, False)


def pin_memory(device: torch.device) -> bool:
    """Pin host memory for loaders only when copying to a CUDA device."""
    return device.type == "cuda"


def use_channels_last(setting: bool | str, device: torch.device) -> bool:
    """Resolve ``channels_last`` (``True``/``False``/``"auto"``); auto: on for CUDA and for CPUs with oneDNN."""
    if isinstance(setting, bool):
        return setting
    if setting != "auto":
        raise InputError(f"channels_last={setting!r}: expected true, false or 'auto'")
    if device.type == "cuda":
        return True
    return bool(torch.backends.mkldnn.is_available())
