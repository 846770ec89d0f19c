"""Calibration tables (PSNR / SSIM per severity), the contact sheet and ``robustseg perturb`` folder I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from robustseg._io import save_image
from robustseg._outdir import claim_output_dir, expand
from robustseg.data.index import IMAGE_EXTS, list_images
from robustseg.errors import InputError
from robustseg.perturb.registry import (
    PERTURBATIONS,
    _check_image,
    _check_severity,
    apply,
    perturb_batch,
    resolve_suite,
)
from robustseg.perturb.seeding import image_seed
from robustseg.perturb.ultrasound import ShadowParams


# ----------------------------------------------------------------------------------------- calibration
def calibration_table(
    images: np.ndarray, seed: int = 0, pairs: Sequence[tuple[str, int]] | None = None
) -> pd.DataFrame:
    """Mean PSNR (dB) and SSIM of every perturbation and severity against the clean ``(N, H, W)`` images.

    Columns: ``perturbation, severity, params, psnr, psnr_sd, ssim, ssim_sd, n_images``. PSNR and SSIM
    use ``data_range=255`` (skimage.metrics); images are perturbed with ``perturb_batch`` (position ids).
    """
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8 or len(images) == 0:
        raise InputError(f"images of shape {images.shape} and dtype {images.dtype}: expected uint8 (N, H, W)")
    pairs = resolve_suite("all") if pairs is None else list(pairs)
    rows = []
    for name, sev in pairs:
        out = perturb_batch(images, name, sev, seed)
        psnr = np.array([peak_signal_noise_ratio(a, b, data_range=255) for a, b in zip(images, out, strict=True)])
        ssim = np.array([structural_similarity(a, b, data_range=255) for a, b in zip(images, out, strict=True)])
        rows.append(
            {
                "perturbation": name,
                "severity": sev,
                "params": PERTURBATIONS[name].params(sev),
                "psnr": float(psnr.mean()),
                "psnr_sd": float(psnr.std(ddof=1)) if len(psnr) > 1 else float("nan"),
                "ssim": float(ssim.mean()),
                "ssim_sd": float(ssim.std(ddof=1)) if len(ssim) > 1 else float("nan"),
                "n_images": len(images),
            }
        )
    return pd.DataFrame(rows)


def parameter_markdown() -> str:
    """The registry as a Markdown table: implementation and the parameter of each severity."""
    lines = [
        "| perturbation | implementation | parameter | s1 | s2 | s3 | s4 | s5 | seed matters |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in PERTURBATIONS.values():
        vals = [
            f"{v.bands} x {v.half_width_deg:g}deg, {v.strength:g}" if isinstance(v, ShadowParams) else f"{v:g}"
            for v in e.values
        ]
        parameter = e.parameter or "bands x half-width, attenuation"
        seeded = "yes" if e.stochastic else "no"
        lines.append(f"| {e.name} | {e.description} | {parameter} | {' | '.join(vals)} | {seeded} |")
    return "\n".join(lines) + "\n"


def calibration_markdown(table: pd.DataFrame) -> str:
    """The calibration table as Markdown (one row per perturbation and severity)."""
    lines = ["| perturbation | severity | parameters | PSNR (dB) | SSIM |", "|---|---|---|---|---|"]
    for r in table.itertuples(index=False):
        lines.append(f"| {r.perturbation} | {r.severity} | {r.params} | {r.psnr:.1f} | {r.ssim:.3f} |")
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------- contact sheet
def contact_sheet(
    image: np.ndarray,
    pairs_or_suite: str | Sequence[object] | Mapping[str, object],
    out_png: str | Path,
    seed: int = 0,
    *,
    cell_inches: float = 1.5,
    dpi: int = 100,
) -> Path:
    """Draw one image under each perturbation: rows perturbations, columns clean + severities. Writes PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    image = _check_image(image)
    pairs = resolve_suite(pairs_or_suite)
    names = list(dict.fromkeys(n for n, _ in pairs))
    sevs = sorted({s for _, s in pairs})
    ncol = 1 + len(sevs)
    fig = Figure(figsize=(cell_inches * ncol, cell_inches * len(names) + 0.3), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(names), ncol, squeeze=False)
    chosen = set(pairs)
    for r, name in enumerate(names):
        for c in range(ncol):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if c == 0:
                ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
                ax.set_ylabel(name, fontsize=8)
            elif (name, sevs[c - 1]) in chosen:
                ax.imshow(apply(image, name, sevs[c - 1], seed), cmap="gray", vmin=0, vmax=255,
                          interpolation="nearest")
            if r == 0:
                ax.set_title("clean" if c == 0 else f"severity {sevs[c - 1]}", fontsize=8)
    fig.subplots_adjust(left=0.06, right=0.99, top=1 - 0.3 / fig.get_figheight(), bottom=0.01,
                        wspace=0.04, hspace=0.04)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    import io

    from PIL import Image  # everything drawn is gray: store one channel (a third of the bytes)

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    buf.seek(0)
    with Image.open(buf) as rendered:
        gray = rendered.convert("L")
    save_image(out_png, gray, format="PNG", optimize=True)
    return out_png


_IMAGE_SUFFIXES = IMAGE_EXTS


def _legacy_output(folder: Path) -> list[str] | None:
    """A ``perturb`` output written before output markers existed: ``contact_sheet.png`` and only folders named
    after perturbations (``<perturbation>/s<k>/*.png``); returns those files."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    sheet = folder / "contact_sheet.png"
    if not sheet.is_file() or any(p != sheet and not (p.is_dir() and p.name in PERTURBATIONS) for p in entries):
        return None
    return ["contact_sheet.png", *(p.relative_to(folder).as_posix() for d in entries if d.is_dir()
                                   for p in sorted(d.glob("s*/*.png")))]


def perturb_folder(
    image_dir: str | Path,
    out_dir: str | Path,
    *,
    suite: str | Sequence[object] | Mapping[str, object] = "all",
    severity: int | None = None,
    seed: int = 0,
    size: int | None = None,
    force: bool = False,
    frame: int | None = None,
) -> pd.DataFrame:
    """Write perturbed copies ``OUT/<perturbation>/s<k>/<name>.png`` and ``OUT/contact_sheet.png``.

    Images are read as grayscale; with ``size`` they are first preprocessed as the model sees them
    (longest side to ``size``, zero-padded square). ``severity`` keeps only that level of the suite.
    Each image is seeded from ``(seed, file stem)``. Returns one row per written file: ``image_id,
    perturbation, severity, params, path, psnr, ssim``.

    ``out_dir`` is claimed before any work (:func:`robustseg._outdir.claim_output_dir`): never the image folder or
    inside it, and new, empty or an earlier ``perturb`` output unless ``force``. Files are written into a staging
    folder and moved into place when all were written (a failure leaves no partial output). ``frame`` (1-based)
    chooses the frame of multi-frame images (which are refused without it).
    """
    from PIL import Image
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from robustseg.data.io import read_image

    image_dir, out_dir = expand(image_dir), expand(out_dir)
    if not image_dir.is_dir():
        raise InputError(f"{image_dir}: not a directory; expected a folder of images")
    target = claim_output_dir(out_dir, "perturb", force=force, inputs=(image_dir,), what="output folder",
                              legacy=_legacy_output)
    files = list_images(image_dir)
    if not files:
        raise InputError(f"{image_dir}: no images ({', '.join(_IMAGE_SUFFIXES)}) found")
    pairs = resolve_suite(suite)
    if severity is not None:
        severity = _check_severity(severity)
        pairs = [(n, s) for n, s in pairs if s == severity]
        if not pairs:
            raise InputError(f"severity {severity}: not in suite {suite!r}")
    if size is not None:
        from robustseg.data.transforms import preprocess

    rows = []
    first: np.ndarray | None = None
    with target.staging() as stage:  # a bad image later in the folder leaves nothing written
        for path in files:
            image = read_image(path, frame)
            if size is not None:
                image = preprocess(image, None, size)[0]
            if first is None:
                first = image
            iseed = image_seed(seed, path.stem)
            for name, sev in pairs:
                out = apply(image, name, sev, iseed)
                rel = Path(name) / f"s{sev}" / f"{path.stem}.png"
                (stage / rel).parent.mkdir(parents=True, exist_ok=True)
                save_image(stage / rel, Image.fromarray(out), format="PNG", fsync=False)
                rows.append(
                    {
                        "image_id": path.stem,
                        "perturbation": name,
                        "severity": sev,
                        "params": PERTURBATIONS[name].params(sev),
                        "path": str(target.path / rel),
                        "psnr": float(peak_signal_noise_ratio(image, out, data_range=255)),
                        "ssim": float(structural_similarity(image, out, data_range=255)),
                    }
                )
        assert first is not None
        contact_sheet(first, pairs, stage / "contact_sheet.png", image_seed(seed, files[0].stem))
    return pd.DataFrame(rows)
