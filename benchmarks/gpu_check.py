"""GPU check: robustseg's CUDA path end to end, then thesis-size training speed against MONAI.

Run on a machine with an NVIDIA GPU (well under 5 minutes):

    python benchmarks/gpu_check.py [--base 64] [--size 256] [--batch 8] [--steps 20] [--compile]

On a machine without CUDA it prints a message and exits with status 0.

1. ``train_run`` on a small phantom (64 px, 2 epochs) with ``device = "cuda"`` twice, then
   ``predict_proba`` on the GPU: the path a study takes (pinned-memory loaders, non-blocking copies,
   autocast, channels-last, torch's deterministic mode). Prints whether the two checkpoints are
   bit-identical (see "CUDA determinism" below) and the largest weight difference.
2. Training steps at the reference protocol's size (base 64, 256 px, batch 8; hybrid loss, gradient
   clipping, fused Adam): ours and MONAI's AttentionUnet at the same widths, each in fp32 and with
   AMP (bf16 where supported, else fp16 with a gradient scaler) + channels-last, ``cudnn.benchmark``
   on, input batches copied from pinned host memory with ``non_blocking=True``. The variants are timed
   in turns (A B C D, ``--rounds`` times); prints images/s, the ratio to MONAI fp32 and the peak GPU
   memory of each. With ``--compile`` also ours with ``torch.compile`` and its compile seconds.

CUDA determinism: ``train_run`` switches on ``torch.use_deterministic_algorithms(True, warn_only=True)``
and turns ``cudnn.benchmark`` off for the run. cuBLAS additionally needs ``CUBLAS_WORKSPACE_CONFIG=:4096:8``
in the environment before CUDA starts (study workers get it; this script sets it). Some CUDA kernels the
model uses have no deterministic version (max-pool backward, weighted NLL loss): torch warns and the
run continues, so CUDA runs are close but not guaranteed bit-identical; step 1 reports what happened.
"""

from __future__ import annotations

import os

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before torch initialises CUDA

import argparse  # noqa: E402
import contextlib  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402


def check_robustseg_path(device: torch.device) -> None:
    """Two identical short ``train_run`` calls on CUDA, then prediction on the GPU."""
    import numpy as np

    from robustseg.data.index import load_index
    from robustseg.data.phantom import generate_phantom
    from robustseg.nn.dataset import load_arrays
    from robustseg.nn.predict import load_model, predict_proba
    from robustseg.nn.train import TrainConfig, train_run

    with tempfile.TemporaryDirectory() as tmp:
        idx = load_index("phantom", generate_phantom(Path(tmp) / "data", n=40, seed=0, size=(320, 220)))
        images, masks = load_arrays(idx, 64)
        train, val = (images[:30], masks[:30]), (images[30:], masks[30:])
        cfg = TrainConfig(model_kwargs={"base": 8, "depth": 3}, max_epochs=2, lr=3e-3, device="cuda",
                          num_workers=1, size=64)
        t0 = time.perf_counter()
        runs = [train_run(cfg, train, val, Path(tmp) / f"run{i}") for i in range(2)]
        seconds = time.perf_counter() - t0
        states = [torch.load(r.checkpoint, map_location="cpu", weights_only=True)["state_dict"] for r in runs]
        diff = max(float((states[0][k].double() - states[1][k].double()).abs().max()) for k in states[0])
        same = all(torch.equal(states[0][k], states[1][k]) for k in states[0])
        model, _ = load_model(runs[0].checkpoint, device)
        proba = predict_proba(model, images[30:], batch_size=4, device=device)
        ok = proba.shape == (10, 4, 64, 64) and bool(np.isfinite(proba).all())
    print(f"[1] train_run on {torch.cuda.get_device_name(device)}: 2 runs x 2 epochs in {seconds:.1f} s; "
          f"val Dice {runs[0].val_dice}; checkpoints bit-identical: {same} (max |diff| {diff:.2e}); "
          f"predict_proba on GPU ok: {ok}")


def _amp(bf16_ok: bool) -> tuple[torch.dtype, bool]:
    return (torch.bfloat16, False) if bf16_ok else (torch.float16, True)


def make_step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device, *,
              amp: bool, channels_last: bool, compile_model: bool) -> Callable[[], None]:
    """One training step: pinned host batch -> non-blocking copy -> forward/backward -> clip -> Adam."""
    from robustseg.nn.losses import create as create_loss

    model = model.to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    fwd = torch.compile(model, dynamic=False) if compile_model else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
    loss_fn = create_loss("hybrid", class_weights=[0.1, 1.0, 2.0, 2.0]).to(device)
    dtype, use_scaler = _amp(torch.cuda.is_bf16_supported())
    scaler = torch.amp.GradScaler("cuda", enabled=amp and use_scaler)
    params = list(model.parameters())
    x_host, y_host = (t.pin_memory() for t in batch)

    def step() -> None:
        x = x_host.to(device, non_blocking=True)
        y = y_host.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)
        ctx = torch.autocast("cuda", dtype=dtype) if amp else contextlib.nullcontext()
        with ctx:
            out = fwd(x)
        loss = loss_fn(out.float(), y)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        scaler.step(opt)
        scaler.update()

    return step


def speed(args: argparse.Namespace, device: torch.device) -> None:
    """Interleaved timing of the thesis-size training step, ours vs MONAI, fp32 vs AMP."""
    from monai.networks.nets import AttentionUnet

    from robustseg.nn.models import create

    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    widths = tuple(args.base * 2**i for i in range(5))
    batch = (torch.randn(args.batch, 1, args.size, args.size), torch.randint(0, 4, (args.batch, args.size, args.size)))

    def monai() -> nn.Module:
        return AttentionUnet(spatial_dims=2, in_channels=1, out_channels=4, channels=widths, strides=(2, 2, 2, 2))

    def ours() -> nn.Module:
        return create("attention_unet", base=args.base, depth=4)

    specs = [("monai fp32", monai, False, False, False), ("monai amp + channels-last", monai, True, True, False),
             ("ours fp32", ours, False, True, False), ("ours amp + channels-last", ours, True, True, False)]
    if args.compile:
        specs.append(("ours amp + channels-last + compile", ours, True, True, True))
    steps, peaks, compile_s = {}, {}, {}
    for name, build, amp, cl, comp in specs:
        torch.cuda.reset_peak_memory_stats(device)
        fn = make_step(build(), batch, device, amp=amp, channels_last=cl, compile_model=comp)
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize(device)
        first = time.perf_counter() - t0
        for _ in range(3):
            fn()
        torch.cuda.synchronize(device)
        if comp:
            compile_s[name] = first
        peaks[name] = torch.cuda.max_memory_allocated(device) / 2**30
        steps[name] = fn
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, fn in steps.items():
            torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                fn()
            torch.cuda.synchronize(device)
            times[name].append((time.perf_counter() - t0) / args.steps)
    dtype, _ = _amp(torch.cuda.is_bf16_supported())
    print(f"[2] training steps: base {args.base}, {args.size} px, batch {args.batch}, AMP dtype {dtype}, "
          f"cudnn.benchmark on, pinned + non-blocking copies; {args.rounds} rounds x {args.steps} steps")
    base = times["monai fp32"]
    print(f"{'variant':38s} {'img/s':>8s} {'x monai fp32':>12s} {'peak GiB':>9s}")
    for name, t in times.items():
        ratio = statistics.median(b / s for b, s in zip(base, t, strict=True))
        print(f"{name:38s} {args.batch / statistics.median(t):8.1f} {ratio:12.2f} {peaks[name]:9.2f}")
    for name, first in compile_s.items():
        eager = statistics.median(times["ours amp + channels-last"])
        comp = statistics.median(times[name])
        line = f"compile: first step {first:.1f} s"
        if eager > comp:
            line += f"; break-even after {first / (eager - comp):.0f} steps ({eager:.4f} -> {comp:.4f} s/step)"
        print(line)
    per_epoch = -(-700 // args.batch)
    best = min(times, key=lambda k: statistics.median(times[k]) if k.startswith("ours") else float("inf"))
    print(f"one thesis epoch (~700 images, {per_epoch} steps) with '{best}': "
          f"{statistics.median(times[best]) * per_epoch:.1f} s (estimated from the timed steps)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20, help="steps per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--skip-train-run", action="store_true", help="skip step 1 (robustseg's own path)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine (torch.cuda.is_available() is False); nothing to do.")
        return 0
    device = torch.device("cuda")
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(device)}, "
          f"bf16 {torch.cuda.is_bf16_supported()}")
    if not args.skip_train_run:
        check_robustseg_path(device)
    speed(args, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
