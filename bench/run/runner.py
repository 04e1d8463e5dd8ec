"""The runner: datasets x methods x seeds -> one cell each -> records in a run folder.

Run folder layout::

    <out>/environment.json      versions, hardware, git commit, full config
    <out>/splits/<dataset>.csv  the split every method of the run used (image_id,split);
                                with --folds K, splits/<dataset>-fold<k>.csv, one per fold
    <out>/cells/<key>/          one finished cell: cell.json (summary row, confusion matrix), per_image.csv,
                                confusion_per_image.npz (image_id, confusion: one (C, C) matrix per test image)
    <out>/artifacts/<key>/      what a method keeps of its cell (checkpoints and their history.csv), and
                                fitted_base.pt where the cell fits a base that other pipelines reuse
    <out>/summary.csv           one row per cell (dataset x method x seed x fold x train fraction) and test
                                variant (clean, each corruption x severity); rebuilt after every cell
    <out>/per_image.csv         one row per test image of every cell
    <out>/predictions/<dataset>/<method>/<seed>/<image_id>.png   with --save-predictions
    <out>/predictions/<dataset>/<method>/<seed>/cell.txt         the key of the cell that wrote them

A cell (dataset, method, seed, fold, train fraction, settings) is the unit of work. Pipelines on the same base
and settings share one fitted base per (dataset, fold, seed, train fraction): one "provider" cell (the bare
method when the grid has it, else the first such pipeline) fits and saves it, and runs first; the others load
it and fit only their stages, so a stage's effect is measured on identical base predictions. Executors (``segbench.run.executors``) run cells
in this process or on a Dask cluster; workers return records and the driver alone writes the run folder.
A cell is committed atomically (written to a temporary folder, then renamed) as soon as it ends, and the
tables are rewritten atomically from the committed cells, so a crash, SIGKILL or Ctrl-C never leaves a
half-written table, and re-running the same command skips finished cells. A cell's key includes a hash of
everything that decides its result, so a changed setting makes a new cell instead of reusing an old one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
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

from segbench.datasets import DataError, build_dataset
from segbench.datasets.base import dataset_entries
from segbench.datasets.corruptions import corrupt
from segbench.datasets.splits import dataset_folds, dataset_split, train_subset, write_split_file
from segbench.datasets.validate import check_masks, missing_classes
from segbench.datasets.transforms import WorkSize
from segbench.run.environment import device_name, environment
from segbench.run.executors import make_executor
from segbench.measure.boundary import DEFAULT_TOLERANCE, check_tolerance
from segbench.measure.cell_measures import CellMeasures
from segbench.measure.latency import MemoryProbe, summarize_ms, timed_call
from segbench.methods import METHODS, IncompatibleError, Method, build_method, split_spec
from segbench.methods.tiling import Tiling
from segbench.measure.metrics import ConfusionMatrix, flatten_scores, scores_from_confusion
from segbench.registry import import_modules
from segbench.run.records import COLUMN_DEFAULTS, KEY_COLUMNS, PREDICTIONS_CELL_FILE, load_tables, prediction_dir, prediction_path, slug, write_atomic
from segbench.run.records import stable_hash as _hash
from segbench.run.shared_bases import fit_cell, share_bases

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
    #: K-fold cross-validation (None: one train/val/test split): every image is tested once per method and seed.
    folds: int | None = None
    #: Nested seeded subsets of the training part, each a cell of the grid (val and test unchanged).
    train_fractions: list[float] = field(default_factory=lambda: [1.0])
    #: Test-image corruptions x severities each cell is also scored on (trained once, on clean data).
    corruptions: list[str] = field(default_factory=list)
    severities: list[int] = field(default_factory=lambda: [1, 3, 5])
    #: Pipelines with the same base and settings fit it once and reuse it (False: each cell fits its own).
    share_bases: bool = True
    #: Boundary F1 tolerance: pixels ("3") or percent of the image diagonal ("0.75%").
    boundary_tolerance: str = DEFAULT_TOLERANCE
    #: Wall-clock training budget (seconds) of every method whose training loop takes one (``budget_s``).
    budget_s: float | None = None
    #: The command line that made this run, recorded in each of its cells (the tables' ``command`` column).
    command: str = ""

    def tiling(self) -> Tiling | None:
        """The ``Tiling`` every method of the run predicts with, or None."""
        return Tiling(self.tile, self.tile_overlap) if self.tile is not None else None

    def validate(self) -> None:
        """Fail before any work on names that do not exist (the error lists the known ones)."""
        if not self.datasets or not self.methods or not self.seeds:
            raise ValueError("a run needs at least one dataset, one method and one seed")
        if self.retries < 0:
            raise ValueError(f"retries={self.retries} must be 0 or more")
        if self.folds is not None and self.folds < 2:
            raise ValueError(f"--folds {self.folds}: cross-validation needs at least 2 folds")
        if not self.train_fractions or any(not 0 < f <= 1 for f in self.train_fractions):
            raise ValueError(f"--train-fraction {self.train_fractions}: give fractions in (0, 1], e.g. 0.25,0.5,1.0")
        for name, severity in itertools.product(self.corruptions, self.severities):
            corrupt(np.zeros((8, 8, 3), np.uint8), name, severity, seed=0)  # unknown names and severities fail here
        if self.budget_s is not None and not self.budget_s > 0:
            raise ValueError(f"budget_s={self.budget_s} must be > 0 seconds (--budget-s)")
        dataset_entries(self.datasets)
        for spec in self.methods:
            split_spec(spec)
        self.tiling()  # bad tile settings fail here, naming the fix
        check_tolerance(self.boundary_tolerance)

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
    fold: int = 0
    n_folds: int = 1
    train_fraction: float = 1.0
    #: ``(corruption, severity)`` test variants scored after the clean test images.
    variants: tuple[tuple[str, int], ...] = ()
    #: Shared fitted base: where it is saved (``fitted_base.pt`` of the provider's artifacts), whether this
    #: cell is the provider that saves it, and otherwise the provider's key (it loads the base from there).
    base_path: str = ""
    save_base: bool = False
    base_cell: str = ""
    boundary_tolerance: str = DEFAULT_TOLERANCE


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


@dataclass
class RunResult:
    summary: pd.DataFrame
    per_image: pd.DataFrame
    failures: list[dict[str, Any]]


def _components(method_spec: str) -> list[str]:
    base, stages = split_spec(method_spec)
    return [base, *stages]


def _with_budget(method_spec: str, options: dict[str, dict[str, Any]], budget_s: float | None) -> dict[str, dict[str, Any]]:
    """``options`` plus the run's budget as the base method's ``budget_s`` option, where its training loop takes
    one (an explicit ``--opt METHOD.budget_s`` wins). The options enter the cell key, so the budget does too."""
    base = split_spec(method_spec)[0]
    if budget_s is None or "budget_s" not in {f.name for f in dataclasses.fields(METHODS.get(base).Options)}:
        return options
    return {**options, base: {"budget_s": budget_s, **options.get(base, {})}}


def _failed(exc: BaseException, *, trace: str | None = None) -> CellOutcome:
    return CellOutcome({"status": "failed", "error": f"{type(exc).__name__}: {exc}"}, extra={"traceback": trace or ""},
                       retry=not isinstance(exc, DataError))


def evaluate_cell(task: CellTask) -> CellOutcome:
    """Fit one method on one dataset's train split and score it on test (val when there is no test).

    Never raises: an error becomes a ``failed`` outcome, a method that cannot handle the dataset a
    ``skipped`` one.
    """
    try:
        if task.threads:
            torch.set_num_threads(task.threads)
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
    )
    getattr(method, "base", method).artifacts_dir = Path(task.artifacts_dir)
    train = dataset.subset(split["train"])
    val = dataset.subset(split["val"]) if split["val"] and eval_split == "test" else None
    method, train_s, base_cell = fit_cell(task, method, train, val)

    test_ids = split[eval_split]
    device = str(getattr(getattr(method, "base", method), "device", "cpu"))
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
        **{k: method.train_info.get(k) for k in ("epochs_run", "budget_s", "stop_reason")},  # empty: no network trained
    }
    after = {"method_config": json.dumps(method.config(), default=str)}
    for scored in (clean, *variants):
        scored["summary"] = {**fixed, **scored["summary"], "work_size": json.dumps(method.work_size), **after}
    extra = {"confusion_matrix": clean.pop("matrix"), "class_names": list(dataset.class_names),
             "reliability": clean.pop("reliability")}
    return CellOutcome(clean["summary"], clean["rows"], extra, clean["confusions"], clean["predictions"], variants)


def _score(
    task: CellTask, method: Method, dataset: Any, test_ids: list[str], device: str, *, corruption: str, severity: int
) -> dict[str, Any]:
    """Predict and score the test images, clean or corrupted (``corrupt``, seeded per image); the clean pass
    warms the method up first and alone saves predictions."""
    meter = ConfusionMatrix(dataset.num_classes, ignore_index=dataset.ignore_index)
    measures = CellMeasures(dataset.class_names, ignore_index=dataset.ignore_index, tolerance=task.boundary_tolerance)
    rows, times, confusions, predictions = [], [], [], {}
    clean = corruption == "none"
    desc = f"{task.method} predict" + ("" if clean else f" {corruption}-{severity}")
    with torch.inference_mode(), MemoryProbe(device) as memory:
        for i, sample_id in enumerate(tqdm(test_ids, desc=desc, leave=False, disable=None)):
            sample = dataset.load(sample_id)
            image = sample.image if clean else corrupt(sample.image, corruption, severity, seed=_image_seed(sample_id))
            if i == 0 and clean:
                for _ in range(task.warmup):  # first calls pay for lazy initialisation; never timed
                    method.predict(image)
            labels, ms = timed_call(method.predict, image)
            times.append(ms)
            proba = method.predict_proba(image)  # untimed; TODO(merge): labels and proba from one pass (helper A)
            confusions.append(meter.update(sample.mask, labels, ignore_mask=sample.ignore))
            rows.append(_image_row(task, dataset.class_names, sample_id, confusions[-1], ms, corruption, severity))
            rows[-1].update(measures.update(sample.mask, labels, proba, ignore_mask=sample.ignore))
            if task.save_predictions and clean:
                buffer = io.BytesIO()
                Image.fromarray(labels.astype(np.uint8)).save(buffer, format="PNG")
                predictions[sample_id] = buffer.getvalue()
    result = meter.compute()
    summary = {
        "corruption": corruption,
        "severity": severity,
        **summarize_ms(times),
        "peak_mem_mb": memory.peak_mb,
        "device": device,
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        **flatten_scores(result["dataset"], dataset.class_names, prefix="dataset_"),
        **flatten_scores(result["per_image"], dataset.class_names, prefix="per_image_"),
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
    task: CellTask, class_names: tuple[str, ...], sample_id: str, cm: np.ndarray, ms: float, corruption: str, severity: int
) -> dict[str, Any]:
    row = {"dataset": task.dataset_name, "method": task.method, "seed": task.seed, "fold": task.fold,
           "train_fraction": task.train_fraction, "corruption": corruption, "severity": severity, "image_id": sample_id}
    return {**row, **flatten_scores(scores_from_confusion(cm), class_names), "latency_ms": ms}


class _RunFolder:
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
        final = self.cell_dir(task.key)
        tmp = final.with_name(f".tmp-{task.key}-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        ids = {"dataset": task.dataset_name, "method": task.method, "seed": task.seed, "fold": task.fold,
               "train_fraction": task.train_fraction, "corruption": "none", "severity": 0}
        after = {"n_folds": task.n_folds, "attempts": attempts, "cell": task.key, "command": self.command}
        summary = {**ids, **outcome.summary, **after}
        record = {"summary": summary, "key": task.key, **outcome.extra}
        if outcome.variants:  # corrupted test images: one summary row and confusion matrix each
            record["variants"] = [{"summary": {**ids, **v["summary"], **after}, "confusion_matrix": v["matrix"]}
                                  for v in outcome.variants]
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
        shutil.rmtree(final, ignore_errors=True)  # an earlier failed attempt of the same cell
        os.replace(tmp, final)

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
        summaries, per_image = [], []
        for key in ours + list(older.values()):
            summaries += [{"command": "", **records[key]["summary"]},
                          *({"command": "", **v["summary"]} for v in records[key].get("variants", []))]
            rows_path = self.cell_dir(key) / "per_image.csv"
            if rows_path.stat().st_size > 1:
                per_image.append(pd.read_csv(rows_path, dtype={"image_id": str}))
        summary = pd.DataFrame(summaries)
        images = pd.concat(per_image, ignore_index=True) if per_image else pd.DataFrame(columns=[*KEY_COLUMNS, "image_id"])
        write_atomic(self.root / "summary.csv", lambda p: summary.to_csv(p, index=False))
        write_atomic(self.root / "per_image.csv", lambda p: images.to_csv(p, index=False))
        return summary, images


def _splits(config: RunConfig, dataset: Any, folder: _RunFolder, name: str) -> list[dict[str, list[str]]]:
    """The dataset's split, or one split per fold with ``--folds``; each written to ``splits/``."""
    if config.folds is None:
        splits = [dataset_split(dataset, seed=config.split_seed, fractions=config.split_fractions, split_file=config.split_file)]
        write_split_file(splits[0], folder.root / "splits" / f"{slug(name)}.csv")
        return splits
    splits = dataset_folds(dataset, config.folds, seed=config.split_seed, fractions=config.split_fractions,
                           split_file=config.split_file)
    for k, split in enumerate(splits):
        write_split_file(split, folder.root / "splits" / f"{slug(name)}-fold{k}.csv")
    return splits


def preflight(config: RunConfig, *, progress: bool = True, log: Callable[[str], None] = print) -> None:
    """Index every dataset of the run and check every mask, before any cell starts.

    Logs how each dataset's masks are read (what ``mask_mode=auto`` decided) and, loudly, each class that no
    test mask holds (its scores will be NaN, not a perfect score).

    Raises:
        DataError: every problem found, in all datasets, listed together (each naming its file).
    """
    problems = []
    for entry in dataset_entries(config.datasets):
        try:
            dataset = build_dataset(entry.spec, data_dir=config.data_dir, options=entry.options(config.dataset_options))
            if dataset.describe_masks():
                log(f"{entry.name}: {dataset.describe_masks()}")
            present, bad = check_masks(dataset, progress=progress)
            if bad:
                problems += bad
                continue
            split = dataset_split(dataset, seed=config.split_seed, fractions=config.split_fractions, split_file=config.split_file)
        except (DataError, ValueError, TypeError) as exc:  # the dataset itself cannot be built or split
            problems.append(f"{entry.name}: {exc}")
            continue
        eval_split = "test" if split["test"] else "val"
        for name in missing_classes(dataset, present, split[eval_split]):
            log(f"WARNING: {entry.name}: class {name!r} has no pixel in any {eval_split} mask; its IoU and Dice there "
                "are undefined (NaN), not scored; change the split (--split-seed, --split-file) or the class list")
    if problems:
        listed = "\n  ".join(problems)
        raise DataError(f"{len(problems)} problem(s) in the data, nothing was run; fix them (segbench validate "
                        f"lists them too):\n  {listed}")


def _plan(config: RunConfig, folder: _RunFolder) -> tuple[list[CellTask], dict[str, CellOutcome]]:
    """Every cell of the grid, in order, and the outcomes already known on the driver (broken datasets)."""
    tasks, known = [], {}
    variants = tuple((c, s) for c in config.corruptions for s in config.severities)
    n_folds = config.folds or 1
    for entry in dataset_entries(config.datasets):
        name, dataset_spec = entry.name, entry.spec
        options = entry.options(config.dataset_options)
        try:
            dataset = build_dataset(dataset_spec, data_dir=config.data_dir, options=options)
            splits = _splits(config, dataset, folder, name)
            dataset_config, broken = dataset.config(), None
            size = config.size if config.size is not None else dataset.work_size  # one size for every method
        except Exception as exc:  # a missing or broken dataset fails its cells, not the run
            splits = [{"train": [], "val": [], "test": []}] * n_folds
            dataset_config, broken, size = None, _failed(exc, trace=traceback.format_exc()), config.size
        for method_spec, fold, fraction, seed in itertools.product(
            config.methods, range(n_folds), config.train_fractions, config.seeds
        ):
            method_options = {k: v for k, v in config.method_options.items() if k in _components(method_spec)}
            method_options = _with_budget(method_spec, method_options, config.budget_s)
            split = splits[fold]
            if fraction != 1.0:  # nested subsets of the training part, the same for every method
                split = {**split, "train": train_subset(split["train"], fraction, seed=config.split_seed)}
            identity = {
                "dataset": dataset_spec, "dataset_config": dataset_config, "split": _hash(split),
                "method": method_spec, "options": method_options, "size": size,
                "quick": config.quick, "seed": seed,
            }
            # New settings enter the key only when set, so cells of runs without them keep their keys.
            if config.tile is not None:
                identity["tiling"] = dataclasses.asdict(config.tiling())
            if config.folds is not None:
                identity["fold"] = [fold, n_folds]
            if fraction != 1.0:
                identity["train_fraction"] = fraction
            if variants:
                identity["variants"] = variants
            if config.boundary_tolerance != DEFAULT_TOLERANCE:
                identity["boundary_tolerance"] = config.boundary_tolerance
            name_parts = [slug(name), slug(method_spec), f"seed{seed}"]
            name_parts += [f"fold{fold}"] if config.folds is not None else []
            name_parts += [f"train{fraction:g}"] if fraction != 1.0 else []
            key = f"{'__'.join(name_parts)}-{_hash(identity)}"
            task = CellTask(
                key=key, dataset_spec=dataset_spec, dataset_name=name, method=method_spec, seed=seed,
                split=split, artifacts_dir=str(folder.root / "artifacts" / key), data_dir=config.data_dir,
                dataset_options=options, method_options=method_options, size=size, tiling=config.tiling(),
                quick=config.quick,
                warmup=config.warmup, save_predictions=config.save_predictions,
                threads=config.executor_options.get("threads_per_worker") if config.executor == "dask" else None,
                fold=fold, n_folds=n_folds, train_fraction=fraction, variants=variants,
                boundary_tolerance=config.boundary_tolerance,
            )
            tasks.append(task)
            if broken is not None:
                known[key] = broken
    return (share_bases(tasks) if config.share_bases else tasks), known


def run(config: RunConfig, *, progress: bool = True, log: Callable[[str], None] = print) -> RunResult:
    """Run the grid, committing each cell as it finishes; returns the tables and the failures.

    Failed cells are retried up to ``config.retries`` times (a dead worker counts as a failure); finished
    cells found in the run folder are skipped.
    """
    import_modules(config.imports)  # modules that register the user's own methods and datasets
    config.validate()
    preflight(config, progress=progress, log=log)
    folder = _RunFolder(Path(config.out), command=config.command)
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
        if outcome.status == "failed" and outcome.retry and attempts[task.key] <= config.retries and task.key not in known:
            log(f"retrying {task.dataset_name} / {task.method} / seed {task.seed} after: {outcome.summary['error']}")
            return True
        if outcome.status == "skipped":
            log(f"skipped {task.dataset_name} / {task.method} / seed {task.seed}: {outcome.summary['error']}")
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
        # Phase 1: the cells that fit a shared base (and save it); phase 2: the cells that load it.
        for phase in ([t for t in pending if t.save_base], [t for t in pending if not t.save_base]):
            while phase:
                phase = [t for t, outcome in executor.map_unordered(evaluate_cell, phase, lambda t, e: _failed(e))
                         if finish(t, outcome)]
    finally:
        if executor is not None:
            executor.close()
        bar.close()
    summary, per_image = folder.write_tables(keys)
    failures = summary[summary["status"] == "failed"][KEY_COLUMNS + ["error"]].to_dict("records") if len(summary) else []
    return RunResult(summary, per_image, failures)
