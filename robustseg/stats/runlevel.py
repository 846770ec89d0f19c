"""Run-level difference between two arms: seed (and fold) noise is in the error term.

Each trained model (run) contributes one number (e.g. its global Dice of CSP on the test set). The
difference of the arm means is tested with Welch's t on those run-level values, with standard error
``sqrt(sd_a**2 / R_a + sd_b**2 / R_b)``, so adding runs shrinks the SE and seed noise cannot pass for
an effect (a per-image test holds the trained models fixed and does).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats as sps


def run_level_test(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *,
                   alpha: float = 0.05) -> dict[str, float]:
    """Welch test of ``mean(a) - mean(b)`` over run-level values.

    Returns ``diff``, ``se``, ``df``, ``t``, ``p`` (two-sided), ``ci_low``, ``ci_high`` (``1 - alpha``),
    ``n_a``, ``n_b``. NaN values are dropped; fewer than two runs on either side gives NaN statistics.

    Examples
    --------
    >>> r = run_level_test([0.80, 0.82, 0.84], [0.70, 0.72, 0.74])
    >>> round(r["diff"], 3), round(r["se"], 4), r["p"] < 0.01
    (0.1, 0.0163, True)
    """
    xa = np.asarray(a, dtype=np.float64)
    xb = np.asarray(b, dtype=np.float64)
    xa, xb = xa[np.isfinite(xa)], xb[np.isfinite(xb)]
    na, nb = xa.size, xb.size
    out = {"diff": float("nan"), "se": float("nan"), "df": float("nan"), "t": float("nan"), "p": float("nan"),
           "ci_low": float("nan"), "ci_high": float("nan"), "n_a": float(na), "n_b": float(nb)}
    if na < 2 or nb < 2:
        if na and nb:
            out["diff"] = float(xa.mean() - xb.mean())
        return out
    va, vb = xa.var(ddof=1) / na, xb.var(ddof=1) / nb
    diff = float(xa.mean() - xb.mean())
    se = float(np.sqrt(va + vb))
    out.update(diff=diff, se=se)
    if se == 0.0:
        out.update(df=float(na + nb - 2), t=float("inf") * np.sign(diff) if diff else float("nan"),
                   p=0.0 if diff else 1.0, ci_low=diff, ci_high=diff)
        return out
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    t = diff / se
    q = sps.t.ppf(1 - alpha / 2, df)
    out.update(df=float(df), t=float(t), p=float(2 * sps.t.sf(abs(t), df)),
               ci_low=float(diff - q * se), ci_high=float(diff + q * se))
    return out
