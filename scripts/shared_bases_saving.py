"""How much fitting shared bases saved in a run: the base fits each reusing pipeline skipped.

    python scripts/shared_bases_saving.py results/reference/current/ph2-cv

A pipeline that reused a fitted base (``base_cell`` in summary.csv) skipped its provider's base fit: the
provider's ``train_s`` when the provider is a bare method (its whole fit is the base). Without sharing, the
run would have spent that much more wall-clock time fitting (the same computations: on the CPU, training is
deterministic here, so the scores would be the same), everything else being equal.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def skipped_fits(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per reusing pipeline: its provider and the provider's fit time (s) it skipped."""
    cells = summary.drop_duplicates("cell").set_index("cell")
    reused = cells[cells["base_cell"].fillna("").astype(str) != ""]
    providers = cells.loc[reused["base_cell"]]
    bare = ~providers["method"].str.contains("+", regex=False).to_numpy()
    return pd.DataFrame({"pipeline": reused["method"].to_numpy(), "provider": providers["method"].to_numpy(),
                         "skipped_fit_s": providers["train_s"].to_numpy()})[bare]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run folder (or its summary.csv)")
    args = parser.parse_args()
    path = Path(args.run)
    table = skipped_fits(pd.read_csv(path if path.name == "summary.csv" else path / "summary.csv"))
    print(table.groupby(["pipeline", "provider"])["skipped_fit_s"].agg(["count", "sum"]).round(1).to_string())
    print(f"total skipped: {table['skipped_fit_s'].sum():.0f} s ({table['skipped_fit_s'].sum() / 60:.1f} min)")
