"""Builders of the corpus inputs: real-looking data sets, Excel-style tables, odd images, and byte snapshots.

Everything is generated at test time from code (no binary blobs in the repository). ``python tests/corpus/build.py
OUT`` writes every case's inputs under ``OUT/<case>/`` for inspection.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

PLANE = "Trans-thalamic"
NAMES = ("Patient00007_Plane3_1_of_2", "Patient00007_Plane3_2_of_2", "Patient00168_Plane3_1_of_1",
         "Patient00201_Plane3_1_of_3", "Patient00201_Plane3_2_of_3", "Patient00201_Plane3_3_of_3")
PASCAL = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0)}


def arrays(i: int, h: int = 48, w: int = 64, *, lv: bool = True, csp: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A small grey ultrasound-like image (RGB) and its label map: brain everywhere inside, CSP / LV blobs."""
    rng = np.random.default_rng(1000 + i)
    img = (rng.random((h, w)) * 60 + 40).astype(np.uint8)
    lab = np.zeros((h, w), dtype=np.uint8)
    lab[6:-6, 8:-8] = 1
    img[6:-6, 8:-8] += 60
    if csp and i % 2 == 0:
        lab[14:20, 20:30] = 2
    if lv and i % 3 != 2:
        lab[26:34, 34:44] = 3
    img[lab >= 2] //= 3
    return np.repeat(img[..., None], 3, axis=2), lab


def palette_png(lab: np.ndarray) -> Image.Image:
    img = Image.fromarray(lab.astype(np.uint8), mode="P")
    pal = [0] * 768
    for k, rgb in PASCAL.items():
        pal[3 * k:3 * k + 3] = rgb
    img.putpalette(pal)
    return img


def images_dir(root: Path) -> Path:
    return root / PLANE / PLANE


def masks_dir(root: Path) -> Path:
    return root / PLANE / f"{PLANE}-PASCAL" / "SegmentationClass"


def pixel_csv_excel(names: list[str] | tuple[str, ...]) -> bytes:
    """The pixel-size CSV as a German-locale Excel writes it: UTF-8 BOM, ';', decimal commas, CRLF, ';;' rows."""
    rows = ["Label;Pixel in mm;;"] + [f"{n}.png;0,{120 + i:d};;" for i, n in enumerate(names)] + [";;;", ";;;"]
    return ("\ufeff" + "\r\n".join(rows) + "\r\n").encode("utf-8")


def real_looking_dataset(root: Path, names: tuple[str, ...] = NAMES, *, extras: bool = True, lv: bool = True,
                         csp: bool = True) -> Path:
    """Layout 1 of the Large-Scale Fetal Head Biometry set with the real file names, an Excel pixel-size CSV,
    a meta.csv, and the other files a research folder holds (notes, a spreadsheet, OS litter)."""
    pdir = root / PLANE
    img_dir, mask_dir = pdir / PLANE, pdir / f"{PLANE}-PASCAL" / "SegmentationClass"
    img_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        img, lab = arrays(i, lv=lv, csp=csp)
        Image.fromarray(img).save(img_dir / f"{name}.png")
        palette_png(lab).save(mask_dir / f"{name}.png")
    (pdir / "Trans-Thalamic-Pixel-Size.csv").write_bytes(pixel_csv_excel(names))
    (pdir / "meta.csv").write_text("image_id,patient_id,sonographer\n" + "".join(
        f"{n},{n.split('_')[0]},A{i % 2}\n" for i, n in enumerate(names)), encoding="utf-8")
    if extras:
        (root / "README.txt").write_text("Do not modify: original exports from the scanner, 2019-2021.\r\n")
        (root / "annotations log.xlsx").write_bytes(_xlsx_like())
        (pdir / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" + bytes(60))
    return root


def _xlsx_like() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook/>")
    return buf.getvalue()


def snapshot(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file and ``{relative path/: 'dir'}`` of every folder under ``root``."""
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_dir() and not p.is_symlink():
            out[rel + "/"] = "dir"
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = "link"
    return out


TEMP_NAME = re.compile(r"(\.tmp-\d+$)|(^\.robustseg-staging)")


def half_written(root: Path, before: dict[str, str] | None = None) -> list[str]:
    """Files under ``root`` that are temporaries or do not parse as what their name says (PNG, CSV, JSON, NPZ,
    gzip): what a full disk must never leave behind. Empty list when everything is whole. Files that ``before``
    (a :func:`snapshot`) holds with the same bytes are inputs, not outputs, and are not judged."""
    import pandas as pd

    bad = []
    if not root.exists():
        return bad
    now = snapshot(root) if before else {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if before and rel in before and before[rel] == now.get(rel):
            continue
        if TEMP_NAME.search(p.name):
            bad.append(f"{rel} (temporary)")
            continue
        if not p.is_file():
            continue
        try:
            name = p.name.lower()
            if name.endswith((".png", ".jpg", ".tif", ".tiff")):
                with Image.open(p) as im:
                    im.load()
            elif name.endswith((".csv", ".csv.gz")):
                pd.read_csv(p)
            elif name.endswith(".json"):
                json.loads(p.read_text(encoding="utf-8"))
            elif name.endswith(".npz"):
                with np.load(p, allow_pickle=False) as z:
                    for k in z.files:
                        z[k]
            elif name.endswith(".gz"):
                with gzip.open(p) as fh:
                    fh.read()
            elif name.endswith(".md"):
                p.read_text(encoding="utf-8")
        except Exception as exc:  # noqa: BLE001 - any failure to parse is the finding
            bad.append(f"{rel} ({type(exc).__name__})")
    return bad


if __name__ == "__main__":
    import sys

    from cases import build_all  # type: ignore[import-not-found]

    build_all(Path(sys.argv[1]))


def folder_dataset(root: Path, names: tuple[str, ...] = NAMES[:4], *, meta: bytes | None = None,
                   image_ext: str = ".png") -> Path:
    """Layout 2: ``images/`` and ``masks/`` with matching names (PNG masks), optionally a ``meta.csv`` of bytes."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        img, lab = arrays(i)
        Image.fromarray(img).save(root / "images" / f"{name}{image_ext}")
        palette_png(lab).save(root / "masks" / f"{name}.png")
    if meta is not None:
        (root / "meta.csv").write_bytes(meta)
    return root


def exif_jpeg(path: Path, displayed: np.ndarray, orientation: int) -> None:
    """A JPEG whose stored pixels, turned by EXIF ``orientation`` (3: 180 degrees, 6: 90 degrees clockwise for
    display), show ``displayed``: what a camera or a scanner export writes."""
    from PIL import ImageOps

    stored = {3: lambda a: np.rot90(a, 2), 6: lambda a: np.rot90(a, 1), 8: lambda a: np.rot90(a, -1)}[orientation](
        displayed)
    img = Image.fromarray(np.ascontiguousarray(stored))
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(path, quality=100, subsampling=0, exif=exif.tobytes())
    check = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    assert check.shape[:2] == displayed.shape[:2]


def multipage_tiff(path: Path, pages: list[np.ndarray]) -> None:
    first, *rest = [Image.fromarray(p) for p in pages]
    first.save(path, save_all=True, append_images=rest)
