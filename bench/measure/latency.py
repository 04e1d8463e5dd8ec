"""Timing primitives, in one place: the one timer (``clock``, which ``timed_call``, ``measure`` and
``Stopwatch`` read), the latency protocol, memory probes, thread control and device names. Used by methods
(``Stopwatch``), the runner's cells and ``segbench latency`` (``segbench.run.latency``, the driver that fits
methods and times them); imports nothing of segbench above it.

Inference only: warm-up calls first (never timed: lazy initialisation, caches, cuDNN autotuning), then
``repeats`` timed calls, each wrapped in a CUDA synchronize on both sides when CUDA is in use, so a timer
measures the kernels and not only their launch. Results are the median, p95, mean and standard deviation in
milliseconds, images per second, and the peak memory of the timed calls, with everything needed to read the
figure (device name, dtype, AMP and channels-last flags, threads, image size, batch size).

Peak memory (``MemoryProbe``), over the untimed warm-up calls (each predicts one image): on CUDA,
``torch.cuda.max_memory_allocated`` after a reset; on CPU, the larger of the ``tracemalloc`` peak (NumPy
and Python allocations) and the growth of the process's peak resident set (``VmHWM``, which also sees
torch's allocations), above what was in use before, i.e. the extra memory predicting needs.

Threads: ``configured_threads`` makes torch, BLAS/OpenMP pools and scikit-learn follow one count, the one
recorded.
"""

from __future__ import annotations

import contextlib
import ctypes
import platform
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from threadpoolctl import threadpool_limits

__all__ = ["synchronize", "clock", "timed_call", "Stopwatch", "summarize_ms", "summarize_split", "configured_threads",
           "LatencyResult", "measure", "MemoryProbe", "cpu_name", "device_name"]

R = TypeVar("R")


def synchronize(device: str | None = None) -> None:
    """Wait for queued CUDA work (no-op on CPU or before CUDA is initialised)."""
    if device is not None and not device.startswith("cuda"):
        return
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def clock(device: str | None = None) -> float:
    """The one timer: ``time.perf_counter()`` seconds, read once queued CUDA work is done (``synchronize``)."""
    synchronize(device)
    return time.perf_counter()


def timed_call(fn: Callable[..., R], *args: Any, **kwargs: Any) -> tuple[R, float]:
    """Call ``fn`` and return ``(result, milliseconds)``, synchronising CUDA before and after."""
    start = clock()
    result = fn(*args, **kwargs)
    return result, (clock() - start) * 1e3


class Stopwatch:
    """Splits one inference into the method's own work and the harness's overhead (milliseconds).

    On CUDA each split waits for queued kernels first, so work is charged to the part that launched it.
    """

    def __init__(self, device: torch.device | str) -> None:
        self.device = str(device)
        self.model_ms = 0.0
        self.overhead_ms = 0.0
        self._last = clock(self.device)

    def lap(self, part: str) -> None:
        """Charge the time since the previous lap to ``part`` (``"model"`` or ``"overhead"``)."""
        now = clock(self.device)
        ms = (now - self._last) * 1e3
        if part == "model":
            self.model_ms += ms
        elif part == "overhead":
            self.overhead_ms += ms
        else:
            raise ValueError(f"unknown part {part!r}; use 'model' or 'overhead'")
        self._last = now


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    """Human name of ``"cpu"`` or ``"cuda[:i]"``."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_name()


def summarize_ms(times_ms: Sequence[float], prefix: str = "latency_ms") -> dict[str, float]:
    """``<prefix>_p50``, ``_p95``, ``_mean``, ``_std`` of times in ms (NaN if empty)."""
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size == 0:
        return {f"{prefix}_{k}": float("nan") for k in ("p50", "p95", "mean", "std")}
    return {
        f"{prefix}_p50": float(np.median(t)),
        f"{prefix}_p95": float(np.percentile(t, 95)),
        f"{prefix}_mean": float(t.mean()),
        f"{prefix}_std": float(t.std(ddof=1)) if t.size > 1 else 0.0,
    }


def summarize_split(latency_ms: Sequence[float], model_ms: Sequence[float], overhead_ms: Sequence[float]) -> dict[str, float]:
    """End-to-end latency statistics beside those of its parts (``Prediction.model_ms`` and ``.overhead_ms``)."""
    return {**summarize_ms(latency_ms), **summarize_ms(model_ms, "model_ms"), **summarize_ms(overhead_ms, "overhead_ms")}


@contextlib.contextmanager
def configured_threads(threads: int | None = None) -> Iterator[int]:
    """Make every library follow one thread count, and yield it (the figure to record).

    torch takes ``threads`` (None: keep its setting, which ``OMP_NUM_THREADS`` decides at start-up); BLAS and
    OpenMP pools (NumPy, SciPy, scikit-learn's gradient boosting) are limited to the same number through
    threadpoolctl; scikit-learn forests and scikit-image feature workers read ``torch.get_num_threads()``.
    """
    if threads:
        torch.set_num_threads(threads)
    n = torch.get_num_threads()
    with threadpool_limits(limits=n):
        yield n


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _malloc_in_use() -> Callable[[], int] | None:
    """Bytes glibc's malloc has handed out and not taken back (``mallinfo2``: heap plus mmapped chunks), or
    None where there is no glibc. It sees torch's CPU tensors, which ``tracemalloc`` does not."""
    try:
        mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2

    def in_use() -> int:
        info = mallinfo2()
        return info.uordblks + info.hblkhd

    return in_use


_MALLOC_IN_USE = _malloc_in_use()


class _MallocPeak(threading.Thread):
    """Samples malloc's bytes in use every ``interval`` seconds and keeps the peak (torch releases the GIL in
    its kernels, so the samples land inside a forward pass)."""

    def __init__(self, in_use: Callable[[], int], interval: float = 2e-4) -> None:
        super().__init__(daemon=True)
        self.in_use, self.interval = in_use, interval
        self.base = self.peak = in_use()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self.in_use())
            time.sleep(self.interval)

    def stop(self) -> int:
        """Stop sampling; the peak growth in bytes."""
        self._done.set()
        self.join()
        self.peak = max(self.peak, self.in_use())
        return max(0, self.peak - self.base)


class MemoryProbe:
    """Peak memory of a block of code, in MiB above what was in use when it started.

    On CUDA, the caching allocator's peak (``torch.cuda.max_memory_allocated`` after a reset). On the CPU,
    the largest of three figures, since none sees everything: the peak of memory traced by ``tracemalloc``
    (every NumPy array and Python object, whether or not the allocator returns it to the system); the
    growth of the process's peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``; it sees
    native allocations only where they enlarge the process); and, with glibc, the peak of malloc's bytes in
    use sampled every 0.2 ms by a thread (``mallinfo2``; it sees torch's CPU tensors, which the other two may
    miss once the allocator holds memory, but can miss a peak shorter than the interval). A block that
    allocates an array or a tensor therefore does not read 0.
    """

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda") and torch.cuda.is_available()
        self.peak_mb = float("nan")

    def __enter__(self) -> "MemoryProbe":
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        self._own_trace = not tracemalloc.is_tracing()
        if self._own_trace:
            tracemalloc.start()
        tracemalloc.reset_peak()
        self._traced = tracemalloc.get_traced_memory()[0]
        try:  # "5" resets the peak resident set (VmHWM) to the current one (Linux >= 4.0)
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        self._base = _status_kb("VmRSS")
        self._malloc = _MallocPeak(_MALLOC_IN_USE) if _MALLOC_IN_USE is not None else None
        if self._malloc is not None:
            self._malloc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            self.peak_mb = (torch.cuda.max_memory_allocated() - self._base) / 2**20
            return
        traced_mb = max(0, tracemalloc.get_traced_memory()[1] - self._traced) / 2**20
        if self._own_trace:
            tracemalloc.stop()
        malloc_mb = self._malloc.stop() / 2**20 if self._malloc is not None else 0.0
        peak = _status_kb("VmHWM")
        rss_mb = max(0, peak - self._base) / 1024 if peak is not None and self._base is not None else 0.0
        self.peak_mb = max(traced_mb, rss_mb, malloc_mb)


@dataclass
class LatencyResult:
    """Timed repeats of one call and the context needed to read them."""

    times_ms: list[float]
    warmup: int
    repeats: int
    batch_size: int
    device: str
    device_name: str
    threads: int
    image_size: str = ""
    dtype: str = "float32"
    amp: bool = False
    channels_last: bool = False
    peak_mem_mb: float = float("nan")

    def row(self) -> dict[str, Any]:
        """Flat record: summary statistics, images per second, and the context (units in the names)."""
        stats = summarize_ms(self.times_ms)
        d = {k: v for k, v in asdict(self).items() if k != "times_ms"}
        return {**stats, "images_per_s": 1e3 * self.batch_size / stats["latency_ms_p50"], **d}


def measure(
    fn: Callable[[], Any],
    *,
    warmup: int = 3,
    repeats: int = 20,
    device: str = "cpu",
    batch_size: int = 1,
    **context: Any,
) -> LatencyResult:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed ones, under ``torch.inference_mode``.

    Args:
        fn: One inference call on already-loaded input (no decoding or training inside).
        warmup: Untimed calls first.
        repeats: Timed calls; the result holds exactly this many times.
        device: ``"cpu"`` or ``"cuda[:i]"``: decides synchronisation and the memory probe.
        batch_size: Images per call, for images per second.
        **context: Recorded with the figures: image_size, dtype, amp, channels_last.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"warmup={warmup} must be >= 0 and repeats={repeats} >= 1")

    times = []
    with torch.inference_mode():
        # The probe spans the warm-up (allocators keep what the first calls freed, so the resident set grows
        # only then) and stays off the timed calls (tracing allocations costs time). No warm-up: no figure.
        with MemoryProbe(device) as memory:
            for _ in range(warmup):
                fn()
        for _ in range(repeats):
            start = clock(device)
            fn()
            times.append((clock(device) - start) * 1e3)
    return LatencyResult(
        times_ms=times, warmup=warmup, repeats=repeats, batch_size=batch_size, device=device,
        device_name=device_name(device), threads=torch.get_num_threads(),
        peak_mem_mb=memory.peak_mb if warmup else float("nan"), **context,
    )
