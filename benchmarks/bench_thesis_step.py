"""How long one run of studies/thesis.toml takes: time training and inference steps at full size, extrapolate.

Run: ``python benchmarks/bench_thesis_step.py [--steps 3] [--threads 2] [--device cpu]``

Builds the thesis arm exactly as a run does (Attention U-Net base 64, depth 4, 256 px, hybrid loss a=0.4 b=0.2,
Adam 1e-4, grad clip 1.0, batch 8, the CPU/GPU precision and memory-format choices of ``robustseg.nn.device``),
times forward + backward + step and an inference batch, and extrapolates the hours of one run (arm x fold x
seed) from the data set's size: the trans-thalamic plane has 1,565 images (reference thesis); the thesis split
keeps 15 % for test and trains on 4 of 5 folds of the rest. Evaluation counts the clean test set, its 65
perturbed copies (suite ``all``, severities 1-5) and the validation fold. Prints wall and process CPU seconds
(on a shared machine the wall time is inflated by load; say so when quoting it).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from robustseg.nn import losses
from robustseg.nn.device import resolve_amp, use_channels_last
from robustseg.nn.models import count_parameters, create

N_IMAGES = 1565
TEST_FRACTION = 0.15
K_FOLDS = 5
PERTURBED_COPIES = 65


def _timed(fn, steps: int) -> tuple[float, float]:
    """Median (wall, process CPU) seconds per call after one warm-up call."""
    fn()
    walls, cpus = [], []
    for _ in range(steps):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    walls.sort()
    cpus.sort()
    return walls[len(walls) // 2], cpus[len(cpus) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--base", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--eval-batch", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    precision = resolve_amp("auto", device)
    channels_last = use_channels_last("auto", device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = create("attention_unet", in_channels=1, num_classes=4, base=args.base, depth=4).to(device, memory_format=fmt)
    criterion = losses.create("hybrid", a=0.4, b=0.2, gamma=2.0, class_weights=[0.1, 0.3, 3.0, 3.0]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.use_grad_scaler)
    x = torch.randn(args.batch, 1, args.size, args.size, device=device).to(memory_format=fmt)
    y = torch.randint(0, 4, (args.batch, args.size, args.size), device=device)
    xe = torch.randn(args.eval_batch, 1, args.size, args.size, device=device).to(memory_format=fmt)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def train_step() -> None:
        model.train()
        opt.zero_grad(set_to_none=True)
        with precision.autocast():
            loss = criterion(model(x), y)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        sync()

    def infer() -> None:
        model.eval()
        with torch.inference_mode(), precision.autocast():
            model(xe).softmax(dim=1)
        sync()

    tw, tc = _timed(train_step, args.steps)
    print(json.dumps({"train_step_s": round(tw, 2), "train_step_cpu_s": round(tc, 2)}), flush=True)
    iw, ic = _timed(infer, args.steps)
    trainval = round(N_IMAGES * (1 - TEST_FRACTION))
    n_train, n_val, n_test = round(trainval * (K_FOLDS - 1) / K_FOLDS), round(trainval / K_FOLDS), N_IMAGES - trainval
    steps_per_epoch = -(-n_train // args.batch)
    per_image_infer = iw / args.eval_batch
    epoch_s = steps_per_epoch * tw + n_val * per_image_infer
    eval_s = (n_test * (1 + PERTURBED_COPIES) + n_val) * per_image_infer
    out = {
        "device": str(device), "threads": torch.get_num_threads(), "parameters": count_parameters(model),
        "precision": str(precision.dtype), "channels_last": channels_last,
        "train_step_s": round(tw, 2), "train_step_cpu_s": round(tc, 2),
        "infer_per_image_s": round(per_image_infer, 3), "infer_per_image_cpu_s": round(ic / args.eval_batch, 3),
        "n_train": n_train, "n_val": n_val, "n_test": n_test, "steps_per_epoch": steps_per_epoch,
        "epoch_h": round(epoch_s / 3600, 3), "train_h_at_max_epochs": round(args.epochs * epoch_s / 3600, 2),
        "eval_h": round(eval_s / 3600, 2),
        "run_h_at_max_epochs": round((args.epochs * epoch_s + eval_s) / 3600, 2),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
