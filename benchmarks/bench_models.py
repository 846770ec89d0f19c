"""Speed benchmark: our Attention U-Net vs MONAI's AttentionUnet at the same widths, ratios from one run.

Run: ``python benchmarks/bench_models.py [--size 128] [--batch 8] [--base 16] [--rounds 5] [--threads 1]
[--compile] [--epoch-images 700] [--isa avx2] [--peak] [--decoder-convs 2]``

``--isa avx2`` runs the same measurement as an AVX2-only CPU would: the script starts itself again with
``ONEDNN_MAX_CPU_ISA=AVX2`` (oneDNN's convolutions) and ``ATEN_CPU_CAPABILITY=avx2`` (PyTorch's own kernels);
the header prints the capability PyTorch chose and the ISA oneDNN reports (``ONEDNN_VERBOSE``), and oneDNN then
reports no bf16 support, so the defaults resolve as on an AVX2 CPU. It emulates the instruction set, not the
other machine (its caches, memory and clock stay this CPU's).

The header also gives the forward FLOPs of each network by layer group (encoder convolutions, up-sampling,
attention gates, decoder convolutions, head), and with ``--peak`` the measured fp32 convolution peak of this
CPU (a large 3x3 convolution, forward) and each training variant's achieved FLOP rate as a fraction of it
(training FLOPs counted as 3 x forward).

Every variant is built and warmed up first; then the variants are timed in turns (A B C ... A B C ...,
``--rounds`` times, ``--steps`` calls per turn), and each variant's rate is divided by MONAI fp32's rate
*of the same round* before taking the median over rounds. A busy machine slows every variant of a
round alike, so the ratios hold under load while the absolute images/s do not. With ``--threads 1`` the
clock is the process's CPU time (user + system, ``time.process_time``; ``--clock wall`` to change):
on a shared machine it counts the work of this process, not the time it waited for a core, so also the
absolute numbers mean something (memory bandwidth and caches are still shared). Inductor compiles in
this process (``TORCHINDUCTOR_COMPILE_THREADS=1``) so its compile time is counted too.

Training step: forward, the hybrid loss (CE + focal + Dice, as in a study), backward, gradient
clipping, Adam step. Inference: eval mode, ``inference_mode``, softmax.

Variants:
- ``monai fp32``: MONAI's AttentionUnet as it comes (the baseline of every ratio).
- ``monai levers``: MONAI with bf16 autocast (when the CPU has native bf16), channels-last, fused Adam,
  and ``torch.compile`` with ``--compile``.
- ``ours fp32``: ``train.amp = "fp32"``; channels-last and fused Adam as by default.
- ``ours default``: what ``train_run`` / ``predict_proba`` do with default settings on this machine, for
  the network of ``--decoder-convs`` (default 2: the model's default, the reference architecture; 1: the lean
  decoder, one 3x3 conv per level as MONAI's), under the determinism settings ``train_run`` trains with
  (``amp = "auto"``: fp32 training and, on CPUs with native bf16, bf16 prediction;
  ``channels_last = "auto"``, ``compile = "auto"`` resolved for a run of
  ``--epoch-images`` images x 100 epochs; inference with BatchNorm folded into the convolutions).
- ``ours default, N dec. convs``: the same for the other decoder (N = 1 with ``--decoder-convs 2``).
- ``ours bf16``: ``train.amp = "bf16"`` (and bf16 prediction), channels-last, fused Adam.
- ``ours levers``: bf16 + channels-last + torch.compile (only with ``--compile``).

With ``--compile`` the compile seconds (first call minus a normal call) are printed as well, with the
break-even number of training steps ``compile s / (eager s/step - compiled s/step)``.
With ``--epoch-images N`` the time of one training epoch (``ceil(N / batch)`` steps) is estimated from
the median step time of each variant (an estimate from timed steps, not a timed epoch).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")  # compile in this process: its CPU time counts

ISA_ENV = {"avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}}
"""Environment that caps oneDNN and PyTorch at an instruction set (read when torch loads)."""


def _isa_arg(argv: list[str]) -> str:
    for k, a in enumerate(argv):
        if a == "--isa" and k + 1 < len(argv):
            return argv[k + 1]
        if a.startswith("--isa="):
            return a.split("=", 1)[1]
    return "native"


if __name__ == "__main__" and _isa_arg(sys.argv[1:]) in ISA_ENV:
    _want = ISA_ENV[_isa_arg(sys.argv[1:])]
    if any(os.environ.get(k) != v for k, v in _want.items()):  # before torch loads: start again with the cap
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **_want})

import torch  # noqa: E402
from torch import nn  # noqa: E402

from robustseg.nn.device import (  # noqa: E402
    cpu_supports_bf16,
    forward_flops,
    resolve_amp,
    resolve_compile,
    use_channels_last,
)
from robustseg.nn.losses import create as create_loss  # noqa: E402
from robustseg.nn.models import count_parameters, create  # noqa: E402
from robustseg.nn.predict import fold_batchnorm  # noqa: E402
from robustseg.nn.train import _deterministic  # noqa: E402


@dataclass
class Variant:
    """One thing to time: a training step and an inference call, plus compile seconds when compiled."""

    name: str
    train: Callable[[], None] | None
    infer: Callable[[], None] | None
    compile_s: float = float("nan")
    eager_step_s: float = float("nan")


def _autocast(bf16: bool) -> contextlib.AbstractContextManager:
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def make_train(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, channels_last: bool, bf16: bool,
    fused: bool, compile_model: bool, deterministic: bool = False,
) -> Callable[[], None]:
    """A closure doing one training step of a private copy of ``model`` (``deterministic``: under the settings
    ``train_run`` trains with)."""
    model = copy.deepcopy(model).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    fwd = torch.compile(model, dynamic=False) if compile_model else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=fused or None)
    loss_fn = create_loss("hybrid", class_weights=[0.1, 1.0, 2.0, 2.0])
    params = list(model.parameters())

    def step() -> None:
        with _deterministic() if deterministic else contextlib.nullcontext():
            opt.zero_grad(set_to_none=True)
            with _autocast(bf16):
                out = fwd(x)
            loss = loss_fn(out.float(), y)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
            opt.step()

    return step


def make_infer(
    model: nn.Module, x: torch.Tensor, *, channels_last: bool, bf16: bool, fold: bool
) -> Callable[[], None]:
    """A closure doing one inference call (softmax included) of a private copy of ``model``."""
    model = fold_batchnorm(model) if fold else copy.deepcopy(model).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def run() -> None:
        with torch.inference_mode(), _autocast(bf16):
            torch.softmax(model(x).float(), dim=1)

    return run


CLOCK = time.perf_counter


def onednn_isa() -> str:
    """The instruction set oneDNN reports in this environment (from ``ONEDNN_VERBOSE`` of a small convolution)."""
    code = ("import torch\nc = torch.nn.Conv2d(16, 16, 3).to(memory_format=torch.channels_last)\n"
            "x = torch.zeros(2, 16, 32, 32).contiguous(memory_format=torch.channels_last)\n"
            "with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):\n    c(x)\n")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return next((line.split("isa:", 1)[1].strip() for line in out.splitlines() if "isa:" in line), "unknown")


def flops_by_group(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Forward FLOPs (2 x multiply-adds) of the convolutions, by layer group: encoder, up-sampling, gates, decoder, head.

    Groups follow the module names of our network (``encoders``, ``ups``, ``gates``, ``decoders``, ``head``)
    and of MONAI's (``attention``, ``upconv``, ``merge``, the final 1x1 ``model.2``; the rest is encoder).
    """
    out: dict[str, float] = dict.fromkeys(("encoder", "up-sampling", "attention gates", "decoder", "head"), 0.0)

    def group(name: str) -> str:
        for key, g in ((".attention.", "attention gates"), ("gates.", "attention gates"), (".upconv.", "up-sampling"),
                       ("ups.", "up-sampling"), (".merge.", "decoder"), ("decoders.", "decoder"), ("head", "head")):
            if key in f".{name}" or name.startswith(key):
                return g
        return "head" if name == "model.2.conv" else "encoder"

    def counter(g: str) -> Callable[..., None]:
        def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], res: torch.Tensor) -> None:
            k = mod.kernel_size[0] * mod.kernel_size[1]
            if isinstance(mod, nn.ConvTranspose2d):
                out[g] += 2.0 * inp[0].numel() * k * mod.out_channels
            else:
                out[g] += 2.0 * res.numel() * k * mod.in_channels
        return hook

    handles = [m.register_forward_hook(counter(group(name))) for name, m in model.named_modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        model.train()
        for h in handles:
            h.remove()
    return out


def conv_peak(rounds: int = 5) -> float:
    """fp32 GFLOP/s of a large 3x3 convolution forward (batch 8, 256 -> 256 channels, 64 x 64, channels-last):
    the best of ``rounds`` timings on this process's clock."""
    conv = nn.Conv2d(256, 256, 3, padding=1, bias=False).to(memory_format=torch.channels_last).eval()
    x = torch.randn(8, 256, 64, 64).contiguous(memory_format=torch.channels_last)
    flop = 2.0 * 8 * 256 * 64 * 64 * 256 * 9
    best = math.inf
    with torch.inference_mode():
        conv(x)
        for _ in range(rounds):
            best = min(best, _timed(lambda: conv(x)))
    return flop / best / 1e9


def _timed(fn: Callable[[], None]) -> float:
    t0 = CLOCK()
    fn()
    return CLOCK() - t0


def warm(v: Variant, compiled: bool, calls: int = 3) -> None:
    """Warm-up calls; for a compiled training step, the compile seconds (first call minus the second)."""
    if v.train is not None:
        first = _timed(v.train)
        if compiled:
            v.compile_s = first - _timed(v.train)
        for _ in range(calls - 1 - compiled):
            v.train()
    if v.infer is not None:
        for _ in range(max(calls - 1, 1)):
            v.infer()


def interleaved(variants: list[Variant], kind: str, rounds: int, steps: int) -> dict[str, list[float]]:
    """Seconds per call of each variant, one list entry per round, variants timed in turns."""
    out: dict[str, list[float]] = {v.name: [] for v in variants}
    for _ in range(rounds):
        for v in variants:
            fn = getattr(v, kind)
            if fn is None:
                continue
            out[v.name].append(sum(_timed(fn) for _ in range(steps)) / steps)
    return {k: t for k, t in out.items() if t}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--base", type=int, default=16, help="width of the first level (MONAI: same widths)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="calls per variant per round")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--compile", action="store_true", help="add torch.compile variants (slow to build)")
    parser.add_argument("--no-infer", action="store_true", help="time training only")
    parser.add_argument("--epoch-images", type=int, default=0, help="estimate one epoch of N images")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per variant first")
    parser.add_argument("--only", nargs="+", default=None,
                        help="variants to time (monai fp32 always); e.g. --only 'ours fp32' 'ours default'")
    parser.add_argument("--clock", choices=("auto", "cpu", "wall"), default="auto",
                        help="auto: process CPU time with --threads 1, else wall time")
    parser.add_argument("--isa", choices=("native", *ISA_ENV), default="native",
                        help="cap oneDNN and PyTorch at an instruction set (avx2: as an AVX2-only CPU)")
    parser.add_argument("--peak", action="store_true", help="measure the fp32 conv peak and the fraction reached")
    parser.add_argument("--decoder-convs", type=int, choices=(1, 2), default=2,
                        help="3x3 convs per decoder level of 'ours' (2: the model's default; 1: the lean decoder)")
    args = parser.parse_args()
    global CLOCK
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu" or (args.clock == "auto" and args.threads == 1):
        CLOCK = time.process_time
    from monai.networks.nets import AttentionUnet

    torch.manual_seed(0)
    widths = tuple(args.base * 2**i for i in range(5))
    monai = AttentionUnet(spatial_dims=2, in_channels=1, out_channels=4, channels=widths, strides=(2, 2, 2, 2))
    ours = create("attention_unet", base=args.base, depth=4, decoder_convs=args.decoder_convs)
    x = torch.randn(args.batch, 1, args.size, args.size)
    y = torch.randint(0, 4, (args.batch, args.size, args.size))
    cpu = torch.device("cpu")
    bf16 = cpu_supports_bf16()
    default_bf16 = resolve_amp("auto", cpu).dtype == torch.bfloat16
    default_bf16_infer = resolve_amp("auto", cpu, inference=True).dtype == torch.bfloat16
    default_cl = use_channels_last("auto", cpu)
    images = args.epoch_images or 700
    f_m, f_o = forward_flops(monai, x[:1]), forward_flops(ours, x[:1])
    default_compile = resolve_compile("auto", cpu, 3 * f_o * images * 100 / 1e12)
    with open("/proc/loadavg") as fh:
        load = " ".join(fh.read().split()[:3])
    from robustseg.nn.environment import cpu_info

    info = cpu_info()
    print(f"CPU {info['cpu_model']}, flags {' '.join(f for f in info['cpu_flags'] if f in ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16'))}; "
          f"--isa {args.isa}: torch capability {torch.backends.cpu.get_cpu_capability()}, oneDNN ISA {onednn_isa()}"
          + (" (emulated on this CPU)" if args.isa != "native" else ""))
    print(f"clock={'cpu' if CLOCK is time.process_time else 'wall'} threads={torch.get_num_threads()} native_bf16={bf16} "
          f"loadavg={load} size={args.size} batch={args.batch} widths={widths}")
    print(f"defaults here: amp auto -> train {'bf16' if default_bf16 else 'fp32'}, "
          f"predict {'bf16' if default_bf16_infer else 'fp32'}, channels_last -> {default_cl}, "
          f"compile auto -> {default_compile} (run of {images} images x 100 epochs)")
    print(f"params: monai={count_parameters(monai):,} ours={count_parameters(ours):,}; "
          f"forward GFLOP/image: monai={f_m / 1e9:.3f} ours={f_o / 1e9:.3f}")
    other_convs = 3 - args.decoder_convs
    other_net = create("attention_unet", base=args.base, depth=4, decoder_convs=other_convs)
    groups = {"monai": flops_by_group(monai, x[:1]), f"ours ({ours.decoder_convs} decoder convs)": flops_by_group(ours, x[:1]),
              f"ours ({other_convs} decoder convs)": flops_by_group(other_net, x[:1])}
    print("forward GFLOP/image by layer group:")
    names = list(next(iter(groups.values())))
    print(f"  {'':28s}" + "".join(f"{n:>16s}" for n in names) + f"{'total':>10s}")
    for net, g in groups.items():
        print(f"  {net:28s}" + "".join(f"{g[n] / 1e9:16.3f}" for n in names) + f"{sum(g.values()) / 1e9:10.3f}")
    peak = conv_peak() if args.peak else math.nan
    if args.peak:
        print(f"fp32 conv peak (3x3, 256 ch, 64x64, batch 8, channels-last, forward): {peak:.1f} GFLOP/s")

    infer = not args.no_infer
    variants = [
        Variant("monai fp32",
                make_train(monai, x, y, channels_last=False, bf16=False, fused=False, compile_model=False),
                make_infer(monai, x, channels_last=False, bf16=False, fold=False) if infer else None),
        Variant("monai levers" + (" + compile" if args.compile else ""),
                make_train(monai, x, y, channels_last=True, bf16=bf16, fused=True, compile_model=args.compile),
                make_infer(monai, x, channels_last=True, bf16=bf16, fold=False) if infer else None),
        Variant("ours fp32",
                make_train(ours, x, y, channels_last=default_cl, bf16=False, fused=True, compile_model=False),
                make_infer(ours, x, channels_last=default_cl, bf16=False, fold=True) if infer else None),
        Variant("ours default",
                make_train(ours, x, y, channels_last=default_cl, bf16=default_bf16, fused=True,
                           compile_model=default_compile, deterministic=True),
                make_infer(ours, x, channels_last=default_cl, bf16=default_bf16_infer, fold=True) if infer else None),
        Variant(f"ours default, {other_convs} dec. convs",
                make_train(other_net, x, y, channels_last=default_cl, bf16=default_bf16, fused=True,
                           compile_model=default_compile, deterministic=True),
                make_infer(other_net, x, channels_last=default_cl, bf16=default_bf16_infer, fold=True) if infer else None),
        Variant("ours bf16",
                make_train(ours, x, y, channels_last=default_cl, bf16=bf16, fused=True, compile_model=False),
                make_infer(ours, x, channels_last=default_cl, bf16=bf16, fold=True) if infer else None),
    ]
    if args.compile:
        variants.append(Variant(
            "ours levers + compile",
            make_train(ours, x, y, channels_last=True, bf16=bf16, fused=True, compile_model=True), None))
    if args.only:  # in the order given (warm-up and compilation happen in this order)
        by_name = {v.name: v for v in variants}
        variants = [by_name["monai fp32"]] + [by_name[n] for n in args.only if n in by_name and n != "monai fp32"]
    compiled = {"monai levers + compile", "ours levers + compile"} | ({"ours default"} if default_compile else set())
    for v in variants:
        warm(v, v.name in compiled, args.warmup)
        if v.name in compiled:
            print(f"  compiled {v.name}: {v.compile_s:.1f} s", flush=True)

    results = {}
    for kind in ("train", "infer"):
        times = interleaved(variants, kind, args.rounds, args.steps)
        if "monai fp32" not in times:
            continue
        base = times["monai fp32"]
        results[kind] = {
            name: (args.batch / statistics.median(t), statistics.median(b / s for b, s in zip(base, t, strict=True)),
                   statistics.median(t))
            for name, t in times.items()
        }
    flops = {"monai": f_m, "other": forward_flops(other_net, x[:1])}
    print(f"\n{'variant':28s} {'train img/s':>11s} {'x monai fp32':>12s} {'infer img/s':>11s} {'x monai fp32':>12s}"
          + (f" {'train % of peak':>15s}" if args.peak else ""))
    for v in variants:
        t = results.get("train", {}).get(v.name, (math.nan,) * 3)
        i = results.get("infer", {}).get(v.name, (math.nan,) * 3)
        line = f"{v.name:28s} {t[0]:11.1f} {t[1]:12.2f} {i[0]:11.1f} {i[1]:12.2f}"
        if args.peak:
            f = flops["monai"] if v.name.startswith("monai") else flops["other"] if "dec. convs" in v.name else f_o
            line += f" {100 * 3 * f * t[0] / 1e9 / peak:15.1f}"
        print(line)
    tr = results.get("train", {})
    if "ours levers + compile" in tr and "monai levers + compile" in tr:
        # ratio of ratios: both are per-round ratios against MONAI fp32, so load cancels
        r = tr["ours levers + compile"][1] / tr["monai levers + compile"][1]
        print(f"\nours levers + compile vs monai levers + compile: {r:.2f}x (training)")
    if "ours default" in tr and "monai levers" + (" + compile" if args.compile else "") in tr:
        r = tr["ours default"][1] / tr["monai levers" + (" + compile" if args.compile else "")][1]
        print(f"ours default vs monai levers{' + compile' if args.compile else ''}: {r:.2f}x (training)")
    if args.compile:
        print("\ncompile seconds (first training call minus the next) and break-even steps:")
        eager = {"monai levers + compile": None, "ours levers + compile": "ours bf16"}
        for v in variants:
            if v.name in compiled and not math.isnan(v.compile_s):
                ref = eager.get(v.name)
                line = f"  {v.name:26s} compile {v.compile_s:6.1f} s"
                if ref in tr and v.name in tr and tr[ref][2] > tr[v.name][2]:
                    saved = tr[ref][2] - tr[v.name][2]
                    line += (f", step {tr[ref][2]:.3f} -> {tr[v.name][2]:.3f} s, break-even "
                             f"{v.compile_s / saved:.0f} steps = {3 * f_o * args.batch * v.compile_s / saved / 1e12:.1f}"
                             " TFLOP of training work")
                print(line)
    if args.epoch_images:
        steps = math.ceil(args.epoch_images / args.batch)
        print(f"\none training epoch of {args.epoch_images} images = {steps} steps of batch {args.batch} "
              "(estimated from the median timed step, measured under the load shown above):")
        for name, (_rate, _, s) in tr.items():
            print(f"  {name:26s} {s * steps / 60:6.1f} min  ({s / args.batch:.3f} s/image)")


if __name__ == "__main__":
    main()
