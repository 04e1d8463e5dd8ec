"""Where a network runs and how reproducibly: device choice, seeding, deterministic algorithms, mixed precision."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch

__all__ = [
    "Device",
    "Precision",
    "pick_device",
    "seed_everything",
    "deterministic_algorithms",
    "amp_dtype",
    "autocast",
    "cpu_supports_bf16",
    "training_precision",
]

Device = Literal["auto", "cpu", "cuda"]
#: Training precision: ``fp32``, or ``bf16`` (autocast to bfloat16: on CPUs with native bfloat16 and on CUDA,
#: where float16 with a gradient scaler stands in on GPUs without bfloat16).
Precision = Literal["fp32", "bf16"]


def pick_device(device: Device = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU. Asking for CUDA without one is an error, not a silent fallback."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but torch sees no CUDA device; use device='auto' or 'cpu'")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (model initialisation draws from torch's)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    """Use deterministic algorithms inside the block and restore the previous global setting after it.

    ``warn_only``: a CUDA op without a deterministic kernel (e.g. max-unpooling's backward) warns instead of
    failing; on CPU every op used here is deterministic.
    """
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    prev_cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    try:
        if enabled:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)
        torch.backends.cudnn.benchmark = prev_bench
        if prev_cublas is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The autocast dtype on CUDA (bfloat16 where supported, else float16); None: full float32."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[object]:
    """``torch.autocast`` to ``dtype`` on ``device``; a no-op context for ``dtype=None`` (float32)."""
    return torch.autocast(device_type=device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX, used by oneDNN); elsewhere autocast to
    bfloat16 emulates it and is slower than float32."""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, "_is_avx512_bf16_supported", None), getattr(cpu, "_is_amx_tile_supported", None)]
    return torch.backends.mkldnn.is_available() and any(bool(check()) for check in checks if check is not None)


def training_precision(device: torch.device, precision: str) -> tuple[torch.dtype | None, str, str]:
    """What ``precision`` means on ``device``: the autocast dtype (None: float32), the precision actually used
    (``fp32``, ``bf16`` or ``fp16``) and, where that differs from the one asked for, why."""
    if precision == "fp32":
        return None, "fp32", ""
    if precision != "bf16":
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "bf16", ""
        return torch.float16, "fp16", "this GPU has no bfloat16: float16 with a gradient scaler"
    if cpu_supports_bf16():
        return torch.bfloat16, "bf16", ""
    return None, "fp32", "this CPU has no native bfloat16 (AVX512-BF16 or AMX): float32, faster than emulated bfloat16"
