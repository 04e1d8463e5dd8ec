"""The report's automatic sentences, from the tables alone.

Each sentence compares like with like: a claim of significance cites the Holm-corrected p-value; the 95%
intervals are not corrected for the number of pairs, so they go with the *uncorrected* p-value of the same
pair (one t reference gives both, so they agree).
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from segbench.report.format import fmt_p
from segbench.report.tables import ALPHA

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


def paired_intro(label: str, *, several_seeds: bool, table: pd.DataFrame | None = None) -> str:
    """What the paired table holds, how its one statistic is made and over which family Holm corrects.

    Args:
        label: The headline class's label.
        several_seeds: Whether some pair has several common seeds.
        table: The ``paired_table`` (its units and family are named when given).
    """
    seeds = " Pairs are matched on (seed, image)." if several_seeds else ""
    family = f" over {table.attrs['family']}" if table is not None and "family" in table.attrs else " over the pairs of this dataset"
    text = (f"Each pair on the same images: mean per-image difference of Dice {label} (A − B), its 95% interval "
            "(not corrected for the number of pairs) and its two-sided p-value, all three from one t reference on "
            "the units that were trained and the images within them: in a K-fold run the folds (each with its own "
            "models; t with K − 1 degrees of freedom), on one split with several seeds the seeds and images as crossed "
            "random effects (Satterthwaite degrees of freedom), on one split with one seed the images. The verdict "
            f"names the method this mean difference favours when the Holm-corrected p-value{family} is below 0.05 "
            f"(docs/report.md).{seeds}")
    if table is not None and len(table) and not table["training_noise"].astype(bool).all():
        text += (" With one split and one trained model per method, training noise (another seed, another split) is "
                 "not in the test: a verdict says the methods differ on this population of images for these trained "
                 "models, not that retraining them would give the same order.")
    return text


#: Pairs named in one sentence; the rest are counted (the table lists them all).
MAX_NAMED_PAIRS = 8


def _pairs(rows: pd.DataFrame) -> str:
    named = ", ".join(f"{r.method_a} vs {r.method_b} (p = {fmt_p(r.p)})" for r in rows.head(MAX_NAMED_PAIRS).itertuples())
    more = len(rows) - MAX_NAMED_PAIRS
    return named + (f" and {more} more pair(s) (see the table)" if more > 0 else "")


def paired_sentence(table: pd.DataFrame, label: str, *, alpha: float = ALPHA) -> str:
    """The verdicts of a ``paired_table`` in words, each set against the p-value of the same level.

    Significance is Holm's; then the pairs whose test rejects only before the correction. The interval, the
    p-value and the winner come from one statistic (``stats.paired_difference``), so they cannot disagree.
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
    return text


def work_sizes_sentence(ok: pd.DataFrame) -> str:
    """The work size every method used, or each method's where they differ (matched conditions, visible)."""
    sizes = ok.groupby("method", sort=False)["work_size"].first()
    if sizes.nunique() == 1:
        return f" Work size, every method and stage: {sizes.iloc[0]}."
    return " Work sizes differ: " + ", ".join(f"{m} {v}" for m, v in sizes.items()) + "."
