"""A run folder as the report reads it: tables, environment, cell records and per-image data.

Compatibility lives here and nowhere else in the report:

* run folders without the ``cell`` column (older runs): cells are matched to summary rows by their timings;
* run folders without ``confusion_per_image.npz``: per-image confusion matrices are rebuilt from the saved
  predictions and kept only if they add up to the cell's recorded matrix;
* committed reference folders without ``cells/``: whatever needs a cell record is left out with a note;
* K-fold runs (a ``fold`` column; absent or empty means one fold): the rows of a (dataset, method, seed)
  are pooled into one, dataset-level scores from the sum of the folds' confusion matrices, per-image means
  over all the images, ``n_test`` summed, other numbers (train time, latency) averaged over folds.

``RunData`` is read-only for its users: its methods return what they found and what they could not do
(a note), and never change the tables.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from segbench.datasets import DATASETS, build_dataset
from segbench.datasets.base import dataset_entries
from segbench.measure.metrics import confusion_matrix, scores_from_confusion
from segbench.measure.schema import (
    MEAN,
    class_names_from_columns,
    confusion_columns,
    default_scored_class,
    headline_column,
    headline_label,
    parse_column,
)
from segbench.report.robustness import main_rows
from segbench.run.records import PREDICTIONS_CELL_FILE, load_tables, prediction_dir, prediction_path

__all__ = ["RunData", "headline_columns", "image_folds", "scored_class", "pool_folds"]

#: A (dataset, method, seed) cell group: one cell, or one per fold in a K-fold run.
Key = tuple[str, str, int]


def scored_class(summary: pd.DataFrame, dataset: str) -> str:
    """The class a dataset's headline scores, or ``"mean"`` (``schema.MEAN``: the mean over classes).

    The run's ``scored_class`` column (every cell writes it); in older run folders, the dataset kind's
    declaration (ISBI 2012: membrane), else the schema's default rule on the classes of the columns.
    """
    rows = summary[summary["dataset"] == dataset]
    recorded = rows["scored_class"].dropna() if "scored_class" in rows else pd.Series(dtype=object)
    if len(recorded):
        return str(recorded.iloc[0])
    if dataset in DATASETS.names() and DATASETS.get(dataset).scored_class:
        return str(DATASETS.get(dataset).scored_class)
    return default_scored_class(class_names_from_columns(summary, dataset))


def headline_columns(summary: pd.DataFrame, dataset: str, *, aggregation: str | None = "dataset") -> tuple[str, str, str]:
    """The score columns to lead with for a dataset: ``(label, dice column, iou column)``.

    The class ``scored_class`` names; for ``mean``, the mean over classes, whose label names the classes it
    averages when some class's score is undefined (no pixel in truth or prediction) in
    every cell, so a mean over fewer classes is never passed off as one over all.

    Args:
        summary: summary.csv.
        dataset: The dataset.
        aggregation: ``dataset``, ``per_image`` (summary.csv's columns) or None (per_image.csv's).
    """
    scored = scored_class(summary, dataset)
    columns = headline_column("dice", scored, aggregation=aggregation), headline_column("iou", scored, aggregation=aggregation)
    if scored != MEAN:
        return (headline_label(scored), *columns)
    defined = class_names_from_columns(summary, dataset, name="iou", aggregation=aggregation or "dataset")
    rows = summary[summary["dataset"] == dataset]
    matrices = rows["confusion"].dropna() if "confusion" in rows else pd.Series(dtype=object)
    total = len(json.loads(matrices.iloc[0])) if len(matrices) and str(matrices.iloc[0]).startswith("[") else None
    label = headline_label(MEAN)
    if total is not None and len(defined) < total:
        names = ", ".join(defined)
        label = f"mean over {names} ({total - len(defined)} of {total} classes undefined: no pixel in truth or prediction)"
    return (label, *columns)


def _fold_of(row: Any) -> int:
    """The fold of a summary row; -1 where the run has no folds (no column, or an empty cell)."""
    fold = getattr(row, "fold", None)
    return -1 if fold is None or pd.isna(fold) else int(fold)


@dataclass(frozen=True)
class RunData:
    """A run folder's tables, environment and cell records, with the per-image data the report needs.

    Build it with ``RunData.load(run_dir)``. ``summary`` holds one row per (dataset, method, seed) (folds
    pooled, see the module docstring); ``cells`` maps each finished (dataset, method, seed) to its cell
    folder(s), only where every one of them exists on disk.
    """

    run_dir: Path
    summary: pd.DataFrame
    per_image: pd.DataFrame
    environment: dict[str, Any]
    cells: dict[Key, tuple[Path, ...]]
    #: The whole tables: every training fraction and corruption variant (``summary`` and ``per_image`` keep
    #: the main comparison, ``main_rows``: the whole training part on clean images).
    all_summary: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False, compare=False)
    all_per_image: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False, compare=False)
    # Caches of what was read from disk (datasets, masks): filled on first use, never changing a table.
    _datasets: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _masks: dict[tuple[str, str], tuple[np.ndarray, np.ndarray | None]] = field(default_factory=dict, repr=False, compare=False)
    _class_names: dict[str, list[str]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(cls, run_dir: str | Path) -> "RunData":
        """Read ``summary.csv``, ``per_image.csv``, ``environment.json`` and the cells they came from."""
        run_dir = Path(run_dir)
        all_summary, all_per_image = load_tables(run_dir)
        summary, per_image = main_rows(all_summary), main_rows(all_per_image)
        env_path = run_dir / "environment.json"
        env = json.loads(env_path.read_text()) if env_path.is_file() else {}
        cells = _match_cells(run_dir, summary)
        return cls(run_dir, pool_folds(summary, per_image, cells), per_image, env, cells, all_summary=all_summary,
                   all_per_image=all_per_image)

    def ok(self, dataset: str) -> pd.DataFrame:
        """Finished (``ok``) summary rows of a dataset."""
        if self.summary.empty:
            return self.summary
        return self.summary[(self.summary["dataset"] == dataset) & (self.summary["status"] == "ok")]

    def datasets(self) -> list[str]:
        """Datasets in run order."""
        return list(dict.fromkeys(self.summary["dataset"])) if not self.summary.empty else []

    def class_names(self, dataset: str) -> list[str]:
        """The dataset's class names in class order: as cell.json recorded them, else read from the columns
        (a committed reference folder has no cells/)."""
        if dataset not in self._class_names:
            recorded = next((r[0].get("class_names") for key in self.cells if key[0] == dataset
                             if (r := self.cell_records(*key)) and r[0].get("class_names")), None)
            self._class_names[dataset] = list(recorded) if recorded else class_names_from_columns(self.summary, dataset)
        return self._class_names[dataset]

    def headline(self, dataset: str, *, aggregation: str | None = None) -> tuple[str, str, str]:
        """``(label, Dice column, IoU column)`` of the headline score: per_image.csv's columns by default,
        summary.csv's with ``aggregation`` ``dataset`` or ``per_image``."""
        return headline_columns(self.summary, dataset, aggregation=aggregation)

    def scored_class(self, dataset: str) -> str:
        """The class the dataset's headline scores, or ``"mean"`` (``scored_class``)."""
        return scored_class(self.summary, dataset)

    def has_per_image(self, dataset: str) -> bool:
        """Whether ``per_image.csv`` has rows of the dataset (older reference folders lack the file)."""
        return "dataset" in self.per_image.columns and bool((self.per_image["dataset"] == dataset).any())

    def per_image_values(self, dataset: str, method: str, column: str) -> pd.DataFrame:
        """``(seeds x image ids)`` values of a ``per_image.csv`` column for the method's finished seeds (empty
        without per-image rows)."""
        if not self.has_per_image(dataset):
            return pd.DataFrame()
        seeds = self.ok(dataset).loc[lambda d: d["method"] == method, "seed"].tolist()
        rows = self.per_image[(self.per_image["dataset"] == dataset) & (self.per_image["method"] == method)
                              & self.per_image["seed"].isin(seeds)]
        return rows.pivot(index="seed", columns="image_id", values=column).sort_index(axis=1)

    def image_folds(self, dataset: str, method: str, image_ids: Sequence[str]) -> np.ndarray | None:
        """The fold that tested each of ``image_ids`` for the method (``image_folds``); None on one split."""
        if not self.has_per_image(dataset):
            return None
        return image_folds(self.per_image[self.per_image["dataset"] == dataset], method, image_ids)

    def cell_records(self, dataset: str, method: str, seed: int) -> list[dict[str, Any]] | None:
        """The ``cell.json`` of each fold behind a summary row, or None when the folder lacks any of them."""
        paths = self.cells.get((dataset, method, int(seed)))
        return [json.loads((p / "cell.json").read_text()) for p in paths] if paths else None

    def recorded_confusion(self, dataset: str, method: str, seed: int) -> tuple[np.ndarray, list[str]] | None:
        """``(summed confusion matrix over folds, class names)`` of a summary row; None without cell records."""
        records = self.cell_records(dataset, method, seed)
        if not records or not all(r.get("confusion_matrix") for r in records):
            return None
        return np.sum([np.asarray(r["confusion_matrix"]) for r in records], axis=0), list(records[0]["class_names"])

    @cached_property
    def _config(self) -> dict[str, Any]:
        return self.environment.get("config") or {}

    def dataset(self, name: str) -> Any:
        """The run's dataset re-built from ``environment.json`` (reading data, not running methods).

        Raises:
            LookupError: With the reason it cannot be loaded (no config, no data folder...).
        """
        if name not in self._datasets:
            try:
                # The run's names, resolved as the runner resolved them (``folder:drive=...`` is named drive).
                entries = [e for e in dataset_entries(self._config.get("datasets", [])) if e.name == name]
                if not entries:
                    raise LookupError("environment.json records no dataset spec for it")
                dataset = build_dataset(entries[0].spec, data_dir=self._config.get("data_dir"),
                                        options=entries[0].options(self._config.get("dataset_options") or {}))
                dataset.ids()  # fail here, not halfway through a figure, when the data folder is missing
                self._datasets[name] = dataset
            except Exception as exc:  # any loader error means the same thing here: no images to show
                self._datasets[name] = LookupError(f"{type(exc).__name__}: {exc}")
        found = self._datasets[name]
        if isinstance(found, LookupError):
            raise found
        return found

    def truth(self, dataset: str, image_id: str) -> tuple[np.ndarray, np.ndarray | None]:
        """``(mask, ignore mask)`` of one image (cached: several methods share it)."""
        key = (dataset, image_id)
        if key not in self._masks:
            sample = self.dataset(dataset).load(image_id)
            self._masks[key] = (sample.mask, sample.ignore)
        return self._masks[key]

    def prediction_path(self, dataset: str, method: str, seed: int, image_id: str) -> Path:
        """Where ``--save-predictions`` wrote a label map (a K-fold run: under the fold that tested the image)."""
        fold = self._test_folds.get((dataset, method, int(seed), str(image_id)))
        if fold is not None:
            in_fold = prediction_path(self.run_dir, dataset, method, seed, image_id, fold=fold)
            if in_fold.is_file():
                return in_fold
        return prediction_path(self.run_dir, dataset, method, seed, image_id)

    @cached_property
    def _test_folds(self) -> dict[tuple[str, str, int, str], int]:
        """``(dataset, method, seed, image_id) -> the fold that tested the image``, read once from per_image.csv."""
        images = self.per_image
        if "fold" not in images.columns or images.empty:
            return {}
        keys = zip(images["dataset"], images["method"], images["seed"].astype(int), images["image_id"].astype(str))
        return dict(zip(keys, images["fold"].astype(int)))

    def predictions_match(self, dataset: str, method: str, seed: int) -> bool:
        """Whether the saved label maps belong to cells in the tables (assumed when unrecorded: older folders);
        a K-fold run records one cell per fold folder."""
        folder = prediction_dir(self.run_dir, dataset, method, seed)
        markers = [folder / PREDICTIONS_CELL_FILE, *sorted(folder.glob(f"fold*/{PREDICTIONS_CELL_FILE}"))]
        recorded = {m.read_text().strip() for m in markers if m.is_file()}
        return recorded <= {p.name for p in self.cells.get((dataset, method, int(seed)), ())}

    def confusions(self, dataset: str, method: str, seed: int, image_ids: Sequence[str]) -> tuple[np.ndarray | None, str | None]:
        """``(N, C, C)`` per-image confusion matrices of one summary row, in the order of ``image_ids``.

        From the cells' ``confusion_per_image.npz`` when the runner wrote them; otherwise recomputed from the
        saved predictions and the dataset's masks, and kept only if they sum to the recorded matrix.

        Returns:
            ``(matrices, note)``: matrices None when neither source serves (the note says why); a note
            also when the matrices were rebuilt.
        """
        paths = self.cells.get((dataset, method, int(seed)))
        recorded = self.recorded_confusion(dataset, method, seed)
        if not paths or recorded is None:
            return None, "No dataset-level intervals for cells whose folder under cells/ is missing."
        index: dict[str, np.ndarray] = {}
        for path in paths:
            npz = path / "confusion_per_image.npz"
            if npz.is_file():
                with np.load(npz) as data:
                    index.update({str(i): cm for i, cm in zip(data["image_id"], data["confusion"])})
        if all(i in index for i in image_ids):
            return np.stack([index[i] for i in image_ids]), None
        # Older run folders: rebuild the matrices from what was saved, and trust them only if they add up.
        if not self.predictions_match(dataset, method, seed):
            return None, (f"No dataset-level intervals for {method}: the cell has no confusion_per_image.npz and its "
                          "saved predictions are from another cell.")
        try:
            dataset_obj = self.dataset(dataset)
            cms = []
            for image_id in image_ids:
                pred_path = self.prediction_path(dataset, method, seed, image_id)
                if not pred_path.is_file():
                    raise LookupError(f"no saved prediction {pred_path.relative_to(self.run_dir)}")
                mask, ignore = self.truth(dataset, image_id)
                pred = np.asarray(Image.open(pred_path)).astype(np.int64)
                cms.append(confusion_matrix(mask, pred, dataset_obj.num_classes, ignore_index=dataset_obj.ignore_index,
                                            ignore_mask=ignore))
        except (LookupError, OSError, ValueError) as exc:
            return None, (f"No dataset-level intervals for {method}: the cell has no confusion_per_image.npz "
                          f"(older run folder) and they cannot be rebuilt ({exc}).")
        stacked = np.stack(cms)
        if not np.array_equal(stacked.sum(axis=0), recorded[0]):
            return None, (f"No dataset-level intervals for {method}: the saved predictions do not add up to the "
                          "cell's confusion matrix (predictions from another setting?).")
        return stacked, ("Dataset-level intervals use per-image confusion matrices rebuilt from the saved predictions "
                         "(this run folder predates confusion_per_image.npz); they add up to each cell's matrix.")


def image_folds(per_image: pd.DataFrame, method: str, image_ids: Sequence[str]) -> np.ndarray | None:
    """The fold that tested each of ``image_ids`` (``per_image.csv``'s ``fold``, rows of one dataset), or None
    for a run on one split (no ``fold`` column, or one fold).

    Raises:
        ValueError: When an image was tested in different folds by different seeds (a split that changed with
            the seed): the folds are then not the trained units of a comparison.
    """
    if "fold" not in per_image.columns:
        return None
    rows = per_image[per_image["method"] == method]
    folds = rows.groupby(rows["image_id"].astype(str))["fold"].agg(["min", "max"])
    if folds["min"].isna().all() or folds["min"].nunique() <= 1:
        return None
    if (folds["min"] != folds["max"]).any():
        raise ValueError(f"{method}: an image was tested in different folds by different seeds; the report compares "
                         "methods on folds shared by every seed")
    return folds["min"].reindex([str(i) for i in image_ids]).to_numpy()


def _match_cells(run_dir: Path, summary: pd.DataFrame) -> dict[Key, tuple[Path, ...]]:
    """The cell folder(s) behind each finished (dataset, method, seed): the ``cell`` column, or by matching.

    Only groups whose every folder exists are kept (committed reference folders have no ``cells/``). A
    resumed older run with a changed setting leaves the old cell's folder beside the new one (same dataset,
    method and seed): the one whose recorded timings equal the table's row is the one in the tables.
    """
    ok = summary[summary["status"] == "ok"] if not summary.empty else summary
    found: dict[Key, dict[int, Path]] = {}
    missing: set[Key] = set()
    if "cell" in summary.columns:  # run folders since the cell column: a direct lookup
        for r in ok.itertuples():
            key, path = (r.dataset, r.method, int(r.seed)), run_dir / "cells" / r.cell
            if (path / "cell.json").is_file():
                found.setdefault(key, {})[_fold_of(r)] = path
            else:
                missing.add(key)
    else:
        by_key: dict[Key, list[tuple[Path, dict[str, Any]]]] = {}
        for path in sorted((run_dir / "cells").glob("*/cell.json")):
            s = json.loads(path.read_text())["summary"]
            if s.get("status") == "ok":
                by_key.setdefault((s["dataset"], s["method"], int(s["seed"])), []).append((path.parent, s))
        for row in ok.itertuples():
            key = (row.dataset, row.method, int(row.seed))
            match = [folder for folder, s in by_key.get(key, []) if _fold_of(pd.Series(s)) == _fold_of(row) and all(
                np.isclose(float(s[c]), float(getattr(row, c)), rtol=1e-9, equal_nan=True)
                for c in ("train_s", "latency_ms_mean", "n_test"))]
            if match:
                found.setdefault(key, {})[_fold_of(row)] = match[0]
            else:
                missing.add(key)
    return {k: tuple(v[f] for f in sorted(v)) for k, v in found.items() if k not in missing}


def _pooled_confusion(rows: pd.DataFrame, paths: tuple[Path, ...] | None) -> np.ndarray | None:
    """The sum of the folds' confusion matrices: from the cells' records, else from summary.csv's
    ``confusion`` column (a committed reference folder has no ``cells/``); None when some fold has neither."""
    records = [json.loads((p / "cell.json").read_text()) for p in paths] if paths else []
    if records and all(r.get("confusion_matrix") for r in records):
        return np.sum([np.asarray(r["confusion_matrix"]) for r in records], axis=0)
    texts = rows["confusion"] if "confusion" in rows.columns else pd.Series(dtype=object)
    if len(texts) != len(rows) or texts.isna().any() or not all(isinstance(t, str) and t for t in texts):
        return None
    return np.sum([np.asarray(json.loads(t)) for t in texts], axis=0)


def pool_folds(summary: pd.DataFrame, per_image: pd.DataFrame, cells: dict[Key, tuple[Path, ...]]) -> pd.DataFrame:
    """One summary row per (dataset, method, seed): the rows of a K-fold run's folds pooled.

    Dataset-level columns are re-scored from the sum of the folds' confusion matrices (NaN where a cell
    record is missing); ``per_image_*`` columns are means over all the images in ``per_image.csv``; ``n_test``
    is summed and ``n_folds`` counts the folds; other numbers are averaged over folds. A run without folds
    (no ``fold`` column, or one row per group) comes back unchanged.

    Returns:
        A new table; ``summary`` is not modified.
    """
    if summary.empty or "fold" not in summary.columns:
        return summary
    ok = summary["status"] == "ok"
    groups = summary[ok].groupby(["dataset", "method", "seed"], sort=False)
    if groups.size().max() <= 1:
        return summary
    numeric = summary.select_dtypes("number").columns
    rows = []
    class_names: dict[str, list[str]] = {}  # per dataset: the same for every group
    for (dataset, method, seed), rows_ in groups:
        row = rows_.iloc[0].copy()
        if len(rows_) == 1:  # one fold (or none): the row as the runner wrote it
            row["n_folds"] = 1
            rows.append(row)
            continue
        row[numeric] = rows_[numeric].mean()
        row["n_test"], row["n_folds"], row["fold"] = rows_["n_test"].sum(), len(rows_), np.nan
        dataset_cols = [c for c in summary.columns if (p := parse_column(c, aggregated=True)) and p.aggregation == "dataset"]
        row[dataset_cols] = np.nan
        paths = cells.get((dataset, method, int(seed)))
        cm = _pooled_confusion(rows_, paths)
        if dataset not in class_names:  # cell.json's, else read from the columns
            recorded = json.loads((paths[0] / "cell.json").read_text()).get("class_names") if paths else None
            class_names[dataset] = list(recorded) if recorded else class_names_from_columns(summary, dataset)
        names = class_names[dataset]
        if cm is not None and len(names) == len(cm):
            pooled = confusion_columns(scores_from_confusion(cm), names, aggregation="dataset")
            row[[c for c in pooled if c in row.index]] = [pooled[c] for c in pooled if c in row.index]
        images = per_image[(per_image["dataset"] == dataset) & (per_image["method"] == method) & (per_image["seed"] == seed)]
        if "fold" in images.columns:
            images = images[images["fold"].isin(rows_["fold"])]
        for column in [c for c in summary.columns if (p := parse_column(c, aggregated=True)) and p.aggregation == "per_image"]:
            name = column.removeprefix("per_image_")
            row[column] = images[name].mean() if name in images.columns else np.nan  # pandas mean skips NaN
        rows.append(row)
    pooled = pd.DataFrame(rows)
    return pd.concat([pooled, summary[~ok]], ignore_index=True)
