"""The report's answer, first: per dataset, what won, by how much, how sure, and against the floor.

A dataset's verdict is two sentences made from the report's tables alone: the leader (best headline Dice,
dataset-level, as the scores table ranks) with its margin over the next method and the paired test of that
gap, the methods not significantly below it; then the floor (the ``constant`` method, when the run has it)
and the methods that do not beat it. Every "how sure" comes from ``comparisons``, the one place that says
which paired statistics the verdict uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from segbench.report.format import fmt, fmt_ci, fmt_p
from segbench.report.rundata import RunData
from segbench.report.tables import ALPHA, paired_table

__all__ = ["FLOOR", "Gap", "beats_floor", "comparisons", "gap", "standing", "verdict_lines"]

#: The method drawn as the floor: one class everywhere (``methods/classical/constant.py``).
FLOOR = "constant"


def comparisons(run: RunData, dataset: str) -> pd.DataFrame:
    """The paired comparisons of every two methods of a dataset that the verdict and the report's paired
    table share (``tables.paired_table``: per-image Dice, Holm-corrected). Swap the statistics here."""
    return paired_table(run, dataset, alpha=ALPHA)


@dataclass(frozen=True)
class Gap:
    """``better`` − ``worse`` in mean per-image Dice on the same images, from one row of ``comparisons``."""

    diff: float
    low: float
    high: float
    p_holm: float
    significant: bool

    def text(self) -> str:
        sure = "significant" if self.significant else "not significant"
        return f"{fmt_ci(self.diff, self.low, self.high, signed=True)} per image, Holm p = {fmt_p(self.p_holm)} ({sure})"


def gap(paired: pd.DataFrame, a: str, b: str) -> Gap | None:
    """The comparison of ``a`` against ``b`` (signs as ``a − b``), or None where the pair was not compared."""
    for first, second, sign in ((a, b, 1.0), (b, a, -1.0)):
        row = paired[(paired["method_a"] == first) & (paired["method_b"] == second)]
        if len(row):
            r = row.iloc[0]
            low, high = (r["diff_low"], r["diff_high"]) if sign > 0 else (-r["diff_high"], -r["diff_low"])
            return Gap(sign * float(r["diff"]), float(low), float(high), float(r["p_holm"]), bool(r["significant"]))
    return None


def _below(g: Gap | None) -> bool:
    """``a`` is significantly below ``b`` (for ``gap(paired, a, b)``)."""
    return g is not None and g.significant and g.diff < 0


def _names(methods: list[str], limit: int = 6) -> str:
    more = len(methods) - limit
    return ", ".join(methods[:limit]) + (f" and {more} more" if more > 0 else "")


def verdict_lines(dataset: str, scores: pd.DataFrame, paired: pd.DataFrame, label: str) -> list[str]:
    """The verdict of one dataset, one sentence a line.

    Args:
        dataset: Its name in the run.
        scores: ``tables.scores_table`` (best dataset-level Dice first).
        paired: ``comparisons`` of the dataset (empty: no per-image scores, or one method).
        label: The headline label (``"lesion"``, ``"mean over classes"``).
    """
    ranked = scores[scores["method"] != FLOOR] if (scores["method"] != FLOOR).any() else scores
    lead = ranked.iloc[0]
    where = f"{dataset} (Dice {label}, dataset-level, {int(lead['n_images'])} test images"
    where += f", {int(lead['seeds'])} seeds)" if lead["seeds"] > 1 else ")"
    text = f"{where}: {lead['method']} leads with {fmt(lead['dice_dataset'])}"
    if len(ranked) == 1:
        lines = [text + "; no other method to compare."]
    else:
        nxt = ranked.iloc[1]
        text += f", {lead['dice_dataset'] - nxt['dice_dataset']:+.3f} ahead of {nxt['method']} ({fmt(nxt['dice_dataset'])})"
        g = gap(paired, lead["method"], nxt["method"])
        if g is None:
            lines = [text + "; no paired test (no per-image scores)."]
        else:
            tied = [m for m in ranked["method"].iloc[1:] if not _below(gap(paired, m, lead["method"]))]
            text += f": {g.text()}."
            text += (f" Not significantly below {lead['method']}: {_names(tied)}." if tied
                     else f" {lead['method']} is significantly above every other method.")
            lines = [text]
    if FLOOR not in set(scores["method"]):
        return lines + [f"{dataset} floor: no `{FLOOR}` in this run (add --methods {FLOOR} to see what a constant "
                        "prediction scores)."]
    floor = scores[scores["method"] == FLOOR].iloc[0]
    beats = beats_floor(scores, paired)
    if not beats:
        return [f"{dataset}: only the floor ({FLOOR}) ran: it scores {fmt(floor['dice_dataset'])}."]
    below = [m for m, b in beats.items() if not b]
    how = (f"significantly higher per-image Dice, Holm p < {ALPHA:g}" if not paired.empty
           else "a higher dataset-level Dice; no paired test without per-image scores")
    floor_text = f"{dataset} floor: {FLOOR} (one class everywhere) scores {fmt(floor['dice_dataset'])}; "
    floor_text += (f"{len(below)} of {len(beats)} method(s) do not beat it ({how}): {_names(below)}." if below
                   else f"every method beats it ({how}).")
    return lines + [floor_text]


def beats_floor(scores: pd.DataFrame, paired: pd.DataFrame) -> dict[str, bool]:
    """Per method (best first), whether it beats ``FLOOR``: significantly higher per-image Dice, or without
    paired comparisons a higher dataset-level Dice. Empty without the floor."""
    if FLOOR not in set(scores["method"]):
        return {}
    floor = float(scores.loc[scores["method"] == FLOOR, "dice_dataset"].iloc[0])
    out = {}
    for r in scores.itertuples():
        if r.method == FLOOR:
            continue
        g = gap(paired, r.method, FLOOR) if not paired.empty else None
        out[r.method] = (g.significant and g.diff > 0) if g is not None else bool(np.nan_to_num(r.dice_dataset - floor) > 0)
    return out


def standing(scores: pd.DataFrame, paired: pd.DataFrame) -> dict[str, str]:
    """Per method, a word for the scores table: ``leader``, ``tie`` (not significantly below the leader),
    ``below``; ``floor`` for ``FLOOR`` and ``≤ floor`` for a method that does not beat it."""
    ranked = scores[scores["method"] != FLOOR] if (scores["method"] != FLOOR).any() else scores
    lead = ranked["method"].iloc[0]
    beats = beats_floor(scores, paired)
    out = {}
    for m in scores["method"]:
        if m == FLOOR and m != lead:
            out[m] = "floor"
        elif m == lead:
            out[m] = "leader"
        elif not beats.get(m, True):
            out[m] = "≤ floor"
        elif paired.empty:
            out[m] = "–"
        else:
            out[m] = "below" if _below(gap(paired, m, lead)) else "tie"
    return out
