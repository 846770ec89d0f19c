"""Report section: ground-truth-free quality control benchmarked as failure detection (risk-coverage).

"If I send the x % least-confident images for manual review, what failure rate remains?" Reads each run's
``qc.csv.gz`` and ``masks.npz`` (``robustseg.qc.scores``), the clean probabilities (``probs.npz``) for the
ensemble's mutual information, and the per-image table for the true Dice; ``robustseg.qc.benchmark`` does the
rest. Tables ``qc_riskcov``, ``qc_review``, ``qc_composite_vs_pairwise``, ``qc_curves``; figure
``qc_risk_coverage.png``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from robustseg.labels import display_list, display_name
from robustseg.qc import anomaly, benchmark
from robustseg.qc import scores as qs
from robustseg.qc.riskcov import REVIEW_FRACTIONS
from robustseg.report import markdown as md
from robustseg.report.load import StudyInputs, load_probs

TITLE = "Quality control without a reference: which images to review"
SCORE_LABELS = {"pairwise_dice": "pairwise Dice (ensemble)", "mutual_info": "mutual information (ensemble)",
                "entropy": "mean entropy", "sdc": "Soft Dice Confidence", "range_z": "out-of-range measurement",
                "composite": "composite (today's GT-free score)", "oracle": "oracle (needs reference)",
                "random": "random"}
KEYS = ["image_id", "class", "perturbation", "severity"]


def _range_z(ids: list[str], masks: dict, pixel_mm: pd.Series, ranges: pd.DataFrame, class_names: Sequence[str],
             small: Sequence[str]) -> pd.DataFrame:
    mm = pixel_mm.reindex(ids).to_numpy(dtype=np.float64)
    parts = []
    for (pert, sev), m in masks.items():
        f = anomaly.structure_features(m, image_ids=ids, pixel_mm=mm, class_names=class_names, classes=list(small))
        parts.append(qs.range_scores(f, ranges, small).assign(perturbation=pert, severity=sev))
    return pd.concat(parts, ignore_index=True)


def _ensemble_scores(inputs: StudyInputs, members: dict[str, tuple[list[str], dict, pd.DataFrame]]) -> pd.DataFrame:
    """Pairwise Dice of the members on every condition they share; mutual information on the clean set."""
    run_ids = list(members)
    ids = members[run_ids[0]][0]
    keys = set.intersection(*(set(m[1]) for m in members.values()))
    parts = []
    for key in sorted(keys):
        stack = []
        for rid in run_ids:
            mids, masks, _ = members[rid]
            pos = {k: i for i, k in enumerate(mids)}
            stack.append(masks[key][[pos[i] for i in ids]])
        parts.append(qs.pairwise_dice(np.stack(stack), ids, class_names=inputs.class_names, structures=inputs.small)
                     .assign(perturbation=key[0], severity=key[1]))
    out = pd.concat(parts, ignore_index=True)
    probs = [load_probs(inputs, rid) for rid in run_ids]
    if all(p is not None for p in probs):
        aligned = []
        for pids, pr in probs:
            pos = {k: i for i, k in enumerate(pids)}
            aligned.append(pr[[pos[i] for i in ids]])
        mi = qs.mutual_information(np.stack(aligned), ids, class_names=inputs.class_names,
                                   structures=inputs.small)[["image_id", "class", "mutual_info"]]
        out = out.merge(mi.assign(perturbation="none", severity=0), on=KEYS, how="left")
    return out


def build_table(inputs: StudyInputs, run_ids: set[str]) -> tuple[pd.DataFrame, list[str]]:
    """The long benchmark table (``robustseg.qc.benchmark`` input) and the run ids without QC files."""
    runs = inputs.plan[inputs.plan["run_id"].isin(run_ids)]
    per = inputs.per_image
    if per.empty or runs.empty:
        return pd.DataFrame(), []
    per = per[(per["testset"] == "test") & ~per["postprocessed"].astype(bool) & per["class"].isin(list(inputs.small))]
    per = per.assign(dice=benchmark.qc_dice(per["tp"], per["fp"], per["fn"]))
    per = per[["run_id", *KEYS, "dice"]]
    ranges = anomaly.fit_reference_ranges(inputs.reference_features) if not inputs.reference_features.empty else None
    ref = inputs.reference
    pixel_mm = (pd.Series(ref.pixel_mm, index=list(ref.image_id)) if ref is not None else pd.Series(dtype=float))
    parts, missing = [], []
    for (arm, fold), fr in runs.groupby(["arm", "fold"], sort=False):
        members: dict[str, tuple[list[str], dict, pd.DataFrame]] = {}
        for r in fr.sort_values("seed").itertuples(index=False):
            d = inputs.run_dir(r.run_id)
            if not (d / qs.QC_FILE).is_file() or not (d / qs.MASKS_FILE).is_file():
                missing.append(r.run_id)
                continue
            q = pd.read_csv(d / qs.QC_FILE, dtype={"image_id": str, "class": str, "perturbation": str})
            ids, masks = qs.load_run_masks(d / qs.MASKS_FILE)
            if ranges is not None and not pixel_mm.empty:
                q = q.merge(_range_z(ids, masks, pixel_mm, ranges, inputs.class_names, inputs.small), on=KEYS,
                            how="left")
            members[r.run_id] = (ids, masks, q.assign(arm=arm, fold=fold, seed=r.seed, run_id=r.run_id))
        ens = _ensemble_scores(inputs, members) if len(members) >= 2 else None
        for _, _, q in members.values():
            parts.append(q if ens is None else q.merge(ens, on=KEYS, how="left"))
    if not parts:
        return pd.DataFrame(), missing
    table = pd.concat(parts, ignore_index=True).merge(per, on=["run_id", *KEYS], how="inner")
    patients = inputs.index[["image_id", "patient_id"]].drop_duplicates("image_id")
    return table.merge(patients, on="image_id", how="left"), missing


def tables(inputs: StudyInputs, run_ids: set[str], n_boot: int) -> dict[str, pd.DataFrame]:
    """Report tables ``qc_*`` (empty dict when no run saved QC scores)."""
    table, missing = build_table(inputs, run_ids)
    if table.empty:
        return {"qc_missing": pd.DataFrame({"run_id": missing})} if missing else {}
    out = benchmark.evaluate(table, n_boot=n_boot, structures=inputs.small)
    res = {f"qc_{k}": v for k, v in out.items()}
    if missing:
        res["qc_missing"] = pd.DataFrame({"run_id": missing})
    return res


def _best(rc: pd.DataFrame, arm: str, k: int = 3) -> list[str]:
    t = rc[(rc["arm"] == arm) & (rc["setting"] == "all")]
    return t.groupby("score")["naurc"].mean().sort_values(ascending=False).index[:k].tolist()


def figure(t: dict[str, pd.DataFrame], arm: str, path: Path, small: Sequence[str] = qs.STRUCTURES) -> str | None:
    """Risk-coverage curves per structure of ``small`` and their combination (columns) for clean and perturbed
    sets (rows), best three scores."""
    from robustseg.report.figures import SERIES, save

    curves, rc = t.get("qc_curves", pd.DataFrame()), t.get("qc_riskcov", pd.DataFrame())
    if curves.empty or rc.empty:
        return None
    show = [*_best(rc, arm), "oracle", "random"]
    classes = [c for c in (*small, qs.combined_name(small)) if c in set(curves["class"])]
    rows = [s for s in ("clean", "perturbed") if s in set(curves["setting"])]
    fig = Figure(figsize=(3.4 * len(classes), 3.0 * len(rows)))
    axes = fig.subplots(len(rows), len(classes), squeeze=False)
    styles = {"oracle": ("k", ":"), "random": ("#7f7f7f", "--")}
    palette = list(SERIES[:3])
    for i, setting in enumerate(rows):
        for j, cls in enumerate(classes):
            ax = axes[i, j]
            sub = curves[(curves["arm"] == arm) & (curves["setting"] == setting) & (curves["class"] == cls)]
            for k, score in enumerate(show):
                c = sub[sub["score"] == score]
                if c.empty:
                    continue
                color, ls = styles.get(score, (palette[k % 3], "-"))
                ax.plot(1 - c["coverage"], c["selective_risk"], ls, color=color, lw=1.4,
                        label=SCORE_LABELS.get(score, score))
            for x in REVIEW_FRACTIONS:
                ax.axvline(x, color="#cccccc", lw=0.6)
            ax.set_title(f"{cls}, {setting}", fontsize=9)
            ax.set_xlabel("fraction sent for review")
            ax.set_ylabel("mean 1 - Dice of the rest")
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, frameon=False)
    fig.suptitle(f"arm {arm}: risk left after reviewing the least-confident images (mean over runs)", fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def _ci(r: pd.Series, v: str, lo: str, hi: str) -> str:
    return f"{md.num(r[v])} {md.interval(r[lo], r[hi])}"


def section(t: dict[str, pd.DataFrame], arm: str, fig: str | None, small: Sequence[str] = qs.STRUCTURES,
            alt: str = "Risk-coverage curves of the best scores") -> str:
    """The Markdown of the section (a subsection of the anomaly section); ``small``: the scored structures;
    ``alt``: the figure's alt text."""
    out = f"### {TITLE}\n\n"
    rc = t.get("qc_riskcov", pd.DataFrame())
    if rc.empty:
        miss = t.get("qc_missing", pd.DataFrame())
        why = (f"runs without saved QC scores (older runs?): {', '.join(miss['run_id'])}" if not miss.empty
               else "no run saved QC scores")
        return out + f"_({why})_\n"
    rc = rc[rc["arm"] == arm]
    out += (f"Each run's predictions are ranked by a confidence score computed without the reference mask; the "
            f"least-confident images would go to a human. Risk = 1 - Dice of the structure; a **failure** is Dice "
            f"< {benchmark.FAILURE_DICE:g} (a structure absent in both reference and prediction counts as Dice 1, "
            "present in only one as 0). Scores: pairwise Dice between the fold's seed models, mutual information "
            "of their mean (clean set only: perturbed probabilities are not saved), mean entropy and Soft Dice "
            "Confidence of the run's own softmax, the largest robust z of the predicted measurements against the "
            "training masks, and the composite (mean percentile rank of seed disagreement and that z). "
            f"`{qs.combined_name(small)}` = mean Dice and mean score over {display_list(small)}. **Normalised AURC**: "
            "1 = the oracle "
            "ranking, 0 = random (area under the risk-coverage curve, trapezoidal, tied scores kept together); "
            "per run, then averaged over runs; 95% patient-bootstrap intervals. `perturbed` pools every "
            "perturbation x severity; `all` adds the clean set. Per condition: `tables/qc_riskcov.csv`.\n\n")
    if fig:
        out += md.figure(f"figures/{fig}", alt) + "\n"
    piv = rc[rc["setting"].isin(benchmark.SETTINGS_POOLED)]
    rows = []
    order = {c: i for i, c in enumerate((*small, qs.combined_name(small)))}
    for (cls, score), g in piv.groupby(["class", "score"], sort=False):
        row = {"class": cls, "score": SCORE_LABELS.get(score, score), "_o": order.get(cls, 9)}
        for _, r in g.iterrows():
            row[r["setting"]] = _ci(r, "naurc", "naurc_ci_low", "naurc_ci_high")
            if r["setting"] == "all":
                row["auroc"] = _ci(r, "failure_auroc", "auroc_ci_low", "auroc_ci_high")
                row["rho"], row["_n"] = r["spearman_rho"], -r["naurc"] if pd.notna(r["naurc"]) else 9
        rows.append(row)
    tab = pd.DataFrame(rows).sort_values(["_o", "_n"]).reset_index(drop=True)
    cols = {"class": "Structure", "score": "Score"} | {s: f"nAURC {s} [95% CI]" for s in benchmark.SETTINGS_POOLED
                                                       if s in tab.columns}
    cols |= {"auroc": "Failure AUROC, all [95% CI]", "rho": ("Spearman (conf. vs risk), all", md.fixed(2))}
    out += "**Ranking of the scores** (best first within each structure):\n\n" + md.table(tab, cols) + "\n"
    counts = rc[(rc["score"] == "pairwise_dice") if "pairwise_dice" in set(rc["score"]) else rc["score"].notna()]
    counts = counts[counts["setting"].isin(benchmark.SETTINGS_POOLED)].drop_duplicates(["setting", "class"])
    out += ("Failures / image x run rows: " + "; ".join(
        f"{r['class']} {r['setting']} {int(r['n_failures'])}/{int(r['n_images'])}" for _, r in counts.iterrows())
        + ".\n\n")
    out += _review(t.get("qc_review", pd.DataFrame()), rc, arm)
    out += _verdict(t.get("qc_composite_vs_pairwise", pd.DataFrame()), rc, arm, small)
    return out



def _review(rev: pd.DataFrame, rc: pd.DataFrame, arm: str) -> str:
    """Review table of the two best scores of each structure (all conditions) and the oracle."""
    if rev.empty:
        return ""
    top = rc[(rc["arm"] == arm) & (rc["setting"] == "all")].sort_values("naurc", ascending=False)
    best = {c: [*g["score"].head(2), "oracle"] for c, g in top.groupby("class", sort=False)}
    rev = rev[(rev["arm"] == arm) & (rev["setting"] == "all")]
    rev = rev[[s in best.get(c, []) for c, s in zip(rev["class"], rev["score"], strict=True)]]
    rows = []
    for (cls, score), g in rev.groupby(["class", "score"], sort=False):
        row = {"class": cls, "score": SCORE_LABELS.get(score, score), "none": g["failure_rate_all"].iloc[0]}
        for _, r in g.iterrows():
            row[f"r{int(round(r['review'] * 100))}"] = r["failure_rate_kept"]
            row[f"c{int(round(r['review'] * 100))}"] = r["failures_caught"]
        rows.append(row)
    tab = pd.DataFrame(rows)
    cols = {"class": "Structure", "score": "Score", "none": ("No review", md.fixed(3))}
    for x in REVIEW_FRACTIONS:
        p = int(round(x * 100))
        cols[f"r{p}"] = (f"Review {p}%: failure rate left", md.fixed(3))
        cols[f"c{p}"] = (f"failures caught ({p}%)", md.fixed(2))
    return ("**If I review the x% least-confident images** (all conditions pooled, mean over runs; the two best "
            "scores of each structure): failure rate among the images not reviewed, and the share of all failures "
            "that the review catches.\n\n"
            + md.table(tab, cols) + "\n")


def _verdict(diff: pd.DataFrame, rc: pd.DataFrame, arm: str, small: Sequence[str] = qs.STRUCTURES) -> str:
    out = ""
    if not diff.empty:
        d = diff[diff["arm"] == arm]
        cols = {"setting": "Setting", "class": "Structure", "naurc_a": ("nAURC composite", md.fixed(3)),
                "naurc_b": ("nAURC pairwise Dice", md.fixed(3)),
                "d": ("Difference [95% CI]", lambda r: _ci(r, "diff", "ci_low", "ci_high"), True)}
        out += ("**Does the composite beat pairwise Dice?** Paired patient bootstrap of the difference in "
                "normalised AURC (composite - pairwise Dice), on the same images and runs:\n\n" + md.table(d, cols))
        wins = int((d["ci_low"] > 0).sum())
        loses = int((d["ci_high"] < 0).sum())
        out += (f"\nComposite better (interval above 0) in {wins}, worse (below 0) in {loses} of {len(d)} "
                "setting x structure rows.\n\n")
    best = benchmark.winner(rc, arm)
    if best:
        both = "both" if len(small) == 2 else "all together"
        out += (f"**Winner** (highest mean normalised AURC over {', '.join(display_name(c) for c in small)} and "
                f"{both}, all conditions): "
                f"`{best}` ({SCORE_LABELS.get(best, best)}). `robustseg qc` flags by `{qs.DEFAULT_SCORE}` by default"
                + ("." if best == qs.DEFAULT_SCORE else f"; on this study `{best}` ranks images better "
                   f"(`robustseg qc --score {best}`).") + "\n")
    return out
