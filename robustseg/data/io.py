"""Reading and writing images and label masks (PNG) with clear errors for bad files."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from robustseg.data.pixels import luma, to_uint8
from robustseg.errors import InputError
from robustseg.labels import CLASS_NAMES, COLORMAPS

Colormap = Mapping[tuple[int, int, int], int]

LABELS = "labels"
"""The colour-map name meaning: masks hold class indices, no colours (nnU-Net data sets)."""


MAX_IMAGE_PIXELS = 64_000_000
"""Largest image robustseg decodes (8000 x 8000). Ultrasound frames are about 1000 x 700; anything this big
is a mistake or a decompression bomb, and would need gigabytes once decoded and resized."""

_GREY_MODES = ("1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _parse_colour(colour: object) -> tuple[int, ...]:
    if isinstance(colour, str):
        text = colour.strip()
        if text.startswith("#") and len(text) == 7:
            return tuple(int(text[i:i + 2], 16) for i in (1, 3, 5))
        return tuple(int(c) for c in text.strip("()[] ").replace(";", ",").split(","))
    return tuple(int(c) for c in colour)  # type: ignore[attr-defined]


def _parse_label(label: object) -> int:
    if isinstance(label, str) and not label.strip().lstrip("-").isdigit():
        key = label.strip().lower()
        if key not in CLASS_NAMES:
            raise ValueError(label)
        return CLASS_NAMES.index(key)
    return int(label)  # type: ignore[call-overload]


def resolve_colormap(colormap: str | Colormap | object) -> dict[tuple[int, int, int], int]:
    """Return the colour -> label dict for a name (``pascal``/``rgb``) or an explicit table.

    An explicit table maps colours to labels: keys ``(r, g, b)`` tuples, ``"r,g,b"`` strings (what a TOML
    table holds) or ``"#rrggbb"``; values label indices or class names. A list of ``(colour, label)`` pairs
    (the canonical form, :func:`canonical_colormap`) is accepted too.
    """
    if isinstance(colormap, str):
        key = colormap.strip().lower()
        if key not in COLORMAPS:
            raise InputError(f"colormap {colormap!r}: unknown; expected one of {sorted(COLORMAPS)} or a table "
                             "of 'r,g,b' = label")
        return dict(COLORMAPS[key])
    if isinstance(colormap, Mapping):
        items = list(colormap.items())
    elif isinstance(colormap, list | tuple) and all(isinstance(p, list | tuple) and len(p) == 2 for p in colormap):
        items = [tuple(p) for p in colormap]
    else:
        raise InputError(f"colormap {colormap!r}: expected 'pascal', 'rgb' or a table of 'r,g,b' = label")
    out: dict[tuple[int, int, int], int] = {}
    for colour, label in items:
        try:
            rgb = _parse_colour(colour)
        except (TypeError, ValueError):
            raise InputError(f"colormap: colour {colour!r} is not an (r, g, b) triple of 0..255") from None
        if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
            raise InputError(f"colormap: colour {colour!r} is not an (r, g, b) triple of 0..255")
        try:
            value = _parse_label(label)
        except (TypeError, ValueError):
            value = -1
        if not 0 <= value < len(CLASS_NAMES):
            raise InputError(f"colormap: label {label!r} for {colour!r} outside 0..{len(CLASS_NAMES) - 1} "
                             f"(or a class name of {list(CLASS_NAMES)})")
        if rgb in out and out[rgb] != value:  # type: ignore[comparison-overlap]
            raise InputError(f"colormap: colour {colour!r} is given twice, as {out[rgb]} and {value}")  # type: ignore[index]
        out[rgb] = value  # type: ignore[index]
    if (0, 0, 0) not in out:
        out[(0, 0, 0)] = 0
    return out


def canonical_colormap(colormap: object) -> str | tuple[tuple[tuple[int, int, int], int], ...]:
    """A hashable, JSON-stable form of a colour map: a lower-case name, or sorted ``((r, g, b), label)`` pairs.

    Validates like :func:`resolve_colormap`. Used where a colour map is part of a cache key or a run id.
    """
    if isinstance(colormap, str):
        if colormap == LABELS:
            return LABELS
        resolve_colormap(colormap)
        return colormap.strip().lower()
    return tuple(sorted(resolve_colormap(colormap).items()))


SUPPORTED_FORMATS = frozenset({"PNG", "JPEG", "MPO", "BMP", "TIFF"})
"""Pillow formats robustseg reads (MPO: a camera JPEG with an extra preview picture; its first picture is read).
DICOM goes through :data:`FORMAT_READERS`."""

UNSUPPORTED_FORMATS = {".gif": "GIF", ".webp": "WebP", ".heic": "HEIC", ".heif": "HEIF", ".avif": "AVIF",
                       ".jp2": "JPEG 2000", ".j2k": "JPEG 2000", ".jpx": "JPEG 2000", ".svg": "SVG", ".pdf": "PDF",
                       ".psd": "Photoshop", ".ico": "icon", ".tga": "TGA", ".ppm": "PPM", ".pgm": "PGM",
                       ".nii": "NIfTI", ".gz": "compressed", ".nrrd": "NRRD", ".mha": "MetaImage",
                       ".mhd": "MetaImage", ".raw": "raw", ".avi": "video", ".mp4": "video", ".mov": "video",
                       ".zip": "zip archive"}
"""Image-like files robustseg does not read, by suffix: named in the error instead of being skipped silently."""

READ_HINT = "expected PNG, JPEG, BMP or TIFF (or DICOM with data.source = 'dicom')"

EXIF_ORIENTATION = 0x0112
"""The EXIF tag that says how a camera or scanner export is to be turned for display (1: as stored)."""


def reject_unsupported(path: Path, what: str = "image") -> None:
    """InputError when ``path`` has the suffix of a format robustseg does not read (GIF, WebP, HEIC, ...)."""
    name = path.name.lower()
    kind = UNSUPPORTED_FORMATS.get(path.suffix.lower())
    if kind == "compressed" and not name.endswith(".nii.gz"):
        return
    if kind:
        kind = "NIfTI" if name.endswith(".nii.gz") else kind
        raise InputError(f"{path}: {kind} {what}s are not supported; {READ_HINT}: convert it, e.g. to PNG")


def _orientation(img: Image.Image) -> int:
    try:
        value = int(img.getexif().get(EXIF_ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block: read the pixels as stored
        return 1
    return value if 1 <= value <= 8 else 1


def _open(path: Path, frame: int | None = None, what: str = "image") -> Image.Image:
    """Open and decode an image with the one reader policy; every problem is an InputError naming the file.

    - formats: :data:`SUPPORTED_FORMATS` (by content, whatever the suffix); others are named (a GIF, WebP, ...);
    - size: at most :data:`MAX_IMAGE_PIXELS` (decompression bombs);
    - frames: a multi-frame file (multi-page TIFF) is refused unless ``frame`` (1-based) chooses one;
    - EXIF orientation (tag 274, set by cameras and some scanner exports) is applied, so the pixels are those a
      viewer shows and a mask drawn on the displayed image lines up (a rotated JPEG no longer fails with a size
      mismatch, and a square one is no longer silently misaligned).
    """
    import warnings

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found" if not path.is_dir() else f"{path}: is a folder; expected an {what}")
    too_big = (f"{path}: image of {{}} pixels is larger than the limit of {MAX_IMAGE_PIXELS} "
               "(robustseg.data.io.MAX_IMAGE_PIXELS); expected an ordinary image, not a decompression bomb")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            if img.format not in SUPPORTED_FORMATS:
                named = f" (named {path.suffix})" if path.suffix else ""
                raise InputError(f"{path}: {img.format} {what}s are not supported{named}; {READ_HINT}: convert it, "
                                 "e.g. to PNG")
            n = int(getattr(img, "n_frames", 1) or 1) if img.format != "MPO" else 1
            if n > 1 and frame is None:
                raise InputError(f"{path}: {what} has {n} frames (a multi-page {img.format}); expected a single "
                                 f"{what}, or choose the frame to read with data.frame = K (1-{n}), --frame K")
            if frame is not None and n > 1:
                if not 1 <= int(frame) <= n:
                    raise InputError(f"{path}: frame {frame} does not exist; the {what} has frames 1-{n}")
                img.seek(int(frame) - 1)
            w, h = img.size
            if w * h > MAX_IMAGE_PIXELS:
                raise InputError(too_big.format(f"{w} x {h} = {w * h}"))
            img.load()
            if _orientation(img) != 1:
                from PIL import ImageOps

                img = ImageOps.exif_transpose(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(too_big.format(str(exc).split(" pixels")[0].split("(")[-1].strip() or "too many")) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: unreadable or truncated {what} ({msg}); {READ_HINT}") from None
    return img


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` as read (EXIF orientation applied) from the header alone (no decoding); oversized
    images are InputErrors."""
    import warnings

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                fmt = img.format
                turned = _orientation(img) >= 5  # 5-8: rotated by 90 degrees, width and height swap
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, UnidentifiedImageError, OSError,
            SyntaxError, ValueError, EOFError):
        return _open(path).size[::-1]  # decoding names the problem
    if w * h > MAX_IMAGE_PIXELS or fmt not in SUPPORTED_FORMATS:
        _open(path)
    return (w, h) if turned else (h, w)


def orientation_hint(path: str | Path) -> str:
    """A clause for size-mismatch errors: the EXIF orientation robustseg applied to ``path`` (empty if none)."""
    try:
        with Image.open(path) as img:
            value = _orientation(img)
    except Exception:  # noqa: BLE001 - only a hint
        return ""
    if value == 1:
        return ""
    turn = {2: "mirrored", 3: "rotated 180 degrees", 4: "flipped", 5: "transposed", 6: "rotated 90 degrees",
            7: "transversed", 8: "rotated 270 degrees"}[value]
    return (f" ({Path(path).name} carries EXIF orientation {value}: it is {turn} for display, and robustseg reads it "
            "as displayed; the mask must be drawn on the displayed image)")


def _read_dicom(path: Path, frame: int | None) -> np.ndarray:
    from robustseg.data.dicom import read_dicom_image

    return read_dicom_image(path, frame, MAX_IMAGE_PIXELS)


def _is_dicom(path: Path) -> bool:
    from robustseg.data.dicom import is_dicom

    return is_dicom(path)


FORMAT_READERS: list[tuple[str, Callable[[Path], bool], Callable[[Path, int | None], np.ndarray]]] = [
    ("DICOM", _is_dicom, _read_dicom),
]
"""The extension point of :func:`read_image`: ``(name, claims(path), read(path, frame) -> uint8 (H, W))``, tried in
order before Pillow. A format added here follows the same policy (one frame, display orientation, the 8-bit rule
of :func:`robustseg.data.pixels.to_uint8`, one error line naming the file)."""


def read_image(path: str | Path, frame: int | None = None) -> np.ndarray:
    """Read an image as uint8 grayscale ``(H, W)``: the one image reader (policy in :func:`_open`).

    RGB (and palette, CMYK, YCbCr, via Pillow's conversion to RGB) with ITU-R 601 luma; an alpha channel is
    dropped; 16/32-bit and float images follow the 8-bit rule of :func:`robustseg.data.pixels.to_uint8`. Other
    modes are InputErrors. ``frame`` (1-based) chooses the frame of a multi-frame file (required for one). Formats
    of :data:`FORMAT_READERS` (DICOM: ``.dcm``/``.dicom``, or the ``DICM`` marker) are read by their reader.
    """
    path = Path(path)
    for _, claims, read in FORMAT_READERS:
        if claims(path):
            return read(path, frame)
    img = _open(path, frame)
    if img.mode in ("LA", "La"):
        img = img.getchannel("L")
    elif img.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        img = img.convert("RGB")  # CMYK: Pillow inverts the inks, so dark stays dark
    elif img.mode not in _GREY_MODES + ("RGB", "RGBA"):
        raise InputError(f"{path}: image mode {img.mode!r} is not supported; expected grey, RGB or palette")
    arr = to_uint8(np.asarray(img))
    if arr.ndim == 3:
        arr = luma(arr)
    return np.ascontiguousarray(arr)


def _rgb_to_labels(rgb: np.ndarray, cmap: dict[tuple[int, int, int], int], path: Path) -> np.ndarray:
    code = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    uniq, inverse, counts = np.unique(code.ravel(), return_inverse=True, return_counts=True)
    lut = np.empty(len(uniq), dtype=np.int64)
    for i, c in enumerate(uniq):
        colour = (int(c) >> 16 & 255, int(c) >> 8 & 255, int(c) & 255)
        if colour not in cmap:
            raise InputError(
                f"{path}: mask colour {colour} ({int(counts[i])} pixels) is not in the colour map "
                f"{sorted(cmap)}; expected only mapped colours"
            )
        lut[i] = cmap[colour]
    return lut[inverse].reshape(code.shape).astype(np.uint8)


def _palette_labels(img: Image.Image, cmap: dict[tuple[int, int, int], int], path: Path,
                    num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """Labels of a palette mask: through the colour map, or the indices themselves when every used palette
    entry is the grey ``(i, i, i)`` of its own index (the "grey palette" many tools write)."""
    idx = np.asarray(img)
    pal = np.asarray(img.getpalette("RGB") or [], dtype=np.int64).reshape(-1, 3)
    counts = np.bincount(idx.ravel(), minlength=256)
    used = np.flatnonzero(counts)
    colours = {int(i): tuple(int(c) for c in pal[i]) if i < len(pal) else (0, 0, 0) for i in used}
    if all(colours[i] == (i, i, i) for i in used) and any(colours[i] not in cmap for i in used):
        return _integer_labels(idx.astype(np.int64), path, num_classes)
    lut = np.zeros(256, dtype=np.uint8)
    for i in used:
        colour = colours[int(i)]
        if colour not in cmap:
            raise InputError(
                f"{path}: mask colour {colour} ({int(counts[i])} pixels) is not in the colour map "
                f"{sorted(cmap)}; expected only mapped colours"
            )
        lut[i] = cmap[colour]
    return lut[idx]


def _integer_labels(arr: np.ndarray, path: Path, num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    bad = (arr >= num_classes) | (arr < 0)
    if bad.any():
        vals, counts = np.unique(arr[bad], return_counts=True)
        raise InputError(
            f"{path}: label value {int(vals[0])} ({int(counts[0])} pixels) outside 0..{num_classes - 1}; "
            "expected an integer-label mask"
        )
    return arr.astype(np.uint8)


def read_labels(path: str | Path, num_classes: int) -> np.ndarray:
    """Read an integer-label PNG (nnU-Net convention: pixel value = class index) as uint8 ``(H, W)``.

    Grayscale and 16-bit PNGs give their values, palette PNGs their palette indices (the colours are
    ignored). A value ``>= num_classes`` raises InputError.
    """
    path = Path(path)
    img = _open(path, what="mask")
    if img.mode not in ("P", "L", "I", "I;16", "1"):
        raise InputError(f"{path}: {img.mode} label image; expected a single-channel integer-label PNG "
                         "(nnU-Net: pixel value = class index)")
    arr = np.asarray(img).astype(np.int64)
    bad = arr >= num_classes
    if bad.any():
        vals, counts = np.unique(arr[bad], return_counts=True)
        raise InputError(f"{path}: label value {int(vals[0])} ({int(counts[0])} pixels) outside 0..{num_classes - 1}; "
                         "expected the labels of dataset.json")
    return arr.astype(np.uint8)


def write_labels(path: str | Path, labels: np.ndarray, *, fsync: bool = False) -> None:
    """Write ``labels`` (uint8 ``(H, W)``) as a grayscale integer-label PNG (nnU-Net convention), atomically."""
    from robustseg._io import save_image

    lab = np.ascontiguousarray(np.asarray(labels).astype(np.uint8))
    assert lab.ndim == 2, "labels must be (H, W)"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(path, Image.fromarray(lab), format="PNG", fsync=fsync, compress_level=6)


def _opaque(alpha: np.ndarray, path: Path) -> None:
    if alpha.size and int(alpha.min()) < 255:
        n = int((alpha < 255).sum())
        raise InputError(f"{path}: mask has {n} transparent or semi-transparent pixels; expected an opaque mask "
                         "(labels cannot be read through transparency)")


def read_mask(path: str | Path, colormap: str | Colormap | object = "pascal",
              num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """Read a label mask as uint8 ``(H, W)`` with values ``0..C-1`` (``C = num_classes``, the fetal four by
    default).

    Palette PNGs are looked up through their palette (a grey palette, entry ``i`` = ``(i, i, i)``, gives the
    indices as labels), RGB PNGs through ``colormap``; single-channel masks (8/16-bit, or grey + an opaque
    alpha channel) are integer labels (values must be < C). A colour outside the map, transparency, and
    modes that cannot hold exact labels (CMYK, float) raise InputError naming the file. ``colormap`` ``"labels"``:
    every mask holds class indices (nnU-Net; values checked by the caller against its class list). A DICOM SEG
    (:func:`robustseg.data.dicom_seg.read_seg_labels`) gives the classes its segment labels name.
    """
    path = Path(path)
    from robustseg.data.dicom import is_dicom

    if is_dicom(path):  # a DICOM SEG: segment labels name the classes
        from robustseg.data.dicom_seg import read_seg_labels

        return read_seg_labels(path, CLASS_NAMES[:num_classes])
    if isinstance(colormap, str) and colormap == LABELS:  # nnU-Net: every mask holds class indices
        return read_labels(path, 256)
    cmap = resolve_colormap(colormap)
    img = _open(path, what="mask")
    mode = img.mode
    if mode == "P" and "transparency" not in img.info:
        return _palette_labels(img, cmap, path, num_classes)
    if mode in ("P", "PA", "RGBA"):
        rgba = np.asarray(img.convert("RGBA"))
        _opaque(rgba[..., 3], path)
        return _rgb_to_labels(rgba[..., :3], cmap, path)
    if mode == "RGB":
        return _rgb_to_labels(np.asarray(img), cmap, path)
    if mode in ("LA", "La"):
        arr = np.asarray(img)
        _opaque(arr[..., 1], path)
        return _integer_labels(arr[..., 0].astype(np.int64), path, num_classes)
    if mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N"):
        return _integer_labels(np.asarray(img).astype(np.int64), path, num_classes)
    raise InputError(f"{path}: mask mode {mode!r} cannot hold exact labels; expected a palette, RGB or "
                     "8/16-bit grey PNG")


def write_mask(path: str | Path, labels: np.ndarray, colormap: str | Colormap = "pascal", *,
               fsync: bool = False) -> None:
    """Write ``labels`` (uint8 ``(H, W)``, values ``0..C-1``) as a palette PNG coloured by ``colormap``
    (``"labels"``: a grayscale integer-label PNG, :func:`write_labels`), atomically (``fsync`` off by default:
    masks are written in bulk, into staging or run folders that are verified or published as a whole)."""
    from robustseg._io import save_image

    if isinstance(colormap, str) and colormap == LABELS:
        write_labels(path, labels, fsync=fsync)
        return
    cmap = resolve_colormap(colormap)
    labels = np.asarray(labels)
    assert labels.ndim == 2, "labels must be (H, W)"
    inv = {label: colour for colour, label in sorted(cmap.items(), key=lambda kv: kv[0], reverse=True)}
    inv[0] = (0, 0, 0)
    n = max(len(CLASS_NAMES), max(cmap.values()) + 1)  # the colour map's classes (the fetal four by default)
    palette = np.zeros((256, 3), dtype=np.uint8)
    for label in range(n):
        palette[label] = inv.get(label, (0, 0, 0))
    assert labels.size == 0 or int(labels.max()) < n, "labels outside 0..C-1"
    lab = np.ascontiguousarray(labels.astype(np.uint8))
    img = Image.frombytes("P", (lab.shape[1], lab.shape[0]), lab.tobytes())
    img.putpalette(palette.ravel().tolist())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(path, img, format="PNG", fsync=fsync, compress_level=6)
