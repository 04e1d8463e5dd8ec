"""The runner: datasets x methods x seeds -> one cell each -> records in a run folder.

Run folder layout::

    <out>/environment.json      versions, hardware, git commit, full config
    <out>/splits/<dataset>.csv  the split every method of the run used (image_id,split)
    <out>/cells/<key>/          one finished cell: cell.json (summary row, confusion matrix), per_image.csv,
                                confusion_per_image.npz (image_id, confusion: one (C, C) matrix per test image)
    <out>/artifacts/<key>/      what a method keeps of its cell (checkpoints and their history.csv)
    <out>/summary.csv           one row per dataset x method x seed (rebuilt after every cell)
    <out>/per_image.csv         one row per test image of every cell
    <out>/predictions/<dataset>/<method>/<seed>/<image_id>.png   with --save-predictions
    <out>/predictions/<dataset>/<method>/<seed>/cell.txt         the key of the cell that wrote them

A cell (dataset, method, seed, settings) is the unit of work. Executors (``segbench.run.executors``) run cells
in this process or on a Dask cluster; workers return records and the driver alone writes the run folder.
A cell is committed atomically (written to a temporary folder, then renamed) as soon as it ends, and the
tables are rewritten atomically from the committed cells, so a crash, SIGKILL or Ctrl-C never leaves a
half-written table, and re-running the same command skips finished cells. A cell's key includes a hash of
everything that decides its result, so a changed setting makes a new cell instead of reusing an old one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import io
import json
import os
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm.auto import tqdm

from segbench.datasets import build_dataset
from segbench.datasets.base import parse_dataset_spec
from segbench.datasets.splits import dataset_split, write_split_file
from segbench.datasets.transforms import WorkSize
from segbench.run.environment import device_name, environment
from segbench.run.executors import make_executor
from segbench.measure.latency import MemoryProbe, configured_threads, summarize_split, timed_call
from segbench.methods import IncompatibleError, build_method, split_spec
from segbench.methods.prediction import Prediction
from segbench.methods.tiling import Tiling
from segbench.measure.metrics import ConfusionMatrix, flatten_scores, scores_from_confusion
from segbench.run.records import KEY_COLUMNS, PREDICTIONS_CELL_FILE, load_tables, prediction_dir, slug, write_atomic

__all__ = ["RunConfig", "RunResult", "CellTask", "CellOutcome", "run", "evaluate_cell", "load_tables"]

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
    imports: list[str] = field(default_factory=list)
    executor: str = "local"
    executor_options: dict[str, Any] = field(default_factory=dict)
    retries: int = 1

    def tiling(self) -> Tiling | None:
        """The ``Tiling`` every method of the run predicts with, or None."""
        return Tiling(self.tile, self.tile_overlap) if self.tile is not None else None

    def validate(self) -> None:
        """Fail before any work on names that do not exist (the error lists the known ones)."""
        if not self.datasets or not self.methods or not self.seeds:
            raise ValueError("a run needs at least one dataset, one method and one seed")
        if self.retries < 0:
            raise ValueError(f"retries={self.retries} must be 0 or more")
        for spec in self.datasets:
            parse_dataset_spec(spec)
        for spec in self.methods:
            split_spec(spec)
        self.tiling()  # bad tile settings fail here, naming the fix

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["out"] = str(self.out)
        return d


@dataclass(frozen=True)
class CellTask:
    """One cell, self-contained and picklable, so any worker can compute it."""

    key: str
    dataset_spec: str
    dataset_name: str
    method: str
    seed: int
    split: dict[str, list[str]]
    artifacts_dir: str
    data_dir: str | None
    dataset_options: dict[str, Any]
    method_options: dict[str, dict[str, Any]]
    size: WorkSize
    tiling: Tiling | None
    quick: bool
    warmup: int
    save_predictions: bool
    threads: int | None = None


@dataclass
class CellOutcome:
    """What a worker returns: the summary row, per-image rows, extras for cell.json, each test image's
    confusion matrix (so reports can bootstrap dataset-level scores), and PNG-encoded predictions."""

    summary: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    confusions: np.ndarray | None = None
    predictions: dict[str, bytes] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.summary["status"]


@dataclass
class RunResult:
    summary: pd.DataFrame
    per_image: pd.DataFrame
    failures: list[dict[str, Any]]


def _hash(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _components(method_spec: str) -> list[str]:
    base, stages = split_spec(method_spec)
    return [base, *stages]


def _failed(exc: BaseException, *, trace: str | None = None) -> CellOutcome:
    return CellOutcome({"status": "failed", "error": f"{type(exc).__name__}: {exc}"}, extra={"traceback": trace or ""})


def evaluate_cell(task: CellTask) -> CellOutcome:
    """Fit one method on one dataset's train split and score it on test (val when there is no test).

    Never raises: an error becomes a ``failed`` outcome, a method that cannot handle the dataset a
    ``skipped`` one.
    """
    try:
        with configured_threads(task.threads):
            return _evaluate(task)
    except IncompatibleError as exc:
        return CellOutcome({"status": "skipped", "error": str(exc)})
    except Exception as exc:  # one failing cell must not stop the grid
        return _failed(exc, trace=traceback.format_exc())


def _evaluate(task: CellTask) -> CellOutcome:
    dataset = build_dataset(task.dataset_spec, data_dir=task.data_dir, options=task.dataset_options)
    split = task.split
    eval_split = "test" if split["test"] else "val"
    method = build_method(
        task.method,
        dataset.num_classes,
        seed=task.seed,
        work_size=task.size,
        ignore_index=dataset.ignore_index,
        options=task.method_options,
        quick=task.quick,
        tiling=task.tiling,
        artifacts_dir=task.artifacts_dir,
    )
    train = dataset.subset(split["train"])
    val = dataset.subset(split["val"]) if split["val"] and eval_split == "test" else None
    start = time.perf_counter()
    method.fit(train, val)
    train_s = time.perf_counter() - start

    meter = ConfusionMatrix(dataset.num_classes, ignore_index=dataset.ignore_index)
    rows, times, model_ms, overhead_ms, confusions, predictions = [], [], [], [], [], {}
    test_ids = split[eval_split]
    device = str(method.device)
    peak_mem_mb, cost = float("nan"), {}
    with torch.inference_mode():
        for i, sample_id in enumerate(tqdm(test_ids, desc=f"{task.method} predict", leave=False, disable=None)):
            sample = dataset.load(sample_id)
            if i == 0:  # first calls pay for lazy initialisation and are never timed; they give the memory figure
                with MemoryProbe(device) as memory:
                    for _ in range(max(1, task.warmup)):
                        method.infer(sample.image)
                peak_mem_mb, cost = memory.peak_mb, method.cost(sample.image.shape[:2])
            # One pass per image: the labels are timed; probabilities, where wanted, come from
            # ``prediction.proba()`` afterwards, untimed.
            prediction, ms = timed_call(method.infer, sample.image)
            labels = prediction.labels
            times.append(ms)
            model_ms.append(prediction.model_ms)
            overhead_ms.append(prediction.overhead_ms)
            confusions.append(meter.update(sample.mask, labels, ignore_mask=sample.ignore))
            rows.append(_image_row(task, dataset.class_names, sample_id, confusions[-1], ms, prediction))
            if task.save_predictions:
                buffer = io.BytesIO()
                Image.fromarray(labels.astype(np.uint8)).save(buffer, format="PNG")
                predictions[sample_id] = buffer.getvalue()
    result = meter.compute()
    summary = {
        "status": "ok",
        "error": "",
        "family": method.family,
        "eval_split": eval_split,
        "n_train": len(split["train"]),
        "n_val": len(split["val"]),
        "n_test": len(test_ids),
        "train_s": train_s,
        **summarize_split(times, model_ms, overhead_ms),
        "peak_mem_mb": peak_mem_mb,
        **cost,
        "device": device,
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "work_size": json.dumps(method.work_size),
        **flatten_scores(result["dataset"], dataset.class_names, prefix="dataset_"),
        **flatten_scores(result["per_image"], dataset.class_names, prefix="per_image_"),
        "method_config": json.dumps(method.config(), default=str),
    }
    extra = {"confusion_matrix": meter.matrix.tolist(), "class_names": list(dataset.class_names)}
    c = dataset.num_classes
    stacked = np.stack(confusions) if confusions else np.zeros((0, c, c), np.int64)
    return CellOutcome(summary, rows, extra, stacked, predictions)


def _image_row(task: CellTask, class_names: tuple[str, ...], sample_id: str, cm: np.ndarray, ms: float,
               prediction: Prediction) -> dict[str, Any]:
    row = {"dataset": task.dataset_name, "method": task.method, "seed": task.seed, "image_id": sample_id}
    return {**row, **flatten_scores(scores_from_confusion(cm), class_names), "latency_ms": ms,
            "model_ms": prediction.model_ms, "overhead_ms": prediction.overhead_ms}


class _RunFolder:
    """The driver's side: the only writer of the run folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "cells").mkdir(parents=True, exist_ok=True)
        (root / "splits").mkdir(exist_ok=True)

    def cell_dir(self, key: str) -> Path:
        return self.root / "cells" / key

    def finished(self, key: str) -> bool:
        path = self.cell_dir(key) / "cell.json"
        return path.is_file() and json.loads(path.read_text())["summary"]["status"] in ("ok", "skipped")

    def commit(self, task: CellTask, outcome: CellOutcome, *, attempts: int) -> None:
        if outcome.predictions:
            pred_dir = prediction_dir(self.root, task.dataset_name, task.method, task.seed)
            pred_dir.mkdir(parents=True, exist_ok=True)
            for sample_id, png in outcome.predictions.items():
                write_atomic(pred_dir / f"{slug(sample_id)}.png", lambda p, png=png: p.write_bytes(png))
            # The folder is per (dataset, method, seed): a later run with other options overwrites it, so
            # record whose label maps these are; the report draws them only for that cell.
            write_atomic(pred_dir / PREDICTIONS_CELL_FILE, lambda p: p.write_text(task.key + "\n"))
        final = self.cell_dir(task.key)
        tmp = final.with_name(f".tmp-{task.key}-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        summary = {"dataset": task.dataset_name, "method": task.method, "seed": task.seed, **outcome.summary,
                   "attempts": attempts, "cell": task.key}
        record = {"summary": summary, "key": task.key, **outcome.extra}
        (tmp / "cell.json").write_text(json.dumps(record, indent=1, default=str))
        pd.DataFrame(outcome.rows).to_csv(tmp / "per_image.csv", index=False)
        if outcome.confusions is not None:
            ids = np.array([r["image_id"] for r in outcome.rows], dtype=str)
            np.savez_compressed(tmp / "confusion_per_image.npz", image_id=ids, confusion=outcome.confusions)
        shutil.rmtree(final, ignore_errors=True)  # an earlier failed attempt of the same cell
        os.replace(tmp, final)

    def write_tables(self, keys: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Rebuild summary.csv and per_image.csv from the committed cells, in grid order."""
        summaries, per_image = [], []
        for key in keys:
            path = self.cell_dir(key) / "cell.json"
            if not path.is_file():
                continue
            summaries.append(json.loads(path.read_text())["summary"])
            rows_path = self.cell_dir(key) / "per_image.csv"
            if rows_path.stat().st_size > 1:
                per_image.append(pd.read_csv(rows_path, dtype={"image_id": str}))
        summary = pd.DataFrame(summaries)
        images = pd.concat(per_image, ignore_index=True) if per_image else pd.DataFrame(columns=[*KEY_COLUMNS, "image_id"])
        write_atomic(self.root / "summary.csv", lambda p: summary.to_csv(p, index=False))
        write_atomic(self.root / "per_image.csv", lambda p: images.to_csv(p, index=False))
        return summary, images


def _plan(config: RunConfig, folder: _RunFolder) -> tuple[list[CellTask], dict[str, CellOutcome]]:
    """Every cell of the grid, in order, and the outcomes already known on the driver (broken datasets)."""
    tasks, known = [], {}
    for dataset_spec in config.datasets:
        name = parse_dataset_spec(dataset_spec)[0]
        options = config.dataset_options.get(name, {})
        try:
            dataset = build_dataset(dataset_spec, data_dir=config.data_dir, options=options)
            split = dataset_split(dataset, seed=config.split_seed, fractions=config.split_fractions, split_file=config.split_file)
            write_split_file(split, folder.root / "splits" / f"{slug(name)}.csv")
            dataset_config, broken = dataset.config(), None
        except Exception as exc:  # a missing or broken dataset fails its cells, not the run
            split, dataset_config, broken = {"train": [], "val": [], "test": []}, None, _failed(exc, trace=traceback.format_exc())
        for method_spec in config.methods:
            method_options = {k: v for k, v in config.method_options.items() if k in _components(method_spec)}
            for seed in config.seeds:
                identity = {
                    "dataset": dataset_spec, "dataset_config": dataset_config, "split": _hash(split),
                    "method": method_spec, "options": method_options, "size": config.size,
                    "quick": config.quick, "seed": seed,
                }
                if config.tile is not None:  # only then, so cells of runs without tiling keep their keys
                    identity["tiling"] = dataclasses.asdict(config.tiling())
                key = f"{slug(name)}__{slug(method_spec)}__seed{seed}-{_hash(identity)}"
                task = CellTask(
                    key=key, dataset_spec=dataset_spec, dataset_name=name, method=method_spec, seed=seed,
                    split=split, artifacts_dir=str(folder.root / "artifacts" / key), data_dir=config.data_dir,
                    dataset_options=options, method_options=method_options, size=config.size, tiling=config.tiling(),
                    quick=config.quick,
                    warmup=config.warmup, save_predictions=config.save_predictions,
                    threads=config.executor_options.get("threads_per_worker") if config.executor == "dask" else None,
                )
                tasks.append(task)
                if broken is not None:
                    known[key] = broken
    return tasks, known


def run(config: RunConfig, *, progress: bool = True, log: Callable[[str], None] = print) -> RunResult:
    """Run the grid, committing each cell as it finishes; returns the tables and the failures.

    Failed cells are retried up to ``config.retries`` times (a dead worker counts as a failure); finished
    cells found in the run folder are skipped.
    """
    for module in config.imports:  # modules that register the user's own methods and datasets
        importlib.import_module(module)
    config.validate()
    folder = _RunFolder(Path(config.out))
    write_atomic(folder.root / "environment.json", lambda p: p.write_text(json.dumps(environment(config.to_json()), indent=1, default=str)))
    tasks, known = _plan(config, folder)
    keys = [t.key for t in tasks]
    todo = [t for t in tasks if not folder.finished(t.key)]
    counts = {"ok": len(tasks) - len(todo), "failed": 0, "skipped": 0}
    bar = tqdm(total=len(tasks), initial=counts["ok"], desc="cells", disable=not progress)
    attempts: dict[str, int] = {}

    def finish(task: CellTask, outcome: CellOutcome) -> bool:
        """Commit a cell; returns True if it should run again."""
        attempts[task.key] = attempts.get(task.key, 0) + 1
        if outcome.status == "failed" and attempts[task.key] <= config.retries and task.key not in known:
            log(f"retrying {task.dataset_name} / {task.method} / seed {task.seed} after: {outcome.summary['error']}")
            return True
        if outcome.status == "failed":
            log(f"FAILED {task.dataset_name} / {task.method} / seed {task.seed}: {outcome.summary['error']}")
        folder.commit(task, outcome, attempts=attempts[task.key])
        folder.write_tables(keys)
        counts[outcome.status] += 1
        bar.set_postfix(counts)
        bar.update()
        return False

    pending = []
    for task in todo:
        if task.key in known:
            finish(task, known[task.key])
        else:
            pending.append(task)
    options = {**config.executor_options, **({"preload": config.imports} if config.executor == "dask" else {})}
    executor = make_executor(config.executor, **options) if pending else None
    try:
        while pending:
            retry = [t for t, outcome in executor.map_unordered(evaluate_cell, pending, lambda t, e: _failed(e)) if finish(t, outcome)]
            pending = retry
    finally:
        if executor is not None:
            executor.close()
        bar.close()
    summary, per_image = folder.write_tables(keys)
    failures = summary[summary["status"] == "failed"][KEY_COLUMNS + ["error"]].to_dict("records") if len(summary) else []
    return RunResult(summary, per_image, failures)
