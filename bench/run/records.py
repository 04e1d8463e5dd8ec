"""Reading and writing a run folder's records: light (no torch), so reports start fast."""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Iterable
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
    "case_collisions",
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


#: Characters an image id keeps in its file name: safe on every common file system (Linux, macOS, Windows).
_SAFE = frozenset(string.ascii_letters + string.digits + "_-.")
#: Device names Windows reserves, with any extension (``CON.png`` cannot be created there).
_WINDOWS_RESERVED = frozenset({"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                               *(f"LPT{i}" for i in range(1, 10))})


def _escaped(c: str) -> str:
    return "".join(f"%{b:02X}" for b in c.encode())


def image_file_stem(image_id: str) -> str:
    """The file stem of an image's saved prediction: the id itself wherever that is a safe name on every common
    file system (ASCII letters of either case, digits, ``_``, ``-``, ``.``; not starting with a dot; not a
    Windows device name such as ``CON``), so ``IMD002`` is saved as ``IMD002.png``.

    Anything else becomes ``%XX`` per UTF-8 byte (hex in upper case): every other character (space, ``%``,
    accents, CJK), a leading dot, the first letter of a device name. Reversible (``image_id_from_stem``), so
    two ids never share a name; two ids that differ only by case get names that differ only by case, which a
    case-insensitive file system (Windows, macOS) cannot hold apart: pre-flight refuses them
    (``case_collisions``) when predictions are saved.
    """
    stem = "".join(c if c in _SAFE else _escaped(c) for c in image_id)
    if stem.startswith("."):
        stem = _escaped(".") + stem[1:]
    if stem.split(".")[0].upper() in _WINDOWS_RESERVED:
        stem = _escaped(stem[0]) + stem[1:]
    return stem


def image_id_from_stem(stem: str) -> str:
    """The image id that ``image_file_stem`` (or the earlier ``_legacy_file_stem``) encoded as ``stem``."""
    return unquote(stem, errors="strict")


def _legacy_file_stem(image_id: str) -> str:
    """How run folders written before readable names named a prediction: every character but lower-case ASCII
    letters, digits, ``_`` and ``-`` escaped (``IMD002`` -> ``%49%4D%44002``). Still read."""
    kept = string.ascii_lowercase + string.digits + "_-"
    return "".join(c if c in kept else _escaped(c) for c in image_id)


def case_collisions(image_ids: Iterable[str]) -> list[tuple[str, str]]:
    """Pairs of ids whose prediction files would differ only by case (one file on Windows and macOS)."""
    first: dict[str, str] = {}
    pairs = []
    for image_id in image_ids:
        folded = image_file_stem(image_id).casefold()
        if folded in first:
            pairs.append((first[folded], image_id))
        else:
            first[folded] = image_id
    return pairs


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
    """The saved label map of one image, named by ``image_file_stem``; in a folder written before readable names,
    the file it holds under the earlier name (so old run folders keep reading, and a resumed one stays whole)."""
    folder = prediction_dir(run_dir, dataset, method, seed, fold=fold, train_fraction=train_fraction)
    path = folder / f"{image_file_stem(image_id)}.png"
    legacy = folder / f"{_legacy_file_stem(image_id)}.png"
    return legacy if not path.is_file() and legacy.is_file() else path


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
    # work_size is JSON text ("256", "[256, 192]"): inferred, a longer side would read as 256.0 where the column
    # has gaps (cells without a work size)
    summary = _with_defaults(pd.read_csv(path, dtype={"work_size": str}))
    images = next((p for p in (run_dir / "per_image.csv", run_dir / "per_image.csv.gz") if p.is_file()), None)
    per_image = _with_defaults(pd.read_csv(images, dtype={"image_id": str})) if images else pd.DataFrame()
    return summary, per_image


def _with_defaults(table: pd.DataFrame) -> pd.DataFrame:
    """Fill in ``COLUMN_DEFAULTS`` that a table lacks (run folders written before those columns existed)."""
    for column, value in COLUMN_DEFAULTS.items():
        if column not in table.columns and (column != "n_folds" or "status" in table.columns):  # n_folds: summary only
            table[column] = value
    return table
