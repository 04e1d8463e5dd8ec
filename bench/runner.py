"""The runner: datasets x methods x seeds -> one cell each -> records in a run folder.

Run folder layout::

    <out>/environment.json      versions, hardware, git commit, full config
    <out>/splits/<dataset>.csv  the split every method of the run used (image_id,split)
    <out>/cells/<key>/          one finished cell: cell.json (summary row, confusion matrix), per_image.csv
    <out>/artifacts/<key>/      what a method keeps of its cell (checkpoints, heatmaps)
    <out>/summary.csv           one row per dataset x method x seed (rebuilt after every cell)
    <out>/per_image.csv         one row per test image of every cell
    <out>/predictions/<dataset>/<method>/<seed>/<image_id>.png   with --save-predictions

A cell is committed atomically (written to a temporary folder, then renamed) as soon as it ends, and the
tables are rewritten atomically from the committed cells, so a crash or Ctrl-C never leaves a half-written
table and re-running the same command skips finished cells. A cell's key includes a hash of everything that
decides its result, so a changed setting makes a new cell instead of reusing an old one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from segbench.datasets import build_dataset
from segbench.datasets.base import SegmentationDataset, parse_dataset_spec
from segbench.datasets.splits import dataset_split, write_split_file
from segbench.datasets.transforms import WorkSize
from segbench.environment import device_name, environment
from segbench.latency import summarize_ms, timed_call
from segbench.methods import IncompatibleError, build_method, split_spec
from segbench.methods.tiling import Tiling
from segbench.metrics import ConfusionMatrix, flatten_scores, scores_from_confusion

__all__ = ["RunConfig", "RunResult", "run", "load_tables"]

KEY_COLUMNS = ["dataset", "method", "seed"]


@dataclass
class RunConfig:
    """Everything a run needs; stored in ``environment.json``."""

    out: Path
    datasets: list[str]
    methods: list[str]
    seeds: list[int] = field(default_factory=lambda: [0])
    data_dir: str | None = None
    split_file: str | None = None
    split_seed: int = 0
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    size: WorkSize = None
    save_predictions: bool = False
    quick: bool = False
    warmup: int = 1
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    dataset_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Tiled inference: tile side in pixels at the working size (None: whole images), and the tiles' overlap.
    tile: int | None = None
    tile_overlap: int = 64

    def tiling(self) -> Tiling | None:
        """The ``Tiling`` every method of the run predicts with, or None."""
        return Tiling(self.tile, self.tile_overlap) if self.tile is not None else None

    def validate(self) -> None:
        """Fail before any work on names that do not exist (the error lists the known ones)."""
        if not self.datasets or not self.methods or not self.seeds:
            raise ValueError("a run needs at least one dataset, one method and one seed")
        for spec in self.datasets:
            parse_dataset_spec(spec)
        for spec in self.methods:
            split_spec(spec)
        self.tiling()  # bad tile settings fail here, naming the fix

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["out"] = str(self.out)
        return d


@dataclass
class RunResult:
    summary: pd.DataFrame
    per_image: pd.DataFrame
    failures: list[dict[str, Any]]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_")


def _hash(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def _components(method_spec: str) -> list[str]:
    base, stages = split_spec(method_spec)
    return [base, *stages]


def _dataset_name(spec: str) -> str:
    return parse_dataset_spec(spec)[0]


class _Cell:
    """One (dataset, method, seed) of the grid and where its records live."""

    def __init__(self, run_dir: Path, dataset: str, method: str, seed: int, identity: dict[str, Any]) -> None:
        self.dataset, self.method, self.seed = dataset, method, seed
        self.identity = identity
        self.key = f"{_slug(dataset)}__{_slug(method)}__seed{seed}-{_hash(identity)}"
        self.dir = run_dir / "cells" / self.key

    def finished(self) -> dict[str, Any] | None:
        path = self.dir / "cell.json"
        if not path.is_file():
            return None
        record = json.loads(path.read_text())
        return record if record["summary"]["status"] in ("ok", "skipped") else None

    def commit(self, summary: dict[str, Any], rows: list[dict[str, Any]], extra: dict[str, Any]) -> None:
        tmp = self.dir.with_name(f".tmp-{self.key}-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (tmp / "cell.json").write_text(json.dumps({"summary": summary, "identity": self.identity, **extra}, indent=1, default=str))
        pd.DataFrame(rows).to_csv(tmp / "per_image.csv", index=False)
        shutil.rmtree(self.dir, ignore_errors=True)  # a failed attempt of the same cell
        os.replace(tmp, self.dir)


def _evaluate(
    config: RunConfig,
    dataset: SegmentationDataset,
    dataset_name: str,
    split: dict[str, list[str]],
    method_spec: str,
    seed: int,
    run_dir: Path,
    cell_key: str,
    progress: bool,
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Fit one method on one dataset and score it on the test split (val when there is no test)."""
    eval_split = "test" if split["test"] else "val"
    method = build_method(
        method_spec,
        dataset.num_classes,
        seed=seed,
        work_size=config.size,
        ignore_index=dataset.ignore_index,
        options=config.method_options,
        quick=config.quick,
        tiling=config.tiling(),
    )
    getattr(method, "base", method).artifacts_dir = run_dir / "artifacts" / cell_key
    train, val = dataset.subset(split["train"]), dataset.subset(split["val"]) if split["val"] and eval_split == "test" else None
    start = time.perf_counter()
    method.fit(train, val)
    train_s = time.perf_counter() - start

    meter = ConfusionMatrix(dataset.num_classes, ignore_index=dataset.ignore_index)
    rows, times = [], []
    pred_dir = run_dir / "predictions" / dataset_name / _slug(method_spec) / str(seed)
    test_ids = split[eval_split]
    for i, sample_id in enumerate(tqdm(test_ids, desc=f"{method_spec} predict", leave=False, disable=not progress)):
        sample = dataset.load(sample_id)
        if i == 0:
            for _ in range(config.warmup):  # first calls pay for lazy initialisation; never timed
                method.predict(sample.image)
        labels, ms = timed_call(method.predict, sample.image)
        times.append(ms)
        cm = meter.update(sample.mask, labels, ignore_mask=sample.ignore)
        row = {"dataset": dataset_name, "method": method_spec, "seed": seed, "image_id": sample_id}
        row.update(flatten_scores(scores_from_confusion(cm), dataset.class_names))
        row["latency_ms"] = ms
        rows.append(row)
        if config.save_predictions:
            pred_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(labels.astype(np.uint8)).save(pred_dir / f"{_slug(sample_id)}.png")
    result = meter.compute()
    device = str(getattr(getattr(method, "base", method), "device", "cpu"))
    summary = {
        "status": "ok",
        "error": "",
        "family": method.family,
        "eval_split": eval_split,
        "n_train": len(split["train"]),
        "n_val": len(split["val"]),
        "n_test": len(test_ids),
        "train_s": train_s,
        **summarize_ms(times),
        "device": device,
        "device_name": device_name(device),
        "work_size": json.dumps(method.work_size),
        **flatten_scores(result["dataset"], dataset.class_names, prefix="dataset_"),
        **flatten_scores(result["per_image"], dataset.class_names, prefix="per_image_"),
        "method_config": json.dumps(method.config(), default=str),
    }
    return summary, rows, {"confusion_matrix": meter.matrix.tolist(), "class_names": list(dataset.class_names)}


def run(config: RunConfig, *, progress: bool = True, log: Callable[[str], None] = print) -> RunResult:
    """Run the grid, committing each cell as it finishes; returns the tables and the failures."""
    config.validate()
    run_dir = Path(config.out)
    (run_dir / "cells").mkdir(parents=True, exist_ok=True)
    (run_dir / "splits").mkdir(exist_ok=True)
    _write_atomic(run_dir / "environment.json", lambda p: p.write_text(json.dumps(environment(config.to_json()), indent=1, default=str)))

    cells: list[_Cell] = []
    total = len(config.datasets) * len(config.methods) * len(config.seeds)
    bar = tqdm(total=total, desc="cells", disable=not progress)
    for dataset_spec in config.datasets:
        name = _dataset_name(dataset_spec)
        try:
            dataset = build_dataset(dataset_spec, data_dir=config.data_dir, options=config.dataset_options.get(name))
            split = dataset_split(dataset, seed=config.split_seed, fractions=config.split_fractions, split_file=config.split_file)
            write_split_file(split, run_dir / "splits" / f"{_slug(name)}.csv")
            dataset_error = None
        except Exception as exc:  # a missing or broken dataset fails its cells, not the run
            dataset, split, dataset_error = None, None, exc
        for method_spec in config.methods:
            for seed in config.seeds:
                identity = {
                    "dataset": dataset_spec,
                    "dataset_config": dataset.config() if dataset else None,
                    "split": _hash(split),
                    "method": method_spec,
                    "options": {k: v for k, v in config.method_options.items() if k in _components(method_spec)},
                    "size": config.size,
                    "quick": config.quick,
                    "seed": seed,
                }
                if config.tile is not None:  # only then, so cells of runs without tiling keep their keys
                    identity["tiling"] = dataclasses.asdict(config.tiling())
                cell = _Cell(run_dir, name, method_spec, seed, identity)
                cells.append(cell)
                bar.set_postfix_str(f"{name} {method_spec} seed {seed}")
                if cell.finished():
                    bar.update()
                    continue
                head = {"dataset": name, "method": method_spec, "seed": seed}
                try:
                    if dataset_error is not None:
                        raise dataset_error
                    summary, rows, extra = _evaluate(config, dataset, name, split, method_spec, seed, run_dir, cell.key, progress)
                except IncompatibleError as exc:
                    summary, rows, extra = {"status": "skipped", "error": str(exc)}, [], {}
                except Exception as exc:  # one failing cell must not stop the grid
                    summary, rows, extra = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}, [], {"traceback": traceback.format_exc()}
                    log(f"FAILED {name} / {method_spec} / seed {seed}: {summary['error']}")
                cell.commit({**head, **summary}, rows, extra)
                _write_tables(run_dir, cells)
                bar.update()
    bar.close()
    summary, per_image = _write_tables(run_dir, cells)
    failures = summary[summary["status"] == "failed"][KEY_COLUMNS + ["error"]].to_dict("records") if len(summary) else []
    return RunResult(summary, per_image, failures)


def _write_tables(run_dir: Path, cells: list[_Cell]) -> tuple[pd.DataFrame, pd.DataFrame]:
    summaries, per_image = [], []
    for cell in cells:
        path = cell.dir / "cell.json"
        if not path.is_file():
            continue
        summaries.append(json.loads(path.read_text())["summary"])
        rows_path = cell.dir / "per_image.csv"
        if rows_path.stat().st_size > 1:
            per_image.append(pd.read_csv(rows_path, dtype={"image_id": str}))
    summary = pd.DataFrame(summaries)
    images = pd.concat(per_image, ignore_index=True) if per_image else pd.DataFrame(columns=[*KEY_COLUMNS, "image_id"])
    _write_atomic(run_dir / "summary.csv", lambda p: summary.to_csv(p, index=False))
    _write_atomic(run_dir / "per_image.csv", lambda p: images.to_csv(p, index=False))
    return summary, images


def load_tables(run_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a run folder's ``summary.csv`` and ``per_image.csv``."""
    run_dir = Path(run_dir)
    path = run_dir / "summary.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no summary.csv; is this a run folder written by 'segbench run'?")
    summary = pd.read_csv(path)
    per_image = pd.read_csv(run_dir / "per_image.csv", dtype={"image_id": str}) if (run_dir / "per_image.csv").is_file() else pd.DataFrame()
    return summary, per_image
