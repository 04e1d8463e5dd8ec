"""Reading and writing a run folder's records: light (no torch), so reports start fast."""

from __future__ import annotations

import hashlib
import json
import os
import re
import string
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import pandas as pd

from segbench.files import write_atomic

__all__ = [
    "KEY_COLUMNS",
    "COLUMN_DEFAULTS",
    "stable_hash",
    "PREDICTIONS_CELL_FILE",
    "image_file_stem",
    "image_id_from_stem",
    "prediction_dir",
    "prediction_path",
    "slug",
    "load_tables",
    "DATASETS_FILE",
    "dataset_record",
    "dataset_record_problems",
    "write_dataset_records",
]

#: The columns that name a cell in every table.
KEY_COLUMNS = ["dataset", "method", "seed", "fold", "train_fraction"]
#: Columns newer than some run folders, with the value that means what older folders did (one split, the
#: whole training part, clean test images); ``load_tables`` fills them in.
COLUMN_DEFAULTS = {"fold": 0, "n_folds": 1, "train_fraction": 1.0, "corruption": "none", "severity": 0}
#: In each ``predictions/<dataset>/<method>/<seed>/`` folder: the key of the cell whose label maps these are.
PREDICTIONS_CELL_FILE = "cell.txt"


def stable_hash(obj: object) -> str:
    """A short hash of a JSON-able value, the same in every process (cell keys, split identities)."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


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


def prediction_dir(
    run_dir: Path, dataset: str, method: str, seed: int, *, fold: int | None = None, train_fraction: float = 1.0
) -> Path:
    """The folder of one (dataset, method, seed)'s saved label maps, ``<image_id>.png`` each, and its cell file.

    A cross-validated run keeps each fold's in ``fold<k>/`` below it, a training subset's in ``train<f>/``.
    """
    path = Path(run_dir) / "predictions" / dataset / slug(method) / str(seed)
    if fold is not None:
        path /= f"fold{fold}"
    return path / f"train{train_fraction:g}" if train_fraction != 1.0 else path


def prediction_path(
    run_dir: Path, dataset: str, method: str, seed: int, image_id: str, *, fold: int | None = None,
    train_fraction: float = 1.0,
) -> Path:
    """The saved label map of one image (its name encoded by ``image_file_stem``)."""
    folder = prediction_dir(run_dir, dataset, method, seed, fold=fold, train_fraction=train_fraction)
    return folder / f"{image_file_stem(image_id)}.png"


#: In a run folder: what each dataset name was (kind, folder, a hash of its image ids), so that one name never
#: stands for two datasets in one set of tables.
DATASETS_FILE = "datasets.json"


def dataset_record(kind: str, dataset: object) -> dict[str, object]:
    """What a dataset name stands for in a run folder: its kind, resolved folder and a hash of its image ids."""
    ids = sorted(dataset.ids())  # type: ignore[attr-defined]
    return {"kind": kind, "folder": dataset.config().get("root"), "files": stable_hash(ids), "images": len(ids)}  # type: ignore[attr-defined]


def dataset_record_problems(run_dir: Path, records: dict[str, dict[str, object]]) -> list[str]:
    """One problem per dataset name that ``run_dir`` already holds with other data (another kind, folder or
    file list): its rows would be mixed with this command's in one table."""
    path = Path(run_dir) / DATASETS_FILE
    known = json.loads(path.read_text()) if path.is_file() else {}
    problems = []
    for name, record in records.items():
        old = known.get(name)
        if old is None or all(old.get(k) == record[k] for k in ("kind", "folder", "files")):
            continue
        was = f"{old['kind']}" + (f" {old['folder']}" if old.get("folder") else "") + f" ({old['images']} images)"
        now = f"{record['kind']}" + (f" {record['folder']}" if record.get("folder") else "") + f" ({record['images']} images)"
        same_place = old.get("kind") == record["kind"] and old.get("folder") == record["folder"]
        what = "its image files have changed since" if same_place else "it held other data"
        problems.append(
            f"--out {run_dir}: dataset name {name!r} was {was} there, now {now}: {what}, and both would be scored as "
            f"one dataset; give this one its own name (--datasets {record['kind']}:NEWNAME=PATH) or use another --out")
    return problems


def write_dataset_records(run_dir: Path, records: dict[str, dict[str, object]]) -> None:
    """Add this command's dataset names to ``run_dir``'s record of them."""
    path = Path(run_dir) / DATASETS_FILE
    known = json.loads(path.read_text()) if path.is_file() else {}
    write_atomic(path, lambda p: p.write_text(json.dumps({**known, **records}, indent=1)))


def load_tables(run_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a run folder's ``summary.csv`` and ``per_image.csv`` (or ``per_image.csv.gz``: a committed reference
    folder may keep a large per-image table compressed)."""
    run_dir = Path(run_dir)
    path = run_dir / "summary.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no summary.csv; is this a run folder written by 'segbench run'?")
    summary = _with_defaults(pd.read_csv(path))
    images = next((p for p in (run_dir / "per_image.csv", run_dir / "per_image.csv.gz") if p.is_file()), None)
    per_image = _with_defaults(pd.read_csv(images, dtype={"image_id": str})) if images else pd.DataFrame()
    return summary, per_image


def _with_defaults(table: pd.DataFrame) -> pd.DataFrame:
    """Fill in ``COLUMN_DEFAULTS`` that a table lacks (run folders written before those columns existed)."""
    for column, value in COLUMN_DEFAULTS.items():
        if column not in table.columns and (column != "n_folds" or "status" in table.columns):  # n_folds: summary only
            table[column] = value
    return table
