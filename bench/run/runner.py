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

import copy
import dataclasses
import itertools
import json
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from segbench.datasets import DataError, build_dataset
from segbench.datasets.base import dataset_entries
from segbench.datasets.corruptions import corrupt
from segbench.datasets.splits import (
    dataset_folds,
    dataset_split,
    split_file_problems,
    train_subset,
    write_split_file,
)
from segbench.datasets.validate import missing_classes, validate_dataset
from segbench.methods import METHODS, IncompatibleError, SetupError, build_method, split_spec
from segbench.methods.tiling import Tiling
from segbench.files import write_atomic
from segbench.registry import import_modules
from segbench.run import settings as run_settings
from segbench.run.cells import CellOutcome, CellTask, evaluate_cell, failed_outcome, time_latency
from segbench.run.environment import environment, load_average
from segbench.run.executors import make_executor
from segbench.run.folder import RunFolder
from segbench.run.records import (
    KEY_COLUMNS,
    case_collisions,
    dataset_record,
    dataset_record_problems,
    load_tables,
    slug,
    write_dataset_records,
)
from segbench.run.records import stable_hash as _hash
from segbench.run.shared_bases import share_bases
from tqdm.auto import tqdm

__all__ = ["RunConfig", "RunResult", "CellTask", "CellOutcome", "run", "evaluate_cell", "load_tables", "preflight"]

@dataclass(init=False)
class RunConfig:
    """Everything a run needs; stored in ``environment.json``: the grid (datasets, methods, seeds, folds, the
    split), where it runs and writes, and every setting of ``segbench.run.settings.SETTINGS`` (in ``settings``,
    read as ``config.<name>``; ``RunConfig(..., quick=True)`` sets one, ``settings=`` several)."""

    out: Path
    datasets: list[str]
    methods: list[str]
    seeds: list[int]
    data_dir: str | None
    split_file: str | None
    split_seed: int
    split_fractions: tuple[float, float, float]
    #: K-fold cross-validation (None: one train/val/test split): every image is tested once per method and seed.
    folds: int | None
    method_options: dict[str, dict[str, Any]]
    dataset_options: dict[str, dict[str, Any]]
    imports: list[str]
    executor: str
    executor_options: dict[str, Any]
    #: The command line that made this run, recorded in each of its cells (the tables' ``command`` column).
    command: str
    settings: dict[str, Any]

    def __init__(
        self, out: Path | str, datasets: list[str], methods: list[str], *, seeds: list[int] | None = None,
        data_dir: str | None = None, split_file: str | None = None, split_seed: int = 0,
        split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), folds: int | None = None,
        method_options: dict[str, dict[str, Any]] | None = None, dataset_options: dict[str, dict[str, Any]] | None = None,
        imports: list[str] | None = None, executor: str = "local", executor_options: dict[str, Any] | None = None,
        command: str = "", settings: dict[str, Any] | None = None, **given: Any,
    ) -> None:
        self.out, self.datasets, self.methods, self.seeds = Path(out), datasets, methods, seeds if seeds is not None else [0]
        self.data_dir, self.split_file, self.split_seed, self.split_fractions = data_dir, split_file, split_seed, split_fractions
        self.folds, self.method_options, self.dataset_options = folds, method_options or {}, dataset_options or {}
        self.imports, self.executor, self.executor_options = imports or [], executor, executor_options or {}
        self.command = command
        self.settings = run_settings.initial_values({**(settings or {}), **given})
        if self.settings["budget"] == "converged" and not any(b is not None for b in self.settings["budget_s"]):
            self.settings = run_settings.resolve_budget(self.settings)

    def __getattr__(self, name: str) -> Any:  # only called for names that are no attribute: the settings
        settings = self.__dict__.get("settings", {})
        if name in settings:
            return settings[name]
        raise AttributeError(f"RunConfig has no attribute or setting {name!r}")

    def cell_threads(self) -> int:
        """The threads every cell runs at: ``threads``, or a Dask LocalCluster's ``threads_per_worker``."""
        return int(self.executor_options.get("threads_per_worker") or self.threads)

    def corruption_variants(self) -> tuple[tuple[str, int], ...]:
        """``(corruption, severity)`` test variants every cell is also scored on."""
        return run_settings.variants_of(self.settings)

    def problems(self) -> list[str]:
        """Flags that contradict each other or would change nothing, one line each (checked with the data in
        ``preflight``, so that every problem is listed at once)."""
        out = []
        for flag, values in (("--seeds", self.seeds), ("--methods", self.methods), ("--train-fraction", self.train_fractions),
                             ("--corruptions", self.corruptions), ("--severities", self.severities or [])):
            twice = sorted({str(v) for v in values if values.count(v) > 1})
            if twice:
                out.append(f"{flag} lists {', '.join(twice)} more than once; list each once")
        if self.severities is not None and not self.corruptions:
            out.append("--severities has no effect without --corruptions; add --corruptions (e.g. gaussian_noise) or drop it")
        if self.folds is not None and self.split_file is not None:
            out.append(f"--folds {self.folds} with --split-file: cross-validation makes its own splits; drop one")
        given = {k for k, v in self.executor_options.items() if v}
        if self.executor != "dask":
            out += [f"--{k.replace('_', '-')} has no effect without --executor dask; drop it"
                    for k in ("scheduler", "threads_per_worker") if k in given]
        elif "scheduler" in given:
            out += [f"--{k.replace('_', '-')} has no effect with --scheduler (the running cluster decides); drop it"
                    for k in ("workers", "threads_per_worker") if k in given]
        for flag, value in (("--threads", self.threads), ("--workers", self.executor_options.get("workers")),
                            ("--threads-per-worker", self.executor_options.get("threads_per_worker"))):
            if value is not None and value < 1:
                out.append(f"{flag} {value}: give 1 or more")
        if self.threads != 1 and self.executor_options.get("threads_per_worker") not in (None, self.threads):
            out.append("--threads and --threads-per-worker disagree; give one of them")
        return out

    def tiling(self) -> Tiling | None:
        """The ``Tiling`` every method of the run predicts with, or None."""
        return run_settings.tiling_of(self.settings)

    def validate(self) -> None:
        """Fail before any work on names that do not exist (the error lists the known ones)."""
        if not self.datasets or not self.methods or not self.seeds:
            raise ValueError("a run needs at least one dataset, one method and one seed")
        if self.folds is not None and self.folds < 2:
            raise ValueError(f"--folds {self.folds}: cross-validation needs at least 2 folds")
        for setting in run_settings.SETTINGS:
            if setting.check is not None:
                setting.check(self.settings[setting.field])
        run_settings.resolve_budget(dict(self.settings))  # --budget converged against --budget-s
        for name, severity in self.corruption_variants():
            corrupt(np.zeros((8, 8, 3), np.uint8), name, severity, seed=0)  # unknown names and severities fail here
        dataset_entries(self.datasets)
        for spec in self.methods:
            problem = METHODS.get(split_spec(spec)[0]).unavailable()  # a missing optional extra, named
            if problem:
                raise SetupError(problem)
        self.tiling()  # bad tile settings fail here, naming the fix

    def to_json(self) -> dict[str, Any]:
        """The config as ``environment.json`` records it: the settings beside the grid, one flat mapping."""
        d = {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "settings"}
        return {**d, "out": str(self.out), **copy.deepcopy(self.settings)}


@dataclass
class RunResult:
    summary: pd.DataFrame
    per_image: pd.DataFrame
    failures: list[dict[str, Any]]


def _components(method_spec: str) -> list[str]:
    base, stages = split_spec(method_spec)
    return [base, *stages]


def _splits(config: RunConfig, dataset: Any, folder: RunFolder, name: str) -> list[dict[str, list[str]]]:
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


def preflight(config: RunConfig, *, progress: bool = True, log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Everything that can fail, checked before any cell starts: the flags (``RunConfig.problems``), every
    dataset as ``segbench validate`` checks it (every image and mask decoded, sizes, mask values, declared
    classes that no mask holds), its split or folds, and that each dataset name in ``--out`` still means the
    same data (``records.dataset_record``).

    Logs how each dataset's masks are read (what ``mask_mode=auto`` decided), the class its headline scores,
    and, loudly, each class that some test part does not hold (its scores there are NaN, not a perfect score).

    Returns:
        What each dataset name stands for (``records.dataset_record``), for the run folder.

    Raises:
        DataError: every problem found, flags and data, listed together (one line each, naming the file or flag).
    """
    problems = config.problems()
    records = {}
    for entry in dataset_entries(config.datasets):
        report = validate_dataset(entry.spec, data_dir=config.data_dir, options=entry.options(config.dataset_options),
                                  progress=progress, name=entry.name)
        for note in report.notes:
            log(note)
        for warning in report.warnings:
            log(f"WARNING: {warning}")
        problems += report.problems
        if report.built is None:
            continue
        dataset = report.built
        problems += [f"{entry.name}: {p}" for p in split_file_problems(config.split_file, dataset.ids())]
        if config.save_predictions:  # predictions are saved as <image id>.png (records.image_file_stem)
            problems += [f"{entry.name}: image ids {x!r} and {y!r} differ only by case, so their saved predictions would "
                         "be one file on a case-insensitive file system (Windows, macOS); rename one of the images, or "
                         "run without --save-predictions" for x, y in case_collisions(dataset.ids())]
        if config.folds is not None and len(dataset.ids()) < 2 * config.folds:
            problems.append(f"{entry.name}: --folds {config.folds} needs at least {2 * config.folds} images (a train and a "
                            f"test image per fold), the dataset has {len(dataset.ids())}; give --folds "
                            f"{max(2, len(dataset.ids()) // 2)} or fewer")
            continue
        if report.problems or (config.folds is not None and config.split_file is not None):
            continue  # the split needs good masks (strata); --folds with --split-file is named once, above
        records[entry.name] = dataset_record(entry.kind, dataset)
        try:
            splits = (dataset_folds(dataset, config.folds, seed=config.split_seed, fractions=config.split_fractions,
                                    split_file=config.split_file) if config.folds is not None else
                      [dataset_split(dataset, seed=config.split_seed, fractions=config.split_fractions, split_file=config.split_file)])
        except (DataError, ValueError) as exc:  # too few images for the folds, folds on a dataset's own split
            problems.append(f"{entry.name}: {exc}")
            continue
        for k, split in enumerate(splits):
            part = f"fold {k} " if len(splits) > 1 else ""
            eval_split = "test" if split["test"] else "val"
            for name in missing_classes(dataset, report.present, split[eval_split]):
                log(f"WARNING: {entry.name}: class {name!r} has no pixel in any {part}{eval_split} mask; its IoU and Dice "
                    "there are undefined (NaN), not scored; change the split (--split-seed, --split-file) or the class list")
            for name in missing_classes(dataset, report.present, split["train"]):
                log(f"WARNING: {entry.name}: class {name!r} has no pixel in any {part}train mask; methods cannot learn it")
    problems += dataset_record_problems(Path(config.out), records)
    if problems:
        listed = "\n  ".join(problems)
        raise DataError(f"{len(problems)} problem(s), nothing was run; fix them (segbench validate lists the data ones "
                        f"too):\n  {listed}")
    return records


def setup_methods(config: RunConfig) -> dict[str, dict[str, Any]]:
    """``Method.setup`` of each base method of the run, once per class count, before any cell and before the data's
    pre-flight (a weights problem shows in seconds): a weights file is downloaded once (here, not in every worker)
    and checked; returns the provenance per method for
    environment.json (methods that need nothing are left out).

    Raises:
        SetupError: a method cannot be set up (no network for its weights, a file that does not fit).
    """
    num_classes = set()
    for entry in dataset_entries(config.datasets):
        try:
            num_classes.add(build_dataset(entry.spec, data_dir=config.data_dir, options=entry.options(config.dataset_options)).num_classes)
        except Exception:  # noqa: BLE001 - preflight lists what is wrong with the data, together
            continue
    provenance = {}
    for spec, classes in itertools.product(config.methods, sorted(num_classes)):
        base = split_spec(spec)[0]
        # a setting that is an axis of the grid (a list): its first value (weights do not depend on it)
        values = {setting.name: config.settings[setting.field][0] if setting.axis else config.settings[setting.field]
                  for setting in run_settings.SETTINGS}
        options = run_settings.with_method_options(base, {k: v for k, v in config.method_options.items() if k == base}, values)
        try:
            method = build_method(base, classes, options=options, quick=config.quick)
        except IncompatibleError:  # its cells are recorded as skipped
            continue
        info = method.setup()
        if info:
            provenance[base] = info
    return provenance


def _plan(config: RunConfig, folder: RunFolder) -> tuple[list[CellTask], dict[str, CellOutcome]]:
    """Every cell of the grid, in order, and the outcomes already known on the driver (broken datasets).

    A cell's key and its fitted base's key are built here, side by side, from the same settings
    (``segbench.run.settings``): the base key from what decides a fit, the cell key from that and what decides
    the scores."""
    tasks, known = [], {}
    n_folds = config.folds or 1
    axes = [s for s in run_settings.SETTINGS if s.axis]
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
            dataset_config, broken, size = None, failed_outcome(exc, trace=traceback.format_exc()), config.size
        for method_spec, fold, *axis_values, seed in (
            (m, *rest) for m in config.methods for rest in itertools.product(
                range(n_folds), *(run_settings.axis_values(s, config.settings[s.field], m) for s in axes), config.seeds)
        ):
            values = {s.name: config.settings[s.field] for s in run_settings.SETTINGS if not s.axis}
            values.update({s.name: v for s, v in zip(axes, axis_values)}, size=size)
            method_options = {k: v for k, v in config.method_options.items() if k in _components(method_spec)}
            method_options = run_settings.with_method_options(method_spec, method_options, values)
            split = splits[fold]
            if values["train_fraction"] != 1.0:  # nested subsets of the training part, the same for every method
                split = {**split, "train": train_subset(split["train"], values["train_fraction"], seed=config.split_seed)}
            # What decides a fit: the data it sees, the seed, the fit settings; the base method and its options.
            fit = {"dataset": dataset_spec, "dataset_config": dataset_config, "split": _hash(split), "seed": seed}
            base = split_spec(method_spec)[0]
            base_key = _hash({**fit, **run_settings.fit_entries(values), "base": base,
                              "options": method_options.get(base, {})})
            identity = {**fit, **run_settings.cell_entries(values), "method": method_spec, "options": method_options}
            if config.folds is not None:
                identity["fold"] = [fold, n_folds]
            if "scored_class" in options:  # it does not change a score, but the summary row says it
                identity["scored_class"] = options["scored_class"]
            name_parts = [slug(name), slug(method_spec), f"seed{seed}"]
            name_parts += [f"fold{fold}"] if config.folds is not None else []
            key = f"{'__'.join(name_parts + run_settings.labels(values))}-{_hash(identity)}"
            task = CellTask(
                key=key, dataset_spec=dataset_spec, dataset_name=name, method=method_spec, seed=seed,
                split=split, artifacts_dir=str(folder.root / "artifacts" / key), data_dir=config.data_dir,
                dataset_options=options, method_options=method_options, base_key=base_key,
                threads=config.cell_threads(),
                fold=fold, n_folds=n_folds,
                settings={s.name: values[s.name] for s in run_settings.SETTINGS if s.in_task},
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
    load_start = load_average()  # before our own work: what else keeps the machine busy
    import_modules(config.imports)  # modules that register the user's own methods and datasets
    config.validate()
    weights = setup_methods(config)
    records = preflight(config, progress=progress, log=log)
    folder = RunFolder(Path(config.out), command=config.command)
    write_dataset_records(folder.root, records)
    cells_at_once = (config.executor_options.get("workers") or 1) if config.executor == "local" else None
    env = {**environment(config.to_json()), "load_average_start": load_start, "cells_at_once": cells_at_once,
           "threads_per_cell": config.cell_threads(), **({"weights": weights} if weights else {})}
    write_atomic(folder.root / "environment.json", lambda p: p.write_text(json.dumps(env, indent=1, default=str)))
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
    options = {**config.executor_options, "preload": config.imports}
    if config.executor == "dask":
        options["threads_per_worker"] = config.cell_threads()
    executor = make_executor(config.executor, **options) if pending else None
    if executor is not None and executor.parallel:  # cells run side by side: none times its latency (see below)
        pending = [dataclasses.replace(t, defer_latency=True) for t in pending]
    try:
        # Phase 1: every cell but those that load a shared base (the providers fit and save it, lone methods run
        # beside them); phase 2: the cells that load it.
        for phase in ([t for t in pending if not t.base_cell], [t for t in pending if t.base_cell]):
            while phase:
                phase = [t for t, outcome in executor.map_unordered(evaluate_cell, phase, lambda t, e: failed_outcome(e))
                         if finish(t, outcome)]
    finally:
        if executor is not None:
            executor.close()
        bar.close()
    # Latency is never timed while other cells of this command run: cells that ran side by side are timed
    # here, one at a time (also those an interrupted command left untimed).
    by_key = {t.key: t for t in tasks}
    deferred = folder.pending_latency(keys)
    if deferred:
        log(f"timing the latency of {len(deferred)} cell(s) one at a time")
    for key in deferred:
        try:
            folder.record_latency(key, *time_latency(by_key[key]))
        except Exception as exc:  # a missing saved method (another machine's disk): the latency stays empty
            log(f"latency of {key} not timed: {type(exc).__name__}: {exc}")
    summary, per_image = folder.write_tables(keys)
    env = {**json.loads((folder.root / "environment.json").read_text()), "load_average_end": load_average()}
    write_atomic(folder.root / "environment.json", lambda p: p.write_text(json.dumps(env, indent=1, default=str)))
    failures = summary[summary["status"] == "failed"][KEY_COLUMNS + ["error"]].to_dict("records") if len(summary) else []
    return RunResult(summary, per_image, failures)
