"""nnU-Net v2 raw 2D data sets (``data.source = "nnunet"``): read them, and write one (e.g. from the phantom).

Layout (https://github.com/MIC-DKFZ/nnUNet/blob/master/documentation/dataset_format.md)::

    DatasetXXX_Name/
      dataset.json          {"channel_names": {"0": ...}, "labels": {"background": 0, "brain": 1, ...},
                             "numTraining": N, "file_ending": ".png"}
      imagesTr/<case>_0000.png    one channel (grayscale; RGB is converted to luma)
      labelsTr/<case>.png         integer labels (pixel value = class index)
      meta.csv              optional: one row per case, columns ``image_id`` (the case id), ``patient_id``,
                            ``pixel_mm`` and any metadata (the same file as the generic folder layout)

The class list is the data set's: ``labels`` of dataset.json ordered by value, which must be 0..C-1 (region-
based labels are not supported). Patients: from ``meta.csv`` when given, else from a ``PatientNNN`` part of
the case id, else each case is its own patient. Pixel sizes: from ``meta.csv`` (nnU-Net's PNG reader has no
spacing), else unknown (boundary distances then in pixels).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from robustseg.data.io import read_image, read_labels, write_labels
from robustseg.errors import InputError

CHANNEL = "_0000"


def read_dataset_json(root: str | Path) -> tuple[tuple[str, ...], str]:
    """``(class names in label order, file ending)`` from ``root/dataset.json`` (or ``root`` itself when it is a
    JSON file). Label 0 must be named ``background`` (as nnU-Net requires)."""
    root = Path(root)
    path = root if root.is_file() and root.suffix.lower() == ".json" else root / "dataset.json"
    if not path.is_file():
        raise InputError(f"{root}: no dataset.json; expected an nnU-Net v2 raw data set folder")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    labels = meta.get("labels") if isinstance(meta, dict) else None
    if not isinstance(labels, dict) or not labels:
        raise InputError(f"{path}: key 'labels' missing or empty; expected {{\"background\": 0, \"name\": 1, ...}}")
    if any(not isinstance(v, int) or isinstance(v, bool) for v in labels.values()):
        raise InputError(f"{path}: 'labels' values {list(labels.values())}; expected integers (region-based labels "
                         "are not supported)")
    by_value = sorted(labels.items(), key=lambda kv: kv[1])
    if [v for _, v in by_value] != list(range(len(by_value))):
        raise InputError(f"{path}: 'labels' values {sorted(labels.values())}; expected 0..{len(labels) - 1}, each once")
    if by_value[0][0] != "background" or len(by_value) < 2:
        raise InputError(f"{path}: 'labels' {dict(by_value)}; expected \"background\": 0 and at least one "
                         "foreground class")
    ending = meta.get("file_ending", ".png")
    if ending.lower() != ".png":
        raise InputError(f"{path}: file_ending {ending!r}; expected '.png' (2D data sets)")
    channels = meta.get("channel_names", {"0": "image"})
    if isinstance(channels, dict) and len(channels) != 1:
        raise InputError(f"{path}: {len(channels)} channels in 'channel_names'; expected one (grayscale)")
    return tuple(str(k) for k, _ in by_value), ending


def nnunet_rows(root: str | Path, verify: bool = False) -> tuple[list[dict], tuple[str, ...]]:
    """Index rows (``image_id`` = case id, paths, size, ``px_<class>``, ``has_<class>``) and the class names.

    ``patient_id`` is the case id here; :func:`robustseg.data.index.load_index` derives patients from it.
    """
    root = Path(root)
    names, ending = read_dataset_json(root)
    img_dir, lab_dir = root / "imagesTr", root / "labelsTr"
    for d in (img_dir, lab_dir):
        if not d.is_dir():
            raise InputError(f"{root}: no {d.name}/ folder; expected imagesTr/ and labelsTr/")
    images = {p.name[: -len(CHANNEL + ending)]: p for p in sorted(img_dir.glob(f"*{CHANNEL}{ending}"))}
    others = sorted(p.name for p in img_dir.glob(f"*{ending}") if not p.name.endswith(CHANNEL + ending))
    if others:
        raise InputError(f"{img_dir}: {others[0]} is not a channel-0 image; expected <case>{CHANNEL}{ending} "
                         "(one channel per case)")
    labels = {p.name[: -len(ending)]: p for p in sorted(lab_dir.glob(f"*{ending}"))}
    if not images:
        raise InputError(f"{img_dir}: no <case>{CHANNEL}{ending} images")
    missing = sorted(set(images) ^ set(labels))
    if missing:
        raise InputError(f"{root}: case {missing[0]!r} has an image or a label but not both "
                         f"({len(missing)} such cases); expected imagesTr/<case>{CHANNEL}{ending} + labelsTr/<case>{ending}")
    rows = []
    for case in sorted(images):
        lab = read_labels(labels[case], len(names))
        if verify:
            h, w = read_image(images[case]).shape
        else:
            from PIL import Image

            with Image.open(images[case]) as img:
                w, h = img.size
        if lab.shape != (h, w):
            raise InputError(f"{labels[case]}: label size {lab.shape[1]}x{lab.shape[0]} differs from image size {w}x{h}")
        counts = np.bincount(lab.ravel(), minlength=len(names))
        row = {"image_id": case, "image_path": str(images[case]), "mask_path": str(labels[case]),
               "patient_id": case, "plane": "", "pixel_mm": float("nan"),
               "height": int(h), "width": int(w)}
        row.update({f"px_{c}": int(n) for c, n in zip(names, counts, strict=True)})
        row.update({f"has_{c}": bool(n > 0) for c, n in zip(names[1:], counts[1:], strict=True)})
        rows.append(row)
    return rows, names


def write_nnunet(index: pd.DataFrame, out: str | Path, class_names: Sequence[str], *, colormap: object = "pascal",
                 name: str = "phantom", force: bool = False) -> Path:
    """Write the images and masks of ``index`` (a :func:`robustseg.data.index.load_index` table) as an nnU-Net v2
    raw 2D data set in ``out`` (with ``meta.csv`` holding patients and pixel sizes). Returns ``out``.

    ``out`` is claimed like every output folder (new, empty or an earlier export; never a folder of the data set)
    and written through a staging folder, so a failure leaves nothing behind."""
    from PIL import Image

    from robustseg._io import save_image, write_csv, write_text
    from robustseg._outdir import claim_output_dir
    from robustseg.data.io import read_mask

    inputs = sorted({str(Path(p).parent) for p in index["image_path"]} | {str(Path(p).parent) for p in index["mask_path"]})
    target = claim_output_dir(out, "nnunet-export", force=force, inputs=inputs, what="nnU-Net folder")
    with target.staging() as stage:
        (stage / "imagesTr").mkdir(parents=True, exist_ok=True)
        (stage / "labelsTr").mkdir(parents=True, exist_ok=True)
        for r in index.itertuples(index=False):
            save_image(stage / "imagesTr" / f"{r.image_id}{CHANNEL}.png", Image.fromarray(read_image(r.image_path)),
                       format="PNG", fsync=False)
            write_labels(stage / "labelsTr" / f"{r.image_id}.png", read_mask(r.mask_path, colormap))
        meta = {"channel_names": {"0": "US"}, "labels": {c: i for i, c in enumerate(class_names)},
                "numTraining": int(len(index)), "file_ending": ".png", "name": name}
        write_text(stage / "dataset.json", json.dumps(meta, indent=2) + "\n")
        write_csv(stage / "meta.csv", index[["image_id", "patient_id", "pixel_mm"]])
    return target.path
