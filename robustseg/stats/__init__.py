"""Statistics over tidy tables: seed/fold spread, patient-level CIs, ICC, arm comparisons, ranks.

Every function takes a long DataFrame plus column names and returns a tidy DataFrame with documented
columns (``ci_low``/``ci_high`` floats, ``alpha`` a parameter); nothing is rounded here.

Modules: ``spread`` (run-level values, seed/fold SD, ensembles vs members), ``bootstrap`` (patient-level
intervals), ``icc`` (ICC forms, Koo & Li, Bland-Altman), ``seeds`` (seed ICC pooled over folds, presence
kappa), ``runlevel`` (run-level arm comparison, ranking stability), ``compare`` (v0.1 per-image Wilcoxon,
Holm), ``ranks`` (AUROC with DeLong CI, Spearman), ``simulate`` (simulated studies for calibration).
Every public function has a doctested ``Examples`` section (``tests/test_stats.py`` runs them).
"""

from robustseg.stats.bootstrap import attach_patients, patient_bootstrap_ci
from robustseg.stats.compare import compare_arms, holm, rank_biserial
from robustseg.stats.icc import (
    REFERENCE_AGREEMENT_KIND,
    SEED_REPRODUCIBILITY_KIND,
    bland_altman,
    icc,
    icc_from_matrix,
    koo_li,
    koo_li_interval,
    reference_agreement_icc,
    seed_reproducibility_icc,
)
from robustseg.stats.ranks import auroc, auroc_ci, auroc_table, rank_correlation
from robustseg.stats.runlevel import (
    DICE_ALL,
    compare_runs,
    dice_all_images,
    ranking_stability,
    run_level_test,
    run_values,
)
from robustseg.stats.seeds import fleiss_kappa, icc_a1_interval, pooled_seed_icc, presence_agreement
from robustseg.stats.spread import ensemble_vs_members, run_level_metrics, spread

__all__ = [
    "DICE_ALL",
    "REFERENCE_AGREEMENT_KIND",
    "SEED_REPRODUCIBILITY_KIND",
    "attach_patients",
    "auroc",
    "auroc_ci",
    "auroc_table",
    "bland_altman",
    "compare_arms",
    "compare_runs",
    "dice_all_images",
    "ensemble_vs_members",
    "fleiss_kappa",
    "holm",
    "icc",
    "icc_a1_interval",
    "icc_from_matrix",
    "koo_li",
    "koo_li_interval",
    "patient_bootstrap_ci",
    "pooled_seed_icc",
    "presence_agreement",
    "rank_biserial",
    "rank_correlation",
    "ranking_stability",
    "reference_agreement_icc",
    "run_level_metrics",
    "run_level_test",
    "run_values",
    "seed_reproducibility_icc",
    "spread",
]
