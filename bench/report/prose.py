"""The report's automatic sentences, from the tables alone.

Each sentence compares like with like: a claim of significance cites the Holm-corrected p-value; the 95%
intervals are not corrected for the number of pairs, so they are only ever set against the *uncorrected*
p-value of the same pair.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from segbench.report.format import fmt_p
from segbench.report.tables import ALPHA, WILCOXON

__all__ = ["dataset_intro", "paired_intro", "paired_sentence", "work_sizes_sentence"]


def dataset_intro(first: Mapping[str, object], *, several_seeds: bool) -> str:
    """How a dataset was split and scored, and how its intervals were made.

    Args:
        first: One finished summary row of the dataset (split sizes, device).
        several_seeds: Whether some method ran more than one seed.
    """
    if first["eval_split"] == "test":
        split = f"{int(first['n_train'])} train / {int(first['n_val'])} val / {int(first['n_test'])} test images. "
    else:  # no test split (CamVid here): trained on train without early stopping, scored on val
        split = f"{int(first['n_train'])} train images; scored on the {int(first['n_test'])} val images (no test split). "
    if int(first.get("n_folds", 1) or 1) > 1:
        split = (f"{int(first['n_folds'])}-fold cross-validation: every one of the {int(first['n_test'])} images scored "
                 "once per method and seed, by the model that did not train on it. ")
    seeds = (" For methods with several seeds, a two-level bootstrap resamples seeds and images (the same images "
             "for every seed of a resample; percentile interval), so the interval includes training noise."
             if several_seeds else "")
    return (split + "Dataset-level scores sum the confusion matrices of all images, then score (every pixel weighs the "
            "same); per-image means score each image, then average (every image weighs the same). Intervals: 95% BCa "
            f"bootstrap over test images (2000 resamples, seed 0).{seeds} Latency: one image, batch 1, {first['device_name']}.")


def paired_intro(label: str, *, several_seeds: bool) -> str:
    """What the paired table holds."""
    seeds = (" Pairs with several common seeds are matched on (seed, image); their interval and p-value come from "
             "one two-level bootstrap over seeds and images (normal approximation), so training noise counts."
             if several_seeds else "")
    return (f"Each pair on the same images: mean per-image difference of Dice {label} (A − B) with its 95% interval "
            "(not corrected for the number of pairs), the p-value of the pair's test (two-sided Wilcoxon signed-rank "
            f"with one seed) and that p-value Holm-corrected over the pairs of this dataset.{seeds}")


#: Pairs named in one sentence; the rest are counted (the table lists them all).
MAX_NAMED_PAIRS = 8


def _pairs(rows: pd.DataFrame) -> str:
    named = ", ".join(f"{r.method_a} vs {r.method_b} (p = {fmt_p(r.p)})" for r in rows.head(MAX_NAMED_PAIRS).itertuples())
    more = len(rows) - MAX_NAMED_PAIRS
    return named + (f" and {more} more pair(s) (see the table)" if more > 0 else "")


def paired_sentence(table: pd.DataFrame, label: str, *, alpha: float = ALPHA) -> str:
    """The verdicts of a ``paired_table`` in words, each set against the p-value of the same level.

    Significance is Holm's. Then, at the uncorrected level: pairs whose test rejects only before the
    correction; and, where the interval and the test are different procedures (Wilcoxon), pairs where they
    disagree, each case said once with the pairs it concerns.
    """
    if table.empty:
        return "One method only: nothing to compare."
    sig = table[table["significant"]]
    head = (f"Significant at {alpha:g} after Holm's correction over {len(table)} pair(s): " if len(sig)
            else f"No difference is significant at {alpha:g} after Holm's correction over {len(table)} pair(s).")
    parts = []
    for r in sig.itertuples():
        winner, loser, diff = (r.method_a, r.method_b, r.diff) if r.diff > 0 else (r.method_b, r.method_a, -r.diff)
        parts.append(f"{winner} > {loser} (Dice {label} +{diff:.3f} per image, Holm p = {fmt_p(r.p_holm)})")
    text = head + "; ".join(parts) + ("." if parts else "")
    rest = table[~table["significant"]]
    uncorrected = rest[rest["p"] < alpha]
    if len(uncorrected):
        text += (f" Below {alpha:g} before the correction but not after it: {_pairs(uncorrected)}; with this many pairs, "
                 "some such values are expected by chance.")
    # The signed-rank test and the interval of the mean answer different questions; both uncorrected here.
    excludes = (table["diff_low"] > 0) | (table["diff_high"] < 0)
    wilcoxon = table["test"] == WILCOXON
    mean_only = table[wilcoxon & excludes & ~(table["p"] < alpha)]
    if len(mean_only):
        text += (f" For {_pairs(mean_only)} the 95% interval of the mean difference excludes 0 but the signed-rank test "
                 f"does not reject even before correction: the mean gap may come from a few images with large differences "
                 "rather than a consistent shift over images (see the per-image figure).")
    shift_only = table[wilcoxon & ~excludes & (table["p"] < alpha)]
    if len(shift_only):
        text += (f" For {_pairs(shift_only)} the signed-rank test rejects before correction but the interval of the mean "
                 "difference includes 0: a consistent shift on most images, offset in the mean by a few going the other way.")
    return text


def work_sizes_sentence(ok: pd.DataFrame) -> str:
    """The work size every method used, or each method's where they differ (matched conditions, visible)."""
    sizes = ok.groupby("method", sort=False)["work_size"].first()
    if sizes.nunique() == 1:
        return f" Work size, every method and stage: {sizes.iloc[0]}."
    return " Work sizes differ: " + ", ".join(f"{m} {v}" for m, v in sizes.items()) + "."
