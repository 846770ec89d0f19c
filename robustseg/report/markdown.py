"""Markdown formatting: numbers are rounded here and only here."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

Formatter = Callable[[Any], str]


def num(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals; NaN / None / inf as ``n/a`` / ``inf``."""
    if value is None or value is pd.NA:
        return "n/a"
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}f}"


def fixed(digits: int) -> Formatter:
    return lambda v: num(v, digits)


def mdd(value: Any) -> str:
    """A minimum detectable difference in Dice: above 1 no possible difference is detectable, so ``> 1``.

    >>> mdd(0.0362), mdd(2.48), mdd(float("nan"))
    ('0.036', '> 1', 'n/a')
    """
    try:
        if float(value) > 1:
            return "> 1"
    except (TypeError, ValueError):
        pass
    return num(value)


def integer(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return str(int(value))


def pvalue(value: Any) -> str:
    """p-values: 3 significant digits, ``<0.001`` below."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return "<0.001" if float(value) < 0.001 else f"{float(value):.3f}"


def pm(mean: Any, sd: Any, digits: int = 3) -> str:
    """``mean ± sd`` (just the mean when the SD is undefined)."""
    if sd is None or sd is pd.NA or (isinstance(sd, float) and math.isnan(sd)):
        return num(mean, digits)
    return f"{num(mean, digits)} ± {num(sd, digits)}"


def interval(low: Any, high: Any, digits: int = 3) -> str:
    if all(isinstance(v, float) and math.isnan(v) for v in (low, high)):
        return "n/a"
    return f"[{num(low, digits)}, {num(high, digits)}]"


def escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(df: pd.DataFrame, columns: Mapping[str, str | tuple[str, Formatter] | tuple[str, Callable[[pd.Series], str], bool]]) -> str:
    """A pipe table. ``columns`` maps a column (or a new name) to a header, or to ``(header, formatter)``;
    a 3-tuple ``(header, row_function, True)`` computes the cell from the whole row."""
    if df.empty:
        return "_(no data)_\n"
    heads, cells = [], []
    for col, spec in columns.items():
        if isinstance(spec, str):
            heads.append(spec)
            cells.append(lambda r, c=col: escape(r[c]) if not isinstance(r[c], float) else num(r[c]))
        elif len(spec) == 3:
            heads.append(spec[0])
            cells.append(lambda r, f=spec[1]: escape(f(r)))
        else:
            heads.append(spec[0])
            cells.append(lambda r, c=col, f=spec[1]: escape(f(r[c])))
    lines = ["| " + " | ".join(heads) + " |", "|" + "|".join("---" for _ in heads) + "|"]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(f(row) for f in cells) + " |")
    return "\n".join(lines) + "\n"


def figure(path: str, alt: str) -> str:
    """An image with its alt text (brackets and line breaks escaped, so any text is safe)."""
    text = " ".join(str(alt).split()).replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
    return f"![{text}]({path})\n"


def anchor(title: str) -> str:
    """The id of a heading, as GitHub makes it: lower case, punctuation dropped, spaces to hyphens.

    The HTML report gives its headings the same ids, so ``[text](#id)`` links work in both.

    >>> anchor("1. Summary"), anchor("Reproducibility and agreement (ICC, Bland-Altman)")
    ('1-summary', 'reproducibility-and-agreement-icc-bland-altman')
    """
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
