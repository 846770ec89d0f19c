"""Allocator benchmark: training steps with glibc's default malloc vs the worker settings of robustseg.

Run: ``python benchmarks/bench_alloc.py [--sizes 96 256] [--rounds 3] [--steps 6]``

Each measurement is a fresh child process (``GLIBC_TUNABLES`` is read when a process starts), so the
parent alternates A, B, A, B, ... (default malloc, tuned malloc) and reports per size the median
CPU seconds (user + system: page faults are system time; the child uses one thread, so on a shared
machine CPU time counts its work, not its waiting) per training step of each, their ratio and the minor page faults per step. The model and
precision are those of a study run at that size (Attention U-Net, batch 8, one thread, the default
``amp``); ``--base`` sets the width (default: 8 at <= 128 px as in the quickstart, 16 above).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import torch
from robustseg.nn.device import resolve_amp
from robustseg.nn.losses import create as create_loss
from robustseg.nn.models import create
size, base, steps, amp = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(1)
torch.manual_seed(0)
model = create("attention_unet", base=base, depth=4).to(memory_format=torch.channels_last)
opt = torch.optim.Adam(model.parameters(), lr=1e-4)
loss_fn = create_loss("hybrid", class_weights=[1.0, 1.0, 1.0, 1.0])
precision = resolve_amp(amp, torch.device("cpu"))
x = torch.randn(8, 1, size, size).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 4, (8, size, size))
def step():
    opt.zero_grad(set_to_none=True)
    with precision.autocast():
        out = model(x)
    loss = loss_fn(out.float(), y)
    loss.backward()
    opt.step()
for _ in range(2):
    step()
times, f0 = [], resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(steps):
    t0 = time.process_time(); step(); times.append(time.process_time() - t0)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / steps
print(json.dumps({"times": times, "faults": faults}))
"""


def measure(size: int, base: int, steps: int, amp: str, tuned: bool) -> dict:
    """One child process: per-step seconds and minor page faults per step."""
    from robustseg.pipeline.workerenv import malloc_tunables

    env = dict(os.environ)
    env.pop("GLIBC_TUNABLES", None)
    if tuned:
        env["GLIBC_TUNABLES"] = malloc_tunables()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(size), str(base), str(steps), amp],
        env=env, capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 256])
    parser.add_argument("--base", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="A/B pairs per size")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--amp", default="auto")
    args = parser.parse_args()
    from robustseg.pipeline.workerenv import malloc_tunables

    with open("/proc/loadavg") as fh:
        load = " ".join(fh.read().split()[:3])
    print(f"GLIBC_TUNABLES={malloc_tunables()}  amp={args.amp}  loadavg={load}")
    print(f"{'size':>5s} {'base':>4s} {'default s/step':>14s} {'tuned s/step':>12s} {'speed-up':>8s} "
          f"{'faults/step default':>19s} {'tuned':>7s}")
    for size in args.sizes:
        base = args.base or (8 if size <= 128 else 16)
        res: dict[bool, list[dict]] = {False: [], True: []}
        for _ in range(args.rounds):
            for tuned in (False, True):
                res[tuned].append(measure(size, base, args.steps, args.amp, tuned))
        med = {k: statistics.median(t for r in v for t in r["times"]) for k, v in res.items()}
        flt = {k: statistics.median(r["faults"] for r in v) for k, v in res.items()}
        print(f"{size:5d} {base:4d} {med[False]:14.3f} {med[True]:12.3f} {med[False] / med[True]:8.2f} "
              f"{flt[False]:19.0f} {flt[True]:7.0f}")


if __name__ == "__main__":
    main()
