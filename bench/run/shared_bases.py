"""Shared fitted bases: pipelines on the same base and settings (``slic``, ``slic+crf``, ``slic+crf+morph``) fit
the base once per (dataset, fold, seed, train fraction) and reuse it, so a stage's effect is measured on
identical base predictions, on CPU and GPU alike.

``share_bases`` marks one provider cell per base (the bare method when the grid has it, else the first such
pipeline); the runner runs providers first. ``fit_cell`` fits a cell's method: a provider saves its fitted base
to ``artifacts/<key>/fitted_base.pt``; the other cells load it and fit only their stages.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from segbench.datasets.base import Sample
from segbench.methods import Method, Pipeline, split_spec
from segbench.run.records import stable_hash, write_atomic

if TYPE_CHECKING:
    from segbench.run.runner import CellTask

__all__ = ["FITTED_BASE", "share_bases", "fit_cell"]

#: In a provider cell's artifacts folder: its fitted base, for the pipelines that reuse it.
FITTED_BASE = "fitted_base.pt"


def share_bases(tasks: list[CellTask]) -> list[CellTask]:
    """Give cells with the same base and settings one fitted base: the bare method's cell provides it when
    the grid has one, else the first pipeline (``run`` runs providers first)."""
    groups: dict[str, list[CellTask]] = {}
    for task in tasks:
        base = split_spec(task.method)[0]
        identity = {"dataset": task.dataset_spec, "base": base, "options": task.method_options.get(base, {}),
                    "split": stable_hash(task.split), "seed": task.seed, "size": task.size, "quick": task.quick,
                    "tiling": task.tiling and dataclasses.asdict(task.tiling)}
        groups.setdefault(stable_hash(identity), []).append(task)
    shared: dict[str, CellTask] = {}
    for group in groups.values():
        if len(group) < 2:
            continue
        provider = next((t for t in group if "+" not in t.method), group[0])
        path = str(Path(provider.artifacts_dir) / FITTED_BASE)
        for task in group:
            shared[task.key] = dataclasses.replace(
                task, base_path=path, save_base=task is provider, base_cell="" if task is provider else provider.key
            )
    return [shared.get(t.key, t) for t in tasks]


def fit_cell(task: CellTask, method: Method, train: Sequence[Sample], val: Sequence[Sample] | None) -> tuple[Method, float, str]:
    """Fit the cell's method, sharing its base with other cells of the run; returns the fitted method, the
    training seconds (a reused base counts with the time its provider took to fit it) and the key of the cell
    whose fitted base was reused ("" where this cell fitted its own)."""
    path = Path(task.base_path) if task.base_path else None
    if task.base_cell and path is not None and path.is_file() and isinstance(method, Pipeline):
        # Our own file, written by this run's provider cell; it holds a pickled method, so not weights_only.
        shared = torch.load(path, weights_only=False)
        method = Pipeline(shared["base"], method.stages)
        start = time.perf_counter()
        method.fit_stages(train, val)
        return method, shared["fit_s"] + time.perf_counter() - start, task.base_cell
    if not task.save_base:  # a lone method, or a provider's base that is missing (it failed): fit it all here
        start = time.perf_counter()
        method.fit(train, val)
        return method, time.perf_counter() - start, ""
    base = getattr(method, "base", method)
    start = time.perf_counter()
    base.fit(train, val)
    fit_s = time.perf_counter() - start
    assert path is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda p: torch.save({"base": base, "fit_s": fit_s}, p))
    if isinstance(method, Pipeline):
        start = time.perf_counter()
        method.fit_stages(train, val)
        fit_s += time.perf_counter() - start
    return method, fit_s, ""
