"""Shared fitted bases: pipelines on the same base and settings (``slic``, ``slic+crf``, ``slic+crf+morph``) fit
the base once per (dataset, fold, seed, train fraction) and reuse it, so a stage's effect is measured on
identical base predictions, on CPU and GPU alike.

``share_bases`` marks one provider cell per base (the bare method when the grid has it, else the first such
pipeline); the runner runs the cells that load a base after their providers. ``segbench.run.cells.fit_cell``
fits a cell's method: a provider saves its fitted base to ``artifacts/<key>/fitted_base.pt``; the other cells
load it and fit only their stages.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from segbench.run.cells import CellTask

__all__ = ["FITTED_BASE", "share_bases"]

#: In a provider cell's artifacts folder: its fitted base, for the pipelines that reuse it.
FITTED_BASE = "fitted_base.pt"


def share_bases(tasks: list[CellTask]) -> list[CellTask]:
    """Give cells with the same base and settings one fitted base: the bare method's cell provides it when
    the grid has one, else the first pipeline (``run`` runs providers first)."""
    groups: dict[str, list[CellTask]] = {}
    for task in tasks:  # the base key: what decides the base's fit (``runner._plan`` builds it beside the cell key)
        groups.setdefault(task.base_key, []).append(task)
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
