"""Statistics over tidy tables: seed/fold spread, patient bootstrap CIs, ICC, arm comparisons, ranks.

Every function takes a long DataFrame plus column names and returns a tidy DataFrame with documented
columns (``ci_low``/``ci_high`` floats, ``alpha`` a parameter); nothing is rounded here.
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
    reference_agreement_icc,
    seed_reproducibility_icc,
)
from robustseg.stats.ranks import auroc, auroc_table, rank_correlation
from robustseg.stats.spread import ensemble_vs_members, run_level_metrics, spread

__all__ = [
    "REFERENCE_AGREEMENT_KIND",
    "SEED_REPRODUCIBILITY_KIND",
    "attach_patients",
    "auroc",
    "auroc_table",
    "bland_altman",
    "compare_arms",
    "ensemble_vs_members",
    "holm",
    "icc",
    "icc_from_matrix",
    "koo_li",
    "patient_bootstrap_ci",
    "rank_biserial",
    "rank_correlation",
    "reference_agreement_icc",
    "run_level_metrics",
    "seed_reproducibility_icc",
    "spread",
]
