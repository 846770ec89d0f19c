"""Calibrate the perturbation severities on phantom images: the knob values behind ``robustseg.perturb.calibrated``.

For every perturbation, the five knob values whose mean SSIM (in-fan SSIM at native resolution; inside the affected
region for the local artefacts) over a *fit set* of phantom images hits 0.95 / 0.90 / 0.80 / 0.70 / 0.60. The fit set
is three phantom styles (default, low-contrast, large-ellipse; phantom seed 9001, perturbation seed 9001); the values
are then checked on a *check set* the fit never saw (styles small-thin, csp-like-lv and default; phantom seed 9002,
perturbation seed 9002). Neither seed is used by any study. Prints the table literal for ``calibrated.py`` and the
fit / check tables; with ``--out DIR`` writes them as CSV.

    python benchmarks/calibrate_perturbations.py [--n 6] [--only NAME ...] [--out DIR] [--check-only]

``--check-only`` measures the shipped values on both sets without fitting.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from robustseg.data.io import read_image
from robustseg.data.phantom import generate_phantom
from robustseg.perturb import PERTURBATIONS
from robustseg.perturb.calibrate import calibration_table, fit_values, prepare, spread
from robustseg.perturb.calibrated import LIMITED

FIT = (("default", 9001), ("low-contrast", 9001), ("large-ellipse", 9001))
CHECK = (("small-thin", 9002), ("csp-like-lv", 9002), ("default", 9002))


def phantom_set(root: Path, styles: tuple[tuple[str, int], ...], n: int):
    images, ids = [], []
    for style, seed in styles:
        out = generate_phantom(root / f"{style}-{seed}", n=n, seed=seed, style=style)
        for path in sorted((out / "Trans-thalamic" / "Trans-thalamic").glob("*.png")):
            images.append(read_image(path))
            ids.append(f"{style}-{seed}-{path.stem}")
    return prepare(images, ids)


def table_text(values: dict[str, list[float]]) -> str:
    lines = ["CALIBRATED: dict[str, tuple[float, ...]] = {"]
    for name, vals in values.items():
        lines.append(f'    "{name}": ({", ".join(f"{v:.4g}" for v in vals)}),')
    return "\n".join(lines + ["}"])


def show(title: str, table: pd.DataFrame) -> None:
    print(f"\n## {title}\n")
    cols = ["perturbation", "severity", "value", "target", "measure", "ssim", "ssim_fan", "psnr_fan",
            "region_fraction", "n_images"]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\nspread of mean SSIM across global perturbations per severity:")
    print(spread(table).to_string(index=False))
    print("... leaving out the severities a family cannot reach by nature (calibrated.LIMITED):")
    print(spread(table, exclude=LIMITED).to_string(index=False))
    if table["local"].any():
        print("local perturbations (SSIM inside the region):")
        print(spread(table, local=True).to_string(index=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=6, help="images per style (default 6)")
    ap.add_argument("--only", nargs="*", help="perturbations to fit (default all)")
    ap.add_argument("--out", type=Path, help="folder for fit.csv / check.csv / values.csv")
    ap.add_argument("--check-only", action="store_true", help="measure the shipped values, fit nothing")
    args = ap.parse_args()
    names = args.only or list(PERTURBATIONS)
    with tempfile.TemporaryDirectory() as tmp:
        fit_set = phantom_set(Path(tmp), FIT, args.n)
        check_set = phantom_set(Path(tmp), CHECK, args.n)
    values: dict[str, list[float]] = {}
    fits = []
    if not args.check_only:
        for name in names:
            t0 = time.process_time()
            fitted = fit_values(fit_set, name, seed=FIT[0][1])
            fits.append(fitted)
            values[name] = fitted["value"].tolist()
            print(f"{name}: {[round(v, 4) for v in values[name]]} ssim {fitted['ssim'].round(3).tolist()} "
                  f"reachable {fitted['reachable'].tolist()} ({time.process_time() - t0:.0f} s CPU)", flush=True)
        print("\n" + table_text(values))
        out = pd.concat(fits)
        limited = out[~out["reachable"]].groupby("perturbation")["severity"].apply(tuple).to_dict()
        print(f"\nLIMITED = {limited}")
    use = values or None
    fit_table = calibration_table(fit_set, names, seed=FIT[0][1], values=use)
    check_table = calibration_table(check_set, names, seed=CHECK[0][1], values=use)
    show(f"fit set ({len(fit_set)} images: {', '.join(s for s, _ in FIT)})", fit_table)
    show(f"check set ({len(check_set)} images: {', '.join(s for s, _ in CHECK)}, other seeds)", check_table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        fit_table.to_csv(args.out / "fit.csv", index=False)
        check_table.to_csv(args.out / "check.csv", index=False)
        if fits:
            pd.concat(fits).to_csv(args.out / "values.csv", index=False)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
