"""CPU cost of replaying a test set under perturbations at native resolution (what every study worker does once).

Builds the quickstart's phantom (160 images, seed 0, 959 x 661), takes 41 images (the quickstart's test-set size)
and runs ``robustseg.pipeline.perturbed.perturbed_test_set`` for a suite: per image the geometry is resolved once,
then every condition is applied at native resolution, preprocessed to the model size and its in-fan SSIM / PSNR
measured. Prints CPU milliseconds per image and condition (``time.process_time``, so other load on the machine does
not count) and the total per worker.

    python benchmarks/bench_perturb.py [--suite ultrasound] [--severities 1 3 5] [--images 41] [--stage native]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from robustseg.data.phantom import generate_phantom
from robustseg.perturb import resolve_suite
from robustseg.pipeline.inputs import load_data
from robustseg.pipeline.perturbed import perturbed_test_set
from robustseg.pipeline.plan import DataSpec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="ultrasound")
    ap.add_argument("--severities", type=int, nargs="*", default=[1, 3, 5])
    ap.add_argument("--images", type=int, default=41)
    ap.add_argument("--stage", default="native", choices=("native", "model"))
    args = ap.parse_args()
    pairs = [[n, s] for n, s in resolve_suite(args.suite) if s in args.severities]
    with tempfile.TemporaryDirectory() as tmp:
        root = generate_phantom(Path(tmp) / "ph", n=160, seed=0)
        spec = DataSpec("phantom", str(root), "Trans-thalamic", "pascal", 96)
        load_data(spec)
        settings = {"pairs": pairs, "seed": 0, "stage": args.stage,
                    "geometry": {"mode": "auto", "apex": None, "opening_deg": None, "column": "probe_geometry"}}
        t0 = time.process_time()
        out = perturbed_test_set(spec, np.arange(args.images), settings)
        total = time.process_time() - t0
    n = args.images
    print(f"{len(pairs)} conditions x {n} images, stage {args.stage}: {total:.1f} s CPU in all "
          f"({1000 * total / n / max(len(pairs), 1):.1f} ms per image and condition)")
    print(f"{'condition':28s} ms per image (perturb + preprocess + in-fan SSIM / PSNR)")
    for key, sec in out.cpu_seconds.items():
        print(f"{key:28s} {1000 * sec / n:7.1f}")


if __name__ == "__main__":
    main()
