"""Benchmark: every overlap metric for N label maps (default 2,000 of 256x256, 4 classes) against MONAI.

Ours: confusion counts -> Dice, IoU, precision, recall, F1 per image and class, plus pixel accuracy
(``robustseg.metrics``), and the same wrapped into the per-image DataFrame. MONAI: ``DiceMetric`` +
``MeanIoU`` (``reduction="none"``) timed twice, once with the one-hot tensors prepared outside the
timer and once including the one-hot conversion a user has to do. Also times alternative
formulations of the confusion counts, so the fastest stays in the library.

Run: ``python benchmarks/bench_metrics.py [--n 2000] [--size 256] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def synthetic_masks(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Reference and prediction label maps: a brain ellipse with CSP and LV ellipses; prediction jittered."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size

    def draw(params: np.ndarray) -> np.ndarray:
        out = np.zeros((len(params), size, size), np.uint8)
        for label, structure in enumerate(np.moveaxis(params, 1, 0), start=1):
            cy, cx, ry, rx = structure.T
            inside = ((yy - cy[:, None, None]) / ry[:, None, None]) ** 2 + ((xx - cx[:, None, None]) / rx[:, None, None]) ** 2 <= 1
            out[inside] = label
        return out

    ref, pred = np.empty((n, size, size), np.uint8), np.empty((n, size, size), np.uint8)
    for s in range(0, n, 250):
        k = min(250, n - s)
        centre = rng.uniform(0.4, 0.6, (k, 1, 2))
        radius = np.stack([rng.uniform(0.25, 0.35, k), rng.uniform(0.03, 0.06, k), rng.uniform(0.02, 0.05, k)], 1)
        offset = np.stack([np.zeros((k, 2)), rng.uniform(-0.15, -0.05, (k, 2)), rng.uniform(0.05, 0.15, (k, 2))], 1)
        params = np.concatenate([centre + offset, np.repeat(radius[..., None], 2, -1) * rng.uniform(0.8, 1.2, (k, 3, 2))], -1)
        params[rng.random(k) < 0.3, 2, 2:] = 1e-6  # 30 % of references without CSP
        ref[s : s + k] = draw(params)
        jitter = params + rng.normal(0, 0.01, params.shape)
        jitter[..., 2:] = np.abs(jitter[..., 2:]) + 1e-6
        pred[s : s + k] = draw(jitter)
    return pred, ref


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:10.0f} images/s  ({seconds:7.3f} s)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--chunk", type=int, default=100, help="images per MONAI call (one-hot memory)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for MONAI (numpy side is single-threaded)")
    args = ap.parse_args()

    import torch
    from monai.metrics import DiceMetric, MeanIoU
    from monai.networks.utils import one_hot

    from robustseg.metrics import (
        confusion_matrices,
        counts_from_matrices,
        overlap_metrics,
        per_image_table,
        pixel_accuracy_from_matrices,
    )

    torch.set_num_threads(args.threads)
    n, c = args.n, args.classes
    pred, ref = synthetic_masks(n, args.size)
    names = tuple(f"c{k}" for k in range(c))
    print(f"{n} label maps {args.size}x{args.size}, {c} classes; torch threads {args.threads}")

    # --- confusion-count formulations -----------------------------------------------------------
    def per_image_plain() -> np.ndarray:
        codes = (ref * np.uint8(c) + pred).reshape(n, -1)
        return np.stack([np.bincount(codes[i], minlength=c * c) for i in range(n)])

    def one_batched() -> np.ndarray:
        codes = (ref.astype(np.intp) * c + pred).reshape(n, -1) + (np.arange(n) * c * c)[:, None]
        return np.bincount(codes.ravel(), minlength=n * c * c).reshape(n, c * c)

    def library() -> np.ndarray:
        return confusion_matrices(pred, ref, c).reshape(n, c * c)

    reference = per_image_plain()
    print("confusion counts:")
    for name, fn in (("per-image bincount", per_image_plain), ("one batched bincount", one_batched),
                     ("library (per-image, packed pixel pairs)", library)):  # fmt: skip
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        assert np.array_equal(out, reference), name
        print(f"  {name:42s} {rate(n, dt)}")

    # --- ours: every overlap metric ---------------------------------------------------------------
    t0 = time.perf_counter()
    cm = confusion_matrices(pred, ref, c)
    ours = overlap_metrics(counts_from_matrices(cm))
    pixel_accuracy_from_matrices(cm)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    table = per_image_table(pred, ref, class_names=names)
    t_table = time.perf_counter() - t0
    assert np.allclose(table["dice"].to_numpy().reshape(n, c), ours["dice"], equal_nan=True)

    # --- MONAI ------------------------------------------------------------------------------------
    dice_m = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
    iou_m = MeanIoU(include_background=True, reduction="none", ignore_empty=False)
    t_monai = t_convert = 0.0
    dice_parts, iou_parts = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in range(0, n, args.chunk):
            t0 = time.perf_counter()
            P = one_hot(torch.from_numpy(pred[s : s + args.chunk, None]).long(), c)
            R = one_hot(torch.from_numpy(ref[s : s + args.chunk, None]).long(), c)
            t1 = time.perf_counter()
            dice_parts.append(dice_m(P, R))
            iou_parts.append(iou_m(P, R))
            t2 = time.perf_counter()
            t_convert += t1 - t0
            t_monai += t2 - t1
    monai_dice = torch.cat(dice_parts).numpy().astype(np.float64)
    monai_iou = torch.cat(iou_parts).numpy().astype(np.float64)

    # MONAI with ignore_empty=False scores "neither" as 1, i.e. our policy "one"
    ours_one = overlap_metrics(counts_from_matrices(cm), "one")
    diff_dice = float(np.nanmax(np.abs(ours_one["dice"] - monai_dice)))
    diff_iou = float(np.nanmax(np.abs(ours_one["iou"] - monai_iou)))

    print("all overlap metrics (Dice, IoU, precision, recall, F1, pixel accuracy):")
    print(f"  ours, arrays                               {rate(n, t_ours)}")
    print(f"  ours, per-image DataFrame                  {rate(n, t_table)}")
    print(f"  MONAI Dice+MeanIoU, one-hot given          {rate(n, t_monai)}")
    print(f"  MONAI Dice+MeanIoU, incl. one-hot          {rate(n, t_monai + t_convert)}")
    print(f"speed-up (ours arrays vs MONAI one-hot given):    {t_monai / t_ours:6.1f}x")
    print(f"speed-up (ours arrays vs MONAI incl. one-hot):    {(t_monai + t_convert) / t_ours:6.1f}x")
    print(f"speed-up (ours DataFrame vs MONAI one-hot given): {t_monai / t_table:6.1f}x")
    print(f"max |ours - MONAI|: dice {diff_dice:.2e}, iou {diff_iou:.2e}")
    ok = diff_dice <= 1e-6 and diff_iou <= 1e-6 and t_monai / t_ours >= 10
    print("PASS" if ok else "FAIL: needs agreement to 1e-6 and >= 10x speed-up")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
