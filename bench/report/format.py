"""Number formatting shared by the report's renderers and tables: 3 decimals, NaN as an en dash."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["fmt", "fmt_ci", "fmt_p", "markdown_table"]


def fmt(value: object, digits: int = 3) -> str:
    """A float with ``digits`` decimals (no decimals from 1000 up), NaN as an en dash; anything else as ``str``."""
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "–"
        return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def fmt_ci(estimate: float, low: float, high: float, *, digits: int = 3, signed: bool = False) -> str:
    """The report's one interval format: ``0.812 [0.800, 0.825]`` (``signed``: ``+0.012 [+0.004, +0.020]``
    for differences); the estimate alone when the interval is undefined, an en dash without an estimate."""
    def one(value: float) -> str:
        return fmt(float(value), digits) if not signed or math.isnan(value) else f"{value:+.{digits}f}"

    if math.isnan(low) or math.isnan(high):
        return one(estimate)
    return f"{one(estimate)} [{one(low)}, {one(high)}]"


def fmt_p(p: float) -> str:
    """A p-value: scientific below 0.001, NaN as an en dash."""
    if math.isnan(p):
        return "–"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub markdown table (no extra dependency); floats with 3 decimals, NaN as an en dash."""
    header = "| " + " | ".join(str(c) for c in df.columns) + " |"
    rule = "| " + " | ".join("---" for _ in df.columns) + " |"
    body = ["| " + " | ".join(fmt(v).replace("|", "\\|") for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body])
