"""``evaluate-folder`` against nnU-Net's ``compute_metrics_on_folder`` on the same corpus of saved masks.

Run: ``python benchmarks/bench_evaluate_folder.py [--n 1000] [--corpus DIR] [--nnunet auto|package|reimpl]``

The corpus (generated once into ``--corpus``, default ``~/.cache/robustseg/evaluate-folder-<n>``): ``gt/`` the
masks of a default phantom of ``n`` images at native size (959 x 661), ``pred/`` predictions made from them with
typical errors (the brain grown or shrunk by 1-3 px, CSP and LV shifted by up to 4 px, a structure missed in
8 % of the images, a spurious blob in 8 %), both as integer-label PNGs (nnU-Net's convention, which both tools
read), and the pixel-size CSV.

Timed, each in one process on the process's CPU clock (``time.process_time`` plus ``RUSAGE_CHILDREN`` for
nnU-Net's worker pool, run with one process):

- ``robustseg evaluate-folder``: reading both folders, per-image confusion counts of 4 classes, Dice, IoU,
  precision, recall, F1, HD95 and NSD (mm), the per-image table and the summary (``evaluate_folder``).
- nnU-Net v2 ``compute_metrics_on_folder`` (overlap only: TP/FP/FN/TN, Dice, IoU per label 1-3) with its
  ``NaturalImage2DIO`` reader: the ``nnunetv2`` package when importable (``--nnunet package``; it is not a
  dependency of robustseg: install it where it does not replace your torch, e.g. a virtual environment with
  ``--system-site-packages``), otherwise (``--nnunet reimpl``) a line-by-line re-implementation of its loop
  (``compute_metrics``: ``skimage.io.imread`` both files, per label ``seg == label`` masks and four ``np.sum``
  of boolean products, then Dice and IoU), the output says which.

Also checks that both give the same mean Dice per foreground class (NaN for images where a class is absent
from both, nnU-Net's convention and robustseg's ``empty_policy = "nan"``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

LABELS = (1, 2, 3)


def make_corpus(root: Path, n: int, seed: int = 0) -> Path:
    """Write ``gt/``, ``pred/`` and ``pixel_size.csv`` under ``root`` (kept for later runs)."""
    from robustseg.data.index import load_index
    from robustseg.data.io import read_mask, write_labels
    from robustseg.data.phantom import generate_phantom

    if (root / "done").is_file():
        return root
    with tempfile.TemporaryDirectory() as tmp:
        index = load_index("phantom", generate_phantom(Path(tmp) / "phantom", n=n, seed=seed))
        rng = np.random.default_rng(seed)
        rows = ["Label,Pixel in mm"]
        for _, row in index.iterrows():
            ref = read_mask(row["mask_path"])
            write_labels(root / "gt" / f"{row['image_id']}.png", ref)
            write_labels(root / "pred" / f"{row['image_id']}.png", _predicted(ref, rng))
            rows.append(f"{row['image_id']}.png,{row['pixel_mm']}")
    (root / "pixel_size.csv").write_text("\n".join(rows) + "\n")
    (root / "done").write_text(f"{n} images, seed {seed}\n")
    return root


def _predicted(ref: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A prediction with the errors of the module docstring."""
    pred = np.zeros_like(ref)
    brain = np.isin(ref, (1, 2, 3))
    k = int(rng.integers(1, 4))
    brain = ndimage.binary_dilation(brain, iterations=k) if rng.random() < 0.5 else ndimage.binary_erosion(brain, iterations=k)
    pred[brain] = 1
    for c in (2, 3):
        if rng.random() < 0.08:
            continue  # missed
        dy, dx = (int(v) for v in rng.integers(-4, 5, 2))
        pred[np.roll(ref == c, (dy, dx), axis=(0, 1)) & brain] = c
    if rng.random() < 0.08:  # a spurious blob
        ys, xs = np.nonzero(brain)
        if ys.size:
            i = int(rng.integers(ys.size))
            pred[max(ys[i] - 3, 0):ys[i] + 3, max(xs[i] - 3, 0):xs[i] + 3] = int(rng.integers(2, 4))
    return pred


def _cpu() -> float:
    return time.process_time() + resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime + \
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime


def nnunet_package(gt: Path, pred: Path, out: Path) -> dict:
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder
    from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO

    compute_metrics_on_folder(str(gt), str(pred), str(out), NaturalImage2DIO(), ".png", list(LABELS), num_processes=1)
    summary = json.loads(out.read_text())
    return {int(k): v["Dice"] for k, v in summary["mean"].items()}


def nnunet_reimplementation(gt: Path, pred: Path) -> dict:
    """nnU-Net v2's ``compute_metrics`` loop for 2D PNGs, as in its source (one process)."""
    from skimage import io

    dice: dict[int, list[float]] = {c: [] for c in LABELS}
    for ref_file in sorted(gt.glob("*.png")):
        seg_ref = io.imread(ref_file)
        seg_pred = io.imread(pred / ref_file.name)
        use_mask = np.ones_like(seg_ref, dtype=bool)
        for r in LABELS:
            mask_ref, mask_pred = seg_ref == r, seg_pred == r
            tp = np.sum((mask_ref & mask_pred) & use_mask)
            fp = np.sum(((~mask_ref) & mask_pred) & use_mask)
            fn = np.sum((mask_ref & (~mask_pred)) & use_mask)
            np.sum(((~mask_ref) & (~mask_pred)) & use_mask)  # tn
            with np.errstate(invalid="ignore", divide="ignore"):
                dice[r].append(2 * tp / (2 * tp + fp + fn))
                tp / (tp + fp + fn)  # IoU
    return {r: float(np.nanmean(v)) for r, v in dice.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--corpus", default=None)
    ap.add_argument("--nnunet", choices=("auto", "package", "reimpl"), default="auto")
    args = ap.parse_args()
    root = Path(args.corpus or Path.home() / ".cache" / "robustseg" / f"evaluate-folder-{args.n}")
    t = time.process_time()
    make_corpus(root, args.n)
    print(f"corpus: {root} ({args.n} images; prepared in {time.process_time() - t:.1f} CPU s)")
    from robustseg.metrics.folder import evaluate_folder
    from robustseg.nn.environment import cpu_info

    info = cpu_info()
    print(f"CPU {info['cpu_model']}, {os.cpu_count()} cores; one process each, CPU seconds")
    c = _cpu()
    table, summary = evaluate_folder(root / "pred", root / "gt", pixel_size_csv=root / "pixel_size.csv")
    ours_s = _cpu() - c
    ours = {c: summary["per_image"][name]["dice_mean"] for c, name in zip(LABELS, ("brain", "csp", "lv"), strict=True)}
    which = args.nnunet
    if which == "auto":
        try:
            import nnunetv2  # noqa: F401
            which = "package"
        except ImportError:
            which = "reimpl"
    c = _cpu()
    with tempfile.TemporaryDirectory() as tmp:
        theirs = (nnunet_package(root / "gt", root / "pred", Path(tmp) / "summary.json") if which == "package"
                  else nnunet_reimplementation(root / "gt", root / "pred"))
    nn_s = _cpu() - c
    label = "nnU-Net v2 compute_metrics_on_folder" + (" (package)" if which == "package" else " (re-implementation)")
    print(f"{'tool':55s} {'CPU s':>8s} {'ms/image':>9s}  computes")
    print(f"{'robustseg evaluate-folder':55s} {ours_s:8.1f} {1e3 * ours_s / args.n:9.1f}  "
          "4 classes: counts, Dice, IoU, precision, recall, F1, HD95, NSD")
    print(f"{label:55s} {nn_s:8.1f} {1e3 * nn_s / args.n:9.1f}  3 labels: TP/FP/FN/TN, Dice, IoU")
    print(f"robustseg / nnU-Net CPU time: {ours_s / nn_s:.2f}")
    same = all(abs(ours[c] - theirs[c]) < 1e-9 for c in LABELS)
    print("mean Dice per class, robustseg vs nnU-Net: " + ", ".join(f"{c}: {ours[c]:.4f} / {theirs[c]:.4f}" for c in LABELS)
          + f" -> {'equal' if same else 'DIFFERENT'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
