"""Simulated seed-reproducibility studies with known ICC, to calibrate the pooled seed ICC
(``benchmarks/calibration.py``, tests). The simulated segmentation studies of every other check are in
:mod:`robustseg.stats.scenarios` and :mod:`robustseg.stats.calibrate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from robustseg.stats.seeds import pooled_seed_icc


@dataclass(frozen=True)
class IccModel:
    """Variance components of a seed-reproducibility study on one measure (additive, Gaussian)."""

    var_image: float = 0.6
    var_image_fold: float = 0.15
    var_fold: float = 0.2
    var_seed: float = 0.1
    var_error: float = 0.3

    @property
    def truth(self) -> float:
        """ICC(A,1) within a fold: image variance (shared + fold-specific) over the total within a fold."""
        img = self.var_image + self.var_image_fold
        return img / (img + self.var_seed + self.var_error)


def simulate_seed_table(seed: int, *, n_images: int = 30, n_folds: int = 3, n_seeds: int = 5,
                        model: IccModel = IccModel()) -> pd.DataFrame:
    """Long table ``fold, seed, image_id, value`` of one seed-reproducibility study under ``model``.

    Examples
    --------
    >>> t = simulate_seed_table(0, n_images=4, n_folds=2, n_seeds=3)
    >>> len(t), sorted(t["fold"].unique().tolist())
    (24, [0, 1])
    """
    rng = np.random.default_rng(seed)
    img = rng.normal(0, np.sqrt(model.var_image), n_images)
    y = (img[None, None, :] + rng.normal(0, np.sqrt(model.var_image_fold), (n_folds, 1, n_images))
         + rng.normal(0, np.sqrt(model.var_fold), (n_folds, 1, 1)) + rng.normal(0, np.sqrt(model.var_seed),
                                                                                 (n_folds, n_seeds, 1))
         + rng.normal(0, np.sqrt(model.var_error), (n_folds, n_seeds, n_images)))
    f, s, i = np.meshgrid(np.arange(n_folds), np.arange(n_seeds), np.arange(n_images), indexing="ij")
    return pd.DataFrame({"fold": f.ravel(), "seed": s.ravel(), "image_id": i.ravel(), "value": y.ravel()})


def icc_coverage(n_studies: int, *, n_images: int = 30, n_folds: int = 3, n_seeds: int = 5,
                 model: IccModel = IccModel(), alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Coverage of the pooled seed-ICC interval (:func:`pooled_seed_icc`) over simulated studies.

    Returns one row: ``n_images, n_folds, n_seeds, n_studies, truth, mean_icc, coverage, mean_width,
    coverage_unpooled, alpha``; ``coverage_unpooled`` is that of one ICC with targets = image x fold and raters =
    seed labels (for contrast).

    Examples
    --------
    >>> r = icc_coverage(5, n_images=10, n_folds=2, n_seeds=3).iloc[0]
    >>> bool(0 <= r["coverage"] <= 1), round(float(r["truth"]), 3)
    (True, 0.652)
    """
    rng = np.random.default_rng(seed)
    from robustseg.stats.icc import icc

    est, cover, width, old = [], [], [], []
    for _ in range(n_studies):
        t = simulate_seed_table(int(rng.integers(2**31)), n_images=n_images, n_folds=n_folds, n_seeds=n_seeds,
                                model=model)
        r = pooled_seed_icc(t, value="value", by=(), alpha=alpha).iloc[0]
        unpooled = icc(t, targets=("fold", "image_id"), raters="seed", ratings="value", alpha=alpha).iloc[0]
        old.append(unpooled["ci_low"] <= model.truth <= unpooled["ci_high"])
        est.append(r["icc"])
        cover.append(r["ci_low"] <= model.truth <= r["ci_high"])
        width.append(r["ci_high"] - r["ci_low"])
    return pd.DataFrame([{"n_images": n_images, "n_folds": n_folds, "n_seeds": n_seeds, "n_studies": n_studies,
                          "truth": model.truth, "mean_icc": float(np.mean(est)), "coverage": float(np.mean(cover)),
                          "mean_width": float(np.mean(width)), "coverage_unpooled": float(np.mean(old)),
                          "alpha": alpha}])
