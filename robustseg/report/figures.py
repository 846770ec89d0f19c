"""Report figures (matplotlib ``Figure`` objects on the Agg canvas; no pyplot global state).

PNG files are written without a date or software stamp so a rebuild from the same tables is
byte-identical. Each function returns the file name it wrote (relative to the figure folder).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from robustseg.labels import CLASS_NAMES, SMALL_STRUCTURES, display_name

FOREGROUND = CLASS_NAMES[1:]
SMALL = SMALL_STRUCTURES
CLASS_COLORS = {"background": "#7f7f7f", "brain": "#1f77b4", "csp": "#2ca02c", "lv": "#d62728"}
"""Colours of the fetal classes; other class names get :data:`PALETTE` colours by label index."""
PALETTE = ("#7f7f7f", "#1f77b4", "#2ca02c", "#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
           "#17becf")
"""Colours by label index for class names without a fixed colour (matplotlib tab10, grey first for label 0)."""
COLOR_NAMES = dict(zip(PALETTE, ("grey", "blue", "green", "red", "orange", "purple", "brown", "pink", "olive", "cyan"),
                       strict=True))
"""How the report's text names each colour."""


def class_colors(classes: Sequence[str] = CLASS_NAMES) -> dict[str, str]:
    """Colour of each class: :data:`CLASS_COLORS` for the fetal names, else :data:`PALETTE` by label index."""
    return {c: CLASS_COLORS.get(c, PALETTE[i % len(PALETTE)]) for i, c in enumerate(classes)}
ARM_STYLES = ("-", "--", ":", "-.")
HATCHES = (None, "//", "..", "xx")
FOLD_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
DPI = 110


def save(fig: Figure, path: Path) -> str:
    fig.savefig(path, dpi=DPI, metadata={"Software": None}, bbox_inches="tight")
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
                ax.plot(x, y, color=colors[cls], ls=ARM_STYLES[a_i % len(ARM_STYLES)], marker="o", ms=3.5, lw=1.5)
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
    handles = [Line2D([], [], color=colors[c], label=c) for c in fg_names]
    if len(arms) > 1:
        handles += [Line2D([], [], color="black", ls=ARM_STYLES[i % len(ARM_STYLES)], label=a) for i, a in enumerate(arms)]
        if externals:
            handles += [Patch(facecolor="white", edgecolor="black", hatch=HATCHES[i % len(HATCHES)], label=f"{a} (bars)")
                        for i, a in enumerate(arms)]
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False, bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 0.93))
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
        ax.scatter(mean, diff, s=12, alpha=0.6, color=colors[cls], edgecolor="none")
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
                ax.plot(x0 + _jitter(len(m), 0.03), m["value"], "o", color=colors[cls], alpha=0.7, ms=5)
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
            ax.scatter(s.loc[~ab, col], s.loc[~ab, "mismatch"], s=18, color="#1f77b4", label="normal", alpha=0.7)
            ax.scatter(s.loc[ab, col], s.loc[ab, "mismatch"], s=22, color="#d62728", marker="^", label="abnormal", alpha=0.8)
            ax.legend(fontsize=8, frameon=False)
        else:
            ax.scatter(s[col], s["mismatch"], s=18, color="#1f77b4", alpha=0.7)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("overall mismatch score (needs reference)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"arm {arm}: ground-truth-free score vs mismatch score, one point per test image", fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def _overlay(ax: object, image: np.ndarray, labels: np.ndarray | None = None,
             classes: Sequence[str] = CLASS_NAMES) -> None:
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    if labels is not None:
        colors = class_colors(classes)
        rgba = np.zeros((*labels.shape, 4))
        for c, name in enumerate(classes):
            if c == 0:
                continue
            rgb = tuple(int(colors[name][i:i + 2], 16) / 255 for i in (1, 3, 5))
            rgba[labels == c] = (*rgb, 0.45)
        ax.imshow(rgba, interpolation="nearest")


def crop_box(mask: np.ndarray, margin: float = 0.15) -> tuple[slice, slice]:
    """Square-ish crop around the reference foreground (whole image when it is empty)."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return slice(None), slice(None)
    h, w = mask.shape
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    pad = int(np.ceil(margin * max(r1 - r0, c1 - c0)))
    return slice(max(0, r0 - pad), min(h, r1 + pad)), slice(max(0, c0 - pad), min(w, c1 + pad))


def qualitative_plot(images: np.ndarray, masks: np.ndarray, probs: np.ndarray, picks: list[tuple[str, int, str]],
                     path: Path, classes: Sequence[str] = CLASS_NAMES, small: Sequence[str] = SMALL) -> str:
    """Rows: chosen test images; columns: image, reference, prediction, the probability of each ``small``
    structure (CSP, LV), mismatch.

    Each row is cropped to the reference foreground (for the fetal head: brain + structures) so the small
    structures stay visible.
    """
    small = list(small)
    cols = ("image", "reference", "prediction", *(f"P({c})" for c in small), "mismatch (pred != ref)")
    fig = Figure(figsize=(2.1 * len(cols), 2.3 * len(picks) + 0.9), layout="constrained")
    axes = fig.subplots(len(picks), len(cols), squeeze=False)
    index = [list(classes).index(c) for c in small]
    last = len(cols) - 1
    im = None
    for r, (label, i, image_id) in enumerate(picks):
        rs, cs = crop_box(masks[i] > 0)
        img, ref, p = images[i][rs, cs], masks[i][rs, cs], probs[i][:, rs, cs]
        pred = p.argmax(axis=0)
        _overlay(axes[r, 0], img)
        _overlay(axes[r, 1], img, ref, classes)
        _overlay(axes[r, 2], img, pred, classes)
        for k, c in enumerate(index):
            im = axes[r, 3 + k].imshow(p[c], cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        axes[r, last].imshow(pred != ref, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[r, 0].set_ylabel(f"{label}\n{image_id}", fontsize=8)
        for c in range(len(cols)):
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(cols[c], fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=axes[:, 3:last].ravel().tolist(), location="bottom", shrink=0.8, label="probability")
    colors = class_colors(classes)
    handles = [Line2D([], [], ls="", marker="s", ms=8, color=colors[c], label=c) for c in classes[1:]]
    fig.legend(handles=handles, loc="outside lower left", ncol=3, frameon=False, title="overlay colours",
               fontsize=8, title_fontsize=8)
    return save(fig, path)


def training_plot(history: pd.DataFrame, arms: list[str], path: Path) -> str:
    """Training and validation loss per epoch, one line per run (colour = fold, one panel per arm)."""
    loss_cols = [c for c in ("train_loss", "val_loss") if c in history.columns]
    fig = Figure(figsize=(4.2 * len(arms), 3.4))
    axes = fig.subplots(1, len(arms), squeeze=False)[0]
    folds = sorted(history["fold"].unique())
    cmap = [f"C{i}" for i in range(10)]
    for ax, arm in zip(axes, arms, strict=True):
        h = history[history["arm"] == arm]
        for (fold, _seed), run in h.groupby(["fold", "seed"], sort=True):
            run = run.sort_values("epoch")
            for col in loss_cols:
                ax.plot(run["epoch"], run[col], color=cmap[folds.index(fold) % 10], ls="-" if col == "train_loss" else "--",
                        lw=1.1, alpha=0.8)
        ax.set_title(f"arm {arm}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("loss")
    handles = [Line2D([], [], color=cmap[i % 10], label=f"fold {f}") for i, f in enumerate(folds)]
    handles += [Line2D([], [], color="black", ls="-", label="train"), Line2D([], [], color="black", ls="--", label="validation")]
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False, bbox_to_anchor=(0.5, 1.04))
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return save(fig, path)
