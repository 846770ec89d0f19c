"""The contact sheet, the registry / calibration tables as Markdown, and ``robustseg perturb`` folder I/O
(perturbed copies of a folder; ``--calibrate``: the calibration table recomputed on a user's images)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from robustseg._io import save_image
from robustseg._outdir import claim_output_dir, expand
from robustseg.data.geometry import GeometrySetting, ProbeGeometry, resolve_geometry
from robustseg.data.index import IMAGE_EXTS, list_images
from robustseg.errors import InputError
from robustseg.perturb.calibrated import TARGETS
from robustseg.perturb.registry import (
    PERTURBATIONS,
    _check_image,
    _check_severity,
    apply,
    region,
    resolve_suite,
)
from robustseg.perturb.seeding import image_seed


# ------------------------------------------------------------------------------------------------ tables
def _built_ins() -> list[object]:
    """The built-in registry entries (those of the calibration table; plugins are documented by their packages)."""
    from robustseg.perturb.calibrated import CALIBRATED

    return [e for e in PERTURBATIONS.values() if e.name in CALIBRATED]


def parameter_markdown() -> str:
    """The built-in perturbations as a Markdown table: implementation and the knob of each severity."""
    lines = [
        "| perturbation | implementation | parameter | s1 | s2 | s3 | s4 | s5 | seed matters |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in _built_ins():
        vals = [f"{v:g}" for v in e.values]
        seeded = "yes" if e.stochastic else "no"
        lines.append(f"| {e.name} | {e.description} | {e.parameter} | {' | '.join(vals)} | {seeded} |")
    return "\n".join(lines) + "\n"


def physics_markdown() -> str:
    """One bullet per perturbation: what it models, in two sentences with a reference (``Perturbation.physics``)."""
    return "\n".join(f"- `{e.name}`: {e.physics}" for e in _built_ins()) + "\n"


def calibration_markdown(table: pd.DataFrame) -> str:
    """A :func:`robustseg.perturb.calibrate.calibration_table` as Markdown: per perturbation and severity the knob,
    the target, the calibrated SSIM (in-fan, or inside the region for local artefacts), in-fan SSIM and PSNR and the
    region's share of the fan."""
    lines = ["| perturbation | severity | value | target | SSIM (measure) | in-fan SSIM | in-fan PSNR (dB) | region |",
             "|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples(index=False):
        share = f"{100 * r.region_fraction:.0f} % of fan" if r.local else ""
        lines.append(f"| {r.perturbation} | {r.severity} | {r.value:.4g} | {r.target:.2f} | {r.ssim:.3f} ({r.measure}) "
                     f"| {r.ssim_fan:.3f} | {r.psnr_fan:.1f} | {share} |")
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------- contact sheet
def contact_sheet(
    image: np.ndarray,
    pairs_or_suite: str | Sequence[object] | Mapping[str, object],
    out_png: str | Path,
    seed: int = 0,
    *,
    geometry: ProbeGeometry | None = None,
    cell_inches: float = 1.5,
    dpi: int = 100,
) -> Path:
    """Draw one image under each perturbation: rows perturbations, columns clean + severities. Writes PNG.
    ``geometry``: the image's probe geometry (estimated once when not given)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from robustseg.data.geometry import estimate_geometry

    image = _check_image(image)
    geometry = geometry or estimate_geometry(image)
    pairs = resolve_suite(pairs_or_suite)
    names = list(dict.fromkeys(n for n, _ in pairs))
    sevs = sorted({s for _, s in pairs})
    ncol = 1 + len(sevs)
    row_inches = cell_inches * max(0.4, min(1.5, image.shape[0] / image.shape[1]))  # rows as tall as the image is
    fig = Figure(figsize=(cell_inches * ncol + 0.3, row_inches * len(names) + 0.3), dpi=dpi)
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
                ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="antialiased")
                ax.set_ylabel(name, fontsize=7)
            elif (name, sevs[c - 1]) in chosen:
                ax.imshow(apply(image, name, sevs[c - 1], seed, geometry), cmap="gray", vmin=0, vmax=255,
                          interpolation="antialiased")
            if r == 0:
                ax.set_title("clean" if c == 0 else f"severity {sevs[c - 1]}", fontsize=8)
    fig.subplots_adjust(left=0.3 / fig.get_figwidth() + 0.02, right=0.995, top=1 - 0.3 / fig.get_figheight(),
                        bottom=0.005, wspace=0.03, hspace=0.05)
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


# ----------------------------------------------------------------------------------------- folder I/O
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
    stage: str = "native",
    geometry: GeometrySetting | None = None,
    force: bool = False,
    frame: int | None = None,
) -> pd.DataFrame:
    """Write perturbed copies ``OUT/<perturbation>/s<k>/<name>.png`` and ``OUT/contact_sheet.png``.

    Images are read as grayscale and their probe geometry resolved once (``geometry``: the setting; estimated by
    default). With ``size`` the output is what the model sees: ``stage`` ``native`` perturbs the native image,
    then preprocesses it (longest side to ``size``, zero-padded square) exactly like a clean image; ``model``
    preprocesses first and perturbs the small image. ``severity`` keeps only that level of the suite. Each image is
    seeded from ``(seed, file stem)``. Returns one row per written file: ``image_id, perturbation, severity,
    params, stage, path`` and the damage at the perturbed resolution (``ssim_fan, psnr_fan, ssim_region,
    psnr_region, region_fraction``; :mod:`robustseg.perturb.damage`).

    ``out_dir`` is claimed before any work (:func:`robustseg._outdir.claim_output_dir`): never the image folder or
    inside it, and new, empty or an earlier ``perturb`` output unless ``force``. Files are written into a staging
    folder and moved into place when all were written (a failure leaves no partial output). ``frame`` (1-based)
    chooses the frame of multi-frame images (which are refused without it).
    """
    from PIL import Image

    from robustseg.data.io import read_image
    from robustseg.perturb.damage import Reference, measure

    if stage not in ("native", "model"):
        raise InputError(f"stage {stage!r}: expected native or model")
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
    first: tuple[np.ndarray, ProbeGeometry] | None = None
    with target.staging() as staging:  # a bad image later in the folder leaves nothing written
        for path in files:
            native = read_image(path, frame)
            geo = resolve_geometry(native, geometry)
            image, where = native, geo
            if size is not None and stage == "model":
                image, where = preprocess(native, None, size)[0], geo.letterboxed(size)
            if first is None:
                first = (image, where)
            ref, fan = Reference.of(image), where.maps().fan
            iseed = image_seed(seed, path.stem)
            for name, sev in pairs:
                out = apply(image, name, sev, iseed, where)
                damage = measure(ref, out, fan, region(image, name, iseed, where))
                if size is not None and stage == "native":
                    out = preprocess(out, None, size)[0]
                rel = Path(name) / f"s{sev}" / f"{path.stem}.png"
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                save_image(staging / rel, Image.fromarray(out), format="PNG", fsync=False)
                rows.append({"image_id": path.stem, "perturbation": name, "severity": sev,
                             "params": PERTURBATIONS[name].params(sev), "stage": stage,
                             "path": str(target.path / rel), **damage.as_dict()})
        assert first is not None
        contact_sheet(first[0], pairs, staging / "contact_sheet.png", image_seed(seed, files[0].stem),
                      geometry=first[1])
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------ calibration
@dataclass(frozen=True)
class FolderCalibration:
    """``robustseg perturb --calibrate``: the calibration table of the shipped values on a user's images, the spread
    across perturbations per severity, and (when asked) the values that would hit the targets on those images."""

    table: pd.DataFrame
    spread: pd.DataFrame
    """Across the global perturbations, per severity; ``spread_reachable`` leaves out the severities a family cannot
    reach by nature (:data:`robustseg.perturb.calibrated.LIMITED`)."""
    spread_reachable: pd.DataFrame
    spread_local: pd.DataFrame
    fitted: pd.DataFrame | None
    n_images: int


def _calibration_images(data_dir: Path, max_images: int | None) -> tuple[list[np.ndarray], list[str], list[object]]:
    """Images of a folder of images, or of a data set (any layout ``check-data`` reads), with their ``meta.csv``
    geometry where a data set gives one."""
    from robustseg.data.io import read_image

    data_dir = expand(data_dir)
    direct = list_images(data_dir) if data_dir.is_dir() else []
    if direct:
        files = direct[:max_images] if max_images else direct
        return [read_image(p) for p in files], [p.stem for p in files], [None] * len(files)
    from robustseg.data.check import geometry_image
    from robustseg.data.geometry import GEOMETRY_COLUMN
    from robustseg.data.index import detect_source, load_index

    if not data_dir.is_dir():
        raise InputError(f"{data_dir}: not a directory; expected a folder of images or a data set")
    index = load_index(detect_source(data_dir), data_dir)
    if max_images:
        index = index.iloc[:max_images]
    images = [geometry_image(index, i, read_image) for i in range(len(index))]
    given = index[GEOMETRY_COLUMN].tolist() if GEOMETRY_COLUMN in index.columns else [None] * len(index)
    return images, index["image_id"].astype(str).tolist(), given


def calibrate_folder(data_dir: str | Path, *, names: Sequence[str] | None = None, seed: int = 0, fit: bool = False,
                     max_images: int | None = 40, geometry: GeometrySetting | None = None) -> FolderCalibration:
    """Recompute the calibration table on the images of ``data_dir`` (a folder of images or a data set): per
    perturbation and severity the mean in-fan SSIM and PSNR at native resolution (inside the region for local
    artefacts) of the shipped values, and with ``fit`` the knob values that would hit the targets on these images."""
    from robustseg.perturb.calibrate import calibration_table, fit_values, prepare, spread

    images, ids, given = _calibration_images(Path(data_dir), max_images)
    geos = [resolve_geometry(im, geometry, g) for im, g in zip(images, given, strict=True)]
    prepared = prepare(images, ids, geos)
    names = list(PERTURBATIONS) if names is None else list(dict.fromkeys(names))
    table = calibration_table(prepared, names, seed)
    fitted = pd.concat([fit_values(prepared, n, TARGETS, seed) for n in names], ignore_index=True) if fit else None
    from robustseg.perturb.calibrated import LIMITED

    return FolderCalibration(table, spread(table), spread(table, exclude=LIMITED), spread(table, local=True), fitted,
                             len(prepared))
