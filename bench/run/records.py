"""Reading and writing a run folder's records: light (no torch), so reports start fast."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd

__all__ = ["KEY_COLUMNS", "PREDICTIONS_CELL_FILE", "prediction_dir", "slug", "write_atomic", "load_tables"]

#: The columns that name a cell in every table.
KEY_COLUMNS = ["dataset", "method", "seed"]
#: In each ``predictions/<dataset>/<method>/<seed>/`` folder: the key of the cell whose label maps these are.
PREDICTIONS_CELL_FILE = "cell.txt"


def slug(text: str) -> str:
    """A file-name-safe form of a dataset, method or image id."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_")


def prediction_dir(run_dir: Path, dataset: str, method: str, seed: int) -> Path:
    """The folder of one (dataset, method, seed)'s saved label maps, ``<image_id>.png`` each, and its cell file."""
    return Path(run_dir) / "predictions" / dataset / slug(method) / str(seed)


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file and rename it into place: readers see the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def load_tables(run_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a run folder's ``summary.csv`` and ``per_image.csv``."""
    run_dir = Path(run_dir)
    path = run_dir / "summary.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no summary.csv; is this a run folder written by 'segbench run'?")
    summary = pd.read_csv(path)
    images = run_dir / "per_image.csv"
    per_image = pd.read_csv(images, dtype={"image_id": str}) if images.is_file() else pd.DataFrame()
    return summary, per_image
