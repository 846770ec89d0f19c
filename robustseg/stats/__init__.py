"""Statistics over tidy tables: seed/fold spread, patient-level CIs, ICC, arm comparisons, ranks.

Every function takes a long DataFrame plus column names and returns a tidy DataFrame with documented
columns (``ci_low``/``ci_high`` floats, ``alpha`` a parameter); nothing is rounded here.

Modules: ``spread`` (run-level values, seed/fold SD, ensembles vs members), ``intervals`` (recipe and
test-set intervals of Dice), ``bootstrap`` (patient-level bootstrap intervals), ``icc`` (ICC forms, Koo & Li,
Bland-Altman), ``seeds`` (seed ICC pooled over folds, presence kappa), ``design`` (the run-level test of each
design, MDD, TOST), ``runlevel`` (run-level arm comparison with decisions, ranking stability), ``power``
(planning: variance components, simulated power, runs and patients a claim needs), ``compare``
(per-image Wilcoxon with the models held fixed, Holm), ``ranks`` (AUROC with DeLong CI, Spearman),
``simulate`` and ``scenarios`` (simulated studies with known truth for calibration).
Every public function has a doctested ``Examples`` section (``tests/test_stats.py`` runs them).
"""

from robustseg.stats.bootstrap import attach_patients, patient_bootstrap_ci
from robustseg.stats.compare import compare_arms, holm, rank_biserial
from robustseg.stats.design import DESIGNS, design_test, mdd, tost
from robustseg.stats.flags import collapsed_runs
from robustseg.stats.icc import (
    REFERENCE_AGREEMENT_KIND,
    SEED_REPRODUCIBILITY_KIND,
    bland_altman,
    icc,
    icc_from_matrix,
    koo_li,
    koo_li_interval,
    proportional_bias,
    reference_agreement_icc,
    seed_reproducibility_icc,
)
from robustseg.stats.intervals import dice_intervals
from robustseg.stats.power import run_components, simulated_power
from robustseg.stats.ranks import auroc, auroc_ci, auroc_table, rank_correlation
from robustseg.stats.runlevel import (
    DEFAULT_MARGIN,
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
    "DEFAULT_MARGIN",
    "DESIGNS",
    "DICE_ALL",
    "REFERENCE_AGREEMENT_KIND",
    "SEED_REPRODUCIBILITY_KIND",
    "attach_patients",
    "auroc",
    "auroc_ci",
    "auroc_table",
    "bland_altman",
    "collapsed_runs",
    "compare_arms",
    "compare_runs",
    "design_test",
    "dice_all_images",
    "dice_intervals",
    "ensemble_vs_members",
    "fleiss_kappa",
    "holm",
    "icc",
    "icc_a1_interval",
    "icc_from_matrix",
    "koo_li",
    "koo_li_interval",
    "mdd",
    "patient_bootstrap_ci",
    "pooled_seed_icc",
    "presence_agreement",
    "proportional_bias",
    "rank_biserial",
    "rank_correlation",
    "ranking_stability",
    "reference_agreement_icc",
    "run_level_metrics",
    "run_components",
    "run_level_test",
    "run_values",
    "seed_reproducibility_icc",
    "simulated_power",
    "spread",
    "tost",
]
