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


def fmt_ci(estimate: float, low: float, high: float) -> str:
    """``estimate [low, high]``, or the estimate alone when the interval is undefined."""
    if math.isnan(low) or math.isnan(high):
        return fmt(estimate)
    return f"{fmt(estimate)} [{fmt(low)}, {fmt(high)}]"


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
