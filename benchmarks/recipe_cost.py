"""Per-epoch cost of each training-recipe lever relative to the old quickstart recipe, in one process.

Run: ``python benchmarks/recipe_cost.py [--epochs 2] [--repeats 2] [--style default]``

Trains fold 0 of the quickstart study's data (or a phantom style) for ``--epochs`` epochs per lever,
interleaving the levers ``--repeats`` times so that a change in machine load hits all of them alike,
and prints the median seconds per epoch (training + validation) and the ratio to the ``old`` recipe.
Single-threaded; on a shared machine read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]

OLD = {"samples_per_epoch": None, "lr_schedule": "plateau", "checkpoint_metric": "val_loss", "patch_size": 0,
       "foreground_fraction": 0.0, "deep_supervision": 0, "size": 96}
LEVERS: dict[str, dict] = {
    "old (96 px, whole images)": {},
    "poly + small_dice + 64 samples/epoch": {"lr_schedule": "poly", "checkpoint_metric": "small_dice",
                                             "samples_per_epoch": 64},
    "128 px whole images (the new quickstart size)": {"size": 128},
    "160 px whole images": {"size": 160},
    "160 px, 96 px crops, 1/3 foreground": {"size": 160, "patch_size": 96, "foreground_fraction": 0.33},
    "192 px, 96 px crops, 1/3 foreground": {"size": 192, "patch_size": 96, "foreground_fraction": 0.33},
    "160 px crops + deep supervision 2": {"size": 160, "patch_size": 96, "foreground_fraction": 0.33,
                                          "deep_supervision": 2},
    "per-image Dice (batch_dice off)": {"loss_kwargs": {"batch_dice": False}},
}


def main(argv: list[str] | None = None) -> int:
    import torch

    from robustseg.nn.train import train_run
    from robustseg.pipeline.runner import train_config

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from transfer import _prepare, _style_n  # noqa: F401  (same data path as the transfer table)

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--style", default="default")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    data_by_size = {}
    rows = []
    for rep in range(args.repeats):
        for name, lever in LEVERS.items():
            over = {**OLD, **lever}
            size = over.pop("size")
            if size not in data_by_size:
                study, data, folds = _prepare(ROOT / "studies" / "transfer.toml", args.style, [f"data.size={size}"])
                data_by_size[size] = (study, data, folds)
            study, data, folds = data_by_size[size]
            arm = asdict(study.arms[0])
            loss_kwargs = {**arm["loss_kwargs"], **over.pop("loss_kwargs", {})}
            cfg = replace(train_config(arm, 0, size), **over, loss_kwargs=loss_kwargs, max_epochs=args.epochs,
                          early_stopping_patience=0)
            tr = np.flatnonzero((folds != -1) & (folds != 0))
            va = np.flatnonzero(folds == 0)
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                res = train_run(cfg, (data.images[tr], data.masks[tr]), (data.images[va], data.masks[va]), tmp)
            rows.append({"lever": name, "repeat": rep, "s_per_epoch": (time.perf_counter() - t0) / args.epochs,
                         "n_train": tr.size, "n_val": va.size, "epochs": res.epochs_run})
    df = pd.DataFrame(rows)
    out = df.groupby("lever", sort=False)["s_per_epoch"].median().to_frame()
    out["ratio"] = out["s_per_epoch"] / out["s_per_epoch"].iloc[0]
    with pd.option_context("display.width", 160, "display.float_format", "{:.2f}".format):
        print(f"style {args.style}: {int(df['n_train'].iloc[0])} training / {int(df['n_val'].iloc[0])} "
              f"validation images, {args.epochs} epochs x {args.repeats} repeats, 1 thread")
        print(out.to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
