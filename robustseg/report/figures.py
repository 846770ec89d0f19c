"""Report figures (matplotlib ``Figure`` objects on the Agg canvas; no pyplot global state).

PNG files are written without a date or software stamp so a rebuild from the same tables is
byte-identical. Each function returns the file name it wrote (relative to the figure folder).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from robustseg._io import save_figure
from robustseg.labels import CLASS_NAMES, SMALL_STRUCTURES, display_name

FOREGROUND = CLASS_NAMES[1:]
SMALL = SMALL_STRUCTURES
OKABE_ITO = {"blue": "#0072B2", "yellow": "#F0E442", "vermillion": "#D55E00", "sky blue": "#56B4E9",
             "bluish green": "#009E73", "orange": "#E69F00", "reddish purple": "#CC79A7", "black": "#000000"}
"""The Okabe-Ito palette (Okabe & Ito 2008): eight colours told apart with every common colour-vision deficiency."""
CLASS_COLORS = {"background": "#7f7f7f", "brain": OKABE_ITO["blue"], "csp": OKABE_ITO["yellow"],
                "lv": OKABE_ITO["vermillion"]}
"""Colours of the fetal classes: of all Okabe-Ito triples, blue / yellow / vermillion keeps the three overlays
furthest apart (smallest CIELAB distance, 50 % over dark to light grey) under simulated protan, deutan and
tritan vision (tests/test_figures.py checks it). Other class names get :data:`PALETTE` colours by label index."""
PALETTE = ("#7f7f7f", *OKABE_ITO.values())
"""Colours by label index for class names without a fixed colour (grey for label 0, then Okabe-Ito)."""
COLOR_NAMES = {"#7f7f7f": "grey", **{v: k for k, v in OKABE_ITO.items()}}
"""How the report's text names each colour."""
MISMATCH_COLOR = OKABE_ITO["reddish purple"]
"""Pixels where prediction and reference disagree (a colour no fetal class uses)."""
SERIES = (OKABE_ITO["blue"], OKABE_ITO["vermillion"], OKABE_ITO["bluish green"], OKABE_ITO["orange"],
          OKABE_ITO["sky blue"], OKABE_ITO["reddish purple"], OKABE_ITO["black"], OKABE_ITO["yellow"])
"""Colours of unordered series (folds, scores) on a white background: Okabe-Ito, yellow last (faint on white)."""
OUTLINE = [patheffects.Stroke(linewidth=2.6, foreground="0.2"), patheffects.Normal()]
"""A dark edge under class-coloured lines, so a light class colour (yellow) stays visible on white."""


def class_colors(classes: Sequence[str] = CLASS_NAMES) -> dict[str, str]:
    """Colour of each class: :data:`CLASS_COLORS` for the fetal names, else :data:`PALETTE` by label index."""
    return {c: CLASS_COLORS.get(c, PALETTE[i % len(PALETTE)]) for i, c in enumerate(classes)}


ARM_STYLES = ("-", "--", ":", "-.")
HATCHES = (None, "//", "..", "xx")
FOLD_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
DPI = 110


def save(fig: Figure, path: Path) -> str:
    save_figure(path, fig, dpi=DPI, metadata={"Software": None}, bbox_inches="tight")
    return path.name


def _jitter(n: int, width: float = 0.25) -> np.ndarray:
    return np.linspace(-width, width, n) if n > 1 else np.zeros(1)


def spread_plot(levels: pd.DataFrame, arms: list[str], path: Path, classes: Sequence[str] = CLASS_NAMES) -> str:
    """Run-level Dice per foreground class of ``classes`` (columns) for global and per-image aggregation (rows);
    one point per run."""
    fg_names, colors = list(classes[1:]), class_colors(classes)
    dice = levels[(levels["metric"] == "dice") & levels["class"].isin(fg_names)]
    fig = Figure(figsize=(3.2 * len(fg_names), 6.0))
    axes = fig.subplots(2, len(fg_names), squeeze=False)
    folds = sorted(dice["fold"].unique())
    for r, agg in enumerate(("global", "per_image")):
        for c, cls in enumerate(fg_names):
            ax = axes[r, c]
            sub = dice[(dice["aggregate"] == agg) & (dice["class"] == cls)]
            data = [sub.loc[sub["arm"] == a, "value"].dropna().to_numpy() for a in arms]
            ax.boxplot(data, positions=range(len(arms)), widths=0.6, showfliers=False,
                       medianprops={"color": "black"}, boxprops={"color": "0.6"}, whiskerprops={"color": "0.6"},
                       capprops={"color": "0.6"})
            for i, arm in enumerate(arms):
                s = sub[sub["arm"] == arm].sort_values(["fold", "seed"])
                offs = _jitter(len(s))
                for j, row in enumerate(s.itertuples(index=False)):
                    ax.plot(i + offs[j], row.value, FOLD_MARKERS[folds.index(row.fold) % len(FOLD_MARKERS)],
                            color=colors[cls], alpha=0.85, ms=6, mec="black", mew=0.4)
            ax.set_xticks(range(len(arms)), arms, rotation=20 if len(arms) > 2 else 0)
            ax.set_title(f"{cls}: {'global' if agg == 'global' else 'per-image'} Dice", fontsize=10)
            ax.set_ylim(-0.02, 1.02)
            ax.grid(axis="y", alpha=0.3)
            if c == 0:
                ax.set_ylabel("Dice (one point per run)")
    handles = [Line2D([], [], ls="", marker=FOLD_MARKERS[i % len(FOLD_MARKERS)], color="0.4", label=f"fold {f}")
               for i, f in enumerate(folds)]
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False, bbox_to_anchor=(0.5, 1.02))
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return save(fig, path)


def robustness_plot(curves: pd.DataFrame, arms: list[str], path: Path, classes: Sequence[str] = CLASS_NAMES) -> str:
    """Mean Dice (± SD across runs) vs severity, one panel per perturbation; external sets in the last panel."""
    fg_names, colors = list(classes[1:]), class_colors(classes)
    fg = curves[curves["class"].isin(fg_names)]
    perts = [p for p in pd.unique(fg["perturbation"]) if p != "none" and not str(p).startswith("external: ")]
    externals = [p for p in pd.unique(fg["perturbation"]) if str(p).startswith("external: ")]
    n = len(perts) + (1 if externals else 0)
    ncols = min(n, 4)
    nrows = int(np.ceil(n / ncols))
    fig = Figure(figsize=(3.6 * ncols, 3.2 * nrows + 0.5))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    clean = fg[fg["perturbation"] == "none"]
    for k, pert in enumerate(perts):
        ax = axes[k]
        sub = pd.concat([clean, fg[fg["perturbation"] == pert]])
        for a_i, arm in enumerate(arms):
            for cls in fg_names:
                s = sub[(sub["arm"] == arm) & (sub["class"] == cls)].sort_values("severity")
                x, y, sd = (s[c].to_numpy(dtype=float) for c in ("severity", "dice_mean", "dice_sd"))
                ax.plot(x, y, color=colors[cls], ls=ARM_STYLES[a_i % len(ARM_STYLES)], marker="o", ms=3.5, lw=1.5,
                        mec="0.2", mew=0.5, path_effects=OUTLINE)
                sd = np.nan_to_num(sd)
                ax.fill_between(x, np.clip(y - sd, 0, 1), np.clip(y + sd, 0, 1), color=colors[cls], alpha=0.12,
                                lw=0)
        ax.set_title(str(pert), fontsize=10)
        ax.set_xlabel("severity (0 = clean)")
        ax.set_xticks(sorted(sub["severity"].unique()))
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        if k % ncols == 0:
            ax.set_ylabel("Dice (mean, band ± SD over runs)")
    if externals:
        ax = axes[len(perts)]
        conds = ["none", *externals]
        width = 0.8 / max(1, len(arms) * len(fg_names))
        for a_i, arm in enumerate(arms):
            for c_i, cls in enumerate(fg_names):
                s = fg[(fg["arm"] == arm) & (fg["class"] == cls) & fg["perturbation"].isin(conds)]
                s = s.set_index("perturbation").reindex(conds)
                x = np.arange(len(conds)) + (a_i * len(fg_names) + c_i - (len(arms) * len(fg_names) - 1) / 2) * width
                ax.bar(x, s["dice_mean"], width, yerr=s["dice_sd"].fillna(0.0), color=colors[cls],
                       hatch=HATCHES[a_i % len(HATCHES)], edgecolor="black", lw=0.4)
        ax.set_xticks(range(len(conds)), ["held-out test", *[e.removeprefix("external: ") for e in externals]])
        ax.set_title("external test sets", fontsize=10)
        ax.set_ylim(0, 1.02)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[n:]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=colors[c], label=display_name(c), lw=1.5, path_effects=OUTLINE) for c in fg_names]
    if len(arms) > 1:
        handles += [Line2D([], [], color="black", ls=ARM_STYLES[i % len(ARM_STYLES)], label=a) for i, a in enumerate(arms)]
        if externals:
            handles += [Patch(facecolor="white", edgecolor="black", hatch=HATCHES[i % len(HATCHES)], label=f"{a} (bars)")
                        for i, a in enumerate(arms)]
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False, bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return save(fig, path)


def damage_plot(curves: pd.DataFrame, summary: pd.DataFrame, arm: str, path: Path,
                small: Sequence[str] = SMALL) -> str:
    """Dice retention (mean over runs) against image damage (mean SSIM of each severity on the study's test images:
    in the fan, or inside a local artefact's region), one line per perturbation from the clean point (SSIM 1,
    retention 1), one panel per ``small`` class: a perturbation lower at the same SSIM costs more Dice per unit of
    image damage. ``summary``: the report's damage table (:func:`robustseg.perturb.damage.damage_summary`)."""
    chosen = summary["ssim_region"].where(summary["local"].astype(bool), summary["ssim_fan"])
    ssim = chosen.groupby([summary["perturbation"], summary["severity"]]).mean()
    sub = curves[(curves["arm"] == arm) & (curves["perturbation"] != "none")]
    classes = [c for c in small if c in set(sub["class"])]
    perts = sorted(set(sub["perturbation"]) & {p for p, _ in ssim.index})
    fig = Figure(figsize=(4.8 * max(1, len(classes)), 4.0))
    axes = fig.subplots(1, max(1, len(classes)), squeeze=False).ravel()
    cmap = [PALETTE[i % len(PALETTE)] for i in range(1, len(PALETTE))] + ["#000000"]
    styles = ("-", "--", ":", "-.")
    for ax, cls in zip(axes, classes, strict=False):
        for k, pert in enumerate(perts):
            s = sub[(sub["class"] == cls) & (sub["perturbation"] == pert)].sort_values("severity")
            x = [1.0] + [float(ssim.get((pert, int(v)), np.nan)) for v in s["severity"]]
            y = [1.0] + s["retention_mean"].astype(float).tolist()
            ax.plot(x, y, marker="o", ms=3, lw=1.3, color=cmap[k % len(cmap)], ls=styles[(k // len(cmap)) % 4],
                    label=pert)
        ax.set_title(display_name(cls), fontsize=10)
        ax.set_xlabel("mean SSIM (image damage)")
        low = float(np.nanmin(ssim.to_numpy(dtype=float))) if len(ssim) else 0.5
        ax.set_xlim(1.005, min(0.5, low - 0.02))
        ax.set_ylim(bottom=0.0)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Dice retention (perturbed / clean)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=7, frameon=False)
    fig.text(0.01, 0.01, "SSIM in the fan; for a local artefact, inside the region it acts on", fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 0.8, 1))
    return save(fig, path)


def bland_altman_plot(areas: pd.DataFrame, ba: pd.DataFrame, arm: str, unit: str, path: Path,
                      label: str = "mean over runs", small: Sequence[str] = SMALL,
                      class_names: Sequence[str] = CLASS_NAMES) -> str:
    """Bland-Altman (difference vs mean of predicted and reference area) per ``small`` class, one arm; ``label``
    names the prediction plotted (e.g. the all-runs ensemble)."""
    colors = class_colors(class_names)
    classes = [c for c in small if c in set(areas["class"])]
    fig = Figure(figsize=(4.6 * len(classes), 3.8))
    axes = fig.subplots(1, len(classes), squeeze=False)[0]
    for ax, cls in zip(axes, classes, strict=True):
        s = areas[(areas["arm"] == arm) & (areas["class"] == cls)]
        mean = (s["pred_area"] + s["ref_area"]) / 2
        diff = s["pred_area"] - s["ref_area"]
        ax.scatter(mean, diff, s=14, alpha=0.75, color=colors[cls], edgecolor="0.2", linewidth=0.4)
        row = ba[(ba["arm"] == arm) & (ba["class"] == cls)]
        if not row.empty:
            r = row.iloc[0]
            for y, ls, lab in ((r["bias"], "-", f"bias {r['bias']:.1f}"), (r["loa_low"], "--", f"LoA {r['loa_low']:.1f}"),
                               (r["loa_high"], "--", f"LoA {r['loa_high']:.1f}")):
                if np.isfinite(y):
                    ax.axhline(y, color="black", ls=ls, lw=1)
                    ax.annotate(lab, (1.0, y), xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=8)
        ax.axhline(0, color="0.7", lw=0.8)
        ax.set_xlabel(f"mean of predicted and reference area ({unit})")
        ax.set_ylabel(f"predicted - reference ({unit})")
        ax.set_title(f"{cls} area, arm {arm} (per image, {label})", fontsize=10)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save(fig, path)


def ensemble_plot(levels: pd.DataFrame, evm: pd.DataFrame, arms: list[str], path: Path,
                  classes: Sequence[str] = CLASS_NAMES) -> str:
    """Global Dice of member runs (dots) against the seed ensembles (diamonds) and seeds+folds ensemble (star)."""
    fg_names, colors = list(classes[1:]), class_colors(classes)
    members = levels[(levels["metric"] == "dice") & (levels["aggregate"] == "global") & levels["class"].isin(fg_names)]
    ens = evm[(evm["aggregate"] == "global") & evm["class"].isin(fg_names)]
    fig = Figure(figsize=(3.4 * len(fg_names), 3.6))
    axes = fig.subplots(1, len(fg_names), squeeze=False)[0]
    folds = sorted(members["fold"].unique())
    step = 0.5 / max(1, len(folds))
    for ax, cls in zip(axes, fg_names, strict=True):
        for i, arm in enumerate(arms):
            e = ens[(ens["class"] == cls) & (ens["arm"] == arm)]
            for k, fold in enumerate(folds):
                x0 = i - 0.3 + k * step
                m = members[(members["class"] == cls) & (members["arm"] == arm) & (members["fold"] == fold)]
                m = m.sort_values("seed")
                ax.plot(x0 + _jitter(len(m), 0.03), m["value"], "o", color=colors[cls], alpha=0.8, ms=5, mec="0.2",
                        mew=0.4)
                se = e[(e["kind"] == "seeds") & (e["fold"] == fold)]
                ax.plot(np.full(len(se), x0 + 0.07), se["ensemble"], "D", color="black", ms=5, mfc="white")
            sf = e[e["kind"] == "seeds+folds"]
            ax.plot(np.full(len(sf), i + 0.3), sf["ensemble"], "*", color="black", ms=11)
        ax.set_xticks(range(len(arms)), arms)
        ax.set_xlim(-0.6, len(arms) - 0.4)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{cls}: global Dice", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("Dice")
    handles = [Line2D([], [], ls="", marker="o", color="0.5", label="member run"),
               Line2D([], [], ls="", marker="D", color="black", mfc="white", label="seed ensemble (right of its fold's members)"),
               Line2D([], [], ls="", marker="*", color="black", ms=10, label="seeds + folds ensemble")]
    fig.legend(handles=handles, loc="upper center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 1.04))
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return save(fig, path)


MISMATCH_CAP = 5.0
"""Mismatch scores above this are off the plotted scale (counted under the axis); the boxes use every value."""


def mismatch_plot(mismatch: pd.DataFrame, arms: list[str], path: Path, classes: Sequence[str] = CLASS_NAMES) -> str:
    """Distribution of the per-class mismatch score |pred XOR ref| / |ref| over images x runs."""
    fg_names = list(classes[1:])
    fig = Figure(figsize=(3.4 * len(fg_names), 3.8))
    axes = fig.subplots(1, len(fg_names), squeeze=False)[0]
    for ax, cls in zip(axes, fg_names, strict=True):
        data, labels = [], []
        for arm in arms:
            v = mismatch.loc[(mismatch["class"] == cls) & (mismatch["arm"] == arm), "score"].to_numpy(dtype=float)
            n_inf, n_over = int(np.isinf(v).sum()), int((v > MISMATCH_CAP).sum())
            data.append(v[np.isfinite(v)])
            labels.append(f"{arm}\n(n={v.size}" + (f", {n_over} > {MISMATCH_CAP:g}" if n_over else "")
                          + (f", {n_inf} inf" if n_inf else "") + ")")
        ax.boxplot(data, positions=range(len(arms)), widths=0.6, medianprops={"color": "black"},
                   flierprops={"marker": ".", "ms": 3, "alpha": 0.5})
        ax.set_xticks(range(len(arms)), labels, fontsize=8)
        ax.set_ylim(-0.05, MISMATCH_CAP)
        ax.set_title(f"{cls}: mismatch score", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("|pred XOR ref| / |ref|")
    fig.tight_layout()
    return save(fig, path)


def structures_plot(features: pd.DataFrame, measures: list[tuple[str, str, str]], path: Path) -> str:
    """Box plots of structure measurements, reference vs predicted masks, split by the ``group`` column."""
    fig = Figure(figsize=(4.8 * len(measures), 3.9))
    axes = fig.subplots(1, len(measures), squeeze=False)[0]
    present = set(features["group"])
    groups = [g for g in ("normal", "abnormal", "all") if g in present] + sorted(present - {"normal", "abnormal", "all"})
    for ax, (cls, col, label) in zip(axes, measures, strict=True):
        data, ticks, colors = [], [], []
        for g in groups:
            for src in ("ref", "pred"):
                v = features.loc[(features["class"] == cls) & (features["group"] == g) & (features["source"] == src), col]
                data.append(v.dropna().to_numpy(dtype=float))
                ticks.append(f"{g}\n{'reference' if src == 'ref' else 'predicted'}\nn={data[-1].size}")
                colors.append("0.85" if src == "ref" else class_colors().get(cls, PALETTE[1]))
        bp = ax.boxplot(data, positions=range(len(data)), widths=0.6, patch_artist=True,
                        medianprops={"color": "black"}, flierprops={"marker": ".", "ms": 3})
        for patch, col_ in zip(bp["boxes"], colors, strict=True):
            patch.set_facecolor(col_)
        ax.set_xticks(range(len(data)), ticks, fontsize=8)
        ax.set_title(f"{cls}: {label}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save(fig, path)


def gt_free_plot(scores: pd.DataFrame, arm: str, path: Path, small: Sequence[str] = SMALL) -> str:
    """Ground-truth-free score against the mismatch score (test images of one arm), abnormal cases marked;
    ``small``: the structures whose seed disagreement is plotted."""
    s = scores[scores["arm"] == arm]
    names = "/".join(display_name(c) for c in small)
    fig = Figure(figsize=(9.0, 3.8))
    axes = fig.subplots(1, 2)
    has_lab = "abnormal" in s.columns and s["abnormal"].notna().any()
    for ax, col, xlabel in ((axes[0], "gt_free_score", "GT-free score (mean percentile rank)"),
                            (axes[1], "disagreement", f"seed disagreement (1 - mean pairwise Dice, {names})")):
        if has_lab:
            ab = s["abnormal"].astype(bool).to_numpy()
            ax.scatter(s.loc[~ab, col], s.loc[~ab, "mismatch"], s=18, color=OKABE_ITO["blue"], label="normal", alpha=0.7)
            ax.scatter(s.loc[ab, col], s.loc[ab, "mismatch"], s=22, color=OKABE_ITO["vermillion"], marker="^", label="abnormal",
                       alpha=0.8)
            ax.legend(fontsize=8, frameon=False)
        else:
            ax.scatter(s[col], s["mismatch"], s=18, color=OKABE_ITO["blue"], alpha=0.7)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("overall mismatch score (needs reference)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"arm {arm}: ground-truth-free score vs mismatch score, one point per test image", fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def _overlay(ax: object, image: np.ndarray, labels: np.ndarray | None = None,
             classes: Sequence[str] = CLASS_NAMES, extent: tuple[float, float, float, float] | None = None) -> None:
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest", extent=extent)
    if labels is not None:
        colors = class_colors(classes)
        rgba = np.zeros((*labels.shape, 4))
        for c, name in enumerate(classes):
            if c == 0:
                continue
            rgb = tuple(int(colors[name][i:i + 2], 16) / 255 for i in (1, 3, 5))
            rgba[labels == c] = (*rgb, 0.5)
        ax.imshow(rgba, interpolation="nearest", extent=extent)


def crop_box(mask: np.ndarray, margin: float = 0.15) -> tuple[slice, slice]:
    """A square crop around the reference foreground with a ``margin`` (the whole image, squared, when it is
    empty). The square may reach past the image; :func:`crop` pads it, so every panel of a row has one extent."""
    h, w = mask.shape
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        r0, r1, c0, c1 = 0, h, 0, w
    else:
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    side = max(r1 - r0, c1 - c0)
    side += 2 * int(np.ceil(margin * side)) if rows.size else 0
    top, left = (r0 + r1 - side) // 2, (c0 + c1 - side) // 2
    top = int(np.clip(top, min(0, h - side), max(0, h - side)))  # inside the image where the square fits
    left = int(np.clip(left, min(0, w - side), max(0, w - side)))
    return slice(top, top + side), slice(left, left + side)


def crop(array: np.ndarray, box: tuple[slice, slice], fill: float = 0) -> np.ndarray:
    """``array[..., rows, cols]`` of the (possibly out-of-bounds) ``box``, padded with ``fill`` outside."""
    rs, cs = box
    h, w = array.shape[-2:]
    pad = [(0, 0)] * (array.ndim - 2) + [(max(0, -rs.start), max(0, rs.stop - h)), (max(0, -cs.start), max(0, cs.stop - w))]
    inner = array[..., max(0, rs.start):min(h, rs.stop), max(0, cs.start):min(w, cs.stop)]
    return np.pad(inner, pad, constant_values=fill)


def qualitative_plot(images: np.ndarray, masks: np.ndarray, probs: np.ndarray, picks: list[tuple[str, int, str]],
                     path: Path, classes: Sequence[str] = CLASS_NAMES, small: Sequence[str] = SMALL) -> str:
    """:func:`qualitative_figure` saved to ``path``."""
    return save(qualitative_figure(images, masks, probs, picks, classes, small), path)


def qualitative_figure(images: np.ndarray, masks: np.ndarray, probs: np.ndarray, picks: list[tuple[str, int, str]],
                       classes: Sequence[str] = CLASS_NAMES, small: Sequence[str] = SMALL) -> Figure:
    """Rows: chosen test images; columns: image, reference, prediction, the probability of each ``small``
    structure (CSP, LV), mismatch.

    Every panel of a row shows the same square crop around the reference foreground (for the fetal head: brain
    + structures), with the same pixel extent and size: a pixel sits at the same place in all of them. The
    probability colour bar has its own axis under the probability columns, so it takes no room from them.
    """
    from matplotlib.gridspec import GridSpec

    small = list(small)
    cols = ("image", "reference", "prediction", *(f"P({display_name(c)})" for c in small), "mismatch (pred ≠ ref)")
    n, ncol, cell = len(picks), len(cols), 2.0
    fig = Figure(figsize=(cell * ncol + 0.5, cell * n + 1.3))
    grid = GridSpec(n + 1, ncol, figure=fig, height_ratios=[*([1.0] * n), 0.12], hspace=0.08, wspace=0.04,
                    left=0.5 / (cell * ncol + 0.5), right=0.995, top=1 - 0.35 / (cell * n + 1.3),
                    bottom=0.6 / (cell * n + 1.3))
    index = [list(classes).index(c) for c in small]
    last = ncol - 1
    im = None
    for r, (label, i, image_id) in enumerate(picks):
        box = crop_box(masks[i] > 0)
        img, ref, p = crop(images[i], box), crop(masks[i], box), crop(probs[i], box)
        pred = p.argmax(axis=0)
        side = img.shape[-1]
        extent = (0, side, side, 0)
        axes = [fig.add_subplot(grid[r, c]) for c in range(ncol)]
        _overlay(axes[0], img, extent=extent)
        _overlay(axes[1], img, ref, classes, extent=extent)
        _overlay(axes[2], img, pred, classes, extent=extent)
        for k, c in enumerate(index):
            im = axes[3 + k].imshow(p[c], cmap="viridis", vmin=0, vmax=1, interpolation="nearest", extent=extent)
        miss = np.zeros((*ref.shape, 4))
        miss[pred != ref] = (*(int(MISMATCH_COLOR[j:j + 2], 16) / 255 for j in (1, 3, 5)), 1.0)
        axes[last].imshow(img, cmap="gray", vmin=0, vmax=255 * 2, interpolation="nearest", extent=extent)  # dimmed
        axes[last].imshow(miss, interpolation="nearest", extent=extent)
        axes[0].set_ylabel(f"{label}\n{image_id}", fontsize=8)
        for c, ax in enumerate(axes):
            ax.set_xlim(0, side)
            ax.set_ylim(side, 0)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[c], fontsize=9)
    if im is not None:
        cax = fig.add_subplot(grid[n, 3:last], label="probability colour bar")
        fig.colorbar(im, cax=cax, orientation="horizontal", label="probability")
    colors = class_colors(classes)
    handles = [Patch(facecolor=colors[c], edgecolor="0.2", label=display_name(c)) for c in classes[1:]]
    handles.append(Patch(facecolor=MISMATCH_COLOR, edgecolor="0.2", label="mismatch"))
    leg = fig.add_subplot(grid[n, 0:3])
    leg.axis("off")
    leg.legend(handles=handles, loc="center", ncol=len(handles), frameon=False, fontsize=8)
    return fig


def training_plot(history: pd.DataFrame, arms: list[str], path: Path) -> str:
    """Training and validation loss per epoch, one line per run (colour = fold, one panel per arm)."""
    loss_cols = [c for c in ("train_loss", "val_loss") if c in history.columns]
    fig = Figure(figsize=(4.2 * len(arms), 3.4))
    axes = fig.subplots(1, len(arms), squeeze=False)[0]
    folds = sorted(history["fold"].unique())
    cmap = list(SERIES)
    for ax, arm in zip(axes, arms, strict=True):
        h = history[history["arm"] == arm]
        for (fold, _seed), run in h.groupby(["fold", "seed"], sort=True):
            run = run.sort_values("epoch")
            for col in loss_cols:
                ax.plot(run["epoch"], run[col], color=cmap[folds.index(fold) % len(cmap)], ls="-" if col == "train_loss" else "--",
                        lw=1.1, alpha=0.8)
        ax.set_title(f"arm {arm}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("loss")
    handles = [Line2D([], [], color=cmap[i % len(cmap)], label=f"fold {f}") for i, f in enumerate(folds)]
    handles += [Line2D([], [], color="black", ls="-", label="train"), Line2D([], [], color="black", ls="--", label="validation")]
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False, bbox_to_anchor=(0.5, 1.04))
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return save(fig, path)
