"""What a run folder records about where it ran, so a table can be traced and reproduced."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from segbench.measure.latency import cpu_name, device_name

__all__ = ["environment", "cpu_name", "device_name", "load_average", "loaded_machine"]

_PACKAGES = (
    "segbench", "numpy", "scipy", "scikit-image", "scikit-learn", "torch", "pandas", "seaborn",
    "matplotlib", "pillow", "pydensecrf2", "PyMaxflow", "pytest-benchmark",
    # the zoo extra (None where not installed)
    "torchvision", "segmentation-models-pytorch", "timm", "huggingface-hub",
)


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def load_average() -> list[float] | None:
    """The machine's 1-, 5- and 15-minute load averages (runnable processes), or None where unknown."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def loaded_machine(env: dict[str, Any]) -> str:
    """A sentence when a run shared its cores: the load it found at start plus the threads its own cells use
    exceeded the CPU count, so its times (latency, training under a budget) are slower than on an idle machine;
    "" otherwise or when not recorded."""
    load, cpus = env.get("load_average_start") or env.get("load_average"), env.get("cpu_count")
    ours = (env.get("cells_at_once") or 1) * (env.get("threads_per_cell") or env.get("torch_threads") or 1)
    if not load or not cpus or load[0] + ours <= cpus:
        return ""
    return (f"Taken on a loaded machine: load average {load[0]:.1f} at start on {cpus} CPUs, plus {ours} thread(s) of "
            "its own cells; times are slower than on an idle machine.")


def environment(config: dict[str, Any]) -> dict[str, Any]:
    """Versions, hardware, threads, git commit and the full run config."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    cuda = torch.cuda.is_available()
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_average": load_average(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "cuda_version": torch.version.cuda,
        "git_commit": _git_commit(),
        "packages": versions,
        "config": config,
    }
