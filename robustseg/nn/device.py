"""Device, precision and compilation choices: CUDA when present, CPU otherwise; nothing assumes a GPU."""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from robustseg.errors import InputError

DEVICE_CHOICES = ("auto", "cpu", "cuda")
AMP_CHOICES = ("auto", "off", "fp32", "bf16", "fp16")
"""``off`` and ``fp32`` are the same setting: no autocast, exact float32."""
COMPILE_CHOICES = ("auto", "off", "on")


def select_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA if available else CPU; ``cuda`` without a GPU raises InputError."""
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise InputError(f"device={name!r}: expected one of {', '.join(DEVICE_CHOICES)} or cuda:N")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device={name!r}: CUDA is not available on this machine (use auto or cpu)")
    return torch.device(name)


@functools.lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 arithmetic that oneDNN uses (x86: AVX512-BF16 or AMX-BF16).

    oneDNN's own check (``torch.ops.mkldnn._is_mkldnn_bf16_supported``) also says yes on plain AVX-512,
    where bf16 is emulated and slower than fp32, so on x86 the CPU flags decide. Elsewhere (e.g. Arm
    with BF16 extensions) oneDNN's check is used as is.
    """
    if not _onednn_bf16():
        return False
    caps = _cpu_capabilities()
    if caps.get("architecture", "x86_64") in ("x86_64", "x86", "i686", "AMD64"):
        return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
    return True


def _onednn_bf16() -> bool:
    """oneDNN's own answer: bf16 kernels available (natively or emulated on AVX-512)."""
    mkldnn = getattr(torch.backends, "mkldnn", None)
    if not getattr(mkldnn, "is_available", lambda: False)():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _cpu_capabilities() -> Mapping[str, object]:
    """``torch.cpu.get_capabilities()`` where available, else the flags of /proc/cpuinfo (Linux)."""
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        with contextlib.suppress(Exception):
            return dict(get())
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:
        return {}
    return {"avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags}


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


CPU_TRAIN_BF16_AUTO = False
"""Whether ``amp = "auto"`` *trains* in bf16 on CPUs with native bf16 (``auto`` *predicts* in bf16 there).

Off, measured (benchmarks/amp_check.toml: quickstart, fold 0, 6 fp32 and 5 bf16 seeds): validation
and clean test Dice of bf16-trained models were within 0.004 of fp32 (seed SD 0.003-0.02), but under
the perturbation suite CSP Dice was lower in 6 of 8 conditions and three cells fell by more than
fp32's seed SD (contrast CSP -0.03, speckle CSP -0.17, speckle LV -0.06; Welch p >= 0.23).
Robustness is what a study measures, so training keeps fp32 unless ``amp = "bf16"``. Prediction
precision, by contrast, moved Dice by <= 0.004 clean and <= 0.02 under speckle (the same
checkpoints evaluated both ways).
"""


def resolve_amp(amp: str, device: torch.device, *, inference: bool = False) -> Precision:
    """Choose autocast precision for training (or, with ``inference=True``, for prediction).

    ``auto``: CUDA -> bf16 when supported else fp16 with a GradScaler. CPU -> bf16 when the CPU has
    native bf16 (:func:`cpu_supports_bf16`) for inference, and for training where
    :data:`CPU_TRAIN_BF16_AUTO` says so; fp32 otherwise. bf16 autocast on CPU is deterministic: runs
    stay bit-reproducible on the same machine. ``bf16`` / ``fp16`` force a dtype (fp16 only on CUDA);
    ``off`` (alias ``fp32``) disables autocast.
    """
    if amp not in AMP_CHOICES:
        raise InputError(f"amp={amp!r}: expected one of {', '.join(AMP_CHOICES)}")
    cuda = device.type == "cuda"
    if amp in ("off", "fp32"):
        return Precision(device.type, None, False)
    if amp == "auto" and not cuda:
        if cpu_supports_bf16() and (inference or CPU_TRAIN_BF16_AUTO):
            return Precision("cpu", torch.bfloat16, False)
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


def forward_flops(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Forward FLOPs (2 x multiply-adds) of the model's convolutions and linear layers on input ``x``.

    Counted with forward hooks during one ``no_grad`` pass; other layers (norms, activations) are left
    out, they are a few percent of a U-Net's arithmetic.
    """
    total = 0

    def hook(mod: torch.nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, torch.nn.ConvTranspose2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.out_channels // mod.groups
            total += 2 * inp[0].numel() * k
        elif isinstance(mod, torch.nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            total += 2 * out.numel() * k
        elif isinstance(mod, torch.nn.Linear):
            total += 2 * out.numel() * mod.in_features

    kinds = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return float(total)


COMPILE_BREAK_EVEN_TFLOP: dict[str, float] = {"cpu": math.inf}
"""Training work (TFLOP, 3 x forward FLOPs x images x epochs) above which ``compile = "auto"`` compiles.

CPU: never (``inf``). Measured with ``benchmarks/bench_models.py --compile`` (base 16, 128 px, batch 8,
one thread, AVX-512 + AVX512-BF16 CPU, torch 2.14): Inductor made our training step slower, 31 vs 42
img/s in bf16 (0.75x), so no run length wins the compile time back; MONAI's AttentionUnet did gain
(1.51x -> 1.86x of its fp32 rate). Devices not listed (CUDA: not measured yet, run
``benchmarks/gpu_check.py --compile``) never compile under ``auto``; ``compile = "on"`` always does.
"""


def resolve_compile(setting: str, device: torch.device, train_tflop: float | None = None) -> bool:
    """``on`` / ``off``; ``auto``: on where the run's estimated work exceeds the device's break-even."""
    if setting not in COMPILE_CHOICES:
        raise InputError(f"compile={setting!r}: expected one of {', '.join(COMPILE_CHOICES)}")
    if setting != "auto":
        return setting == "on"
    threshold = COMPILE_BREAK_EVEN_TFLOP.get(device.type)
    return threshold is not None and train_tflop is not None and train_tflop >= threshold
