"""The run folder's one writer (the driver): committing a finished cell atomically and rebuilding the tables
from every committed cell (layout in ``segbench.run.runner``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from segbench.files import write_atomic
from segbench.run.cells import CellOutcome, CellTask
from segbench.run.records import (
    COLUMN_DEFAULTS,
    KEY_COLUMNS,
    PREDICTIONS_CELL_FILE,
    prediction_dir,
    prediction_path,
)

__all__ = ["RunFolder", "CURVES_FILE", "CURVE_ID_COLUMNS"]

#: Every trained network's learning curve, one row per (cell, epoch): the cell's key columns, then ``epoch``,
#: ``train_s`` (budget-clock seconds of optimiser work so far), ``loss`` (mean training loss of the epoch),
#: ``val_score`` (validation mean IoU, NaN where not validated), ``lr`` and ``val_s`` (that validation's seconds).
CURVES_FILE = "curves.csv"
CURVE_ID_COLUMNS = [*KEY_COLUMNS, "budget_s"]


def _matrix_text(matrix: list[list[int]] | None) -> str:
    """A cell's confusion matrix as JSON text for summary.csv's ``confusion`` column: with it, folds pool into
    dataset-level scores from the tables alone (committed reference folders have no ``cells/``)."""
    return "" if matrix is None else json.dumps(np.asarray(matrix).astype(int).tolist(), separators=(",", ":"))


class RunFolder:
    """The driver's side: the only writer of the run folder."""

    def __init__(self, root: Path, *, command: str = "") -> None:
        self.root = root
        self.command = command
        (root / "cells").mkdir(parents=True, exist_ok=True)
        (root / "splits").mkdir(exist_ok=True)

    def cell_dir(self, key: str) -> Path:
        return self.root / "cells" / key

    def finished(self, key: str) -> bool:
        path = self.cell_dir(key) / "cell.json"
        return path.is_file() and json.loads(path.read_text())["summary"]["status"] in ("ok", "skipped")

    def commit(self, task: CellTask, outcome: CellOutcome, *, attempts: int) -> None:
        if outcome.predictions:
            pred_dir = prediction_dir(self.root, task.dataset_name, task.method, task.seed,
                                      fold=task.fold if task.n_folds > 1 else None, train_fraction=task.train_fraction)
            pred_dir.mkdir(parents=True, exist_ok=True)
            for sample_id, png in outcome.predictions.items():
                path = prediction_path(self.root, task.dataset_name, task.method, task.seed, sample_id,
                                       fold=task.fold if task.n_folds > 1 else None, train_fraction=task.train_fraction)
                write_atomic(path, lambda p, png=png: p.write_bytes(png))
            # The folder is per (dataset, method, seed): a later run with other options overwrites it, so
            # record whose label maps these are; the report draws them only for that cell.
            write_atomic(pred_dir / PREDICTIONS_CELL_FILE, lambda p: p.write_text(task.key + "\n"))
        ids = {"dataset": task.dataset_name, "method": task.method, "seed": task.seed, "fold": task.fold,
               "train_fraction": task.train_fraction, "corruption": "none", "severity": 0}
        after = {"n_folds": task.n_folds, "attempts": attempts, "cell": task.key, "command": self.command}
        summary = {**ids, **outcome.summary, **after}
        record = {"summary": summary, "key": task.key, **outcome.extra}
        if outcome.variants:  # corrupted test images: one summary row and confusion matrix each
            record["variants"] = [{"summary": {**ids, **v["summary"], **after}, "confusion_matrix": v["matrix"]}
                                  for v in outcome.variants]

        def write_cell(tmp: Path) -> None:
            tmp.mkdir()
            (tmp / "cell.json").write_text(json.dumps(record, indent=1, default=str))
            rows = outcome.rows + [r for v in outcome.variants for r in v["rows"]]
            pd.DataFrame(rows).to_csv(tmp / "per_image.csv", index=False)
            if outcome.confusions is not None:
                # The clean matrices under image_id/confusion (one per test image, as the report reads them);
                # corrupted ones beside them, named by image, corruption and severity.
                arrays = {"image_id": np.array([r["image_id"] for r in outcome.rows], dtype=str), "confusion": outcome.confusions}
                if outcome.variants:
                    variant_rows = [r for v in outcome.variants for r in v["rows"]]
                    arrays |= {
                        "variant_image_id": np.array([r["image_id"] for r in variant_rows], dtype=str),
                        "variant_corruption": np.array([r["corruption"] for r in variant_rows], dtype=str),
                        "variant_severity": np.array([r["severity"] for r in variant_rows]),
                        "variant_confusion": np.concatenate([v["confusions"] for v in outcome.variants]),
                    }
                np.savez_compressed(tmp / "confusion_per_image.npz", **arrays)

        write_atomic(self.cell_dir(task.key), write_cell)  # replaces an earlier failed attempt of the same cell

    def pending_latency(self, keys: list[str]) -> list[str]:
        """The finished cells among ``keys`` whose latency is still to be timed (they ran beside other cells)."""
        out = []
        for key in keys:
            path = self.cell_dir(key) / "cell.json"
            if path.is_file() and json.loads(path.read_text())["summary"].get("latency_timed") == "pending":
                out.append(key)
        return out

    def record_latency(self, key: str, summary: dict[str, float], per_image: dict[str, tuple[float, float, float]]) -> None:
        """Write a deferred cell's latency, timed alone, into its summary row and clean per-image rows."""
        record = json.loads((self.cell_dir(key) / "cell.json").read_text())
        record["summary"] = {**record["summary"], **summary, "latency_timed": "after the cells, one at a time"}
        rows_path = self.cell_dir(key) / "per_image.csv"
        rows = pd.read_csv(rows_path, dtype={"image_id": str})
        clean = rows["corruption"] == "none"
        for column, k in (("latency_ms", 0), ("model_ms", 1), ("overhead_ms", 2)):
            rows.loc[clean, column] = rows.loc[clean, "image_id"].map(lambda i, k=k: per_image.get(i, (np.nan,) * 3)[k])
        write_atomic(rows_path, lambda p: rows.to_csv(p, index=False))
        write_atomic(self.cell_dir(key) / "cell.json", lambda p: p.write_text(json.dumps(record, indent=1, default=str)))

    def write_tables(self, keys: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Rebuild summary.csv and per_image.csv from the committed cells: this command's, in grid order, then
        every earlier command's cell whose dataset, method and seed this command did not run (the newest
        such cell of each; the ``command`` column says which command made each row)."""
        records = {}
        for path in sorted(self.root.glob("cells/*/cell.json"), key=lambda p: p.stat().st_mtime):
            records[path.parent.name] = json.loads(path.read_text())

        def grid_key(key: str) -> tuple[Any, ...]:  # the cell's place in the grid (cells of older runs may lack some)
            s = {**COLUMN_DEFAULTS, **records[key]["summary"]}
            return s["dataset"], s["method"], int(s["seed"]), int(s["fold"]), float(s["train_fraction"])

        ours = [k for k in keys if k in records]
        covered = {grid_key(k) for k in ours}
        older = {}
        for key in records:  # oldest first, so the newest cell of each place in the grid stays
            if key not in keys and grid_key(key) not in covered:
                older[grid_key(key)] = key
        summaries, per_image, curves = [], [], []
        for key in ours + list(older.values()):
            record = records[key]
            ids = {c: record["summary"].get(c) for c in CURVE_ID_COLUMNS}
            curves += [{**ids, **point} for point in record.get("curve", [])]
            summaries += [{"command": "", **record["summary"], "confusion": _matrix_text(record.get("confusion_matrix"))},
                          *({"command": "", **v["summary"], "confusion": _matrix_text(v.get("confusion_matrix"))}
                            for v in record.get("variants", []))]
            rows_path = self.cell_dir(key) / "per_image.csv"
            if rows_path.stat().st_size > 1:
                per_image.append(pd.read_csv(rows_path, dtype={"image_id": str}))
        summary = pd.DataFrame(summaries)
        images = pd.concat(per_image, ignore_index=True) if per_image else pd.DataFrame(columns=[*KEY_COLUMNS, "image_id"])
        write_atomic(self.root / "summary.csv", lambda p: summary.to_csv(p, index=False))
        write_atomic(self.root / "per_image.csv", lambda p: images.to_csv(p, index=False))
        if curves:
            write_atomic(self.root / CURVES_FILE, lambda p: pd.DataFrame(curves).to_csv(p, index=False))
        return summary, images
