"""Checkpoint files: a network's weights and plain-value metadata, written atomically, read without running code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from segbench.files import write_atomic

__all__ = ["save_checkpoint", "load_checkpoint"]


def save_checkpoint(path: Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """Write ``{"state_dict", "meta"}`` atomically (a crash never leaves a truncated file at ``path``).

    ``meta`` must hold only plain Python values (str, numbers, bool, None, lists, tuples, dicts), so that
    ``load_checkpoint`` can read it with ``weights_only=True``.
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    write_atomic(path, lambda p: torch.save({"state_dict": state, "meta": meta}, p))


def load_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a checkpoint written by ``save_checkpoint`` with ``weights_only=True`` (no arbitrary code runs).

    Returns:
        ``(state_dict, meta)``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; give the best.pt of a run's artifacts folder")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "state_dict" not in payload or "meta" not in payload:
        raise ValueError(f"{path} is not a segbench checkpoint (expected keys 'state_dict' and 'meta')")
    return payload["state_dict"], payload["meta"]
