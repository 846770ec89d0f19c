"""GPU check: a tiny robustseg study end to end on CUDA, then thesis-size training speed against MONAI.

One command on any machine with an NVIDIA GPU and the package installed (``pip install -e ".[test]"`` brings
MONAI; about 3-5 minutes, most of it step 1)::

    python benchmarks/gpu_check.py            [--base 64] [--size 256] [--batch 8] [--steps 20] [--compile]

Without CUDA it prints ``gpu_check: no CUDA device ...`` and exits with status 0. ``--device cpu`` runs the same
code on the CPU at toy sizes (a self-test of the script, used by the test suite; its numbers are not a GPU
measurement).

What it does and what to expect (exit status 0 when every check passes, 1 otherwise):

1. ``[1] study``: the tiny study of ``TINY_STUDY`` (phantom of 30 images, 64 px, 2 folds x 1 seed, 3 epochs,
   one perturbation, native-resolution scoring, the report) with ``train.device = "cuda"``, run twice into
   two folders: training, prediction, evaluation and the report on the GPU path (pinned-memory loaders,
   non-blocking copies, autocast, channels-last, deterministic mode). Expected: ``2 runs complete``,
   ``report written``, the runs' ``device`` is ``cuda``, and ``tables identical: True``; on CUDA
   ``False`` is possible (see "CUDA determinism") and is reported with the largest Dice difference, which
   should stay below ~0.05 at this size.
2. ``[2] training steps`` at the reference protocol's size (base 64, 256 px, batch 8; hybrid loss, gradient
   clipping, fused Adam): ours and MONAI's AttentionUnet at the same widths, in fp32 and with AMP (bf16
   where supported, else fp16 with a gradient scaler) + channels-last, ``cudnn.benchmark`` on, batches
   copied from pinned host memory with ``non_blocking=True``; timed in turns (``--rounds``). Prints images/s,
   the ratio to MONAI fp32 and the peak GPU memory. Expected: every variant finite, ``ours amp`` faster than
   ``ours fp32``, peak memory well under the card's (a few GiB at batch 8). With ``--compile`` also ours
   compiled, its compile seconds and the break-even step count (which ``train.compile = "auto"`` waits for).

Not yet run on a GPU: no CUDA machine was available while it was written; the CPU self-test runs in the
test suite (``tests/test_perf.py``).

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
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

TINY_STUDY = """
name = "gpu-check"
seeds = [0]
[data]
source = "phantom"
phantom_n = 30
size = 64
[split]
test_fraction = 0.3
k_folds = 2
[model]
name = "attention_unet"
base = 8
depth = 3
[train]
max_epochs = 3
batch_size = 4
lr = 3e-3
num_workers = 1
[perturb]
suite = ["speckle"]
severities = [3]
[execution]
threads = 1
bootstrap = 20
"""
"""The study of step 1 (``train.device`` and the output folders are set on the command line)."""


def run_tiny_study(device: torch.device, root: Path) -> tuple[list[dict], pd.DataFrame, Path | None]:
    """Run :data:`TINY_STUDY` on ``device`` into ``root``: (the runs' complete.json summaries, per-image table, report)."""
    import json
    import tomllib

    from robustseg.config import build_study
    from robustseg.pipeline.study import run_study

    sets = [f"train.device={json.dumps(device.type)}", f"execution.runs_dir={json.dumps(str(root / 'runs'))}",
            f"execution.reports_dir={json.dumps(str(root / 'reports'))}"]
    study = build_study(tomllib.loads(TINY_STUDY), overrides=sets)
    outcome = run_study(study, report=True)
    if outcome.failures:
        raise RuntimeError(f"tiny study failed: {outcome.failures}")
    table = pd.read_csv(outcome.runs_dir / "tables" / "per_image.csv.gz")
    return [r.summary for r in outcome.results], table, outcome.report


def check_study(device: torch.device, twice: bool = True) -> bool:
    """Step 1: the tiny study on ``device`` (twice: also compare the tables); True when it completes with a report
    and its runs ran on ``device``."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        summaries, table, report = run_tiny_study(device, Path(tmp) / "a")
        written = report is not None and report.is_file()
        other = run_tiny_study(device, Path(tmp) / "b")[1] if twice else None
    seconds = time.perf_counter() - t0
    devices = sorted({str(s.get("device")) for s in summaries})
    ok = len(summaries) == 2 and written and all(d.startswith(device.type) for d in devices)
    clean = table[(table["perturbation"] == "none") & (table["class"] != "background")]
    line = (f"[1] study on {_name(device)}: {len(summaries)} runs complete, report written: {written}, "
            f"device {','.join(devices)}, {2 if twice else 1} studies in {seconds:.1f} s; "
            f"clean foreground Dice {clean['dice'].mean():.3f}")
    if other is not None:
        keys = ["run_id", "perturbation", "postprocessed", "image_id", "class"]
        a, b = table.sort_values(keys).reset_index(drop=True), other.sort_values(keys).reset_index(drop=True)
        same = len(a) == len(b) and a[["dice", "hd95_mm", "nsd"]].equals(b[["dice", "hd95_mm", "nsd"]])
        diff = float(np.nanmax(np.abs(a["dice"].to_numpy() - b["dice"].to_numpy()))) if len(a) == len(b) else math.inf
        line += f"; tables identical: {same} (largest Dice difference {diff:.2e})"
    print(line)
    return ok


def _name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (self-test)"


def _amp(bf16_ok: bool) -> tuple[torch.dtype, bool]:
    return (torch.bfloat16, False) if bf16_ok else (torch.float16, True)


def _bf16(device: torch.device) -> bool:
    return torch.cuda.is_bf16_supported() if device.type == "cuda" else True


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else math.nan


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
    dtype, use_scaler = _amp(_bf16(device))
    scaler = torch.amp.GradScaler(device.type, enabled=amp and use_scaler)
    params = list(model.parameters())
    x_host, y_host = (t.pin_memory() if device.type == "cuda" else t for t in batch)

    def step() -> None:
        x = x_host.to(device, non_blocking=True)
        y = y_host.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)
        ctx = torch.autocast(device.type, dtype=dtype) if amp else contextlib.nullcontext()
        with ctx:
            out = fwd(x)
        loss = loss_fn(out.float(), y)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        scaler.step(opt)
        scaler.update()

    return step


def speed(args: argparse.Namespace, device: torch.device) -> bool:
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
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        fn = make_step(build(), batch, device, amp=amp, channels_last=cl, compile_model=comp)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        first = time.perf_counter() - t0
        for _ in range(3):
            fn()
        _sync(device)
        if comp:
            compile_s[name] = first
        peaks[name] = _peak_gib(device)
        steps[name] = fn
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, fn in steps.items():
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                fn()
            _sync(device)
            times[name].append((time.perf_counter() - t0) / args.steps)
    dtype, _ = _amp(_bf16(device))
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
    return all(math.isfinite(statistics.median(t)) and statistics.median(t) > 0 for t in times.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20, help="steps per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--skip-study", action="store_true", help="skip step 1 (the tiny study)")
    parser.add_argument("--once", action="store_true", help="run the tiny study once (no comparison of two runs)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cpu: a self-test of this script at toy sizes (not a GPU measurement)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine (torch.cuda.is_available() is False); nothing to do.")
        return 0
    device = torch.device(args.device)
    if device.type == "cuda":
        print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(device)}, "
              f"bf16 {torch.cuda.is_bf16_supported()}")
    else:
        print(f"torch {torch.__version__}: CPU self-test at toy sizes (not a GPU measurement)")
    ok = check_study(device, twice=not args.once) if not args.skip_study else True
    ok = speed(args, device) and ok
    print("gpu_check: all checks passed" if ok else "gpu_check: a check FAILED (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
