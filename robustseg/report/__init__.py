"""The study report: ``build_report(runs_dir, out_dir)`` writes ``report.md``, ``report.html``, ``figures/*.png``,
``tables/*.csv``.

Everything is computed from the tables a study saved under ``runs_dir`` (see ``robustseg.pipeline.study``), so
``robustseg report RUN_DIR`` rebuilds the same report without training. Deterministic: fixed bootstrap
seeds, sorted groupings, PNGs without date stamps, no clock reads.

Modules: ``load`` (read the run folder), ``aggregate`` (summary, spread, ICC, robustness, arm tables),
``ensembles`` (ensembles, mismatch, ground-truth-free score), ``compute`` (all tables), ``figures``,
``sections`` and ``markdown`` (the text), ``findings`` (the generated Findings and Read-with-care sentences at
the top), ``html`` (the same text as one self-contained page), ``repro`` (versions, commit, hardware, wall time).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from robustseg._io import write_csv, write_text
from robustseg._outdir import claim_report_dir
from robustseg._warnings import logged
from robustseg.report import alt, claims_section, figures, findings, qc_section, sections
from robustseg.report.compute import Results, compute, structure_measures
from robustseg.report.html import HTML_NAME, to_html
from robustseg.report.load import load_inputs
from robustseg.report.repro import block

REPORT_NAME = "report.md"


def _clear(folder: Path, pattern: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(pattern):
        old.unlink()


def write_tables(res: Results, out: Path) -> list[str]:
    _clear(out, "*.csv")
    names = []
    for name in sorted(res.tables):
        df = res.tables[name]
        if isinstance(df, pd.DataFrame) and not df.empty:
            write_csv(out / f"{name}.csv", df)
            names.append(f"{name}.csv")
    return names


def draw_figures(res: Results, out: Path) -> dict[str, str | None]:
    """Every figure the data allow; a figure that cannot be drawn is None (its section says why)."""
    _clear(out, "*.png")
    t = res.tables
    names, small = res.inputs.class_names, res.inputs.small
    figs: dict[str, str | None] = dict.fromkeys(
        ("spread", "robustness", "damage", "bland_altman", "ensembles", "mismatch", "structures", "gt_free", "qualitative",
         "training"))
    if not res.levels.empty:
        figs["spread"] = figures.spread_plot(res.levels, res.arms, out / "spread.png", names)
    if not t.get("retention", pd.DataFrame()).empty:
        figs["robustness"] = figures.robustness_plot(t["robustness"], res.arms, out / "robustness.png", names)
    if not t.get("damage", pd.DataFrame()).empty:
        figs["damage"] = figures.damage_plot(t["robustness"], t["damage"], res.baseline, out / "damage.png", small)
    if not t.get("bland_altman", pd.DataFrame()).empty and not res.areas.empty:
        ba = t["bland_altman"]
        kind = "ensemble (all runs)" if res.areas_label == "all-runs ensemble" else "single run"
        figs["bland_altman"] = figures.bland_altman_plot(res.areas, ba[ba["prediction"] == kind], res.baseline,
                                                         res.area_unit, out / "bland_altman.png", res.areas_label,
                                                         small, names)
    if not t.get("ensembles", pd.DataFrame()).empty:
        figs["ensembles"] = figures.ensemble_plot(res.levels, t["ensembles"], res.arms, out / "ensembles.png", names)
    if not t.get("mismatch", pd.DataFrame()).empty:
        figs["mismatch"] = figures.mismatch_plot(t["mismatch"], res.arms, out / "mismatch.png", names)
    measures = structure_measures(names)  # the fetal measurements, where the data set has those classes
    if not res.structures.empty and measures:
        figs["structures"] = figures.structures_plot(res.structures, measures, out / "structures.png")
    if not t.get("gt_free", pd.DataFrame()).empty:
        figs["gt_free"] = figures.gt_free_plot(t["gt_free"], res.baseline, out / "gt_free.png", small)
    ref = res.inputs.reference
    if res.picks and ref is not None:
        figs["qualitative"] = figures.qualitative_plot(ref.images, ref.masks, res.ensembles.panel_probs[res.baseline],
                                                       res.picks, out / "qualitative.png", names, small)
    if not res.inputs.history.empty:
        figs["training"] = figures.training_plot(res.inputs.history, res.arms, out / "training.png")
    figs["qc"] = qc_section.figure(t, res.baseline, out / "qc_risk_coverage.png", small)
    return figs


def render(res: Results, figs: dict[str, str | None], table_names: list[str]) -> str:
    inp = res.inputs
    if res.clean.empty:
        body = [sections.heading(i) + "\n_(no completed runs: nothing to report; see the list of runs below)_\n"
                for i in range(len(sections.SECTIONS) - 1)]
    else:
        body = [
            sections.summary(res),
            sections.spread(res, figs["spread"]),
            sections.robustness(res, figs["robustness"], figs["damage"]),
            sections.agreement(res, figs["bland_altman"]),
            sections.ensembles(res, figs["ensembles"]),
            sections.arm_comparison(res),
            claims_section.section(sections.heading(6), res.plan, len(res.arms)),
            sections.anomaly(res, figs),
            qc_section.section(res.tables, res.baseline, figs.get("qc"), inp.small, alt.qc(res)),
            sections.qualitative(res, figs["qualitative"]),
            sections.postprocessing(res),
            sections.training(res, figs["training"]),
        ]
    parts = [
        sections.title(res),
        findings.render(res.tables.get("findings", pd.DataFrame(columns=["kind", "key", "sentence"])),
                        findings.checked(facts(res))),
        sections.header(res),
        *body,
        block(sections.heading(len(sections.SECTIONS) - 1), inp.study, inp.study_hash, inp.study_file, inp.runs,
              inp.completes, res.tables.get("warnings")),
        "Tables (CSV, full precision): " + ", ".join(f"[{n}](tables/{n})" for n in table_names) + "\n",
    ]
    return "\n".join(p.rstrip("\n") + "\n" for p in parts)


def facts(res: Results) -> findings.Facts:
    """What the Findings and Read-with-care sentences read: the computed tables and a few counts."""
    n_images = len(res.inputs.reference.image_id) if res.inputs.reference is not None else 0
    return findings.Facts(tables=res.tables, baseline=res.baseline, arms=tuple(res.arms),
                          class_names=tuple(res.inputs.class_names), small=tuple(res.inputs.small),
                          n_patients=res.n_patients, n_images=n_images, sections=sections.section_titles())


def build_report(runs_dir: str | Path, out_dir: str | Path, *, force: bool = False) -> Path:
    """Write ``out_dir/report.md`` and ``report.html`` with ``figures/`` and ``tables/`` from the saved tables
    of ``runs_dir``. Python warnings raised meanwhile go to ``out_dir/warnings.log``.

    ``out_dir`` is claimed first (:func:`robustseg._outdir.claim_report_dir`: new, empty or an earlier report's
    folder, unless ``force``); every file is written into a staging folder and moved into place only when the
    whole report was written, so a failure (a full disk) leaves the earlier report as it was.
    """
    target = claim_report_dir(out_dir, runs_dir, force=force)
    out_dir = target.create()
    with logged(out_dir, "report"):
        res = compute(load_inputs(runs_dir))
        res.tables["findings"] = findings.table(facts(res))
        with target.staging() as stage:
            table_names = write_tables(res, stage / "tables")
            figs = draw_figures(res, stage / "figures")
            text = render(res, figs, table_names)
            write_text(stage / REPORT_NAME, text)
            write_text(stage / HTML_NAME, to_html(text, stage))
    return out_dir / REPORT_NAME


__all__ = ["HTML_NAME", "REPORT_NAME", "build_report"]
