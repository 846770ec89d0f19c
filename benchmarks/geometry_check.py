"""Probe geometry and beam-following artefacts on images of known geometry (the numbers of docs/perturbations.md).

For the synthetic fans of ``tests/_fan.py`` (convex with the apex above the image, phased array with the apex inside
it, off-centre asymmetric sector, linear probe) over ``--seeds`` speckle draws: the error of the estimated apex (% of
the image height), and the drift of an acoustic shadow cast with the *estimated* geometry, measured in the *true*
geometry between the shallow and deep quarter of its extent (degrees from the true apex, or columns). Then the
phantom: apex error over ``--phantom`` images of every style. Then speckle statistics on a uniform region (SD/mean
against the Rician theory, lag-1 autocorrelation along and across the beam) for a linear and a convex 959 x 661
field.

    python benchmarks/geometry_check.py [--seeds 6] [--phantom 6]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _fan import GEOMETRIES, shadow_track  # noqa: E402

from robustseg.data.geometry import ProbeGeometry, estimate_geometry  # noqa: E402
from robustseg.data.io import read_image  # noqa: E402
from robustseg.data.phantom import STYLES, generate_phantom  # noqa: E402
from robustseg.perturb import texture  # noqa: E402


def drift(name: str, seed: int) -> tuple[float, float]:
    true = GEOMETRIES[name]
    shallow, deep, _, est = shadow_track(true, seed)
    apex = 100 * max(abs(est.apex_row - true.apex_row), abs(est.apex_col - true.apex_col)) / true.height \
        if true.kind == "sector" else float("nan")
    return apex, deep - shallow


def lag1(x: np.ndarray, axis: int) -> float:
    x = x - x.mean()
    a, b = (x[1:], x[:-1]) if axis == 0 else (x[:, 1:], x[:, :-1])
    return float((a * b).mean() / x.var())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--phantom", type=int, default=6)
    args = ap.parse_args()
    print("| geometry | apex error (max, % of height) | shadow drift over depth (max abs) |")
    print("|---|---|---|")
    for name in GEOMETRIES:
        res = np.array([drift(name, s) for s in range(args.seeds)])
        unit = "px" if GEOMETRIES[name].kind == "linear" else "deg"
        apex = "n/a (linear)" if np.isnan(res[:, 0]).all() else f"{np.nanmax(res[:, 0]):.2f} %"
        print(f"| {name} | {apex} | {np.abs(res[:, 1]).max():.2f} {unit} |")
    print("\n| phantom style | images | apex error (max, % of height) | edge angles (true +-40 deg) |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for style in STYLES:
            out = generate_phantom(Path(tmp) / style, n=args.phantom, seed=77, style=style)
            errs, angles = [], []
            for path in sorted((out / "Trans-thalamic" / "Trans-thalamic").glob("*.png")):
                img = read_image(path)
                h, w = img.shape
                g = estimate_geometry(img)
                errs.append(100 * max(abs(g.apex_row + 0.12 * h), abs(g.apex_col - w / 2)) / h)
                angles += [g.angle_left, g.angle_right]
            print(f"| {style} | {len(errs)} | {max(errs):.2f} % | {min(angles):.2f} to {max(angles):.2f} |")
    print("\n| field | diffuse | SD/mean (theory) | lag-1 along the beam | lag-1 across |")
    print("|---|---|---|---|---|")
    geos = {"linear 959 x 661": ProbeGeometry.linear((661, 959)),
            "convex 959 x 661": ProbeGeometry.sector((661, 959), (-79.3, 479.5), 40, r_near=105.8, r_far=806.4)}
    window = (slice(250, 450), slice(380, 580))
    for label, geo in geos.items():
        for diffuse in (1.0, 0.5, 0.2):
            fields = [texture.speckle_field(geo, diffuse, np.random.default_rng(s))[window] for s in range(4)]
            mean, sd = texture.rice_moments(diffuse)
            ratio = np.mean([f.std() / f.mean() for f in fields])
            print(f"| {label} | {diffuse:g} | {ratio:.3f} ({sd / mean:.3f}) | {np.mean([lag1(f, 0) for f in fields]):.2f} "
                  f"| {np.mean([lag1(f, 1) for f in fields]):.2f} |")


if __name__ == "__main__":
    main()
