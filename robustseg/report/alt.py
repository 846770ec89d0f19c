"""Alt text of every report figure: what the figure shows (chart type, axes, encodings, which arms and classes),
made from the same results as the figure, so a reader who cannot see it (screen reader, text-only review)
knows what it holds and where its numbers are."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from robustseg.labels import display_name
from robustseg.report.compute import Results, structure_measures
from robustseg.report.figures import COLOR_NAMES, MISMATCH_CAP, MISMATCH_COLOR, class_colors


def _list(items: Sequence[str]) -> str:
    items = [str(i) for i in items]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _classes(res: Results) -> str:
    return _list([display_name(c) for c in res.inputs.class_names[1:]])


def _small(res: Results) -> str:
    return _list([display_name(c) for c in res.inputs.small])


def _arms(res: Results) -> str:
    return ("arm " if len(res.arms) == 1 else "arms ") + _list([f"'{a}'" for a in res.arms])


def _colours(res: Results) -> str:
    colors = class_colors(res.inputs.class_names)
    return ", ".join(f"{display_name(c)} {COLOR_NAMES.get(colors[c], colors[c])}" for c in res.inputs.class_names[1:])


def spread(res: Results) -> str:
    return (f"Box plots with one point per run: run-level Dice (y axis, 0 to 1) of {_classes(res)} (one column each), "
            f"global Dice in the top row and per-image Dice in the bottom row, for {_arms(res)} (x axis); the marker "
            "shape gives the fold. Values: tables/run_level.csv.")


def robustness(res: Results) -> str:
    rob = res.tables.get("robustness", pd.DataFrame())
    conds = [str(p) for p in pd.unique(rob["perturbation"])] if not rob.empty else []
    perts = [p for p in conds if p != "none" and not p.startswith("external: ")]
    ext = [p.removeprefix("external: ") for p in conds if p.startswith("external: ")]
    arms = f"; {_arms(res)} by line style" if len(res.arms) > 1 else ""
    text = (f"Line charts, one panel per perturbation ({_list(perts)}): mean Dice over runs (y axis, 0 to 1) against "
            f"severity (x axis, 0 = clean) for {_classes(res)} (colours: {_colours(res)}{arms}), shaded band ± SD "
            "over runs")
    if ext:
        text += f"; a last panel of bars compares the held-out test set with the external sets {_list(ext)}"
    return text + ". Values: tables/robustness.csv."


def damage(res: Results) -> str:
    dmg = res.tables.get("damage", pd.DataFrame())
    perts = sorted(pd.unique(dmg["perturbation"]).astype(str)) if not dmg.empty else []
    return (f"Line charts, one panel per structure ({_small(res)}): Dice retention of arm '{res.baseline}' (y axis, "
            "perturbed over clean Dice, mean over runs) against image damage (x axis, mean SSIM from 1 = clean "
            "downwards; in the fan, or inside the region a local artefact acts on), one coloured line per "
            f"perturbation ({_list(perts)}) from the clean point through its severities; a line lower at the same "
            "SSIM costs more Dice per unit of image damage. Values: tables/robustness.csv and tables/damage.csv.")


def bland_altman(res: Results) -> str:
    return (f"Bland-Altman scatter plots, one per structure ({_small(res)}): predicted minus reference area "
            f"({res.area_unit}, y axis) against the mean of the two (x axis), one point per test image of arm "
            f"'{res.baseline}' ({res.areas_label}); solid line = mean difference (bias), dashed lines = 95 % limits "
            "of agreement. Values: tables/bland_altman.csv.")


def ensembles(res: Results) -> str:
    return (f"Dot plots, one panel per class ({_classes(res)}): global Dice (y axis, 0 to 1) of every member run "
            "(dots, grouped by fold), of each fold's seed ensemble (white diamonds) and of the ensemble of all runs "
            f"(star), for {_arms(res)}. Values: tables/ensembles.csv.")


def mismatch(res: Results) -> str:
    return (f"Box plots, one panel per class ({_classes(res)}): the mismatch score |prediction XOR reference| / "
            f"|reference| over test images x runs, one box per arm; the y axis stops at {MISMATCH_CAP:g} and the "
            "tick labels count the values above it. Values: tables/mismatch.csv.")


def structures(res: Results) -> str:
    measures = _list([f"{display_name(c)} {label}" for c, _, label in structure_measures(res.inputs.class_names)])
    return (f"Box plots of {measures}: reference masks (grey) next to the predicted masks of arm '{res.baseline}' "
            "(class colour), for each group of images (normal, abnormal or all). Values: tables/structures.csv.")


def gt_free(res: Results) -> str:
    return (f"Two scatter plots, one point per test image of arm '{res.baseline}': the overall mismatch score (y axis, "
            "needs the reference) against the ground-truth-free score (left) and against the seed disagreement on "
            f"{_small(res)} (right); labelled abnormal cases, where the data have them, are vermillion triangles. "
            "Values: tables/gt_free.csv.")


def qualitative(res: Results) -> str:
    rows = _list([label for label, _, _ in res.picks])
    probs = _list([f"P({display_name(c)})" for c in res.inputs.small])
    return (f"A grid of {len(res.picks)} test images (rows: {rows}) of arm '{res.baseline}''s ensemble; every panel "
            "of a row shows the same square crop: the image, the reference overlay, the prediction overlay "
            f"({_colours(res)}), the predicted probabilities {probs} (viridis colour scale, 0 to 1) and the pixels "
            f"where prediction and reference differ ({COLOR_NAMES.get(MISMATCH_COLOR, MISMATCH_COLOR)}). Images: "
            "tables/qualitative.csv.")


def training(res: Results) -> str:
    return (f"Line charts, one panel per arm ({_list(res.arms)}): training loss (solid) and validation loss (dashed) "
            "against epoch, one pair of lines per run, colour = fold.")


def qc(res: Results) -> str:
    from robustseg.qc.scores import combined_name

    classes = _list([display_name(c) for c in res.inputs.small] + [combined_name(
        [display_name(c) for c in res.inputs.small])])
    return (f"Risk-coverage curves of arm '{res.baseline}', one panel per structure ({classes}) for the clean and the "
            "perturbed test sets: mean 1 - Dice of the predictions kept (y axis) against the fraction sent for review "
            "(x axis), for the three best ground-truth-free scores, the oracle (dotted) and a random order (dashed). "
            "Values: tables/qc_curves.csv.")


__all__ = ["bland_altman", "ensembles", "gt_free", "mismatch", "qc", "qualitative", "robustness", "spread",
           "structures", "training"]
