"""Reading and writing a run folder's records: light (no torch), so reports start fast."""

from __future__ import annotations

import os
import re
import string
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import pandas as pd

__all__ = [
    "KEY_COLUMNS",
    "PREDICTIONS_CELL_FILE",
    "image_file_stem",
    "image_id_from_stem",
    "prediction_dir",
    "prediction_path",
    "slug",
    "write_atomic",
    "load_tables",
]

#: The columns that name a cell in every table.
KEY_COLUMNS = ["dataset", "method", "seed"]
#: In each ``predictions/<dataset>/<method>/<seed>/`` folder: the key of the cell whose label maps these are.
PREDICTIONS_CELL_FILE = "cell.txt"


def slug(text: str) -> str:
    """A file-name-safe form of a dataset, method or image id."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_")


#: Characters an image id keeps as they are in a file name; everything else is escaped.
_KEPT = frozenset(string.ascii_lowercase + string.digits + "_-")


def image_file_stem(image_id: str) -> str:
    """A reversible, collision-free file stem for an image id.

    Lower-case ASCII letters, digits, ``_`` and ``-`` are kept; every other character (upper case, ``.``,
    space, accents, CJK, ``%``) becomes ``%XX`` per UTF-8 byte, hex in upper case. So ids that differ only by
    accents or case get different names, two names never differ only by case (safe on case-insensitive file
    systems), and no name starts with a dot. ``image_id_from_stem`` inverts it.
    """
    return "".join(c if c in _KEPT else "".join(f"%{b:02X}" for b in c.encode()) for c in image_id)


def image_id_from_stem(stem: str) -> str:
    """The image id that ``image_file_stem`` encoded as ``stem``."""
    return unquote(stem, errors="strict")


def prediction_dir(run_dir: Path, dataset: str, method: str, seed: int) -> Path:
    """The folder of one (dataset, method, seed)'s saved label maps, ``<image_id>.png`` each, and its cell file."""
    return Path(run_dir) / "predictions" / dataset / slug(method) / str(seed)


def prediction_path(run_dir: Path, dataset: str, method: str, seed: int, image_id: str) -> Path:
    """The saved label map of one image (its name encoded by ``image_file_stem``)."""
    return prediction_dir(run_dir, dataset, method, seed) / f"{image_file_stem(image_id)}.png"


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
