"""One cell of the grid: its task (everything a worker needs, picklable), how it is fitted (sharing a fitted base
with the other pipelines of the run, ``segbench.run.shared_bases``) and scored on the clean test images and
each corruption variant, and the outcome a worker returns to the driver (``segbench.run.runner``).
"""

from __future__ import annotations

import hashlib
import io
import json
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from segbench.datasets import DataError, build_dataset
from segbench.datasets.base import Sample
from segbench.datasets.corruptions import corrupt
from segbench.files import write_atomic
from segbench.measure.cell_measures import CellMeasures
from segbench.measure.latency import (
    MemoryProbe,
    clock,
    configured_threads,
    device_name,
    summarize_split,
    timed_call,
)
from segbench.measure.metrics import ConfusionMatrix, scores_from_confusion
from segbench.measure.schema import confusion_columns
from segbench.methods import IncompatibleError, Method, build_method
from segbench.methods.tiling import Tiling
from segbench.run.settings import tiling_of, variants_of
from tqdm.auto import tqdm

__all__ = ["CellTask", "CellOutcome", "evaluate_cell", "fit_cell", "failed_outcome", "time_latency", "FITTED_FILE"]

#: In a cell's artifacts folder: its fitted method, kept until the runner has timed its latency (deferred cells).
FITTED_FILE = "fitted_for_latency.pt"


#: What a cell records of its training loop (``DeepMethod.train_info``; empty for methods without one): the
#: epochs run and the one whose weights were kept, what stopped training, the budget, the patience and epoch
#: cap, the budget clock's seconds of optimiser work, validation seconds (wall clock) and the precision used.
TRAIN_COLUMNS = ("epochs_run", "best_epoch", "stop_reason", "budget_s", "patience", "max_epochs", "charged_s", "val_s",
                 "precision")


@dataclass(frozen=True)
class CellTask:
    """One cell, self-contained and picklable, so any worker can compute it. Its run settings
    (``segbench.run.settings``) are in ``settings``, read as ``task.<name>``."""

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
    #: Cells with the same base key fit the same base (``segbench.run.shared_bases``).
    base_key: str = ""
    threads: int | None = None
    fold: int = 0
    n_folds: int = 1
    #: Shared fitted base: where it is saved (``fitted_base.pt`` of the provider's artifacts), whether this
    #: cell is the provider that saves it, and otherwise the provider's key (it loads the base from there).
    base_path: str = ""
    save_base: bool = False
    base_cell: str = ""
    #: Cells run at the same time (``--workers``, Dask): no latency is timed in the cell, which saves its fitted
    #: method instead; the runner times it once no other cell runs (``time_latency``).
    defer_latency: bool = False
    settings: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:  # only called for names that are no field: the settings
        settings = self.__dict__.get("settings", {})
        if name in settings:
            return settings[name]
        raise AttributeError(f"CellTask has no field or setting {name!r}")

    @property
    def tiling(self) -> Tiling | None:
        return tiling_of(self.settings)

    @property
    def variants(self) -> tuple[tuple[str, int], ...]:
        """``(corruption, severity)`` test variants scored after the clean test images."""
        return variants_of(self.settings)


@dataclass
class CellOutcome:
    """What a worker returns: the summary row, per-image rows, extras for cell.json, each test image's
    confusion matrix (so reports can bootstrap dataset-level scores), and PNG-encoded predictions."""

    summary: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    confusions: np.ndarray | None = None
    predictions: dict[str, bytes] = field(default_factory=dict)
    #: One ``{"summary", "rows", "confusions", "matrix"}`` per corrupted test variant, scored like the clean one.
    variants: list[dict[str, Any]] = field(default_factory=list)
    #: False for errors that another attempt cannot mend (a bad data file).
    retry: bool = True

    @property
    def status(self) -> str:
        return self.summary["status"]


def failed_outcome(exc: BaseException, *, trace: str | None = None) -> CellOutcome:
    return CellOutcome({"status": "failed", "error": f"{type(exc).__name__}: {exc}"}, extra={"traceback": trace or ""},
                       retry=not isinstance(exc, DataError))


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
        return failed_outcome(exc, trace=traceback.format_exc())


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
    method, train_s, base_cell = fit_cell(task, method, train, val)

    test_ids = split[eval_split]
    device = str(method.device)
    clean = _score(task, method, dataset, test_ids, device, corruption="none", severity=0)
    variants = [_score(task, method, dataset, test_ids, device, corruption=c, severity=sev) for c, sev in task.variants]
    fixed = {
        "status": "ok",
        "error": "",
        "family": method.family,
        "eval_split": eval_split,
        "n_train": len(split["train"]),
        "n_val": len(split["val"]),
        "n_test": len(test_ids),
        "train_s": train_s,
        "base_cell": base_cell,
        "scored_class": dataset.headline_class(),  # what the headline Dice/IoU score: a class, or "mean"
        "latency_timed": "pending" if task.defer_latency else "in cell",
        # empty where no network was trained:
        **{k: method.train_info.get(k) for k in (*TRAIN_COLUMNS, "weights", "weights_sha256", "weights_source")},
    }
    after = {"method_config": json.dumps(method.config(), default=str)}
    for scored in (clean, *variants):
        scored["summary"] = {**fixed, **scored["summary"], "work_size": json.dumps(method.work_size), **after}
    if task.defer_latency:
        Path(task.artifacts_dir).mkdir(parents=True, exist_ok=True)
        write_atomic(Path(task.artifacts_dir) / FITTED_FILE, lambda p: torch.save(method, p))
    extra = {"confusion_matrix": clean.pop("matrix"), "class_names": list(dataset.class_names),
             "reliability": clean.pop("reliability"), "curve": method.train_info.get("curve", [])}
    return CellOutcome(clean["summary"], clean["rows"], extra, clean["confusions"], clean["predictions"], variants)


def _score(
    task: CellTask, method: Method, dataset: Any, test_ids: list[str], device: str, *, corruption: str, severity: int
) -> dict[str, Any]:
    """Predict and score the test images, clean or corrupted (``corrupt``, seeded per image); the clean pass
    warms the method up first (giving the memory and cost figures) and alone saves predictions."""
    meter = ConfusionMatrix(dataset.num_classes, ignore_index=dataset.ignore_index)
    measures = CellMeasures(dataset.class_names, ignore_index=dataset.ignore_index, tolerance=task.boundary_tolerance,
                            cldice=task.cldice)
    rows, times, model_ms, overhead_ms, confusions, predictions = [], [], [], [], [], {}
    peak_mem_mb, cost = float("nan"), {}
    clean = corruption == "none"
    desc = f"{task.method} predict" + ("" if clean else f" {corruption}-{severity}")
    with torch.inference_mode():
        for i, sample_id in enumerate(tqdm(test_ids, desc=desc, leave=False, disable=None)):
            sample = dataset.load(sample_id)
            image = sample.image if clean else corrupt(sample.image, corruption, severity, seed=_image_seed(sample_id))
            if i == 0 and clean:  # first calls pay for lazy initialisation and are never timed; they give the memory figure
                with MemoryProbe(device) as memory:
                    for _ in range(max(1, task.warmup)):
                        method.infer(image)
                peak_mem_mb, cost = memory.peak_mb, method.cost(image.shape[:2])
            # One pass per image: the labels are timed; the probabilities (calibration) come afterwards, untimed.
            # Deferred: other cells run now, so a time would measure them too (NaN; time_latency times it later).
            prediction, ms = timed_call(method.infer, image)
            untimed = task.defer_latency
            labels = prediction.labels
            times.append(float("nan") if untimed else ms)
            model_ms.append(float("nan") if untimed else prediction.model_ms)
            overhead_ms.append(float("nan") if untimed else prediction.overhead_ms)
            confusions.append(meter.update(sample.mask, labels, ignore_mask=sample.ignore))
            rows.append(_image_row(task, dataset.class_names, sample_id, confusions[-1], times[-1], model_ms[-1], overhead_ms[-1],
                                   corruption, severity))
            rows[-1].update(measures.update(sample.mask, labels, prediction.proba(), ignore_mask=sample.ignore))
            if task.save_predictions and clean:
                buffer = io.BytesIO()
                Image.fromarray(labels.astype(np.uint8)).save(buffer, format="PNG")
                predictions[sample_id] = buffer.getvalue()
    result = meter.compute()
    summary = {
        "corruption": corruption,
        "severity": severity,
        **summarize_split(times, model_ms, overhead_ms),
        "peak_mem_mb": peak_mem_mb,
        **cost,
        "device": device,
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        **confusion_columns(result["dataset"], dataset.class_names, aggregation="dataset"),
        **confusion_columns(result["per_image"], dataset.class_names, aggregation="per_image"),
        **measures.summary(),
    }
    c = dataset.num_classes
    stacked = np.stack(confusions) if confusions else np.zeros((0, c, c), np.int64)
    return {"summary": summary, "rows": rows, "confusions": stacked, "matrix": meter.matrix.tolist(),
            "predictions": predictions, "reliability": measures.reliability()}


def _image_seed(sample_id: str) -> int:
    """A corruption seed per image, the same in every process and run (``hash`` of a str is salted per process)."""
    return int(hashlib.sha1(sample_id.encode()).hexdigest()[:8], 16)


def _image_row(
    task: CellTask, class_names: tuple[str, ...], sample_id: str, cm: np.ndarray, ms: float, model_ms: float,
    overhead_ms: float, corruption: str, severity: int,
) -> dict[str, Any]:
    row = {"dataset": task.dataset_name, "method": task.method, "seed": task.seed, "fold": task.fold,
           "train_fraction": task.train_fraction, "corruption": corruption, "severity": severity, "image_id": sample_id}
    if task.budget_s is not None:
        row["budget_s"] = task.budget_s
    return {**row, **confusion_columns(scores_from_confusion(cm), class_names), "latency_ms": ms,
            "model_ms": model_ms, "overhead_ms": overhead_ms}


def time_latency(task: CellTask) -> tuple[dict[str, float], dict[str, tuple[float, float, float]]]:
    """Time a deferred cell's fitted method on its clean test images, as ``_score`` times them (warm-up first,
    then one timed ``infer`` per image), at the cell's threads; deletes the saved method afterwards.

    Returns:
        The summary's latency columns (``summarize_split``), and per image ``(latency, model, overhead)`` ms.
    """
    path = Path(task.artifacts_dir) / FITTED_FILE
    with configured_threads(task.threads):
        dataset = build_dataset(task.dataset_spec, data_dir=task.data_dir, options=task.dataset_options)
        method = torch.load(path, weights_only=False)  # our own file, written by the cell
        ids = task.split["test"] or task.split["val"]
        per_image = {}
        with torch.inference_mode():
            for i, sample_id in enumerate(ids):
                image = dataset.load(sample_id).image
                if i == 0:
                    for _ in range(max(1, task.warmup)):
                        method.infer(image)
                prediction, ms = timed_call(method.infer, image)
                per_image[sample_id] = (ms, prediction.model_ms, prediction.overhead_ms)
    path.unlink()
    if not any(path.parent.iterdir()):
        path.parent.rmdir()  # the method kept nothing else of its cell
    summary = summarize_split(*([t[k] for t in per_image.values()] for k in range(3)))
    return summary, per_image



def fit_cell(task: CellTask, method: Method, train: Sequence[Sample], val: Sequence[Sample] | None) -> tuple[Method, float, str]:
    """Fit the cell's method, sharing its base with other cells of the run; returns the fitted method, the
    training seconds (a reused base counts with the time its provider took to fit it) and the key of the cell
    whose fitted base was reused ("" where this cell fitted its own)."""
    path = Path(task.base_path) if task.base_path else None
    if task.base_cell and path is not None and path.is_file():
        # Our own file, written by this run's provider cell; it holds a pickled method, so not weights_only.
        shared = torch.load(path, weights_only=False)
        method = method.with_base(shared["base"])
        start = clock()
        method.fit_stages(train, val)
        return method, shared["fit_s"] + clock() - start, task.base_cell
    if not task.save_base:  # a lone method, or a provider's base that is missing (it failed): fit it all here
        start = clock()
        method.fit(train, val)
        return method, clock() - start, ""
    base = method.base_method
    start = clock()
    base.fit(train, val)
    fit_s = clock() - start
    assert path is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda p: torch.save({"base": base, "fit_s": fit_s}, p))
    start = clock()
    method.fit_stages(train, val)
    fit_s += clock() - start
    return method, fit_s, ""
