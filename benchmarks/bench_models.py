"""Speed benchmark: our Attention U-Net vs MONAI's AttentionUnet at the same widths.

Run: ``python benchmarks/bench_models.py [--size 128] [--batch 8] [--steps 6] [--threads N]``
(on a loaded machine ``--threads 1`` avoids OpenMP spin-waiting against other processes).

Measures, in one process: training-step images/s (forward + backward + Adam step) and inference
images/s for MONAI fp32 and for ours in fp32, channels-last, bf16 autocast (when the CPU has native
bf16) and inference with BatchNorm folded into the convolutions; the FLOP rate of one large
convolution as the machine's practical convolution peak; and the fraction of it each variant reaches.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import time
from collections.abc import Callable

import torch
from torch import nn

from robustseg.nn.device import cpu_supports_bf16
from robustseg.nn.models import count_parameters, create
from robustseg.nn.predict import fold_batchnorm


def _time(fn: Callable[[], None], steps: int, warmup: int = 2) -> float:
    """Median seconds per call of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def conv_peak_flops(dtype: torch.dtype = torch.float32) -> float:
    """Best FLOP/s of large channels-last 3x3 convolutions (forward, batch 8), over a few shapes."""
    best = 0.0
    for ch, hw in ((128, 64), (256, 32), (512, 16)):
        conv = nn.Conv2d(ch, ch, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
        x = torch.randn(8, ch, hw, hw).to(memory_format=torch.channels_last)
        flops = 2 * 8 * ch * ch * 9 * hw * hw
        ctx = torch.autocast("cpu", dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()

        def run(
            conv: nn.Module = conv, x: torch.Tensor = x, ctx: contextlib.AbstractContextManager = ctx
        ) -> None:
            with torch.inference_mode(), ctx:
                conv(x)

        best = max(best, flops / _time(run, 5))
    return best


def model_flops(model: nn.Module, x: torch.Tensor) -> float:
    """Forward FLOPs (2 x MACs) of the model's convolutions on input ``x``, counted with hooks."""
    total = 0

    def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            total += 2 * out.numel() * k
        elif isinstance(mod, nn.ConvTranspose2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.out_channels // mod.groups
            total += 2 * inp[0].numel() * k

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)
    ]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return float(total)


def train_rate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, *, channels_last: bool, bf16: bool
) -> float:
    """Training images/s: forward, cross-entropy, backward, Adam step."""
    model = copy.deepcopy(model).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with ctx:
            out = model(x)
        loss = loss_fn(out.float(), y)
        loss.backward()
        opt.step()

    return x.shape[0] / _time(step, steps)


def infer_rate(
    model: nn.Module, x: torch.Tensor, steps: int, *, channels_last: bool, bf16: bool, fold: bool
) -> float:
    """Inference images/s (eval mode, inference_mode, softmax included)."""
    model = copy.deepcopy(model).eval()
    if fold:
        model = fold_batchnorm(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def run() -> None:
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            torch.softmax(model(x).float(), dim=1)

    return x.shape[0] / _time(run, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from monai.networks.nets import AttentionUnet

    torch.manual_seed(0)
    widths = (16, 32, 64, 128, 256)
    monai = AttentionUnet(
        spatial_dims=2, in_channels=1, out_channels=4, channels=widths, strides=(2, 2, 2, 2)
    )
    ours = create("attention_unet", base=16, depth=4)
    x = torch.randn(args.batch, 1, args.size, args.size)
    y = torch.randint(0, 4, (args.batch, args.size, args.size))
    bf16 = cpu_supports_bf16()
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    print(
        f"threads={torch.get_num_threads()} cpu={torch.backends.cpu.get_cpu_capability()} "
        f"native_bf16={bf16} loadavg={' '.join(load)}"
    )
    print(f"params: monai={count_parameters(monai):,} ours={count_parameters(ours):,}")
    f_m, f_o = model_flops(monai, x[:1]), model_flops(ours, x[:1])
    print(f"forward GFLOP/image: monai={f_m / 1e9:.3f} ours={f_o / 1e9:.3f}")
    peak32 = conv_peak_flops(torch.float32)
    peak16 = conv_peak_flops(torch.bfloat16) if bf16 else float("nan")
    print(f"conv peak: fp32 {peak32 / 1e9:.1f} GFLOP/s, bf16 {peak16 / 1e9:.1f} GFLOP/s")

    rows = []
    base_t = train_rate(monai, x, y, args.steps, channels_last=False, bf16=False)
    base_i = infer_rate(monai, x, args.steps, channels_last=False, bf16=False, fold=False)
    rows.append(("monai fp32", base_t, base_i, f_m, peak32))
    variants = [
        ("ours fp32", False, False, False),
        ("ours fp32 channels_last", True, False, False),
        ("ours fp32 channels_last + BN fold (infer)", True, False, True),
    ]
    if bf16:
        variants += [
            ("ours bf16 channels_last", True, True, False),
            ("ours bf16 channels_last + BN fold (infer)", True, True, True),
        ]
    for name, cl, b16, fold in variants:
        t = float("nan") if fold else train_rate(ours, x, y, args.steps, channels_last=cl, bf16=b16)
        i = infer_rate(ours, x, args.steps, channels_last=cl, bf16=b16, fold=fold)
        rows.append((name, t, i, f_o, peak16 if b16 else peak32))
    print(
        f"\n{'variant':44s} {'train img/s':>11s} {'x monai':>8s} {'% peak':>7s} "
        f"{'infer img/s':>11s} {'x monai':>8s} {'% peak':>7s}"
    )
    for name, t, i, f, peak in rows:
        # training ~ 3x forward FLOPs (forward + two backward convolutions); fraction of the peak
        # of the variant's own precision (fp32 or bf16).
        pt, pi = 100 * t * 3 * f / peak, 100 * i * f / peak
        print(f"{name:44s} {t:11.1f} {t / base_t:8.2f} {pt:7.1f} {i:11.1f} {i / base_i:8.2f} {pi:7.1f}")
    print("\n% peak: model conv FLOP/s (training = 3x forward) over the big-conv rate of the same precision.")


if __name__ == "__main__":
    main()
