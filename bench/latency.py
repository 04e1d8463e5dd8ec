"""Inference timing: synchronised wall-clock around each call, summarised as median and p95 in ms."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

__all__ = ["synchronize", "timed_call", "summarize_ms"]

R = TypeVar("R")


def synchronize() -> None:
    """Wait for queued CUDA work, so a timer measures the kernels and not only their launch."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed_call(fn: Callable[..., R], *args: Any, **kwargs: Any) -> tuple[R, float]:
    """Call ``fn`` and return ``(result, milliseconds)``, synchronising CUDA before and after."""
    synchronize()
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    synchronize()
    return result, (time.perf_counter() - start) * 1e3


def summarize_ms(times_ms: Sequence[float]) -> dict[str, float]:
    """``latency_ms_p50``, ``latency_ms_p95``, ``latency_ms_mean``, ``latency_ms_std`` (NaN if empty)."""
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size == 0:
        return {k: float("nan") for k in ("latency_ms_p50", "latency_ms_p95", "latency_ms_mean", "latency_ms_std")}
    return {
        "latency_ms_p50": float(np.median(t)),
        "latency_ms_p95": float(np.percentile(t, 95)),
        "latency_ms_mean": float(t.mean()),
        "latency_ms_std": float(t.std(ddof=1)) if t.size > 1 else 0.0,
    }
